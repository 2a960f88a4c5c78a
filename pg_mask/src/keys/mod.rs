//! The backend's key ring, from exactly one of three sources, parsed once and cached until the
//! source changes.
//!
//! - `pg_mask.keys`: the ring itself; compared with the cached copy on each call (a `memcmp`).
//! - `pg_mask.key_file`: a file ([`file`]); `stat`ed at most once per transaction and read again
//!   when its size, times, inode, owner or mode change (so a permission fix is noticed).
//! - `pg_mask.key_command`: a command the postmaster runs at start and at each reload
//!   ([`command`]), whose output reaches backends through shared memory; a backend re-reads it
//!   when the postmaster has published a new one (an atomic load per call).
//!
//! Parsing a ring runs the AES key schedule, so doing it per call would dominate `mask_pii`
//! (measured: 0.43 µs per call with the cipher cached). Key material is held in zeroizing
//! buffers and wiped when replaced or dropped. This module is the only reader of key material;
//! it hands out `&KeyRing`, never bytes.

pub mod command;
pub mod file;

use crate::error::MaskError;
use crate::pg;
use crate::pg::xact;
use crate::settings;
use pg_mask_core::KeyRing;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use zeroize::Zeroizing;

static PRELOADED: AtomicBool = AtomicBool::new(false);

/// Called from `_PG_init`: remembers whether we are being loaded by shared_preload_libraries
/// and, if so, reserves the shared memory the key command's result travels through.
pub fn init() {
    let preloading = pg::preloading();
    PRELOADED.store(preloading, Ordering::Relaxed);
    if preloading {
        pg::shmem::init();
    }
}

/// Where the ring comes from, with what identifies its current content.
enum Source {
    Inline(Zeroizing<Vec<u8>>),
    File { path: Vec<u8>, stamp: Option<file::Stamp> },
    Command { sequence: u64 },
}

struct Cache {
    source: Source,
    /// The transaction ([`xact::transaction_number`]) that last checked a key file.
    checked_in: u64,
    ring: Result<Rc<KeyRing>, MaskError>,
}

thread_local! {
    static CACHE: RefCell<Option<Cache>> = const { RefCell::new(None) };
}

/// Runs `f` with the configured key ring, or returns why there is none.
pub fn with_ring<R>(f: impl FnOnce(&KeyRing) -> R) -> Result<R, MaskError> {
    let ring = current_ring()?;
    Ok(f(&ring))
}

/// The configured key ring (cheap: an `Rc` clone on the fast path).
pub fn current_ring() -> Result<Rc<KeyRing>, MaskError> {
    if !PRELOADED.load(Ordering::Relaxed) {
        return Err(MaskError::NotPreloaded);
    }
    // Every path that masks or unmasks goes through here.
    if !pg::database_is_utf8() {
        return Err(MaskError::NotUtf8);
    }
    let keys = settings::keys();
    let key_file = settings::key_file();
    let key_command = settings::key_command();
    match [keys.is_some(), key_file.is_some(), key_command.is_some()].iter().filter(|s| **s).count()
    {
        0 => return Err(MaskError::NoKey),
        1 => {}
        _ => return Err(MaskError::MoreThanOneKeySource),
    }
    let this_xact = xact::transaction_number();
    CACHE.with_borrow_mut(|cache| {
        // The fast path: the same source, known to be unchanged.
        if let Some(c) = cache.as_mut() {
            let fresh = match (&c.source, keys, key_file) {
                (Source::Inline(cached), Some(now), _) => cached.as_slice() == now,
                (Source::File { path, stamp }, _, Some(now)) if path.as_slice() == now => {
                    c.checked_in == this_xact || {
                        c.checked_in = this_xact;
                        file::stamp(now).ok() == *stamp
                    }
                }
                (Source::Command { sequence }, None, None) if key_command.is_some() => {
                    pg::shmem::sequence() == Some(*sequence)
                }
                _ => false,
            };
            if fresh {
                return c.ring.clone();
            }
        }
        let (source, ring) = if let Some(spec) = keys {
            // Invalid UTF-8 becomes U+FFFD, which the parser reports with its entry number.
            let ring = KeyRing::parse(&String::from_utf8_lossy(spec)).map_err(MaskError::BadKeys);
            (Source::Inline(Zeroizing::new(spec.to_vec())), ring)
        } else if let Some(path) = key_file {
            let stamp = file::stamp(path).ok();
            (Source::File { path: path.to_vec(), stamp }, file::load(path))
        } else {
            let (sequence, ring) = command::load();
            (Source::Command { sequence }, ring)
        };
        let ring = ring.map(Rc::new);
        *cache = Some(Cache { source, checked_in: this_xact, ring: ring.clone() });
        ring
    })
}
