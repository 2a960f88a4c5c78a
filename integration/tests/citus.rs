//! The ingest path on a Citus cluster: a coordinator and two workers on loopback
//! (`scripts/citus.sh`), `user_logins` and `user_login_rejects` distributed by `message_id`.
//!
//! These tests need the cluster, so they are ignored by a plain `cargo test`; `make test-citus`
//! (and `make test` when Citus is installed) starts it and runs them with `--ignored`, passing
//! the coordinator's and a worker's URLs in `CITUS_COORDINATOR_URL` and `CITUS_WORKER_URL`.
//! Each test gets a database of its own, distributed by the script.

use integration::corpus;
use integration::emulator::{self, Emulator, Kind, Sqs};
use integration::feeder::{self, Summary};
use integration::*;
use std::time::Duration;

const NEEDS: &str = "needs a Citus cluster: make test-citus";

fn base_url(var: &str) -> String {
    std::env::var(var)
        .unwrap_or_else(|_| panic!("{var} is not set: run these through make test-citus"))
}

/// A database on the cluster with the schema applied and the tables distributed.
struct CitusDb {
    name: String,
}

impl CitusDb {
    fn new() -> Self {
        let name = unique("citus");
        let status = std::process::Command::new("bash")
            .arg(emulator::repo_root().join("scripts/citus.sh"))
            .args(["schema", &name])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run scripts/citus.sh schema");
        assert!(status.success(), "scripts/citus.sh schema {name} failed");
        CitusDb { name }
    }

    /// The URL of this database on the coordinator (or on a worker).
    fn url(&self, var: &str) -> String {
        let base = base_url(var);
        let (head, query) = base.split_once('?').unwrap_or((&base, ""));
        let head = head.rsplit_once('/').map_or(head, |(h, _)| h);
        if query.is_empty() {
            format!("{head}/{}", self.name)
        } else {
            format!("{head}/{}?{query}", self.name)
        }
    }

    fn coordinator(&self) -> postgres::Client {
        connect(&self.url("CITUS_COORDINATOR_URL"))
    }

    fn worker(&self) -> postgres::Client {
        connect(&self.url("CITUS_WORKER_URL"))
    }

    /// Rows, rejects, and ids in both tables (must be 0), as the coordinator sees them.
    fn accounting(&self) -> (i64, i64, i64) {
        let row = self
            .coordinator()
            .query_one(
                "SELECT (SELECT count(*) FROM user_logins), (SELECT count(*) FROM user_login_rejects), \
                 (SELECT count(*) FROM user_logins l JOIN user_login_rejects r USING (message_id))",
                &[],
            )
            .expect("accounting");
        (row.get(0), row.get(1), row.get(2))
    }

    /// Values in the masked columns of every shard, on every node, that are not tokens.
    fn plaintext_on_shards(&self) -> i64 {
        let mut c = self.coordinator();
        let counts: Vec<String> = c
            .query(
                "SELECT result FROM run_command_on_shards('user_logins', \
                   $$SELECT count(*) FROM %s WHERE masked_ip NOT LIKE 'pm1.%%' OR masked_device_id NOT LIKE 'pm1.%%'$$) \
                 UNION ALL SELECT result FROM run_command_on_shards('user_login_rejects', \
                   $$SELECT count(*) FROM %s WHERE payload NOT LIKE 'pm1.%%'$$)",
                &[],
            )
            .expect("per shard")
            .iter()
            .map(|r| r.get(0))
            .collect();
        counts.iter().map(|n| n.parse::<i64>().expect("a count")).sum()
    }
}

impl Drop for CitusDb {
    fn drop(&mut self) {
        let mut c = connect(&base_url("CITUS_COORDINATOR_URL"));
        // Two statements: DROP DATABASE cannot run in a multi-statement query's transaction.
        let _ = c.batch_execute("SET citus.enable_create_database_propagation = on");
        let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

#[test]
#[ignore = "needs a Citus cluster: make test-citus"]
fn sample_messages_through_the_coordinator_land_on_the_shards_masked() {
    let _ = NEEDS;
    let db = CitusDb::new();
    let mut c = db.coordinator();
    let counts = copy_ingest(&mut c, &sample_messages()).expect("load through the coordinator");
    assert_eq!(counts, Counts { loaded: 99, duplicates: 0, rejected: 1 });
    assert_eq!(db.accounting(), (99, 1, 0), "every message a row or a reject, visible to queries");
    let shell: i64 = one(
        &mut c,
        "SELECT pg_relation_size('user_logins') + pg_relation_size('user_login_rejects')",
    );
    assert_eq!(shell, 0, "nothing below Citus, in the coordinator's shell tables");
    assert_eq!(db.plaintext_on_shards(), 0);
    let back: String =
        one(&mut c, "SELECT unmask_pii(masked_ip) FROM user_logins WHERE message_id = 'sample-1'");
    assert_eq!(
        back, "199.172.111.135",
        "a token made on a worker's shard unmasks on the coordinator"
    );
    // A redelivery makes no second row.
    let again = copy_ingest(&mut c, &sample_messages()).expect("redelivery");
    assert_eq!(again, Counts { loaded: 0, duplicates: 100, rejected: 0 });
    assert_eq!(db.accounting(), (99, 1, 0));
}

#[test]
#[ignore = "needs a Citus cluster: make test-citus"]
fn a_loader_on_a_worker_and_concurrent_loaders_each_make_one_row_per_id() {
    let db = CitusDb::new();
    let make = |prefix: &str| -> Vec<Message> {
        (0..500)
            .map(|i| {
                Message::new(
                    format!("{prefix}{i:04}"),
                    format!(r#"{{"user_id":"u{i}","ip":"10.3.{}.{}"}}"#, i / 256, i % 256),
                )
            })
            .collect()
    };
    let on_worker = copy_ingest(&mut db.worker(), &make("w")).expect("load through a worker");
    assert_eq!(on_worker.loaded, 500);
    // Three loaders, two on the coordinator and one on a worker, on the same ids.
    let urls = [
        db.url("CITUS_COORDINATOR_URL"),
        db.url("CITUS_COORDINATOR_URL"),
        db.url("CITUS_WORKER_URL"),
    ];
    let handles: Vec<_> = urls
        .into_iter()
        .map(|url| {
            let msgs = make("c");
            std::thread::spawn(move || {
                copy_ingest(&mut connect(&url), &msgs).expect("concurrent load")
            })
        })
        .collect();
    let totals = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .fold(0, |acc, c| acc + c.loaded + c.duplicates);
    assert_eq!(totals, 1500, "every message accounted for");
    assert_eq!(db.accounting(), (1000, 0, 0), "one row per id");
    assert_eq!(db.plaintext_on_shards(), 0);
}

#[test]
#[ignore = "needs a Citus cluster: make test-citus"]
fn hostile_bodies_each_land_where_they_should_on_citus() {
    let db = CitusDb::new();
    let cases = corpus::hostile(false);
    let messages: Vec<Message> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| Message::new(format!("h{i}"), c.body.clone()))
        .collect();
    let mut c = db.coordinator();
    copy_ingest(&mut c, &messages).expect("load");
    for (i, case) in cases.iter().enumerate() {
        let id = format!("h{i}");
        let reason: Option<String> = c
            .query_opt("SELECT reason FROM user_login_rejects WHERE message_id = $1", &[&id])
            .expect("reject")
            .map(|r| r.get(0));
        assert_eq!(reason.as_deref(), case.expect, "{id}: {:?}", case.body);
    }
    let (rows, rejects, both) = db.accounting();
    assert_eq!((rows + rejects, both), (cases.len() as i64, 0));
    assert_eq!(db.plaintext_on_shards(), 0);
}

#[test]
#[ignore = "needs a Citus cluster: make test-citus"]
fn a_refused_message_is_named_and_the_feeder_drains_the_queue_into_the_cluster() {
    let db = CitusDb::new();
    let mut c = db.coordinator();
    c.batch_execute("ALTER TABLE user_logins ADD CONSTRAINT no_web CHECK (device_type <> 'web')")
        .expect("check");
    let bad = Message::new("bad", r#"{"user_id":"u","device_type":"web","ip":"198.51.100.9"}"#);
    let err = copy_ingest(&mut c, &[bad]).expect_err("the CHECK refuses it");
    let e = err.as_db_error().expect("a database error");
    assert_eq!(e.code().code(), "23514");
    assert!(format!("{} {:?}", e.message(), e.detail()).contains("no_web"), "{e:?}");
    assert!(!format!("{e:?}").contains("pm1."), "no token in the error");

    // The feeder, draining an SQS queue into the cluster, isolates the refused message.
    let emu = Emulator::start(Kind::Fauxqs);
    let sqs = Sqs::new_queue(&emu.endpoint());
    let mut bodies: Vec<String> =
        include_str!("../../data/sample_messages.jsonl").lines().map(str::to_owned).collect();
    bodies.push(r#"{"user_id":"w","device_type":"web","ip":"198.51.100.10"}"#.to_owned());
    sqs.send_all(&bodies);
    let log = feeder::drain(
        &db.url("CITUS_COORDINATOR_URL"),
        &emu.endpoint(),
        &sqs.queue_url,
        Duration::from_secs(180),
    );
    let summary = Summary::parse(&log);
    assert!(summary.accounts_for_every_message(), "{summary:?}\n{log}");
    assert_eq!(db.accounting(), (99, 2, 0), "{log}");
    let reason: String =
        one(&mut c, "SELECT reason FROM user_login_rejects WHERE detail LIKE '%no_web%'");
    assert_eq!(reason, "database_error");
    assert_eq!(sqs.depth(), (0, 0), "queue ends empty");
    assert_eq!(db.plaintext_on_shards(), 0);
}
