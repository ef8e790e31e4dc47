//! Socket addresses as a target passes them: `struct sockaddr_in`, `sockaddr_in6`, `sockaddr_un`
//! or another family's bytes, parsed from (and encoded to) the target's memory layout.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use thiserror::Error;

/// The largest socket address the kernel copies in (`sizeof(struct sockaddr_storage)`); longer
/// lengths fail with EINVAL.
pub const MAX_SOCKADDR_LEN: usize = 128;

/// `sizeof(struct sockaddr_in)`: the least an AF_INET address may be.
const SOCKADDR_IN_LEN: usize = 16;
/// `SIN6_LEN_RFC2133`: the least an AF_INET6 address may be (the scope id is optional).
const SOCKADDR_IN6_MIN_LEN: usize = 24;
const SOCKADDR_IN6_LEN: usize = 28;

/// A decoded socket address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SockAddr {
    /// AF_INET or AF_INET6 (with its flow info and scope id).
    Inet(SocketAddr),
    /// AF_UNIX: the `sun_path` bytes as given (a leading NUL means an abstract name; empty
    /// means unnamed). A trailing NUL, if the target counted one, is kept.
    Unix(Vec<u8>),
    /// Any other family (AF_UNSPEC included, which connect() uses to dissolve an association).
    Other {
        /// The family.
        family: u16,
    },
}

/// Why bytes are not a socket address the kernel would accept.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum SockAddrError {
    /// Too short for even the family field.
    #[error("a socket address of {len} bytes has no family field")]
    NoFamily {
        /// The length given.
        len: usize,
    },
    /// Shorter than its family's structure.
    #[error("a family {family} socket address needs at least {need} bytes, got {len}")]
    Truncated {
        /// The family.
        family: u16,
        /// The length given.
        len: usize,
        /// The least the kernel accepts for this family.
        need: usize,
    },
}

impl SockAddrError {
    /// The errno the kernel gives for such an address: EINVAL.
    pub fn errno(&self) -> i32 {
        libc::EINVAL
    }
}

impl SockAddr {
    /// Parses a `struct sockaddr` of `bytes.len()` bytes, as the kernel would: AF_INET needs 16
    /// bytes, AF_INET6 24 (28 with the scope id). Extra bytes are ignored, as the kernel does.
    pub fn parse(bytes: &[u8]) -> Result<SockAddr, SockAddrError> {
        let len = bytes.len();
        let Some(family) = bytes.get(..2) else {
            return Err(SockAddrError::NoFamily { len });
        };
        let family = u16::from_ne_bytes([family[0], family[1]]);
        let need = |need: usize| {
            if len < need {
                Err(SockAddrError::Truncated { family, len, need })
            } else {
                Ok(())
            }
        };
        match i32::from(family) {
            libc::AF_INET => {
                need(SOCKADDR_IN_LEN)?;
                let port = u16::from_be_bytes([bytes[2], bytes[3]]);
                let ip = Ipv4Addr::new(bytes[4], bytes[5], bytes[6], bytes[7]);
                Ok(SockAddr::Inet(SocketAddr::V4(SocketAddrV4::new(ip, port))))
            }
            libc::AF_INET6 => {
                need(SOCKADDR_IN6_MIN_LEN)?;
                let port = u16::from_be_bytes([bytes[2], bytes[3]]);
                // Kept as the raw field, as std's SocketAddrV6 does (`sin6_flowinfo` is in
                // network order in memory; std hands it over unconverted).
                let flowinfo = u32::from_ne_bytes(bytes[4..8].try_into().expect("4 bytes"));
                let ip: [u8; 16] = bytes[8..24].try_into().expect("16 bytes");
                let scope_id = match bytes.get(24..28) {
                    Some(s) => u32::from_ne_bytes(s.try_into().expect("4 bytes")),
                    None => 0,
                };
                let addr = SocketAddrV6::new(Ipv6Addr::from(ip), port, flowinfo, scope_id);
                Ok(SockAddr::Inet(SocketAddr::V6(addr)))
            }
            libc::AF_UNIX => Ok(SockAddr::Unix(bytes[2..].to_vec())),
            _ => Ok(SockAddr::Other { family }),
        }
    }

    /// The family (AF_INET, AF_INET6, AF_UNIX, ...).
    pub fn family(&self) -> u16 {
        match self {
            SockAddr::Inet(SocketAddr::V4(_)) => libc::AF_INET as u16,
            SockAddr::Inet(SocketAddr::V6(_)) => libc::AF_INET6 as u16,
            SockAddr::Unix(_) => libc::AF_UNIX as u16,
            SockAddr::Other { family } => *family,
        }
    }

    /// The bytes of the `struct sockaddr` a program expects (e.g. to write into an accept(),
    /// getsockname() or recvfrom() buffer): 16 bytes for AF_INET, 28 for AF_INET6, the family
    /// and path for AF_UNIX, the family alone otherwise.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = self.family().to_ne_bytes().to_vec();
        match self {
            SockAddr::Inet(SocketAddr::V4(a)) => {
                b.extend_from_slice(&a.port().to_be_bytes());
                b.extend_from_slice(&a.ip().octets());
                b.resize(SOCKADDR_IN_LEN, 0);
            }
            SockAddr::Inet(SocketAddr::V6(a)) => {
                b.extend_from_slice(&a.port().to_be_bytes());
                b.extend_from_slice(&a.flowinfo().to_ne_bytes());
                b.extend_from_slice(&a.ip().octets());
                b.extend_from_slice(&a.scope_id().to_ne_bytes());
                debug_assert_eq!(b.len(), SOCKADDR_IN6_LEN);
            }
            SockAddr::Unix(path) => b.extend_from_slice(path),
            SockAddr::Other { .. } => {}
        }
        b
    }
}

impl From<SocketAddr> for SockAddr {
    fn from(addr: SocketAddr) -> SockAddr {
        SockAddr::Inet(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes libc itself lays out for `addr` (a model independent of `to_bytes`).
    fn libc_sockaddr_in(ip: [u8; 4], port: u16) -> Vec<u8> {
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(ip) },
            sin_zero: [0; 8],
        };
        let mut b = Vec::new();
        b.extend_from_slice(&sin.sin_family.to_ne_bytes());
        b.extend_from_slice(&sin.sin_port.to_ne_bytes());
        b.extend_from_slice(&sin.sin_addr.s_addr.to_ne_bytes());
        b.extend_from_slice(&sin.sin_zero);
        b
    }

    #[test]
    fn ipv4() {
        let bytes = libc_sockaddr_in([127, 0, 0, 1], 8080);
        let addr = SockAddr::parse(&bytes).unwrap();
        assert_eq!(addr, SockAddr::Inet("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(addr.to_bytes(), bytes);
        // Longer buffers (a sockaddr_storage) are fine; shorter ones are not.
        let mut long = bytes.clone();
        long.resize(MAX_SOCKADDR_LEN, 0xaa);
        assert_eq!(SockAddr::parse(&long).unwrap(), addr);
        assert_eq!(
            SockAddr::parse(&bytes[..15]),
            Err(SockAddrError::Truncated { family: 2, len: 15, need: 16 })
        );
    }

    #[test]
    fn ipv6_with_and_without_scope_id() {
        let addr: SocketAddrV6 = "[fe80::1%7]:443".parse().unwrap();
        let sa = SockAddr::Inet(SocketAddr::V6(addr));
        let bytes = sa.to_bytes();
        assert_eq!(bytes.len(), 28);
        assert_eq!(&bytes[0..2], &(libc::AF_INET6 as u16).to_ne_bytes());
        assert_eq!(&bytes[2..4], &[0x01, 0xbb]);
        assert_eq!(bytes[8], 0xfe);
        assert_eq!(&bytes[24..28], &7u32.to_ne_bytes());
        assert_eq!(SockAddr::parse(&bytes).unwrap(), sa);
        // RFC 2133's 24-byte form: scope id 0.
        let short = SockAddr::parse(&bytes[..24]).unwrap();
        assert_eq!(short, SockAddr::Inet("[fe80::1]:443".parse().unwrap()));
        assert_eq!(
            SockAddr::parse(&bytes[..23]),
            Err(SockAddrError::Truncated { family: 10, len: 23, need: 24 })
        );
    }

    #[test]
    fn unix_and_other_families() {
        let mut bytes = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        bytes.extend_from_slice(b"\0joyride-test");
        assert_eq!(SockAddr::parse(&bytes).unwrap(), SockAddr::Unix(b"\0joyride-test".to_vec()));
        assert_eq!(SockAddr::parse(&bytes).unwrap().to_bytes(), bytes);
        assert_eq!(SockAddr::parse(&bytes[..2]).unwrap(), SockAddr::Unix(Vec::new()));
        let unspec = [0u8; 16];
        assert_eq!(SockAddr::parse(&unspec).unwrap(), SockAddr::Other { family: 0 });
        assert_eq!(SockAddr::parse(&[1]), Err(SockAddrError::NoFamily { len: 1 }));
        assert_eq!(SockAddr::parse(&[]), Err(SockAddrError::NoFamily { len: 0 }));
    }
}
