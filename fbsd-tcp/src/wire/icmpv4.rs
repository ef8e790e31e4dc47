//! ICMPv4 (RFC 792): echo, destination unreachable (with RFC 1191's next-hop MTU), time exceeded.

use super::{ChecksumPolicy, Ipv4Repr, ParseError};

/// Destination-unreachable codes the engine sends or acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DstUnreachable {
    /// 0
    NetUnreachable,
    /// 1
    HostUnreachable,
    /// 2
    ProtoUnreachable,
    /// 3
    PortUnreachable,
    /// 4: fragmentation needed and DF set; carries the next-hop MTU (RFC 1191; 0 if the router
    /// predates it).
    FragRequired {
        /// The MTU of the next hop.
        next_hop_mtu: u16,
    },
    /// Any other code.
    Other(u8),
}

/// A checked view of an ICMPv4 message.
#[derive(Debug, Clone)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

/// Length of the fixed ICMP header (type, code, checksum, 4 bytes of rest-of-header).
pub const HEADER_LEN: usize = 8;

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv4Packet { buffer }
    }
    /// Wraps a buffer after checking it holds the 8-byte header.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let _ = buffer;
        todo!("wire helper")
    }
    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

/// The meaning of the ICMPv4 messages the engine handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv4Repr<'a> {
    /// Type 8.
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Data to echo back.
        data: &'a [u8],
    },
    /// Type 0.
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Echoed data.
        data: &'a [u8],
    },
    /// Type 3. `header` is the offending datagram's IP header and `data` at least the first 8
    /// bytes of its payload (enough for the ports), as quoted by the sender.
    DstUnreachable {
        /// Why.
        reason: DstUnreachable,
        /// The quoted IP header (checksum not verified: routers may rewrite it).
        header: Ipv4Repr,
        /// The quoted payload bytes.
        data: &'a [u8],
    },
    /// Type 11.
    TimeExceeded {
        /// Code (0 TTL exceeded in transit, 1 fragment reassembly time exceeded).
        code: u8,
        /// The quoted IP header.
        header: Ipv4Repr,
        /// The quoted payload bytes.
        data: &'a [u8],
    },
}

impl<'a> Icmpv4Repr<'a> {
    /// Parses; verifies the checksum if `checksum.verify_rx`; unknown types are
    /// [`ParseError::Unsupported`]; a quoted header that is not valid IPv4 is malformed.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &'a Icmpv4Packet<&'a T>,
        checksum: ChecksumPolicy,
    ) -> Result<Icmpv4Repr<'a>, ParseError> {
        let _ = (packet, checksum);
        todo!("wire helper")
    }
    /// Length of the whole message when emitted.
    pub fn buffer_len(&self) -> usize {
        todo!("wire helper")
    }
    /// Writes the message (quoted header emitted as 20 bytes without options) and its checksum
    /// if `checksum.fill_tx`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Icmpv4Packet<T>,
        checksum: ChecksumPolicy,
    ) {
        let _ = (packet, checksum);
        todo!("wire helper")
    }
}
