//! `joyride oci prepare`: makes a bundle's container served by the agent, by editing its
//! `config.json` in place.
//!
//! The runtime builds the container's filter from `linux.seccomp` and hands the notification
//! descriptor to `listenerPath`; so preparing a bundle is writing [`FilterSpec::joyride`]'s
//! rules there as runtime-spec syscall entries (the same calls and the same argument tests as
//! `joyride run`) and pointing `listenerPath` at the agent.
//!
//! An existing profile is merged with, never replaced: a call it denies stays denied, a call
//! it allows becomes a NOTIFY with the same argument conditions, and under a deny-by-default
//! profile a call it does not name is not added (it is denied, and stays so). Unknown fields are
//! kept; the file is rewritten with sorted keys (serde_json's map order).
//!
//! Two properties of the runtimes' libseccomp shape the output:
//! - one entry's args on the *same* index are ORed by runc (libseccomp cannot AND them), so
//!   `socket` gets one entry per address family;
//! - for a given call, an unconditional rule swallows every conditional one whatever their
//!   actions, so a call that an entry allows outright and that joyride traps only for some
//!   argument values is rewritten as conditional entries covering every value: NOTIFY for
//!   joyride's values, the entry's own action for the rest (LT below, GT above, aligned
//!   MASKED_EQ blocks between).
//!
//! Known limit: a call that an entry allows outright *and* another entry denies for some
//! argument values (e.g. `socket` allowed, but ERRNO for AF_VSOCK) ends up with overlapping
//! conditional rules of different actions, whose order libseccomp decides.
//!
//! Comparisons are libseccomp's, on all 64 bits of an argument (the trap filter compares the
//! low 32 bits of `int` arguments): a program passing `socket` a family with garbage in the high
//! half gets a kernel socket rather than a joyride one. No libc does that.

use std::io;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use thiserror::Error;
use trap::{FilterSpec, Rule, Sysno};

/// The backup of the original `config.json`, next to it.
pub const BACKUP_NAME: &str = "config.json.joyride-orig";

const ALLOW: &str = "SCMP_ACT_ALLOW";
const LOG: &str = "SCMP_ACT_LOG";
const NOTIFY: &str = "SCMP_ACT_NOTIFY";
const ERRNO: &str = "SCMP_ACT_ERRNO";

/// What [`prepare`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrepareOutcome {
    /// `config.json` was rewritten (and backed up, the first time).
    Prepared,
    /// `config.json` already sends the container to this agent: left byte for byte as it was.
    AlreadyPrepared,
}

impl std::fmt::Display for PrepareOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PrepareOutcome::Prepared => "the bundle is prepared for joyride",
            PrepareOutcome::AlreadyPrepared => "the bundle was already prepared for joyride",
        })
    }
}

/// Why a bundle cannot be prepared. Each message names the file and what to do.
#[derive(Debug, Error)]
pub enum PrepareError {
    /// `config.json` cannot be read (missing, or no permission).
    #[error(
        "cannot read {}: {source}; give the bundle directory, the one that holds config.json \
         (`runc spec` writes one)",
        path.display()
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// `config.json` is not JSON.
    #[error(
        "{} is not JSON: {source} (line {line}, column {column}); fix it or regenerate it with \
         `runc spec`",
        path.display()
    )]
    NotJson {
        /// The file.
        path: PathBuf,
        /// The line of the error (1-based).
        line: usize,
        /// The column of the error (1-based).
        column: usize,
        /// The parser's message.
        source: serde_json::Error,
    },
    /// A part of `config.json` has the wrong shape for a runtime-spec configuration.
    #[error("{}: {what}; fix the bundle's configuration (`runc spec` shows the expected shape)", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the field.
        what: String,
    },
    /// Another seccomp agent already receives the container's notifications.
    #[error(
        "{}: linux.seccomp.listenerPath is already {existing}; a filter has one listener, so \
         joyride cannot serve this container beside that agent: remove listenerPath (and that \
         agent's SCMP_ACT_NOTIFY rules), or prepare a copy of the bundle",
        path.display()
    )]
    ForeignListener {
        /// The file.
        path: PathBuf,
        /// The listenerPath found.
        existing: String,
    },
    /// The profile notifies every call it does not name.
    #[error(
        "{}: linux.seccomp.defaultAction is SCMP_ACT_NOTIFY, which runtimes refuse (it would \
         notify `write` and deadlock the runtime): use another default action",
        path.display()
    )]
    DefaultNotify {
        /// The file.
        path: PathBuf,
    },
    /// An entry notifies `write`.
    #[error(
        "{}: a linux.seccomp.syscalls entry sends `write` to the listener (SCMP_ACT_NOTIFY), \
         which runc refuses (it writes to the agent itself after installing the filter): \
         remove `write` from that entry",
        path.display()
    )]
    NotifyOnWrite {
        /// The file.
        path: PathBuf,
    },
    /// The configuration already names this agent but its profile no longer traps a call.
    #[error(
        "{}: listenerPath is already this agent, but `{syscall}` is neither notified nor \
         denied (edited since it was prepared?): restore {} and prepare again",
        path.display(),
        path.with_file_name(BACKUP_NAME).display()
    )]
    Incomplete {
        /// The file.
        path: PathBuf,
        /// A joyride call the profile lets through.
        syscall: &'static str,
    },
    /// The agent path cannot be written into `config.json`.
    #[error("the agent path {}: {what}", path.display())]
    AgentPath {
        /// The path given.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// The backup or the new `config.json` cannot be written.
    #[error("cannot write {}: {source}; check the bundle directory's permissions and free space", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
}

/// Edits `BUNDLE/config.json` so that its container's socket calls are sent to the agent at
/// `agent` (made absolute), with `metadata` as `listenerMetadata` when given. Keeps the
/// original as [`BACKUP_NAME`] the first time; a second run finds it done and writes nothing.
pub fn prepare(
    bundle: &Path,
    agent: &Path,
    metadata: Option<&str>,
) -> Result<PrepareOutcome, PrepareError> {
    let path = bundle.join("config.json");
    let bytes =
        std::fs::read(&path).map_err(|source| PrepareError::Read { path: path.clone(), source })?;
    let original: Value =
        serde_json::from_slice(&bytes).map_err(|source| PrepareError::NotJson {
            path: path.clone(),
            line: source.line(),
            column: source.column(),
            source,
        })?;
    let agent_abs = std::path::absolute(agent).map_err(|e| PrepareError::AgentPath {
        path: agent.to_owned(),
        what: format!("cannot make it absolute: {e}"),
    })?;
    let agent_str = agent_abs.to_str().ok_or_else(|| PrepareError::AgentPath {
        path: agent.to_owned(),
        what: "not UTF-8, which config.json cannot hold".into(),
    })?;

    let mut config = original.clone();
    apply(&mut config, agent_str, metadata).map_err(|fault| fault.at(&path))?;
    if config == original {
        return Ok(PrepareOutcome::AlreadyPrepared);
    }

    let backup = path.with_file_name(BACKUP_NAME);
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&backup) {
        Ok(mut file) => {
            use std::io::Write;
            file.write_all(&bytes)
                .and_then(|()| file.sync_all())
                .map_err(|source| PrepareError::Write { path: backup.clone(), source })?;
        }
        // The first run's backup is the original; a later one would hold a prepared file.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(source) => return Err(PrepareError::Write { path: backup, source }),
    }

    let mut text = serde_json::to_vec_pretty(&config).expect("a Value always serializes");
    text.push(b'\n');
    write_replacing(&path, &text)
        .map_err(|source| PrepareError::Write { path: path.clone(), source })?;
    Ok(PrepareOutcome::Prepared)
}

/// Writes `path` through a temporary file and a rename, so that a runtime reading the bundle
/// concurrently sees the old file or the new one, never half of it. Keeps the file's mode.
fn write_replacing(path: &Path, text: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let temporary = path.with_file_name(format!(".config.json.joyride-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(text)?;
        file.sync_all()?;
        if let Ok(metadata) = std::fs::metadata(path) {
            std::fs::set_permissions(&temporary, metadata.permissions())?;
        }
        std::fs::rename(&temporary, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

/// A failure found while editing, before the file's path is attached.
enum Fault {
    Malformed(String),
    Foreign(String),
    DefaultNotify,
    NotifyOnWrite,
    Incomplete(&'static str),
}

impl Fault {
    fn at(self, path: &Path) -> PrepareError {
        let path = path.to_owned();
        match self {
            Fault::Malformed(what) => PrepareError::Malformed { path, what },
            Fault::Foreign(existing) => PrepareError::ForeignListener { path, existing },
            Fault::DefaultNotify => PrepareError::DefaultNotify { path },
            Fault::NotifyOnWrite => PrepareError::NotifyOnWrite { path },
            Fault::Incomplete(syscall) => PrepareError::Incomplete { path, syscall },
        }
    }
}

fn malformed(what: impl Into<String>) -> Fault {
    Fault::Malformed(what.into())
}

/// Edits the configuration in memory.
fn apply(config: &mut Value, agent: &str, metadata: Option<&str>) -> Result<(), Fault> {
    let root = config.as_object_mut().ok_or_else(|| malformed("the top level is not an object"))?;
    let linux = root.entry("linux").or_insert_with(|| json!({}));
    let linux = linux.as_object_mut().ok_or_else(|| malformed("`linux` is not an object"))?;

    let Some(seccomp) = linux.get_mut("seccomp") else {
        // The profile for a bundle without one. Only the native ABI is listed: a call under any
        // other (i386 — whose socketcall hides socket arguments in memory — or x32) gets the
        // runtime's bad-architecture action instead of slipping past the NOTIFY rules, which
        // name x86_64 calls.
        let mut seccomp = Map::new();
        seccomp.insert("defaultAction".into(), json!(ALLOW));
        seccomp.insert("architectures".into(), json!(["SCMP_ARCH_X86_64"]));
        seccomp.insert("syscalls".into(), Value::Array(group(joyride_entries())));
        seccomp.insert("listenerPath".into(), json!(agent));
        if let Some(metadata) = metadata {
            seccomp.insert("listenerMetadata".into(), json!(metadata));
        }
        linux.insert("seccomp".into(), Value::Object(seccomp));
        return Ok(());
    };
    let seccomp =
        seccomp.as_object_mut().ok_or_else(|| malformed("`linux.seccomp` is not an object"))?;

    let ours = match seccomp.get("listenerPath") {
        None => false,
        Some(Value::String(existing)) if existing == agent => true,
        Some(Value::String(existing)) if existing.is_empty() => false,
        Some(Value::String(existing)) => return Err(Fault::Foreign(existing.clone())),
        Some(_) => return Err(malformed("`linux.seccomp.listenerPath` is not a string")),
    };
    let default = match seccomp.get("defaultAction") {
        Some(Value::String(action)) => action.clone(),
        _ => return Err(malformed("`linux.seccomp.defaultAction` is missing or not a string")),
    };
    if default == NOTIFY {
        return Err(Fault::DefaultNotify);
    }
    let mut entries = match seccomp.remove("syscalls") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err(malformed("`linux.seccomp.syscalls` is not an array")),
    };
    for (i, entry) in entries.iter().enumerate() {
        let parsed = Entry::parse(entry).ok_or_else(|| {
            malformed(format!(
                "`linux.seccomp.syscalls[{i}]` needs `names` (strings) and `action` (a string)"
            ))
        })?;
        if parsed.action == NOTIFY && parsed.names.iter().any(|n| n == "write") {
            return Err(Fault::NotifyOnWrite);
        }
    }

    let result = if ours {
        check_complete(&entries, &default)
    } else {
        merge(&mut entries, &default);
        Ok(())
    };
    seccomp.insert("syscalls".into(), Value::Array(entries));
    result?;
    seccomp.insert("listenerPath".into(), json!(agent));
    if let Some(metadata) = metadata {
        seccomp.insert("listenerMetadata".into(), json!(metadata));
    }
    Ok(())
}

/// The parts of a syscall entry the merge reads.
struct Entry {
    names: Vec<String>,
    action: String,
    has_args: bool,
    arg_indices: Vec<u64>,
}

impl Entry {
    fn parse(entry: &Value) -> Option<Entry> {
        let object = entry.as_object()?;
        let names = object
            .get("names")?
            .as_array()?
            .iter()
            .map(|n| n.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()?;
        let action = object.get("action")?.as_str()?.to_owned();
        let args = match object.get("args") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(args)) => args.clone(),
            Some(_) => return None,
        };
        let arg_indices = args.iter().filter_map(|a| a.get("index")?.as_u64()).collect();
        Some(Entry { names, action, has_args: !args.is_empty(), arg_indices })
    }

    fn names(&self, syscall: &str) -> bool {
        self.names.iter().any(|n| n == syscall)
    }
}

/// Whether `action` lets the call run (the ones joyride may turn into NOTIFY).
fn allows(action: &str) -> bool {
    action == ALLOW || action == LOG
}

/// Whether `action` stops the call (ERRNO, KILL*, TRAP, TRACE — and, conservatively, any action
/// this code does not know).
fn denies(action: &str) -> bool {
    !allows(action) && action != NOTIFY
}

/// One joyride call as runtime-spec entries: its action, and the args of each entry (one
/// entry per element; an empty list is an unconditional entry).
struct Target {
    name: &'static str,
    action: Value,
    errno: Option<i32>,
    conditions: Vec<Vec<Value>>,
    /// The argument the conditions test, if any.
    arg: Option<u8>,
    /// The conditions covering every value the rule lets through (empty when unconditional).
    complement: Vec<Vec<Value>>,
}

fn cond(index: u8, value: u64, op: &str) -> Value {
    json!({ "index": index, "value": value, "op": op })
}

fn masked(index: u8, mask: u64, datum: u64) -> Value {
    // runtime-spec (like libseccomp) gives MASKED_EQ the mask in `value`, the datum in
    // `valueTwo`.
    json!({ "index": index, "value": mask, "valueTwo": datum, "op": "SCMP_CMP_MASKED_EQ" })
}

/// The joyride rules as targets, in system call number order.
fn targets() -> Vec<Target> {
    let mut targets = Vec::new();
    for (nr, rule) in FilterSpec::joyride().rules() {
        let Some(sysno) = Sysno::from_nr(nr) else {
            tracing::warn!(
                nr,
                "a joyride rule for a call trap cannot name: left out of the profile"
            );
            continue;
        };
        let name = sysno.name();
        let notify = json!(NOTIFY);
        let target = match rule {
            Rule::Allow => continue,
            Rule::Notify => Target {
                name,
                action: notify,
                errno: None,
                conditions: vec![vec![]],
                arg: None,
                complement: vec![],
            },
            Rule::Errno(errno) => Target {
                name,
                action: json!(ERRNO),
                errno: Some(*errno),
                conditions: vec![vec![]],
                arg: None,
                complement: vec![],
            },
            Rule::NotifyIfArgIn { arg, values } => Target {
                name,
                action: notify,
                errno: None,
                conditions: values
                    .iter()
                    .map(|v| vec![cond(*arg, u64::from(*v), "SCMP_CMP_EQ")])
                    .collect(),
                arg: Some(*arg),
                complement: complement(*arg, values),
            },
            Rule::NotifyIfArgNonNull { arg } => Target {
                name,
                action: notify,
                errno: None,
                conditions: vec![vec![cond(*arg, 0, "SCMP_CMP_NE")]],
                arg: Some(*arg),
                complement: vec![vec![cond(*arg, 0, "SCMP_CMP_EQ")]],
            },
        };
        targets.push(target);
    }
    targets
}

/// Conditions on argument `arg` matching every 64-bit value except `values`, one condition
/// per entry (runc ORs conditions on one index): LT below the smallest, GT above the largest,
/// and each gap between as aligned power-of-two blocks, one MASKED_EQ each.
fn complement(arg: u8, values: &[u32]) -> Vec<Vec<Value>> {
    let mut sorted: Vec<u64> = values.iter().map(|&v| u64::from(v)).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let (Some(&first), Some(&last)) = (sorted.first(), sorted.last()) else {
        return vec![vec![]];
    };
    let mut out = Vec::new();
    if first > 0 {
        out.push(vec![cond(arg, first, "SCMP_CMP_LT")]);
    }
    for pair in sorted.windows(2) {
        let (mut low, high) = (pair[0] + 1, pair[1]); // the gap is low..high
        while low < high {
            // The largest aligned block starting at `low` that fits in the gap.
            let mut size = if low == 0 { 1u64 << 63 } else { 1u64 << low.trailing_zeros() };
            while size > high - low {
                size >>= 1;
            }
            out.push(vec![masked(arg, !(size - 1), low)]);
            low += size;
        }
    }
    if last < u64::MAX {
        out.push(vec![cond(arg, last, "SCMP_CMP_GT")]);
    }
    out
}

/// A new entry for one call.
fn entry_for(name: &str, action: &Value, errno: Option<i32>, args: Vec<Value>) -> Value {
    let mut entry = Map::new();
    entry.insert("names".into(), json!([name]));
    entry.insert("action".into(), action.clone());
    if let Some(errno) = errno {
        entry.insert("errnoRet".into(), json!(errno));
    }
    if !args.is_empty() {
        entry.insert("args".into(), Value::Array(args));
    }
    Value::Object(entry)
}

/// Every joyride target's entries, for a profile that lets all calls through.
fn joyride_entries() -> Vec<Value> {
    targets()
        .into_iter()
        .flat_map(|t| {
            t.conditions
                .into_iter()
                .map(move |args| entry_for(t.name, &t.action, t.errno, args))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Folds single-name entries that differ only in their name into one entry, in order of
/// first appearance.
fn group(entries: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for entry in entries {
        let key = |e: &Value| {
            let mut e = e.clone();
            e.as_object_mut().map(|o| o.remove("names"));
            e
        };
        let name = entry["names"][0].clone();
        if let Some(same) = out.iter_mut().find(|e| key(e) == key(&entry)) {
            if let Some(names) = same["names"].as_array_mut() {
                names.push(name);
            }
        } else {
            out.push(entry);
        }
    }
    out
}

/// Adds the joyride rules to an existing profile (see the module documentation).
fn merge(entries: &mut Vec<Value>, default: &str) {
    let mut added = Vec::new();
    for target in targets() {
        let parsed: Vec<Entry> = entries.iter().filter_map(Entry::parse).collect();
        let naming: Vec<&Entry> = parsed.iter().filter(|e| e.names(target.name)).collect();
        // Denied outright, or already sent to the listener: nothing to add.
        if naming.iter().any(|e| (denies(&e.action) && !e.has_args) || e.action == NOTIFY) {
            continue;
        }
        if !naming.iter().any(|e| allows(&e.action)) {
            // Named only by conditional denials, or not at all: the default decides the rest.
            if allows(default) {
                added.extend(target.conditions.iter().map(|args| {
                    entry_for(target.name, &target.action, target.errno, args.clone())
                }));
            }
            continue;
        }
        let mut rewritten = Vec::with_capacity(entries.len());
        for entry in entries.drain(..) {
            let Some(parsed) =
                Entry::parse(&entry).filter(|e| e.names(target.name) && allows(&e.action))
            else {
                rewritten.push(entry);
                continue;
            };
            let mut rest = entry.clone();
            if let Some(names) = rest["names"].as_array_mut() {
                names.retain(|n| n != target.name);
                if !names.is_empty() {
                    rewritten.push(rest);
                }
            }
            rewritten.extend(split(&entry, &parsed, &target));
        }
        *entries = rewritten;
    }
    entries.extend(group(added));
}

/// The entries replacing `target`'s name in an entry that allows it (`parsed` is `entry`
/// read): the target's action under the entry's own conditions and the target's, the entry's
/// action under the entry's conditions and the target's complement.
fn split(entry: &Value, parsed: &Entry, target: &Target) -> Vec<Value> {
    let own_args: Vec<Value> =
        entry.get("args").and_then(Value::as_array).cloned().unwrap_or_default();
    let derived = |action: &Value, errno: Option<i32>, extra: &[Value]| {
        let mut new = entry.clone();
        let object = new.as_object_mut().expect("parsed entries are objects");
        object.insert("names".into(), json!([target.name]));
        object.insert("action".into(), action.clone());
        object.remove("errnoRet");
        if let Some(errno) = errno {
            object.insert("errnoRet".into(), json!(errno));
        }
        let args: Vec<Value> = own_args.iter().chain(extra).cloned().collect();
        if args.is_empty() {
            object.remove("args");
        } else {
            object.insert("args".into(), Value::Array(args));
        }
        new
    };
    let same_index = target.arg.is_some_and(|a| parsed.arg_indices.contains(&u64::from(a)));
    if target.complement.is_empty() || same_index {
        // Unconditional, or the entry already tests the argument joyride tests (runc would OR
        // the two conditions): the whole entry notifies, and the agent answers CONTINUE to what
        // is not a joyride socket.
        return vec![derived(&target.action, target.errno, &[])];
    }
    let own_action = entry["action"].clone();
    let own_errno = None;
    target
        .conditions
        .iter()
        .map(|extra| derived(&target.action, target.errno, extra))
        .chain(target.complement.iter().map(|extra| derived(&own_action, own_errno, extra)))
        .collect()
}

/// For a profile already pointed at this agent: every joyride call must be notified or
/// denied, or the container would run partly outside joyride unnoticed.
fn check_complete(entries: &[Value], default: &str) -> Result<(), Fault> {
    let parsed: Vec<Entry> = entries.iter().filter_map(Entry::parse).collect();
    for target in targets() {
        let naming: Vec<&Entry> = parsed.iter().filter(|e| e.names(target.name)).collect();
        let wanted = target.action.as_str().unwrap_or_default();
        let served =
            naming.iter().any(|e| e.action == wanted || (wanted == ERRNO && denies(&e.action)));
        let denied = naming.iter().any(|e| denies(&e.action) && !e.has_args);
        let by_default = naming.is_empty() && !allows(default);
        if !(served || denied || by_default) {
            return Err(Fault::Incomplete(target.name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which of the complement's conditions match `x` (an obviously correct model of each op).
    fn matches(c: &Value, x: u64) -> bool {
        let value = c["value"].as_u64().unwrap();
        match c["op"].as_str().unwrap() {
            "SCMP_CMP_LT" => x < value,
            "SCMP_CMP_GT" => x > value,
            "SCMP_CMP_EQ" => x == value,
            "SCMP_CMP_MASKED_EQ" => x & value == c["valueTwo"].as_u64().unwrap(),
            op => panic!("unexpected op {op}"),
        }
    }

    #[test]
    fn complement_covers_every_other_value_exactly_once() {
        for values in [vec![2u32, 10], vec![0, 1, 7], vec![5], vec![3, 4, 100, 4096]] {
            let complement = complement(0, &values);
            let mut probes: Vec<u64> = (0..300).collect();
            probes.extend([4095, 4096, 4097, u64::from(u32::MAX), 1 << 32, u64::MAX]);
            for x in probes {
                let hits = complement.iter().filter(|args| matches(&args[0], x)).count();
                let joyride = values.iter().any(|&v| u64::from(v) == x);
                assert_eq!(hits, usize::from(!joyride), "value {x} with {values:?}");
            }
        }
    }
}
