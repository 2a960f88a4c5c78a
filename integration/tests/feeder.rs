//! The feeder binary against real SQS emulators (fauxqs and moto) and the real PostgreSQL.

use integration::emulator::{Emulator, Kind, Sqs};
use integration::feeder::{self, Feeder, Summary};
use integration::report;
use integration::*;
use std::time::Duration;

fn sample_bodies() -> Vec<String> {
    sample_messages().into_iter().map(|m| m.body).collect()
}

fn totals(db: &TestDb) -> (i64, i64, i64) {
    accounting(db)
}

fn drains_the_samples(kind: Kind) {
    let _lock = key_lock();
    let emu = Emulator::start(kind);
    let sqs = Sqs::new_queue(&emu.endpoint());
    sqs.send_all(&sample_bodies());
    let db = TestDb::new("feeder");
    let log = feeder::drain(&db.url, &emu.endpoint(), &sqs.queue_url, Duration::from_secs(120));
    assert_eq!(totals(&db), (99, 1, 0), "{log}");
    assert_eq!(sqs.depth(), (0, 0), "queue ends empty");
    let summary = Summary::parse(&log);
    assert_eq!((summary.loaded, summary.rejected), (99, 1), "{log}");
    assert!(summary.accounts_for_every_message(), "{summary:?}\n{log}");
    match kind {
        // fauxqs hands each message to one receive until its visibility timeout passes.
        Kind::Fauxqs => assert_eq!(summary.duplicates, 0, "{log}"),
        // moto's receive checks and marks a message's visibility outside any lock, so two
        // concurrent receives can both get it (getmoto/moto#519), as real SQS's at-least-once
        // delivery may: the feeder must count it as a duplicate, not load it twice.
        Kind::Moto => assert!(summary.received >= 100, "{log}"),
    }
}

#[test]
fn seed_creates_the_queue_and_puts_every_line_on_it_once() {
    let _lock = key_lock();
    let emu = Emulator::start(Kind::Fauxqs);
    let name = unique("seeded");
    let url = format!("{}/000000000000/{name}", emu.endpoint());
    let data = repo_root_file("data/sample_messages.jsonl");
    let db = TestDb::new("feeder");
    let (status, log) = Feeder::spawn(&db.url, &emu.endpoint(), &url, &["seed", &data], &[])
        .wait(Duration::from_secs(60));
    assert!(status.success(), "{log}");
    assert!(log.contains("seeded 100 messages"), "{log}");
    assert_eq!(Sqs::named(&emu.endpoint(), &name).depth(), (100, 0), "each line once");
    let log = feeder::drain(&db.url, &emu.endpoint(), &url, Duration::from_secs(120));
    assert_eq!(totals(&db), (99, 1, 0), "{log}");
}

#[test]
fn sample_messages_drain_to_99_rows_and_1_reject_on_fauxqs() {
    drains_the_samples(Kind::Fauxqs);
}

#[test]
fn sample_messages_drain_to_99_rows_and_1_reject_on_moto() {
    drains_the_samples(Kind::Moto);
}

#[test]
fn a_redelivered_message_makes_no_second_row() {
    let _lock = key_lock();
    let emu = Emulator::start(Kind::Fauxqs);
    let sqs = Sqs::new_queue(&emu.endpoint());
    sqs.send_all(&sample_bodies()[..10]);
    let db = TestDb::new("feeder");
    // A consumer that committed these rows and crashed before deleting them.
    let mut got = Vec::new();
    while got.len() < 10 {
        got.extend(sqs.receive(1));
    }
    let messages: Vec<Message> =
        got.iter().map(|m| Message::new(m.id.clone(), m.body.clone())).collect();
    assert_eq!(copy_ingest(&mut db.client(), &messages).expect("first load").loaded, 10);
    std::thread::sleep(Duration::from_millis(1500)); // the visibility timeout passes: redelivery
    let log = feeder::drain(&db.url, &emu.endpoint(), &sqs.queue_url, Duration::from_secs(60));
    assert_eq!(totals(&db), (10, 0, 0));
    assert!(log.contains("loaded 0, duplicates 10"), "{log}");
    assert_eq!(sqs.depth(), (0, 0));
}

#[test]
fn awkward_bodies_arrive_byte_for_byte() {
    let _lock = key_lock();
    let emu = Emulator::start(Kind::Fauxqs);
    let sqs = Sqs::new_queue(&emu.endpoint());
    let bodies = vec![
        "{\"user_id\": \"tab\\there\", \"ip\": \"1.2.3.4\"}\n\t \r\n".to_owned(),
        "not json: tab\there, newline\nhere, backslash \\ quote \" ünïcødé 日本 \u{FFFD} (fauxqs refuses planes above the BMP, which real SQS allows)".to_owned(),
        "{\"user_id\": \"x'); DROP TABLE user_logins; --\", \"device_id\": \"\\\\N\"}".to_owned(),
        "\\.\n\\N".to_owned(),
    ];
    sqs.send_all(&bodies);
    let db = TestDb::new("feeder");
    feeder::drain(&db.url, &emu.endpoint(), &sqs.queue_url, Duration::from_secs(60));
    let mut c = db.client();
    let rows = c.query("SELECT user_id FROM user_logins ORDER BY 1", &[]).expect("rows");
    let users: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(users, ["tab\there", "x'); DROP TABLE user_logins; --"]);
    let dev: String = c.query_one("SELECT unmask_pii(masked_device_id) FROM user_logins WHERE masked_device_id IS NOT NULL", &[]).expect("dev").get(0);
    assert_eq!(dev, "\\N");
    let payloads: Vec<String> = c
        .query("SELECT unmask_pii(payload) FROM user_login_rejects ORDER BY 1", &[])
        .expect("rejects")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut want = vec![bodies[1].clone(), bodies[3].clone()];
    want.sort();
    assert_eq!(payloads, want);
}

#[test]
fn sigterm_commits_what_it_can_within_a_second_and_returns_the_rest() {
    let _lock = key_lock();
    let emu = Emulator::start(Kind::Fauxqs);
    let sqs = Sqs::new_queue(&emu.endpoint());
    let bodies: Vec<String> = (0..3_000)
        .map(|i| format!(r#"{{"user_id":"u{i}","ip":"10.1.{}.{}"}}"#, i / 256, i % 256))
        .collect();
    sqs.send_all(&bodies);
    let db = TestDb::new("feeder");
    let f = Feeder::spawn(
        &db.url,
        &emu.endpoint(),
        &sqs.queue_url,
        &["run"],
        &[("FEEDER_BATCH_SIZE", "200"), ("FEEDER_VISIBILITY_TIMEOUT", "2")],
    );
    let started = wait_until(Duration::from_secs(30), || totals(&db).0 > 0);
    assert!(started, "feeder loaded nothing:\n{}", f.log_text());
    f.signal(libc::SIGTERM);
    let (status, log) = f.wait(Duration::from_secs(5));
    // 0: everything received was committed and deleted; 75: some was left to redelivery.
    assert!(matches!(status.code(), Some(0 | 75)), "exit status {status}\n{log}");
    let summary = Summary::parse(&log);
    assert_eq!(totals(&db).0 as u64, summary.loaded, "{log}");
    if status.code() == Some(0) {
        assert_eq!(summary.deleted, summary.received, "0 means nothing was left\n{log}");
    }
    // The rest comes back (a receive dropped at the signal leaves its messages invisible for
    // one visibility timeout): a drain finds every message once.
    let env = [("FEEDER_VISIBILITY_TIMEOUT", "2")];
    let (status, log) = Feeder::spawn(&db.url, &emu.endpoint(), &sqs.queue_url, &["drain"], &env)
        .wait(Duration::from_secs(120));
    assert!(status.success(), "{log}");
    assert_eq!(totals(&db), (3_000, 0, 0), "nothing lost, nothing twice\n{log}");
    assert_eq!(sqs.depth(), (0, 0));
}

#[test]
fn sigkill_mid_batch_then_restart_loses_and_duplicates_nothing() {
    let _lock = key_lock();
    let emu = Emulator::start(Kind::Fauxqs);
    let sqs = Sqs::new_queue(&emu.endpoint());
    let bodies: Vec<String> = (0..2_000)
        .map(|i| format!(r#"{{"user_id":"u{i}","device_id":"{i:03}-00-0000"}}"#))
        .collect();
    sqs.send_all(&bodies);
    let db = TestDb::new("feeder");
    let env = [("FEEDER_BATCH_SIZE", "100"), ("FEEDER_VISIBILITY_TIMEOUT", "2")];
    let f = Feeder::spawn(&db.url, &emu.endpoint(), &sqs.queue_url, &["run"], &env);
    assert!(wait_until(Duration::from_secs(30), || totals(&db).0 >= 300), "{}", f.log_text());
    f.signal(libc::SIGKILL);
    let _ = f.wait(Duration::from_secs(10));
    let f = Feeder::spawn(&db.url, &emu.endpoint(), &sqs.queue_url, &["drain"], &env);
    let (status, log) = f.wait(Duration::from_secs(120));
    assert!(status.success(), "{log}");
    let depth = sqs.depth();
    assert_eq!(totals(&db), (2_000, 0, 0), "every message exactly once (queue: {depth:?})\n{log}");
    assert_eq!(depth, (0, 0));
}

#[test]
fn postgres_unreachable_at_start_is_one_clear_line_and_a_nonzero_exit() {
    let emu = Emulator::start(Kind::Fauxqs);
    let sqs = Sqs::new_queue(&emu.endpoint());
    let port = integration::emulator::free_port();
    let url = format!("postgres://postgres:postgres@127.0.0.1:{port}/postgres");
    let f = Feeder::spawn(
        &url,
        &emu.endpoint(),
        &sqs.queue_url,
        &["drain"],
        &[("FEEDER_STARTUP_TIMEOUT", "1")],
    );
    let (status, log) = f.wait(Duration::from_secs(30));
    assert!(!status.success());
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(
        errors[0].contains(&format!(
            "cannot connect to PostgreSQL at postgres@127.0.0.1:{port}/postgres"
        )),
        "{log}"
    );
    assert!(!log.contains("postgres:postgres"), "no password in logs");
}

#[test]
fn missing_queue_or_schema_is_one_clear_line_and_a_nonzero_exit() {
    let _lock = key_lock();
    let emu = Emulator::start(Kind::Fauxqs);
    let db = TestDb::new("feeder");
    let missing = format!("{}/000000000000/no-such-queue", emu.endpoint());
    let (status, log) = Feeder::spawn(&db.url, &emu.endpoint(), &missing, &["drain"], &[])
        .wait(Duration::from_secs(30));
    assert!(!status.success());
    assert!(log.contains("does not exist: create it"), "{log}");
    let sqs = Sqs::new_queue(&emu.endpoint());
    let bare = url_for("template1");
    let (status, log) = Feeder::spawn(&bare, &emu.endpoint(), &sqs.queue_url, &["drain"], &[])
        .wait(Duration::from_secs(30));
    assert!(!status.success());
    assert!(log.contains("no pg_mask ingest view: run `make schema`"), "{log}");
}

#[test]
fn no_aws_credentials_is_one_clear_line_and_a_nonzero_exit() {
    let emu = Emulator::start(Kind::Fauxqs);
    let sqs = Sqs::new_queue(&emu.endpoint());
    let db = TestDb::new("feeder");
    let (mut cmd, log) = feeder::command(&db.url, &emu.endpoint(), &sqs.queue_url, &["drain"]);
    // No credentials anywhere in the chain: not in the environment, no profile, no instance role.
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_PROFILE")
        .env("HOME", "/nonexistent")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    let child = cmd.spawn().expect("spawn feeder");
    let (status, log) = Feeder { child, log }.wait(Duration::from_secs(30));
    assert!(!status.success());
    let lines: Vec<&str> =
        log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0].contains("no AWS credentials found") && lines[0].contains("AWS_ACCESS_KEY_ID"),
        "{log}"
    );
}

#[test]
fn sigint_stops_a_load_between_batches_and_a_rerun_finishes_it() {
    let _lock = key_lock();
    let db = TestDb::new("feeder");
    let total = 200_000;
    let file = std::env::temp_dir().join(format!("{}.jsonl", unique("load")));
    let lines: String = (0..total)
        .map(|i| {
            format!("{{\"user_id\": \"u{i}\", \"ip\": \"10.0.{}.{}\"}}\n", i / 256 % 256, i % 256)
        })
        .collect();
    std::fs::write(&file, lines).expect("write input");
    let path = file.display().to_string();
    let load = |batch: &str| {
        Feeder::spawn(
            &db.url,
            "http://127.0.0.1:9",
            "http://127.0.0.1:9/0/q",
            &["load", &path],
            &[("FEEDER_BATCH_SIZE", batch)],
        )
    };
    let rows = || accounting(&db).0;
    // Small batches: thousands of commits, so the signal lands mid-load.
    let f = load("20");
    assert!(wait_until(Duration::from_secs(60), || rows() > 0), "{}", f.log_text());
    f.signal(libc::SIGINT);
    let (status, log) = f.wait(Duration::from_secs(5));
    assert_eq!(status.code(), Some(75), "interrupted: the documented code\n{log}");
    assert!(log.contains("run the same load again"), "{log}");
    let loaded = rows();
    assert!(loaded > 0 && loaded < total, "stopped mid-load: {loaded}\n{log}");
    let last_line: i32 =
        one(&mut db.client(), "SELECT max(split_part(message_id, '-', 2)::int) FROM user_logins");
    assert_eq!(i64::from(last_line), loaded, "what committed is the file's first lines, no gap");
    let (status, log) = load("1000").wait(Duration::from_secs(120));
    assert!(status.success(), "{log}");
    let rerun = Summary::parse(&log);
    assert_eq!(rerun.duplicates, loaded as u64, "the re-run skips what is loaded\n{log}");
    assert_eq!(totals(&db), (total, 0, 0));
    let _ = std::fs::remove_file(&file);
}

#[test]
fn load_from_a_file_is_idempotent() {
    let _lock = key_lock();
    let db = TestDb::new("feeder");
    let path = repo_root_file("data/sample_messages.jsonl");
    let run = || {
        let (status, log) = Feeder::spawn(
            &db.url,
            "http://127.0.0.1:9",
            "http://127.0.0.1:9/0/q",
            &["load", &path],
            &[],
        )
        .wait(Duration::from_secs(60));
        assert!(status.success(), "{log}");
        log
    };
    let first = run();
    assert!(first.contains("loaded 99, duplicates 0, rejected 1"), "{first}");
    let second = run();
    assert!(second.contains("loaded 0, duplicates 100, rejected 0"), "{second}");
    assert_eq!(totals(&db), (99, 1, 0));
}

#[test]
fn metrics_and_health_are_served() {
    let _lock = key_lock();
    let emu = Emulator::start(Kind::Fauxqs);
    let sqs = Sqs::new_queue(&emu.endpoint());
    sqs.send_all(&sample_bodies());
    let db = TestDb::new("feeder");
    let port = integration::emulator::free_port();
    let addr = format!("127.0.0.1:{port}");
    let f = Feeder::spawn(
        &db.url,
        &emu.endpoint(),
        &sqs.queue_url,
        &["run"],
        &[("FEEDER_METRICS_ADDR", &addr)],
    );
    assert!(wait_until(Duration::from_secs(30), || totals(&db).0 == 99), "{}", f.log_text());
    let get = |path: &str| -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&addr).expect("connect metrics");
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("request");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("response");
        out
    };
    assert!(get("/healthz").contains("ok"));
    let metrics = get("/metrics");
    assert!(
        wait_until(Duration::from_secs(10), || get("/metrics")
            .contains("feeder_deleted_total 100")),
        "{metrics}"
    );
    for name in [
        "feeder_received_total 100",
        "feeder_loaded_total 99",
        "feeder_rejected_total 1",
        "feeder_batch_seconds_bucket",
    ] {
        assert!(get("/metrics").contains(name), "missing {name}:\n{metrics}");
    }
    f.signal(libc::SIGTERM);
    let (status, _) = f.wait(Duration::from_secs(30));
    assert!(status.success());
}

fn repo_root_file(rel: &str) -> String {
    integration::emulator::repo_root().join(rel).display().to_string()
}

#[test]
fn a_batch_held_up_by_the_database_keeps_its_messages_invisible() {
    let _lock = key_lock();
    let emu = Emulator::start(Kind::Fauxqs);
    let sqs = Sqs::new_queue(&emu.endpoint());
    let bodies: Vec<String> = (0..50).map(|i| format!(r#"{{"user_id":"slow{i}"}}"#)).collect();
    sqs.send_all(&bodies);
    let db = TestDb::new("feeder");
    // Block every write to user_logins for longer than the visibility timeout.
    let mut blocker = db.client();
    let mut tx = blocker.transaction().expect("begin");
    tx.batch_execute("LOCK TABLE user_logins IN SHARE MODE").expect("lock");
    let f = Feeder::spawn(
        &db.url,
        &emu.endpoint(),
        &sqs.queue_url,
        &["drain"],
        &[("FEEDER_VISIBILITY_TIMEOUT", "2")],
    );
    std::thread::sleep(Duration::from_secs(5));
    tx.commit().expect("release the lock");
    let (status, log) = f.wait(Duration::from_secs(60));
    assert!(status.success(), "{log}");
    assert!(log.contains("extended its visibility"), "{log}");
    assert!(
        log.contains("received 50, loaded 50, duplicates 0"),
        "no redelivery while the batch was held:\n{log}"
    );
    assert_eq!(totals(&db), (50, 0, 0));
}

// ---- Poison messages (issue 11.2): isolated, stored as database_error rejects, or released.

/// `n` valid bodies; body `poison` has `"locale": "xx"`, which the tests' CHECKs refuse.
fn bodies_with_poison(n: usize, poison: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let locale = if i == poison { "xx" } else { "en" };
            format!(r#"{{"user_id":"p{i}","ip":"10.9.0.{i}","locale":"{locale}"}}"#)
        })
        .collect()
}

/// No line of the log holds a body's ip: bodies are never logged.
fn assert_no_body_in(log: &str) {
    assert!(!log.contains("10.9.0."), "a body reached the log:\n{log}");
}

#[test]
fn a_check_constraint_one_message_violates_makes_it_a_database_error_reject() {
    let _lock = key_lock();
    let emu = Emulator::start(Kind::Fauxqs);
    let sqs = Sqs::new_queue(&emu.endpoint());
    sqs.send_all(&bodies_with_poison(30, 17));
    let db = TestDb::new("feeder");
    db.client()
        .batch_execute(
            "ALTER TABLE user_logins ADD CONSTRAINT user_logins_locale_check \
             CHECK (locale IS DISTINCT FROM 'xx')",
        )
        .expect("add check");
    let f = Feeder::spawn(&db.url, &emu.endpoint(), &sqs.queue_url, &["drain"], &[]);
    let (status, log) = f.wait(Duration::from_secs(60));
    assert!(status.success(), "{status}\n{log}");
    assert_eq!(totals(&db), (29, 1, 0), "the good rows land beside the reject\n{log}");
    let mut c = db.client();
    let (reason, detail): (String, String) = {
        let r =
            c.query_one("SELECT reason, detail FROM user_login_rejects", &[]).expect("the reject");
        (r.get(0), r.get(1))
    };
    assert_eq!(reason, "database_error");
    assert!(detail.contains("23514") && detail.contains("user_logins_locale_check"), "{detail}");
    assert_eq!(sqs.depth(), (0, 0), "the queue drains");
    let summary = Summary::parse(&log);
    assert_eq!((summary.loaded, summary.rejected, summary.released), (29, 1, 0), "{log}");
    assert!(summary.accounts_for_every_message(), "{summary:?}");
    assert_no_body_in(&log);
    integration::report::row(
        "poison",
        "poison message",
        "30 messages by SQS, 1 violating a CHECK constraint an operator added",
        "29 rows + 1 reject (database_error, 23514 and the constraint's name), batch isolated \
         not retried, queue empty, no body in the log",
    );
}

#[test]
fn a_message_refused_even_as_a_reject_is_released_to_the_dead_letter_queue() {
    let _lock = key_lock();
    let emu = Emulator::start(Kind::Fauxqs);
    let (sqs, dlq) = Sqs::new_queue_with_dead_letters(&emu.endpoint(), 2);
    sqs.send_all(&bodies_with_poison(10, 4));
    let db = TestDb::new("feeder");
    db.client()
        .batch_execute(
            "ALTER TABLE user_logins ADD CONSTRAINT user_logins_locale_check \
               CHECK (locale IS DISTINCT FROM 'xx'); \
             ALTER TABLE user_login_rejects ADD CONSTRAINT no_database_errors \
               CHECK (reason <> 'database_error')",
        )
        .expect("add checks");
    let f = Feeder::spawn(
        &db.url,
        &emu.endpoint(),
        &sqs.queue_url,
        &["run"],
        &[("FEEDER_VISIBILITY_TIMEOUT", "1")],
    );
    // Received twice (released each time), then the redrive policy moves it.
    let moved = wait_until(Duration::from_secs(60), || dlq.depth().0 == 1);
    assert!(moved, "the released message reaches the dead-letter queue\n{}", f.log_text());
    f.signal(libc::SIGTERM);
    let (status, log) = f.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(65), "released: the documented code\n{log}");
    assert_eq!(totals(&db), (9, 0, 0), "the others load; no reject could be written\n{log}");
    let summary = Summary::parse(&log);
    assert!(summary.released >= 1, "{summary:?}\n{log}");
    assert_eq!(summary.deleted, 9, "the released message is never deleted\n{log}");
    assert!(log.contains("message released"), "{log}");
    assert_eq!(sqs.depth(), (0, 0));
    let moved = dlq.receive(30);
    assert_eq!(moved.len(), 1);
    assert!(moved[0].body.contains("\"locale\":\"xx\""));
    assert_no_body_in(&log);
    integration::report::row(
        "released",
        "poison message refused even as a reject",
        "10 messages, 1 refused by user_logins and, as a reject, by user_login_rejects; \
         redrive after 2 receives",
        "9 rows; the message released, never deleted, moved to the dead-letter queue; exit 65",
    );
}

#[test]
fn a_released_line_of_a_load_is_reported_and_the_exit_code_says_so() {
    let _lock = key_lock();
    let db = TestDb::new("feeder");
    db.client()
        .batch_execute(
            "ALTER TABLE user_logins ADD CONSTRAINT user_logins_locale_check \
               CHECK (locale IS DISTINCT FROM 'xx'); \
             ALTER TABLE user_login_rejects ADD CONSTRAINT no_database_errors \
               CHECK (reason <> 'database_error')",
        )
        .expect("add checks");
    let file = std::env::temp_dir().join(format!("{}.jsonl", unique("poison")));
    std::fs::write(&file, bodies_with_poison(8, 5).join("\n")).expect("write input");
    let (status, log) = load(&db.url, &file, &[]).wait(Duration::from_secs(60));
    let _ = std::fs::remove_file(&file);
    assert_eq!(status.code(), Some(65), "{log}");
    assert!(log.contains("line-6-"), "the released line is named\n{log}");
    assert_eq!(totals(&db), (7, 0, 0), "{log}");
    assert_no_body_in(&log);
}

#[test]
fn ingest_stats_that_do_not_account_for_the_batch_stop_the_feeder_and_delete_nothing() {
    let _lock = key_lock();
    let emu = Emulator::start(Kind::Fauxqs);
    let sqs = Sqs::new_queue(&emu.endpoint());
    sqs.send_all(&sample_bodies()[..20]);
    let db = TestDb::new("feeder");
    // A misconfigured view: its row trigger swallows the rows, so ingest_stats() counts none.
    db.client()
        .batch_execute(
            "CREATE FUNCTION swallow() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END'; \
             DROP TRIGGER login_ingest_rows ON login_ingest; \
             CREATE TRIGGER login_ingest_rows INSTEAD OF INSERT ON login_ingest \
               FOR EACH ROW EXECUTE FUNCTION swallow();",
        )
        .expect("break the view");
    let f = Feeder::spawn(&db.url, &emu.endpoint(), &sqs.queue_url, &["drain"], &[]);
    let (status, log) = f.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "{log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(errors[0].contains("ingest_stats() accounts for 0 of the"), "{log}");
    let (visible, in_flight) = sqs.depth();
    assert_eq!(visible + in_flight, 20, "nothing deleted\n{log}");
    assert_eq!(Summary::parse(&log).deleted, 0);
}

// ---- Signals (issue 11.4): every wait ends within a second; the exit code says what is left.

/// Spawns `args`, waits for `ready` in its log, sends SIGTERM and returns the exit code and log,
/// asserting a generous bound on the exit.
fn sigterm_when(f: Feeder, ready: &str) -> (Option<i32>, String, Duration) {
    let up = wait_until(Duration::from_secs(30), || f.log_text().contains(ready));
    assert!(up, "never saw {ready:?}:\n{}", f.log_text());
    std::thread::sleep(Duration::from_millis(500));
    let signalled = std::time::Instant::now();
    f.signal(libc::SIGTERM);
    let (status, log) = f.wait(Duration::from_secs(5));
    (status.code(), log, signalled.elapsed())
}

#[test]
fn sigterm_ends_the_start_up_wait() {
    let emu = Emulator::start(Kind::Fauxqs);
    let sqs = Sqs::new_queue(&emu.endpoint());
    let port = integration::emulator::free_port();
    let url = format!("postgres://postgres:postgres@127.0.0.1:{port}/postgres");
    let f = Feeder::spawn(
        &url,
        &emu.endpoint(),
        &sqs.queue_url,
        &["drain"],
        &[("FEEDER_STARTUP_TIMEOUT", "300")],
    );
    let (code, log, took) = sigterm_when(f, "retrying with backoff");
    assert_eq!(code, Some(75), "a drain stopped before it began has work left\n{log}");
    report::signal_row("startup", "the start-up wait for PostgreSQL", code, took);
}

#[test]
fn sigterm_ends_a_long_poll_on_an_idle_queue() {
    let _lock = key_lock();
    let emu = Emulator::start(Kind::Fauxqs);
    let sqs = Sqs::new_queue(&emu.endpoint());
    let db = TestDb::new("feeder");
    let f = Feeder::spawn(
        &db.url,
        &emu.endpoint(),
        &sqs.queue_url,
        &["run"],
        &[("FEEDER_WAIT_SECONDS", "20")],
    );
    let (code, log, took) = sigterm_when(f, "feeder started");
    assert_eq!(code, Some(0), "nothing received, nothing left\n{log}");
    report::signal_row("long_poll", "a 20 s long poll on an idle queue", code, took);
}

#[test]
fn sigterm_ends_a_batch_retrying_while_the_database_is_unreachable() {
    let _lock = key_lock();
    let emu = Emulator::start(Kind::Fauxqs);
    let sqs = Sqs::new_queue(&emu.endpoint());
    let db = TestDb::new("feeder");
    // PostgreSQL behind a proxy the test can cut: connections fail and are retried.
    let proxy = integration::emulator::Proxy::start(5432);
    let url = db.url.replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
    assert_ne!(url, db.url, "the test database URL names 127.0.0.1:5432");
    let f = Feeder::spawn(&url, &emu.endpoint(), &sqs.queue_url, &["run"], &[]);
    assert!(wait_until(Duration::from_secs(30), || f.log_text().contains("feeder started")));
    proxy.set_enabled(false);
    sqs.send_all(&sample_bodies()[..10]);
    let (code, log, took) = sigterm_when(f, "retrying with backoff");
    assert_eq!(code, Some(75), "received, not committed: left to redelivery\n{log}");
    assert_eq!(totals(&db), (0, 0, 0));
    report::signal_row("db_retry", "a batch retrying while PostgreSQL is unreachable", code, took);
}

#[test]
fn sigterm_ends_a_batch_retrying_while_pg_mask_has_no_key() {
    let _lock = key_lock();
    let emu = Emulator::start(Kind::Fauxqs);
    let sqs = Sqs::new_queue(&emu.endpoint());
    sqs.send_all(&sample_bodies()[..10]);
    let db = TestDb::new("feeder");
    let log = {
        // No key: pg_mask refuses every write with 55000, which the feeder retries (the
        // messages wait in the queue, they do not become rejects).
        let _no_key = KeySettings::keys("");
        let f = Feeder::spawn(&db.url, &emu.endpoint(), &sqs.queue_url, &["run"], &[]);
        let (code, log, took) = sigterm_when(f, "retrying with backoff");
        assert_eq!(code, Some(75), "{log}");
        report::signal_row("no_key", "a batch retrying while pg_mask has no key", code, took);
        log
    };
    assert_eq!(totals(&db), (0, 0, 0), "{log}");
    assert!(log.contains("55000"), "{log}");
}

#[test]
fn sigterm_drops_a_copy_that_cannot_commit_within_the_grace() {
    let _lock = key_lock();
    let emu = Emulator::start(Kind::Fauxqs);
    let sqs = Sqs::new_queue(&emu.endpoint());
    sqs.send_all(&sample_bodies()[..50]);
    let db = TestDb::new("feeder");
    let mut blocker = db.client();
    let mut tx = blocker.transaction().expect("begin");
    tx.batch_execute("LOCK TABLE user_logins IN ACCESS EXCLUSIVE MODE").expect("lock");
    let f = Feeder::spawn(&db.url, &emu.endpoint(), &sqs.queue_url, &["run"], &[]);
    let (code, log, took) = sigterm_when(f, "feeder started");
    assert_eq!(code, Some(75), "{log}");
    tx.rollback().expect("unlock");
    assert_eq!(totals(&db), (0, 0, 0), "the abandoned COPY rolled back\n{log}");
    let (visible, in_flight) = sqs.depth();
    assert_eq!(visible + in_flight, 50, "nothing deleted\n{log}");
    report::signal_row("copy", "a COPY blocked by a table lock", code, took);
}

// ---- feeder load streams (issue 14.3) and partitioned targets (issue 11.5).

fn load(db_url: &str, file: &std::path::Path, env: &[(&str, &str)]) -> Feeder {
    let path = file.display().to_string();
    Feeder::spawn(db_url, "http://127.0.0.1:9", "http://127.0.0.1:9/0/q", &["load", &path], env)
}

#[test]
fn load_of_a_large_file_keeps_memory_bounded_and_reports_progress() {
    let _lock = key_lock();
    let db = TestDb::new("feeder");
    let file = std::env::temp_dir().join(format!("{}.jsonl", unique("big")));
    let mut lines = 0u64;
    {
        use std::io::Write;
        let mut w = std::io::BufWriter::new(std::fs::File::create(&file).expect("create"));
        let filler = "x".repeat(80);
        let mut written = 0u64;
        while written < 200 << 20 {
            let line = format!(
                "{{\"user_id\":\"u{lines}\",\"ip\":\"10.{}.{}.{}\",\"pad\":\"{filler}\"}}\n",
                lines / 65536 % 256,
                lines / 256 % 256,
                lines % 256
            );
            w.write_all(line.as_bytes()).expect("write");
            written += line.len() as u64;
            lines += 1;
        }
    }
    let f = load(&db.url, &file, &[("FEEDER_PROGRESS_INTERVAL", "1")]);
    let (status, log, peak_kb) = f.wait_measuring_rss(Duration::from_secs(600));
    let _ = std::fs::remove_file(&file);
    assert!(status.success(), "{status}\n{log}");
    println!("feeder load of a 200 MiB file ({lines} lines): peak RSS {} MiB", peak_kb / 1024);
    assert!(peak_kb < 100 * 1024, "peak RSS {peak_kb} KiB for a 200 MiB input\n{log}");
    assert_eq!(totals(&db), (lines as i64, 0, 0), "{log}");
    assert!(log.contains("% of") && log.contains("ETA"), "progress lines\n{log}");
}

#[test]
fn a_partitioned_user_logins_takes_rows_into_their_partitions_and_rejects_the_rest() {
    let _lock = key_lock();
    let db = TestDb::new("feeder");
    // Partitioned by create_date (a load's is today's UTC date), the unique index with it. At
    // first only yesterday's partition exists: no partition takes today's rows.
    db.client()
        .batch_execute(
            "DROP TABLE user_logins CASCADE; \
             CREATE TABLE user_logins (user_id varchar(128), device_type varchar(32), \
               masked_ip varchar(256), masked_device_id varchar(256), locale varchar(32), \
               app_version integer, create_date date, message_id text COLLATE \"C\") \
               PARTITION BY RANGE (create_date); \
             CREATE UNIQUE INDEX user_logins_message_id_key ON user_logins (message_id, create_date); \
             CREATE TRIGGER user_logins_mask BEFORE INSERT OR UPDATE ON user_logins \
               FOR EACH ROW EXECUTE FUNCTION mask_columns('masked_ip', 'masked_device_id'); \
             CREATE TABLE user_logins_yesterday PARTITION OF user_logins FOR VALUES \
               FROM ((now() AT TIME ZONE 'UTC')::date - 1) TO ((now() AT TIME ZONE 'UTC')::date);",
        )
        .expect("partition user_logins");
    let body = |i: usize, locale: &str| {
        format!(r#"{{"user_id":"p{i}","device_type":"ios","ip":"10.8.0.{i}","locale":"{locale}"}}"#)
    };
    let load_lines = |name: &str, lines: Vec<String>| {
        let file = std::env::temp_dir().join(format!("{}.jsonl", unique(name)));
        std::fs::write(&file, lines.join("\n")).expect("write input");
        let (status, log) = load(&db.url, &file, &[]).wait(Duration::from_secs(60));
        let _ = std::fs::remove_file(&file);
        assert!(status.success(), "{status}\n{log}");
        log
    };
    let log = load_lines("nopart", (0..3).map(|i| body(i, "en")).collect());
    assert_eq!(totals(&db), (0, 3, 0), "rejects, not a stuck batch\n{log}");
    // Today's partition, with a CHECK one message violates.
    db.client()
        .batch_execute(
            "CREATE TABLE user_logins_today PARTITION OF user_logins FOR VALUES \
               FROM ((now() AT TIME ZONE 'UTC')::date) TO ((now() AT TIME ZONE 'UTC')::date + 1); \
             ALTER TABLE user_logins_today ADD CONSTRAINT today_locale \
               CHECK (locale IS DISTINCT FROM 'xx');",
        )
        .expect("add today's partition");
    let log =
        load_lines("parts", (10..20).map(|i| body(i, if i == 15 { "xx" } else { "en" })).collect());
    let mut c = db.client();
    assert_eq!(count(&mut c, "SELECT count(*) FROM user_logins_today"), 9, "{log}");
    assert_eq!(count(&mut c, "SELECT count(*) FROM user_logins_yesterday"), 0);
    let rejects: Vec<(String, String)> = c
        .query("SELECT reason, detail FROM user_login_rejects ORDER BY message_id", &[])
        .expect("rejects")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rejects.len(), 4, "{rejects:?}\n{log}");
    assert!(rejects.iter().all(|(reason, _)| reason == "database_error"), "{rejects:?}");
    assert!(rejects.iter().any(|(_, d)| d.contains("today_locale")), "{rejects:?}");
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM user_logins WHERE masked_ip LIKE '10.%'"),
        0,
        "masked in the partition"
    );
}

// ---- TLS to PostgreSQL (issue 13.1), against a hostssl-only cluster made for the test.

#[test]
fn tls_modes_against_a_hostssl_only_cluster() {
    let cluster = integration::tls::TlsCluster::start();
    let file = std::env::temp_dir().join(format!("{}.jsonl", unique("tls")));
    let data = repo_root_file("data/sample_messages.jsonl");
    std::fs::copy(&data, &file).expect("copy samples");
    let ca = cluster.ca.display().to_string();
    let run = |url: &str, env: &[(&str, &str)]| {
        let mut env = env.to_vec();
        if !env.iter().any(|(k, _)| *k == "FEEDER_STARTUP_TIMEOUT") {
            env.push(("FEEDER_STARTUP_TIMEOUT", "60"));
        }
        let started = std::time::Instant::now();
        let (status, log) = load(url, &file, &env).wait(Duration::from_secs(60));
        (status.code(), log, started.elapsed())
    };
    let rows = || cluster.psql("SELECT count(*) FROM user_logins");

    // verify-full: the chain and the host name.
    let (code, log, _) = run(
        &cluster.url("postgres", "localhost", &format!("sslmode=verify-full&sslrootcert={ca}")),
        &[],
    );
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(rows(), "99");
    // verify-ca: the chain only, so 127.0.0.1 (not in the certificate) is fine.
    let (code, log, _) = run(
        &cluster.url("postgres", "127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}")),
        &[],
    );
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("duplicates 100"), "{log}");
    // require with no root: encrypted, unchecked (libpq's meaning). From PG* variables.
    let bare = format!("postgres://postgres:postgres@localhost:{}/postgres", cluster.port);
    let (code, log, _) = run(&bare, &[("PGSSLMODE", "require")]);
    assert_eq!(code, Some(0), "{log}");
    // A client certificate instead of a password (pg_hba: cert for feeder_cert).
    let cert_url = format!(
        "postgres://feeder_cert@localhost:{}/postgres?sslmode=verify-full&sslrootcert={ca}&sslcert={}&sslkey={}",
        cluster.port,
        cluster.client_cert.display(),
        cluster.client_key.display()
    );
    let (code, log, _) = run(&cert_url, &[]);
    assert_eq!(code, Some(0), "{log}");
    // sslrootcert and sslmode from PGSSLROOTCERT/PGSSLMODE, as libpq reads them.
    let (code, log, _) =
        run(&bare, &[("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", ca.as_str())]);
    assert_eq!(code, Some(0), "{log}");

    // Failures: one line naming the cause, at once (not after the 60 s start-up timeout).
    let one_error = |log: &str| -> String {
        let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
        assert_eq!(errors.len(), 1, "{log}");
        assert!(!log.contains("retrying"), "no retrying: {log}");
        errors[0].to_owned()
    };
    let wrong_ca = cluster.wrong_ca.display().to_string();
    let (code, log, took) = run(
        &cluster.url(
            "postgres",
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={wrong_ca}"),
        ),
        &[],
    );
    assert_eq!(code, Some(1), "{log}");
    assert!(one_error(&log).contains("not signed by a trusted CA"), "{log}");
    assert!(took < Duration::from_secs(20), "failed at start, not after the timeout: {took:?}");
    let (code, log, took) = run(
        &cluster.url("postgres", "127.0.0.1", &format!("sslmode=verify-full&sslrootcert={ca}")),
        &[],
    );
    assert_eq!(code, Some(1), "{log}");
    assert!(one_error(&log).contains("not valid for host name"), "{log}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    // sslmode=disable: the server accepts TLS only.
    let (code, log, took) = run(&cluster.url("postgres", "localhost", "sslmode=disable"), &[]);
    assert_eq!(code, Some(1), "{log}");
    assert!(one_error(&log).contains("no encryption"), "{log}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(!log.contains("postgres:postgres"), "no password in logs");

    // A self-signed X.509 v1 certificate, as a Citus cluster's automatic TLS makes it:
    // `require` and the default `prefer` check nothing about it, as libpq does.
    cluster.use_self_signed_v1_certificate();
    cluster.psql("TRUNCATE user_logins, user_login_rejects");
    let (code, log, _) = run(&cluster.url("postgres", "localhost", "sslmode=require"), &[]);
    assert_eq!(code, Some(0), "require, v1 certificate: {log}");
    assert_eq!(rows(), "99");
    let (code, log, _) = run(&bare, &[]);
    assert_eq!(code, Some(0), "prefer, v1 certificate: {log}");
    assert!(log.contains("duplicates 100"), "{log}");

    // A server without TLS: `require` never connects in the clear, and the first retry line
    // already says why (before: tokio-postgres's bare "server does not support TLS"). It is
    // retried, not fatal: the same error comes from a server that could not start a backend.
    cluster.turn_tls_off();
    cluster.psql("TRUNCATE user_logins, user_login_rejects");
    let (code, log, _) = run(
        &cluster.url("postgres", "localhost", "sslmode=require"),
        &[("FEEDER_STARTUP_TIMEOUT", "2")],
    );
    assert_eq!(code, Some(1), "{log}");
    let why = "TLS: the server did not take up the TLS that sslmode requires (ssl = off";
    let retry = log.lines().find(|l| l.contains("retrying")).unwrap_or_default();
    assert!(retry.contains(why), "the retry line names the cause: {log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(errors.len() == 1 && errors[0].contains(why), "{log}");
    assert_eq!(rows(), "0", "nothing loaded in the clear");
    let (code, log, _) = run(&bare, &[]);
    assert_eq!(code, Some(0), "prefer, no TLS: {log}");
    assert_eq!(rows(), "99");
    let _ = std::fs::remove_file(&file);
}

/// A request can take effect at SQS and its answer be lost: a delete that did delete, a
/// receive that made its messages invisible. Neither may let a drain end while messages are
/// still to come back (here those of the lost receives, invisible for the visibility timeout).
#[test]
fn lost_answers_to_deletes_then_receives_never_end_a_drain_early() {
    let _lock = key_lock();
    let emu = Emulator::start(Kind::Fauxqs);
    let sqs = Sqs::new_queue(&emu.endpoint());
    let n = 10_000;
    let bodies: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"user_id": "lost-{i}", "ip": "10.9.{}.{}", "device_id": "d-{i}"}}"#,
                i / 256,
                i % 256
            )
        })
        .collect();
    sqs.send_all(&bodies);
    let db = TestDb::new("feeder");
    let proxy = integration::emulator::Proxy::start(emu.port);
    let env = [
        ("FEEDER_BATCH_SIZE", "50"),
        ("FEEDER_RECEIVERS", "1"),
        ("FEEDER_VISIBILITY_TIMEOUT", "10"),
    ];
    let f = Feeder::spawn(&db.url, &proxy.endpoint(), &sqs.queue_url, &["drain"], &env);
    let rows = || {
        db.client()
            .query_one("SELECT count(*) FROM user_logins", &[])
            .expect("count")
            .get::<_, i64>(0)
    };
    assert!(wait_until(Duration::from_secs(60), || rows() >= 500), "{}", f.log_text());
    // Deletes take effect, their answers are lost: the feeder cannot know these are gone.
    proxy.lose_responses_to(&["DeleteMessageBatch"]);
    assert!(wait_until(Duration::from_secs(60), || rows() >= 2_000), "{}", f.log_text());
    // Then receives too: the messages they took stay invisible, held by no one.
    proxy.lose_responses_to(&["DeleteMessageBatch", "ReceiveMessage"]);
    std::thread::sleep(Duration::from_secs(2));
    proxy.lose_responses_to(&[]);
    let (status, log) = f.wait(Duration::from_secs(180));
    assert!(status.success(), "{log}");
    assert_eq!(totals(&db), (n as i64, 0, 0), "every message loaded once\n{log}");
    assert_eq!(sqs.depth(), (0, 0), "queue ends empty");
    let summary = Summary::parse(&log);
    report::row(
        "lost_answers",
        "lost SQS answers",
        "10,000 messages; the answers to deletes lost while 1,500 rows load, then those to \
         receives too for 2 s (the requests take effect)",
        &format!(
            "{n} rows, 0 duplicate ids, queue empty; the feeder received {} and counted {} \
             duplicates",
            summary.received, summary.duplicates
        ),
    );
}

/// How many messages [`messages_and_a_dead_consumer`] puts on its queue.
const MESSAGES_BESIDE_A_DEAD_CONSUMER: usize = 300;

/// A fresh fauxqs queue holding `n` small valid messages, user ids `<tag>-<i>`.
fn queued_messages(tag: &str, n: usize) -> (Emulator, Sqs) {
    let emu = Emulator::start(Kind::Fauxqs);
    let sqs = Sqs::new_queue(&emu.endpoint());
    let bodies: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"user_id": "{tag}-{i}", "ip": "10.6.{}.{}"}}"#, i / 256, i % 256))
        .collect();
    sqs.send_all(&bodies);
    (emu, sqs)
}

/// A fresh queue of 300 messages, 10 of which another consumer received (invisible for 8 s)
/// and will never delete: a drain that ends before they come back loses them.
fn messages_and_a_dead_consumer(tag: &str) -> (Emulator, Sqs) {
    let (emu, sqs) = queued_messages(tag, MESSAGES_BESIDE_A_DEAD_CONSUMER);
    let mut elsewhere = Vec::new();
    while elsewhere.len() < 10 {
        elsewhere.extend(sqs.receive(8).into_iter().take(10 - elsewhere.len()));
    }
    (emu, sqs)
}

/// A message whose visibility ran out while the feeder held it comes back, and the feeder may
/// receive it again under a new receipt: it must not count it twice as its own, or a drain ends
/// while another consumer's messages are still to come back (seen after a SIGKILL).
#[test]
fn a_drain_never_counts_a_message_whose_lease_ran_out_as_its_own() {
    let _lock = key_lock();
    let (emu, sqs) = messages_and_a_dead_consumer("lease");
    let n = MESSAGES_BESIDE_A_DEAD_CONSUMER;
    let db = TestDb::new("feeder");
    // The feeder's batches cannot commit for a while, and its keep-alives never reach SQS: the
    // leases of 1 s run out and the messages come back to its own receivers.
    let mut blocker = db.client();
    let mut tx = blocker.transaction().expect("begin");
    tx.batch_execute("LOCK TABLE user_logins IN ACCESS EXCLUSIVE MODE").expect("lock");
    let proxy = integration::emulator::Proxy::start(emu.port);
    proxy.refuse(&["ChangeMessageVisibilityBatch"]);
    let env = [("FEEDER_BATCH_SIZE", "50"), ("FEEDER_VISIBILITY_TIMEOUT", "1")];
    let f = Feeder::spawn(&db.url, &proxy.endpoint(), &sqs.queue_url, &["drain"], &env);
    std::thread::sleep(Duration::from_secs(4));
    tx.rollback().expect("unlock");
    let (status, log) = f.wait(Duration::from_secs(120));
    assert!(status.success(), "{log}");
    assert_eq!(totals(&db), (n as i64, 0, 0), "the other consumer's messages too\n{log}");
    assert_eq!(sqs.depth(), (0, 0), "queue ends empty");
    report::row(
        "lease_ran_out",
        "leases run out",
        "300 messages, 10 held by a consumer that dies; the feeder's commits blocked 4 s and its \
         keep-alives refused, so its leases of 1 s run out and it receives its messages again",
        "300 rows, 0 duplicate ids, queue empty: the drain waited for the dead consumer's 10",
    );
}

/// A message sent with a delay is not visible yet, nor in flight: a drain waits for it.
#[test]
fn a_drain_waits_for_a_delayed_message() {
    let _lock = key_lock();
    let emu = Emulator::start(Kind::Fauxqs);
    let sqs = Sqs::new_queue(&emu.endpoint());
    sqs.send_all(&sample_bodies()[..5]);
    sqs.send_delayed(&sample_bodies()[5], 3);
    let db = TestDb::new("feeder");
    let log = feeder::drain(&db.url, &emu.endpoint(), &sqs.queue_url, Duration::from_secs(60));
    let (rows, rejects, duplicates) = totals(&db);
    assert_eq!((rows + rejects, duplicates), (6, 0), "the delayed message too\n{log}");
    assert_eq!(sqs.depth(), (0, 0));
}

/// An SQS answer that never comes (a half-open connection) must not hang a drain: each
/// request has a deadline, and is tried again after it.
#[test]
fn an_sqs_answer_that_never_comes_does_not_hang_a_drain() {
    let _lock = key_lock();
    let emu = Emulator::start(Kind::Fauxqs);
    let sqs = Sqs::new_queue(&emu.endpoint());
    sqs.send_all(&sample_bodies()[..20]);
    let db = TestDb::new("feeder");
    let proxy = integration::emulator::Proxy::start(emu.port);
    proxy.stall(&["ReceiveMessage"]);
    let f = Feeder::spawn(&db.url, &proxy.endpoint(), &sqs.queue_url, &["drain"], &[]);
    assert!(wait_until(Duration::from_secs(30), || f.log_text().contains("feeder started")));
    std::thread::sleep(Duration::from_secs(2));
    proxy.stall(&[]);
    let (status, log) = f.wait(Duration::from_secs(120));
    assert!(status.success(), "{log}");
    let (rows, rejects, duplicates) = totals(&db);
    assert_eq!((rows + rejects, duplicates), (20, 0), "{log}");
    assert_eq!(sqs.depth(), (0, 0));
}

/// A role without sqs:DeleteMessage: the feeder stops with one line naming the permission
/// instead of loading every message again as a duplicate for ever (each delete retried, then
/// left to redelivery). Nothing is lost: what it loaded stays in the queue, and a run with the
/// permission loads the rest and none twice.
#[test]
fn a_denied_delete_stops_the_feeder_with_the_permission_to_grant() {
    let _lock = key_lock();
    let n = 1_000;
    let (emu, sqs) = queued_messages("denied", n);
    let db = TestDb::new("feeder");
    let proxy = integration::emulator::Proxy::start(emu.port);
    proxy.deny(&["DeleteMessageBatch"]);
    let env = [("FEEDER_BATCH_SIZE", "50"), ("FEEDER_VISIBILITY_TIMEOUT", "2")];
    let f = Feeder::spawn(&db.url, &proxy.endpoint(), &sqs.queue_url, &["drain"], &env);
    let (status, log) = f.wait(Duration::from_secs(60));
    assert_eq!(status.code(), Some(1), "{log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "one line\n{log}");
    assert!(errors[0].contains("sqs:DeleteMessage"), "names the permission: {}", errors[0]);
    let (loaded, _, duplicates) = totals(&db);
    assert!(loaded > 0 && loaded < n as i64, "stopped after the first denied delete\n{log}");
    assert_eq!(duplicates, 0);
    // Nothing deleted: every message is still in the queue, waiting or held until its
    // visibility runs out.
    let (waiting, in_flight) = sqs.depth();
    assert_eq!(waiting + in_flight, n as u64);
    proxy.deny(&[]);
    let f = Feeder::spawn(&db.url, &proxy.endpoint(), &sqs.queue_url, &["drain"], &env);
    let (status, log) = f.wait(Duration::from_secs(120));
    assert!(status.success(), "{log}");
    assert_eq!(totals(&db), (n as i64, 0, 0), "the rest loaded, none twice\n{log}");
    assert_eq!(sqs.depth(), (0, 0));
    report::row(
        "denied_delete",
        "a denied delete",
        "1,000 messages; every DeleteMessageBatch answered 403 AccessDenied, as for a role \
         without sqs:DeleteMessage",
        &format!(
            "exit 1 after {loaded} rows, one line naming sqs:DeleteMessage, all 1,000 still in \
             the queue; a run with the permission: 1,000 rows, 0 duplicate ids, queue empty"
        ),
    );
}

/// SQS throttling the deletes (a 400 ThrottlingException, past the SDK's own retries) is not a
/// reason to stop: what cannot be deleted now is left to redelivery and skipped as a duplicate,
/// and the drain ends with every message loaded once.
#[test]
fn throttled_deletes_do_not_stop_a_drain() {
    let _lock = key_lock();
    let n = 300;
    let (emu, sqs) = queued_messages("throttled", n);
    let db = TestDb::new("feeder");
    let proxy = integration::emulator::Proxy::start(emu.port);
    proxy.throttle(&["DeleteMessageBatch"]);
    let env = [("FEEDER_BATCH_SIZE", "50"), ("FEEDER_VISIBILITY_TIMEOUT", "2")];
    let f = Feeder::spawn(&db.url, &proxy.endpoint(), &sqs.queue_url, &["drain"], &env);
    assert!(wait_until(Duration::from_secs(60), || totals(&db).0 >= 100), "{}", f.log_text());
    std::thread::sleep(Duration::from_secs(3));
    proxy.throttle(&[]);
    let (status, log) = f.wait(Duration::from_secs(120));
    assert!(status.success(), "{log}");
    assert_eq!(totals(&db), (n as i64, 0, 0), "every message loaded once\n{log}");
    assert_eq!(sqs.depth(), (0, 0), "queue ends empty");
}

/// Messages deleted while the feeder reads the queue's counts were its own when it started the
/// read and are gone from the counts when SQS answers: counting them as its own would let
/// them stand in for another consumer's messages, and a drain end early.
#[test]
fn deletes_that_finish_during_a_read_of_the_counts_do_not_end_a_drain_early() {
    let _lock = key_lock();
    let (emu, sqs) = messages_and_a_dead_consumer("count");
    let n = MESSAGES_BESIDE_A_DEAD_CONSUMER;
    let db = TestDb::new("feeder");
    // Each read of the counts reaches SQS 1.5 s late, while the feeder's batches commit and
    // their deletes go through.
    let proxy = integration::emulator::Proxy::start(emu.port);
    proxy.delay(&["GetQueueAttributes"], Duration::from_millis(1500));
    let env = [("FEEDER_BATCH_SIZE", "50")];
    let f = Feeder::spawn(&db.url, &proxy.endpoint(), &sqs.queue_url, &["drain"], &env);
    let (status, log) = f.wait(Duration::from_secs(120));
    assert!(status.success(), "{log}");
    let depth = sqs.depth();
    assert_eq!(totals(&db), (n as i64, 0, 0), "the other consumer's too (queue: {depth:?})\n{log}");
    assert_eq!(depth, (0, 0), "queue ends empty");
}
