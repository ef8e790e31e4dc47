//! The system calls joyride traps, by number and name, and their arguments decoded from a
//! notification's raw registers.
//!
//! Decoding mirrors the kernel's own prototypes (net/socket.c): `int` arguments keep only their
//! low 32 bits — the kernel truncates them too, so `connect(0x1_0000_0003, ..)` is a connect on
//! fd 3 — pointers and `size_t` lengths keep all 64. Pointers are addresses in the *target*;
//! read them with [`crate::Notification::read`] and friends.

/// The x86_64 system calls this crate knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Sysno {
    /// socket(2)
    Socket,
    /// socketpair(2) (never trapped, named for completeness)
    SocketPair,
    /// connect(2)
    Connect,
    /// bind(2)
    Bind,
    /// listen(2)
    Listen,
    /// accept(2)
    Accept,
    /// accept4(2)
    Accept4,
    /// getsockname(2)
    GetSockName,
    /// getpeername(2)
    GetPeerName,
    /// setsockopt(2)
    SetSockOpt,
    /// getsockopt(2)
    GetSockOpt,
    /// shutdown(2)
    Shutdown,
    /// sendto(2) (send(2) in glibc is sendto with a NULL address)
    SendTo,
    /// recvfrom(2) (recv(2) in glibc is recvfrom with a NULL address)
    RecvFrom,
    /// sendmsg(2)
    SendMsg,
    /// recvmsg(2)
    RecvMsg,
    /// sendmmsg(2)
    SendMmsg,
    /// recvmmsg(2)
    RecvMmsg,
    /// io_uring_setup(2)
    IoUringSetup,
}

impl Sysno {
    /// Every known call.
    pub const ALL: [Sysno; 19] = [
        Sysno::Socket,
        Sysno::SocketPair,
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
        Sysno::SendTo,
        Sysno::RecvFrom,
        Sysno::SendMsg,
        Sysno::RecvMsg,
        Sysno::SendMmsg,
        Sysno::RecvMmsg,
        Sysno::IoUringSetup,
    ];

    /// The x86_64 system call number.
    pub const fn nr(self) -> u32 {
        (match self {
            Sysno::Socket => libc::SYS_socket,
            Sysno::SocketPair => libc::SYS_socketpair,
            Sysno::Connect => libc::SYS_connect,
            Sysno::Bind => libc::SYS_bind,
            Sysno::Listen => libc::SYS_listen,
            Sysno::Accept => libc::SYS_accept,
            Sysno::Accept4 => libc::SYS_accept4,
            Sysno::GetSockName => libc::SYS_getsockname,
            Sysno::GetPeerName => libc::SYS_getpeername,
            Sysno::SetSockOpt => libc::SYS_setsockopt,
            Sysno::GetSockOpt => libc::SYS_getsockopt,
            Sysno::Shutdown => libc::SYS_shutdown,
            Sysno::SendTo => libc::SYS_sendto,
            Sysno::RecvFrom => libc::SYS_recvfrom,
            Sysno::SendMsg => libc::SYS_sendmsg,
            Sysno::RecvMsg => libc::SYS_recvmsg,
            Sysno::SendMmsg => libc::SYS_sendmmsg,
            Sysno::RecvMmsg => libc::SYS_recvmmsg,
            Sysno::IoUringSetup => libc::SYS_io_uring_setup,
        }) as u32
    }

    /// The call with x86_64 number `nr`, if this crate knows it.
    pub fn from_nr(nr: u32) -> Option<Sysno> {
        Sysno::ALL.into_iter().find(|s| s.nr() == nr)
    }

    /// The name, as in the manual pages and strace (for logs such as audit's JSON lines).
    pub const fn name(self) -> &'static str {
        match self {
            Sysno::Socket => "socket",
            Sysno::SocketPair => "socketpair",
            Sysno::Connect => "connect",
            Sysno::Bind => "bind",
            Sysno::Listen => "listen",
            Sysno::Accept => "accept",
            Sysno::Accept4 => "accept4",
            Sysno::GetSockName => "getsockname",
            Sysno::GetPeerName => "getpeername",
            Sysno::SetSockOpt => "setsockopt",
            Sysno::GetSockOpt => "getsockopt",
            Sysno::Shutdown => "shutdown",
            Sysno::SendTo => "sendto",
            Sysno::RecvFrom => "recvfrom",
            Sysno::SendMsg => "sendmsg",
            Sysno::RecvMsg => "recvmsg",
            Sysno::SendMmsg => "sendmmsg",
            Sysno::RecvMmsg => "recvmmsg",
            Sysno::IoUringSetup => "io_uring_setup",
        }
    }
}

impl std::fmt::Display for Sysno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A trapped call with its arguments decoded. Fields ending in `_ptr` are addresses in the
/// target's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syscall {
    /// socket(domain, type | flags, protocol)
    Socket {
        /// AF_INET, AF_INET6, ...
        domain: i32,
        /// The type without SOCK_NONBLOCK and SOCK_CLOEXEC (SOCK_STREAM, SOCK_DGRAM, ... plus
        /// any bits the kernel would refuse with EINVAL).
        ty: i32,
        /// SOCK_NONBLOCK was given.
        nonblock: bool,
        /// SOCK_CLOEXEC was given.
        cloexec: bool,
        /// The protocol (0, IPPROTO_TCP, ...).
        protocol: i32,
    },
    /// socketpair(domain, type | flags, protocol, sv)
    SocketPair {
        /// The domain.
        domain: i32,
        /// The type without SOCK_NONBLOCK and SOCK_CLOEXEC.
        ty: i32,
        /// SOCK_NONBLOCK was given.
        nonblock: bool,
        /// SOCK_CLOEXEC was given.
        cloexec: bool,
        /// The protocol.
        protocol: i32,
        /// Where the two descriptors go (`int[2]`).
        sv_ptr: u64,
    },
    /// connect(fd, addr, addrlen)
    Connect {
        /// The socket.
        fd: i32,
        /// The `struct sockaddr`.
        addr_ptr: u64,
        /// Its length.
        addr_len: i32,
    },
    /// bind(fd, addr, addrlen)
    Bind {
        /// The socket.
        fd: i32,
        /// The `struct sockaddr`.
        addr_ptr: u64,
        /// Its length.
        addr_len: i32,
    },
    /// listen(fd, backlog)
    Listen {
        /// The socket.
        fd: i32,
        /// The backlog.
        backlog: i32,
    },
    /// accept(fd, addr, addrlen)
    Accept {
        /// The listening socket.
        fd: i32,
        /// Where the peer's address goes (may be 0).
        addr_ptr: u64,
        /// The `socklen_t` in/out length (may be 0).
        len_ptr: u64,
    },
    /// accept4(fd, addr, addrlen, flags)
    Accept4 {
        /// The listening socket.
        fd: i32,
        /// Where the peer's address goes (may be 0).
        addr_ptr: u64,
        /// The `socklen_t` in/out length (may be 0).
        len_ptr: u64,
        /// SOCK_NONBLOCK | SOCK_CLOEXEC.
        flags: i32,
    },
    /// getsockname(fd, addr, addrlen)
    GetSockName {
        /// The socket.
        fd: i32,
        /// Where the address goes.
        addr_ptr: u64,
        /// The `socklen_t` in/out length.
        len_ptr: u64,
    },
    /// getpeername(fd, addr, addrlen)
    GetPeerName {
        /// The socket.
        fd: i32,
        /// Where the address goes.
        addr_ptr: u64,
        /// The `socklen_t` in/out length.
        len_ptr: u64,
    },
    /// setsockopt(fd, level, name, value, len)
    SetSockOpt {
        /// The socket.
        fd: i32,
        /// SOL_SOCKET, IPPROTO_TCP, ...
        level: i32,
        /// The option.
        name: i32,
        /// The value.
        value_ptr: u64,
        /// Its length.
        len: i32,
    },
    /// getsockopt(fd, level, name, value, len)
    GetSockOpt {
        /// The socket.
        fd: i32,
        /// SOL_SOCKET, IPPROTO_TCP, ...
        level: i32,
        /// The option.
        name: i32,
        /// Where the value goes.
        value_ptr: u64,
        /// The `socklen_t` in/out length.
        len_ptr: u64,
    },
    /// shutdown(fd, how)
    Shutdown {
        /// The socket.
        fd: i32,
        /// SHUT_RD, SHUT_WR or SHUT_RDWR.
        how: i32,
    },
    /// sendto(fd, buf, len, flags, addr, addrlen)
    SendTo {
        /// The socket.
        fd: i32,
        /// The data.
        buf_ptr: u64,
        /// Its length.
        len: u64,
        /// MSG_* flags.
        flags: u32,
        /// The destination (0 for none).
        addr_ptr: u64,
        /// Its length.
        addr_len: i32,
    },
    /// recvfrom(fd, buf, len, flags, addr, addrlen)
    RecvFrom {
        /// The socket.
        fd: i32,
        /// Where the data goes.
        buf_ptr: u64,
        /// Its capacity.
        len: u64,
        /// MSG_* flags.
        flags: u32,
        /// Where the source address goes (0 for none).
        addr_ptr: u64,
        /// The `socklen_t` in/out length.
        len_ptr: u64,
    },
    /// sendmsg(fd, msg, flags)
    SendMsg {
        /// The socket.
        fd: i32,
        /// The `struct msghdr`.
        msg_ptr: u64,
        /// MSG_* flags.
        flags: u32,
    },
    /// recvmsg(fd, msg, flags)
    RecvMsg {
        /// The socket.
        fd: i32,
        /// The `struct msghdr`.
        msg_ptr: u64,
        /// MSG_* flags.
        flags: u32,
    },
    /// sendmmsg(fd, msgvec, vlen, flags)
    SendMmsg {
        /// The socket.
        fd: i32,
        /// The `struct mmsghdr` array.
        vec_ptr: u64,
        /// Its length.
        vlen: u32,
        /// MSG_* flags.
        flags: u32,
    },
    /// recvmmsg(fd, msgvec, vlen, flags, timeout)
    RecvMmsg {
        /// The socket.
        fd: i32,
        /// The `struct mmsghdr` array.
        vec_ptr: u64,
        /// Its length.
        vlen: u32,
        /// MSG_* flags.
        flags: u32,
        /// The `struct timespec` (0 for none).
        timeout_ptr: u64,
    },
    /// io_uring_setup(entries, params)
    IoUringSetup {
        /// Submission queue entries.
        entries: u32,
        /// The `struct io_uring_params`.
        params_ptr: u64,
    },
    /// A call this crate does not decode (or one from another ABI): its raw number.
    Other {
        /// The number as the notification gave it.
        nr: i32,
    },
}

/// The low 32 bits, as the kernel reads an `int` argument.
fn int(arg: u64) -> i32 {
    arg as u32 as i32
}

/// The low 32 bits, as the kernel reads an `unsigned int` argument.
fn uint(arg: u64) -> u32 {
    arg as u32
}

/// Splits SOCK_NONBLOCK and SOCK_CLOEXEC out of a socket type.
fn split_type(ty: i32) -> (i32, bool, bool) {
    let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    (ty & !flags, ty & libc::SOCK_NONBLOCK != 0, ty & libc::SOCK_CLOEXEC != 0)
}

impl Syscall {
    /// Decodes x86_64 call `nr` with raw arguments `args`. Callers pass only x86_64 calls (the
    /// filter refuses every other ABI before it notifies).
    pub fn decode(nr: i32, args: [u64; 6]) -> Syscall {
        let Some(sysno) = u32::try_from(nr).ok().and_then(Sysno::from_nr) else {
            return Syscall::Other { nr };
        };
        let [a0, a1, a2, a3, a4, a5] = args;
        match sysno {
            Sysno::Socket => {
                let (ty, nonblock, cloexec) = split_type(int(a1));
                Syscall::Socket { domain: int(a0), ty, nonblock, cloexec, protocol: int(a2) }
            }
            Sysno::SocketPair => {
                let (ty, nonblock, cloexec) = split_type(int(a1));
                Syscall::SocketPair {
                    domain: int(a0),
                    ty,
                    nonblock,
                    cloexec,
                    protocol: int(a2),
                    sv_ptr: a3,
                }
            }
            Sysno::Connect => Syscall::Connect { fd: int(a0), addr_ptr: a1, addr_len: int(a2) },
            Sysno::Bind => Syscall::Bind { fd: int(a0), addr_ptr: a1, addr_len: int(a2) },
            Sysno::Listen => Syscall::Listen { fd: int(a0), backlog: int(a1) },
            Sysno::Accept => Syscall::Accept { fd: int(a0), addr_ptr: a1, len_ptr: a2 },
            Sysno::Accept4 => {
                Syscall::Accept4 { fd: int(a0), addr_ptr: a1, len_ptr: a2, flags: int(a3) }
            }
            Sysno::GetSockName => Syscall::GetSockName { fd: int(a0), addr_ptr: a1, len_ptr: a2 },
            Sysno::GetPeerName => Syscall::GetPeerName { fd: int(a0), addr_ptr: a1, len_ptr: a2 },
            Sysno::SetSockOpt => Syscall::SetSockOpt {
                fd: int(a0),
                level: int(a1),
                name: int(a2),
                value_ptr: a3,
                len: int(a4),
            },
            Sysno::GetSockOpt => Syscall::GetSockOpt {
                fd: int(a0),
                level: int(a1),
                name: int(a2),
                value_ptr: a3,
                len_ptr: a4,
            },
            Sysno::Shutdown => Syscall::Shutdown { fd: int(a0), how: int(a1) },
            Sysno::SendTo => Syscall::SendTo {
                fd: int(a0),
                buf_ptr: a1,
                len: a2,
                flags: uint(a3),
                addr_ptr: a4,
                addr_len: int(a5),
            },
            Sysno::RecvFrom => Syscall::RecvFrom {
                fd: int(a0),
                buf_ptr: a1,
                len: a2,
                flags: uint(a3),
                addr_ptr: a4,
                len_ptr: a5,
            },
            Sysno::SendMsg => Syscall::SendMsg { fd: int(a0), msg_ptr: a1, flags: uint(a2) },
            Sysno::RecvMsg => Syscall::RecvMsg { fd: int(a0), msg_ptr: a1, flags: uint(a2) },
            Sysno::SendMmsg => {
                Syscall::SendMmsg { fd: int(a0), vec_ptr: a1, vlen: uint(a2), flags: uint(a3) }
            }
            Sysno::RecvMmsg => Syscall::RecvMmsg {
                fd: int(a0),
                vec_ptr: a1,
                vlen: uint(a2),
                flags: uint(a3),
                timeout_ptr: a4,
            },
            Sysno::IoUringSetup => Syscall::IoUringSetup { entries: uint(a0), params_ptr: a1 },
        }
    }

    /// Which call this is, if the crate knows it.
    pub fn sysno(&self) -> Option<Sysno> {
        Some(match self {
            Syscall::Socket { .. } => Sysno::Socket,
            Syscall::SocketPair { .. } => Sysno::SocketPair,
            Syscall::Connect { .. } => Sysno::Connect,
            Syscall::Bind { .. } => Sysno::Bind,
            Syscall::Listen { .. } => Sysno::Listen,
            Syscall::Accept { .. } => Sysno::Accept,
            Syscall::Accept4 { .. } => Sysno::Accept4,
            Syscall::GetSockName { .. } => Sysno::GetSockName,
            Syscall::GetPeerName { .. } => Sysno::GetPeerName,
            Syscall::SetSockOpt { .. } => Sysno::SetSockOpt,
            Syscall::GetSockOpt { .. } => Sysno::GetSockOpt,
            Syscall::Shutdown { .. } => Sysno::Shutdown,
            Syscall::SendTo { .. } => Sysno::SendTo,
            Syscall::RecvFrom { .. } => Sysno::RecvFrom,
            Syscall::SendMsg { .. } => Sysno::SendMsg,
            Syscall::RecvMsg { .. } => Sysno::RecvMsg,
            Syscall::SendMmsg { .. } => Sysno::SendMmsg,
            Syscall::RecvMmsg { .. } => Sysno::RecvMmsg,
            Syscall::IoUringSetup { .. } => Sysno::IoUringSetup,
            Syscall::Other { .. } => return None,
        })
    }

    /// The call's name ("socket", "connect", ...; "unknown" for [`Syscall::Other`], whose
    /// number the caller logs instead).
    pub fn name(&self) -> &'static str {
        self.sysno().map_or("unknown", Sysno::name)
    }

    /// The socket descriptor the call operates on, for the calls that take one.
    pub fn fd(&self) -> Option<i32> {
        match *self {
            Syscall::Connect { fd, .. }
            | Syscall::Bind { fd, .. }
            | Syscall::Listen { fd, .. }
            | Syscall::Accept { fd, .. }
            | Syscall::Accept4 { fd, .. }
            | Syscall::GetSockName { fd, .. }
            | Syscall::GetPeerName { fd, .. }
            | Syscall::SetSockOpt { fd, .. }
            | Syscall::GetSockOpt { fd, .. }
            | Syscall::Shutdown { fd, .. }
            | Syscall::SendTo { fd, .. }
            | Syscall::RecvFrom { fd, .. }
            | Syscall::SendMsg { fd, .. }
            | Syscall::RecvMsg { fd, .. }
            | Syscall::SendMmsg { fd, .. }
            | Syscall::RecvMmsg { fd, .. } => Some(fd),
            Syscall::Socket { .. }
            | Syscall::SocketPair { .. }
            | Syscall::IoUringSetup { .. }
            | Syscall::Other { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names_round_trip() {
        for sysno in Sysno::ALL {
            assert_eq!(Sysno::from_nr(sysno.nr()), Some(sysno));
            let decoded = Syscall::decode(sysno.nr() as i32, [0; 6]);
            assert_eq!(decoded.sysno(), Some(sysno));
            assert_eq!(decoded.name(), sysno.name());
        }
        assert_eq!(Sysno::Socket.nr(), 41);
        assert_eq!(Sysno::Accept4.nr(), 288);
        assert_eq!(Sysno::IoUringSetup.nr(), 425);
        assert_eq!(Sysno::from_nr(0), None);
        assert_eq!(Syscall::decode(39, [0; 6]), Syscall::Other { nr: 39 });
        assert_eq!(Syscall::decode(-1, [0; 6]).name(), "unknown");
    }

    #[test]
    fn socket_type_flags_are_split_out() {
        let ty = (libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) as u64;
        assert_eq!(
            Syscall::decode(41, [libc::AF_INET6 as u64, ty, 6, 0, 0, 0]),
            Syscall::Socket {
                domain: libc::AF_INET6,
                ty: libc::SOCK_STREAM,
                nonblock: true,
                cloexec: true,
                protocol: 6
            }
        );
        assert_eq!(
            Syscall::decode(41, [2, libc::SOCK_DGRAM as u64, 0, 0, 0, 0]),
            Syscall::Socket {
                domain: 2,
                ty: libc::SOCK_DGRAM,
                nonblock: false,
                cloexec: false,
                protocol: 0
            }
        );
    }

    #[test]
    fn int_arguments_keep_their_low_half_and_pointers_all_of_it() {
        let args = [0xffff_ffff_0000_0003, 0x7ffd_0000_1000, 0x1_0000_0010, 0, 0, 0];
        assert_eq!(
            Syscall::decode(42, args),
            Syscall::Connect { fd: 3, addr_ptr: 0x7ffd_0000_1000, addr_len: 16 }
        );
        // A negative int stays negative (the kernel sees -1 and refuses it).
        assert_eq!(
            Syscall::decode(42, [3, 0x1000, 0xffff_ffff, 0, 0, 0]),
            Syscall::Connect { fd: 3, addr_ptr: 0x1000, addr_len: -1 }
        );
        let sendto =
            Syscall::decode(44, [5, 0x2000, 1 << 33, libc::MSG_NOSIGNAL as u64, 0x3000, 28]);
        assert_eq!(
            sendto,
            Syscall::SendTo {
                fd: 5,
                buf_ptr: 0x2000,
                len: 1 << 33,
                flags: libc::MSG_NOSIGNAL as u32,
                addr_ptr: 0x3000,
                addr_len: 28
            }
        );
        assert_eq!(sendto.fd(), Some(5));
        assert_eq!(
            Syscall::decode(288, [7, 0, 0, libc::SOCK_CLOEXEC as u64, 0, 0]),
            Syscall::Accept4 { fd: 7, addr_ptr: 0, len_ptr: 0, flags: libc::SOCK_CLOEXEC }
        );
        assert_eq!(
            Syscall::decode(299, [4, 0x10, 8, 0, 0x20, 0]),
            Syscall::RecvMmsg { fd: 4, vec_ptr: 0x10, vlen: 8, flags: 0, timeout_ptr: 0x20 }
        );
    }
}
