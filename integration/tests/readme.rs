//! The README's SQL, run as written: granting unmask, the duplicates view, replaying rejects
//! after a fix, and key rotation. The blocks are read from README.md itself, so the README
//! cannot drift from what works.

use integration::*;

const README: &str = include_str!("../../README.md");

/// The README's ```sql block that contains `marker`, with its indentation removed.
fn sql_block(marker: &str) -> String {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in README.lines() {
        let trimmed = line.trim_start();
        match (&mut current, trimmed.starts_with("```")) {
            (None, true) if trimmed == "```sql" => current = Some(Vec::new()),
            (Some(_), true) => blocks.extend(current.take().map(|b| b.join("\n"))),
            (Some(b), false) => b.push(trimmed),
            _ => {}
        }
    }
    let found: Vec<String> = blocks.into_iter().filter(|b| b.contains(marker)).collect();
    assert_eq!(found.len(), 1, "one README sql block contains {marker:?}");
    found.into_iter().next().unwrap_or_default()
}

/// Every token in both tables, unmasked, in a stable order: what rotation must not change.
fn plaintexts(c: &mut postgres::Client) -> Vec<Option<String>> {
    c.query(
        "SELECT unmask_pii(masked_ip) FROM user_logins UNION ALL \
         SELECT unmask_pii(masked_device_id) FROM user_logins UNION ALL \
         SELECT unmask_pii(payload) FROM user_login_rejects ORDER BY 1",
        &[],
    )
    .expect("unmask all")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[test]
fn the_readme_sql_runs_as_written() {
    let _lock = key_lock();
    let db = TestDb::new("readme");
    let mut c = db.client();
    let long_device_type = "x".repeat(40);
    let before;
    {
        let _k = KeySettings::keys(K1);
        let mut messages = sample_messages();
        // Two users on one IP and one device, for the duplicates view.
        for (id, user) in [("dup-1", "u-a"), ("dup-2", "u-b")] {
            let body =
                format!(r#"{{"user_id":"{user}","ip":"10.9.8.7","device_id":"dev-shared"}}"#);
            messages.push(Message::new(id, body));
        }
        let body =
            format!(r#"{{"user_id":"u-long","ip":"10.1.1.1","device_type":"{long_device_type}"}}"#);
        messages.push(Message::new("too-long", body));
        copy_ingest(&mut c, &messages).expect("load");
        assert_eq!(
            count(&mut c, "SELECT count(*) FROM user_login_rejects WHERE reason = 'too_long'"),
            1
        );

        // Who can unmask: the grant block, with a role name of this test's own.
        let reader = unique("pii_reader");
        let grant =
            sql_block("GRANT EXECUTE ON FUNCTION unmask_pii").replace("pii_reader", &reader);
        let (setup, select) = grant.split_once("\nSELECT").expect("grant, then a SELECT");
        c.batch_execute(setup).expect("README grant block");
        c.batch_execute(&format!("SET ROLE {reader}")).expect("set role");
        let rows = c.query(&format!("SELECT{select}"), &[]).expect("README unmask as the reader");
        c.batch_execute("RESET ROLE").expect("reset role");
        assert_eq!(rows.len(), 101);
        let ip: Option<String> =
            rows.iter().find(|r| r.get::<_, String>(0) == "u-a").map(|r| r.get(1));
        assert_eq!(ip.as_deref(), Some("10.9.8.7"));
        c.batch_execute(&format!("DROP OWNED BY {reader}; DROP ROLE {reader}")).expect("drop role");

        // The feeder's role: it loads, and reads nothing back.
        let feeder_role = unique("feeder");
        let block = sql_block("GRANT INSERT ON login_ingest").replace("feeder", &feeder_role);
        c.batch_execute(&block).expect("README feeder block");
        c.batch_execute(&format!("SET ROLE {feeder_role}")).expect("set role");
        c.batch_execute(
            r#"INSERT INTO login_ingest VALUES ('by-feeder', now(), '{"user_id":"f"}')"#,
        )
        .expect("the feeder loads");
        let (code, _) = sqlstate(c.query("SELECT count(*) FROM user_logins", &[]));
        assert_eq!(code, "42501", "the feeder reads nothing back");
        let (code, _) = sqlstate(c.query("SELECT mask_pii('10.9.8.7')", &[]));
        assert_eq!(code, "42501");
        c.batch_execute("RESET ROLE").expect("reset role");
        c.batch_execute(&format!("DROP OWNED BY {feeder_role}; DROP ROLE {feeder_role}"))
            .expect("drop role");

        // Lookup: the logins of a known value.
        let lookup = unique("pii_lookup");
        let block = sql_block("GRANT EXECUTE ON FUNCTION mask_pii").replace("pii_lookup", &lookup);
        let (setup, select) = block.split_once("\nSELECT").expect("grants, then a SELECT");
        c.batch_execute(setup).expect("README lookup block");
        c.batch_execute(&format!("SET ROLE {lookup}")).expect("set role");
        let found = c.query(&format!("SELECT{select}"), &[]).expect("README lookup as the role");
        let (code, _) = sqlstate(c.query("SELECT unmask_pii(masked_ip) FROM user_logins", &[]));
        assert_eq!(code, "42501", "a lookup right is not an unmask right");
        c.batch_execute("RESET ROLE").expect("reset role");
        assert_eq!(found.len(), 2, "the two logins of 10.9.8.7");
        c.batch_execute(&format!("DROP OWNED BY {lookup}; DROP ROLE {lookup}")).expect("drop role");

        // The duplicates view.
        let dups =
            c.query(&sql_block("FROM login_duplicates"), &[]).expect("README duplicates query");
        let kinds: Vec<(String, i64)> = dups.iter().map(|r| (r.get(0), r.get(2))).collect();
        assert!(
            kinds.contains(&("ip".into(), 2)) && kinds.contains(&("device_id".into(), 2)),
            "{kinds:?}"
        );

        // Replaying rejects after the fix (a wider column): the reject becomes a row.
        c.batch_execute("ALTER TABLE user_logins ALTER COLUMN device_type TYPE varchar(64)")
            .expect("the fix");
        let replay = c.query_one(&sql_block("replay_rejects("), &[]).expect("README replay");
        assert_eq!(replay.get::<_, i64>(0), 1, "one reject replayed");
        assert_eq!(replay.get::<_, i64>(1), 1, "and loaded");
        assert_eq!(
            count(&mut c, "SELECT count(*) FROM user_login_rejects WHERE reason = 'too_long'"),
            0
        );
        let replayed: String = c
            .query_one("SELECT device_type FROM user_logins WHERE message_id = 'too-long'", &[])
            .expect("replayed row")
            .get(0);
        assert_eq!(replayed, long_device_type);
        assert_eq!(
            count(&mut c, "SELECT count(*) FROM user_login_rejects"),
            1,
            "the other reject stays"
        );
        before = plaintexts(&mut c);
    }

    // Rotation: k2 first, k1 kept; the README's UPDATEs move every token to k2.
    let _k = KeySettings::keys(&format!("{K2}, {K1}"));
    let mut c = db.client();
    c.batch_execute(&sql_block("remask(masked_ip)")).expect("README rotation");
    let not_k2 = "SELECT count(*) FROM (SELECT masked_ip AS t FROM user_logins UNION ALL \
                  SELECT masked_device_id FROM user_logins UNION ALL \
                  SELECT payload FROM user_login_rejects) s WHERE t NOT LIKE 'pm1.k2.%'";
    assert_eq!(count(&mut c, not_k2), 0, "every token moved to k2");
    assert_eq!(plaintexts(&mut c), before, "and each still opens to the same value");
}
