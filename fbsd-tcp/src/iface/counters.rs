//! Counters per interface and protocol: what arrived, what left, and every reason a frame was
//! dropped. The engine never logs per packet; the daemon reads these.

/// Frame, byte and drop counters. All monotonic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Frames received.
    pub rx_frames: u64,
    /// Bytes received (whole frames).
    pub rx_bytes: u64,
    /// Frames transmitted.
    pub tx_frames: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Ethernet frames too short or not addressed to us.
    pub eth_dropped: u64,
    /// Frames of an EtherType we do not speak (IPv6, ...).
    pub eth_unknown_type: u64,
    /// ARP packets received / sent.
    pub arp_rx: u64,
    /// See `arp_rx`.
    pub arp_tx: u64,
    /// ARP packets malformed or not for us.
    pub arp_dropped: u64,
    /// Packets dropped because their next hop never resolved.
    pub arp_unresolved_drops: u64,
    /// IPv4 packets received.
    pub ip_rx: u64,
    /// IPv4 packets sent.
    pub ip_tx: u64,
    /// IPv4 headers malformed or truncated.
    pub ip_malformed: u64,
    /// IPv4 header checksum failures.
    pub ip_checksum_errors: u64,
    /// IPv4 packets for another host.
    pub ip_not_for_us: u64,
    /// IPv4 packets from a source no real host can have (our own address, broadcast,
    /// multicast, 0.0.0.0, loopback), discarded per RFC 1122 §3.2.1.3.
    pub ip_martian_sources: u64,
    /// IPv4 packets of an unknown protocol (answered with protocol unreachable).
    pub ip_unknown_protocol: u64,
    /// Fragments received.
    pub ip_frags_rx: u64,
    /// Datagrams reassembled.
    pub ip_reassembled: u64,
    /// Reassembly failures: overlap, timeout, memory cap, malformed.
    pub ip_reassembly_failures: u64,
    /// Fragments sent.
    pub ip_frags_tx: u64,
    /// Packets that needed fragmenting but had DF set, or had no route.
    pub ip_tx_dropped: u64,
    /// ICMP messages received / sent.
    pub icmp_rx: u64,
    /// See `icmp_rx`.
    pub icmp_tx: u64,
    /// ICMP messages malformed or with a bad checksum.
    pub icmp_dropped: u64,
    /// UDP datagrams received / sent.
    pub udp_rx: u64,
    /// See `udp_rx`.
    pub udp_tx: u64,
    /// UDP checksum failures.
    pub udp_checksum_errors: u64,
    /// UDP datagrams malformed.
    pub udp_malformed: u64,
    /// UDP datagrams to a port nobody listens on.
    pub udp_no_port: u64,
    /// UDP datagrams dropped because the socket's receive queue was full.
    pub udp_queue_full: u64,
    /// TCP segments received / sent.
    pub tcp_rx: u64,
    /// See `tcp_rx`.
    pub tcp_tx: u64,
    /// TCP checksum failures.
    pub tcp_checksum_errors: u64,
    /// TCP segments malformed.
    pub tcp_malformed: u64,
    /// TCP segments for no connection or listener (answered with RST).
    pub tcp_no_socket: u64,
    /// RSTs sent.
    pub tcp_rst_tx: u64,
    /// SYNs dropped because a listener's backlog was full.
    pub tcp_listen_overflows: u64,
    /// Retransmitted segments, all connections (closed ones included).
    pub tcp_retransmits: u64,
    /// Connections opened actively / passively.
    pub tcp_active_opens: u64,
    /// See `tcp_active_opens`.
    pub tcp_passive_opens: u64,
}
