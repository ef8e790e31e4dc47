//! Wire formats: a checked view and a `Repr` for every header the engine speaks.
//!
//! Each protocol module follows one pattern:
//! - `Packet<T: AsRef<[u8]>>` (or `Frame`) wraps a buffer. `new_checked` validates lengths once;
//!   **after `new_checked` succeeds, no accessor panics**, whatever the bytes are. `new_unchecked`
//!   is for buffers the engine itself sized (emit paths).
//! - `Repr` is the parsed, validated meaning of a header: `Repr::parse` refuses anything malformed
//!   with a [`ParseError`], `Repr::emit` writes a header into a buffer of at least
//!   `Repr::header_len()` bytes (that length is the caller's contract; emit may panic if broken).
//!
//! Untrusted bytes only ever enter through `new_checked` + `parse`, so a malformed frame becomes a
//! counted drop, never a panic.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmpv4;
pub mod ipv4;
pub mod tcp;
pub mod udp;

pub use arp::{ArpOperation, ArpPacket, ArpRepr};
pub use ethernet::{EtherType, EthernetAddress, EthernetFrame, EthernetRepr};
pub use icmpv4::{DstUnreachable, Icmpv4Packet, Icmpv4Repr};
pub use ipv4::{IpProtocol, Ipv4Cidr, Ipv4Packet, Ipv4Repr};
pub use tcp::{SackBlock, SeqNumber, TcpControl, TcpFlags, TcpOptions, TcpPacket, TcpRepr};
pub use udp::{UdpPacket, UdpRepr};

/// Why a frame or header was refused. Each variant is a drop reason the stack counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ParseError {
    /// The buffer is shorter than the header (or than the length the header claims).
    #[error("truncated")]
    Truncated,
    /// A field holds a value the protocol forbids (bad version, header length, option length...).
    #[error("malformed")]
    Malformed,
    /// The checksum does not match the contents.
    #[error("bad checksum")]
    Checksum,
    /// Well-formed but not something this engine handles (unknown ARP hardware type, ...).
    #[error("unsupported")]
    Unsupported,
}

/// Which checksums to compute on transmit and verify on receive. Both are on by default; a NIC
/// or TAP with checksum offload may turn them off, and the fuzz targets turn verification off so
/// that random input reaches the deeper parsers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChecksumPolicy {
    /// Fill checksums in frames the engine emits.
    pub fill_tx: bool,
    /// Verify checksums in frames the engine receives; a mismatch is a counted drop.
    pub verify_rx: bool,
}

impl Default for ChecksumPolicy {
    fn default() -> Self {
        ChecksumPolicy { fill_tx: true, verify_rx: true }
    }
}
