//! Network namespaces the tests create and always delete.

use std::io;
use std::process::{Command, Output};

/// A named network namespace (`ip netns add`), deleted when dropped, also during a panic.
/// Processes started in it must be owned by guards that end them (see `KernelProcess`).
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace `name`. The name must be unique among the machine's namespaces.
    pub fn create(name: &str) -> io::Result<Netns> {
        run(Command::new("ip").args(["netns", "add", name]))?;
        crate::watchdog::register_netns(name);
        Ok(Netns { name: name.to_owned() })
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`, which setns()es and
    /// then execs `program` itself: the child's pid is the program's).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `program args...` inside the namespace to completion and returns its stdout; a
    /// failure carries the command line, the exit status and stderr.
    pub fn run(&self, program: &str, args: &[&str]) -> io::Result<String> {
        let mut cmd = self.command(program);
        cmd.args(args);
        let out = run(&mut cmd)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = run(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!("warning: could not delete network namespace {}: {e}", self.name);
        }
        crate::watchdog::unregister_netns(&self.name);
    }
}

/// Runs `cmd` to completion; a non-zero exit becomes an error with the command and its stderr.
pub(crate) fn run(cmd: &mut Command) -> io::Result<Output> {
    let out =
        cmd.output().map_err(|e| io::Error::new(e.kind(), format!("running {cmd:?}: {e}")))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out)
}
