//! The reliability suite: every message lands once, masked, whatever happens.
//!
//! Each scenario is a test of its own, bounded in messages and time, and each ends by searching
//! the data directory (heap, indexes, WAL), the server log and its feeder logs for every ip and
//! device id it sent: no plaintext at rest ([`Run::finish`]). The scenarios take the key lock
//! (one restarts the server), so they run one after another. Each writes its row of the README's
//! table to `target/reliability/<scenario>.md`.

use integration::corpus;
use integration::emulator::{Emulator, Kind, Proxy, Sqs};
use integration::feeder::{self, Feeder, Summary};
use integration::*;
use rand::Rng;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The personal data a scenario sends, to search for afterwards, and the user ids it sends
/// (stored in clear by design: the search's positive control).
struct Secrets {
    tag: String,
    values: Vec<String>,
    user_ids: Vec<String>,
}

impl Secrets {
    fn new() -> Self {
        let tag = format!("{:06x}", rand::rng().random_range(0..0xFF_FFFF));
        Secrets { tag, values: Vec::new(), user_ids: Vec::new() }
    }

    /// A body with a unique IP and device id; both are remembered.
    fn body(&mut self, i: usize) -> String {
        let ip = format!("100.{}.{}.{}", 64 + (i / 65_536) % 64, i / 256 % 256, i % 256);
        let device = format!("dev-{}-{i:06}", self.tag);
        let user = format!("user-{}-{i}", self.tag);
        let body = format!(
            r#"{{"user_id": "{user}", "app_version": "2.3.0", "device_type": "ios", "ip": "{ip}", "locale": null, "device_id": "{device}"}}"#
        );
        self.values.push(ip);
        self.values.push(device);
        self.user_ids.push(user);
        body
    }

    fn bodies(&mut self, range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| self.body(i)).collect()
    }
}

/// One scenario's state: its secrets, databases and feeder logs, for the search at the end.
struct Run {
    secrets: Secrets,
    dbs: Vec<TestDb>,
    logs: Vec<PathBuf>,
    emu: Emulator,
}

impl Run {
    fn new() -> Self {
        Run {
            secrets: Secrets::new(),
            dbs: Vec::new(),
            logs: Vec::new(),
            emu: Emulator::start(Kind::Fauxqs),
        }
    }

    /// Checks that the scenario left no plaintext at rest and no temporary file, and writes its
    /// row of the README's table.
    fn finish(self, name: &str, scenario: &str, figures: &str, result: &str) {
        let at_rest = no_plaintext_at_rest(&self.secrets, &self.dbs, &self.logs);
        integration::report::row(name, scenario, figures, &format!("{result}; {at_rest}"));
    }
}

fn try_accounting(db: &TestDb) -> Option<(i64, i64, i64)> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| accounting(db))).ok()
}

fn rows(db: &TestDb) -> i64 {
    try_accounting(db).map(|(r, j, _)| r + j).unwrap_or(-1)
}

/// 1. Crash: SIGKILL the feeder at random moments while it drains, restart it each time.
#[test]
fn a_feeder_killed_mid_drain_and_restarted_loses_and_duplicates_nothing() {
    let _lock = key_lock();
    let mut run = Run::new();
    let sqs = Sqs::new_queue(&run.emu.endpoint());
    sqs.send_all(&run.secrets.bodies(0..5_000));
    let db = TestDb::new("rel_crash");
    let env = [
        ("FEEDER_BATCH_SIZE", "10"),
        ("FEEDER_VISIBILITY_TIMEOUT", "2"),
        ("FEEDER_RECEIVERS", "1"),
    ];
    let mut kills = 0;
    let mut mid_drain = 0;
    while kills < 5 {
        let before = rows(&db);
        let f = Feeder::spawn(&db.url, &run.emu.endpoint(), &sqs.queue_url, &["run"], &env);
        // Kill at a random moment once this run has made progress.
        wait_until(Duration::from_secs(10), || rows(&db) > before);
        std::thread::sleep(Duration::from_millis(rand::rng().random_range(0..120)));
        if rows(&db) < 5_000 {
            mid_drain += 1;
        }
        f.signal(libc::SIGKILL);
        run.logs.push(f.log.clone());
        let _ = f.wait(Duration::from_secs(10));
        kills += 1;
    }
    let f = Feeder::spawn(&db.url, &run.emu.endpoint(), &sqs.queue_url, &["drain"], &env);
    run.logs.push(f.log.clone());
    let (status, log) = f.wait(Duration::from_secs(180));
    assert!(status.success(), "{log}");
    let (r, j, dup) = accounting(&db);
    assert_eq!((r + j, dup), (5_000, 0), "rows + rejects = distinct messages, no duplicate ids");
    assert_eq!(sqs.depth(), (0, 0), "queue empty");
    assert!(mid_drain >= 3, "most kills must land mid-drain ({mid_drain} of {kills})");
    let figures =
        format!("5,000 messages, {kills} SIGKILLs ({mid_drain} mid-drain), restart after each");
    let result = format!("{r} rows + {j} rejects, 0 duplicate ids, queue empty");
    run.dbs.push(db);
    run.finish("crash", "crash", &figures, &result);
}

/// 2. Database restart: PostgreSQL restarted twice during a drain.
#[test]
fn postgresql_restarted_mid_drain_loses_and_duplicates_nothing() {
    let _lock = key_lock();
    let mut run = Run::new();
    let sqs = Sqs::new_queue(&run.emu.endpoint());
    sqs.send_all(&run.secrets.bodies(5_000..10_000));
    let db = TestDb::new("rel_pgrestart");
    let env = [
        ("FEEDER_BATCH_SIZE", "50"),
        ("FEEDER_RECEIVERS", "1"),
        ("FEEDER_VISIBILITY_TIMEOUT", "10"),
    ];
    let f = Feeder::spawn(&db.url, &run.emu.endpoint(), &sqs.queue_url, &["drain"], &env);
    run.logs.push(f.log.clone());
    let mut restarts = 0;
    for threshold in [1_000, 3_000] {
        assert!(wait_until(Duration::from_secs(60), || rows(&db) >= threshold), "{}", f.log_text());
        pg_ctl("restart");
        restarts += 1;
    }
    let (status, log) = f.wait(Duration::from_secs(180));
    assert!(status.success(), "{log}");
    assert!(log.contains("PostgreSQL reachable again"), "the feeder noticed and recovered:\n{log}");
    let (r, j, dup) = accounting(&db);
    assert_eq!((r + j, dup), (5_000, 0));
    assert_eq!(sqs.depth(), (0, 0));
    let figures = format!("5,000 messages, PostgreSQL restarted {restarts}× mid-drain");
    let result = format!("{r} rows + {j} rejects, 0 duplicate ids, queue empty");
    run.dbs.push(db);
    run.finish("db_restart", "database restart", &figures, &result);
}

/// 3. Queue outage: SQS unreachable at start and again mid-run (a proxy cuts the network).
#[test]
fn an_sqs_outage_at_start_and_mid_run_ends_in_a_full_drain() {
    let _lock = key_lock();
    let mut run = Run::new();
    let sqs = Sqs::new_queue(&run.emu.endpoint());
    sqs.send_all(&run.secrets.bodies(10_000..15_000));
    let db = TestDb::new("rel_sqsdown");
    let proxy = Proxy::start(run.emu.port);
    proxy.set_enabled(false);
    // A short visibility timeout: deletes that fail during the outage come back soon.
    let env = [
        ("FEEDER_BATCH_SIZE", "50"),
        ("FEEDER_RECEIVERS", "2"),
        ("FEEDER_STARTUP_TIMEOUT", "60"),
        ("FEEDER_VISIBILITY_TIMEOUT", "5"),
    ];
    let f = Feeder::spawn(&db.url, &proxy.endpoint(), &sqs.queue_url, &["drain"], &env);
    run.logs.push(f.log.clone());
    let down = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    proxy.set_enabled(true);
    assert!(wait_until(Duration::from_secs(60), || rows(&db) >= 1_500), "{}", f.log_text());
    proxy.set_enabled(false);
    std::thread::sleep(Duration::from_secs(3));
    proxy.set_enabled(true);
    let (status, log) = f.wait(Duration::from_secs(180));
    assert!(status.success(), "{log}");
    let warnings = log.lines().filter(|l| l.contains("WARN")).count();
    assert!(warnings <= 12, "backoff, not a flood: {warnings} warnings\n{log}");
    let (r, j, dup) = accounting(&db);
    assert_eq!((r + j, dup), (5_000, 0));
    assert_eq!(sqs.depth(), (0, 0));
    let figures = format!(
        "5,000 messages, SQS cut for 3 s at start and 3 s mid-run ({:.0} s total run)",
        down.elapsed().as_secs_f64()
    );
    let result =
        format!("{r} rows + {j} rejects, 0 duplicate ids, {warnings} warning lines in the log");
    run.dbs.push(db);
    run.finish("queue_outage", "queue outage", &figures, &result);
}

/// 4. Competing consumers: 4 feeders drain one queue together.
#[test]
fn four_feeders_on_one_queue_load_each_message_once() {
    let _lock = key_lock();
    let mut run = Run::new();
    let sqs = Sqs::new_queue(&run.emu.endpoint());
    sqs.send_all(&run.secrets.bodies(15_000..25_000));
    let db = TestDb::new("rel_competing");
    let env = [("FEEDER_BATCH_SIZE", "200"), ("FEEDER_VISIBILITY_TIMEOUT", "30")];
    let feeders: Vec<Feeder> = (0..4)
        .map(|_| Feeder::spawn(&db.url, &run.emu.endpoint(), &sqs.queue_url, &["drain"], &env))
        .collect();
    let mut loaded = Vec::new();
    for f in feeders {
        run.logs.push(f.log.clone());
        let (status, log) = f.wait(Duration::from_secs(180));
        assert!(status.success(), "{log}");
        loaded.push(Summary::parse(&log).loaded);
    }
    let (r, j, dup) = accounting(&db);
    assert_eq!((r + j, dup), (10_000, 0));
    assert_eq!(
        loaded.iter().sum::<u64>(),
        10_000,
        "each message loaded by exactly one feeder: {loaded:?}"
    );
    assert_eq!(sqs.depth(), (0, 0));
    let figures = format!("10,000 messages, 4 feeders on one queue (loaded {loaded:?})");
    let result = format!("{r} rows + {j} rejects, 0 duplicate ids, queue empty");
    run.dbs.push(db);
    run.finish("competing", "competing consumers", &figures, &result);
}

/// 5. Hostile bodies mixed into valid traffic, through COPY and through SQS + feeder.
#[test]
fn hostile_bodies_beside_valid_ones_each_land_where_they_should() {
    let _lock = key_lock();
    let mut run = Run::new();
    let db = TestDb::new("rel_hostile");
    let mut c = db.client();
    let hostile = corpus::hostile(false);
    let mut messages = Vec::new();
    for (i, case) in hostile.iter().enumerate() {
        messages.push(Message::new(format!("h{i:04}"), case.body.clone()));
        messages.push(Message::new(format!("v{i:04}"), run.secrets.body(25_000 + i)));
    }
    let counts = copy_ingest(&mut c, &messages).expect("one COPY takes the whole corpus");
    for (i, case) in hostile.iter().enumerate() {
        let id = format!("h{i:04}");
        let got: Option<String> = match c
            .query_opt("SELECT reason FROM user_login_rejects WHERE message_id = $1", &[&id])
            .expect("q")
        {
            Some(row) => Some(row.get(0)),
            None => {
                let n: i64 = c
                    .query_one("SELECT count(*) FROM user_logins WHERE message_id = $1", &[&id])
                    .expect("q")
                    .get(0);
                assert_eq!(
                    n,
                    1,
                    "{id} landed nowhere: {:?}",
                    &case.body[..case.body.len().min(80)]
                );
                None
            }
        };
        assert_eq!(
            got.as_deref(),
            case.expect,
            "{id}: {:?}",
            &case.body[..case.body.len().min(120)]
        );
    }
    let valid_landed: i64 = c
        .query_one("SELECT count(*) FROM user_logins WHERE message_id LIKE 'v%'", &[])
        .expect("q")
        .get(0);
    assert_eq!(valid_landed as usize, hostile.len(), "every valid neighbour landed");

    let safe = corpus::hostile(true);
    let sqs = Sqs::new_queue(&run.emu.endpoint());
    let mut bodies = Vec::new();
    for (i, case) in safe.iter().enumerate() {
        bodies.push(case.body.clone());
        bodies.push(run.secrets.body(30_000 + i));
    }
    sqs.send_all(&bodies);
    let db2 = TestDb::new("rel_hostile_sqs");
    run.logs.push(feeder::log_dir());
    let log =
        feeder::drain(&db2.url, &run.emu.endpoint(), &sqs.queue_url, Duration::from_secs(120));
    let mut want: std::collections::BTreeMap<String, i64> = Default::default();
    for case in &safe {
        *want.entry(case.expect.unwrap_or("row").to_owned()).or_default() += 1;
    }
    *want.entry("row".into()).or_default() += safe.len() as i64;
    let mut got: std::collections::BTreeMap<String, i64> = Default::default();
    let mut c2 = db2.client();
    for row in
        c2.query("SELECT reason, count(*) FROM user_login_rejects GROUP BY 1", &[]).expect("q")
    {
        got.insert(row.get(0), row.get(1));
    }
    got.insert(
        "row".into(),
        c2.query_one("SELECT count(*) FROM user_logins", &[]).expect("q").get(0),
    );
    assert_eq!(got, want, "{log}");
    let figures = format!(
        "{} hostile bodies by COPY and {} by SQS + feeder, each beside a valid message",
        hostile.len(),
        safe.len()
    );
    let result = format!("every body a row or a reject with the expected reason ({} rejects by COPY); no batch aborted; all valid neighbours landed", counts.rejected);
    run.dbs.push(db);
    run.dbs.push(db2);
    run.finish("bad_input", "bad input", &figures, &result);
}

/// Searches the data directory (heap, indexes, WAL, what is left of temp files), the server log
/// and the feeder logs for every ip and device id a scenario sent, and asks PostgreSQL how many
/// temp files the scenario's databases wrote (a temp file is gone once its query ends). Returns
/// the figures for the report.
fn no_plaintext_at_rest(secrets: &Secrets, dbs: &[TestDb], logs: &[PathBuf]) -> String {
    let mut a = admin();
    // Temp files are gone once their query ends, so a search finds only what is left: ask
    // PostgreSQL how many the scenarios' databases ever wrote. A control that spills a sort
    // on purpose shows the counter is live.
    let control = TestDb::new("rel_tempfile_control");
    control
            .client()
            .batch_execute(
                "SET work_mem = '64kB'; \
                 SELECT count(*) FROM (SELECT g FROM generate_series(1, 200000) g ORDER BY g DESC) s",
            )
            .expect("control sort");
    let mut temp_files = |names: &[&str]| -> i64 {
        a.query_one(
                "SELECT coalesce(sum(temp_files), 0)::int8 FROM pg_stat_database WHERE datname = ANY($1)",
                &[&names],
            )
            .expect("pg_stat_database")
            .get(0)
    };
    assert!(
        wait_until(Duration::from_secs(15), || temp_files(&[control.name.as_str()]) > 0),
        "the control sort spilled, but pg_stat_database counted no temp file"
    );
    let control_temp_files = temp_files(&[control.name.as_str()]);
    let names: Vec<&str> = dbs.iter().map(|d: &TestDb| d.name.as_str()).collect();
    let scenario_temp_files = temp_files(&names);
    assert_eq!(scenario_temp_files, 0, "the scenario wrote temp files");
    drop(control);
    a.batch_execute("CHECKPOINT").expect("checkpoint");
    let data_dir: String = a.query_one("SHOW data_directory", &[]).expect("q").get(0);
    let mut roots = vec![server::host_path(&data_dir), server::host_path(&server::log())];
    roots.extend(logs.iter().cloned());
    // Positive control: user ids are stored in clear by design, so the same search must find
    // them; otherwise it is not really reading the tables and the WAL.
    let controls: Vec<String> =
        secrets.user_ids.iter().step_by((secrets.user_ids.len() / 50).max(1)).cloned().collect();
    let mut patterns = secrets.values.clone();
    patterns.extend(controls.iter().cloned());
    let matcher = aho_corasick::AhoCorasick::new(&patterns).expect("patterns");
    let (mut files, mut bytes, mut hits, mut control_hits) = (0u64, 0u64, Vec::new(), 0usize);
    let mut scan = |name: &str, data: &[u8]| {
        files += 1;
        bytes += data.len() as u64;
        for m in matcher.find_iter(data) {
            let p = m.pattern().as_usize();
            if p >= secrets.values.len() {
                control_hits += 1;
            } else if hits.len() < 20 {
                hits.push(format!("{name}: {}", patterns[p]));
            }
        }
    };
    if is_root() {
        for root in &roots {
            for path in walk(root) {
                if let Ok(data) = std::fs::read(&path) {
                    scan(&path.display().to_string(), &data);
                }
            }
        }
    } else {
        // The data directory and the server log belong to postgres: read them through sudo,
        // one file at a time so that no match spans two files.
        let list = std::process::Command::new("sudo")
            .args(["-n", "find"])
            .args(&roots)
            .args(["-type", "f", "-print0"])
            .output()
            .expect("sudo -n find");
        for path in list.stdout.split(|b| *b == 0).filter(|p| !p.is_empty()) {
            let path = String::from_utf8_lossy(path).into_owned();
            if let Ok(out) = std::process::Command::new("sudo").args(["-n", "cat", &path]).output()
            {
                scan(&path, &out.stdout);
            }
        }
    }
    assert!(
        files > 100 && bytes > 10_000_000,
        "the search must really read the data directory ({files} files)"
    );
    assert!(
        control_hits > 0,
        "the search found none of the cleartext user ids: it is not reading the data"
    );
    assert!(hits.is_empty(), "plaintext found at rest:\n{}", hits.join("\n"));
    format!(
        "no plaintext at rest: {} ips and device ids searched in {files} files, {} MB (data \
             directory with WAL, server log, feeder logs), 0 hits (control: cleartext user ids \
             found {control_hits} times); temp files written {scenario_temp_files} (a control \
             sort that spills: {control_temp_files})",
        secrets.values.len(),
        bytes / 1_000_000
    )
}

fn walk(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {
                if let Ok(rd) = std::fs::read_dir(&p) {
                    stack.extend(rd.filter_map(|e| e.ok().map(|e| e.path())));
                }
            }
            Ok(m) if m.is_file() => out.push(p),
            _ => {}
        }
    }
    out
}
