//! The feeder binary against real SQS emulators (fauxqs and moto) and the real PostgreSQL.

use integration::emulator::{Emulator, Kind, Sqs};
use integration::feeder::{self, Feeder, Summary};
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
fn sigterm_finishes_the_batch_in_flight_and_exits_zero() {
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
        &[("FEEDER_BATCH_SIZE", "200")],
    );
    let started = wait_until(Duration::from_secs(30), || totals(&db).0 > 0);
    assert!(started, "feeder loaded nothing:\n{}", f.log_text());
    f.signal(libc::SIGTERM);
    let (status, log) = f.wait(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}\n{log}");
    let loaded = totals(&db).0 as u64;
    let (visible, in_flight) = sqs.depth();
    assert_eq!(in_flight, 0, "nothing left in flight\n{log}");
    assert_eq!(
        visible + loaded,
        3_000,
        "every message is either loaded and deleted, or still on the queue\n{log}"
    );
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
    assert_eq!(totals(&db), (2_000, 0, 0), "every message exactly once\n{log}");
    assert_eq!(sqs.depth(), (0, 0));
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
    let (status, log) = f.wait(Duration::from_secs(60));
    assert!(status.success(), "{log}");
    assert!(log.contains("stopped after"), "{log}");
    let loaded = rows();
    assert!(loaded > 0 && loaded < total, "stopped mid-load: {loaded}\n{log}");
    assert_eq!(loaded % 20, 0, "only whole batches are committed");
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
