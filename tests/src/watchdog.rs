//! The last line of defence against a test that never ends.
//!
//! Every wait in the fixtures has a deadline, but a wait only checks it between calls into the
//! engine: an engine call that never returns (a loop inside the stack) would hang the test run
//! until CI's own limit, and leave namespaces and processes behind. A [`Watchdog`] per fixture
//! ends the whole test process when its test outlives a generous limit, after deleting every
//! namespace and killing every child the fixtures have registered.

use std::io::Write;
use std::process::Command;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

/// Namespaces and child processes alive in this test process.
struct Live {
    namespaces: Vec<String>,
    children: Vec<u32>,
}

static LIVE: Mutex<Live> = Mutex::new(Live { namespaces: Vec::new(), children: Vec::new() });

fn with_live(f: impl FnOnce(&mut Live)) {
    // A test that panicked while holding the lock cannot leave the lists inconsistent (each
    // change is one push or retain), so a poisoned lock is still usable.
    let mut live = LIVE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    f(&mut live);
}

pub(crate) fn register_netns(name: &str) {
    with_live(|live| live.namespaces.push(name.to_owned()));
}

pub(crate) fn unregister_netns(name: &str) {
    with_live(|live| live.namespaces.retain(|n| n != name));
}

pub(crate) fn register_child(pid: u32) {
    with_live(|live| live.children.push(pid));
}

pub(crate) fn unregister_child(pid: u32) {
    with_live(|live| live.children.retain(|&p| p != pid));
}

/// Ends the test process if it is not dropped within its limit.
#[derive(Debug)]
pub struct Watchdog {
    // Dropping the sender wakes the watchdog thread, which then exits quietly.
    _disarm: mpsc::Sender<()>,
}

impl Watchdog {
    /// Arms a watchdog for `test`.
    pub fn arm(test: &str, limit: Duration) -> Watchdog {
        let (disarm, disarmed) = mpsc::channel::<()>();
        let test = test.to_owned();
        thread::spawn(move || {
            if let Err(RecvTimeoutError::Timeout) = disarmed.recv_timeout(limit) {
                fire(&test, limit);
            }
        });
        Watchdog { _disarm: disarm }
    }
}

fn fire(test: &str, limit: Duration) -> ! {
    // Written to the process's stderr directly: the harness captures `eprintln!` per test (and
    // for threads a test spawns) and would lose the message when the process exits.
    let _ = writeln!(
        std::io::stderr(),
        "FATAL: {test} still running after {limit:?}: some call never returned (a loop inside \
         the engine?). Cleaning up and ending the test process."
    );
    with_live(|live| {
        // The children are unreaped, so their pids cannot have been reused.
        for pid in &live.children {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
        for name in &live.namespaces {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    });
    std::process::exit(101);
}
