//! Two backends wired to each other: what one transmits, the other receives.
//!
//! For tests of the event loop (two engines talking, or an engine and a test script) without a
//! kernel interface or privileges. Each end is one side of an AF_UNIX datagram socketpair, so
//! `poll_fd` works with epoll exactly like a TAP's, frames keep their boundaries, and a full
//! socket buffer exercises the backpressure path.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixDatagram;

use fbsd_tcp::wire::EthernetAddress;

use super::framed::{Framed, Verdict};
use super::{Backend, BackendError, BackendStats};

/// One end of a [`pair`].
#[derive(Debug)]
pub struct PairBackend {
    framed: Framed<UnixDatagram>,
    mac: EthernetAddress,
    mtu: usize,
}

/// Two connected ends named `pair0` and `pair1`, with MACs 02:00:00:00:00:01 and …:02.
pub fn pair(mtu: usize) -> io::Result<(PairBackend, PairBackend)> {
    let (a, b) = UnixDatagram::pair()?;
    let end = |sock: UnixDatagram, index: u8| -> io::Result<PairBackend> {
        sock.set_nonblocking(true)?;
        Ok(PairBackend {
            framed: Framed::new(sock, format!("pair{index}"), mtu, classify),
            mac: EthernetAddress([0x02, 0, 0, 0, 0, index + 1]),
            mtu,
        })
    };
    Ok((end(a, 0)?, end(b, 1)?))
}

fn classify(e: &io::Error) -> Verdict {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Verdict::Retry,
        _ if e.raw_os_error() == Some(libc::ENOBUFS) => Verdict::Retry,
        io::ErrorKind::ConnectionRefused | io::ErrorKind::NotConnected => Verdict::Gone,
        _ => Verdict::Fail,
    }
}

impl Backend for PairBackend {
    fn name(&self) -> &str {
        &self.framed.name
    }
    fn mac(&self) -> EthernetAddress {
        self.mac
    }
    fn mtu(&self) -> usize {
        self.mtu
    }
    fn link_up(&self) -> bool {
        true
    }
    fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.framed.io.as_fd())
    }
    fn receive(
        &mut self,
        max: usize,
        deliver: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, BackendError> {
        self.framed.receive(max, deliver)
    }
    fn transmit(
        &mut self,
        build: &mut dyn FnMut(&mut [u8]) -> Option<usize>,
    ) -> Result<usize, BackendError> {
        self.framed.transmit(build)
    }
    fn flush(&mut self) -> Result<(), BackendError> {
        self.framed.flush()
    }
    fn tx_blocked(&self) -> bool {
        self.framed.tx_blocked()
    }
    fn handle_poll_error(&mut self) -> Result<(), BackendError> {
        match self.framed.io.take_error() {
            Ok(None) => Ok(()),
            Ok(Some(source)) | Err(source) => {
                Err(BackendError::DeviceGone { iface: self.framed.name.clone(), source })
            }
        }
    }
    fn stats(&self) -> BackendStats {
        self.framed.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_cross_in_both_directions_with_their_boundaries() {
        let (mut a, mut b) = pair(1500).unwrap();
        assert_ne!(a.mac(), b.mac());
        let frames: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 60 + usize::from(i)]).collect();
        let mut out = frames.iter();
        let sent = a
            .transmit(&mut |buf| {
                let frame = out.next()?;
                buf[..frame.len()].copy_from_slice(frame);
                Some(frame.len())
            })
            .unwrap();
        assert_eq!(sent, 5);
        a.flush().unwrap();
        let mut got = Vec::new();
        assert_eq!(b.receive(3, &mut |f| got.push(f.to_vec())).unwrap(), 3);
        assert_eq!(b.receive(3, &mut |f| got.push(f.to_vec())).unwrap(), 2);
        assert_eq!(got, frames);
        assert_eq!(b.receive(3, &mut |_| panic!("nothing left")).unwrap(), 0);

        b.transmit(&mut {
            let mut once = Some(());
            move |buf: &mut [u8]| {
                once.take()?;
                buf[..64].fill(9);
                Some(64)
            }
        })
        .unwrap();
        let mut back = Vec::new();
        assert_eq!(a.receive(8, &mut |f| back.push(f.to_vec())).unwrap(), 1);
        assert_eq!(back, [vec![9; 64]]);
    }

    #[test]
    fn a_full_peer_blocks_transmit_without_losing_the_frame() {
        let (mut a, mut b) = pair(1500).unwrap();
        let mut built = 0u32;
        // Never ending: transmit must stop by itself when the socket buffer is full.
        let sent = a
            .transmit(&mut |buf| {
                built += 1;
                buf[..4].copy_from_slice(&built.to_be_bytes());
                buf[4..1514].fill(0);
                Some(1514)
            })
            .unwrap();
        assert!(a.tx_blocked());
        assert_eq!(sent as u32, built, "every built frame was accepted");
        // Drain the peer: the frames arrive in order, then the held one after a flush.
        let mut seq = Vec::new();
        let collect = |b: &mut PairBackend, seq: &mut Vec<u32>| {
            while b
                .receive(64, &mut |f| seq.push(u32::from_be_bytes(f[..4].try_into().unwrap())))
                .unwrap()
                > 0
            {}
        };
        collect(&mut b, &mut seq);
        a.flush().unwrap();
        assert!(!a.tx_blocked());
        collect(&mut b, &mut seq);
        assert_eq!(seq, (1..=built).collect::<Vec<_>>());
    }

    #[test]
    fn a_closed_peer_is_a_gone_device() {
        let (mut a, b) = pair(1500).unwrap();
        drop(b);
        let err = a.transmit(&mut |_| Some(60)).unwrap_err();
        assert!(matches!(err, BackendError::DeviceGone { .. }), "{err}");
    }
}
