//! Random segments and user calls against TCBs in every state: nothing may panic (sequence
//! arithmetic is debug-checked), `dispatch` must run dry, and the send sequence variables must
//! stay ordered. The segments are what the parser lets through, with numbers both near the
//! connection's and anywhere in the space.

use super::pair::Rng;
use super::*;

struct Fuzz {
    rng: Rng,
}

impl Fuzz {
    fn below(&mut self, n: u64) -> u64 {
        self.rng.next() % n
    }

    /// A sequence number near `around` most of the time, anywhere sometimes.
    fn seq_near(&mut self, around: SeqNumber) -> SeqNumber {
        match self.below(4) {
            0 => SeqNumber(self.rng.next() as u32),
            _ => {
                SeqNumber(around.0.wrapping_add((self.below(140_000) as u32).wrapping_sub(70_000)))
            }
        }
    }

    fn segment<'a>(&mut self, tcb: &Tcb, payload: &'a [u8]) -> TcpRepr<'a> {
        // Control flags are rare, so that connections live long enough to exercise the data
        // paths; the rest of the bits are random.
        let mut flags = TcpFlags(self.below(256) as u8 & !(SYN.0 | FIN.0 | RST.0));
        for control in [SYN, FIN, RST] {
            if self.below(40) == 0 {
                flags |= control;
            }
        }
        // The parser refuses these combinations.
        if flags.contains(SYN) {
            flags = TcpFlags(flags.0 & !(FIN.0 | RST.0));
        }
        let ack_number = flags.contains(ACK).then(|| self.seq_near(tcb.snd_una));
        let mut options = NO_OPTIONS;
        if self.below(3) == 0 {
            options.timestamp = Some((self.rng.next() as u32, self.rng.next() as u32));
        }
        if self.below(3) == 0 {
            let n = self.below(5) as usize;
            for block in &mut options.sack_blocks[..n] {
                let left = self.seq_near(tcb.snd_una);
                *block = SackBlock { left, right: left + self.below(20_000) as usize };
            }
            options.sack_len = n as u8;
        }
        if flags.contains(SYN) {
            options.mss = Some(self.below(70_000) as u16);
            options.window_scale = Some(self.below(20) as u8);
            options.sack_permitted = self.below(2) == 0;
        }
        let len = if self.below(2) == 0 { 0 } else { self.below(payload.len() as u64) as usize };
        TcpRepr {
            seq_number: self.seq_near(tcb.rcv_nxt),
            ack_number,
            flags,
            window_len: self.rng.next() as u16,
            options,
            payload: &payload[..len],
            ..SEND_TEMPL
        }
    }
}

#[track_caller]
fn check(tcb: &mut Tcb) {
    let mut emitted = 0;
    while tcb.emitted().is_some() {
        emitted += 1;
        assert!(emitted < 10_000, "dispatch does not run dry: {:?}", tcb.socket);
    }
    let s = &tcb.socket;
    assert!(s.snd_una <= s.snd_nxt && s.snd_nxt <= s.snd_max, "{s:?}");
    assert!(s.tx.len() <= s.tx.capacity() && s.rx.len() <= s.rx.capacity());
}

#[test]
fn random_segments_and_calls_never_break_a_tcb() {
    let payload = pattern(0, 3000);
    let mut fuzz = Fuzz { rng: Rng(2024) };
    let starts: [fn() -> Tcb; 4] = [syn_sent, syn_received, established, || {
        let config = config();
        let mut tcb = syn_received_with(&config, &options(&config), &their_full_syn(500));
        tcb.emitted_all();
        send!(
            tcb,
            TcpRepr {
                options: TcpOptions { timestamp: Some((501, 0)), ..NO_OPTIONS },
                ..SEND_TEMPL
            }
        );
        tcb
    }];
    for round in 0..400 {
        let mut tcb = starts[round % starts.len()]();
        for _ in 0..200 {
            match fuzz.below(20) {
                0 => {
                    let _ = tcb.send(&payload[..fuzz.below(3000) as usize]);
                }
                1 => {
                    let mut buf = [0; 2000];
                    let _ = tcb.recv(&mut buf);
                }
                2 => {
                    let by = Duration::from_millis(fuzz.below(5_000));
                    tcb.advance(by);
                }
                3 if fuzz.below(10) == 0 => {
                    let now = tcb.now;
                    match fuzz.below(4) {
                        0 => tcb.close(now),
                        1 => tcb.abort(now),
                        2 => {
                            let _ = tcb.shutdown_write(now);
                        }
                        _ => tcb.shutdown_read(),
                    }
                }
                4 => {
                    let now = tcb.now;
                    let mtu = 500 + fuzz.below(1100) as usize;
                    tcb.on_path_mtu(now, mtu);
                }
                _ => {
                    // Mostly segments that would pass: at RCV.NXT, acknowledging something sent.
                    let mut segment = fuzz.segment(&tcb, &payload);
                    if fuzz.below(2) == 0 {
                        segment.seq_number = tcb.rcv_nxt;
                        segment.flags = TcpFlags(segment.flags.0 & !(SYN.0 | RST.0)) | ACK;
                        let outstanding = tcb.snd_max - tcb.snd_una;
                        segment.ack_number =
                            Some(tcb.snd_una + fuzz.below(outstanding as u64 + 1) as usize);
                    }
                    let _ = tcb.deliver(&segment);
                }
            }
            check(&mut tcb);
            let _ = (tcb.readiness(), tcb.info(), tcb.poll_at());
        }
    }
}
