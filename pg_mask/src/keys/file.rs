//! `pg_mask.key_file`: the key ring in a file, with the permission rules PostgreSQL applies to
//! `ssl_key_file`, and a stamp of everything about the file that a change would move.

use crate::error::MaskError;
use pg_mask_core::KeyRing;
use std::os::unix::fs::MetadataExt;
use zeroize::Zeroizing;

/// What identifies the file's content and permissions without reading it: a rewrite moves the
/// size, mtime or inode; a `chmod`/`chown` moves the ctime, mode or owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
    mode: u32,
    uid: u32,
}

fn path_str(path: &[u8]) -> String {
    String::from_utf8_lossy(path).trim().to_owned()
}

pub fn stamp(path: &[u8]) -> std::io::Result<Stamp> {
    let meta = std::fs::metadata(path_str(path))?;
    let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
    Ok(Stamp {
        len: meta.len(),
        mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
        ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        ino: meta.ino(),
        mode: meta.mode(),
        uid: meta.uid(),
    })
}

/// Reads and parses the key file at `path`.
pub fn load(path: &[u8]) -> Result<KeyRing, MaskError> {
    let path = path_str(path);
    let bad = |problem: String| MaskError::BadKeyFile { path: path.clone(), problem };
    let meta = std::fs::metadata(&path).map_err(|e| bad(e.to_string()))?;
    // The same rule PostgreSQL applies to ssl_key_file: private to the server's user, or
    // group-readable at most when root owns it.
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let mode = meta.mode() & 0o777;
    if meta.uid() == euid && mode & 0o077 != 0 {
        return Err(bad(format!("has mode {mode:04o}; it must be 0600 or stricter")));
    }
    if meta.uid() == 0 && mode & 0o037 != 0 {
        return Err(bad(format!(
            "is owned by root with mode {mode:04o}; it must be 0640 or stricter"
        )));
    }
    if meta.uid() != euid && meta.uid() != 0 {
        return Err(bad("must be owned by the database server's user or root".to_owned()));
    }
    let spec = Zeroizing::new(std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?);
    KeyRing::parse(&spec).map_err(|e| bad(e.to_string()))
}
