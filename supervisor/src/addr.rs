//! Socket addresses between the program's view (the family it asked for, v4-mapped IPv6 for
//! dual-stack sockets) and the daemon's (IPv4, shown v4-mapped to AF_INET6 sockets).

use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};

use stackd::proto::Family;
use trap::{Listener, NotifError, Notification, SockAddr};

/// Where an address the program named can be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// By the daemon, with this address (as the daemon expects it for the socket's family).
    Stackd(SocketAddr),
    /// Only by the kernel: a real IPv6 address (the engine is IPv4).
    Kernel,
}

/// Routes `addr`, given to a socket of `family`, or says which errno the kernel would give.
pub fn route(family: Family, addr: &SockAddr) -> Result<Route, i32> {
    match (family, addr) {
        (Family::Inet, SockAddr::Inet(SocketAddr::V4(v4))) => Ok(Route::Stackd((*v4).into())),
        (Family::Inet6, SockAddr::Inet(SocketAddr::V6(v6))) => {
            if v6.ip().to_ipv4_mapped().is_some() || v6.ip().is_unspecified() {
                Ok(Route::Stackd((*v6).into()))
            } else {
                Ok(Route::Kernel)
            }
        }
        _ => Err(libc::EAFNOSUPPORT),
    }
}

/// The IPv4 address behind an address routed to the daemon (None for `::`, "any").
pub fn ipv4_of(addr: SocketAddr) -> Option<SocketAddrV4> {
    match addr {
        SocketAddr::V4(v4) => Some(v4),
        SocketAddr::V6(v6) => v6.ip().to_ipv4_mapped().map(|ip| SocketAddrV4::new(ip, v6.port())),
    }
}

/// The address as a program with a socket of `family` expects to read it.
pub fn for_program(family: Family, addr: SocketAddr) -> SocketAddr {
    match (family, addr) {
        (Family::Inet6, SocketAddr::V4(v4)) => {
            SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0).into()
        }
        (Family::Inet, SocketAddr::V6(v6)) => match v6.ip().to_ipv4_mapped() {
            Some(ip) => SocketAddrV4::new(ip, v6.port()).into(),
            None => addr,
        },
        _ => addr,
    }
}

/// Whether the address is loopback (127.0.0.0/8, ::1, or v4-mapped loopback).
pub fn is_loopback(addr: SocketAddr) -> bool {
    match addr.ip() {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Writes `addr` for a socket of `family` into the program's (`addr_ptr`, `len_ptr`) pair as
/// accept, getsockname and recvfrom do: at most `*len_ptr` bytes, then the full length into
/// `*len_ptr`. A NULL `addr_ptr` asks for nothing.
pub fn write_to_program(
    notification: &Notification,
    listener: &Listener,
    addr_ptr: u64,
    len_ptr: u64,
    family: Family,
    addr: SocketAddr,
) -> Result<(), NotifError> {
    if addr_ptr == 0 {
        return Ok(());
    }
    let bytes = SockAddr::Inet(for_program(family, addr)).to_bytes();
    let room = notification.read_i32(listener, len_ptr)?;
    let room = usize::try_from(room)
        .map_err(|_| NotifError::BadLength { len: i64::from(room), max: bytes.len() })?;
    let full_len = (bytes.len() as i32).to_ne_bytes();
    notification
        .write_all(listener, &[(addr_ptr, &bytes[..room.min(bytes.len())]), (len_ptr, &full_len)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(text: &str) -> SockAddr {
        SockAddr::Inet(text.parse().unwrap())
    }

    #[test]
    fn dual_stack_sockets_route_mapped_and_any_to_the_daemon_and_real_ipv6_to_the_kernel() {
        let mapped: SocketAddr = "[::ffff:10.77.0.1]:80".parse().unwrap();
        assert_eq!(route(Family::Inet6, &SockAddr::Inet(mapped)), Ok(Route::Stackd(mapped)));
        assert_eq!(
            route(Family::Inet6, &v6("[::]:8080")),
            Ok(Route::Stackd("[::]:8080".parse().unwrap()))
        );
        assert_eq!(route(Family::Inet6, &v6("[::1]:80")), Ok(Route::Kernel));
        assert_eq!(route(Family::Inet6, &v6("[2001:db8::1]:80")), Ok(Route::Kernel));
        assert_eq!(route(Family::Inet, &v6("[::ffff:1.2.3.4]:80")), Err(libc::EAFNOSUPPORT));
        assert_eq!(route(Family::Inet6, &v6("1.2.3.4:80")), Err(libc::EAFNOSUPPORT));
        assert_eq!(route(Family::Inet, &SockAddr::Unix(b"/x".to_vec())), Err(libc::EAFNOSUPPORT));
    }

    #[test]
    fn programs_see_their_own_family() {
        let v4: SocketAddr = "10.77.0.1:5000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:10.77.0.1]:5000".parse().unwrap();
        assert_eq!(for_program(Family::Inet6, v4), mapped);
        assert_eq!(for_program(Family::Inet, mapped), v4);
        assert_eq!(for_program(Family::Inet, v4), v4);
        assert_eq!(ipv4_of(mapped), Some("10.77.0.1:5000".parse().unwrap()));
        assert_eq!(ipv4_of("[::]:1".parse().unwrap()), None);
    }

    #[test]
    fn loopback_in_every_spelling() {
        for text in ["127.0.0.1:1", "127.9.9.9:1", "[::1]:1", "[::ffff:127.0.0.1]:1"] {
            assert!(is_loopback(text.parse().unwrap()), "{text}");
        }
        for text in ["10.77.0.1:1", "[::ffff:10.0.0.1]:1", "[::]:1", "0.0.0.0:1"] {
            assert!(!is_loopback(text.parse().unwrap()), "{text}");
        }
    }
}
