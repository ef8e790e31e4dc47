//! Waiting calls (epoll_wait, poll, select) that see the rings as well as the kernel.
//!
//! A fast-path socket is readable when its ring holds bytes and writable when half its ring is
//! free; the kernel only sees the socket under it, which a doorbell makes readable and which is
//! nearly always writable. So each waiting call merges both views: ring readiness is read from
//! shared memory, the kernel's with a zero-timeout call, and a socket whose direction is on the
//! ring is writable only if its ring says so. While it spins, the call promises the writers of
//! the rings it watches that it polls them (no doorbell needed: no system call on either side
//! per message); before it sleeps in the kernel it withdraws the promise and looks once more.
//! Correctness never rests on this: a ring that is not polled here gets a doorbell.

#![allow(unsafe_code)]

use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libc::c_int;

use crate::conn::Conn;
use crate::{spin, table};

/// Rings watched with a spin promise in one call, at most.
const MAX_PROMISES: usize = 64;
/// While spinning, ask the kernel once per this many looks at the rings.
const RING_LOOKS_PER_KERNEL_CALL: u32 = 8;
/// A sleeper that waits for a full ring to drain wakes this often to look (the reader frees
/// space without a system call, so nothing wakes the kernel's wait).
const SPACE_SLICE_MS: c_int = 1;

/// One fast-path socket registered in an epoll instance.
#[derive(Debug)]
struct Entry {
    fd: c_int,
    conn: Arc<Conn>,
    events: u32,
    data: u64,
    /// For edge-triggered entries: the ring's writability last reported, so that EPOLLOUT is
    /// reported on the edge only (reported on every call it would make an edge-triggered
    /// server handle every connection's write event on every wake-up).
    reported_writable: bool,
    /// Whether this entry's ring carries our standing spin promise (see [`epoll_wait`]).
    promised: bool,
}

impl Entry {
    fn wants_input(&self) -> bool {
        self.events & (libc::EPOLLIN as u32) != 0 && self.events & (libc::EPOLLONESHOT as u32) == 0
    }

    fn withdraw(&mut self) {
        if self.promised {
            self.promised = false;
            self.conn.end_spin();
        }
    }
}

#[derive(Debug, Default)]
struct EpollSet {
    entries: Mutex<Vec<Entry>>,
    /// This instance is itself watched by another epoll: whoever waits on the outer one does
    /// not look at our rings, so no standing promises here.
    nested: AtomicBool,
}

static EPOLLS: [AtomicPtr<EpollSet>; table::MAX_FDS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; table::MAX_FDS];

fn epoll_set(epfd: c_int, create: bool) -> Option<&'static EpollSet> {
    let slot = EPOLLS.get(usize::try_from(epfd).ok()?)?;
    let mut raw = slot.load(Ordering::Acquire);
    if raw.is_null() && create {
        let fresh = Box::into_raw(Box::default());
        raw = match slot.compare_exchange(
            ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => fresh,
            Err(existing) => {
                // SAFETY: `fresh` was never shared: the exchange failed.
                drop(unsafe { Box::from_raw(fresh) });
                existing
            }
        };
    }
    // SAFETY: non-null slots hold a Box leaked above, never freed (a slot is reused by the
    // next epoll instance with the same number; see `forget_epoll`).
    (!raw.is_null()).then(|| unsafe { &*raw })
}

fn lock_entries(set: &EpollSet) -> std::sync::MutexGuard<'_, Vec<Entry>> {
    set.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Records a successful epoll_ctl on a fast-path socket.
pub fn epoll_ctl(epfd: c_int, op: c_int, fd: c_int, event: Option<libc::epoll_event>) {
    if op == libc::EPOLL_CTL_ADD {
        if let Some(inner) = epoll_set(fd, false) {
            inner.nested.store(true, Ordering::Release);
            lock_entries(inner).iter_mut().for_each(Entry::withdraw);
        }
    }
    match op {
        libc::EPOLL_CTL_ADD => {
            let (Some(conn), Some(event)) = (table::get(fd), event) else { return };
            if let Some(set) = epoll_set(epfd, true) {
                let mut entries = lock_entries(set);
                entries.iter_mut().filter(|entry| entry.fd == fd).for_each(Entry::withdraw);
                entries.retain(|entry| entry.fd != fd);
                entries.push(Entry {
                    fd,
                    conn,
                    events: event.events,
                    data: event.u64,
                    reported_writable: false,
                    promised: false,
                });
            }
        }
        libc::EPOLL_CTL_MOD => {
            let Some(set) = epoll_set(epfd, false) else { return };
            let Some(event) = event else { return };
            for entry in lock_entries(set).iter_mut().filter(|entry| entry.fd == fd) {
                entry.withdraw();
                entry.events = event.events;
                entry.data = event.u64;
                // The kernel re-arms an entry on MOD: so does the edge.
                entry.reported_writable = false;
            }
        }
        libc::EPOLL_CTL_DEL => {
            if let Some(set) = epoll_set(epfd, false) {
                let mut entries = lock_entries(set);
                entries.iter_mut().filter(|entry| entry.fd == fd).for_each(Entry::withdraw);
                entries.retain(|entry| entry.fd != fd);
            }
        }
        _ => {}
    }
}

/// Forgets an epoll instance's entries (its descriptor is being closed).
pub fn forget_epoll(epfd: c_int) {
    if let Some(set) = epoll_set(epfd, false) {
        let mut entries = lock_entries(set);
        entries.iter_mut().for_each(Entry::withdraw);
        entries.clear();
        set.nested.store(false, Ordering::Release);
    }
}

/// Spin promises made for one waiting call; withdrawn on drop. Returns from `withdraw` whether
/// any promised ring holds bytes.
struct Promises {
    conns: [Option<Arc<Conn>>; MAX_PROMISES],
    len: usize,
}

impl Promises {
    fn new() -> Self {
        Self { conns: [const { None }; MAX_PROMISES], len: 0 }
    }

    fn promise(&mut self, conn: &Arc<Conn>) {
        if self.len < MAX_PROMISES && conn.begin_spin() {
            self.conns[self.len] = Some(conn.clone());
            self.len += 1;
        }
    }

    fn withdraw(&mut self) -> bool {
        let mut unread = false;
        for conn in self.conns[..self.len].iter_mut().filter_map(Option::take) {
            unread |= conn.end_spin();
        }
        self.len = 0;
        unread
    }
}

impl Drop for Promises {
    fn drop(&mut self) {
        self.withdraw();
    }
}

/// The loop every waiting call shares. `look(kernel_timeout)` checks the rings and, when
/// `kernel_timeout` is `Some`, the kernel with that timeout; it returns what the call returns
/// (0: nothing ready). `watch` makes the spin promises; `space_waiter` is a socket whose writer
/// waits for a full ring (see `sleep_once`).
fn wait_loop(
    timeout: c_int,
    watch: impl FnOnce(&mut Promises),
    space_waiter: Option<Arc<Conn>>,
    mut look: impl FnMut(Option<c_int>) -> c_int,
) -> c_int {
    let start = spin::now_ns();
    let ready = look(Some(0));
    if ready != 0 || timeout == 0 {
        return ready;
    }
    if spin::budget_ns() > 0 {
        let mut promises = Promises::new();
        watch(&mut promises);
        let mut looks = 0u32;
        let spun = spin::spin(|| {
            looks = looks.wrapping_add(1);
            let kernel = looks.is_multiple_of(RING_LOOKS_PER_KERNEL_CALL).then_some(0);
            let ready = look(kernel);
            (ready != 0).then_some(ready)
        });
        if let Some(ready) = spun {
            return ready;
        }
        // A writer that relied on the promise published before the withdrawal: look again.
        promises.withdraw();
        let ready = look(Some(0));
        if ready != 0 {
            return ready;
        }
    }
    loop {
        let Some(ready) = sleep_once(timeout, start, space_waiter.as_deref(), &mut look) else {
            return 0;
        };
        if ready != 0 {
            return ready;
        }
    }
}

/// One sleep of a waiting call, then a look; `None` when the timeout is over. A program that
/// waits for a full ring to drain sleeps on the ring's space futex (the reader frees space
/// without a system call, so nothing would wake the kernel's wait), a slice at a time so that
/// its other descriptors are looked at too.
fn sleep_once(
    timeout: c_int,
    start: u64,
    space_waiter: Option<&Conn>,
    look: &mut impl FnMut(Option<c_int>) -> c_int,
) -> Option<c_int> {
    let left = remaining_ms(timeout, start);
    if timeout > 0 && left == 0 {
        return None;
    }
    if let Some(conn) = space_waiter {
        let slice = if (0..SPACE_SLICE_MS).contains(&left) { left } else { SPACE_SLICE_MS };
        let slept = conn.sleep_for_space(Duration::from_millis(slice as u64));
        return Some(look(Some(if slept { 0 } else { slice })));
    }
    Some(look(Some(left)))
}

/// Milliseconds left of `timeout` (negative: forever) after `start`.
pub fn remaining_ms(timeout: c_int, start: u64) -> c_int {
    if timeout < 0 {
        return timeout;
    }
    let spent = (spin::now_ns().wrapping_sub(start) / 1_000_000).min(c_int::MAX as u64) as c_int;
    (timeout - spent).max(0)
}

/// epoll_wait/epoll_pwait: `kernel(events, max, timeout)` is the real call.
///
/// The spin promise on each watched ring *stands* between calls: while the program works
/// between two epoll_wait calls, writers skip the doorbell, because the next call looks at the
/// rings before anything else. Only before it sleeps in the kernel does the call withdraw the
/// promises and look once more (then writers ring again). A server busy with many connections
/// thus moves requests and responses with no system call at all.
///
/// # Safety
/// `events` is valid for `max` entries.
pub unsafe fn epoll_wait(
    epfd: c_int,
    events: *mut libc::epoll_event,
    max: c_int,
    timeout: c_int,
    kernel: impl Fn(*mut libc::epoll_event, c_int, c_int) -> c_int,
) -> c_int {
    let set = epoll_set(epfd, false).filter(|set| !lock_entries(set).is_empty());
    let Some(set) = set.filter(|_| max > 0 && !events.is_null()) else {
        return crate::interpose::busy_then(timeout, |t| kernel(events, max, t));
    };
    let capacity = max as usize;
    // SAFETY: the caller's contract.
    let out = unsafe { std::slice::from_raw_parts_mut(events, capacity) };
    let space_waiter = {
        let mut entries = lock_entries(set);
        entries.retain_mut(|entry| {
            let live = table::names(entry.fd, &entry.conn);
            if !live {
                entry.withdraw();
            }
            live
        });
        entries
            .iter()
            .find(|entry| {
                entry.events & libc::EPOLLOUT as u32 != 0 && entry.conn.readiness().1 == Some(false)
            })
            .map(|entry| entry.conn.clone())
    };
    let mut look = |kernel_timeout: Option<c_int>| -> c_int {
        let mut n = ring_events(set, out);
        let Some(kernel_timeout) = kernel_timeout.filter(|_| n < capacity) else {
            return n as c_int;
        };
        let kernel_timeout = if n > 0 { 0 } else { kernel_timeout };
        // SAFETY: out[n..] is inside the caller's array.
        let got = kernel(unsafe { events.add(n) }, (capacity - n) as c_int, kernel_timeout);
        if got < 0 {
            return if n > 0 { n as c_int } else { got };
        }
        n += merge_kernel_events(set, out, n, got as usize);
        n as c_int
    };
    let start = spin::now_ns();
    promise_all(set);
    let ready = look(Some(0));
    if ready != 0 || timeout == 0 {
        return ready;
    }
    let mut looks = 0u32;
    if let Some(ready) = spin::spin(|| {
        looks = looks.wrapping_add(1);
        let ready = look(looks.is_multiple_of(RING_LOOKS_PER_KERNEL_CALL).then_some(0));
        (ready != 0).then_some(ready)
    }) {
        return ready;
    }
    loop {
        // About to sleep: writers must ring from now on; a byte that relied on the promise was
        // published before the withdrawal, so this look sees it.
        lock_entries(set).iter_mut().for_each(Entry::withdraw);
        let ready = look(Some(0));
        if ready != 0 {
            promise_all(set);
            return ready;
        }
        let Some(ready) = sleep_once(timeout, start, space_waiter.as_deref(), &mut look) else {
            return 0;
        };
        if ready != 0 {
            promise_all(set);
            return ready;
        }
    }
}

/// Makes the standing promise on every watched ring that lacks it (not for a nested set).
fn promise_all(set: &EpollSet) {
    if set.nested.load(Ordering::Acquire) {
        return;
    }
    for entry in lock_entries(set).iter_mut() {
        if entry.wants_input() && !entry.promised {
            entry.promised = entry.conn.begin_spin();
        }
    }
}

/// Writes the events the rings make ready into `out`; returns how many.
fn ring_events(set: &EpollSet, out: &mut [libc::epoll_event]) -> usize {
    let mut n = 0;
    for entry in lock_entries(set).iter_mut() {
        if n == out.len() {
            break;
        }
        if entry.events & (libc::EPOLLONESHOT as u32) != 0 {
            continue;
        }
        let (readable, writable) = entry.conn.readiness();
        let mut ready = 0u32;
        if entry.events & (libc::EPOLLIN as u32) != 0 && readable == Some(true) {
            ready |= libc::EPOLLIN as u32;
        }
        if entry.events & (libc::EPOLLOUT as u32) != 0 && writable == Some(true) {
            let edge_triggered = entry.events & (libc::EPOLLET as u32) != 0;
            // An edge is due if we never reported this state, or a send hit a full ring since
            // (that may have happened entirely between two calls).
            if !edge_triggered || !entry.reported_writable || entry.conn.take_tx_blocked() {
                ready |= libc::EPOLLOUT as u32;
            }
        }
        if let Some(writable) = writable {
            entry.reported_writable = writable;
        }
        if ready != 0 {
            out[n] = libc::epoll_event { events: ready, u64: entry.data };
            n += 1;
        }
    }
    n
}

/// Folds the kernel's events (at `out[first..first + count]`) into the ring's: a socket whose
/// direction is on the ring is writable only if the ring says so; an event for a socket
/// already reported from its ring is merged into that one. Returns the kernel events kept.
fn merge_kernel_events(
    set: &EpollSet,
    out: &mut [libc::epoll_event],
    first: usize,
    count: usize,
) -> usize {
    let entries = lock_entries(set);
    let mut kept = 0;
    for index in first..first + count {
        let mut event = out[index];
        if let Some(entry) = entries.iter().find(|entry| entry.data == event.u64) {
            if entry.conn.readiness().1.is_some() {
                // The ring decides writability (the socket under it is nearly always writable,
                // and its doorbells make spurious write-space edges).
                event.events &= !(libc::EPOLLOUT as u32);
            }
            if let Some(earlier) = out[..first].iter_mut().find(|earlier| earlier.u64 == event.u64)
            {
                earlier.events |= event.events;
                continue;
            }
            if event.events == 0 {
                continue;
            }
        }
        out[first + kept] = event;
        kept += 1;
    }
    kept
}

/// poll/ppoll over at most `MAX_PROMISES` descriptors (more: the plain busy-poll).
///
/// # Safety
/// `fds` is valid for `nfds` entries.
pub unsafe fn poll(
    fds: *mut libc::pollfd,
    nfds: libc::nfds_t,
    timeout: c_int,
    kernel: impl Fn(*mut libc::pollfd, libc::nfds_t, c_int) -> c_int,
) -> c_int {
    let count = nfds as usize;
    if fds.is_null() || count == 0 || count > MAX_PROMISES {
        return crate::interpose::busy_then(timeout, |t| kernel(fds, nfds, t));
    }
    // SAFETY: the caller's contract.
    let program = unsafe { std::slice::from_raw_parts_mut(fds, count) };
    let mut conns: [Option<Arc<Conn>>; MAX_PROMISES] = [const { None }; MAX_PROMISES];
    for (slot, pollfd) in conns.iter_mut().zip(program.iter()) {
        *slot = table::get(pollfd.fd);
    }
    if conns.iter().all(Option::is_none) {
        return crate::interpose::busy_then(timeout, |t| kernel(fds, nfds, t));
    }
    let space_waiter = program.iter().zip(conns.iter()).find_map(|(pollfd, conn)| {
        conn.as_ref()
            .filter(|conn| pollfd.events & libc::POLLOUT != 0 && conn.readiness().1 == Some(false))
            .cloned()
    });
    let mut wants_input = [false; MAX_PROMISES];
    for (wants, pollfd) in wants_input.iter_mut().zip(program.iter()) {
        *wants = pollfd.events & libc::POLLIN != 0;
    }
    let watch = |promises: &mut Promises| {
        for (wants, conn) in wants_input.iter().zip(conns.iter()) {
            if let Some(conn) = conn.as_ref().filter(|_| *wants) {
                promises.promise(conn);
            }
        }
    };
    let mut local = [libc::pollfd { fd: -1, events: 0, revents: 0 }; MAX_PROMISES];
    let result = wait_loop(timeout, watch, space_waiter, |kernel_timeout| {
        let mut ring_ready = [0i16; MAX_PROMISES];
        for index in 0..count {
            local[index] = program[index];
            local[index].revents = 0;
            let Some(conn) = &conns[index] else { continue };
            let (readable, writable) = conn.readiness();
            if writable.is_some() {
                // The ring decides writability; the kernel would say yes.
                local[index].events &= !libc::POLLOUT;
                if writable == Some(true) {
                    ring_ready[index] |= program[index].events & libc::POLLOUT;
                }
            }
            if readable == Some(true) {
                ring_ready[index] |= program[index].events & libc::POLLIN;
            }
        }
        let any_ring = ring_ready[..count].iter().any(|ready| *ready != 0);
        if let Some(kernel_timeout) = kernel_timeout {
            let kernel_timeout = if any_ring { 0 } else { kernel_timeout };
            let got = kernel(local.as_mut_ptr(), nfds, kernel_timeout);
            if got < 0 && !any_ring {
                return got;
            }
        }
        let mut ready = 0;
        for index in 0..count {
            let revents = local[index].revents | ring_ready[index];
            program[index].revents = revents;
            ready += c_int::from(revents != 0);
        }
        ready
    });
    result
}

/// select/pselect: `kernel(read, write, except, timeout_ms)` is the real call on the sets given.
///
/// # Safety
/// Each non-null set is valid for reads and writes.
pub unsafe fn select(
    nfds: c_int,
    sets: [*mut libc::fd_set; 3],
    timeout: c_int,
    kernel: impl Fn(*mut libc::fd_set, *mut libc::fd_set, *mut libc::fd_set, c_int) -> c_int,
) -> c_int {
    let limit = nfds.clamp(0, libc::FD_SETSIZE as c_int);
    // SAFETY: the caller's contract; copies, so that each look starts from the program's sets.
    let saved: [Option<libc::fd_set>; 3] = sets.map(|set| unsafe { set.as_ref().copied() });
    let is_set = |which: usize, fd: c_int| {
        // SAFETY: FD_ISSET reads one bit of a valid set; fd < FD_SETSIZE.
        saved[which].as_ref().is_some_and(|set| unsafe { libc::FD_ISSET(fd, set) })
    };
    let mut rings: [Option<(c_int, Arc<Conn>)>; MAX_PROMISES] = [const { None }; MAX_PROMISES];
    let mut ring_count = 0;
    for fd in 0..limit {
        if !(is_set(0, fd) || is_set(1, fd)) {
            continue;
        }
        if let Some(conn) = table::get(fd) {
            if ring_count == MAX_PROMISES {
                break;
            }
            rings[ring_count] = Some((fd, conn));
            ring_count += 1;
        }
    }
    let rings = &rings[..ring_count];
    let write_back = |result: &[Option<libc::fd_set>; 3]| {
        for (set, value) in sets.iter().zip(result) {
            if let Some(value) = value {
                // SAFETY: the same non-null sets, writable per the caller's contract.
                unsafe { **set = *value };
            }
        }
    };
    if ring_count == 0 {
        return crate::interpose::busy_then(timeout, |t| {
            write_back(&saved);
            kernel(sets[0], sets[1], sets[2], t)
        });
    }
    let space_waiter = rings
        .iter()
        .flatten()
        .find(|(fd, conn)| is_set(1, *fd) && conn.readiness().1 == Some(false))
        .map(|(_, conn)| conn.clone());
    let watch = |promises: &mut Promises| {
        for (fd, conn) in rings.iter().flatten() {
            if is_set(0, *fd) {
                promises.promise(conn);
            }
        }
    };
    wait_loop(timeout, watch, space_waiter, |kernel_timeout| {
        let mut result = saved;
        let mut ring_ready = [[false; 2]; MAX_PROMISES];
        for (index, (fd, conn)) in rings.iter().flatten().enumerate() {
            let (readable, writable) = conn.readiness();
            ring_ready[index] = [
                is_set(0, *fd) && readable == Some(true),
                is_set(1, *fd) && writable == Some(true),
            ];
            if writable.is_some() {
                if let Some(write) = result[1].as_mut() {
                    // SAFETY: clears one bit of our own copy; fd < FD_SETSIZE.
                    unsafe { libc::FD_CLR(*fd, write) };
                }
            }
        }
        let any_ring = ring_ready[..ring_count].iter().any(|ready| ready[0] || ready[1]);
        let mut total = 0;
        match kernel_timeout {
            Some(kernel_timeout) => {
                let kernel_timeout = if any_ring { 0 } else { kernel_timeout };
                let [read, write, except] = result.each_mut().map(|set| {
                    set.as_mut().map_or(ptr::null_mut(), |set| set as *mut libc::fd_set)
                });
                let got = kernel(read, write, except, kernel_timeout);
                if got >= 0 {
                    total = got;
                } else if !any_ring {
                    return got;
                } else {
                    result = saved.map(|set| set.map(|_| empty_set()));
                }
            }
            None => result = saved.map(|set| set.map(|_| empty_set())),
        }
        for (index, (fd, _)) in rings.iter().flatten().enumerate() {
            for (which, ready) in ring_ready[index].iter().enumerate() {
                let Some(set) = result[which].as_mut().filter(|_| *ready) else { continue };
                // SAFETY: one bit of our own copy; fd < FD_SETSIZE.
                unsafe {
                    if !libc::FD_ISSET(*fd, set) {
                        libc::FD_SET(*fd, set);
                        total += 1;
                    }
                }
            }
        }
        if total != 0 || kernel_timeout.is_some() {
            write_back(&result);
        }
        total
    })
}

fn empty_set() -> libc::fd_set {
    // SAFETY: fd_set is plain bits; all-zero is the empty set (what FD_ZERO writes).
    unsafe { std::mem::zeroed() }
}
