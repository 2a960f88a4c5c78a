//! The ingest path against the real server: COPY of raw bodies into `login_ingest`.

use integration::*;
use std::collections::HashMap;

#[test]
fn sample_messages_give_99_rows_and_1_reject_that_all_unmask() {
    let _lock = key_lock();
    let db = TestDb::new("ingest");
    let mut c = db.client();
    let messages = sample_messages();
    let counts = copy_ingest(&mut c, &messages).expect("copy");
    assert_eq!(counts, Counts { loaded: 99, duplicates: 0, rejected: 1 });
    assert_eq!(count(&mut c, "SELECT count(*) FROM user_logins"), 99);

    let reject = c
        .query_one(
            "SELECT message_id, reason, detail, unmask_pii(payload) FROM user_login_rejects",
            &[],
        )
        .expect("reject");
    assert_eq!(reject.get::<_, String>(0), "sample-13");
    assert_eq!(reject.get::<_, String>(1), "missing_field");
    assert_eq!(reject.get::<_, String>(2), "missing field user_id");
    assert_eq!(reject.get::<_, String>(3), r#"{"foo": "oops_wrong_msg_type", "bar": "123"}"#);

    // Every row matches its source message, and every masked value unmasks to the original.
    let rows = c
        .query(
            "SELECT message_id, user_id, device_type, unmask_pii(masked_ip), unmask_pii(masked_device_id), locale, \
             app_version_text(app_version), create_date = (now() AT TIME ZONE 'UTC')::date FROM user_logins",
            &[],
        )
        .expect("rows");
    let by_id: HashMap<String, serde_json::Value> = messages
        .iter()
        .map(|m| (m.id.clone(), serde_json::from_str(&m.body).expect("sample is JSON")))
        .collect();
    for r in &rows {
        let src = &by_id[&r.get::<_, String>(0)];
        assert_eq!(src["user_id"].as_str(), Some(r.get::<_, String>(1).as_str()));
        assert_eq!(src["device_type"].as_str(), r.get::<_, Option<String>>(2).as_deref());
        assert_eq!(src["ip"].as_str(), Some(r.get::<_, String>(3).as_str()));
        assert_eq!(src["device_id"].as_str(), Some(r.get::<_, String>(4).as_str()));
        assert_eq!(src["locale"].as_str(), r.get::<_, Option<String>>(5).as_deref());
        let version = src["app_version"].as_str().expect("string version");
        let decoded: String = r.get(6);
        let parts: Vec<u32> = version.split('.').map(|p| p.parse().expect("digits")).collect();
        let want = format!("{}.{}.{}", parts[0], parts[1], parts.get(2).copied().unwrap_or(0));
        assert_eq!(decoded, want, "{version}");
        assert!(r.get::<_, bool>(7), "create_date is the UTC date of sent_at");
    }
    assert_eq!(rows.len(), 99);
    assert_eq!(count(&mut c, "SELECT count(*) FROM user_logins WHERE locale IS NULL"), 29);
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM user_logins WHERE app_version = 96000"),
        1,
        "0.96"
    );
}

#[test]
fn loading_the_same_batch_twice_changes_nothing() {
    let _lock = key_lock();
    let db = TestDb::new("ingest");
    let mut c = db.client();
    copy_ingest(&mut c, &sample_messages()).expect("first");
    let snapshot = |c: &mut postgres::Client| {
        c.query("SELECT message_id, masked_ip FROM user_logins UNION ALL SELECT message_id, payload FROM user_login_rejects ORDER BY 1", &[])
            .expect("snapshot")
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, Option<String>>(1)))
            .collect::<Vec<_>>()
    };
    let before = snapshot(&mut c);
    let again = copy_ingest(&mut c, &sample_messages()).expect("second");
    assert_eq!(again, Counts { loaded: 0, duplicates: 100, rejected: 0 });
    assert_eq!(snapshot(&mut c), before);
}

#[test]
fn adversarial_bodies_each_land_where_they_should() {
    let _lock = key_lock();
    let db = TestDb::new("ingest");
    let mut c = db.client();
    let big = format!(r#"{{"user_id":"big","pad":"{}"}}"#, "x".repeat(256 * 1024 - 40));
    let big_bad = format!(r#"{{"user_id":"big", {}"#, "y".repeat(256 * 1024));
    let cases: Vec<(&str, String, Option<&str>)> = vec![
        (
            "ok-unicode",
            r#"{"user_id":"ü🦀","ip":"::1","device_id":"日本-1","locale":"ÆØ"}"#.into(),
            None,
        ),
        ("ok-sql", r#"{"user_id":"x'); DROP TABLE user_logins; --","ip":"1.1.1.1"}"#.into(), None),
        ("ok-control", r#"{"user_id":"tab\there\nnewline\\back\u0001"}"#.into(), None),
        ("ok-extra", r#"{"user_id":"u","extra":{"deep":[[[[1]]]]},"ip":null}"#.into(), None),
        ("ok-big", big, None),
        ("bad-json", "{not json".into(), Some("invalid_json")),
        ("bad-empty", "".into(), Some("invalid_json")),
        ("bad-array", "[1,2,3]".into(), Some("not_an_object")),
        ("bad-scalar", "42".into(), Some("not_an_object")),
        (
            "bad-missing",
            r#"{"foo": "oops_wrong_msg_type", "bar": "123"}"#.into(),
            Some("missing_field"),
        ),
        ("bad-type", r#"{"user_id":"u","ip":12345}"#.into(), Some("wrong_type")),
        (
            "bad-dup",
            r#"{"user_id":"u","ip":"1.1.1.1","ip":"2.2.2.2"}"#.into(),
            Some("duplicate_field"),
        ),
        ("bad-nul", r#"{"user_id":"u\u0000"}"#.into(), Some("invalid_text")),
        ("bad-long", format!(r#"{{"user_id":"{}"}}"#, "u".repeat(129)), Some("too_long")),
        (
            "bad-version",
            r#"{"user_id":"u","app_version":"1.2.3.4"}"#.into(),
            Some("invalid_app_version"),
        ),
        ("bad-big", big_bad, Some("invalid_json")),
    ];
    let messages: Vec<Message> =
        cases.iter().map(|(id, body, _)| Message::new(*id, body.clone())).collect();
    let counts = copy_ingest(&mut c, &messages).expect("one COPY takes them all");
    let bad = cases.iter().filter(|(_, _, r)| r.is_some()).count() as i64;
    assert_eq!(counts, Counts { loaded: cases.len() as i64 - bad, duplicates: 0, rejected: bad });
    for (id, body, reason) in &cases {
        match reason {
            None => {
                let r = c
                    .query_one("SELECT user_id FROM user_logins WHERE message_id = $1", &[id])
                    .expect(id);
                let want: serde_json::Value = serde_json::from_str(body).expect("valid");
                assert_eq!(want["user_id"].as_str(), Some(r.get::<_, String>(0).as_str()), "{id}");
            }
            Some(reason) => {
                let r = c
                    .query_one("SELECT reason, detail, unmask_pii(payload) FROM user_login_rejects WHERE message_id = $1", &[id])
                    .expect(id);
                assert_eq!(r.get::<_, String>(0), *reason, "{id}: {}", r.get::<_, String>(1));
                assert_eq!(
                    &r.get::<_, String>(2),
                    body,
                    "{id}: the payload survives byte for byte"
                );
            }
        }
    }
}

#[test]
fn a_plain_role_reads_only_tokens() {
    let _lock = key_lock();
    let db = TestDb::new("ingest");
    copy_ingest(&mut db.client(), &sample_messages()).expect("copy");
    let (_, mut plain) = db.plain_role();
    let rows = plain
        .query("SELECT masked_ip, masked_device_id FROM user_logins UNION ALL SELECT payload, reason FROM user_login_rejects", &[])
        .expect("plain role may select");
    assert_eq!(rows.len(), 100);
    for r in rows {
        assert!(r.get::<_, String>(0).starts_with("pm1."));
    }
    let (code, _) = sqlstate(plain.query("SELECT unmask_pii(masked_ip) FROM user_logins", &[]));
    assert_eq!(code, "42501");
}

#[test]
fn concurrent_sessions_loading_the_same_ids_make_one_row_each() {
    let _lock = key_lock();
    let db = TestDb::new("ingest");
    let make = || -> Vec<Message> {
        (0..2_000)
            .map(|i| {
                Message::new(
                    format!("m{i:05}"),
                    format!(r#"{{"user_id":"u{i}","ip":"10.0.{}.{}"}}"#, i / 256, i % 256),
                )
            })
            .collect()
    };
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let url = db.url.clone();
            let msgs = make();
            std::thread::spawn(move || {
                copy_ingest(&mut connect(&url), &msgs).expect("concurrent copy")
            })
        })
        .collect();
    let totals = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .fold((0, 0), |acc, c| (acc.0 + c.loaded, acc.1 + c.duplicates));
    assert_eq!(totals, (2_000, 4_000));
    assert_eq!(count(&mut db.client(), "SELECT count(*) FROM user_logins"), 2_000);
}

#[test]
fn a_failed_copy_leaves_nothing_behind_for_the_next_statement() {
    let _lock = key_lock();
    let db = TestDb::new("ingest");
    let mut c = db.client();
    let mut tx = c.transaction().expect("begin");
    tx.batch_execute("SAVEPOINT s").expect("savepoint");
    let failed = tx.batch_execute(
        "INSERT INTO login_ingest VALUES ('a', now(), '{\"user_id\":\"a\"}'), (NULL, now(), '{\"user_id\":\"b\"}')",
    );
    assert_eq!(sqlstate(failed).0, "23502", "a NULL message id is a client bug and an error");
    tx.batch_execute("ROLLBACK TO SAVEPOINT s").expect("rollback to savepoint");
    tx.batch_execute("INSERT INTO login_ingest VALUES ('c', now(), '{\"user_id\":\"c\"}')")
        .expect("next statement");
    let stats = tx.query_one("SELECT loaded, rejected FROM ingest_stats()", &[]).expect("stats");
    assert_eq!((stats.get::<_, i64>(0), stats.get::<_, i64>(1)), (1, 0));
    tx.commit().expect("commit");
    let ids: Vec<String> = c
        .query("SELECT message_id FROM user_logins", &[])
        .expect("ids")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, ["c"], "row 'a' of the failed statement must not leak");
}

#[test]
fn duplicates_view_finds_shared_ips_and_devices() {
    let _lock = key_lock();
    let db = TestDb::new("ingest");
    let mut c = db.client();
    let msgs = [
        Message::new("d1", r#"{"user_id":"alice","ip":"10.9.9.9","device_id":"111-11-1111"}"#),
        Message::new("d2", r#"{"user_id":"bob","ip":"10.9.9.9","device_id":"222-22-2222"}"#),
        Message::new("d3", r#"{"user_id":"carol","ip":"10.8.8.8","device_id":"111-11-1111"}"#),
        Message::new("d4", r#"{"user_id":"alice","ip":"10.7.7.7","device_id":"333-33-3333"}"#),
    ];
    copy_ingest(&mut c, &msgs).expect("copy");
    let rows = c.query("SELECT kind, unmask_pii(masked_value), users, logins FROM login_duplicates ORDER BY kind", &[]).expect("view");
    let got: Vec<(String, String, i64, i64)> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
    assert_eq!(
        got,
        [("device_id".into(), "111-11-1111".into(), 2, 2), ("ip".into(), "10.9.9.9".into(), 2, 2)]
    );
}

/// A copy of the logins and rejects tables with an ingest view of its own, plus an AFTER ROW
/// trigger on the logins copy that the bulk insert cannot honour: its flushes take the general
/// INSERT path. The trigger counts the rows it sees, which proves which path ran.
const GENERAL_PATH_TABLES: &str = r#"
    CREATE TABLE logins_general (LIKE user_logins INCLUDING ALL);
    CREATE TRIGGER mask BEFORE INSERT OR UPDATE ON logins_general
        FOR EACH ROW EXECUTE FUNCTION mask_columns('masked_ip', 'masked_device_id');
    CREATE TABLE rejects_general (LIKE user_login_rejects INCLUDING ALL);
    CREATE TABLE audit (rows bigint NOT NULL);
    INSERT INTO audit VALUES (0);
    CREATE FUNCTION count_row() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN UPDATE audit SET rows = rows + 1; RETURN NULL; END $$;
    CREATE TRIGGER audit AFTER INSERT ON logins_general FOR EACH ROW EXECUTE FUNCTION count_row();
    CREATE VIEW ingest_general AS SELECT * FROM login_ingest;
    CREATE TRIGGER rows INSTEAD OF INSERT ON ingest_general
        FOR EACH ROW EXECUTE FUNCTION ingest_login_events('logins_general', 'rejects_general');
    CREATE TRIGGER flush AFTER INSERT ON ingest_general
        FOR EACH STATEMENT EXECUTE FUNCTION ingest_flush();
"#;

#[test]
fn bulk_insert_and_the_general_insert_store_identical_rows() {
    use std::time::{Duration, UNIX_EPOCH};
    let _lock = key_lock();
    let db = TestDb::new("ingest");
    let mut c = db.client();
    c.batch_execute(GENERAL_PATH_TABLES).expect("general-path tables");
    let mut messages = sample_messages();
    let corpus = corpus::hostile(false);
    let valid = 99 + 5 + corpus.iter().filter(|case| case.expect.is_none()).count() as i64;
    messages.extend(
        corpus.into_iter().enumerate().map(|(i, case)| Message::new(format!("h{i}"), case.body)),
    );
    // create_date at the edges: no SentTimestamp (the load date), just before and after a UTC
    // midnight, and before 2000 (PostgreSQL's epoch) and 1970 (Unix's).
    let at = |secs: i64| {
        Some(if secs >= 0 {
            UNIX_EPOCH + Duration::from_secs(secs as u64)
        } else {
            UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
        })
    };
    for (i, sent_at) in
        [None, at(946_684_799), at(946_684_800), at(1_700_006_399), at(-1)].into_iter().enumerate()
    {
        let mut m =
            Message::new(format!("t{i}"), format!(r#"{{"user_id":"t{i}","ip":"10.1.1.{i}"}}"#));
        m.sent_at = sent_at;
        messages.push(m);
    }
    // Batches of 7 rows: many flushes from the row trigger as well as the statement trigger.
    // The flush says at DEBUG1 when a table does not allow the bulk insert, and why.
    let mut said = Vec::new();
    for view in ["login_ingest", "ingest_general"] {
        let (mut c, notices) = connect_with_notices(&db.url);
        c.batch_execute("SET pg_mask.ingest_batch_rows = 7; SET client_min_messages = debug1")
            .expect("settings");
        copy_ingest_into(&mut c, view, &messages).expect(view);
        let notices = notices.lock().expect("notices").clone();
        said.push(notices.iter().any(|n| n.contains("not bulk insert")));
        if view == "ingest_general" {
            assert!(
                notices.iter().any(|n| n.contains("the table has other triggers")),
                "{notices:?}"
            );
        }
    }
    assert_eq!(said, [false, true], "user_logins takes the bulk insert, logins_general the INSERT");
    let loaded = count(&mut c, "SELECT count(*) FROM user_logins");
    assert_eq!(loaded, valid);
    assert_eq!(count(&mut c, "SELECT rows FROM audit"), loaded, "the general path ran, row by row");
    let login_cols = "message_id, user_id, device_type, masked_ip, masked_device_id, locale, app_version, create_date";
    let reject_cols = "message_id, sent_at, reason, detail, payload";
    for (bulk, general, cols) in [
        ("user_logins", "logins_general", login_cols),
        ("user_login_rejects", "rejects_general", reject_cols),
    ] {
        for (x, y) in [(bulk, general), (general, bulk)] {
            let only_in_x = format!(
                "SELECT count(*) FROM (SELECT {cols} FROM {x} EXCEPT ALL SELECT {cols} FROM {y}) d"
            );
            assert_eq!(count(&mut c, &only_in_x), 0, "{x} has rows {y} lacks");
        }
    }
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM user_logins WHERE message_id = 't0' AND create_date = (now() AT TIME ZONE 'UTC')::date"),
        1,
        "no SentTimestamp: the load date"
    );
    let dates: Vec<String> = c
        .query("SELECT create_date::text FROM user_logins WHERE message_id IN ('t1', 't2', 't3', 't4') ORDER BY message_id", &[])
        .expect("dates")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(dates, ["1999-12-31", "2000-01-01", "2023-11-14", "1969-12-31"]);
}

#[test]
fn bulk_insert_keeps_constraints_privileges_and_the_unique_id() {
    let _lock = key_lock();
    let db = TestDb::new("ingest");
    let mut c = db.client();
    let ok = |i: usize| {
        Message::new(format!("c{i}"), format!(r#"{{"user_id":"u{i}","device_type":"ios"}}"#))
    };

    // A CHECK constraint fails the COPY as an INSERT would, and leaves nothing behind.
    c.batch_execute(
        "ALTER TABLE user_logins ADD CONSTRAINT no_blackberry CHECK (device_type <> 'blackberry')",
    )
    .expect("check constraint");
    let bad = Message::new("c-bad", r#"{"user_id":"u","device_type":"blackberry"}"#);
    let (code, msg) = sqlstate(copy_ingest(&mut c, &[ok(1), bad, ok(2)]));
    assert_eq!(code, "23514", "{msg}");
    assert!(msg.contains("no_blackberry"), "{msg}");
    assert_eq!(count(&mut c, "SELECT count(*) FROM user_logins"), 0);

    // A loader needs INSERT on the view only: the rows are written as the view's owner.
    let (_, mut loader) = db.loader_role();
    assert_eq!(copy_ingest(&mut loader, &[ok(3)]).expect("a loader loads").loaded, 1);
    let (code, _) = sqlstate(loader.query_one("SELECT count(*) FROM user_logins", &[]));
    assert_eq!(code, "42501", "a loader cannot read what it loaded");

    // An id loaded by a plain INSERT is still a duplicate for the bulk path, inside a batch of new ones.
    c.batch_execute("INSERT INTO user_logins (message_id, user_id) VALUES ('c5', 'by hand')")
        .expect("insert");
    let batch: Vec<Message> = (4..8).map(ok).collect();
    assert_eq!(
        copy_ingest(&mut c, &batch).expect("copy"),
        Counts { loaded: 3, duplicates: 1, rejected: 0 }
    );
    assert_eq!(count(&mut c, "SELECT count(*) FROM user_logins WHERE user_id = 'by hand'"), 1);
}

#[test]
fn tables_the_bulk_insert_cannot_honour_get_the_insert_and_its_rules() {
    let _lock = key_lock();
    let db = TestDb::new("ingest");
    let mut admin = db.client();
    let (mut c, notices) = connect_with_notices(&db.url);
    c.batch_execute("SET client_min_messages = debug1").expect("debug1");
    let load = |c: &mut postgres::Client, id: &str, body: &str| {
        notices.lock().expect("notices").clear();
        let result = copy_ingest(c, &[Message::new(id, body)]);
        let said = notices.lock().expect("notices").join("\n");
        (result, said)
    };

    // A column with a default: the INSERT fills it (the bulk insert would leave it NULL).
    admin
        .batch_execute(
            "ALTER TABLE user_logins ADD COLUMN loaded_by text NOT NULL DEFAULT current_user",
        )
        .expect("default column");
    let (result, said) = load(&mut c, "r1", r#"{"user_id":"u1"}"#);
    assert_eq!(result.expect("loads").loaded, 1);
    assert!(said.contains("another column has a default"), "{said}");
    assert_eq!(
        count(
            &mut admin,
            "SELECT count(*) FROM user_logins WHERE message_id = 'r1' AND loaded_by = 'postgres'"
        ),
        1
    );
    admin.batch_execute("ALTER TABLE user_logins DROP COLUMN loaded_by").expect("drop column");

    // mask_columns over a column the ingest writes in plain: the trigger must see the row.
    admin
        .batch_execute(
            "CREATE TRIGGER mask_user BEFORE INSERT ON user_logins FOR EACH ROW EXECUTE FUNCTION mask_columns('user_id')",
        )
        .expect("trigger");
    let (result, said) = load(&mut c, "r2", r#"{"user_id":"u2"}"#);
    assert_eq!(result.expect("loads").loaded, 1);
    assert!(said.contains("masks a column the ingest writes as is"), "{said}");
    let user: String = admin
        .query_one("SELECT unmask_pii(user_id) FROM user_logins WHERE message_id = 'r2'", &[])
        .expect("masked user")
        .get(0);
    assert_eq!(user, "u2", "user_id stored as a token");
    admin.batch_execute("DROP TRIGGER mask_user ON user_logins").expect("drop trigger");

    // Row-level security: the rows are written as the view's owner, so the owner's policy
    // applies, as with an INSERT by the owner. Here the view belongs to a role that is not a
    // superuser (a superuser bypasses row-level security) and the table forces its policy.
    let (owner, _) = db.role(
        "ingest_owner",
        "GRANT SELECT, INSERT ON user_logins, user_login_rejects TO {role};
         ALTER VIEW login_ingest OWNER TO {role};",
    );
    admin
        .batch_execute(&format!(
            "ALTER TABLE user_logins ENABLE ROW LEVEL SECURITY;
             ALTER TABLE user_logins FORCE ROW LEVEL SECURITY;
             CREATE POLICY readable ON user_logins FOR SELECT TO {owner} USING (true);
             CREATE POLICY not_blocked ON user_logins FOR INSERT TO {owner} WITH CHECK (user_id <> 'blocked');"
        ))
        .expect("policy");
    let (_, mut loader) = db.loader_role();
    let (result, said) = load(&mut loader, "r3", r#"{"user_id":"fine"}"#);
    assert_eq!(result.expect("allowed").loaded, 1);
    let _ = said;
    let (code, msg) =
        sqlstate(copy_ingest(&mut loader, &[Message::new("r4", r#"{"user_id":"blocked"}"#)]));
    assert_eq!(code, "42501", "{msg}");
    assert!(msg.contains("row-level security"), "{msg}");
    assert_eq!(count(&mut admin, "SELECT count(*) FROM user_logins"), 3);
}

/// The body of a valid login for `id`.
fn login(id: &str) -> String {
    format!(r#"{{"user_id":"{id}","ip":"10.20.30.40"}}"#)
}

/// Loads of the view and of a plain table, side by side in the same statements: `f(id, mode)`
/// inserts `id` into `shadow` (as an INSERT into a plain table would keep it) and returns the
/// body for the view. Modes: 0 plain, 1 an error caught inside f (an aborted subtransaction in
/// the middle of the statement), 2 a nested INSERT into the view of `id || '-n'` (kept), 3 the
/// same nested INSERT inside a block whose error is caught (rolled back).
const SIDE_BY_SIDE: &str = r#"
    CREATE TABLE shadow (message_id text);
    CREATE FUNCTION f(id text, mode int) RETURNS text LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO shadow VALUES (id);
        IF mode = 1 THEN
            BEGIN PERFORM 1 / 0; EXCEPTION WHEN division_by_zero THEN NULL; END;
        ELSIF mode = 2 THEN
            INSERT INTO login_ingest VALUES (id || '-n', now(), format('{"user_id":"%s"}', id));
            INSERT INTO shadow VALUES (id || '-n');
        ELSIF mode = 3 THEN
            BEGIN
                INSERT INTO login_ingest VALUES (id || '-n', now(), format('{"user_id":"%s"}', id));
                INSERT INTO shadow VALUES (id || '-n');
                RAISE EXCEPTION 'roll it back';
            EXCEPTION WHEN raise_exception THEN NULL;
            END;
        END IF;
        RETURN format('{"user_id":"%s","ip":"10.20.30.40"}', id);
    END $$;
"#;

#[test]
fn an_error_caught_mid_statement_drops_only_its_own_rows() {
    let _lock = key_lock();
    let db = TestDb::new("ingest");
    let mut c = db.client();
    c.batch_execute(SIDE_BY_SIDE).expect("functions");
    // The issue's case: every fourth row's function catches an error.
    let n: i64 = c
        .execute(
            "INSERT INTO login_ingest SELECT 'c' || i, now(), f('c' || i, CASE WHEN i % 4 = 0 THEN 1 ELSE 0 END) \
             FROM generate_series(1, 25) i",
            &[],
        )
        .expect("insert") as i64;
    assert_eq!(n, 25);
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM user_logins"),
        25,
        "rows buffered before a caught error survive"
    );
    assert_eq!(count(&mut c, "SELECT count(*) FROM shadow"), 25);
}

#[test]
fn savepoints_caught_errors_and_nested_loads_keep_exactly_what_an_insert_keeps() {
    use rand::{Rng, SeedableRng};
    let _lock = key_lock();
    let db = TestDb::new("ingest");
    let mut c = db.client();
    c.batch_execute(SIDE_BY_SIDE).expect("functions");
    let mut next_id = 0;
    let mut sequences = 0;
    for seed in 0..40u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let rows_before = count(&mut c, "SELECT count(*) FROM user_logins");
        let shadow_before = count(&mut c, "SELECT count(*) FROM shadow");
        let mut tx = c.transaction().expect("begin");
        tx.batch_execute(&format!(
            "SET LOCAL pg_mask.ingest_batch_rows = {}",
            rng.random_range(1..6)
        ))
        .expect("batch size");
        let mut savepoints: Vec<String> = Vec::new();
        let mut script = Vec::new();
        for _ in 0..rng.random_range(3..12) {
            let sql = match rng.random_range(0..6) {
                0 | 1 => {
                    let rows: Vec<String> = (0..rng.random_range(1..8))
                        .map(|_| {
                            next_id += 1;
                            format!("('p{next_id}', {})", rng.random_range(0..4))
                        })
                        .collect();
                    format!(
                        "INSERT INTO login_ingest SELECT id, now(), f(id, mode) FROM (VALUES {}) v(id, mode)",
                        rows.join(", ")
                    )
                }
                2 => {
                    let name = format!("s{}", savepoints.len());
                    savepoints.push(name.clone());
                    format!("SAVEPOINT {name}")
                }
                3 if !savepoints.is_empty() => {
                    let i = rng.random_range(0..savepoints.len());
                    savepoints.truncate(i + 1);
                    format!("ROLLBACK TO SAVEPOINT {}", savepoints[i])
                }
                4 if !savepoints.is_empty() => {
                    let i = rng.random_range(0..savepoints.len());
                    let name = savepoints[i].clone();
                    savepoints.truncate(i);
                    format!("RELEASE SAVEPOINT {name}")
                }
                _ => {
                    next_id += 1;
                    let raise = rng.random_bool(0.5);
                    format!(
                        "DO $$ BEGIN \
                           PERFORM f('p{next_id}', 0); INSERT INTO login_ingest VALUES ('p{next_id}', now(), '{body}'); \
                           BEGIN \
                             PERFORM f('p{next_id}-in', 0); INSERT INTO login_ingest VALUES ('p{next_id}-in', now(), '{body}'); \
                             {raise} \
                           EXCEPTION WHEN raise_exception THEN NULL; END; \
                         END $$",
                        body = login("x"),
                        raise = if raise { "RAISE EXCEPTION 'undo';" } else { "" },
                    )
                }
            };
            tx.batch_execute(&sql).unwrap_or_else(|e| panic!("seed {seed}: {sql}: {e}"));
            script.push(sql);
        }
        let loaded: i64 =
            tx.query_one("SELECT loaded FROM ingest_stats()", &[]).expect("stats").get(0);
        let shadow: i64 = tx.query_one("SELECT count(*) FROM shadow", &[]).expect("shadow").get(0);
        let before: i64 =
            tx.query_one("SELECT count(*) FROM user_logins", &[]).expect("rows").get(0);
        tx.commit().unwrap_or_else(|e| panic!("seed {seed}: commit: {e}\n{}", script.join("\n")));
        let missing = count(&mut c, "SELECT count(*) FROM (SELECT message_id FROM shadow EXCEPT SELECT message_id FROM user_logins) d");
        let extra = count(&mut c, "SELECT count(*) FROM (SELECT message_id FROM user_logins EXCEPT SELECT message_id FROM shadow) d");
        assert_eq!((missing, extra), (0, 0), "seed {seed}:\n{}", script.join("\n"));
        assert_eq!(
            loaded,
            before - rows_before,
            "seed {seed}: ingest_stats() counts what is there"
        );
        assert_eq!(before - rows_before, shadow - shadow_before, "seed {seed}");
        sequences += 1;
    }
    integration::report::row(
        "subtransactions",
        "savepoints and caught errors",
        &format!(
            "{sequences} random transactions of loads, SAVEPOINT, ROLLBACK TO, RELEASE and \
             PL/pgSQL blocks that catch an error, beside the same rows INSERTed into a plain table"
        ),
        "each kept exactly the rows the plain table kept; ingest_stats() counted them",
    );
}

#[test]
fn two_ingest_views_in_one_statement_each_reach_their_own_tables() {
    let _lock = key_lock();
    let db = TestDb::new("ingest");
    let mut c = db.client();
    c.batch_execute(GENERAL_PATH_TABLES).expect("second view");
    c.batch_execute(&format!(
        "WITH a AS (INSERT INTO login_ingest VALUES ('v1', now(), '{}') RETURNING 1) \
         INSERT INTO ingest_general SELECT 'v2', now(), '{}' FROM a",
        login("one"),
        login("two")
    ))
    .expect("one statement, two views");
    let ids = |c: &mut postgres::Client, table: &str| -> Vec<String> {
        c.query(&format!("SELECT message_id FROM {table}"), &[])
            .expect("ids")
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    assert_eq!(ids(&mut c, "user_logins"), ["v1"]);
    assert_eq!(ids(&mut c, "logins_general"), ["v2"]);
}

#[test]
fn a_load_under_the_replica_role_raises_instead_of_storing_nothing() {
    let _lock = key_lock();
    let db = TestDb::new("ingest");
    let mut c = db.client();
    c.batch_execute("SET session_replication_role = replica").expect("replica");
    let (code, msg) = sqlstate(copy_ingest(&mut c, &[Message::new("r1", login("r"))]));
    assert_eq!(code, "55000", "{msg}");
    assert!(msg.contains("session_replication_role"), "{msg}");
    // The client library cannot go on after a COPY refused before it started: a new session.
    let mut c = db.client();
    c.batch_execute("SET session_replication_role = replica").expect("replica");
    let (code, _) = sqlstate(c.batch_execute(&format!(
        "INSERT INTO login_ingest VALUES ('r2', now(), '{}')",
        login("r")
    )));
    assert_eq!(code, "55000");
    // The masking trigger on the table itself fires under the replica role too.
    c.batch_execute("INSERT INTO user_logins (message_id, user_id, masked_ip) VALUES ('r3', 'u', '198.51.100.5')")
        .expect("direct insert");
    c.batch_execute("SET session_replication_role = origin").expect("origin");
    let ip: String = one(&mut c, "SELECT masked_ip FROM user_logins WHERE message_id = 'r3'");
    assert!(ip.starts_with("pm1."), "stored masked: {ip}");
    assert_eq!(
        copy_ingest(&mut c, &[Message::new("r1", login("r"))]).expect("origin loads").loaded,
        1
    );
}

#[test]
fn a_partitioned_user_logins_routes_rows_and_skips_redeliveries_across_partitions() {
    use std::time::{Duration, UNIX_EPOCH};
    let _lock = key_lock();
    let db = TestDb::new("ingest");
    let mut c = db.client();
    // The README's advice: partition by create_date; the unique index then includes it.
    c.batch_execute(
        "DROP VIEW login_duplicates; DROP TABLE user_logins; \
         CREATE TABLE user_logins (user_id varchar(128), device_type varchar(32), masked_ip varchar(256), \
           masked_device_id varchar(256), locale varchar(32), app_version integer, create_date date, \
           message_id text COLLATE \"C\") PARTITION BY RANGE (create_date); \
         CREATE UNIQUE INDEX user_logins_message_id_key ON user_logins (message_id, create_date); \
         CREATE TRIGGER user_logins_mask BEFORE INSERT OR UPDATE ON user_logins \
           FOR EACH ROW EXECUTE FUNCTION mask_columns('masked_ip', 'masked_device_id'); \
         CREATE TABLE user_logins_2024_01 PARTITION OF user_logins FOR VALUES FROM ('2024-01-01') TO ('2024-02-01'); \
         CREATE TABLE user_logins_2024_02 PARTITION OF user_logins FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');",
    )
    .expect("partitioned user_logins");
    let at = |day: u64| Some(UNIX_EPOCH + Duration::from_secs(1_704_067_200 + day * 86_400));
    let msg = |id: &str, day: u64| {
        let mut m = Message::new(id, login(id));
        m.sent_at = at(day);
        m
    };
    let batch = [msg("jan", 3), msg("feb", 40), msg("jan-2", 20)];
    assert_eq!(copy_ingest(&mut c, &batch).expect("load").loaded, 3);
    assert_eq!(count(&mut c, "SELECT count(*) FROM user_logins_2024_01"), 2);
    assert_eq!(count(&mut c, "SELECT count(*) FROM user_logins_2024_02"), 1);
    // A redelivery is skipped even with another send date (no partition key in the probe).
    assert_eq!(
        copy_ingest(&mut c, &[msg("jan", 45)]).expect("redelivery"),
        Counts { loaded: 0, duplicates: 1, rejected: 0 }
    );
    // A row no partition takes: the integrity error, with no row values in it.
    let err = copy_ingest(&mut c, &[msg("march", 70)]).expect_err("no partition");
    let e = err.as_db_error().expect("db error");
    assert_eq!(e.code().code(), "23514", "{}", e.message());
    assert!(!format!("{:?}", e).contains("pm1."), "no token in the error");
    assert_masked_everywhere(&mut c);
}

fn assert_masked_everywhere(c: &mut postgres::Client) {
    let clear = count(c, "SELECT count(*) FROM user_logins WHERE masked_ip NOT LIKE 'pm1.%'");
    assert_eq!(clear, 0);
}
