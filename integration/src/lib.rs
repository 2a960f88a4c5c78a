//! Test harness shared by the integration suites: connections to the real server, a fresh
//! database per test with `sql/` applied, plain roles, key-setting changes, and COPY into the
//! ingest view. Endpoints come from the environment (`DATABASE_URL`) with local defaults.
//!
//! Tests that change the server's key settings hold [`key_lock`]: key settings are server-wide.

pub mod corpus;
pub mod emulator;
pub mod feeder;
pub mod report;
pub mod tls;

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;
use postgres::{Client, NoTls};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const SQL_FILES: [&str; 4] = [
    include_str!("../../sql/01_user_logins.sql"),
    include_str!("../../sql/02_ingest.sql"),
    include_str!("../../sql/03_analytics.sql"),
    include_str!("../../sql/04_roles.sql"),
];

pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".to_owned())
}

/// URL of another database on the same server.
pub fn url_for(db: &str) -> String {
    let base = database_url();
    match base.rfind('/') {
        Some(i)
            if base[..i].contains('@') || base[..i].ends_with(':') || base[..i].contains("//") =>
        {
            let (head, tail) = base.split_at(i);
            let query = tail.find('?').map(|q| &tail[q..]).unwrap_or("");
            format!("{head}/{db}{query}")
        }
        _ => format!("{base}/{db}"),
    }
}

pub fn connect(url: &str) -> Client {
    Client::connect(url, NoTls).unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

pub fn admin() -> Client {
    connect(&database_url())
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let t = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        t % 1_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The 0.1.0 release's extension script and application schema, for the upgrade tests.
pub const EXTENSION_0_1_0: &str = include_str!("../fixtures/pg_mask--0.1.0.sql");
pub const SCHEMA_0_1_0: &str = include_str!("../fixtures/schema-0.1.0.sql");

/// A fresh database with pg_mask and `sql/` applied, dropped when the guard drops.
///
/// With `PG_MASK_TEST_UPGRADE_FROM=0.1.0` (`make test` sets it for a second run of the
/// extension and adversary suites), the database is set up as that release left it and
/// then updated in place: `CREATE EXTENSION pg_mask VERSION '0.1.0'`, its schema, `ALTER
/// EXTENSION pg_mask UPDATE`, then `sql/` again, as the README's upgrade steps say. The old
/// extension script must be installed in the server's extension directory (`make test` does).
pub struct TestDb {
    pub name: String,
    pub url: String,
    roles: std::cell::RefCell<Vec<String>>,
}

impl TestDb {
    pub fn new(prefix: &str) -> Self {
        let name = unique(prefix);
        admin().batch_execute(&format!("CREATE DATABASE {name}")).expect("create test database");
        let url = url_for(&name);
        let mut c = connect(&url);
        if let Ok(version) = std::env::var("PG_MASK_TEST_UPGRADE_FROM") {
            c.batch_execute(&format!("CREATE EXTENSION pg_mask VERSION '{version}'"))
                .expect("install the old version");
            c.batch_execute(SCHEMA_0_1_0).expect("apply the old schema");
            c.batch_execute("ALTER EXTENSION pg_mask UPDATE").expect("update in place");
        }
        for sql in SQL_FILES {
            c.batch_execute(sql).expect("apply sql/");
        }
        TestDb { name, url, roles: Default::default() }
    }

    pub fn client(&self) -> Client {
        connect(&self.url)
    }

    /// A reader: a login role with SELECT on the tables and PUBLIC's default rights (TEMP
    /// tables, EXECUTE on what PUBLIC may execute), dropped with the database.
    pub fn plain_role(&self) -> (String, Client) {
        self.role("plain", "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};")
    }

    /// A loader, as the README sets up the feeder's role: INSERT on the ingest view, nothing
    /// on the tables.
    pub fn loader_role(&self) -> (String, Client) {
        self.role("loader", "GRANT INSERT ON login_ingest TO {role};")
    }

    /// A login role with the grants in `grants` (`{role}` stands for its name).
    pub fn role(&self, prefix: &str, grants: &str) -> (String, Client) {
        let role = unique(prefix);
        let mut c = self.client();
        c.batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD 'plain'; {}",
            grants.replace("{role}", &role)
        ))
        .expect("create role");
        self.roles.borrow_mut().push(role.clone());
        let url = self.url.replacen("postgres:postgres@", &format!("{role}:plain@"), 1);
        (role.clone(), connect(&url))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let mut a = admin();
        let _ = a.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        for role in self.roles.borrow().iter() {
            let _ = a.batch_execute(&format!("DROP ROLE IF EXISTS {role}"));
        }
    }
}

pub type Notices = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// A connection that keeps every notice the server sends (the flush says at DEBUG1 why a table
/// does not take the bulk insert).
pub fn connect_with_notices(url: &str) -> (postgres::Client, Notices) {
    let notices = Notices::default();
    let sink = std::sync::Arc::clone(&notices);
    let client = url
        .parse::<postgres::Config>()
        .expect("url")
        .notice_callback(move |n| sink.lock().expect("notices").push(n.message().to_owned()))
        .connect(postgres::NoTls)
        .expect("connect");
    (client, notices)
}

/// The single value of a one-row, one-column query; panics with the query on error.
pub fn one<T: for<'a> postgres::types::FromSql<'a>>(c: &mut Client, sql: &str) -> T {
    c.query_one(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

/// [`one`] for a `count(*)` (a bigint).
pub fn count(c: &mut Client, sql: &str) -> i64 {
    one(c, sql)
}

/// Fixed key-ring entries for tests that set the keys themselves ([`KeySettings`]).
pub const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
pub const K2: &str = "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

/// Serialises tests that change the server-wide key settings.
pub fn key_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// The server under test: where its files are and how to control it. The defaults are Debian's
/// cluster 15/main on this machine; a server in a chroot (`scripts/pg-chroot.sh env N`) is
/// described by `PG_MASK_TEST_*` variables, and every server-side path is then found under
/// `PG_MASK_TEST_SERVER_ROOT` from the host.
pub mod server {
    use std::path::PathBuf;

    fn var(name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }

    /// The PostgreSQL major version.
    pub fn major() -> u32 {
        var("PG_MASK_TEST_PG_MAJOR").and_then(|v| v.parse().ok()).unwrap_or(15)
    }

    /// The cluster's configuration directory (a server-side path).
    pub fn conf_dir() -> String {
        var("PG_MASK_TEST_SERVER_CONF_DIR")
            .unwrap_or_else(|| format!("/etc/postgresql/{}/main", major()))
    }

    /// The server log (a server-side path).
    pub fn log() -> String {
        var("PG_MASK_TEST_SERVER_LOG")
            .unwrap_or_else(|| format!("/var/log/postgresql/postgresql-{}-main.log", major()))
    }

    /// Where a server-side path is, seen from here.
    pub fn host_path(server_path: &str) -> PathBuf {
        match var("PG_MASK_TEST_SERVER_ROOT") {
            Some(root) => PathBuf::from(format!("{root}{server_path}")),
            None => PathBuf::from(server_path),
        }
    }

    /// A server-side path for a scratch file the server may read (a key file, a script).
    pub fn scratch_path(name: &str) -> String {
        format!("/tmp/{name}")
    }

    /// The command that controls the cluster, to which `start`, `stop` or `restart` is added.
    pub fn ctl() -> Vec<String> {
        var("PG_MASK_TEST_PG_CTL")
            .map(|c| c.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_else(|| vec!["pg_ctlcluster".into(), major().to_string(), "main".into()])
    }
}

/// Key settings for the duration of a test, written to a configuration file the cluster
/// includes (`conf.d/`, read after postgresql.conf), since `ALTER SYSTEM` refuses
/// `pg_mask.keys`. The configured ones come back on drop.
///
/// A reload is asynchronous. The file also sets a marker (`pg_mask_test.generation`, a custom
/// placeholder) to a value of its own, and each change waits until a new connection sees the
/// marker as the file has it: then every setting of the file is in force.
pub struct KeySettings {
    _file: ServerFile,
}

fn key_conf_path() -> String {
    format!("{}/conf.d/zz-pg_mask-test.conf", server::conf_dir())
}

impl KeySettings {
    /// Sets `pg_mask.keys` (with the other key sources emptied).
    pub fn keys(spec: &str) -> Self {
        Self::apply(&format!(
            "pg_mask.keys = '{spec}'\npg_mask.key_file = ''\npg_mask.key_command = ''\n"
        ))
    }

    /// Sets `pg_mask.key_file` (with the other key sources emptied).
    pub fn key_file(path: &str) -> Self {
        Self::apply(&format!(
            "pg_mask.keys = ''\npg_mask.key_file = '{path}'\npg_mask.key_command = ''\n"
        ))
    }

    /// Sets `pg_mask.key_command` (with the other key sources emptied) and its timeout.
    pub fn key_command(command: &str, timeout_seconds: u32) -> Self {
        // The timeout first: settings apply in file order, and the command runs as its own
        // line is applied.
        Self::apply(&format!(
            "pg_mask.key_command_timeout = {timeout_seconds}\npg_mask.keys = ''\npg_mask.key_file = ''\npg_mask.key_command = '{}'\n",
            command.replace('\'', "''")
        ))
    }

    fn apply(conf: &str) -> Self {
        let marker = unique("gen");
        let file = ServerFile::new(
            key_conf_path(),
            "postgres",
            "0600",
            &format!("{conf}pg_mask_test.generation = '{marker}'\n"),
        );
        reload();
        wait_for_marker(Some(&marker));
        KeySettings { _file: file }
    }
}

impl Drop for KeySettings {
    fn drop(&mut self) {
        // The file goes when `_file` drops, after this: remove it first, then reload.
        let _ = privileged("rm").arg("-f").arg(server::host_path(&key_conf_path())).status();
        reload();
        wait_for_marker(None);
    }
}

/// `SELECT pg_reload_conf()`.
pub fn reload() {
    admin().batch_execute("SELECT pg_reload_conf()").expect("reload");
}

/// Waits until a new connection sees the reload marker as `marker` (or not at all).
fn wait_for_marker(marker: Option<&str>) {
    let ok = wait_until(Duration::from_secs(10), || {
        let seen: Option<String> = admin()
            .query_one("SELECT current_setting('pg_mask_test.generation', true)", &[])
            .ok()
            .and_then(|r| r.get(0))
            .filter(|v: &String| !v.is_empty());
        seen.as_deref() == marker
    });
    assert!(ok, "the server did not apply the key settings within 10 s");
}

/// The SQLSTATE of a failed statement, or panics if it succeeded.
pub fn sqlstate<T: std::fmt::Debug>(r: Result<T, postgres::Error>) -> (String, String) {
    let e = r.expect_err("statement should have failed");
    let db = e.as_db_error().unwrap_or_else(|| panic!("not a database error: {e}"));
    (db.code().code().to_owned(), db.message().to_owned())
}

/// One message for the ingest view.
pub struct Message {
    pub id: String,
    pub sent_at: Option<SystemTime>,
    pub body: String,
}

impl Message {
    pub fn new(id: impl Into<String>, body: impl Into<String>) -> Self {
        Message { id: id.into(), sent_at: Some(SystemTime::now()), body: body.into() }
    }
}

/// What one COPY did, from `ingest_stats()`.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct Counts {
    pub loaded: i64,
    pub duplicates: i64,
    pub rejected: i64,
}

/// Binary COPY into `login_ingest` in one transaction, the way the feeder does it.
pub fn copy_ingest(client: &mut Client, messages: &[Message]) -> Result<Counts, postgres::Error> {
    copy_ingest_into(client, "login_ingest", messages)
}

/// Binary COPY into the ingest view `view` in one transaction.
pub fn copy_ingest_into(
    client: &mut Client,
    view: &str,
    messages: &[Message],
) -> Result<Counts, postgres::Error> {
    let mut tx = client.transaction()?;
    {
        let sink = tx.copy_in(&format!(
            "COPY {view} (message_id, sent_at, body) FROM STDIN (FORMAT binary)"
        ))?;
        let mut w = BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::TIMESTAMPTZ, Type::TEXT]);
        for m in messages {
            w.write(&[&m.id, &m.sent_at, &m.body])?;
        }
        w.finish()?;
    }
    let row = tx.query_one("SELECT loaded, duplicates, rejected FROM ingest_stats()", &[])?;
    let counts = Counts { loaded: row.get(0), duplicates: row.get(1), rejected: row.get(2) };
    tx.commit()?;
    Ok(counts)
}

/// The 100 sample messages of the reference image, with ids `sample-<line>`.
pub fn sample_messages() -> Vec<Message> {
    include_str!("../../data/sample_messages.jsonl")
        .lines()
        .enumerate()
        .map(|(i, line)| Message::new(format!("sample-{}", i + 1), line))
        .collect()
}

/// Waits for `cond` up to `timeout`, polling.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}

/// (rows, rejects, message ids present more than once across both tables) of a test database.
pub fn accounting(db: &TestDb) -> (i64, i64, i64) {
    let row = db
        .client()
        .query_one(
            "WITH ids AS (SELECT message_id FROM user_logins UNION ALL SELECT message_id FROM user_login_rejects) \
             SELECT (SELECT count(*) FROM user_logins), (SELECT count(*) FROM user_login_rejects), \
                    (SELECT count(*) FROM ids) - (SELECT count(DISTINCT message_id) FROM ids)",
            &[],
        )
        .expect("accounting");
    (row.get(0), row.get(1), row.get(2))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    (unsafe { libc::geteuid() }) == 0
}

/// A file for the server (an extension script, a key file) for the life of the guard, with an
/// owner and mode: installed as root, or through `sudo -n`, and removed on drop.
pub struct ServerFile {
    path: std::path::PathBuf,
    owner: &'static str,
    mode: &'static str,
}

impl ServerFile {
    /// `server_path` is the path the server sees (under `PG_MASK_TEST_SERVER_ROOT` from here).
    pub fn new(
        server_path: impl AsRef<str>,
        owner: &'static str,
        mode: &'static str,
        content: &str,
    ) -> Self {
        let file = ServerFile { path: server::host_path(server_path.as_ref()), owner, mode };
        file.write(content);
        file
    }

    /// Replaces the content (a new file, so a new inode, as an editor or a secret store does).
    pub fn write(&self, content: &str) {
        use std::io::Write;
        let mut install = privileged("install");
        install
            .args(["-o", self.owner, "-g", self.owner, "-m", self.mode, "/dev/stdin"])
            .arg(&self.path)
            .stdin(std::process::Stdio::piped());
        let mut child = install.spawn().expect("install");
        child.stdin.take().expect("stdin").write_all(content.as_bytes()).expect("write");
        assert!(child.wait().expect("install").success(), "install {}", self.path.display());
    }
}

impl Drop for ServerFile {
    fn drop(&mut self) {
        let _ = privileged("rm").arg("-f").arg(&self.path).status();
    }
}

/// `program` as root: run directly when we are root, else through `sudo -n`.
fn privileged(program: &str) -> std::process::Command {
    if is_root() {
        std::process::Command::new(program)
    } else {
        let mut c = std::process::Command::new("sudo");
        c.args(["-n", program]);
        c
    }
}

/// The bytes of a file only the server's OS user may read (its log, its data directory), by a
/// host path: read directly as root, else through `sudo -n cat`.
pub fn read_server_file(host_path: &std::path::Path) -> Vec<u8> {
    if is_root() {
        return std::fs::read(host_path).unwrap_or_default();
    }
    privileged("cat").arg(host_path).output().map(|o| o.stdout).unwrap_or_default()
}

/// A place in the server log: what is written after it can be read with [`LogMark::since`].
pub struct LogMark {
    offset: usize,
}

impl LogMark {
    pub fn now() -> Self {
        LogMark { offset: read_server_file(&server::host_path(&server::log())).len() }
    }

    /// What the server logged since the mark, once it has flushed what is pending (a
    /// statement's error is logged before its reply is sent, so a caller that got the error has
    /// its line in the log).
    pub fn since(&self) -> String {
        let all = read_server_file(&server::host_path(&server::log()));
        String::from_utf8_lossy(all.get(self.offset..).unwrap_or_default()).into_owned()
    }
}

/// Backends that died of a signal (a crash: the server then restarts every session), as the
/// server log reports them.
pub fn crashes_in(log: &str) -> usize {
    log.matches("terminated by signal").count()
}

/// Starts, stops or restarts the server under test (as root, or through `sudo -n`).
pub fn pg_ctl(action: &str) {
    let ctl = server::ctl();
    let status = privileged(&ctl[0]).args(&ctl[1..]).arg(action).status().expect("run pg_ctl");
    assert!(status.success(), "{} {action} failed", ctl.join(" "));
}
