//! Programs on the kernel side of the link: children started inside the test's namespace, with
//! their output collected by reader threads so that the test thread can keep driving the engine
//! while it waits for them.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use crate::driver::Driver;
use crate::netns::Netns;

/// A child process inside a test namespace, killed and reaped when dropped.
///
/// Its stdout is read line by line ([`expect_line`](Self::expect_line)); its stderr is kept
/// for failure messages; its stdin stays open for [`send_line`](Self::send_line).
#[derive(Debug)]
pub struct KernelProcess {
    what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    exited: Option<ExitStatus>,
}

impl KernelProcess {
    /// Starts `cmd` (built with [`Netns::command`]); `what` names it in messages.
    pub fn spawn(mut cmd: Command, what: &str) -> io::Result<KernelProcess> {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child =
            cmd.spawn().map_err(|e| io::Error::new(e.kind(), format!("starting {what}: {e}")))?;
        crate::watchdog::register_child(child.id());
        let stdout = child.stdout.take().expect("stdout was piped");
        let stderr_pipe = child.stderr.take().expect("stderr was piped");
        let (tx, lines) = mpsc::channel();
        // The reader threads end when the pipes close, which the child's death (at the latest in
        // Drop) guarantees.
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(stderr_pipe).read_to_string(&mut text);
            if let Ok(mut s) = sink.lock() {
                s.push_str(&text);
            }
        });
        let stdin = child.stdin.take();
        Ok(KernelProcess { what: what.to_owned(), child, stdin, lines, stderr, exited: None })
    }

    /// Runs `python3 -c script args...` inside `netns` (`python3` resolved once to the real
    /// interpreter, see [`python3`]). The script should print with `flush=True`.
    pub fn python(netns: &Netns, what: &str, script: &str, args: &[&str]) -> KernelProcess {
        let python = python3().expect("python3 was checked before the test started");
        let mut cmd = netns.command(&python.to_string_lossy());
        cmd.arg("-c").arg(script).args(args);
        KernelProcess::spawn(cmd, what).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The next stdout line if one has arrived; `Err` with the process's stderr once stdout
    /// closed without one.
    pub fn try_line(&mut self) -> Result<Option<String>, String> {
        match self.lines.try_recv() {
            Ok(line) => Ok(Some(line)),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(self.failure("closed its stdout")),
        }
    }

    /// Drives the engine until the next stdout line arrives, and returns it.
    #[track_caller]
    pub fn expect_line(&mut self, driver: &mut Driver, timeout: Duration) -> String {
        let what = format!("a line from {}", self.what);
        let line = driver.try_run_until(timeout, |_, _| match self.try_line() {
            Ok(line) => line.map(Ok),
            Err(e) => Some(Err(e)),
        });
        match line {
            Some(Ok(line)) => line,
            Some(Err(e)) => panic!("{e}\n{}", driver.diagnostics()),
            None => panic!(
                "timed out after {timeout:?} waiting for {what}\n{}\n{}",
                self.failure("is still running"),
                driver.diagnostics()
            ),
        }
    }

    /// Drives the engine until the next line arrives and checks it starts with `prefix`;
    /// returns the rest of the line.
    #[track_caller]
    pub fn expect_prefixed(
        &mut self,
        driver: &mut Driver,
        prefix: &str,
        timeout: Duration,
    ) -> String {
        let line = self.expect_line(driver, timeout);
        match line.strip_prefix(prefix) {
            Some(rest) => rest.trim().to_owned(),
            None => panic!("{}: expected a line starting {prefix:?}, got {line:?}", self.what),
        }
    }

    /// Every stdout line not read yet, once the process has exited (waits up to `timeout` for
    /// the reader to reach the end of the pipe).
    pub fn remaining_lines(&mut self, timeout: Duration) -> Vec<String> {
        let deadline = std::time::Instant::now() + timeout;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(_) => return lines,
            }
        }
    }

    /// Writes `line` and a newline to the process's stdin.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        if let Err(e) = writeln!(stdin, "{line}").and_then(|()| stdin.flush()) {
            panic!("{}: {e}", self.failure("refused its stdin"));
        }
    }

    /// Drives the engine until the process exits, and checks it succeeded.
    #[track_caller]
    pub fn expect_success(&mut self, driver: &mut Driver, timeout: Duration) {
        let status = driver.try_run_until(timeout, |_, _| self.child.try_wait().ok().flatten());
        match status {
            Some(status) => {
                self.exited = Some(status);
                assert!(status.success(), "{}\n{}", self.failure("failed"), driver.diagnostics());
            }
            None => panic!(
                "timed out after {timeout:?} waiting for the exit of {}\n{}",
                self.what,
                driver.diagnostics()
            ),
        }
    }

    /// A message naming the process, what went wrong, its exit status and its stderr so far.
    fn failure(&mut self, problem: &str) -> String {
        // The stderr reader may still be catching up with a process that just died.
        let status = match self.exited {
            Some(status) => Some(status),
            None => {
                let mut status = None;
                for _ in 0..20 {
                    status = self.child.try_wait().ok().flatten();
                    if status.is_some() {
                        break;
                    }
                    thread::sleep(Duration::from_millis(10));
                }
                status
            }
        };
        thread::sleep(Duration::from_millis(20));
        let stderr = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
        format!(
            "{} {problem} (exit: {})\n--- its stderr ---\n{}",
            self.what,
            status.map_or_else(|| "still running".to_owned(), |s| s.to_string()),
            stderr.trim_end()
        )
    }
}

impl Drop for KernelProcess {
    fn drop(&mut self) {
        // Closing stdin first lets a script blocked on it finish; kill covers the rest.
        drop(self.stdin.take());
        if self.exited.is_none() && self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        crate::watchdog::unregister_child(self.child.id());
    }
}

/// Finds `program` in `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The real python3 interpreter (`sys.executable`): a version manager's shim in `PATH` would
/// cost a shell start per script and put a wrapper between the test and the pid it kills.
pub fn python3() -> Option<PathBuf> {
    static PYTHON: OnceLock<Option<PathBuf>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let shim = which("python3")?;
            let out = Command::new(&shim)
                .args(["-c", "import sys; print(sys.executable)"])
                .stdin(Stdio::null())
                .output()
                .ok()?;
            let exe = String::from_utf8(out.stdout).ok()?;
            let exe = PathBuf::from(exe.trim());
            Some(if out.status.success() && is_executable(&exe) { exe } else { shim })
        })
        .clone()
}
