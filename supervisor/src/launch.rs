//! Starting the target under the filter, passing signals on to it, and reporting its end as a
//! shell would.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::Arc;
use std::time::Duration;

use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;
use trap::{Filter, InstallOptions, Listener, SpawnError};

/// How long the child may take to reach the filter's installation.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts `argv` (program and arguments; environment, working directory and standard streams
/// are joyride's own, with `preload` put first in LD_PRELOAD if given) with `filter` installed,
/// and returns it with the filter's listener.
pub fn launch(
    argv: &[OsString],
    filter: Filter,
    preload: Option<&Path>,
) -> Result<(Child, Listener), SpawnError> {
    let mut command = Command::new(&argv[0]);
    command.args(&argv[1..]);
    if let Some(library) = preload {
        command.env("LD_PRELOAD", preload_list(library, std::env::var_os("LD_PRELOAD")));
    }
    trap::spawn(&mut command, Arc::new(filter), InstallOptions::default(), HANDOVER_TIMEOUT)
}

/// The file name of the fast-path library, as cargo builds it.
pub const FAST_PATH_LIBRARY: &str = "libjoyride_fastpath.so";

/// Where the fast-path library is: `JOYRIDE_FASTPATH_LIB` if set, else next to the running
/// executable. `None` (after one warning) if the file is not there.
pub fn fast_path_library() -> Option<PathBuf> {
    let path = match std::env::var_os("JOYRIDE_FASTPATH_LIB") {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe().ok()?.parent()?.join(FAST_PATH_LIBRARY),
    };
    if path.is_file() {
        // The loader resolves a relative path against the target's working directory.
        Some(std::fs::canonicalize(&path).unwrap_or(path))
    } else {
        tracing::warn!(
            path = %path.display(),
            "the fast-path library is missing: running on the trap path only"
        );
        None
    }
}

/// LD_PRELOAD with `library` first and the entries already there after it (ld.so takes
/// entries separated by spaces or colons).
fn preload_list(library: &Path, existing: Option<OsString>) -> OsString {
    let mut list = library.as_os_str().to_owned();
    if let Some(existing) = existing.filter(|e| !e.is_empty()) {
        list.push(":");
        list.push(existing);
    }
    list
}

/// The status a shell reports for `status`: the exit code, or 128 + the signal's number.
pub fn shell_status(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => 128u8.wrapping_add(signal as u8),
        (None, None) => 1,
    }
}

/// Passes the signals a user sends joyride on to the target, from a thread of its own.
///
/// SIGTERM, SIGHUP and the user signals are passed on. SIGINT and SIGQUIT are caught and not
/// passed on, as a shell does while it waits for a command: a terminal sends them to the whole
/// foreground process group, so the target has them already, and joyride must live on to serve
/// the target's clean-up and report its status.
pub fn forward_signals(target: u32) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2])?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        for signal in signals.forever() {
            if matches!(signal, SIGINT | SIGQUIT) {
                continue;
            }
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(target as i32),
                nix::sys::signal::Signal::try_from(signal).ok(),
            );
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_as_a_shell_reports_them() {
        assert_eq!(shell_status(ExitStatus::from_raw(7 << 8)), 7);
        assert_eq!(shell_status(ExitStatus::from_raw(0)), 0);
        assert_eq!(shell_status(ExitStatus::from_raw(libc::SIGTERM)), 143);
        assert_eq!(shell_status(ExitStatus::from_raw(libc::SIGKILL)), 137);
    }

    #[test]
    fn the_fast_path_library_goes_first_and_existing_entries_stay() {
        let library = Path::new("/opt/joyride/libjoyride_fastpath.so");
        assert_eq!(preload_list(library, None), "/opt/joyride/libjoyride_fastpath.so");
        assert_eq!(preload_list(library, Some("".into())), "/opt/joyride/libjoyride_fastpath.so");
        assert_eq!(
            preload_list(library, Some("/usr/lib/libfoo.so /usr/lib/libbar.so".into())),
            "/opt/joyride/libjoyride_fastpath.so:/usr/lib/libfoo.so /usr/lib/libbar.so"
        );
    }
}
