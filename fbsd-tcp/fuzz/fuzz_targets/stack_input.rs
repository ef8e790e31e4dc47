//! A sequence of received frames into a whole `Stack`.
//!
//! The input is a list of records, each `[len_hi, len_lo, advance, frame...]`: a big-endian
//! frame length (taken modulo 2048, cut short at the end of the input), how far the clock
//! moves before the frame (in units of 8 ms, so that delayed-ACK, retransmit and ARP timers
//! fire within a few records), and the frame itself. The stack listens on TCP port 80 and UDP
//! port 53 at 10.0.0.2/24 and does not verify checksums, so random frames reach its sockets.
//! After every frame the target drives the stack the way stackd does: timers that are due,
//! events, accept and reads on the sockets, and every frame it wants to send. At the end the
//! clock jumps ahead a few times so that every timer (keepalive, TIME_WAIT, FIN_WAIT_2,
//! reassembly) gets its turn.
//!
//! Nothing may panic, and the stack must stop producing frames and timer work on its own.

#![no_main]

use std::net::{Ipv4Addr, SocketAddr};

use fbsd_tcp::time::{Duration, Instant};
use fbsd_tcp::wire::{ChecksumPolicy, EthernetAddress, Ipv4Cidr};
use fbsd_tcp::{AddressFamily, SocketHandle, SocketType, Stack, StackConfig};
use libfuzzer_sys::fuzz_target;

/// More frames than this from one poll round means the stack is looping.
const MAX_TRANSMITS_PER_ROUND: usize = 10_000;
/// More timer rounds than this at one instant means a timer re-arms itself at `now`.
const MAX_TIMER_ROUNDS: usize = 1_000;

struct Harness {
    stack: Stack,
    now: Instant,
    listener: SocketHandle,
    udp: SocketHandle,
    accepted: Vec<SocketHandle>,
    tx: Vec<u8>,
    rx: Vec<u8>,
}

impl Harness {
    fn new() -> Harness {
        let mac = EthernetAddress([0x02, 0, 0, 0, 0, 0x02]);
        let addr = Ipv4Cidr::new(Ipv4Addr::new(10, 0, 0, 2), 24).expect("valid prefix");
        let mut config = StackConfig::new(mac, addr, [0x5a; 16]);
        config.gateway = Some(Ipv4Addr::new(10, 0, 0, 1));
        config.checksum = ChecksumPolicy { fill_tx: true, verify_rx: false };
        let now = Instant::ZERO;
        let mut stack = Stack::new(config, now);

        let listener = stack.socket(AddressFamily::Inet, SocketType::Stream).expect("socket");
        stack.bind(listener, SocketAddr::from(([0, 0, 0, 0], 80))).expect("bind :80");
        stack.listen(listener, 16).expect("listen");
        let udp = stack.socket(AddressFamily::Inet, SocketType::Datagram).expect("socket");
        stack.bind(udp, SocketAddr::from(([0, 0, 0, 0], 53))).expect("bind :53");

        Harness {
            stack,
            now,
            listener,
            udp,
            accepted: Vec::new(),
            tx: vec![0; 2048],
            rx: vec![0; 2048],
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.run_timers();
    }

    fn run_timers(&mut self) {
        for _ in 0..MAX_TIMER_ROUNDS {
            match self.stack.poll_timeout() {
                Some(deadline) if deadline <= self.now => self.stack.handle_timeout(self.now),
                _ => return,
            }
        }
        panic!("timers still due at {:?} after {MAX_TIMER_ROUNDS} rounds", self.now);
    }

    /// What an application and the daemon do between frames.
    fn serve(&mut self) {
        while self.stack.poll_event().is_some() {}
        while let Ok((handle, _peer)) = self.stack.accept(self.listener) {
            self.accepted.push(handle);
        }
        for &handle in &self.accepted {
            // Read what arrived (and so open the window); errors just mean "nothing now".
            while let Ok(1..) = self.stack.recv(handle, &mut self.rx) {}
        }
        while self.stack.recv_from(self.udp, &mut self.rx).is_ok() {}
        for _ in 0..MAX_TRANSMITS_PER_ROUND {
            match self.stack.poll_transmit(self.now, &mut self.tx) {
                Some(len) => assert!(len <= self.tx.len()),
                None => return,
            }
        }
        panic!("stack still transmitting after {MAX_TRANSMITS_PER_ROUND} frames in one round");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut harness = Harness::new();
    let mut input = data;
    while let [len_hi, len_lo, advance, rest @ ..] = input {
        let len = usize::from(u16::from_be_bytes([*len_hi, *len_lo])) % 2048;
        let (frame, rest) = rest.split_at(len.min(rest.len()));
        harness.advance(Duration::from_millis(u64::from(*advance) * 8));
        harness.stack.receive_frame(harness.now, frame);
        harness.serve();
        input = rest;
    }
    for _ in 0..8 {
        harness.advance(Duration::from_secs(60));
        harness.serve();
    }
    // Whatever the input did, the stack must go quiet: once the application closes its
    // connections and the peer stays silent, every connection ends (retransmissions give up
    // within about 15 minutes, TIME-WAIT lasts a minute) and no timer stays due.
    let now = harness.now;
    for handle in std::mem::take(&mut harness.accepted) {
        let _ = harness.stack.close(now, handle);
    }
    for _ in 0..20 {
        harness.advance(Duration::from_secs(120));
        harness.serve();
    }
    assert_eq!(harness.stack.socket_count(), 2, "connections left behind: {:?}", harness.stack.sockets());
    assert!(harness.stack.poll_timeout().is_none_or(|deadline| deadline > harness.now), "a timer stays due");
});
