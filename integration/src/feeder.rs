//! Running the real feeder binary as a child process, with its log captured to a file, and
//! reading what it reports: its summary line, its exit code, its peak memory.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

pub fn binary() -> PathBuf {
    std::env::var_os("FEEDER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::emulator::repo_root().join("target/release/feeder"))
}

/// Where the tests keep feeder logs (searched for plaintext by the secrecy test).
pub fn log_dir() -> PathBuf {
    let dir = crate::emulator::repo_root().join("target/test-logs");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

pub struct Feeder {
    pub child: Child,
    pub log: PathBuf,
}

/// The feeder's environment for a test database and queue.
pub fn command(db_url: &str, endpoint: &str, queue_url: &str, args: &[&str]) -> (Command, PathBuf) {
    let log = log_dir().join(format!("{}.log", crate::unique("feeder")));
    let file = std::fs::File::create(&log).expect("log file");
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .env("DATABASE_URL", db_url)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("SQS_QUEUE_URL", queue_url)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("FEEDER_WAIT_SECONDS", "1")
        .env("FEEDER_LINGER_MS", "100")
        .env("FEEDER_PROGRESS_INTERVAL", "1")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("clone"))
        .stderr(file);
    (cmd, log)
}

impl Feeder {
    pub fn spawn(
        db_url: &str,
        endpoint: &str,
        queue_url: &str,
        args: &[&str],
        extra_env: &[(&str, &str)],
    ) -> Self {
        let (mut cmd, log) = command(db_url, endpoint, queue_url, args);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot run {}: {e} (cargo build --release -p feeder)", binary().display())
        });
        Feeder { child, log }
    }

    /// Waits up to `timeout` for exit; kills and panics on timeout.
    pub fn wait(mut self, timeout: Duration) -> (ExitStatus, String) {
        let start = std::time::Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return (status, self.log_text());
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!("feeder did not exit within {timeout:?}; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Like [`Feeder::wait`], also sampling the process's peak resident memory (`VmHWM`, in
    /// KiB) until it exits: the last sample is the peak over its whole life but its very end.
    pub fn wait_measuring_rss(mut self, timeout: Duration) -> (ExitStatus, String, u64) {
        let start = std::time::Instant::now();
        let mut peak = 0;
        loop {
            if let Some(kb) = self.peak_rss_kb() {
                peak = peak.max(kb);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return (status, self.log_text(), peak);
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!("feeder did not exit within {timeout:?}; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `VmHWM` of the running process, KiB.
    pub fn peak_rss_kb(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `feeder drain` to completion and returns its log.
pub fn drain(db_url: &str, endpoint: &str, queue_url: &str, timeout: Duration) -> String {
    let f = Feeder::spawn(db_url, endpoint, queue_url, &["drain"], &[]);
    let (status, log) = f.wait(timeout);
    assert!(status.success(), "feeder drain failed: {status}\n{log}");
    log
}

/// The counters of the feeder's last summary line ("received N, loaded N, ...").
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub received: u64,
    pub loaded: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub released: u64,
    pub deleted: u64,
    pub delete_failures: u64,
}

impl Summary {
    /// Reads the last line of `log` that carries the counters; all zero if there is none.
    pub fn parse(log: &str) -> Summary {
        let Some(line) =
            log.lines().rev().find(|l| l.contains("received ") && l.contains("loaded "))
        else {
            return Summary::default();
        };
        let field = |name: &str| -> u64 {
            line.split(&format!("{name} "))
                .nth(1)
                .and_then(|rest| rest.split(',').next())
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        Summary {
            received: field("received"),
            loaded: field("loaded"),
            duplicates: field("duplicates"),
            rejected: field("rejected"),
            released: field("released"),
            deleted: field("deleted"),
            delete_failures: field("delete failures"),
        }
    }

    /// Every message received was either loaded, recognised as a duplicate or rejected, and
    /// then deleted: nothing lost, whatever the queue redelivered, and nothing released.
    pub fn accounts_for_every_message(&self) -> bool {
        self.received == self.loaded + self.duplicates + self.rejected
            && self.released == 0
            && self.deleted == self.received
            && self.delete_failures == 0
    }
}
