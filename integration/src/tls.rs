//! A throwaway PostgreSQL cluster that speaks TLS only, for the feeder's TLS tests: a CA made
//! here (rcgen), a server certificate for `localhost`, a client certificate, and a second CA
//! the server's certificate does not chain to. `pg_hba.conf` allows TCP only over TLS
//! (`hostssl`): password (scram) for everyone, certificate for the role `feeder_cert`.
//!
//! The cluster runs as the `postgres` OS user from a temporary directory on a free loopback
//! port, with pg_mask preloaded and a key file, and the schema from `sql/` applied through the
//! local socket (peer authentication). It is stopped and removed when the guard drops.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct TlsCluster {
    pub dir: PathBuf,
    pub port: u16,
    /// The CA that signed the server's and the client's certificates.
    pub ca: PathBuf,
    /// A CA that signed nothing here.
    pub wrong_ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// The `postgres` OS user runs `program` (we are root in the test environment, or have sudo).
fn as_postgres(program: &str) -> Command {
    let mut c = if crate::is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]);
        c
    } else {
        let mut c = Command::new("sudo");
        c.args(["-n", "-u", "postgres"]);
        c
    };
    c.arg(program);
    c
}

fn run(mut c: Command, what: &str) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
}

/// (certificate PEM, key PEM) for `cn` with `names` as SANs, signed by `issuer`.
fn leaf(cn: &str, names: &[&str], issuer: &CertifiedIssuer<'static, KeyPair>) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("params");
    params.distinguished_name.push(DnType::CommonName, cn);
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, issuer).expect("sign");
    (cert.pem(), key.serialize_pem())
}

fn write(path: &Path, content: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, content).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn chown_postgres(path: &Path) {
    let mut c = if crate::is_root() {
        Command::new("chown")
    } else {
        let mut c = Command::new("sudo");
        c.args(["-n", "chown"]);
        c
    };
    c.args(["-R", "postgres:postgres"]).arg(path);
    run(c, "chown");
}

impl TlsCluster {
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(crate::unique("pgtls"));
        let data = dir.join("data");
        let server = dir.join("server");
        std::fs::create_dir_all(&server).expect("mkdir");
        let port = crate::emulator::free_port();
        // Certificates: the server's names localhost only, so 127.0.0.1 is a wrong host name.
        let authority = ca("pg_mask test CA");
        let other = ca("some other CA");
        let (server_cert, server_key) = leaf("localhost", &["localhost"], &authority);
        let (client_cert, client_key) = leaf("feeder_cert", &[], &authority);
        write(&server.join("server.crt"), &server_cert, 0o644);
        write(&server.join("server.key"), &server_key, 0o600);
        write(&server.join("ca.crt"), &authority.pem(), 0o644);
        write(&server.join("keys"), crate::K1, 0o600);
        let ca_path = dir.join("ca.crt");
        let wrong_ca = dir.join("wrong_ca.crt");
        let (client_cert_path, client_key_path) = (dir.join("client.crt"), dir.join("client.key"));
        write(&ca_path, &authority.pem(), 0o644);
        write(&wrong_ca, &other.pem(), 0o644);
        write(&client_cert_path, &client_cert, 0o644);
        write(&client_key_path, &client_key, 0o600);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::create_dir(&data).expect("mkdir data");
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        chown_postgres(&server);
        chown_postgres(&data);
        let mut initdb = as_postgres(&format!("{BIN}/initdb"));
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            "-A",
            "peer",
        ]);
        run(initdb, "initdb");
        let s = server.display();
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{s}'\n\
             ssl = on\nssl_cert_file = '{s}/server.crt'\nssl_key_file = '{s}/server.key'\n\
             ssl_ca_file = '{s}/ca.crt'\nshared_preload_libraries = 'pg_mask'\n\
             pg_mask.key_file = '{s}/keys'\nfsync = off\nmax_connections = 20\n"
        );
        let hba = "local all postgres peer\n\
                   hostssl all feeder_cert 127.0.0.1/32 cert\n\
                   hostssl all all 127.0.0.1/32 scram-sha-256\n";
        let mut append = as_postgres("sh");
        append.arg("-c").arg(format!(
            "cat >> '{0}/postgresql.conf' <<'EOF'\n{conf}EOF\ncat > '{0}/pg_hba.conf' <<'EOF'\n{hba}EOF\n",
            data.display()
        ));
        run(append, "configure");
        let mut start = as_postgres(&format!("{BIN}/pg_ctl"));
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(server.join("log"))
            .args(["-w", "-t", "60", "start"]);
        run(start, "pg_ctl start");
        let cluster = TlsCluster {
            dir,
            port,
            ca: ca_path,
            wrong_ca,
            client_cert: client_cert_path,
            client_key: client_key_path,
        };
        cluster.psql("ALTER ROLE postgres PASSWORD 'postgres'; CREATE ROLE feeder_cert LOGIN;");
        for sql in crate::SQL_FILES {
            cluster.psql(sql);
        }
        cluster.psql(
            "GRANT INSERT ON login_ingest TO feeder_cert; \
             GRANT SELECT, INSERT ON user_logins, user_login_rejects TO feeder_cert;",
        );
        cluster
    }

    /// Runs SQL as the superuser over the local socket; returns psql's unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        use std::io::Write;
        let mut c = as_postgres("psql");
        c.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-p"])
            .arg(self.port.to_string())
            .arg("-h")
            .arg(self.dir.join("server"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().expect("psql");
        child.stdin.take().expect("stdin").write_all(sql.as_bytes()).expect("write sql");
        let out = child.wait_with_output().expect("psql");
        assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Switches the server to a self-signed X.509 version 1 certificate, the kind Citus's
    /// automatic TLS and `openssl x509 -req` make (rcgen makes only version 3), and reloads.
    pub fn use_self_signed_v1_certificate(&self) {
        let server = self.dir.join("server");
        let (key, csr, cert) =
            (server.join("v1.key"), server.join("v1.csr"), server.join("v1.crt"));
        let mut req = as_postgres("openssl");
        req.args(["req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&csr);
        run(req, "openssl req");
        let mut sign = as_postgres("openssl");
        sign.args(["x509", "-req", "-days", "2", "-in"])
            .arg(&csr)
            .arg("-signkey")
            .arg(&key)
            .arg("-out")
            .arg(&cert);
        run(sign, "openssl x509 -req");
        let mut text = as_postgres("openssl");
        text.args(["x509", "-noout", "-text", "-in"]).arg(&cert);
        assert!(
            run(text, "openssl x509 -text").contains("Version: 1 (0x0)"),
            "not a v1 certificate"
        );
        self.psql(&format!(
            "ALTER SYSTEM SET ssl_cert_file = '{}'; ALTER SYSTEM SET ssl_key_file = '{}'; \
             SELECT pg_reload_conf();",
            cert.display(),
            key.display()
        ));
    }

    /// Turns TLS off (`ssl = off`, password logins over plain TCP) and reloads; returns once
    /// new sessions see it.
    pub fn turn_tls_off(&self) {
        let hba = "local all postgres peer\nhost all all 127.0.0.1/32 scram-sha-256\n";
        let mut write = as_postgres("sh");
        write.arg("-c").arg(format!(
            "cat > '{}/pg_hba.conf' <<'EOF'\n{hba}EOF\n",
            self.dir.join("data").display()
        ));
        run(write, "pg_hba.conf");
        self.psql("ALTER SYSTEM SET ssl = off; SELECT pg_reload_conf();");
        for _ in 0..50 {
            if self.psql("SHOW ssl") == "off" {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("ssl is still on after the reload");
    }

    /// A URL for `host` (`localhost` matches the certificate, `127.0.0.1` does not).
    pub fn url(&self, user: &str, host: &str, params: &str) -> String {
        format!("postgres://{user}:postgres@{host}:{}/postgres?{params}", self.port)
    }
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        let mut stop = as_postgres(&format!("{BIN}/pg_ctl"));
        stop.arg("-D").arg(self.dir.join("data")).args(["-m", "immediate", "stop"]);
        let _ = stop.output();
        let _ = std::fs::remove_dir_all(&self.dir);
        if self.dir.exists() {
            let mut rm = if crate::is_root() {
                Command::new("rm")
            } else {
                let mut c = Command::new("sudo");
                c.args(["-n", "rm"]);
                c
            };
            let _ = rm.arg("-rf").arg(&self.dir).status();
        }
    }
}
