//! Finishing work the kernel left to hardware that is not there.
//!
//! A frame the local kernel sent through a virtual device (a veth peer, later a TAP with
//! offloads on) may carry a *partial* TCP or UDP checksum: the kernel wrote only the
//! pseudo-header sum and expected the NIC to complete it (CHECKSUM_PARTIAL; a packet socket
//! marks such frames TP_STATUS_CSUMNOTREADY). The engine verifies checksums, so the backend
//! completes them before delivery.

use std::net::Ipv4Addr;

use fbsd_tcp::wire::checksum;

use super::ETHERNET_HEADER;

const ETHERTYPE_IPV4: u16 = 0x0800;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// Recomputes the TCP or UDP checksum of an unfragmented IPv4 frame in place. Returns false
/// (and leaves the frame alone) for anything else or anything malformed: the engine will judge
/// and count it. Never panics, whatever the bytes.
pub(crate) fn complete_l4_checksum(frame: &mut [u8]) -> bool {
    let Some(ethertype) = frame.get(12..14) else { return false };
    if u16::from_be_bytes([ethertype[0], ethertype[1]]) != ETHERTYPE_IPV4 {
        return false;
    }
    let ip = &mut frame[ETHERNET_HEADER..];
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return false;
    }
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff;
    if header_len < 20 || total_len < header_len || total_len > ip.len() || fragment != 0 {
        return false;
    }
    let protocol = ip[9];
    let field = match protocol {
        PROTO_TCP => 16,
        PROTO_UDP => 6,
        _ => return false,
    };
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let segment = &mut ip[header_len..total_len];
    if segment.len() < field + 2 {
        return false;
    }
    segment[field..field + 2].fill(0);
    let pseudo = checksum::pseudo_header(src, dst, protocol, segment.len() as u32);
    let mut sum = checksum::checksum(&[pseudo, checksum::data(segment)]);
    if protocol == PROTO_UDP && sum == 0 {
        // RFC 768: a computed zero is sent as all ones (zero means "no checksum").
        sum = 0xffff;
    }
    segment[field..field + 2].copy_from_slice(&sum.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet + IPv4 + `l4` frame from 10.0.0.1 to 10.0.0.2.
    fn frame(protocol: u8, l4: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let total = (20 + l4.len()) as u16;
        f.extend_from_slice(&[
            0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, protocol, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ]);
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f.extend_from_slice(l4);
        f
    }

    fn verifies(f: &[u8]) -> bool {
        let ip = &f[14..];
        let pseudo = checksum::pseudo_header(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            ip[9],
            (ip.len() - 20) as u32,
        );
        checksum::verifies(&[pseudo, checksum::data(&ip[20..])])
    }

    #[test]
    fn completes_a_partial_udp_checksum() {
        // UDP 1234 -> 53, length 12, a partial (pseudo-header only) checksum, 4 bytes of data.
        let mut f = frame(PROTO_UDP, &[0x04, 0xd2, 0, 53, 0, 12, 0xab, 0xcd, 1, 2, 3, 4]);
        assert!(!verifies(&f));
        assert!(complete_l4_checksum(&mut f));
        assert!(verifies(&f));
    }

    #[test]
    fn completes_a_tcp_checksum() {
        let mut l4 = vec![0u8; 20];
        l4[12] = 0x50; // data offset 5
        l4[13] = 0x02; // SYN
        l4[16] = 0x12; // garbage where the checksum goes
        let mut f = frame(PROTO_TCP, &l4);
        assert!(complete_l4_checksum(&mut f));
        assert!(verifies(&f));
    }

    #[test]
    fn leaves_other_and_malformed_frames_alone() {
        let icmp = frame(1, &[8, 0, 0, 0, 0, 0, 0, 0]);
        let mut fragment = frame(PROTO_UDP, &[0; 12]);
        fragment[14 + 6] = 0x20; // MF
        let mut short_total = frame(PROTO_UDP, &[0; 12]);
        short_total[14 + 3] = 25; // total length leaves 5 bytes of UDP
        let mut long_total = frame(PROTO_UDP, &[0; 12]);
        long_total[14 + 3] = 200;
        let mut bad_ihl = frame(PROTO_UDP, &[0; 12]);
        bad_ihl[14] = 0x4f;
        for original in [icmp, fragment, short_total, long_total, bad_ihl, vec![0; 13], vec![]] {
            let mut f = original.clone();
            assert!(!complete_l4_checksum(&mut f));
            assert_eq!(f, original);
        }
    }

    #[test]
    fn never_panics_on_truncations_of_a_valid_frame() {
        let f = frame(PROTO_TCP, &[0u8; 40]);
        for len in 0..f.len() {
            let mut cut = f[..len].to_vec();
            let _ = complete_l4_checksum(&mut cut);
        }
    }
}
