//! The seccomp filter: which system calls reach the supervisor, which the kernel serves alone,
//! and which are refused outright.
//!
//! The program is classic BPF built by hand rather than by seccompiler or libseccomp:
//! seccompiler has no `SECCOMP_RET_USER_NOTIF` action at all, and neither crate can compare
//! `seccomp_data.instruction_pointer`, which the fast path's gadget exemption needs
//! ([`FilterSpec::allow_from_gadget`]); libseccomp would also bring a C library into every
//! static build. The program is small, and `tests` run it in an interpreter on synthetic
//! `seccomp_data` for every rule.
//!
//! Shape of the program:
//!
//! 1. `arch != AUDIT_ARCH_X86_64` → `ERRNO(ENOSYS)`. i386 code (a 32-bit program, or `int 0x80`
//!    from a 64-bit one) has other system call numbers and `socketcall`, a multiplexer whose
//!    socket arguments sit in memory where BPF cannot see them; letting it through would bypass
//!    every rule below.
//! 2. `nr >= __X32_SYSCALL_BIT` → `ERRNO(ENOSYS)`. x32 calls arrive with the x86_64 arch value
//!    and the x32 bit in the number; the rules below compare x86_64 numbers and would let every
//!    one of them through. ENOSYS is what a kernel built without x32 (most distributions'
//!    default) answers, so programs already know it; an x32 program cannot run under joyride.
//!    Negative numbers (`syscall(-1)`) fall in the same range and get the ENOSYS the kernel
//!    would give them anyway.
//! 3. Optionally, `instruction_pointer == gadget` → `ALLOW` (the fast path's own calls).
//! 4. The rules of the [`FilterSpec`], one per system call number, each ending in a return.
//! 5. Everything else → `ALLOW`.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::sys::{sock_filter, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT};
use crate::Sysno;

/// What the filter does with one system call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// Let the kernel serve it (useful to override a preset).
    Allow,
    /// Send it to the supervisor.
    Notify,
    /// Fail it with this errno (1..=4095) without involving the supervisor.
    Errno(i32),
    /// Notify when the low 32 bits of argument `arg` (0..=5) equal one of `values`, else allow.
    /// Only the low half is compared because the kernel truncates `int` arguments to 32 bits
    /// itself: `socket(0x1_0000_0002, ..)` is an AF_INET socket.
    NotifyIfArgIn {
        /// The argument's index (0..=5).
        arg: u8,
        /// The values that notify.
        values: Vec<u32>,
    },
    /// Notify when pointer argument `arg` (0..=5) is not NULL — all 64 bits compared — else
    /// allow.
    NotifyIfArgNonNull {
        /// The argument's index (0..=5).
        arg: u8,
    },
}

/// A description of the filter to build: a [`Rule`] per system call number, everything else
/// allowed, with the architecture guard always in front.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterSpec {
    rules: BTreeMap<u32, Rule>,
    gadget: Option<u64>,
}

/// Why a [`FilterSpec`] cannot be built.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FilterError {
    /// An errno outside what a seccomp filter can return.
    #[error("errno {errno} for system call {nr} is out of range: seccomp returns 1..=4095")]
    BadErrno {
        /// The system call number.
        nr: u32,
        /// The errno asked for.
        errno: i32,
    },
    /// A rule names an argument that does not exist.
    #[error("rule for system call {nr} names argument {arg}: system calls have arguments 0..=5")]
    BadArgument {
        /// The system call number.
        nr: u32,
        /// The argument index asked for.
        arg: u8,
    },
    /// A rule's code would need a jump longer than classic BPF's 255 instructions.
    #[error(
        "rule for system call {nr} compares {values} values: at most {MAX_VALUES} fit in one rule"
    )]
    TooManyValues {
        /// The system call number.
        nr: u32,
        /// How many values it lists.
        values: usize,
    },
    /// The program is longer than the kernel accepts.
    #[error(
        "the filter has {len} instructions; the kernel accepts at most {}",
        libc::BPF_MAXINSNS
    )]
    TooLong {
        /// The program's length.
        len: usize,
    },
}

/// The most values one [`Rule::NotifyIfArgIn`] may list (its jumps must stay within 255).
pub const MAX_VALUES: usize = 250;

/// A built, validated filter program, ready for [`crate::install_listener`].
#[derive(Clone)]
pub struct Filter {
    program: Vec<sock_filter>,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Filter({} instructions)", self.program.len())
    }
}

impl Filter {
    /// The instructions, as `struct sock_filter` (e.g. for a runtime that installs them).
    pub fn instructions(&self) -> &[libc::sock_filter] {
        &self.program
    }

    /// The number of instructions.
    pub fn len(&self) -> usize {
        self.program.len()
    }

    /// Whether the program is empty (never, for a built filter).
    pub fn is_empty(&self) -> bool {
        self.program.is_empty()
    }
}

impl FilterSpec {
    /// Only the architecture guard: every x86_64 call allowed.
    pub fn new() -> FilterSpec {
        FilterSpec::default()
    }

    /// What `joyride run` traps (DESIGN.md, "Data paths" and "The filter"):
    /// - `socket()` for AF_INET and AF_INET6 only (AF_UNIX, AF_NETLINK, AF_PACKET... stay with
    ///   the kernel and never trap); `socketpair()` never;
    /// - every call whose meaning differs on a carrier: connect, bind, listen, accept, accept4,
    ///   getsockname, getpeername, setsockopt, getsockopt, shutdown;
    /// - sendto and recvfrom only with an address (argument 4 not NULL): without one they act
    ///   natively on the carrier;
    /// - sendmsg, recvmsg, sendmmsg, recvmmsg always (their address hides in the msghdr);
    /// - io_uring_setup fails with ENOSYS: its socket operations would bypass seccomp, and
    ///   programs fall back to plain system calls.
    pub fn joyride() -> FilterSpec {
        let mut spec = FilterSpec::socket_creation();
        for sysno in [
            Sysno::Connect,
            Sysno::Bind,
            Sysno::Listen,
            Sysno::Accept,
            Sysno::Accept4,
            Sysno::GetSockName,
            Sysno::GetPeerName,
            Sysno::SetSockOpt,
            Sysno::GetSockOpt,
            Sysno::Shutdown,
            Sysno::SendMsg,
            Sysno::RecvMsg,
            Sysno::SendMmsg,
            Sysno::RecvMmsg,
        ] {
            spec = spec.rule(sysno, Rule::Notify);
        }
        // Argument 4 is the address of both.
        spec.rule(Sysno::SendTo, Rule::NotifyIfArgNonNull { arg: 4 })
            .rule(Sysno::RecvFrom, Rule::NotifyIfArgNonNull { arg: 4 })
    }

    /// What `joyride audit` traps: exactly what [`FilterSpec::joyride`] does, so that an audit
    /// log shows the calls `joyride run` would serve.
    pub fn audit() -> FilterSpec {
        FilterSpec::joyride()
    }

    /// Only the creation of inet sockets (and io_uring_setup refused): enough to log or
    /// redirect which sockets a program makes, at the least cost.
    pub fn socket_creation() -> FilterSpec {
        FilterSpec::new()
            .rule(
                Sysno::Socket,
                Rule::NotifyIfArgIn {
                    arg: 0,
                    values: vec![libc::AF_INET as u32, libc::AF_INET6 as u32],
                },
            )
            .rule(Sysno::IoUringSetup, Rule::Errno(libc::ENOSYS))
    }

    /// Sets the rule for `sysno`, replacing any earlier one.
    #[must_use]
    pub fn rule(self, sysno: Sysno, rule: Rule) -> FilterSpec {
        self.rule_nr(sysno.nr(), rule)
    }

    /// Sets the rule for the x86_64 system call number `nr`, replacing any earlier one.
    #[must_use]
    pub fn rule_nr(mut self, nr: u32, rule: Rule) -> FilterSpec {
        self.rules.insert(nr, rule);
        self
    }

    /// Removes the rule for `sysno` (the call is then allowed).
    #[must_use]
    pub fn without(mut self, sysno: Sysno) -> FilterSpec {
        self.rules.remove(&sysno.nr());
        self
    }

    /// Allows every x86_64 call made from the instruction before `return_address`, whatever
    /// the rules say: `return_address` is the address right after the gadget's `syscall`
    /// instruction, which is what the kernel reports as `instruction_pointer`.
    ///
    /// Any code in the process can jump to the gadget, so a filter with this exemption is no
    /// enforcement: a policy with deny rules must run without it (DESIGN.md, "Fast path").
    #[must_use]
    pub fn allow_from_gadget(mut self, return_address: u64) -> FilterSpec {
        self.gadget = Some(return_address);
        self
    }

    /// The rule for `nr`, if any.
    pub fn rule_for(&self, nr: u32) -> Option<&Rule> {
        self.rules.get(&nr)
    }

    /// Every rule with its x86_64 system call number, in ascending order of number (e.g. to
    /// translate the spec into another filter language, such as an OCI seccomp profile).
    pub fn rules(&self) -> impl Iterator<Item = (u32, &Rule)> {
        self.rules.iter().map(|(&nr, rule)| (nr, rule))
    }

    /// Builds the program.
    pub fn build(&self) -> Result<Filter, FilterError> {
        let enosys = ret(libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32);
        let mut p = vec![
            // 1. The architecture guard.
            load(OFF_ARCH),
            jeq(AUDIT_ARCH_X86_64, 1, 0),
            enosys,
            // 2. x32 numbers (and negative ones).
            load(OFF_NR),
            jge(X32_SYSCALL_BIT, 0, 1),
            enosys,
        ];
        // 3. The gadget.
        if let Some(gadget) = self.gadget {
            p.push(load(OFF_IP));
            p.push(jeq(gadget as u32, 0, 3));
            p.push(load(OFF_IP + 4));
            p.push(jeq((gadget >> 32) as u32, 0, 1));
            p.push(ret(libc::SECCOMP_RET_ALLOW));
            p.push(load(OFF_NR));
        }
        // 4. The rules, behind a range check: most calls a program makes in its hot loops
        // (read, write, poll, close...) have numbers below the first socket call and leave
        // after two comparisons.
        if let (Some((&min, _)), Some((&max, _))) =
            (self.rules.first_key_value(), self.rules.last_key_value())
        {
            p.push(jge(min, 1, 0));
            p.push(ret(libc::SECCOMP_RET_ALLOW));
            p.push(jgt(max, 0, 1));
            p.push(ret(libc::SECCOMP_RET_ALLOW));
        }
        for (&nr, rule) in &self.rules {
            let block = rule_block(nr, rule)?;
            // The block always ends in a return, so skipping it keeps `nr` in the accumulator.
            let skip = u8::try_from(block.len()).expect("rule blocks are bounded by MAX_VALUES");
            p.push(jeq(nr, 0, skip));
            p.extend(block);
        }
        // 5. Everything else.
        p.push(ret(libc::SECCOMP_RET_ALLOW));
        if p.len() > libc::BPF_MAXINSNS as usize {
            return Err(FilterError::TooLong { len: p.len() });
        }
        Ok(Filter { program: p })
    }
}

/// Offsets in `struct seccomp_data` (little-endian: the low half of a u64 comes first).
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_IP: u32 = 8;
const fn off_arg(arg: u8) -> u32 {
    16 + 8 * arg as u32
}

const NOTIFY: u32 = libc::SECCOMP_RET_USER_NOTIF;

/// The code of one rule: entered with the call matched, always ends in a return.
fn rule_block(nr: u32, rule: &Rule) -> Result<Vec<sock_filter>, FilterError> {
    let check_arg = |arg: u8| {
        if arg > 5 {
            Err(FilterError::BadArgument { nr, arg })
        } else {
            Ok(arg)
        }
    };
    Ok(match rule {
        Rule::Allow => vec![ret(libc::SECCOMP_RET_ALLOW)],
        Rule::Notify => vec![ret(NOTIFY)],
        &Rule::Errno(errno) => {
            if !(1..=4095).contains(&errno) {
                return Err(FilterError::BadErrno { nr, errno });
            }
            vec![ret(libc::SECCOMP_RET_ERRNO | errno as u32)]
        }
        Rule::NotifyIfArgIn { arg, values } => {
            let arg = check_arg(*arg)?;
            if values.len() > MAX_VALUES {
                return Err(FilterError::TooManyValues { nr, values: values.len() });
            }
            // ld arg.lo; jeq v0 → notify; ...; jeq vn-1 → notify; ret allow; ret notify.
            let n = values.len();
            let mut b = vec![load(off_arg(arg))];
            for (i, &v) in values.iter().enumerate() {
                b.push(jeq(v, (n - i) as u8, 0));
            }
            b.push(ret(libc::SECCOMP_RET_ALLOW));
            b.push(ret(NOTIFY));
            b
        }
        Rule::NotifyIfArgNonNull { arg } => {
            let arg = check_arg(*arg)?;
            vec![
                load(off_arg(arg)),
                jeq(0, 0, 3), // low half non-zero → notify
                load(off_arg(arg) + 4),
                jeq(0, 0, 1), // high half non-zero → notify
                ret(libc::SECCOMP_RET_ALLOW),
                ret(NOTIFY),
            ]
        }
    })
}

fn load(offset: u32) -> sock_filter {
    sock_filter {
        code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
        jt: 0,
        jf: 0,
        k: offset,
    }
}

fn jump(op: u32, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code: (libc::BPF_JMP | op | libc::BPF_K) as u16, jt, jf, k }
}

fn jeq(k: u32, jt: u8, jf: u8) -> sock_filter {
    jump(libc::BPF_JEQ, k, jt, jf)
}

fn jge(k: u32, jt: u8, jf: u8) -> sock_filter {
    jump(libc::BPF_JGE, k, jt, jf)
}

fn jgt(k: u32, jt: u8, jf: u8) -> sock_filter {
    jump(libc::BPF_JGT, k, jt, jf)
}

fn ret(k: u32) -> sock_filter {
    sock_filter { code: (libc::BPF_RET | libc::BPF_K) as u16, jt: 0, jf: 0, k }
}

#[cfg(test)]
mod tests {
    //! The filter run in a classic-BPF interpreter on synthetic `seccomp_data`: every rule, the
    //! architecture guard, and the program's well-formedness as the kernel checks it.

    use super::*;
    use crate::sys::AUDIT_ARCH_I386;

    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

    /// `struct seccomp_data`, as the filter sees it.
    #[derive(Clone, Copy)]
    struct Data {
        nr: u32,
        arch: u32,
        ip: u64,
        args: [u64; 6],
    }

    impl Data {
        fn bytes(&self) -> [u8; 64] {
            let mut b = [0u8; 64];
            b[0..4].copy_from_slice(&self.nr.to_le_bytes());
            b[4..8].copy_from_slice(&self.arch.to_le_bytes());
            b[8..16].copy_from_slice(&self.ip.to_le_bytes());
            for (i, a) in self.args.iter().enumerate() {
                b[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
            }
            b
        }
    }

    /// An x86_64 call of `sysno` with `args`, from an ordinary address.
    fn call(sysno: Sysno, args: [u64; 6]) -> Data {
        call_nr(sysno.nr(), args)
    }

    fn call_nr(nr: u32, args: [u64; 6]) -> Data {
        Data { nr, arch: AUDIT_ARCH_X86_64, ip: 0x7f12_3456_7890, args }
    }

    /// Checks `prog` as the kernel's `seccomp_check_filter` and `bpf_check_classic` would
    /// (for the instructions we use), then runs it.
    #[track_caller]
    fn run(filter: &Filter, data: &Data) -> u32 {
        let prog = filter.instructions();
        let bytes = data.bytes();
        let mut acc: u32 = 0;
        let mut pc = 0usize;
        let mut steps = 0;
        loop {
            steps += 1;
            assert!(steps <= prog.len(), "classic BPF only jumps forward");
            let ins = prog[pc];
            let code = u32::from(ins.code);
            if code == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS {
                let k = ins.k as usize;
                assert!(k.is_multiple_of(4) && k + 4 <= 64, "load at {k} outside seccomp_data");
                acc = u32::from_le_bytes(bytes[k..k + 4].try_into().unwrap());
                pc += 1;
            } else if code == libc::BPF_RET | libc::BPF_K {
                return ins.k;
            } else if code & 0x07 == libc::BPF_JMP && code & 0x08 == libc::BPF_K {
                let taken = match code & 0xf0 {
                    c if c == libc::BPF_JEQ => acc == ins.k,
                    c if c == libc::BPF_JGE => acc >= ins.k,
                    c if c == libc::BPF_JGT => acc > ins.k,
                    other => panic!("jump op {other:#x} not used by the builder"),
                };
                pc += 1 + usize::from(if taken { ins.jt } else { ins.jf });
            } else {
                panic!("instruction {code:#x} not used by the builder");
            }
            assert!(pc < prog.len(), "jump past the end of the program");
        }
    }

    /// Every jump lands inside the program and the last instruction returns (the kernel's
    /// checks), for every preset.
    #[test]
    fn programs_are_well_formed() {
        for spec in [
            FilterSpec::new(),
            FilterSpec::joyride(),
            FilterSpec::socket_creation(),
            FilterSpec::joyride().allow_from_gadget(0x1234_5678_9abc),
        ] {
            let f = spec.build().unwrap();
            let prog = f.instructions();
            assert_eq!(u32::from(prog[prog.len() - 1].code), libc::BPF_RET | libc::BPF_K);
            for (i, ins) in prog.iter().enumerate() {
                if u32::from(ins.code) & 0x07 == libc::BPF_JMP {
                    assert!(i + 1 + usize::from(ins.jt.max(ins.jf)) < prog.len(), "jump at {i}");
                }
            }
        }
    }

    #[test]
    fn foreign_architectures_get_enosys_for_everything() {
        let f = FilterSpec::joyride().build().unwrap();
        // i386 socketcall(SYS_SOCKET, args): the arguments are in memory, BPF cannot see them.
        let mut socketcall = call_nr(102, [1, 0x1000, 0, 0, 0, 0]);
        socketcall.arch = AUDIT_ARCH_I386;
        assert_eq!(run(&f, &socketcall), ENOSYS);
        // i386 socket(AF_INET, SOCK_STREAM, 0) is number 359 there.
        let mut socket = call_nr(359, [2, 1, 0, 0, 0, 0]);
        socket.arch = AUDIT_ARCH_I386;
        assert_eq!(run(&f, &socket), ENOSYS);
        // i386 getpid (20) too: no 32-bit code runs under the filter.
        let mut getpid = call_nr(20, [0; 6]);
        getpid.arch = AUDIT_ARCH_I386;
        assert_eq!(run(&f, &getpid), ENOSYS);
        // AUDIT_ARCH_AARCH64, for good measure.
        let mut other = call(Sysno::Connect, [3, 0x1000, 16, 0, 0, 0]);
        other.arch = 0xc000_00b7;
        assert_eq!(run(&f, &other), ENOSYS);
        // Even the empty spec keeps the guard.
        assert_eq!(run(&FilterSpec::new().build().unwrap(), &socketcall), ENOSYS);
    }

    #[test]
    fn x32_numbers_get_enosys() {
        let f = FilterSpec::joyride().build().unwrap();
        // x32 socket(AF_INET, ...) and write: same arch value, x32 bit in the number.
        let x32_socket = call_nr(X32_SYSCALL_BIT | Sysno::Socket.nr(), [2, 1, 0, 0, 0, 0]);
        assert_eq!(run(&f, &x32_socket), ENOSYS);
        assert_eq!(run(&f, &call_nr(X32_SYSCALL_BIT | 1, [1, 0, 0, 0, 0, 0])), ENOSYS);
        // x32's own numbering of recvmsg (519) and anything up to the top of the range.
        assert_eq!(run(&f, &call_nr(X32_SYSCALL_BIT | 519, [0; 6])), ENOSYS);
        assert_eq!(run(&f, &call_nr(u32::MAX, [0; 6])), ENOSYS);
        // The largest x86_64 number below the bit is an ordinary (unknown) call: allowed.
        assert_eq!(run(&f, &call_nr(X32_SYSCALL_BIT - 1, [0; 6])), ALLOW);
    }

    #[test]
    fn socket_notifies_only_for_inet_domains() {
        let f = FilterSpec::joyride().build().unwrap();
        let socket = |domain: u64| call(Sysno::Socket, [domain, 1, 0, 0, 0, 0]);
        assert_eq!(run(&f, &socket(libc::AF_INET as u64)), NOTIFY);
        assert_eq!(run(&f, &socket(libc::AF_INET6 as u64)), NOTIFY);
        for domain in [libc::AF_UNIX, libc::AF_NETLINK, libc::AF_PACKET, libc::AF_UNSPEC, 0x7fff] {
            assert_eq!(run(&f, &socket(domain as u64)), ALLOW, "domain {domain}");
        }
        // The kernel reads `int domain`: garbage in the high half is still AF_INET.
        assert_eq!(run(&f, &socket(0xdead_beef_0000_0002)), NOTIFY);
        assert_eq!(run(&f, &socket(0x0000_0002_0000_0001)), ALLOW);
        // socketpair never traps, whatever the domain.
        let pair = call(Sysno::SocketPair, [libc::AF_INET as u64, 1, 0, 0x1000, 0, 0]);
        assert_eq!(run(&f, &pair), ALLOW);
    }

    #[test]
    fn carrier_calls_always_notify() {
        let f = FilterSpec::joyride().build().unwrap();
        for sysno in [
            Sysno::Connect,
            Sysno::Bind,
            Sysno::Listen,
            Sysno::Accept,
            Sysno::Accept4,
            Sysno::GetSockName,
            Sysno::GetPeerName,
            Sysno::SetSockOpt,
            Sysno::GetSockOpt,
            Sysno::Shutdown,
            Sysno::SendMsg,
            Sysno::RecvMsg,
            Sysno::SendMmsg,
            Sysno::RecvMmsg,
        ] {
            assert_eq!(run(&f, &call(sysno, [3, 0, 0, 0, 0, 0])), NOTIFY, "{}", sysno.name());
        }
    }

    #[test]
    fn sendto_and_recvfrom_notify_only_with_an_address() {
        let f = FilterSpec::joyride().build().unwrap();
        for sysno in [Sysno::SendTo, Sysno::RecvFrom] {
            let with = |addr: u64| call(sysno, [3, 0x5000, 100, 0, addr, 16]);
            assert_eq!(run(&f, &with(0)), ALLOW, "{} without an address", sysno.name());
            assert_eq!(run(&f, &with(0x7ffd_1234_5670)), NOTIFY);
            assert_eq!(run(&f, &with(1)), NOTIFY);
            // A pointer whose low half is zero is still a pointer.
            assert_eq!(run(&f, &with(0x0000_7fff_0000_0000)), NOTIFY);
            // Argument 5 (the length) alone does not matter.
            assert_eq!(run(&f, &call(sysno, [3, 0x5000, 100, 0, 0, 16])), ALLOW);
        }
    }

    #[test]
    fn io_uring_setup_gets_enosys_and_the_rest_is_allowed() {
        let f = FilterSpec::joyride().build().unwrap();
        assert_eq!(run(&f, &call(Sysno::IoUringSetup, [8, 0x1000, 0, 0, 0, 0])), ENOSYS);
        for nr in [0, 1, 3, 7, 40, 56, 57, 59, 202, 232, 281, 300, 424, 426, 1000] {
            assert_eq!(run(&f, &call_nr(nr, [3, 0x1000, 16, 0, 0x1000, 0])), ALLOW, "nr {nr}");
        }
    }

    #[test]
    fn socket_creation_traps_nothing_else() {
        let f = FilterSpec::socket_creation().build().unwrap();
        assert_eq!(run(&f, &call(Sysno::Socket, [libc::AF_INET6 as u64, 2, 0, 0, 0, 0])), NOTIFY);
        assert_eq!(run(&f, &call(Sysno::Connect, [3, 0x1000, 16, 0, 0, 0])), ALLOW);
        assert_eq!(run(&f, &call(Sysno::SendTo, [3, 0x1000, 16, 0, 0x1000, 16])), ALLOW);
        assert_eq!(run(&f, &call(Sysno::IoUringSetup, [8, 0x1000, 0, 0, 0, 0])), ENOSYS);
    }

    #[test]
    fn the_gadget_is_exempt_and_nothing_else() {
        let gadget = 0x0000_7f00_dead_b00f_u64;
        let f = FilterSpec::joyride().allow_from_gadget(gadget).build().unwrap();
        let from = |ip: u64, sysno: Sysno, args: [u64; 6]| Data { ip, ..call(sysno, args) };
        let inet = [libc::AF_INET as u64, 1, 0, 0, 0, 0];
        assert_eq!(run(&f, &from(gadget, Sysno::Socket, inet)), ALLOW);
        assert_eq!(run(&f, &from(gadget, Sysno::SendMsg, [3, 0x1000, 0, 0, 0, 0])), ALLOW);
        assert_eq!(run(&f, &from(gadget, Sysno::IoUringSetup, [8, 0, 0, 0, 0, 0])), ALLOW);
        // One byte off, or the same low half in another 4 GiB window: the rules apply.
        assert_eq!(run(&f, &from(gadget + 1, Sysno::Socket, inet)), NOTIFY);
        assert_eq!(run(&f, &from(gadget - 2, Sysno::SendMsg, [3, 0, 0, 0, 0, 0])), NOTIFY);
        assert_eq!(run(&f, &from(gadget ^ (1 << 40), Sysno::Socket, inet)), NOTIFY);
        assert_eq!(run(&f, &from(gadget & 0xffff_ffff, Sysno::Socket, inet)), NOTIFY);
        // The guard comes first: 32-bit or x32 code at the gadget address is still refused.
        let mut i386 = from(gadget, Sysno::Socket, inet);
        i386.arch = AUDIT_ARCH_I386;
        assert_eq!(run(&f, &i386), ENOSYS);
        let x32 =
            Data { nr: X32_SYSCALL_BIT | Sysno::Socket.nr(), ..from(gadget, Sysno::Socket, inet) };
        assert_eq!(run(&f, &x32), ENOSYS);
        // Without the option the gadget address means nothing.
        let plain = FilterSpec::joyride().build().unwrap();
        assert_eq!(run(&plain, &from(gadget, Sysno::Socket, inet)), NOTIFY);
    }

    #[test]
    fn custom_rules() {
        let getppid = 110;
        let f = FilterSpec::new()
            .rule_nr(getppid, Rule::Errno(libc::EXFULL))
            .rule(Sysno::Shutdown, Rule::NotifyIfArgIn { arg: 1, values: vec![0, 2] })
            .rule(Sysno::Socket, Rule::Notify)
            .build()
            .unwrap();
        assert_eq!(run(&f, &call_nr(getppid, [0; 6])), libc::SECCOMP_RET_ERRNO | 54);
        assert_eq!(run(&f, &call(Sysno::Shutdown, [3, 0, 0, 0, 0, 0])), NOTIFY);
        assert_eq!(run(&f, &call(Sysno::Shutdown, [3, 1, 0, 0, 0, 0])), ALLOW);
        assert_eq!(run(&f, &call(Sysno::Shutdown, [3, 2, 0, 0, 0, 0])), NOTIFY);
        assert_eq!(run(&f, &call(Sysno::Socket, [1, 1, 0, 0, 0, 0])), NOTIFY);
        assert_eq!(run(&f, &call(Sysno::Connect, [3, 0, 0, 0, 0, 0])), ALLOW);
        // Overriding a preset's rule, and removing one.
        let f = FilterSpec::joyride()
            .rule(Sysno::IoUringSetup, Rule::Allow)
            .without(Sysno::Connect)
            .build()
            .unwrap();
        assert_eq!(run(&f, &call(Sysno::IoUringSetup, [8, 0, 0, 0, 0, 0])), ALLOW);
        assert_eq!(run(&f, &call(Sysno::Connect, [3, 0, 0, 0, 0, 0])), ALLOW);
        assert_eq!(run(&f, &call(Sysno::Bind, [3, 0, 0, 0, 0, 0])), NOTIFY);
    }

    #[test]
    fn a_rule_with_many_values_matches_each() {
        let values: Vec<u32> = (100..100 + MAX_VALUES as u32).collect();
        let f = FilterSpec::new()
            .rule(Sysno::Socket, Rule::NotifyIfArgIn { arg: 2, values: values.clone() })
            .build()
            .unwrap();
        for v in [99, 100, 101, 200, 100 + MAX_VALUES as u64 - 1, 100 + MAX_VALUES as u64] {
            let expected = if values.contains(&(v as u32)) { NOTIFY } else { ALLOW };
            assert_eq!(run(&f, &call(Sysno::Socket, [2, 1, v, 0, 0, 0])), expected, "value {v}");
        }
    }

    #[test]
    fn bad_specs_are_refused() {
        let build = |rule| FilterSpec::new().rule(Sysno::Listen, rule).build().unwrap_err();
        let nr = Sysno::Listen.nr();
        assert_eq!(build(Rule::Errno(0)), FilterError::BadErrno { nr, errno: 0 });
        assert_eq!(build(Rule::Errno(4096)), FilterError::BadErrno { nr, errno: 4096 });
        assert_eq!(build(Rule::Errno(-1)), FilterError::BadErrno { nr, errno: -1 });
        assert_eq!(
            build(Rule::NotifyIfArgNonNull { arg: 6 }),
            FilterError::BadArgument { nr, arg: 6 }
        );
        assert_eq!(
            build(Rule::NotifyIfArgIn { arg: 0, values: vec![1; MAX_VALUES + 1] }),
            FilterError::TooManyValues { nr, values: MAX_VALUES + 1 }
        );
        let mut spec = FilterSpec::new();
        for nr in 0..1000 {
            spec = spec.rule_nr(nr, Rule::NotifyIfArgNonNull { arg: 1 });
        }
        assert!(matches!(spec.build(), Err(FilterError::TooLong { .. })));
    }
}
