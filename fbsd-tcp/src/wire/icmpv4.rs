//! ICMPv4 (RFC 792): echo, destination unreachable (with RFC 1191's next-hop MTU), time exceeded.

use super::{checksum, ipv4, ChecksumPolicy, Ipv4Packet, Ipv4Repr, ParseError};

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

mod field {
    use core::ops::{Range, RangeFrom};

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    /// Echo: identifier. Errors: unused (zero).
    pub const ECHO_IDENT: Range<usize> = 4..6;
    /// Echo: sequence number. Code 4 of destination unreachable: next-hop MTU (RFC 1191).
    pub const ECHO_SEQNO: Range<usize> = 6..8;
    pub const NEXT_HOP_MTU: Range<usize> = 6..8;
    pub const REST_OF_HEADER: Range<usize> = 4..8;
    pub const BODY: RangeFrom<usize> = 8..;
}

/// Message types.
mod kind {
    pub const ECHO_REPLY: u8 = 0;
    pub const DST_UNREACHABLE: u8 = 3;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
}

/// The payload bytes of the offending datagram an error must quote when the datagram had them
/// (RFC 792): enough for the TCP or UDP ports.
const MIN_QUOTED_PAYLOAD: usize = 8;

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv4Packet { buffer }
    }
    /// Wraps a buffer after checking it holds the 8-byte header.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        Ok(Icmpv4Packet { buffer })
    }
    fn u16_at(&self, range: core::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[range];
        u16::from_be_bytes([b[0], b[1]])
    }
    /// The message type.
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }
    /// The message code.
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }
    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }
    /// Echo identifier.
    pub fn echo_ident(&self) -> u16 {
        self.u16_at(field::ECHO_IDENT)
    }
    /// Echo sequence number.
    pub fn echo_seq_no(&self) -> u16 {
        self.u16_at(field::ECHO_SEQNO)
    }
    /// Next-hop MTU of a "fragmentation needed" message (RFC 1191).
    pub fn next_hop_mtu(&self) -> u16 {
        self.u16_at(field::NEXT_HOP_MTU)
    }
    /// True if the checksum over the whole message matches.
    pub fn verify_checksum(&self) -> bool {
        checksum::verifies(&[checksum::data(self.buffer.as_ref())])
    }
    /// Everything after the 8-byte header: echo data, or the quoted datagram of an error.
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[field::BODY]
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
    ///
    /// The checksum covers the whole buffer, so `packet` must wrap exactly the IP payload.
    /// Echo messages are accepted whatever their code (RFC 792 says 0; nobody acts on it).
    /// The quoted datagram of an error is parsed leniently: its checksum is not verified and its
    /// total length may exceed what was quoted, but at least 8 of its payload bytes must be
    /// quoted when it had that many. `data` holds the quoted payload bytes, never more than the
    /// quoted header says the datagram carried.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Icmpv4Packet<&'a T>,
        checksum: ChecksumPolicy,
    ) -> Result<Icmpv4Repr<'a>, ParseError> {
        if checksum.verify_rx && !packet.verify_checksum() {
            return Err(ParseError::Checksum);
        }
        // Borrow from the buffer itself (lifetime 'a), not from `packet`.
        let buffer: &'a T = packet.buffer;
        let body: &'a [u8] = &buffer.as_ref()[field::BODY];
        match packet.msg_type() {
            kind::ECHO_REQUEST => Ok(Icmpv4Repr::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data: body,
            }),
            kind::ECHO_REPLY => Ok(Icmpv4Repr::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data: body,
            }),
            kind::DST_UNREACHABLE => {
                let reason = match packet.msg_code() {
                    0 => DstUnreachable::NetUnreachable,
                    1 => DstUnreachable::HostUnreachable,
                    2 => DstUnreachable::ProtoUnreachable,
                    3 => DstUnreachable::PortUnreachable,
                    4 => DstUnreachable::FragRequired { next_hop_mtu: packet.next_hop_mtu() },
                    other => DstUnreachable::Other(other),
                };
                let (header, data) = parse_quote(body)?;
                Ok(Icmpv4Repr::DstUnreachable { reason, header, data })
            }
            kind::TIME_EXCEEDED => {
                let (header, data) = parse_quote(body)?;
                Ok(Icmpv4Repr::TimeExceeded { code: packet.msg_code(), header, data })
            }
            _ => Err(ParseError::Unsupported),
        }
    }
    /// Length of the whole message when emitted.
    pub fn buffer_len(&self) -> usize {
        match self {
            Icmpv4Repr::EchoRequest { data, .. } | Icmpv4Repr::EchoReply { data, .. } => {
                HEADER_LEN + data.len()
            }
            Icmpv4Repr::DstUnreachable { data, .. } | Icmpv4Repr::TimeExceeded { data, .. } => {
                HEADER_LEN + ipv4::HEADER_LEN + data.len()
            }
        }
    }
    /// Writes the message (quoted header emitted as 20 bytes without options) and its checksum
    /// if `checksum.fill_tx`, into the first `buffer_len()` bytes of `packet`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Icmpv4Packet<T>,
        checksum: ChecksumPolicy,
    ) {
        let b = packet.buffer.as_mut();
        let (msg_type, code) = match *self {
            Icmpv4Repr::EchoRequest { ident, seq_no, data }
            | Icmpv4Repr::EchoReply { ident, seq_no, data } => {
                b[field::ECHO_IDENT].copy_from_slice(&ident.to_be_bytes());
                b[field::ECHO_SEQNO].copy_from_slice(&seq_no.to_be_bytes());
                b[HEADER_LEN..HEADER_LEN + data.len()].copy_from_slice(data);
                let msg_type = if matches!(self, Icmpv4Repr::EchoRequest { .. }) {
                    kind::ECHO_REQUEST
                } else {
                    kind::ECHO_REPLY
                };
                (msg_type, 0)
            }
            Icmpv4Repr::DstUnreachable { reason, header, data } => {
                b[field::REST_OF_HEADER].fill(0);
                let code = match reason {
                    DstUnreachable::NetUnreachable => 0,
                    DstUnreachable::HostUnreachable => 1,
                    DstUnreachable::ProtoUnreachable => 2,
                    DstUnreachable::PortUnreachable => 3,
                    DstUnreachable::FragRequired { next_hop_mtu } => {
                        b[field::NEXT_HOP_MTU].copy_from_slice(&next_hop_mtu.to_be_bytes());
                        4
                    }
                    DstUnreachable::Other(code) => code,
                };
                emit_quote(&mut b[field::BODY], &header, data, checksum);
                (kind::DST_UNREACHABLE, code)
            }
            Icmpv4Repr::TimeExceeded { code, header, data } => {
                b[field::REST_OF_HEADER].fill(0);
                emit_quote(&mut b[field::BODY], &header, data, checksum);
                (kind::TIME_EXCEEDED, code)
            }
        };
        b[field::TYPE] = msg_type;
        b[field::CODE] = code;
        b[field::CHECKSUM].fill(0);
        if checksum.fill_tx {
            let sum = checksum::checksum(&[checksum::data(&b[..self.buffer_len()])]);
            b[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
        }
    }
}

/// Splits an error's quoted datagram into its header and the payload bytes quoted after it.
fn parse_quote(quote: &[u8]) -> Result<(Ipv4Repr, &[u8]), ParseError> {
    let (header, header_len) = Ipv4Repr::parse_quoted(quote)?;
    let quoted = &quote[header_len..];
    if quoted.len() < MIN_QUOTED_PAYLOAD.min(header.payload_len) {
        return Err(ParseError::Truncated);
    }
    // Bytes beyond the datagram's own length are not part of it.
    Ok((header, &quoted[..quoted.len().min(header.payload_len)]))
}

/// Writes a quoted datagram: a 20-byte header, then `data`.
fn emit_quote(body: &mut [u8], header: &Ipv4Repr, data: &[u8], checksum: ChecksumPolicy) {
    header.emit(&mut Ipv4Packet::new_unchecked(&mut body[..ipv4::HEADER_LEN]), checksum);
    body[ipv4::HEADER_LEN..ipv4::HEADER_LEN + data.len()].copy_from_slice(data);
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::wire::IpProtocol;

    const VERIFY: ChecksumPolicy = ChecksumPolicy { fill_tx: true, verify_rx: true };
    const NO_VERIFY: ChecksumPolicy = ChecksumPolicy { fill_tx: true, verify_rx: false };

    /// `ping` as Linux sends it: ident 0x1c46, seq 1, a 16-byte timestamp then 0x10..0x37.
    fn echo_request() -> Vec<u8> {
        let mut bytes = vec![
            0x08, 0x00, 0xd0, 0xfd, 0x1c, 0x46, 0x00, 0x01, // header
            0xd2, 0xa0, 0xcf, 0x66, 0x00, 0x00, 0x00, 0x00, // tv_sec
            0xa7, 0xe0, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, // tv_usec
        ];
        bytes.extend(0x10..0x38);
        bytes
    }

    /// A router's "fragmentation needed, next-hop MTU 1400" about a 1500-byte TCP segment from
    /// 10.0.0.1:46498 to 93.184.216.34:443, quoting the header and 8 bytes of TCP.
    const FRAG_NEEDED: [u8; 36] = [
        0x03, 0x04, 0xb4, 0x69, 0x00, 0x00, 0x05, 0x78, // type 3 code 4, MTU 1400
        0x45, 0x00, 0x05, 0xdc, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0xe3, 0x0c, 0x0a, 0x00, 0x00,
        0x01, 0x5d, 0xb8, 0xd8, 0x22, // quoted IP header
        0xb5, 0xa2, 0x01, 0xbb, 0x6e, 0x8f, 0x1d, 0x2d, // ports and sequence number
    ];

    fn quoted_header() -> Ipv4Repr {
        Ipv4Repr {
            src_addr: Ipv4Addr::new(10, 0, 0, 1),
            dst_addr: Ipv4Addr::new(93, 184, 216, 34),
            protocol: IpProtocol::Tcp,
            payload_len: 1480,
            ttl: 64,
            tos: 0,
            ident: 0x1234,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
        }
    }

    fn parse(bytes: &[u8], policy: ChecksumPolicy) -> Result<Icmpv4Repr<'_>, ParseError> {
        Icmpv4Repr::parse(&Icmpv4Packet::new_checked(bytes)?, policy)
    }

    fn emit(repr: &Icmpv4Repr<'_>) -> Vec<u8> {
        let mut buf = vec![0xa5u8; repr.buffer_len()];
        repr.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]), VERIFY);
        buf
    }

    #[test]
    fn parse_captured_echo_request() {
        let bytes = echo_request();
        let repr = parse(&bytes, VERIFY).unwrap();
        assert_eq!(repr, Icmpv4Repr::EchoRequest { ident: 0x1c46, seq_no: 1, data: &bytes[8..] });
        assert_eq!(emit(&repr), bytes);
    }

    #[test]
    fn echo_reply_answers_request() {
        let bytes = echo_request();
        let Icmpv4Repr::EchoRequest { ident, seq_no, data } = parse(&bytes, VERIFY).unwrap() else {
            panic!("not an echo request");
        };
        let reply = emit(&Icmpv4Repr::EchoReply { ident, seq_no, data });
        // Only the type and the checksum differ (8 less in the type word: checksum + 0x0800).
        assert_eq!(reply[0], 0);
        assert_eq!(reply[2..4], [0xd8, 0xfd]);
        assert_eq!(reply[4..], bytes[4..]);
        assert_eq!(parse(&reply, VERIFY).unwrap(), Icmpv4Repr::EchoReply { ident, seq_no, data });
    }

    #[test]
    fn parse_captured_frag_needed() {
        let repr = parse(&FRAG_NEEDED, VERIFY).unwrap();
        assert_eq!(
            repr,
            Icmpv4Repr::DstUnreachable {
                reason: DstUnreachable::FragRequired { next_hop_mtu: 1400 },
                header: quoted_header(),
                data: &FRAG_NEEDED[28..],
            }
        );
        assert_eq!(emit(&repr), FRAG_NEEDED);
    }

    #[test]
    fn round_trips_every_error_kind() {
        let data = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
        let reasons = [
            DstUnreachable::NetUnreachable,
            DstUnreachable::HostUnreachable,
            DstUnreachable::ProtoUnreachable,
            DstUnreachable::PortUnreachable,
            DstUnreachable::FragRequired { next_hop_mtu: 0 },
            DstUnreachable::FragRequired { next_hop_mtu: 9000 },
            DstUnreachable::Other(13),
        ];
        let mut reprs: Vec<Icmpv4Repr<'_>> = reasons
            .iter()
            .map(|&reason| Icmpv4Repr::DstUnreachable {
                reason,
                header: quoted_header(),
                data: &data,
            })
            .collect();
        for code in [0, 1] {
            reprs.push(Icmpv4Repr::TimeExceeded {
                code,
                header: quoted_header(),
                data: &data[..8],
            });
        }
        reprs.push(Icmpv4Repr::EchoRequest { ident: 7, seq_no: 65535, data: &[] });
        reprs.push(Icmpv4Repr::EchoReply { ident: 0, seq_no: 0, data: &data });
        for repr in reprs {
            let bytes = emit(&repr);
            assert_eq!(bytes.len(), repr.buffer_len());
            assert_eq!(parse(&bytes, VERIFY).unwrap(), repr, "{repr:?}");
        }
    }

    #[test]
    fn quote_of_short_datagram_may_have_fewer_than_8_bytes() {
        let header = Ipv4Repr { payload_len: 3, ..quoted_header() };
        let repr = Icmpv4Repr::DstUnreachable {
            reason: DstUnreachable::PortUnreachable,
            header,
            data: &[9, 9, 9],
        };
        assert_eq!(parse(&emit(&repr), VERIFY).unwrap(), repr);
    }

    #[test]
    fn quote_with_options_yields_payload_after_them() {
        // The quoted header has IHL 6 (a 4-byte option): data starts after the option.
        let mut bytes = FRAG_NEEDED[..28].to_vec();
        bytes[8] = 0x46;
        bytes.extend_from_slice(&[0x94, 0x04, 0x00, 0x00]);
        bytes.extend_from_slice(&FRAG_NEEDED[28..]);
        bytes[2..4].fill(0);
        let sum = checksum::checksum(&[checksum::data(&bytes)]);
        bytes[2..4].copy_from_slice(&sum.to_be_bytes());
        let Icmpv4Repr::DstUnreachable { header, data, .. } = parse(&bytes, VERIFY).unwrap() else {
            panic!("not a destination unreachable");
        };
        assert_eq!(header.payload_len, 1476);
        assert_eq!(data, &FRAG_NEEDED[28..]);
    }

    #[test]
    fn quote_longer_than_datagram_is_cut_at_its_length() {
        let header = Ipv4Repr { payload_len: 4, ..quoted_header() };
        let repr = Icmpv4Repr::TimeExceeded { code: 0, header, data: &[1, 2, 3, 4, 5, 6] };
        let bytes = emit(&repr);
        let Icmpv4Repr::TimeExceeded { data, .. } = parse(&bytes, VERIFY).unwrap() else {
            panic!("not a time exceeded");
        };
        assert_eq!(data, &[1, 2, 3, 4]);
    }

    #[test]
    fn every_truncation_is_refused_or_consistent() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Icmpv4Packet::new_checked(&FRAG_NEEDED[..len]).err(),
                Some(ParseError::Truncated)
            );
        }
        // Without checksums, a cut quote is Truncated until 8 quoted payload bytes are there.
        for len in HEADER_LEN..FRAG_NEEDED.len() {
            assert_eq!(
                parse(&FRAG_NEEDED[..len], NO_VERIFY),
                Err(ParseError::Truncated),
                "len {len}"
            );
        }
        // An echo is consistent at every length: its data is whatever follows the header.
        let bytes = echo_request();
        for len in HEADER_LEN..bytes.len() {
            match parse(&bytes[..len], NO_VERIFY).unwrap() {
                Icmpv4Repr::EchoRequest { data, .. } => assert_eq!(data, &bytes[8..len]),
                other => panic!("{other:?}"),
            }
            assert_eq!(parse(&bytes[..len], VERIFY), Err(ParseError::Checksum), "len {len}");
        }
    }

    #[test]
    fn checksum_failures() {
        let mut bytes = echo_request();
        bytes[40] ^= 0x01;
        assert_eq!(parse(&bytes, VERIFY), Err(ParseError::Checksum));
        assert!(parse(&bytes, NO_VERIFY).is_ok());
        let mut bytes = FRAG_NEEDED;
        bytes[7] = 0x77; // MTU changed, checksum not
        assert_eq!(parse(&bytes, VERIFY), Err(ParseError::Checksum));
        // The quoted header's own checksum is never checked.
        let mut bytes = FRAG_NEEDED;
        bytes[18] ^= 0xff;
        assert!(matches!(parse(&bytes, NO_VERIFY), Ok(Icmpv4Repr::DstUnreachable { .. })));
    }

    #[test]
    fn malformed_and_unsupported() {
        let mut bytes = FRAG_NEEDED;
        bytes[8] = 0x65; // the quote is not IPv4
        assert_eq!(parse(&bytes, NO_VERIFY), Err(ParseError::Malformed));
        bytes[8] = 0x44; // IHL 4
        assert_eq!(parse(&bytes, NO_VERIFY), Err(ParseError::Malformed));
        for msg_type in [4, 5, 9, 10, 12, 13, 14, 255] {
            let mut bytes = echo_request();
            bytes[0] = msg_type;
            assert_eq!(parse(&bytes, NO_VERIFY), Err(ParseError::Unsupported), "type {msg_type}");
        }
    }
}
