//! `pg_mask.key_command`: a command whose standard output is the key ring, for rings kept in a
//! secret manager (AWS Secrets Manager or KMS, Vault, a mounted secret), in the spirit of
//! PostgreSQL's `ssl_passphrase_command`.
//!
//! The postmaster runs it, with `/bin/sh -c`, as the server's OS user: at start and at each
//! reload (the setting's check hook runs then, changed or not), never per session or
//! transaction. It waits at most `pg_mask.key_command_timeout` and kills it after. The output
//! goes to shared memory ([`crate::pg::shmem`]), where backends pick it up; a failure is
//! published too, so every masking call raises one clear error until a reload succeeds, and
//! nothing is ever written unmasked. The command's standard error goes to the server log, like
//! `archive_command`'s: keep secrets off it.

use crate::error::MaskError;
use crate::pg;
use crate::pg::shmem::{self, Published};
use crate::settings;
use pg_mask_core::KeyRing;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Called with every value the setting takes, in every process; acts in the postmaster only.
pub fn on_setting(command: &[u8]) {
    if !pg::is_postmaster() {
        return;
    }
    let command = String::from_utf8_lossy(command).trim().to_owned();
    if command.is_empty() {
        shmem::publish(Published::Unset);
        return;
    }
    let published = match run(&command, settings::key_command_timeout()) {
        Ok(ring) => {
            pgrx::log!("pg_mask: pg_mask.key_command gave a key ring ({} bytes)", ring.len());
            Published::Ring(ring)
        }
        Err(why) => {
            pgrx::warning!(
                "pg_mask: pg_mask.key_command {why}; masking raises an error until a reload runs it successfully"
            );
            Published::Failed(why)
        }
    };
    shmem::publish(published);
}

/// Runs `command`; its standard output, or why there is none (never any of the output).
fn run(command: &str, timeout: Duration) -> Result<Zeroizing<Vec<u8>>, String> {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("could not be started: {e}"))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(None) => {
                // Always reap our own child: the postmaster must never see it as a lost backend.
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "did not finish within {} s and was killed",
                    timeout.as_secs()
                ));
            }
            Err(e) => return Err(format!("could not be waited for: {e}")),
        }
    };
    let mut output = Zeroizing::new(Vec::new());
    if let Some(stdout) = child.stdout.take() {
        stdout
            .take(shmem::CAPACITY as u64 + 1)
            .read_to_end(&mut output)
            .map_err(|e| format!("output could not be read: {e}"))?;
    }
    if !status.success() {
        return Err(format!("failed ({status})"));
    }
    if output.len() > shmem::CAPACITY {
        return Err(format!("printed more than {} bytes", shmem::CAPACITY));
    }
    // Check it here, so the server log says at once that the ring is unusable.
    KeyRing::parse(&String::from_utf8_lossy(&output))
        .map_err(|e| format!("printed an invalid key ring: {e}"))?;
    Ok(output)
}

/// The ring the postmaster published, with the sequence number it was published under.
pub fn load() -> (u64, Result<KeyRing, MaskError>) {
    let Some((sequence, published)) = shmem::read() else {
        return (0, Err(MaskError::NotPreloaded));
    };
    let ring = match published {
        Published::Ring(spec) => KeyRing::parse(&String::from_utf8_lossy(&spec))
            .map_err(|e| MaskError::KeyCommandFailed(format!("printed an invalid key ring: {e}"))),
        Published::Failed(why) => Err(MaskError::KeyCommandFailed(why)),
        Published::Unset => Err(MaskError::KeyCommandFailed(
            "has not been run by the postmaster yet (it runs at server start and at each reload)"
                .to_owned(),
        )),
    };
    (sequence, ring)
}
