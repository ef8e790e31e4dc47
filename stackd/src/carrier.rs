//! Carriers: the AF_UNIX socket pairs through which a program's socket data moves when the
//! program holds an ordinary descriptor instead of a kernel socket (DESIGN.md, "Trap path").
//!
//! The daemon keeps one end, non-blocking and watched by its event loop; the program gets the
//! other through SCM_RIGHTS and reads, writes, polls, dups and forks it natively. This module
//! owns the system-call side of that: making pairs (a stream for TCP, a seqpacket for UDP, so
//! datagram boundaries survive), naming the daemon's end so a carrier can later be recognised
//! from the program's end alone, the *prefill* that keeps an unconnected TCP socket's carrier
//! from polling writable, and vectored reads and writes straight into and out of the engine's
//! buffers. What the bytes mean is `crate::sockets`' business.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    self, sockopt, AddressFamily, MsgFlags, Shutdown, SockFlag, SockType, UnixAddr,
};

/// The daemon's end of a carrier.
#[derive(Debug)]
pub struct Carrier {
    fd: OwnedFd,
    /// The abstract address autobound to this end: the program's end reports it as its peer
    /// name, which is how [`identify`] recognises a carrier handed back to the daemon.
    name: Vec<u8>,
    /// The inode of the program's end, to find it again when the connection is reset.
    program_inode: u64,
    /// The inode of this end.
    inode: u64,
}

/// The outcome of moving bytes through a carrier without blocking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// This many bytes moved (never 0).
    Moved(usize),
    /// Nothing to read, or no room to write, now.
    WouldBlock,
    /// The program shut down its writing side, or closed every descriptor of its end.
    EndOfStream,
    /// The carrier failed with this errno (ECONNRESET: the program closed it with data unread).
    Failed(i32),
}

impl Carrier {
    /// A carrier for a TCP socket: a stream pair.
    pub fn stream() -> io::Result<(Carrier, OwnedFd)> {
        Carrier::pair(SockType::Stream)
    }

    /// A carrier for a UDP socket: a seqpacket pair (one datagram per message).
    pub fn datagram() -> io::Result<(Carrier, OwnedFd)> {
        Carrier::pair(SockType::SeqPacket)
    }

    fn pair(kind: SockType) -> io::Result<(Carrier, OwnedFd)> {
        // The program's end is created blocking: O_NONBLOCK belongs to the open file, which the
        // program shares, and a fresh socket is blocking unless the program asks otherwise.
        let (ours, theirs) =
            socket::socketpair(AddressFamily::Unix, kind, None, SockFlag::SOCK_CLOEXEC)?;
        set_nonblocking(&ours)?;
        socket::bind(ours.as_raw_fd(), &UnixAddr::new_unnamed())?;
        let name = socket::getsockname::<UnixAddr>(ours.as_raw_fd())?
            .as_abstract()
            .map(<[u8]>::to_vec)
            .ok_or_else(|| io::Error::other("autobind gave no abstract name"))?;
        let program_inode = nix::sys::stat::fstat(&theirs)?.st_ino;
        let inode = nix::sys::stat::fstat(&ours)?.st_ino;
        Ok((Carrier { fd: ours, name, program_inode, inode }, theirs))
    }

    /// The inode of the program's end (what `/proc/net/unix` and `fstat` show for it).
    pub fn program_inode(&self) -> u64 {
        self.program_inode
    }

    /// The inode of the daemon's end.
    pub fn inode(&self) -> u64 {
        self.inode
    }

    /// Gives up the daemon's end, blocking again as a fresh socket is, for a program to hold:
    /// a spliced connection's far end goes to the program that accepts it.
    pub fn hand_over(self) -> io::Result<OwnedFd> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let flags = OFlag::from_bits_truncate(fcntl(&self.fd, FcntlArg::F_GETFL)?);
        fcntl(&self.fd, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK))?;
        Ok(self.fd)
    }

    /// Makes the program read ECONNRESET, not end-of-stream, once this end is dropped
    /// (reaching its end through the processes `pids` and their descendants).
    pub fn reset_program_end(&self, pids: &[u32]) -> bool {
        crate::procfd::poke_program_end(self.program_inode, pids)
    }

    /// The abstract name of the daemon's end.
    pub fn name(&self) -> &[u8] {
        &self.name
    }

    /// The descriptor, for the event loop to watch.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Fills the program's end's send queue until the kernel refuses more, so that it polls
    /// not writable (DESIGN.md, "Prefill"): a TCP socket cannot be written before it connects.
    /// The bytes wait in the daemon's receive queue; [`Carrier::discard`] drains them when the
    /// socket connects, which wakes every poller of the program's end. Returns how many.
    pub fn prefill(&self, program_end: BorrowedFd<'_>) -> io::Result<usize> {
        const CHUNK: [u8; 16384] = [0; 16384];
        let mut filled = 0;
        // The kernel's send buffer bounds this (about 230 KiB by default); the cap is a guard.
        while filled < 4 << 20 {
            match socket::send(
                program_end.as_raw_fd(),
                &CHUNK,
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            ) {
                Ok(sent) => filled += sent,
                Err(Errno::EAGAIN) => return Ok(filled),
                Err(Errno::EINTR) => {}
                Err(errno) => return Err(errno.into()),
            }
        }
        Ok(filled)
    }

    /// Reads and throws away up to `len` bytes (prefill, or what the program wrote to a socket
    /// that cannot carry it). Returns how many went.
    pub fn discard(&self, len: usize, scratch: &mut [u8]) -> Transfer {
        let mut discarded = 0;
        while discarded < len {
            let want = (len - discarded).min(scratch.len());
            match self.read_into(&mut scratch[..want], &mut []) {
                Transfer::Moved(n) => discarded += n,
                other if discarded == 0 => return other,
                _ => break,
            }
        }
        Transfer::Moved(discarded)
    }

    /// Reads what the program wrote into two slices (the engine's free send-buffer space).
    pub fn read_into(&self, first: &mut [u8], second: &mut [u8]) -> Transfer {
        if first.is_empty() && second.is_empty() {
            return Transfer::WouldBlock;
        }
        let mut iov = [io::IoSliceMut::new(first), io::IoSliceMut::new(second)];
        loop {
            match socket::recvmsg::<()>(self.raw_fd(), &mut iov, None, MsgFlags::MSG_DONTWAIT) {
                Ok(message) if message.bytes == 0 => return Transfer::EndOfStream,
                Ok(message) => return Transfer::Moved(message.bytes),
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Transfer::WouldBlock,
                Err(errno) => return Transfer::Failed(errno as i32),
            }
        }
    }

    /// Copies what the program wrote into two slices without taking it (the ring data plane
    /// looks before it takes: bytes after a writer's switch to its ring are doorbells).
    pub fn peek_into(&self, first: &mut [u8], second: &mut [u8]) -> Transfer {
        if first.is_empty() && second.is_empty() {
            return Transfer::WouldBlock;
        }
        let mut iov = [io::IoSliceMut::new(first), io::IoSliceMut::new(second)];
        let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_PEEK;
        loop {
            match socket::recvmsg::<()>(self.raw_fd(), &mut iov, None, flags) {
                Ok(message) if message.bytes == 0 => return Transfer::EndOfStream,
                Ok(message) => return Transfer::Moved(message.bytes),
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Transfer::WouldBlock,
                Err(errno) => return Transfer::Failed(errno as i32),
            }
        }
    }

    /// Bytes the program wrote that wait in this end's receive queue (exact for a stream).
    pub fn queued_from_program(&self) -> io::Result<usize> {
        unix_receive_queue(self.inode).map(|n| n as usize)
    }

    /// Bytes this end wrote that the program has not read yet (exact for a stream), asked of
    /// the kernel's socket diagnostics by the program end's inode.
    pub fn unread_by_program(&self) -> io::Result<usize> {
        unix_receive_queue(self.program_inode).map(|n| n as usize)
    }

    /// Whether the program has read every byte this end wrote: nothing of ours is still
    /// charged to this end (SIOCOUTQ, one system call; unlike [`unread_by_program`], which
    /// counts the bytes through socket diagnostics).
    ///
    /// [`unread_by_program`]: Carrier::unread_by_program
    pub fn program_read_all(&self) -> bool {
        queue_length(self.raw_fd(), libc::TIOCOUTQ).is_ok_and(|n| n == 0)
    }

    /// Whether every byte the program wrote has been taken from this end (SIOCINQ).
    pub fn nothing_from_program(&self) -> bool {
        queue_length(self.raw_fd(), libc::FIONREAD).is_ok_and(|n| n == 0)
    }

    /// Writes two slices (the engine's received data, or a header and a datagram) for the
    /// program to read.
    pub fn write_from(&self, first: &[u8], second: &[u8]) -> Transfer {
        if first.is_empty() && second.is_empty() {
            return Transfer::WouldBlock;
        }
        let iov = [io::IoSlice::new(first), io::IoSlice::new(second)];
        loop {
            match socket::sendmsg::<()>(
                self.raw_fd(),
                &iov,
                &[],
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(sent) => return Transfer::Moved(sent),
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN | Errno::ENOBUFS) => return Transfer::WouldBlock,
                Err(Errno::EPIPE) => return Transfer::EndOfStream,
                Err(errno) => return Transfer::Failed(errno as i32),
            }
        }
    }

    /// Receives one whole datagram (seqpacket carriers) into `buf`. A zero-length datagram is
    /// `Received(0)`; the program's close is `Closed`.
    pub fn receive_datagram(&self, buf: &mut [u8]) -> Datagram {
        loop {
            let mut iov = [io::IoSliceMut::new(buf)];
            match socket::recvmsg::<()>(self.raw_fd(), &mut iov, None, MsgFlags::MSG_DONTWAIT) {
                Ok(message) if message.flags.contains(MsgFlags::MSG_TRUNC) => {
                    return Datagram::Truncated
                }
                // A seqpacket peer's close also reads as 0 bytes: tell the two apart by asking
                // whether the socket hung up.
                Ok(message) if message.bytes == 0 && self.hung_up() => return Datagram::Closed,
                Ok(message) => return Datagram::Received(message.bytes),
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Datagram::Empty,
                Err(_) => return Datagram::Closed,
            }
        }
    }

    /// Shuts down the daemon's writing side: the program reads end-of-stream after the data
    /// already queued.
    pub fn finish_writing(&self) {
        // ENOTCONN only if the program is already gone, which the read side will notice.
        let _ = socket::shutdown(self.raw_fd(), Shutdown::Write);
    }

    /// True once the program's end is closed (or both directions are shut down).
    pub fn hung_up(&self) -> bool {
        let mut fds = [PollFd::new(std::os::fd::AsFd::as_fd(&self.fd), PollFlags::empty())];
        matches!(nix::poll::poll(&mut fds, PollTimeout::ZERO), Ok(1))
            && fds[0].revents().is_some_and(|events| events.contains(PollFlags::POLLHUP))
    }
}

/// A queue length a socket ioctl reports: SIOCINQ (`FIONREAD`) or SIOCOUTQ (`TIOCOUTQ`).
#[allow(unsafe_code)]
fn queue_length(fd: RawFd, request: libc::Ioctl) -> io::Result<usize> {
    let mut length: libc::c_int = 0;
    // SAFETY: both requests write one int through the pointer, which points to ours; a bad
    // descriptor is an error, not undefined behaviour.
    if unsafe { libc::ioctl(fd, request, &mut length) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(length).unwrap_or(0))
}

/// What [`Carrier::receive_datagram`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datagram {
    /// A datagram of this many bytes.
    Received(usize),
    /// A datagram larger than the buffer (it is gone).
    Truncated,
    /// Nothing waiting.
    Empty,
    /// The program's end is closed.
    Closed,
}

/// The daemon's name for the carrier whose program end is `fd`, if `fd` is one of this
/// daemon's carriers: the peer of `fd` must be an abstract unix address, bound by a socket
/// this very process created (SO_PEERCRED), so a look-alike made elsewhere (another network
/// namespace can bind the same abstract name) does not pass.
pub fn identify(fd: BorrowedFd<'_>) -> Option<Vec<u8>> {
    let kind = socket::getsockopt(&fd, sockopt::SockType).ok()?;
    if !matches!(kind, SockType::Stream | SockType::SeqPacket) {
        return None;
    }
    let credentials = socket::getsockopt(&fd, sockopt::PeerCredentials).ok()?;
    if u32::try_from(credentials.pid()).ok()? != std::process::id() {
        return None;
    }
    let peer = socket::getpeername::<UnixAddr>(fd.as_raw_fd()).ok()?;
    peer.as_abstract().map(<[u8]>::to_vec)
}

/// The bytes waiting in the receive queue of the unix socket with inode `inode` (in this
/// network namespace), through NETLINK_SOCK_DIAG: `ss -x`'s Recv-Q, the only way to see the
/// queue of an end this process does not hold.
fn unix_receive_queue(inode: u64) -> io::Result<u32> {
    use nix::sys::socket::{NetlinkAddr, SockProtocol};
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const UDIAG_SHOW_RQLEN: u32 = 0x10;
    const UNIX_DIAG_RQLEN: u16 = 4;
    const NLMSG_ERROR: u16 = 2;
    const HEADER: usize = 16;
    // struct unix_diag_req: family, protocol, pad (u16), states, inode, show, cookie[2].
    let mut request = Vec::with_capacity(HEADER + 24);
    request.extend_from_slice(&((HEADER + 24) as u32).to_ne_bytes());
    request.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    request.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    request.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    request.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel's
    request.extend_from_slice(&[libc::AF_UNIX as u8, 0, 0, 0]);
    request.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    let inode = u32::try_from(inode).map_err(|_| io::Error::other("inode beyond 32 bits"))?;
    request.extend_from_slice(&inode.to_ne_bytes());
    request.extend_from_slice(&UDIAG_SHOW_RQLEN.to_ne_bytes());
    request.extend_from_slice(&[0xff; 8]); // no cookie
    let netlink = socket::socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )?;
    socket::sendto(netlink.as_raw_fd(), &request, &NetlinkAddr::new(0, 0), MsgFlags::empty())?;
    let mut reply = [0u8; 512];
    let n = socket::recv(netlink.as_raw_fd(), &mut reply, MsgFlags::empty())?;
    let reply = &reply[..n];
    let field = |at: usize, len: usize| reply.get(at..at + len);
    let u16_at = |at| field(at, 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let u32_at = |at| field(at, 4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    let malformed = || io::Error::other("malformed sock_diag reply");
    match u16_at(4).ok_or_else(malformed)? {
        NLMSG_ERROR => {
            let errno = u32_at(HEADER).ok_or_else(malformed)? as i32;
            return Err(io::Error::from_raw_os_error(-errno));
        }
        SOCK_DIAG_BY_FAMILY => {}
        other => return Err(io::Error::other(format!("sock_diag replied with type {other}"))),
    }
    // struct unix_diag_msg (16 bytes), then attributes (length u16, type u16, payload),
    // each padded to 4 bytes.
    let mut at = HEADER + 16;
    while let (Some(len), Some(kind)) = (u16_at(at), u16_at(at + 2)) {
        let len = usize::from(len);
        if len < 4 {
            break;
        }
        if kind == UNIX_DIAG_RQLEN {
            return u32_at(at + 4).ok_or_else(malformed);
        }
        at += (len + 3) & !3;
    }
    Err(io::Error::other("sock_diag reply has no receive queue length"))
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll_out(fd: BorrowedFd<'_>) -> bool {
        let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
        nix::poll::poll(&mut fds, PollTimeout::ZERO).unwrap();
        fds[0].revents().unwrap().contains(PollFlags::POLLOUT)
    }

    #[test]
    fn a_prefilled_stream_carrier_polls_writable_only_once_the_filler_is_discarded() {
        use std::os::fd::AsFd;
        let (carrier, program) = Carrier::stream().unwrap();
        assert!(poll_out(program.as_fd()));
        let filled = carrier.prefill(program.as_fd()).unwrap();
        assert!(filled > 0);
        assert!(!poll_out(program.as_fd()), "a connecting socket is not writable");
        let mut scratch = vec![0; 65536];
        assert_eq!(carrier.discard(filled, &mut scratch), Transfer::Moved(filled));
        assert!(poll_out(program.as_fd()), "writable once connected");
        assert_eq!(carrier.read_into(&mut scratch, &mut []), Transfer::WouldBlock);
    }

    #[test]
    fn the_program_end_is_recognised_and_a_lookalike_is_not() {
        use std::os::fd::AsFd;
        let (carrier, program) = Carrier::stream().unwrap();
        assert_eq!(identify(program.as_fd()).as_deref(), Some(carrier.name()));
        let (plain, _other) =
            socket::socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC)
                .unwrap();
        assert_eq!(identify(plain.as_fd()), None, "an unnamed pair is nobody's carrier");
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(identify(udp.as_fd()), None);
    }

    #[test]
    fn vectored_transfers_and_end_of_stream() {
        let (carrier, program) = Carrier::stream().unwrap();
        assert_eq!(carrier.write_from(b"hello ", b"world"), Transfer::Moved(11));
        let mut buf = [0; 32];
        let n = socket::recv(program.as_raw_fd(), &mut buf, MsgFlags::empty()).unwrap();
        assert_eq!(&buf[..n], b"hello world");
        socket::send(program.as_raw_fd(), b"abcdef", MsgFlags::empty()).unwrap();
        let (mut first, mut second) = ([0; 4], [0; 4]);
        assert_eq!(carrier.read_into(&mut first, &mut second), Transfer::Moved(6));
        assert_eq!((&first, &second[..2]), (b"abcd", &b"ef"[..]));
        assert!(!carrier.hung_up());
        drop(program);
        assert_eq!(carrier.read_into(&mut first, &mut second), Transfer::EndOfStream);
        assert!(carrier.hung_up());
        assert_eq!(carrier.write_from(b"x", b""), Transfer::EndOfStream);
    }

    #[test]
    fn queue_lengths_of_both_ends_are_exact_and_a_peek_takes_nothing() {
        let (carrier, program) = Carrier::stream().unwrap();
        assert_eq!(carrier.unread_by_program().unwrap(), 0);
        assert_eq!(carrier.queued_from_program().unwrap(), 0);
        assert_eq!(carrier.write_from(&[1; 1000], &[2; 234]), Transfer::Moved(1234));
        let mut buf = [0; 200];
        assert_eq!(socket::recv(program.as_raw_fd(), &mut buf, MsgFlags::empty()).unwrap(), 200);
        assert_eq!(carrier.unread_by_program().unwrap(), 1034, "a partly read message counts");
        socket::send(program.as_raw_fd(), b"0123456789", MsgFlags::empty()).unwrap();
        assert_eq!(carrier.queued_from_program().unwrap(), 10);
        let (mut first, mut second) = ([0; 4], [0; 3]);
        assert_eq!(carrier.peek_into(&mut first, &mut second), Transfer::Moved(7));
        assert_eq!((&first, &second), (b"0123", b"456"));
        assert_eq!(carrier.queued_from_program().unwrap(), 10, "a peek leaves the bytes");
        assert_eq!(carrier.discard(7, &mut buf), Transfer::Moved(7));
        assert_eq!(carrier.queued_from_program().unwrap(), 3);
        drop(program);
        assert_eq!(carrier.peek_into(&mut first, &mut second), Transfer::Moved(3));
        assert_eq!(carrier.discard(3, &mut buf), Transfer::Moved(3));
        // The program left 1034 bytes unread: its close reads as a reset, not end-of-stream.
        assert_eq!(carrier.peek_into(&mut first, &mut second), Transfer::Failed(libc::ECONNRESET));
    }

    #[test]
    fn datagram_carriers_keep_boundaries_and_report_truncation_and_close() {
        let (carrier, program) = Carrier::datagram().unwrap();
        socket::send(program.as_raw_fd(), b"one", MsgFlags::empty()).unwrap();
        socket::send(program.as_raw_fd(), b"", MsgFlags::empty()).unwrap();
        socket::send(program.as_raw_fd(), &[7; 100], MsgFlags::empty()).unwrap();
        let mut buf = [0; 64];
        assert_eq!(carrier.receive_datagram(&mut buf), Datagram::Received(3));
        assert_eq!(carrier.receive_datagram(&mut buf), Datagram::Received(0));
        assert_eq!(carrier.receive_datagram(&mut buf), Datagram::Truncated);
        assert_eq!(carrier.receive_datagram(&mut buf), Datagram::Empty);
        drop(program);
        assert_eq!(carrier.receive_datagram(&mut buf), Datagram::Closed);
    }
}
