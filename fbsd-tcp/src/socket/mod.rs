//! The socket layer: handles, families and types, options, readiness and errors. The operations
//! themselves are methods of [`crate::Stack`], which owns every socket.

mod errno;
mod options;
pub mod tcp;
pub mod udp;

pub use errno::Errno;
pub use options::{Readiness, SocketOptions};

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Names one socket of a [`crate::Stack`]. Handles are generational: after a socket is closed
/// its handle stays invalid (every call answers `Errno::BadHandle`) even when the slot is reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketHandle {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl SocketHandle {
    /// A stable number for logs and `ss` (slot and generation packed).
    pub fn id(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }
}

/// The address family a socket was opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressFamily {
    /// AF_INET.
    Inet,
    /// AF_INET6, dual-stack: carries IPv4 through v4-mapped addresses (::ffff:a.b.c.d) unless
    /// `v6_only` is set. Addresses it reports are v4-mapped IPv6 addresses.
    Inet6,
}

/// The socket type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SocketType {
    /// SOCK_STREAM (TCP).
    Stream,
    /// SOCK_DGRAM (UDP).
    Datagram,
}

/// shutdown(2)'s `how`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// SHUT_RD.
    Read,
    /// SHUT_WR.
    Write,
    /// SHUT_RDWR.
    Both,
}

/// One line of the socket listing (`ss -tani`).
#[derive(Debug, Clone)]
pub struct SocketSummary {
    /// The socket.
    pub handle: Option<SocketHandle>,
    /// Stream or datagram.
    pub kind: SocketType,
    /// State name as `ss` prints it (UNCONN for unconnected UDP).
    pub state: &'static str,
    /// Local address (0.0.0.0:0 when unbound).
    pub local: SocketAddrV4,
    /// Peer address (0.0.0.0:0 when none).
    pub peer: SocketAddrV4,
    /// Bytes waiting to be read (listeners: connections waiting to be accepted).
    pub recv_queue: usize,
    /// Bytes not yet acknowledged or sent (listeners: the backlog).
    pub send_queue: usize,
    /// TCP details for connections.
    pub tcp: Option<tcp::TcpInfo>,
}

/// Converts an address given to a socket of `family` into the IPv4 address the engine uses:
/// AF_INET takes IPv4 addresses; AF_INET6 takes v4-mapped addresses (and `::` as "any"), unless
/// `v6_only`. Anything else is `AfNotSupported` (real IPv6 is not spoken yet).
pub(crate) fn to_v4(
    family: AddressFamily,
    v6_only: bool,
    addr: SocketAddr,
) -> Result<SocketAddrV4, Errno> {
    match (family, addr) {
        (AddressFamily::Inet, SocketAddr::V4(v4)) => Ok(v4),
        (AddressFamily::Inet, SocketAddr::V6(_)) => Err(Errno::AfNotSupported),
        (AddressFamily::Inet6, SocketAddr::V4(_)) => Err(Errno::AfNotSupported),
        (AddressFamily::Inet6, SocketAddr::V6(v6)) => {
            if v6.ip().is_unspecified() && !v6_only {
                return Ok(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, v6.port()));
            }
            match v6.ip().to_ipv4_mapped() {
                Some(v4) if !v6_only => Ok(SocketAddrV4::new(v4, v6.port())),
                _ => Err(Errno::AfNotSupported),
            }
        }
    }
}

/// The address a socket of `family` reports for an IPv4 endpoint: as is for AF_INET,
/// v4-mapped for AF_INET6 (0.0.0.0 maps to `::`, as Linux reports an unbound dual-stack socket).
pub(crate) fn from_v4(family: AddressFamily, addr: SocketAddrV4) -> SocketAddr {
    match family {
        AddressFamily::Inet => SocketAddr::V4(addr),
        AddressFamily::Inet6 => {
            let ip = if addr.ip().is_unspecified() {
                std::net::Ipv6Addr::UNSPECIFIED
            } else {
                addr.ip().to_ipv6_mapped()
            };
            SocketAddr::V6(SocketAddrV6::new(ip, addr.port(), 0, 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dual_stack_addresses_map_to_ipv4() {
        let mapped: SocketAddr = "[::ffff:10.77.0.1]:80".parse().unwrap();
        assert_eq!(to_v4(AddressFamily::Inet6, false, mapped), Ok("10.77.0.1:80".parse().unwrap()));
        assert_eq!(to_v4(AddressFamily::Inet6, true, mapped), Err(Errno::AfNotSupported));
        let any: SocketAddr = "[::]:8000".parse().unwrap();
        assert_eq!(to_v4(AddressFamily::Inet6, false, any), Ok("0.0.0.0:8000".parse().unwrap()));
        let real_v6: SocketAddr = "[::1]:80".parse().unwrap();
        assert_eq!(to_v4(AddressFamily::Inet6, false, real_v6), Err(Errno::AfNotSupported));
        assert_eq!(to_v4(AddressFamily::Inet, false, mapped), Err(Errno::AfNotSupported));
        assert_eq!(
            from_v4(AddressFamily::Inet6, "10.0.0.1:5".parse().unwrap()),
            "[::ffff:10.0.0.1]:5".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            from_v4(AddressFamily::Inet6, "0.0.0.0:5".parse().unwrap()),
            "[::]:5".parse::<SocketAddr>().unwrap()
        );
    }
}
