//! Where and how to connect to PostgreSQL, read as libpq reads it: `DATABASE_URL` (a URL or
//! `key=value` pairs), then the `PG*` variables for what it leaves out, then defaults.
//!
//! tokio-postgres parses the connection itself but knows neither the TLS file options nor
//! `verify-ca`/`verify-full`; this module takes `sslmode`, `sslrootcert`, `sslcert` and
//! `sslkey` out (or `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`), builds the TLS
//! connector ([`crate::tls`]) and hands the rest to tokio-postgres. Never logs or displays the
//! password.

use crate::tls::{self, Roots, Verify};
use std::path::PathBuf;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

/// Used when neither `DATABASE_URL` nor a `PG*` variable says otherwise (the reference setup).
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres:postgres@localhost:5432/postgres";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid database URL: {0}")]
    Url(tokio_postgres::Error),
    #[error(
        "invalid sslmode {0:?}: use disable, allow, prefer, require, verify-ca or verify-full"
    )]
    SslMode(String),
    #[error("connection option {0} is not supported by the feeder")]
    Unsupported(String),
    #[error("invalid connection string: a key=value pair or a quote is incomplete")]
    Syntax,
    #[error("sslcert and sslkey go together: set both")]
    HalfClientCert,
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// A connection recipe: tokio-postgres's settings and the TLS to use.
#[derive(Clone)]
pub struct Connector {
    config: Config,
    tls: Option<MakeRustlsConnect>,
    target: String,
}

impl Connector {
    /// From `DATABASE_URL` (if given), the `PG*` variables and the defaults.
    pub fn from_env(database_url: Option<&str>) -> Result<Self, ConfigError> {
        Self::build(database_url, &|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    fn build(
        database_url: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let (rest, ssl) = match database_url {
            Some(url) => split_ssl(url)?,
            None => (DEFAULT_DATABASE_URL.to_owned(), SslParams::default()),
        };
        let mut config: Config = rest.parse().map_err(ConfigError::Url)?;
        if database_url.is_none() {
            // No URL: the variables replace the reference defaults (the feeder always did).
            if let Some(h) = env("PGHOST") {
                config = Config::new();
                config.host(&h).user("postgres").password("postgres").dbname("postgres");
            }
        }
        fill_from_env(&mut config, database_url.is_none(), env);
        let get = |url: &Option<String>, var: &str| url.clone().or_else(|| env(var));
        let mode = get(&ssl.mode, "PGSSLMODE").unwrap_or_else(|| "prefer".to_owned());
        let home = env("HOME").map(|h| PathBuf::from(h).join(".postgresql"));
        let default_file = |name: &str| home.as_ref().map(|d| d.join(name)).filter(|p| p.exists());
        let rootcert = get(&ssl.rootcert, "PGSSLROOTCERT");
        let roots = match rootcert.as_deref() {
            Some("system") => Some(Roots::System),
            Some(path) => Some(Roots::File(PathBuf::from(path))),
            None => default_file("root.crt").map(Roots::File),
        };
        let cert = get(&ssl.cert, "PGSSLCERT").map(PathBuf::from);
        let key = get(&ssl.key, "PGSSLKEY").map(PathBuf::from);
        let client = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => default_file("postgresql.crt").zip(default_file("postgresql.key")),
            _ => return Err(ConfigError::HalfClientCert),
        };
        let verify = match mode.as_str() {
            "disable" => None,
            "allow" | "prefer" => Some((SslMode::Prefer, Verify::Nothing)),
            // libpq: "if a root CA file exists, require behaves like verify-ca".
            "require" if roots.is_some() => Some((SslMode::Require, Verify::Chain)),
            "require" => Some((SslMode::Require, Verify::Nothing)),
            "verify-ca" => Some((SslMode::Require, Verify::Chain)),
            "verify-full" => Some((SslMode::Require, Verify::ChainAndHost)),
            other => return Err(ConfigError::SslMode(other.to_owned())),
        };
        let tls = match verify {
            None => {
                config.ssl_mode(SslMode::Disable);
                None
            }
            Some((ssl_mode, verify)) => {
                config.ssl_mode(ssl_mode);
                let roots = roots.unwrap_or(Roots::System);
                let client = client.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
                Some(MakeRustlsConnect::new(tls::client_config(verify, &roots, client)?))
            }
        };
        let target = describe(&config, &mode);
        Ok(Connector { config, tls, target })
    }

    /// `user@host:port/db (sslmode)`, never the password.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// A new connection, its I/O driven by a spawned task.
    pub async fn connect(&self) -> Result<Client, tokio_postgres::Error> {
        fn drive<F>(connection: F)
        where
            F: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
        {
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "postgres connection ended");
                }
            });
        }
        match &self.tls {
            None => {
                let (client, connection) = self.config.connect(NoTls).await?;
                drive(connection);
                Ok(client)
            }
            Some(tls) => {
                let (client, connection) = self.config.connect(tls.clone()).await?;
                drive(connection);
                Ok(client)
            }
        }
    }
}

#[derive(Default, Debug, PartialEq, Eq)]
struct SslParams {
    mode: Option<String>,
    rootcert: Option<String>,
    cert: Option<String>,
    key: Option<String>,
}

impl SslParams {
    /// Takes the option if it is one of ours; errors for TLS options the feeder does not
    /// implement (rather than ignoring a stricter setting).
    fn take(&mut self, key: &str, value: &str) -> Result<bool, ConfigError> {
        let slot = match key {
            "sslmode" => &mut self.mode,
            "sslrootcert" => &mut self.rootcert,
            "sslcert" => &mut self.cert,
            "sslkey" => &mut self.key,
            "sslcrl"
            | "sslcrldir"
            | "sslpassword"
            | "sslcertmode"
            | "ssl_min_protocol_version"
            | "ssl_max_protocol_version"
            | "requirepeer"
            | "gssencmode" => return Err(ConfigError::Unsupported(key.to_owned())),
            _ => return Ok(false),
        };
        *slot = Some(value.to_owned());
        Ok(true)
    }
}

/// The connection string without our TLS options, and those options.
fn split_ssl(s: &str) -> Result<(String, SslParams), ConfigError> {
    let mut ssl = SslParams::default();
    if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        let Some((base, query)) = s.split_once('?') else { return Ok((s.to_owned(), ssl)) };
        let mut kept = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            if !ssl.take(&k, &v)? {
                kept.append_pair(&k, &v);
            }
        }
        let kept = kept.finish();
        let rest = if kept.is_empty() { base.to_owned() } else { format!("{base}?{kept}") };
        return Ok((rest, ssl));
    }
    let mut kept = Vec::new();
    for (k, v) in key_values(s).map_err(|()| ConfigError::Syntax)? {
        if !ssl.take(&k, &v)? {
            kept.push(format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'")));
        }
    }
    Ok((kept.join(" "), ssl))
}

/// libpq's `key = value` form: values may be single-quoted with `\` escapes.
fn key_values(s: &str) -> Result<Vec<(String, String)>, ()> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') || key.is_empty() {
            return Err(());
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next().ok_or(())? {
                    '\'' => break,
                    '\\' => value.push(chars.next().ok_or(())?),
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.push(chars.next().ok_or(())?);
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

/// libpq: a variable supplies what the connection string leaves out. With no string at all
/// the reference defaults stand in for the string, so the variables override them.
fn fill_from_env(config: &mut Config, no_url: bool, env: &dyn Fn(&str) -> Option<String>) {
    if no_url || config.get_ports().is_empty() {
        if let Some(p) = env("PGPORT").and_then(|p| p.parse().ok()) {
            config.port(p);
        }
    }
    if no_url || config.get_user().is_none() {
        if let Some(u) = env("PGUSER") {
            config.user(&u);
        }
    }
    if no_url || config.get_password().is_none() {
        if let Some(p) = env("PGPASSWORD") {
            config.password(p);
        }
    }
    if no_url || config.get_dbname().is_none() {
        if let Some(d) = env("PGDATABASE") {
            config.dbname(&d);
        }
    }
    if !no_url && config.get_hosts().is_empty() {
        if let Some(h) = env("PGHOST") {
            config.host(&h);
        }
    }
}

fn describe(c: &Config, sslmode: &str) -> String {
    let host = c
        .get_hosts()
        .first()
        .map(|h| match h {
            Host::Tcp(h) => h.clone(),
            #[cfg(unix)]
            Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = c.get_ports().first().copied().unwrap_or(5432);
    let user = c.get_user().unwrap_or("?");
    let db = c.get_dbname().unwrap_or(user);
    let tls = if sslmode == "prefer" { String::new() } else { format!(" (sslmode={sslmode})") };
    format!("{user}@{host}:{port}/{db}{tls}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn ssl_options_leave_the_url_and_the_rest_stays() {
        let (rest, ssl) = split_ssl(
            "postgres://u:p@db:6432/x?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&application_name=f",
        )
        .expect("parses");
        assert_eq!(rest, "postgres://u:p@db:6432/x?application_name=f");
        assert_eq!(ssl.mode.as_deref(), Some("verify-full"));
        assert_eq!(ssl.rootcert.as_deref(), Some("/tmp/ca.pem"));
        let (rest, ssl) =
            split_ssl("host=db user='a b' sslmode=require sslkey='/k\\'s'").expect("parses");
        assert_eq!(rest, "host='db' user='a b'");
        assert_eq!(ssl.key.as_deref(), Some("/k's"));
        assert!(matches!(split_ssl("postgres://h/x?sslcrl=/c"), Err(ConfigError::Unsupported(_))));
    }

    #[test]
    fn variables_fill_what_the_url_leaves_out() {
        let env = |k: &str| match k {
            "PGPASSWORD" => Some("secret".to_owned()),
            "PGUSER" => Some("ignored".to_owned()),
            "PGSSLMODE" => Some("disable".to_owned()),
            _ => None,
        };
        let c = Connector::build(Some("postgres://feeder@db/x"), &env).expect("builds");
        assert_eq!(c.config.get_user(), Some("feeder"));
        assert_eq!(c.config.get_password(), Some(&b"secret"[..]));
        assert!(c.tls.is_none());
        assert_eq!(c.target(), "feeder@db:5432/x (sslmode=disable)");
        let d = Connector::build(None, &no_env).expect("builds");
        assert_eq!(d.target(), "postgres@localhost:5432/postgres");
        assert!(d.tls.is_some(), "prefer by default, as libpq");
        assert!(!d.target().contains("postgres:postgres"));
    }

    #[test]
    fn modes_are_checked() {
        assert!(matches!(
            Connector::build(Some("postgres://h/x?sslmode=verify-everything"), &no_env),
            Err(ConfigError::SslMode(_))
        ));
        assert!(matches!(
            Connector::build(
                Some("postgres://h/x?sslmode=verify-ca&sslrootcert=/nonexistent"),
                &no_env
            ),
            Err(ConfigError::Tls(_))
        ));
        assert!(matches!(
            Connector::build(Some("postgres://h/x?sslcert=/c"), &no_env),
            Err(ConfigError::HalfClientCert)
        ));
    }
}
