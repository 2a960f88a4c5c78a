//! The README's reliability table: each test that demonstrates a guarantee writes its row to
//! `target/reliability/<name>.md` at its end (after its assertions), so the table is refreshed
//! from one `make test` run and a failed test leaves no row claiming otherwise.

use std::time::Duration;

/// Writes one row of the table: what was tried, the figures, what came out.
pub fn row(name: &str, scenario: &str, figures: &str, result: &str) {
    let dir = crate::emulator::repo_root().join("target/reliability");
    std::fs::create_dir_all(&dir).expect("create target/reliability");
    let row = format!("| {scenario} | {figures} | {result} |\n");
    std::fs::write(dir.join(format!("{name}.md")), &row).expect("write the report row");
    print!("{row}");
}

/// The row of a signal test: the wait it interrupted and how long the exit took.
pub fn signal_row(name: &str, wait: &str, code: Option<i32>, took: Duration) {
    let code = code.map_or("none".to_owned(), |c| c.to_string());
    row(
        &format!("signal_{name}"),
        "SIGTERM",
        wait,
        &format!("exit {code} {:.2} s after the signal", took.as_secs_f64()),
    );
}
