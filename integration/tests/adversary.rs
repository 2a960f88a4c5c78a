//! The adversary suite: pg_mask as an attacker and a careless operator would try it.
//!
//! - A reader (SELECT on the tables plus PUBLIC's default rights: TEMP tables, EXECUTE) and a
//!   loader (INSERT on the ingest view only) try every way we know to get the token of a
//!   plaintext of their choice; each must fail.
//! - Families of DDL between inserts, from the same and from another session, must neither
//!   crash the server nor store a token over a column's width or a plaintext in a masked
//!   column.
//! - Failing text and CSV COPYs must leave no plaintext in the server log, nor must the key
//!   set-up or an attempt to put a key through SQL leave the key in the log, in
//!   `pg_stat_statements`, in `pg_stat_activity` or in `postgresql.auto.conf`.
//! - Huge values raise an error; they never abort the backend.
//!
//! The figures go to `target/adversary-report.md` (quoted in the README's reliability table).

use integration::*;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts of what the suite tried, for the report.
static ORACLE_PATHS: AtomicUsize = AtomicUsize::new(0);
static DDL_SEQUENCES: AtomicUsize = AtomicUsize::new(0);

/// Runs `sql` as `client` and asserts it fails with `code`; counts it as one oracle path.
fn refused(client: &mut postgres::Client, sql: &str, code: &str) {
    let (got, msg) = sqlstate(client.batch_execute(sql));
    assert_eq!(got, code, "{sql}\n{msg}");
    ORACLE_PATHS.fetch_add(1, Ordering::Relaxed);
}

#[test]
fn no_role_gets_the_token_of_a_plaintext_of_its_choice() {
    let _lock = key_lock();
    let db = TestDb::new("adv");
    let mut admin = db.client();
    copy_ingest(&mut admin, &sample_messages()).expect("load");
    let (_, mut reader) = db.plain_role();
    let (_, mut loader) = db.loader_role();

    for (who, c) in [("reader", &mut reader), ("loader", &mut loader)] {
        // The functions that turn a chosen value into its token.
        refused(c, "SELECT mask_pii('198.51.100.7')", "42501");
        refused(c, "SELECT remask('pm1.k1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA')", "42501");
        refused(c, "SELECT unmask_pii(masked_ip) FROM user_logins LIMIT 1", "42501");
        refused(c, "SELECT mask_key_ids()", "42501");
        // A TEMP table with a masking trigger would hand out tokens for what is inserted.
        c.batch_execute("CREATE TEMP TABLE oracle (v text)").expect("temp table");
        refused(
            c,
            "CREATE TRIGGER m BEFORE INSERT ON oracle FOR EACH ROW EXECUTE FUNCTION mask_columns('v')",
            "42501",
        );
        // A TEMP view with the ingest triggers pointed at TEMP tables would too.
        c.batch_execute(
            "CREATE TEMP TABLE my_logins (message_id text UNIQUE, user_id text, device_type text, \
               masked_ip text, masked_device_id text, locale text, app_version int, create_date date); \
             CREATE TEMP TABLE my_rejects (message_id text UNIQUE, sent_at timestamptz, reason text, \
               detail text, payload text); \
             CREATE TEMP VIEW my_ingest AS SELECT NULL::text AS message_id, NULL::timestamptz AS sent_at, \
               NULL::text AS body WHERE false",
        )
        .expect("temp objects");
        refused(
            c,
            "CREATE TRIGGER r INSTEAD OF INSERT ON my_ingest FOR EACH ROW \
             EXECUTE FUNCTION ingest_login_events('pg_temp.my_logins', 'pg_temp.my_rejects')",
            "42501",
        );
        refused(
            c,
            "CREATE TRIGGER f AFTER INSERT ON my_ingest FOR EACH STATEMENT EXECUTE FUNCTION ingest_flush()",
            "42501",
        );
        // Writing the tables directly and reading the result back.
        refused(
            c,
            "INSERT INTO user_logins (user_id, masked_ip) VALUES ('x', '198.51.100.7')",
            "42501",
        );
        refused(c, "UPDATE user_logins SET masked_ip = '198.51.100.7'", "42501");
        c.batch_execute("DROP VIEW my_ingest; DROP TABLE my_logins, my_rejects, oracle")
            .unwrap_or_else(|e| panic!("{who}: {e}"));
    }
    // The reader may not load at all.
    refused(
        &mut reader,
        "INSERT INTO login_ingest VALUES ('r1', now(), '{\"user_id\":\"r\",\"ip\":\"198.51.100.7\"}')",
        "42501",
    );

    // The loader loads, but cannot divert its rows to a table it can read: a TEMP table named
    // user_logins, first on its search_path, is never where the ingest writes.
    loader
        .batch_execute(
            "CREATE TEMP TABLE user_logins (message_id text UNIQUE, user_id text, device_type text, \
               masked_ip text, masked_device_id text, locale text, app_version int, create_date date); \
             CREATE TEMP TABLE user_login_rejects (message_id text UNIQUE, sent_at timestamptz, \
               reason text, detail text, payload text); \
             SET search_path = pg_temp, public",
        )
        .expect("shadowing temp tables");
    let chosen = Message::new("chosen-1", r#"{"user_id":"mallory","ip":"198.51.100.77"}"#);
    let counts = copy_ingest(&mut loader, &[chosen]).expect("the loader loads");
    assert_eq!(counts, Counts { loaded: 1, duplicates: 0, rejected: 0 });
    let diverted: i64 = one(&mut loader, "SELECT count(*) FROM pg_temp.user_logins");
    assert_eq!(diverted, 0, "rows went to the loader's TEMP table");
    ORACLE_PATHS.fetch_add(1, Ordering::Relaxed);
    let landed =
        count(&mut admin, "SELECT count(*) FROM public.user_logins WHERE message_id = 'chosen-1'");
    assert_eq!(landed, 1);
    refused(&mut loader, "SELECT masked_ip FROM public.user_logins", "42501");

    // An error from the table must not show the loader the tokens of what it sent (PostgreSQL's
    // DETAIL says "Failing row contains (…)").
    admin
        .batch_execute("ALTER TABLE user_logins ADD CONSTRAINT no_web CHECK (device_type <> 'web')")
        .expect("constraint");
    let bad = Message::new(
        "chosen-2",
        r#"{"user_id":"mallory","device_type":"web","ip":"198.51.100.78","device_id":"chosen-device"}"#,
    );
    let err = copy_ingest(&mut loader, &[bad]).expect_err("the CHECK refuses it");
    let db_err = err.as_db_error().expect("a database error");
    assert_eq!(db_err.code().code(), "23514");
    let everything = format!(
        "{} {:?} {:?} {:?}",
        db_err.message(),
        db_err.detail(),
        db_err.hint(),
        db_err.where_()
    );
    assert!(everything.contains("no_web"), "names the constraint: {everything}");
    assert!(!everything.contains("pm1."), "no token in the error: {everything}");
    assert!(!everything.contains("Failing row"), "no row in the error: {everything}");
    ORACLE_PATHS.fetch_add(1, Ordering::Relaxed);

    // What the loader learns from a load is counts.
    let stats: i64 = one(&mut loader, "SELECT count(*) FROM ingest_stats()");
    assert_eq!(stats, 1);
    // The reader sees tokens only, in both tables.
    let clear: i64 = one(
        &mut reader,
        "SELECT count(*) FROM user_logins WHERE masked_ip NOT LIKE 'pm1.%' OR masked_device_id NOT LIKE 'pm1.%'",
    );
    assert_eq!(clear, 0);
    integration::report::row(
        "adversary_oracle",
        "token oracle",
        &format!(
            "roles tried: a reader (SELECT + PUBLIC's rights) and a loader (INSERT on the view); \
             oracle paths tried: {}",
            ORACLE_PATHS.load(Ordering::Relaxed)
        ),
        "every one refused; no clear value stored",
    );
}

/// A masked column's values: all tokens no longer than `width`.
fn assert_masked(c: &mut postgres::Client, table: &str, column: &str, width: Option<usize>) {
    let rows = c
        .query(&format!("SELECT {column}::text FROM {table} WHERE {column} IS NOT NULL"), &[])
        .expect("read");
    for r in rows {
        let v: String = r.get(0);
        assert!(v.starts_with("pm1."), "{table}.{column} holds a plaintext");
        if let Some(w) = width {
            assert!(v.len() <= w, "{table}.{column} holds {} characters, over {w}", v.len());
        }
    }
}

#[test]
fn ddl_between_inserts_never_crashes_or_stores_plaintext_or_over_width_tokens() {
    let _lock = key_lock();
    let db = TestDb::new("adv");
    let before = LogMark::now();
    // Longer than 20 characters, and its token (67 characters) longer than 60.
    let value = "'198.51.100.3-padding-pad'";
    // Each case: the DDL; the columns the second insert writes; the columns that must then hold
    // tokens (with their width); the SQLSTATE the second insert must fail with, if it must.
    type Case = (
        &'static str,
        &'static [&'static str],
        &'static [(&'static str, Option<usize>)],
        Option<&'static str>,
    );
    let cases: [Case; 9] = [
        ("ALTER TABLE t ALTER COLUMN a TYPE bigint USING 0", &["b"], &[("b", Some(256))], Some("42804")),
        ("ALTER TABLE t ALTER COLUMN a TYPE integer USING 0", &["b"], &[("b", Some(256))], Some("42804")),
        ("ALTER TABLE t ALTER COLUMN b TYPE varchar(60)", &["a", "b"], &[("a", None), ("b", Some(60))], Some("22001")),
        ("ALTER TABLE t ALTER COLUMN b TYPE varchar(20) USING NULL", &["a", "b"], &[("a", None), ("b", Some(20))], Some("22001")),
        ("ALTER TABLE t DROP COLUMN a; ALTER TABLE t ADD COLUMN a text", &["a", "b"], &[("a", None), ("b", Some(256))], None),
        ("ALTER TABLE t RENAME COLUMN a TO renamed", &["renamed", "b"], &[("b", Some(256))], Some("42703")),
        ("ALTER TABLE t RENAME COLUMN a TO tmp; ALTER TABLE t RENAME COLUMN b TO a; ALTER TABLE t RENAME COLUMN tmp TO b", &["a", "b"], &[("a", Some(256)), ("b", None)], None),
        ("ALTER TABLE t ADD COLUMN c text; CREATE OR REPLACE TRIGGER m BEFORE INSERT OR UPDATE ON t FOR EACH ROW EXECUTE FUNCTION mask_columns('a', 'b', 'c')", &["a", "b", "c"], &[("a", None), ("b", Some(256)), ("c", None)], None),
        ("CREATE OR REPLACE TRIGGER m BEFORE INSERT OR UPDATE ON t FOR EACH ROW EXECUTE FUNCTION mask_columns('b')", &["b"], &[("b", Some(256))], None),
    ];
    // `other`: the DDL runs in a second session, between two inserts of the first.
    for other in [false, true] {
        for (ddl, written, masked, expect_error) in cases {
            let mut c = db.client();
            c.batch_execute(
                "DROP TABLE IF EXISTS t; CREATE TABLE t (a text, b varchar(256)); \
                 CREATE TRIGGER m BEFORE INSERT OR UPDATE ON t FOR EACH ROW EXECUTE FUNCTION mask_columns('a', 'b')",
            )
            .expect("table");
            // The first insert fills the trigger's cache in this session.
            c.batch_execute("INSERT INTO t (a, b) VALUES ('198.51.100.1', '198.51.100.2')")
                .expect("first insert");
            let done = if other { db.client().batch_execute(ddl) } else { c.batch_execute(ddl) };
            done.unwrap_or_else(|e| panic!("{ddl}: {e}"));
            let values = written.iter().map(|_| value).collect::<Vec<_>>().join(", ");
            let second = c.batch_execute(&format!(
                "INSERT INTO t ({}) VALUES ({values})",
                written.join(", ")
            ));
            match expect_error {
                Some(code) => {
                    let (got, msg) = sqlstate(second);
                    assert_eq!(got, code, "{ddl}: {msg}");
                }
                None => second.unwrap_or_else(|e| panic!("{ddl}: {e}")),
            }
            let alive: i32 = one(&mut c, "SELECT 1");
            assert_eq!(alive, 1, "the session survived {ddl}");
            for (column, width) in masked {
                assert_masked(&mut c, "t", column, *width);
            }
            DDL_SEQUENCES.fetch_add(1, Ordering::Relaxed);
        }
    }

    // The ingest path: the masked column narrowed, widened inside a transaction, the table
    // renamed and re-created.
    let mut c = db.client();
    // The duplicates view depends on the column's type; an operator drops it to alter the column.
    c.batch_execute("DROP VIEW login_duplicates").expect("drop view");
    copy_ingest(&mut c, &[Message::new("i1", r#"{"user_id":"u","ip":"198.51.100.10"}"#)])
        .expect("load");
    db.client()
        .batch_execute("ALTER TABLE user_logins ALTER COLUMN masked_ip TYPE varchar(46)")
        .expect("narrow");
    // A 14-character IP's token has 47 characters: it no longer fits.
    let counts =
        copy_ingest(&mut c, &[Message::new("i2", r#"{"user_id":"u","ip":"198.51.100.110"}"#)])
            .expect("load after narrowing");
    assert_eq!(counts.rejected, 1, "a value whose token no longer fits is a too_long reject");
    assert_masked(&mut c, "user_logins", "masked_ip", Some(46));
    DDL_SEQUENCES.fetch_add(1, Ordering::Relaxed);
    {
        let mut tx = c.transaction().expect("begin");
        tx.batch_execute("INSERT INTO login_ingest VALUES ('i3', now(), '{\"user_id\":\"u\",\"ip\":\"1.2.3.4\"}')").expect("insert");
        tx.batch_execute("ALTER TABLE user_logins ALTER COLUMN masked_ip TYPE varchar(256)")
            .expect("widen in the transaction");
        tx.batch_execute("INSERT INTO login_ingest VALUES ('i4', now(), '{\"user_id\":\"u\",\"ip\":\"198.51.100.112\"}')").expect("insert after widening");
        tx.commit().expect("commit");
    }
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM user_logins WHERE message_id IN ('i3', 'i4')"),
        2
    );
    DDL_SEQUENCES.fetch_add(1, Ordering::Relaxed);
    db.client().batch_execute("ALTER TABLE user_logins RENAME TO user_logins_old").expect("rename");
    let (code, msg) = sqlstate(copy_ingest(&mut c, &[Message::new("i5", r#"{"user_id":"u"}"#)]));
    assert_eq!(code, "42P01", "{msg}");
    db.client()
        .batch_execute("CREATE TABLE user_logins (LIKE user_logins_old INCLUDING ALL); \
                        CREATE TRIGGER user_logins_mask BEFORE INSERT OR UPDATE ON user_logins \
                        FOR EACH ROW EXECUTE FUNCTION mask_columns('masked_ip', 'masked_device_id')")
        .expect("re-create");
    copy_ingest(&mut c, &[Message::new("i6", r#"{"user_id":"u","ip":"198.51.100.13"}"#)])
        .expect("load into the new table");
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM user_logins"),
        1,
        "the new table, not the renamed one"
    );
    assert_masked(&mut c, "user_logins", "masked_ip", Some(256));
    DDL_SEQUENCES.fetch_add(2, Ordering::Relaxed);

    let log = before.since();
    assert_eq!(crashes_in(&log), 0, "a backend crashed:\n{log}");
    integration::report::row(
        "adversary_ddl",
        "DDL between inserts",
        &format!(
            "DDL sequences tried, from the same and from another session: {}",
            DDL_SEQUENCES.load(Ordering::Relaxed)
        ),
        "crashes 0; no plaintext or over-width token stored",
    );
}

/// Copies `data` into `login_ingest` in text format (`format` is "text" or "csv"); the error.
fn text_copy(c: &mut postgres::Client, format: &str, data: &str) -> postgres::Error {
    use std::io::Write;
    let mut run = || -> Result<u64, postgres::Error> {
        let mut w = c.copy_in(&format!(
            "COPY login_ingest (message_id, sent_at, body) FROM STDIN (FORMAT {format})"
        ))?;
        w.write_all(data.as_bytes()).map_err(|_| ()).ok();
        w.finish()
    };
    run().expect_err("this COPY must fail")
}

#[test]
fn failing_text_and_csv_copies_leave_no_plaintext_in_the_server_log() {
    let _lock = key_lock();
    let db = TestDb::new("adv");
    let mut c = db.client();
    let tag = unique("logleak");
    let ip = |i: u32| format!("203.0.113.{i}");
    let device = |i: u32| format!("{tag}-device-{i}");
    let body =
        |i: u32| format!(r#"{{"user_id":"u{i}","ip":"{}","device_id":"{}"}}"#, ip(i), device(i));
    let mark = LogMark::now();
    // Errors pg_mask raises (a NULL message id), and COPY's own (a missing column, an extra
    // one, a bad timestamp, a bad escape), in text and CSV.
    let cases = [
        ("text", format!("\\N\t2024-01-01\t{}\n", body(1))),
        ("text", format!("m2\t2024-01-01\n{}\n", body(2))),
        ("text", format!("m3\t2024-01-01\t{}\textra\n", body(3))),
        ("text", format!("m4\tnot a time\t{}\n", body(4))),
        ("csv", format!(",2024-01-01,\"{}\"\n", body(5).replace('"', "\"\""))),
        ("csv", format!("m6,2024-01-01,\"{}\",extra\n", body(6).replace('"', "\"\""))),
        ("csv", format!("m7,2024-01-01,\"{}\n", body(7).replace('"', "\"\""))),
        // Fields out of order: the timestamp's input error quotes the body.
        ("csv", format!("m8,\"{}\",2024-01-01\n", body(8).replace('"', "\"\""))),
        // A quoted field over two lines (pretty-printed JSON), with a NULL message id.
        (
            "csv",
            format!(
                ",2024-01-01,\"{{\n{}\"\n",
                body(9).trim_start_matches('{').replace('"', "\"\"")
            ),
        ),
        // An unterminated quote swallows the next record into the line buffer.
        (
            "csv",
            format!(
                "m10,2024-01-01,\"{{\"\"user_id\"\":\"\"u\"\"}}\nm11,2024-01-01,{{ip:{} {}}}\n",
                ip(10),
                device(10)
            ),
        ),
    ];
    for (format, data) in &cases {
        let err = text_copy(&mut c, format, data);
        assert!(err.as_db_error().is_some(), "{format}: {err}");
    }
    let log = mark.since();
    assert!(log.contains("COPY login_ingest"), "the failures were logged:\n{log}");
    for i in 1..=10 {
        assert!(!log.contains(&ip(i)), "the server log holds ip {}:\n{log}", ip(i));
        assert!(!log.contains(&device(i)), "the server log holds device id {}:\n{log}", device(i));
    }
    assert!(log.contains("row data hidden by pg_mask"), "{log}");
}

#[test]
fn keys_never_reach_the_log_statistics_or_the_data_directory() {
    let _lock = key_lock();
    let db = TestDb::new("adv");
    let mut admin = db.client();
    let key_material = K2.split_once(':').map(|(_, k)| k.to_owned()).unwrap_or_default();
    let mark = LogMark::now();
    // The README's set-up: a key file outside the data directory, named by pg_mask.key_file.
    let path = server::scratch_path(&format!("{}.keys", unique("adv_key")));
    let _file = ServerFile::new(&path, "postgres", "0600", K2);
    {
        let _k = KeySettings::key_file(&path);
        let token: String = one(&mut admin, "SELECT mask_pii('198.51.100.99')");
        assert!(token.starts_with("pm1.k2."));
    }
    // A careless operator puts the key through SQL, with every statement logged.
    admin.batch_execute("SET log_statement = 'all'").expect("log everything");
    let (code, msg) =
        sqlstate(admin.batch_execute(&format!("ALTER SYSTEM SET pg_mask.keys = '{K2}'")));
    assert_eq!(code, "55P02", "{msg}");
    let hint = admin
        .batch_execute(&format!("ALTER SYSTEM SET pg_mask.keys = '{K2}'"))
        .err()
        .and_then(|e| e.as_db_error().and_then(|d| d.hint().map(str::to_owned)))
        .unwrap_or_default();
    assert!(hint.contains("pg_mask.key_file"), "the refusal says where keys belong: {hint}");
    let (code, _) = sqlstate(admin.batch_execute(&format!("SET pg_mask.keys = '{K2}'")));
    assert_eq!(code, "55P02");
    let (code, _) =
        sqlstate(admin.batch_execute(&format!("SELECT set_config('pg_mask.keys', '{K2}', false)")));
    assert_eq!(code, "55P02");
    // Whitespace the key parser allows, spelled as an escape, and a LOG-level message (a plan
    // printed to the log) that also appends the statement.
    let tabbed = K2.replacen(':', ":\\t", 1);
    let (code, _) = sqlstate(admin.batch_execute(&format!("SELECT E'{tabbed}'::int")));
    assert_eq!(code, "22P02");
    admin.batch_execute("SET debug_print_plan = on").expect("plans to the log");
    admin.batch_execute(&format!("SELECT length('{K2}')")).expect("a statement with a key in it");
    admin.batch_execute("RESET debug_print_plan").expect("reset");
    // Another session's view of this one, as pg_monitor (a metrics exporter) would have it.
    let activity: String = one(
        &mut db.client(),
        &format!(
            "SELECT coalesce(string_agg(query, ' | '), '') FROM pg_stat_activity WHERE datname = '{}'",
            db.name
        ),
    );
    assert!(!activity.contains(&key_material), "pg_stat_activity holds the key: {activity}");
    admin
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .expect("pg_stat_statements");
    let statements: String =
        one(&mut admin, "SELECT coalesce(string_agg(query, ' | '), '') FROM pg_stat_statements");
    assert!(statements.contains("log_statement"), "pg_stat_statements records this session");
    assert!(!statements.contains(&key_material), "pg_stat_statements holds the key");
    admin.batch_execute("RESET log_statement").expect("reset");
    let log = mark.since();
    assert!(log.contains("ALTER SYSTEM"), "the statements were logged:\n{log}");
    assert!(!log.contains(&key_material), "the server log holds the key:\n{log}");
    let data_dir: String = one(&mut admin, "SHOW data_directory");
    let auto_conf =
        read_server_file(&server::host_path(&format!("{data_dir}/postgresql.auto.conf")));
    assert!(
        !String::from_utf8_lossy(&auto_conf).contains(&key_material),
        "postgresql.auto.conf holds the key"
    );
}

#[test]
fn huge_values_are_errors_not_crashes() {
    let _lock = key_lock();
    let db = TestDb::new("adv");
    let mut c = db.client();
    let mark = LogMark::now();
    // A 800 MB value: its token would pass PostgreSQL's 1 GB limit.
    let (code, msg) =
        sqlstate(c.query_one("SELECT length(mask_pii(repeat('x', 800 * 1024 * 1024)))", &[]));
    assert_eq!(code, "54000", "{msg}");
    c.batch_execute("CREATE TABLE big (v text); CREATE TRIGGER m BEFORE INSERT ON big FOR EACH ROW EXECUTE FUNCTION mask_columns('v')").expect("table");
    let (code, _) =
        sqlstate(c.batch_execute("INSERT INTO big VALUES (repeat('x', 800 * 1024 * 1024))"));
    assert_eq!(code, "54000");
    // A 300 MB body is a reject (not JSON), kept without its payload, which would be too big.
    c.batch_execute(
        "INSERT INTO login_ingest VALUES ('huge', now(), repeat('y', 300 * 1024 * 1024))",
    )
    .expect("huge body");
    let row = c
        .query_one("SELECT reason, detail, payload IS NULL FROM user_login_rejects WHERE message_id = 'huge'", &[])
        .expect("reject");
    assert_eq!(row.get::<_, String>(0), "invalid_json");
    assert!(row.get::<_, String>(1).contains("payload not kept"));
    assert!(row.get::<_, bool>(2));
    let alive: i32 = one(&mut c, "SELECT 1");
    assert_eq!(alive, 1);
    assert_eq!(crashes_in(&mark.since()), 0);
}

#[test]
fn a_loader_reads_no_token_from_plans_notices_or_errors() {
    let _lock = key_lock();
    let db = TestDb::new("adv");
    let (role, _) = db.loader_role();
    let url = db.url.replacen("postgres:postgres@", &format!("{role}:plain@"), 1);
    let (mut loader, notices) = connect_with_notices(&url);
    // Every setting a plain role may use to make the server show it a plan or a parse tree,
    // with custom plans, whose parameters are constants.
    loader
        .batch_execute(
            "SET client_min_messages = debug5; SET debug_print_plan = on; SET debug_print_parse = on; \
             SET debug_print_rewritten = on; SET plan_cache_mode = force_custom_plan",
        )
        .expect("settings any role may change");
    // The chosen plaintext as a reject's payload (not JSON) and as an IP, on the bulk path and
    // on the INSERT path (an audit trigger keeps a table off the bulk path).
    for round in 0..2 {
        if round == 1 {
            db.client()
                .batch_execute(
                    "CREATE FUNCTION nothing() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$; \
                     CREATE TRIGGER audit AFTER INSERT ON user_logins FOR EACH ROW EXECUTE FUNCTION nothing()",
                )
                .expect("audit trigger");
        }
        let messages = [
            Message::new(format!("p{round}"), "198.51.100.79"),
            Message::new(format!("q{round}"), r#"{"user_id":"m","ip":"198.51.100.80"}"#),
        ];
        for _ in 0..6 {
            copy_ingest(&mut loader, &messages).expect("the loader loads");
        }
    }
    let seen = notices.lock().expect("notices").join("\n");
    assert!(seen.len() > 100, "the loader did get debug output: {} bytes", seen.len());
    for token_start in ["pm1.k", "cG0xLmsx" /* base64 of pm1.k1 */] {
        assert!(!seen.contains(token_start), "a notice holds a token:\n{seen}");
    }
    // The plans hold the payload as bytes too: search for the token as PostgreSQL prints a
    // text constant's bytes would not help the loader without the token itself, which the
    // admin can compute and the loader must not find.
    let token: String = one(&mut db.client(), "SELECT mask_pii('198.51.100.79')");
    assert!(!seen.contains(&token[7..20]), "a notice holds the chosen value's token");
    ORACLE_PATHS.fetch_add(2, Ordering::Relaxed);
}

#[test]
fn replaying_rejects_writes_no_plaintext_to_temporary_files() {
    let _lock = key_lock();
    let db = TestDb::new("adv");
    let mut c = db.client();
    c.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .expect("pg_stat_statements");
    let long = "x".repeat(40);
    let messages: Vec<Message> = (0..20_000)
        .map(|i| {
            Message::new(
                format!("t{i:05}"),
                format!(
                    r#"{{"user_id":"u{i}","ip":"198.18.{}.{}","device_type":"{long}"}}"#,
                    i / 256 % 256,
                    i % 256
                ),
            )
        })
        .collect();
    assert_eq!(copy_ingest(&mut c, &messages).expect("load").rejected, 20_000);
    c.batch_execute("SET work_mem = '64kB'").expect("small work_mem");
    // The control: one INSERT ... SELECT over every unmasked payload spills them to disk.
    let temp_blocks = |c: &mut postgres::Client, marker: &str| -> i64 {
        // This database's statements only: the view shows every database's, past runs' too.
        one(c, &format!("SELECT coalesce(sum(temp_blks_written), 0)::bigint FROM pg_stat_statements \
                         WHERE query LIKE '%{marker}%' AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"))
    };
    c.batch_execute(
        // The marker is a column alias: pg_stat_statements keeps it in every version (a comment
        // before a statement it may not).
        "BEGIN; WITH r AS (SELECT message_id, sent_at, unmask_pii(payload) AS body \
         FROM user_login_rejects ORDER BY message_id) \
         SELECT count(*) AS control_spill FROM (SELECT * FROM r ORDER BY body DESC) s; ROLLBACK;",
    )
    .expect("control");
    assert!(
        temp_blocks(&mut c, "control_spill") > 0,
        "the control spilled: the check can see temp files"
    );
    // The README's replay, after the fix.
    c.batch_execute("ALTER TABLE user_logins ALTER COLUMN device_type TYPE varchar(64)")
        .expect("the fix");
    let replayed: i64 =
        one(&mut c, "SELECT replayed AS replay_check FROM replay_rejects('too_long')");
    assert_eq!(replayed, 20_000);
    assert_eq!(count(&mut c, "SELECT count(*) FROM user_logins"), 20_000);
    assert_eq!(temp_blocks(&mut c, "replay_check"), 0, "the replay wrote temporary files");
}

#[test]
fn edge_cases_found_in_review_stay_closed() {
    let _lock = key_lock();
    let db = TestDb::new("adv");
    let mut c = db.client();

    // A narrow message_id takes the INSERT, which refuses an id that does not fit.
    c.batch_execute(
        "DROP VIEW login_duplicates; DROP INDEX user_logins_message_id_key; \
         ALTER TABLE user_logins ALTER COLUMN message_id TYPE varchar(5); \
         CREATE UNIQUE INDEX user_logins_message_id_key ON user_logins (message_id)",
    )
    .expect("narrow ids");
    let (code, _) =
        sqlstate(copy_ingest(&mut c, &[Message::new("much-longer-than-5", r#"{"user_id":"u"}"#)]));
    assert_eq!(code, "22001");
    c.batch_execute(
        "DROP INDEX user_logins_message_id_key; ALTER TABLE user_logins ALTER COLUMN message_id TYPE text; \
         CREATE UNIQUE INDEX user_logins_message_id_key ON user_logins (message_id)",
    )
    .expect("ids back");

    // A masked column too narrow for any token: even an empty value is a reject.
    c.batch_execute("ALTER TABLE user_logins ALTER COLUMN masked_ip TYPE varchar(20)")
        .expect("narrow");
    let counts =
        copy_ingest(&mut c, &[Message::new("e1", r#"{"user_id":"u","ip":""}"#)]).expect("load");
    assert_eq!(counts.rejected, 1);
    c.batch_execute("ALTER TABLE user_logins ALTER COLUMN masked_ip TYPE varchar(256)")
        .expect("wide again");

    // A domain NOT NULL column keeps the table off the bulk path: the INSERT enforces it.
    c.batch_execute("CREATE DOMAIN must_have AS text NOT NULL; ALTER TABLE user_logins ADD COLUMN tenant must_have")
        .expect("domain column");
    let (code, _) = sqlstate(copy_ingest(&mut c, &[Message::new("d1", r#"{"user_id":"u"}"#)]));
    assert_eq!(code, "23502");
    c.batch_execute("ALTER TABLE user_logins DROP COLUMN tenant").expect("drop");

    // A data-modifying CTE under the replica role raises like a plain INSERT.
    c.batch_execute("SET session_replication_role = replica").expect("replica");
    let (code, _) = sqlstate(c.batch_execute(
        "WITH x AS (INSERT INTO login_ingest VALUES ('rep', now(), '{\"user_id\":\"r\"}') RETURNING 1) SELECT count(*) FROM x",
    ));
    assert_eq!(code, "55000");
    c.batch_execute("SET session_replication_role = origin").expect("origin");

    // A database_error naming no real object stores no name (a device id cannot pass for one).
    c.batch_execute(
        "INSERT INTO login_ingest VALUES ('f1', now(), '{\"user_id\":\"u\"}', '23514 column \"f3a9c2e1b4d5a6c7\"'), \
                                         ('f2', now(), '{\"user_id\":\"u\"}', '23514 column \"locale\"')",
    )
    .expect("refused messages");
    let details: Vec<String> = c
        .query(
            "SELECT detail FROM user_login_rejects WHERE message_id IN ('f1', 'f2') ORDER BY 1",
            &[],
        )
        .expect("details")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        details,
        [
            "the database refused the message: SQLSTATE 23514",
            "the database refused the message: SQLSTATE 23514, column \"locale\"",
        ]
    );

    // A database in another encoding is refused when the extension is created.
    let latin = unique("latin1");
    admin()
        .batch_execute(&format!("CREATE DATABASE {latin} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"))
        .expect("latin1 database");
    let (code, msg) = sqlstate(connect(&url_for(&latin)).batch_execute("CREATE EXTENSION pg_mask"));
    let _ = admin().batch_execute(&format!("DROP DATABASE {latin}"));
    assert_eq!(code, "0A000", "{msg}");
}

#[test]
fn a_renamed_schema_cannot_divert_a_long_lived_loader() {
    let _lock = key_lock();
    let db = TestDb::new("adv");
    let mut owner = db.client();
    owner
        .batch_execute(
            "CREATE SCHEMA app; \
             CREATE TABLE app.user_logins (LIKE public.user_logins INCLUDING ALL); \
             CREATE TABLE app.user_login_rejects (LIKE public.user_login_rejects INCLUDING ALL); \
             CREATE VIEW app.login_ingest AS SELECT * FROM public.login_ingest; \
             CREATE TRIGGER r INSTEAD OF INSERT ON app.login_ingest FOR EACH ROW \
               EXECUTE FUNCTION ingest_login_events('user_logins', 'user_login_rejects'); \
             CREATE TRIGGER f AFTER INSERT ON app.login_ingest FOR EACH STATEMENT EXECUTE FUNCTION ingest_flush();",
        )
        .expect("an app schema");
    let (role, mut mallory) =
        db.role("mallory", &format!("GRANT CREATE ON DATABASE {} TO {{role}};", db.name));
    let (loader_role, mut loader) = db.role(
        "loader",
        "GRANT USAGE ON SCHEMA app TO {role}; GRANT INSERT ON app.login_ingest TO {role};",
    );
    let load = |c: &mut postgres::Client, view: &str, id: &str| {
        copy_ingest_into(c, view, &[Message::new(id, "not json: a reject")])
    };
    load(&mut loader, "app.login_ingest", "a1").expect("first load");
    owner.batch_execute("ALTER SCHEMA app RENAME TO app_old").expect("rename");
    mallory
        .batch_execute(&format!(
            "CREATE SCHEMA app; CREATE TABLE app.user_logins (message_id text, user_id text, \
               device_type text, masked_ip text, masked_device_id text, locale text, app_version int, \
               create_date date); \
             CREATE TABLE app.user_login_rejects (message_id text, sent_at timestamptz, reason text, \
               detail text, payload text); \
             CREATE UNIQUE INDEX ON app.user_logins (message_id); CREATE UNIQUE INDEX ON app.user_login_rejects (message_id); \
             GRANT ALL ON SCHEMA app TO {loader_role}; GRANT ALL ON ALL TABLES IN SCHEMA app TO PUBLIC;"
        ))
        .expect("mallory's schema");
    load(&mut loader, "app_old.login_ingest", "a2").expect("the same session loads again");
    let stolen: i64 = one(&mut mallory, "SELECT count(*) FROM app.user_login_rejects");
    assert_eq!(stolen, 0, "{role}'s tables got the loader's rows");
    assert_eq!(count(&mut owner, "SELECT count(*) FROM app_old.user_login_rejects"), 2);
}
