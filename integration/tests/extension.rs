//! pg_mask's SQL API against the real server: masking, unmasking, keys, privileges, trigger.

use integration::*;

const K1_OTHER: &str = "k1:HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";

#[test]
fn round_trip_is_deterministic_for_every_kind_of_value() {
    let _lock = key_lock();
    let db = TestDb::new("ext");
    let mut c = db.client();
    let ten_kb = "é".repeat(5_000);
    for value in
        ["199.172.111.135", "", "ünïcødé 🦀 日本語", "593-47-5928", "a'b\"c\\d\te", ten_kb.as_str()]
    {
        let row = c
            .query_one("SELECT mask_pii($1), mask_pii($1), unmask_pii(mask_pii($1)), is_masked(mask_pii($1)), is_masked($1)", &[&value])
            .expect("mask");
        let (a, b): (String, String) = (row.get(0), row.get(1));
        assert_eq!(a, b, "equal inputs give equal masks");
        assert!(a.starts_with("pm1.k1."), "{a}");
        assert_eq!(row.get::<_, String>(2), value);
        assert!(row.get::<_, bool>(3));
        assert!(!row.get::<_, bool>(4));
    }
    let null: Option<String> = one(&mut c, "SELECT mask_pii(NULL)");
    assert_eq!(null, None);
    let len: i32 = one(&mut c, "SELECT length(mask_pii('199.172.111.135'))");
    assert_eq!(len, 49, "5 + len(kid) + ceil(4*(15+16)/3)");
}

#[test]
fn different_keys_give_different_masks() {
    let _lock = key_lock();
    let db = TestDb::new("ext");
    let a: String = {
        let _k = KeySettings::keys(K1);
        one(&mut db.client(), "SELECT mask_pii('10.0.0.1')")
    };
    let b: String = {
        let _k = KeySettings::keys(K1_OTHER);
        let mut c = db.client();
        let (code, msg) = sqlstate(c.query_one("SELECT unmask_pii($1)", &[&a]));
        assert_eq!(code, "XX001", "{msg}");
        assert!(msg.contains("failed authentication"), "{msg}");
        assert!(!msg.contains("10.0.0.1"));
        one(&mut c, "SELECT mask_pii('10.0.0.1')")
    };
    assert_ne!(a, b);
}

#[test]
fn tampered_truncated_and_foreign_tokens_are_errors_with_sqlstates() {
    let _lock = key_lock();
    let db = TestDb::new("ext");
    let mut c = db.client();
    let t: String = one(&mut c, "SELECT mask_pii('199.172.111.135')");
    let mut flipped = t.clone().into_bytes();
    let mid = flipped.len() - 10;
    flipped[mid] = if flipped[mid] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).expect("ascii");
    // Truncation either breaks the base64 (22P02) or the tag (XX001), depending on where.
    let cases: [(&str, &[&str]); 6] = [
        (&flipped, &["XX001"]),
        (&t[..t.len() - 4], &["22P02", "XX001"]),
        (&t[..t.len() - 8], &["22P02", "XX001"]),
        ("pm1.k1.AAAA", &["22P02"]),
        ("hello world", &["22P02"]),
        ("pm1.zz.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &["22023"]),
    ];
    for (token, want) in cases {
        let (code, msg) = sqlstate(c.query_one("SELECT unmask_pii($1)", &[&token]));
        assert!(want.contains(&code.as_str()), "{token}: {code} {msg}");
        assert!(!msg.contains("199.172"), "no plaintext in errors: {msg}");
        let masked: bool =
            c.query_one("SELECT is_masked($1)", &[&token]).expect("is_masked").get(0);
        assert!(!masked, "{token}");
    }
}

#[test]
fn rotation_keeps_old_tokens_readable_and_remask_moves_them() {
    let _lock = key_lock();
    let db = TestDb::new("ext");
    let old: String = {
        let _k = KeySettings::keys(K1);
        one(&mut db.client(), "SELECT mask_pii('10.1.2.3')")
    };
    {
        let _k = KeySettings::keys(&format!("{K2}, {K1}"));
        let mut c = db.client();
        let plain: String =
            c.query_one("SELECT unmask_pii($1)", &[&old]).expect("old unmasks").get(0);
        assert_eq!(plain, "10.1.2.3");
        let moved: String = c.query_one("SELECT remask($1)", &[&old]).expect("remask").get(0);
        assert!(moved.starts_with("pm1.k2."));
        let fresh: String = one(&mut c, "SELECT mask_pii('10.1.2.3')");
        assert_eq!(moved, fresh, "new writes use the new key");
        let ids: Vec<String> = one(&mut c, "SELECT mask_key_ids()");
        assert_eq!(ids, ["k2", "k1"]);
    }
    {
        let _k = KeySettings::keys(K2);
        let (code, msg) = sqlstate(db.client().query_one("SELECT unmask_pii($1)", &[&old]));
        assert_eq!(code, "22023");
        assert!(msg.contains("\"k1\""), "{msg}");
    }
}

#[test]
fn a_changed_key_file_is_read_again_from_the_next_transaction() {
    let _lock = key_lock();
    let db = TestDb::new("ext");
    let path = server::scratch_path(&format!("{}.keys", unique("key_file")));
    let file = ServerFile::new(&path, "postgres", "0600", K1);
    let _k = KeySettings::key_file(&path);
    let mut c = db.client();
    let mut tx = c.transaction().expect("begin");
    let mask = |tx: &mut postgres::Transaction<'_>| -> String {
        tx.query_one("SELECT mask_pii('10.0.0.1')", &[]).expect("mask").get(0)
    };
    let before = mask(&mut tx);
    file.write(K1_OTHER);
    assert_eq!(mask(&mut tx), before, "the file is looked at once per transaction");
    tx.commit().expect("commit");
    let mut tx = c.transaction().expect("begin");
    let after = mask(&mut tx);
    assert_ne!(after, before, "the next transaction uses the changed file");
    assert!(after.starts_with("pm1.k1."), "{after}");
}

#[test]
fn no_key_or_a_bad_key_is_one_clear_error_and_stores_nothing() {
    let _lock = key_lock();
    let db = TestDb::new("ext");
    {
        let _k = KeySettings::keys("");
        let mut c = db.client();
        let (code, msg) = sqlstate(c.query_one("SELECT mask_pii('1.2.3.4')", &[]));
        assert_eq!(code, "55000");
        assert!(msg.contains("pg_mask.keys") && msg.contains("pg_mask.key_file"), "{msg}");
        let (code, _) = sqlstate(
            c.execute("INSERT INTO user_logins (user_id, masked_ip) VALUES ('u', '1.2.3.4')", &[]),
        );
        assert_eq!(code, "55000");
        let (code, _) = sqlstate(copy_ingest(&mut c, &sample_messages()[..3]));
        assert_eq!(code, "55000");
        let n: i64 = one(
            &mut c,
            "SELECT (SELECT count(*) FROM user_logins) + (SELECT count(*) FROM user_login_rejects)",
        );
        assert_eq!(n, 0, "nothing stored without a key");
    }
    {
        let _k = KeySettings::keys("k1:c2hvcnQ=");
        let mut c = db.client();
        let (code, msg) = sqlstate(c.query_one("SELECT mask_pii('x')", &[]));
        // Not class 22, which a loader takes for one message's bad data and isolates.
        assert_eq!(code, "F0000");
        assert!(msg.contains("invalid pg_mask.keys") && msg.contains("32 bytes"), "{msg}");
        assert!(!msg.contains("c2hvcnQ"), "no key material in errors: {msg}");
        let (code, _) = sqlstate(copy_ingest(&mut c, &sample_messages()[..3]));
        assert_eq!(code, "F0000", "a load fails the same way, as a whole");
    }
}

#[test]
fn plain_roles_cannot_see_keys_or_unmask_until_granted() {
    let _lock = key_lock();
    let db = TestDb::new("ext");
    let (role, mut plain) = db.plain_role();
    let (code, _) = sqlstate(plain.query_one("SHOW pg_mask.key_file", &[]));
    assert_eq!(code, "42501");
    let (code, _) = sqlstate(plain.query_one("SELECT current_setting('pg_mask.keys')", &[]));
    assert_eq!(code, "42501");
    let n: i64 =
        one(&mut plain, "SELECT count(*) FROM pg_settings WHERE name LIKE 'pg_mask.%key%'");
    assert_eq!(n, 0);
    let (code, _) = sqlstate(plain.query_one("SELECT count(*) FROM pg_file_settings", &[]));
    assert_eq!(code, "42501");
    let (code, _) = sqlstate(plain.query_one("SELECT mask_key_ids()", &[]));
    assert_eq!(code, "42501");
    // Not settable per role or database, where pg_db_role_setting would show it to anyone.
    let (code, _) = sqlstate(
        db.client().batch_execute(&format!("ALTER ROLE {role} SET pg_mask.keys = '{K1}'")),
    );
    assert_eq!(code, "55P02");
    let (code, _) = sqlstate(plain.query_one("SELECT mask_pii('172.16.0.1')", &[]));
    assert_eq!(code, "42501", "mask_pii is a lookup right, not PUBLIC's");
    let token: String = one(&mut db.client(), "SELECT mask_pii('172.16.0.1')");
    let (code, _) = sqlstate(plain.query_one("SELECT unmask_pii($1)", &[&token]));
    assert_eq!(code, "42501");
    db.client()
        .batch_execute(&format!("GRANT EXECUTE ON FUNCTION unmask_pii(text) TO {role}"))
        .expect("grant");
    let back: String = plain.query_one("SELECT unmask_pii($1)", &[&token]).expect("granted").get(0);
    assert_eq!(back, "172.16.0.1");
    // Even a superuser's SHOW never prints key material.
    let _k = KeySettings::keys(K1);
    let shown: String = one(&mut db.client(), "SHOW pg_mask.keys");
    assert_eq!(shown, "(set)");
}

#[test]
fn trigger_masks_insert_copy_update_and_insert_select_and_keeps_tokens() {
    let _lock = key_lock();
    let db = TestDb::new("ext");
    let mut c = db.client();
    c.batch_execute(
        "INSERT INTO user_logins (message_id, user_id, masked_ip, masked_device_id) VALUES ('a', 'u1', '10.0.0.1', '111-11-1111')",
    )
    .expect("insert");
    let mut w = c
        .copy_in("COPY user_logins (message_id, user_id, masked_ip, masked_device_id) FROM STDIN")
        .expect("copy");
    std::io::Write::write_all(&mut w, b"b\tu2\t10.0.0.2\t222-22-2222\n").expect("write");
    w.finish().expect("finish");
    c.batch_execute(
        "INSERT INTO user_logins (message_id, user_id, masked_ip) SELECT 'c', 'u3', '10.0.0.3';
         UPDATE user_logins SET masked_device_id = '333-33-3333' WHERE message_id = 'c';
         UPDATE user_logins SET locale = 'FR' WHERE message_id = 'a';",
    )
    .expect("writes");
    let rows = c
        .query("SELECT message_id, masked_ip, masked_device_id, unmask_pii(masked_ip), unmask_pii(masked_device_id) FROM user_logins ORDER BY 1", &[])
        .expect("select");
    let want = [
        ("a", "10.0.0.1", "111-11-1111"),
        ("b", "10.0.0.2", "222-22-2222"),
        ("c", "10.0.0.3", "333-33-3333"),
    ];
    for (row, (id, ip, dev)) in rows.iter().zip(want) {
        assert_eq!(row.get::<_, String>(0), id);
        assert!(row.get::<_, String>(1).starts_with("pm1."), "ip masked for {id}");
        assert!(row.get::<_, String>(2).starts_with("pm1."), "device masked for {id}");
        assert_eq!(row.get::<_, String>(3), ip);
        assert_eq!(row.get::<_, String>(4), dev);
    }
    // A re-insert of valid tokens (dump/restore) keeps them as they are.
    c.batch_execute("INSERT INTO user_logins (message_id, user_id, masked_ip) SELECT 'd', user_id, masked_ip FROM user_logins WHERE message_id = 'a'")
        .expect("reinsert");
    let same: bool = one(&mut c, "SELECT (SELECT masked_ip FROM user_logins WHERE message_id = 'a') = (SELECT masked_ip FROM user_logins WHERE message_id = 'd')");
    assert!(same, "a valid token is never masked twice");
    // No plaintext anywhere in the table.
    let leaks: i64 = one(&mut c, "SELECT count(*) FROM user_logins WHERE masked_ip LIKE '10.%' OR masked_device_id LIKE '%-%-%' AND masked_device_id NOT LIKE 'pm1.%'");
    assert_eq!(leaks, 0);
}

#[test]
fn trigger_configuration_errors_are_clear() {
    let _lock = key_lock();
    let db = TestDb::new("ext");
    let mut c = db.client();
    c.batch_execute(
        "CREATE TABLE t (a text, n int, short varchar(20));
         CREATE TRIGGER m BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION mask_columns('nope');",
    )
    .expect("create");
    let (code, msg) = sqlstate(c.execute("INSERT INTO t (a) VALUES ('x')", &[]));
    assert_eq!(code, "42703");
    assert!(msg.contains("\"nope\""), "{msg}");
    c.batch_execute("DROP TRIGGER m ON t; CREATE TRIGGER m BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION mask_columns('n');")
        .expect("retrigger");
    let (code, msg) = sqlstate(c.execute("INSERT INTO t (n) VALUES (1)", &[]));
    assert_eq!(code, "42804", "{msg}");
    c.batch_execute("DROP TRIGGER m ON t; CREATE TRIGGER m BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION mask_columns('short');")
        .expect("retrigger");
    let (code, msg) = sqlstate(c.execute("INSERT INTO t (short) VALUES ('1.2.3.4')", &[]));
    assert_eq!(
        code, "22001",
        "a token longer than varchar(n) is an error, not a silent overflow: {msg}"
    );
    let n: i64 = one(&mut c, "SELECT count(*) FROM t");
    assert_eq!(n, 0);
}

#[test]
fn privileges_hold_after_alter_extension_update_and_no_role_setting_holds_a_key() {
    let _lock = key_lock();
    let db = TestDb::new("ext");
    let mut c = db.client();
    let (reader, mut reader_client) = db.plain_role();
    c.batch_execute(&format!("GRANT EXECUTE ON FUNCTION unmask_pii(text) TO {reader}"))
        .expect("grant");
    // A real update: the most an update script does is re-declare every function. This one
    // does so without the install script's REVOKEs, so only privileges that survive the
    // update itself can pass.
    let sharedir: String = one(&mut c, "SELECT setting FROM pg_config WHERE name = 'SHAREDIR'");
    let version: String =
        one(&mut c, "SELECT extversion FROM pg_extension WHERE extname = 'pg_mask'");
    let installed = std::fs::read_to_string(server::host_path(&format!(
        "{sharedir}/extension/pg_mask--{version}.sql"
    )))
    .expect("installed extension script");
    let update: String = installed
        .lines()
        .filter(|l| !l.starts_with("REVOKE"))
        .map(|l| l.replace("CREATE  FUNCTION", "CREATE OR REPLACE FUNCTION"))
        .map(|l| l.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"))
        .collect::<Vec<_>>()
        .join("\n");
    let _script = ServerFile::new(
        format!("{sharedir}/extension/pg_mask--{version}--{version}-update-test.sql"),
        "root",
        "0644",
        &update,
    );
    c.batch_execute(&format!("ALTER EXTENSION pg_mask UPDATE TO '{version}-update-test'"))
        .expect("update");
    let updated: String =
        one(&mut c, "SELECT extversion FROM pg_extension WHERE extname = 'pg_mask'");
    assert_eq!(updated, format!("{version}-update-test"));

    let token: String = one(&mut c, "SELECT mask_pii('10.0.0.1')");
    let (_, mut plain) = db.plain_role();
    let (code, _) = sqlstate(plain.query_one("SELECT unmask_pii($1)", &[&token]));
    assert_eq!(code, "42501", "unmask_pii stays revoked from PUBLIC");
    let (code, _) = sqlstate(plain.query_one("SELECT mask_key_ids()", &[]));
    assert_eq!(code, "42501", "mask_key_ids stays revoked from PUBLIC");
    let opened: String =
        reader_client.query_one("SELECT unmask_pii($1)", &[&token]).expect("granted").get(0);
    assert_eq!(opened, "10.0.0.1", "a grant survives the update too");
    // Key settings cannot be stored per database or role, so pg_db_role_setting (readable by
    // everyone) never holds one.
    let (code, _) =
        sqlstate(c.batch_execute(&format!("ALTER DATABASE {} SET pg_mask.keys = '{K1}'", db.name)));
    assert_eq!(code, "55P02");
    let n: i64 = one(
        &mut plain,
        "SELECT count(*) FROM pg_db_role_setting, unnest(setconfig) s WHERE s LIKE 'pg_mask.%'",
    );
    assert_eq!(n, 0);
    // The rejects' payloads are tokens: a plain role with SELECT reads no plaintext from them.
    copy_ingest(&mut c, &sample_messages()).expect("copy");
    let payload: String = one(&mut plain, "SELECT payload FROM user_login_rejects");
    assert!(payload.starts_with("pm1.") && !payload.contains("oops"));
}

#[test]
fn an_installed_0_1_0_updates_in_place_keeping_tokens_triggers_and_grants() {
    let _lock = key_lock();
    let mut c = admin();
    let sharedir: String = one(&mut c, "SELECT setting FROM pg_config WHERE name = 'SHAREDIR'");
    let script = format!("{sharedir}/extension/pg_mask--0.1.0.sql");
    let _old = (!server::host_path(&script).exists())
        .then(|| ServerFile::new(&script, "root", "0644", EXTENSION_0_1_0));
    // A database as 0.1.0 left it: the extension, the schema, data, a grant.
    let name = unique("upgrade");
    c.batch_execute(&format!("CREATE DATABASE {name}")).expect("create database");
    let url = url_for(&name);
    let mut db = connect(&url);
    db.batch_execute("CREATE EXTENSION pg_mask VERSION '0.1.0'").expect("install 0.1.0");
    db.batch_execute(SCHEMA_0_1_0).expect("0.1.0 schema");
    copy_ingest(&mut db, &sample_messages()).expect("load under 0.1.0");
    let role = unique("upgrade_reader");
    db.batch_execute(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'plain'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}; \
         GRANT EXECUTE ON FUNCTION unmask_pii(text) TO {role};"
    ))
    .expect("role");
    let reader_url = url.replacen("postgres:postgres@", &format!("{role}:plain@"), 1);
    let snapshot = |c: &mut postgres::Client| -> Vec<String> {
        c.query(
            "SELECT concat_ws('|', message_id, masked_ip, masked_device_id) FROM user_logins \
             UNION ALL SELECT concat_ws('|', message_id, payload) FROM user_login_rejects ORDER BY 1",
            &[],
        )
        .expect("snapshot")
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    let triggers = |c: &mut postgres::Client| -> Vec<String> {
        c.query("SELECT tgrelid::regclass::text || '.' || tgname || ':' || oid FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1", &[])
            .expect("triggers")
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let before = snapshot(&mut db);
    let triggers_before = triggers(&mut db);
    let mut reader = connect(&reader_url);
    let public_could: String = one(&mut reader, "SELECT mask_pii('198.51.100.1')");
    assert!(
        public_could.starts_with("pm1."),
        "0.1.0 let any role mask: the oracle this update closes"
    );

    db.batch_execute("ALTER EXTENSION pg_mask UPDATE").expect("update");
    let version: String =
        one(&mut db, "SELECT extversion FROM pg_extension WHERE extname = 'pg_mask'");
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    assert_eq!(snapshot(&mut db), before, "no token re-masked");
    assert_eq!(triggers(&mut db), triggers_before, "no trigger dropped or re-created");
    let mut reader = connect(&reader_url);
    let (code, _) = sqlstate(reader.query_one("SELECT mask_pii('198.51.100.1')", &[]));
    assert_eq!(code, "42501", "mask_pii revoked from PUBLIC by the update");
    let token = before
        .iter()
        .find_map(|r| r.split('|').nth(1).filter(|t| t.starts_with("pm1.")).map(str::to_owned));
    let opened: String =
        reader.query_one("SELECT unmask_pii($1)", &[&token]).expect("the grant survives").get(0);
    assert!(!opened.is_empty());
    // The README's step after the update: apply sql/ again (the view gains database_error).
    for sql in SQL_FILES {
        db.batch_execute(sql).expect("apply sql/ after the update");
    }
    let more: Vec<Message> = (0..3)
        .map(|i| Message::new(format!("after-{i}"), r#"{"user_id":"u","ip":"10.0.0.1"}"#))
        .collect();
    assert_eq!(copy_ingest(&mut db, &more).expect("load after the update").loaded, 3);
    drop((db, reader));
    let _ = c.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"));
    let _ = c.batch_execute(&format!("DROP ROLE {role}"));
}

#[test]
fn key_command_gives_the_ring_at_start_and_reload_and_fails_closed() {
    let _lock = key_lock();
    let db = TestDb::new("ext");
    let path = server::scratch_path(&format!("{}.keys", unique("key_command")));
    let file = ServerFile::new(&path, "postgres", "0600", K1);
    let under = |spec: &str| {
        let ring = pg_mask_core::KeyRing::parse(spec).expect("test ring");
        ring.mask("10.0.0.1")
    };
    {
        let _k = KeySettings::key_command(&format!("cat {path}"), 10);
        let token: String = one(&mut db.client(), "SELECT mask_pii('10.0.0.1')");
        assert_eq!(token, under(K1), "the ring the command printed");
        let shown: String = one(&mut db.client(), "SHOW pg_mask.key_command");
        assert_eq!(shown, "(set)", "the command line is not shown either");
        // The secret store rotated the key: a reload runs the command again.
        file.write(&format!("{K2}, {K1}"));
        reload();
        assert!(
            wait_until(std::time::Duration::from_secs(10), || {
                let t: String = one(&mut db.client(), "SELECT mask_pii('10.0.0.1')");
                t == under(K2)
            }),
            "a reload re-runs the key command"
        );
    }
    for (command, expect) in [
        ("exit 3".to_owned(), "failed (exit status: 3)"),
        ("sleep 30".to_owned(), "did not finish within 1 s"),
        ("echo not-a-key-ring".to_owned(), "printed an invalid key ring"),
    ] {
        let _k = KeySettings::key_command(&command, 1);
        let mut c = db.client();
        let (code, msg) = sqlstate(c.query_one("SELECT mask_pii('10.0.0.1')", &[]));
        assert_eq!(code, "55000", "{command}: {msg}");
        assert!(msg.contains(expect), "{command}: {msg}");
        let (code, _) = sqlstate(copy_ingest(&mut c, &sample_messages()[..2]));
        assert_eq!(code, "55000", "{command}: nothing is written without a key");
        assert_eq!(count(&mut db.client(), "SELECT count(*) FROM user_logins"), 0);
    }
}
