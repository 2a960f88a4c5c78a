//! The shared-memory slot through which the postmaster hands the key ring it got from
//! `pg_mask.key_command` to every backend.
//!
//! Only the postmaster writes (at start and at each reload, where the command runs), and it may
//! take no lock, so the slot is a sequence lock: the writer makes the sequence odd, writes, and
//! makes it even again; a reader copies the bytes and keeps the copy only if the sequence was
//! even and unchanged around it. Bytes are atomics, so a reader racing the writer reads a torn
//! value it then throws away, never undefined memory. Old key material is overwritten with
//! zeros when a new ring is published.

use pgrx::pg_sys;
use std::cell::RefCell;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicU8, Ordering};
use zeroize::Zeroizing;

/// Largest key ring (or error text) the slot holds; a ring of 100 keys is under 6 KiB.
pub const CAPACITY: usize = 16 * 1024;

#[repr(C)]
struct Slot {
    sequence: AtomicU64,
    state: AtomicU32,
    len: AtomicU32,
    data: [AtomicU8; CAPACITY],
}

const UNSET: u32 = 0;
const RING: u32 = 1;
const FAILED: u32 = 2;

/// What the postmaster last published.
#[derive(Clone, PartialEq, Eq)]
pub enum Published {
    /// No key command is configured.
    Unset,
    /// The command's standard output: a key ring specification.
    Ring(Zeroizing<Vec<u8>>),
    /// Why the command gave no ring (no key material in it).
    Failed(String),
}

static mut SLOT: *const Slot = std::ptr::null();
static mut PREVIOUS_STARTUP_HOOK: pg_sys::shmem_startup_hook_type = None;

thread_local! {
    /// What the postmaster got before shared memory existed (at start).
    static PENDING: RefCell<Option<Published>> = const { RefCell::new(None) };
}

/// Reserves the slot; from `_PG_init`, only while preloading.
pub fn init() {
    super::compat::request_shared_memory(std::mem::size_of::<Slot>());
    // SAFETY: called once from _PG_init; the previous hook is chained.
    unsafe {
        PREVIOUS_STARTUP_HOOK = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(startup);
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn startup() {
    // SAFETY: called by the postmaster (and by each backend on EXEC_BACKEND builds) after
    // shared memory exists; ShmemInitStruct is done under AddinShmemInitLock as documented.
    unsafe {
        if let Some(previous) = PREVIOUS_STARTUP_HOOK {
            previous();
        }
        let mut found = false;
        // AddinShmemInitLock is a macro for the 22nd of the main LWLocks (lwlocknames.h).
        let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock;
        pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let slot = pg_sys::ShmemInitStruct(
            c"pg_mask key ring".as_ptr(),
            std::mem::size_of::<Slot>(),
            &mut found,
        )
        .cast::<Slot>();
        if !found {
            std::ptr::write_bytes(slot.cast::<u8>(), 0, std::mem::size_of::<Slot>());
        }
        pg_sys::LWLockRelease(init_lock);
        SLOT = slot;
    }
    if let Some(pending) = PENDING.with_borrow_mut(Option::take) {
        publish(pending);
    }
}

fn slot() -> Option<&'static Slot> {
    // SAFETY: set once by the startup hook to memory that lives as long as the server.
    unsafe { SLOT.as_ref() }
}

/// Publishes what the key command gave. In the postmaster before shared memory exists, it is
/// kept and published when the slot is created.
pub fn publish(value: Published) {
    let Some(slot) = slot() else {
        PENDING.with_borrow_mut(|p| *p = Some(value));
        return;
    };
    let (state, bytes): (u32, &[u8]) = match &value {
        Published::Unset => (UNSET, &[]),
        Published::Ring(ring) => (RING, ring),
        Published::Failed(why) => (FAILED, why.as_bytes()),
    };
    let len = bytes.len().min(CAPACITY);
    slot.sequence.fetch_add(1, Ordering::AcqRel);
    fence(Ordering::Release);
    for (i, cell) in slot.data.iter().enumerate() {
        cell.store(if i < len { bytes[i] } else { 0 }, Ordering::Relaxed);
    }
    slot.len.store(len as u32, Ordering::Relaxed);
    slot.state.store(state, Ordering::Relaxed);
    fence(Ordering::Release);
    slot.sequence.fetch_add(1, Ordering::AcqRel);
}

/// The sequence number of what is published now (even when stable); `None` without the slot.
pub fn sequence() -> Option<u64> {
    slot().map(|s| s.sequence.load(Ordering::Acquire))
}

/// A consistent copy of what is published, with its sequence number; `None` without the slot.
pub fn read() -> Option<(u64, Published)> {
    let slot = slot()?;
    loop {
        let before = slot.sequence.load(Ordering::Acquire);
        if before % 2 == 1 {
            std::hint::spin_loop();
            continue;
        }
        let state = slot.state.load(Ordering::Relaxed);
        let len = (slot.len.load(Ordering::Relaxed) as usize).min(CAPACITY);
        let mut bytes = Zeroizing::new(vec![0u8; len]);
        for (b, cell) in bytes.iter_mut().zip(&slot.data) {
            *b = cell.load(Ordering::Relaxed);
        }
        fence(Ordering::Acquire);
        if slot.sequence.load(Ordering::Acquire) != before {
            continue;
        }
        let value = match state {
            RING => Published::Ring(bytes),
            FAILED => Published::Failed(String::from_utf8_lossy(&bytes).into_owned()),
            _ => Published::Unset,
        };
        return Some((before, value));
    }
}
