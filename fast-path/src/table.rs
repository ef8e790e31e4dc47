//! Which descriptors are fast-path sockets: a fixed array indexed by descriptor number, so the
//! hot-path lookup is one load (no lock, no hashing, no allocation).
//!
//! Entries are `Arc<Conn>` turned into raw pointers; dup'd descriptors share one. A removed
//! entry is not freed at once but parked in a small ring of retired connections and dropped
//! `RETIRED` removals later: a thread that loaded the pointer just before another thread closed
//! the descriptor (an application race in any case) still finds a live connection.

#![allow(unsafe_code)]

use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::conn::Conn;

/// Descriptors at or above this number never use the fast path (the trap path serves them).
pub const MAX_FDS: usize = 1 << 16;
/// Removed connections kept alive before they are dropped.
const RETIRED: usize = 256;

static TABLE: [AtomicPtr<Conn>; MAX_FDS] = [const { AtomicPtr::new(ptr::null_mut()) }; MAX_FDS];
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// One past the highest descriptor ever inserted (bounds the walk after a fork).
static HIGH: AtomicUsize = AtomicUsize::new(0);
static GRAVEYARD: Mutex<Graveyard> = Mutex::new(Graveyard { slots: Vec::new(), next: 0 });

struct Graveyard {
    slots: Vec<Arc<Conn>>,
    next: usize,
}

fn slot(fd: i32) -> Option<&'static AtomicPtr<Conn>> {
    usize::try_from(fd).ok().and_then(|index| TABLE.get(index))
}

/// The connection behind `fd`, if it is a fast-path socket.
pub fn get(fd: i32) -> Option<Arc<Conn>> {
    let raw = slot(fd)?.load(Ordering::Acquire);
    if raw.is_null() {
        return None;
    }
    // SAFETY: non-null entries come from Arc::into_raw in `insert` and hold one strong count
    // that `remove` gives to the graveyard, which keeps it for RETIRED later removals; so the
    // pointer is live here unless RETIRED descriptors were closed between our load and this
    // increment, which only an application closing this very descriptor concurrently risks.
    unsafe {
        Arc::increment_strong_count(raw);
        Some(Arc::from_raw(raw))
    }
}

/// Whether `fd` still names `conn` (no reference counting: a pointer comparison).
pub fn names(fd: i32, conn: &Arc<Conn>) -> bool {
    slot(fd).is_some_and(|slot| ptr::eq(slot.load(Ordering::Acquire), Arc::as_ptr(conn)))
}

/// Whether this process has any fast-path socket (the busy-poll only runs when it does).
pub fn any() -> bool {
    LIVE.load(Ordering::Relaxed) != 0
}

/// Makes `fd` name `conn` (replacing whatever it named).
pub fn insert(fd: i32, conn: Arc<Conn>) -> bool {
    let Some(slot) = slot(fd) else { return false };
    LIVE.fetch_add(1, Ordering::Relaxed);
    HIGH.fetch_max(fd as usize + 1, Ordering::Relaxed);
    let old = slot.swap(Arc::into_raw(conn).cast_mut(), Ordering::AcqRel);
    retire(old);
    true
}

/// Forgets `fd` (after close, or before dup2 reuses the number).
pub fn remove(fd: i32) {
    if let Some(slot) = slot(fd) {
        if !slot.load(Ordering::Relaxed).is_null() {
            retire(slot.swap(ptr::null_mut(), Ordering::AcqRel));
        }
    }
}

fn retire(raw: *mut Conn) {
    if raw.is_null() {
        return;
    }
    LIVE.fetch_sub(1, Ordering::Relaxed);
    // SAFETY: the pointer came from Arc::into_raw in `insert` and its count is ours to take.
    let conn = unsafe { Arc::from_raw(raw) };
    let mut graveyard = GRAVEYARD.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if graveyard.slots.len() < RETIRED {
        graveyard.slots.push(conn);
    } else {
        let next = graveyard.next;
        graveyard.slots[next] = conn;
        graveyard.next = (next + 1) % RETIRED;
    }
}

/// Copies `from`'s entry to `to` (dup, dup2, dup3, F_DUPFD).
pub fn duplicate(from: i32, to: i32) {
    match get(from) {
        Some(conn) => {
            insert(to, conn);
        }
        None => remove(to),
    }
}

/// After a fork, in parent and child: every connection is now held by two processes.
pub fn mark_all_shared() {
    if !any() {
        return;
    }
    for fd in 0..HIGH.load(Ordering::Relaxed) {
        if let Some(conn) = get(fd as i32) {
            conn.mark_shared();
        }
    }
}
