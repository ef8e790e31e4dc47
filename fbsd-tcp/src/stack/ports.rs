//! Binding: who may hold a port (SO_REUSEADDR / SO_REUSEPORT rules as Linux applies them), and
//! ephemeral port selection after RFC 6056 algorithm 3 (a keyed hash of the destination picks
//! where the search starts, so ports are hard to guess yet spread over the range).

use core::hash::Hasher;
use std::net::{Ipv4Addr, SocketAddrV4};

use siphasher::sip::SipHasher13;

use super::{Kind, Socket, Stack};
use crate::socket::tcp::TcpState;
use crate::socket::Errno;

impl Stack {
    /// Binds socket `index` to `requested` (port 0: an ephemeral port), recording it as a
    /// holder of the port. Returns the bound address.
    pub(super) fn bind_port(
        &mut self,
        index: u32,
        requested: SocketAddrV4,
    ) -> Result<SocketAddrV4, Errno> {
        let udp = matches!(self.socket_ref(index).kind, Kind::Udp(_));
        let port = if requested.port() == 0 {
            let start = self.ephemeral_start(requested.ip(), None);
            self.search_ports(start, |stack, port| {
                if udp {
                    !stack.udp_ports.contains_key(&port)
                } else {
                    !stack.tcp_ports.contains_key(&port)
                        && !stack.tcp_connection_ports.contains_key(&port)
                }
            })
            .ok_or(Errno::AddrInUse)?
        } else {
            self.check_bind_conflict(index, requested)?;
            requested.port()
        };
        let holders = if udp { &mut self.udp_ports } else { &mut self.tcp_ports };
        holders.entry(port).or_default().push(index);
        Ok(SocketAddrV4::new(*requested.ip(), port))
    }

    /// Picks a local port for a connection to `remote` from an unbound socket: one no bound or
    /// listening socket holds and whose 4-tuple is unused (connections to other peers may share
    /// it, as on Linux).
    pub(super) fn bind_ephemeral_for(
        &mut self,
        remote: SocketAddrV4,
    ) -> Result<SocketAddrV4, Errno> {
        let our_ip = self.config.addr.addr;
        let start = self.ephemeral_start(&our_ip, Some(remote));
        let port = self
            .search_ports(start, |stack, port| {
                let local = SocketAddrV4::new(our_ip, port);
                if stack.connections.contains_key(&(local, remote)) {
                    return false;
                }
                !stack.tcp_ports.contains_key(&port)
            })
            .ok_or(Errno::AddrNotAvailable)?;
        self.hold_connection_port(port);
        Ok(SocketAddrV4::new(our_ip, port))
    }

    /// A connection that is not in `tcp_ports` starts holding `port`.
    pub(super) fn hold_connection_port(&mut self, port: u16) {
        *self.tcp_connection_ports.entry(port).or_default() += 1;
    }

    /// ... and stops.
    pub(super) fn release_connection_port(&mut self, port: u16) {
        if let Some(count) = self.tcp_connection_ports.get_mut(&port) {
            *count -= 1;
            if *count == 0 {
                self.tcp_connection_ports.remove(&port);
            }
        }
    }

    /// RFC 6056 algorithm 3's starting offset: a keyed hash of the endpoints plus a counter.
    fn ephemeral_start(&mut self, local: &Ipv4Addr, remote: Option<SocketAddrV4>) -> u32 {
        let mut hasher = SipHasher13::new_with_key(&self.config.secret);
        hasher.write(b"ephemeral-port");
        hasher.write(&local.octets());
        if let Some(remote) = remote {
            hasher.write(&remote.ip().octets());
            hasher.write_u16(remote.port());
        }
        let offset = hasher.finish() as u32;
        self.ephemeral_counter = self.ephemeral_counter.wrapping_add(1);
        offset.wrapping_add(u32::from(self.ephemeral_counter))
    }

    fn search_ports(&self, start: u32, usable: impl Fn(&Stack, u16) -> bool) -> Option<u16> {
        let (low, high) = self.config.ephemeral_ports;
        let count = u32::from(high.saturating_sub(low)) + 1;
        (0..count)
            .map(|i| low + (start.wrapping_add(i) % count) as u16)
            .find(|&port| port != 0 && usable(self, port))
    }

    /// EADDRINUSE unless every current holder of the port lets `index` share it.
    fn check_bind_conflict(&self, index: u32, requested: SocketAddrV4) -> Result<(), Errno> {
        let udp = matches!(self.socket_ref(index).kind, Kind::Udp(_));
        let holders = if udp { &self.udp_ports } else { &self.tcp_ports };
        let new = self.socket_ref(index);
        for &holder in holders.get(&requested.port()).into_iter().flatten() {
            if holder == index {
                continue;
            }
            let existing = self.socket_ref(holder);
            if !addresses_overlap(existing, requested) {
                continue;
            }
            let both_reuse_port = new.options.reuse_port && existing.options.reuse_port;
            let both_reuse_addr = new.options.reuse_addr && existing.options.reuse_addr;
            let shareable = match &existing.kind {
                Kind::TcpListener(_) => both_reuse_port,
                // A connection the application no longer holds (TIME_WAIT, or finishing after
                // close) blocks a new bind only without SO_REUSEADDR: the classic server restart.
                Kind::TcpConn(tcb) if existing.orphan || tcb.state() == TcpState::TimeWait => {
                    new.options.reuse_addr
                }
                _ => both_reuse_addr || both_reuse_port,
            };
            if !shareable {
                return Err(Errno::AddrInUse);
            }
        }
        // Connections counted on the port (accepted ones, say, after their listener closed)
        // block a bind without SO_REUSEADDR, as TIME-WAIT ones do on Linux.
        if !udp
            && self.tcp_connection_ports.contains_key(&requested.port())
            && !new.options.reuse_addr
        {
            return Err(Errno::AddrInUse);
        }
        Ok(())
    }

    /// listen(2) on a bound socket: two listeners share a port only with SO_REUSEPORT on both.
    pub(super) fn check_listen_conflict(
        &self,
        index: u32,
        local: SocketAddrV4,
    ) -> Result<(), Errno> {
        let new = self.socket_ref(index);
        for &other in self.listeners.get(&local.port()).into_iter().flatten() {
            let existing = self.socket_ref(other);
            if addresses_overlap(existing, local)
                && !(new.options.reuse_port && existing.options.reuse_port)
            {
                return Err(Errno::AddrInUse);
            }
        }
        Ok(())
    }
}

fn addresses_overlap(existing: &Socket, requested: SocketAddrV4) -> bool {
    match existing.local() {
        Some(local) => {
            local.ip().is_unspecified()
                || requested.ip().is_unspecified()
                || local.ip() == requested.ip()
        }
        None => false,
    }
}
