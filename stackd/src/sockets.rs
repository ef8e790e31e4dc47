//! Sessions, the sockets they hold, and the carrier data plane that moves their bytes.
//!
//! # Sessions and tokens
//! Every control connection that makes sockets belongs to one session (a process tree served by
//! `joyride run`, a container served by the OCI agent). Each socket has a 128-bit token drawn
//! from the kernel's random source; a request names a socket by token, and the token counts only
//! inside a session that holds it. When the last connection of a session closes, the session
//! ends: its sockets whose carriers the programs still hold live on until those close (as a
//! kernel socket lives as long as a descriptor of it), the rest are closed.
//!
//! # Carriers (DESIGN.md, "Trap path")
//! A socket's carrier is an AF_UNIX pair: the daemon keeps one end, the program gets the other.
//! - TCP, stream carrier. Until a socket connects, its carrier is prefilled so that it polls not
//!   writable; on connection the filler is discarded, which wakes pollers (non-blocking connect
//!   then works as with the kernel: EINPROGRESS, writable, SO_ERROR). Bytes the program writes
//!   move into the engine's send buffer, and received bytes into the carrier, only while the
//!   other side has room: a full send buffer stops reading the carrier, a full carrier stops
//!   reading the receive buffer, which keeps the receive window shut. A FIN from the peer is
//!   end-of-stream for the program; the program's `shutdown(SHUT_WR)` on its end (end-of-stream
//!   for the daemon) sends the FIN after its last byte. Closing every descriptor of the
//!   program's end closes the socket; with unread data it resets the connection, as the kernel
//!   does. A reset or failed connect closes the daemon's end: after a reset the program reads
//!   ECONNRESET (the daemon first writes a byte through the program's end, taken with
//!   pidfd_getfd from a process of the session, so its own end closes with unread data — see
//!   `procfd`), after a failed connect end-of-stream; writes fail with EPIPE; the error itself
//!   waits in SO_ERROR.
//! - TCP listener: the carrier is a doorbell. It turns readable (one byte) when connections wait;
//!   a client drains it *before* each [`Operation::Accept`], and the daemon rings again if more
//!   connections remain after it, so no wake-up is lost and several processes may share a
//!   listener.
//! - UDP, seqpacket carrier: one datagram per message. A connected socket carries bare
//!   datagrams; an unconnected one prefixes each with [`crate::proto::datagram`]'s header (the
//!   destination going out, the source coming in). A datagram the engine cannot send yet waits
//!   (one per socket) and stops the carrier being read; one the program's full carrier cannot
//!   take is dropped and counted, as a full socket buffer drops it.
//!
//! # Rings (DESIGN.md, "Fast path")
//! A program running the fast-path library asks for its TCP connections' rings
//! ([`Operation::Rings`]). A remote connection's rings have the daemon on their other side:
//! from then on the `remote_rings` module moves its payload between the engine and the rings,
//! with the carrier left as the socket's identity and doorbell (see that module). A local
//! connection's rings join the two programs (below).
//!
//! # Local connections (DESIGN.md, "Local path")
//! A TCP connect to one of the daemon's own addresses, on a port where a socket of any session
//! listens (on that address or the wildcard), runs no TCP at all: the connecting socket's
//! carrier *becomes* the connection. The connect completes at once (the filler is discarded, as
//! for a TCP connection that completes) and the daemon's end of the carrier waits in the
//! listener's queue of local connections, which rings the doorbell as a TCP connection does.
//! Accept hands that end to the acceptor and the daemon drops it: from then on the two programs
//! talk over one kernel unix stream pair, and the daemon only answers names and options from
//! its books. Bytes written before the accept wait in the pair itself.
//! - Ports: the connecting socket's engine socket stays, bound to the connection's local port
//!   (an ephemeral one unless the program bound one), so TCP cannot take that port meanwhile;
//!   the accepting side gets an engine socket too, unconnected, which only keeps its options.
//!   Neither is listed as such: `ss` shows the connection (ESTAB, marked local).
//! - Backlog: up to backlog + 1 queued connections are complete (as Linux's accept queue);
//!   later ones stay connecting (EINPROGRESS, not writable) until an accept makes room.
//! - A listener closed with local connections queued resets them: a complete one reads
//!   ECONNRESET, as after the kernel's RST; a connecting one fails with ECONNREFUSED.
//! - The daemon holds no descriptor of an accepted connection, so it notices a side's close by
//!   its socket's inode leaving `/proc/net/unix` (every descriptor of it closed): swept every
//!   second while local connections exist, before every report (`ss`, counters), and at the end
//!   of the owning session at the latest.
//! - Rings: on the first [`Operation::Rings`] from either side, a connection gets two
//!   shared-memory rings ([`crate::ring::RingRegion`], one per direction) for the fast-path
//!   library; they live as long as either side of the connection.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, OwnedFd};

use fbsd_tcp::socket::tcp::CongestionAlgorithm;
use fbsd_tcp::time::{Duration, Instant};
use fbsd_tcp::{Errno, Readiness, Shutdown, SocketHandle, Stack};
use mio::unix::SourceFd;
use mio::{Interest, Registry};

use crate::carrier::{Carrier, Datagram, Transfer};
use crate::control::Peer;
use crate::proto::{
    datagram, Family, Operation, OptionName, OptionValue, ProtocolError, Reply, ShutdownHow,
    SocketKind, SocketLine, TcpInfoReport, Token,
};
use crate::ring::RingRegion;

mod remote_rings;

/// Event-loop tokens of carriers start here (slot `n` is `CARRIER_TOKENS + n`).
pub const CARRIER_TOKENS: usize = 1 << 32;

/// Records of reset sockets kept for their SO_ERROR until the program closes them or its
/// session ends; past this many, the oldest go.
const MAX_DEAD_RECORDS: usize = 4096;

/// How often closed local connections are looked for while some exist.
const LOCAL_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The MSS a local connection reports (Linux's on loopback).
const LOCAL_MSS: u32 = 65483;

/// Scratch space: a whole UDP datagram with its header, and a large piece of filler.
const SCRATCH: usize = 65536 + datagram::HEADER_LEN;

/// What the event loop lends the service for one call.
#[derive(Debug)]
pub struct Context<'a> {
    /// The engine.
    pub stack: &'a mut Stack,
    /// Where carriers are watched.
    pub registry: &'a Registry,
    /// The engine's clock now.
    pub now: Instant,
}

/// The answer to a socket operation: a reply and the descriptors that travel with it.
#[derive(Debug)]
pub struct Answer {
    /// The outcome.
    pub result: Result<Reply, ProtocolError>,
    /// Descriptors for the client (a new socket's carrier).
    pub descriptors: Vec<OwnedFd>,
}

impl From<Result<Reply, ProtocolError>> for Answer {
    fn from(result: Result<Reply, ProtocolError>) -> Answer {
        Answer { result, descriptors: Vec::new() }
    }
}

/// Counters of the data plane, for the control socket and the logs.
#[derive(Debug, Default, Clone)]
pub struct ServiceCounters {
    /// Bytes moved from programs into the engine.
    pub carrier_in_bytes: u64,
    /// Bytes moved from the engine to programs.
    pub carrier_out_bytes: u64,
    /// Datagrams a program's full carrier could not take.
    pub datagrams_dropped: u64,
    /// Datagrams from programs with no valid address header, too long, or refused by the
    /// engine.
    pub datagrams_refused: u64,
    /// Carriers that could not be made (out of descriptors or memory).
    pub carrier_failures: u64,
    /// Bytes moved from programs' rings into the engine (remote connections, fast path).
    pub ring_in_bytes: u64,
    /// Bytes moved from the engine into programs' rings.
    pub ring_out_bytes: u64,
    /// Of those, bytes the engine put there straight from the frame (its receive buffer empty).
    pub ring_direct_bytes: u64,
    /// Doorbell bytes the daemon sent to programs reading rings.
    pub ring_bells: u64,
    /// Bytes on a carrier after its program switched to the ring that no doorbell accounts
    /// for (dropped).
    pub ring_stray_bytes: u64,
    /// Remote connections given rings.
    pub ring_sockets: u64,
    /// Turns of request/responses on remote connections with rings: payload that moved one
    /// way after it moved the other and that way was drained (a request sent once the answer
    /// before it was read, an answer delivered once the request was sent). The other side's
    /// turn usually comes within a round trip, so the event loop polls briefly after one
    /// (`--busy-poll`).
    pub ring_turns: u64,
    /// The same on carriers (the trap path).
    pub carrier_turns: u64,
}

#[derive(Debug)]
struct Session {
    token: Token,
    name: String,
    uid: u32,
    pids: Vec<u32>,
    connections: usize,
    sockets: HashMap<Token, usize>,
}

#[derive(Debug)]
struct Record {
    token: Token,
    /// The session shown as owner (`None` once it ended).
    owner: Option<u64>,
    /// Sessions that hold the token.
    members: usize,
    /// The engine's socket (`None` once released: a reset socket kept for SO_ERROR).
    handle: Option<SocketHandle>,
    family: Family,
    kind: SocketKind,
    listening: bool,
    carrier: Option<Carrier>,
    /// Prefill bytes still in the carrier.
    filler: usize,
    connecting: bool,
    /// The program shut down writing (end-of-stream read from the carrier).
    program_done_writing: bool,
    /// The daemon shut down the carrier's writing side (FIN or SHUT_RD).
    program_told_eof: bool,
    /// A listener's doorbell byte is out since the last Accept.
    bell_rung: bool,
    udp_connected: bool,
    /// A datagram the engine could not take yet.
    pending_datagram: Option<Vec<u8>>,
    /// An error the data plane took from the engine, for SO_ERROR.
    error: Option<i32>,
    /// The engine's readiness when the data plane last ran for this socket.
    last_readiness: Option<Readiness>,
    /// A listener's backlog and port, as listen(2) set them.
    backlog: usize,
    listen_port: u16,
    /// A listener's local connections not yet accepted, oldest first; the first `local_ready`
    /// are complete.
    local_queue: VecDeque<(usize, Token)>,
    local_ready: usize,
    /// This socket's side of a local connection.
    local: Option<LocalEnd>,
    /// A stream's bytes through the carrier: written for the program, and taken from it as
    /// data (the filler not counted). Rings made later start from these counts.
    sent_to_program: u64,
    taken_from_program: u64,
    /// A remote connection's shared-memory rings, once the program's fast path asked.
    rings: Option<Box<remote_rings::SocketRings>>,
    /// The program shut its side of the carrier (read-closed or hang-up event) since the ring
    /// data plane last looked for the end-of-stream behind the doorbells.
    carrier_news: bool,
    /// The connection failed while received bytes still waited for the program: the failure
    /// is reported once they are delivered.
    failing: bool,
    /// Which way the payload moved last (either plane).
    handovers: Handovers,
}

/// A direction of a connection's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    ToProgram,
    FromProgram,
}

/// Which way a connection's payload moved last, to tell the turns of a request/response:
/// in one, each side waits for the other, while a stream one way or both keeps the data
/// plane busy and never hands over.
#[derive(Debug, Default)]
struct Handovers {
    last: Option<Flow>,
}

impl Handovers {
    /// Whether payload moving `flow`-wards now would hand the connection over.
    fn would_turn(&self, flow: Flow) -> bool {
        self.last.is_some_and(|last| last != flow)
    }

    /// Payload moved `flow`-wards: true if that is a turn, that is, it last moved the other
    /// way and `drained` (asked only then) says that way is empty — the program read all it
    /// was given, or all it wrote is on its way. Whether the program wrote everything is
    /// looked at before the move (see `would_turn`): a program woken by the answer may write
    /// its next request before the daemon looks after.
    fn flowed(&mut self, flow: Flow, drained: impl FnOnce() -> bool) -> bool {
        let turn = self.would_turn(flow) && drained();
        self.last = Some(flow);
        turn
    }
}

/// One side of a local connection.
#[derive(Debug, Clone, Copy)]
struct LocalEnd {
    connection: u64,
    /// 0: the connecting side, 1: the accepting side.
    side: usize,
    local: SocketAddrV4,
    peer: SocketAddrV4,
    /// The inode of this side's unix socket (the program's descriptor of it).
    inode: u64,
    /// The listener it waits on (connecting side, until accepted).
    queued_on: Option<(usize, Token)>,
    /// The connect completed (the listener had room).
    established: bool,
}

/// A local connection's shared state.
#[derive(Debug, Default)]
struct LocalConnection {
    /// (slot, token) of the connecting and the accepting side while each lives.
    ends: [Option<(usize, Token)>; 2],
    /// Made on the first request: [connecting → accepting, accepting → connecting].
    rings: Option<[RingRegion; 2]>,
}

impl Record {
    /// A socket no session holds yet, without its carrier (see `SocketService::insert`).
    fn new(
        token: Token,
        handle: SocketHandle,
        family: Family,
        kind: SocketKind,
        filler: usize,
    ) -> Record {
        Record {
            token,
            owner: None,
            members: 0,
            handle: Some(handle),
            family,
            kind,
            listening: false,
            carrier: None,
            filler,
            connecting: false,
            program_done_writing: false,
            program_told_eof: false,
            bell_rung: false,
            udp_connected: false,
            pending_datagram: None,
            error: None,
            last_readiness: None,
            backlog: 0,
            listen_port: 0,
            local_queue: VecDeque::new(),
            local_ready: 0,
            local: None,
            sent_to_program: 0,
            taken_from_program: 0,
            rings: None,
            carrier_news: false,
            failing: false,
            handovers: Handovers::default(),
        }
    }
}

/// What the data plane decided about a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Keep,
    /// Both sides are done, or the program closed: close the engine's socket gracefully.
    Close,
    /// The program closed with data unread: reset the connection.
    Abort,
    /// The engine's connection failed or was reset: close the carrier, keep the error.
    Failed,
}

/// Random tokens from the kernel (read in blocks: one read per 256 tokens).
#[derive(Debug)]
struct TokenSource {
    random: File,
    block: Vec<u8>,
}

impl TokenSource {
    fn open() -> std::io::Result<TokenSource> {
        Ok(TokenSource { random: File::open("/dev/urandom")?, block: Vec::new() })
    }

    fn next(&mut self) -> Result<Token, ProtocolError> {
        if self.block.len() < 16 {
            self.block.resize(4096, 0);
            if let Err(error) = self.random.read_exact(&mut self.block) {
                self.block.clear();
                return Err(internal(format!("no randomness for a token: {error}")));
            }
        }
        let bytes: [u8; 16] = self.block[self.block.len() - 16..].try_into().expect("16 bytes");
        self.block.truncate(self.block.len() - 16);
        Ok(Token(u128::from_le_bytes(bytes)))
    }
}

/// The sessions, the sockets and the carrier data plane.
#[derive(Debug)]
pub struct SocketService {
    tokens: TokenSource,
    sessions: HashMap<u64, Session>,
    session_ids: HashMap<Token, u64>,
    /// Control connection key → its session.
    connections: HashMap<usize, u64>,
    records: Vec<Option<Record>>,
    free_slots: Vec<usize>,
    by_handle: HashMap<SocketHandle, usize>,
    by_carrier_name: HashMap<Vec<u8>, usize>,
    /// Transfer token → (slot, socket token).
    transfers: HashMap<Token, (usize, Token)>,
    dead: VecDeque<(usize, Token)>,
    next_session: u64,
    scratch: Vec<u8>,
    counters: ServiceCounters,
    /// Listening sockets by port, for local connects.
    listeners: HashMap<u16, Vec<usize>>,
    local_connections: HashMap<u64, LocalConnection>,
    next_local: u64,
    /// Sides of local connections by the inode of their program socket.
    by_local_inode: HashMap<u64, usize>,
    ring_capacity: usize,
    /// Advised to programs reading rings of remote connections (`RingRegion::answer_spin`).
    answer_spin: std::time::Duration,
    next_sweep: Option<std::time::Instant>,
}

impl SocketService {
    /// An empty service; fails only without /dev/urandom, which tokens need.
    pub fn new() -> std::io::Result<SocketService> {
        Ok(SocketService {
            tokens: TokenSource::open()?,
            sessions: HashMap::new(),
            session_ids: HashMap::new(),
            connections: HashMap::new(),
            records: Vec::new(),
            free_slots: Vec::new(),
            by_handle: HashMap::new(),
            by_carrier_name: HashMap::new(),
            transfers: HashMap::new(),
            dead: VecDeque::new(),
            next_session: 1,
            scratch: vec![0; SCRATCH],
            counters: ServiceCounters::default(),
            listeners: HashMap::new(),
            local_connections: HashMap::new(),
            next_local: 1,
            by_local_inode: HashMap::new(),
            ring_capacity: crate::ring::MAX_CAPACITY,
            answer_spin: std::time::Duration::ZERO,
            next_sweep: None,
        })
    }

    /// Sets the data capacity of the rings of local connections made from now on (a power of
    /// two within the ring module's bounds; the configuration checked it).
    pub fn set_ring_capacity(&mut self, capacity: usize) {
        self.ring_capacity = capacity;
    }

    /// Sets how long programs awaiting an answer on the rings of remote connections made from
    /// now on may poll them (the daemon's own busy-poll time; zero: not at all).
    pub fn set_answer_spin(&mut self, spin: std::time::Duration) {
        self.answer_spin = spin;
    }

    /// Local connections alive (either side still open).
    pub fn local_connection_count(&self) -> usize {
        self.local_connections.len()
    }

    /// Turns of request/responses so far, both planes (see [`ServiceCounters::ring_turns`]).
    pub fn turns(&self) -> u64 {
        self.counters.ring_turns + self.counters.carrier_turns
    }

    /// Data-plane counters.
    pub fn counters(&self) -> &ServiceCounters {
        &self.counters
    }

    /// Open sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Sockets the service holds (with a carrier, or kept for their error).
    pub fn socket_count(&self) -> usize {
        self.records.len() - self.free_slots.len()
    }

    /// The processes of the session owning the engine socket `handle`, as `ss` shows them.
    pub fn owner_of(&self, handle: SocketHandle) -> String {
        let owner = self
            .by_handle
            .get(&handle)
            .and_then(|&slot| self.records[slot].as_ref())
            .and_then(|record| record.owner);
        self.owner_text(owner)
    }

    fn owner_text(&self, owner: Option<u64>) -> String {
        owner.and_then(|id| self.sessions.get(&id)).map_or_else(String::new, |session| {
            let pids: Vec<String> = session.pids.iter().map(u32::to_string).collect();
            format!("pids={} ({})", pids.join(","), session.name)
        })
    }

    /// Whether `handle`'s payload moves through a program's shared-memory rings.
    pub fn has_rings(&self, handle: SocketHandle) -> bool {
        self.by_handle
            .get(&handle)
            .and_then(|&slot| self.records[slot].as_ref())
            .is_some_and(|record| record.rings.is_some())
    }

    /// Whether engine socket `handle` only stands in for a side of a local connection (its
    /// port and options): the listing shows the connection instead, from [`Self::local_lines`].
    pub fn is_local_stand_in(&self, handle: SocketHandle) -> bool {
        self.by_handle
            .get(&handle)
            .and_then(|&slot| self.records[slot].as_ref())
            .is_some_and(|record| record.local.is_some())
    }

    /// The local connections' sides, as `ss` lists sockets.
    pub fn local_lines(&self) -> Vec<SocketLine> {
        self.records
            .iter()
            .flatten()
            .filter_map(|record| Some((record, record.local?)))
            .map(|(record, end)| {
                let mut details = String::from("local (spliced: a unix stream pair, no TCP)");
                if end.queued_on.is_some() {
                    details.push_str(", not accepted yet");
                }
                SocketLine {
                    protocol: "tcp".into(),
                    state: if end.established { "ESTAB" } else { "SYN-SENT" }.into(),
                    recv_queue: 0,
                    send_queue: 0,
                    local: end.local.to_string(),
                    peer: end.peer.to_string(),
                    details,
                    owner: self.owner_text(record.owner),
                }
            })
            .collect()
    }

    /// Serves one session or socket operation from control connection `connection`.
    pub fn handle(
        &mut self,
        cx: &mut Context<'_>,
        connection: usize,
        peer: &Peer,
        op: Operation,
        descriptors: Vec<OwnedFd>,
    ) -> Answer {
        if !matches!(op, Operation::Identify) && !descriptors.is_empty() {
            return Err(ProtocolError::Descriptor {
                message: "this operation takes no descriptor".into(),
            })
            .into();
        }
        match op {
            Operation::OpenSession { name, pids } => {
                self.open_session(connection, peer, name, pids).into_answer()
            }
            Operation::JoinSession { session } => {
                self.join_session(connection, peer, session).into_answer()
            }
            Operation::Socket { family, kind, plane: _ } => {
                self.socket(cx, connection, family, kind).into_answer()
            }
            Operation::Accept { socket } => self.accept(cx, connection, socket).into_answer(),
            Operation::Identify => self.identify(connection, descriptors).into_answer(),
            Operation::Adopt { transfer } => self.adopt(connection, transfer).into_answer(),
            Operation::Share { socket } => self.share(connection, socket).into_answer(),
            Operation::Rings { socket } => self.rings(cx, connection, socket).into_answer(),
            Operation::Close { socket } => self
                .resolve(connection, socket)
                .map(|slot| {
                    self.release(cx, slot, Fate::Close);
                    Reply::Done
                })
                .into_answer(),
            op => self.socket_call(cx, connection, op).into_answer(),
        }
    }

    /// A control connection closed: its session ends with its last connection.
    pub fn connection_closed(&mut self, cx: &mut Context<'_>, connection: usize) {
        let Some(id) = self.connections.remove(&connection) else { return };
        let Some(session) = self.sessions.get_mut(&id) else { return };
        session.connections -= 1;
        if session.connections > 0 {
            return;
        }
        let session = self.sessions.remove(&id).expect("present");
        self.session_ids.remove(&session.token);
        tracing::debug!(name = session.name, sockets = session.sockets.len(), "session ends");
        for (token, slot) in session.sockets {
            let Some(record) = self.record_mut(slot, token) else { continue };
            record.members -= 1;
            if record.owner == Some(id) {
                record.owner = None;
            }
            // A socket whose carrier the program still holds lives on until it closes.
            if record.members == 0 && record.carrier.is_none() {
                self.release(cx, slot, Fate::Close);
            }
        }
    }

    /// The carrier in `slot` (an event-loop token minus [`CARRIER_TOKENS`]) has news; `closed`:
    /// the event said the program shut its side (read-closed, hang-up or error).
    pub fn carrier_event(&mut self, cx: &mut Context<'_>, slot: usize, closed: bool) {
        if closed {
            if let Some(record) = self.records.get_mut(slot).and_then(Option::as_mut) {
                record.carrier_news = true;
            }
        }
        self.pump(cx, slot);
    }

    /// Serves the engine's readiness changes (call after the engine ran).
    ///
    /// The engine reports every socket it touched, including those the data plane itself just
    /// read or wrote; a socket whose readiness is what it was when the data plane last ran for
    /// it has nothing new (the data plane always goes as far as the carrier and the engine let
    /// it, so more of the same waits on the other side's edge), and is skipped. Without this,
    /// each pass would schedule the next one and the daemon would never sleep.
    pub fn engine_events(&mut self, cx: &mut Context<'_>) {
        // The bound keeps one turn finite whatever the engine reports.
        for _ in 0..65536 {
            let Some(handle) = cx.stack.poll_event() else { return };
            let Some(&slot) = self.by_handle.get(&handle) else { continue };
            let ready = cx.stack.readiness(handle).ok();
            let record = self.records[slot].as_ref().expect("indexed slot");
            if ready.is_some() && record.last_readiness == ready {
                continue;
            }
            self.pump(cx, slot);
        }
    }

    // ---- sessions ----

    fn open_session(
        &mut self,
        connection: usize,
        peer: &Peer,
        name: String,
        pids: Vec<u32>,
    ) -> Result<Reply, ProtocolError> {
        if self.connections.contains_key(&connection) {
            return Err(ProtocolError::SessionExists);
        }
        let token = self.tokens.next()?;
        let id = self.next_session;
        self.next_session += 1;
        let pids = if pids.is_empty() { vec![peer.pid as u32] } else { pids };
        tracing::debug!(name, ?pids, uid = peer.uid, "session opens");
        self.sessions.insert(
            id,
            Session { token, name, uid: peer.uid, pids, connections: 1, sockets: HashMap::new() },
        );
        self.session_ids.insert(token, id);
        self.connections.insert(connection, id);
        Ok(Reply::Session { session: token })
    }

    fn join_session(
        &mut self,
        connection: usize,
        peer: &Peer,
        token: Token,
    ) -> Result<Reply, ProtocolError> {
        if self.connections.contains_key(&connection) {
            return Err(ProtocolError::SessionExists);
        }
        let id = *self.session_ids.get(&token).ok_or(ProtocolError::UnknownSession)?;
        let session = self.sessions.get_mut(&id).ok_or(ProtocolError::UnknownSession)?;
        if peer.uid != session.uid && peer.uid != 0 {
            return Err(ProtocolError::UnknownSession);
        }
        session.connections += 1;
        self.connections.insert(connection, id);
        Ok(Reply::Session { session: token })
    }

    fn session_of(&self, connection: usize) -> Result<u64, ProtocolError> {
        self.connections.get(&connection).copied().ok_or(ProtocolError::NoSession)
    }

    /// The slot of `socket` if this connection's session holds it.
    fn resolve(&self, connection: usize, socket: Token) -> Result<usize, ProtocolError> {
        let id = self.session_of(connection)?;
        let slot = *self.sessions[&id].sockets.get(&socket).ok_or(ProtocolError::UnknownSocket)?;
        // A stale entry (the socket was released meanwhile) names nothing.
        self.records
            .get(slot)
            .and_then(Option::as_ref)
            .filter(|record| record.token == socket)
            .map(|_| slot)
            .ok_or(ProtocolError::UnknownSocket)
    }

    fn record_mut(&mut self, slot: usize, token: Token) -> Option<&mut Record> {
        self.records.get_mut(slot)?.as_mut().filter(|record| record.token == token)
    }

    fn join(&mut self, id: u64, slot: usize) -> Reply {
        let record = self.records[slot].as_mut().expect("live slot");
        let session = self.sessions.get_mut(&id).expect("live session");
        if session.sockets.insert(record.token, slot).is_none() {
            record.members += 1;
            record.owner.get_or_insert(id);
        }
        Reply::Identified {
            socket: record.token,
            family: record.family,
            kind: record.kind,
            listening: record.listening,
        }
    }

    fn identify(
        &mut self,
        connection: usize,
        descriptors: Vec<OwnedFd>,
    ) -> Result<Reply, ProtocolError> {
        let id = self.session_of(connection)?;
        let [carrier] = <[OwnedFd; 1]>::try_from(descriptors).map_err(|_| {
            ProtocolError::Descriptor { message: "identify takes exactly one carrier".into() }
        })?;
        // A side of a local connection is known by its socket itself: the descriptor that
        // came with the request is the proof of holding it.
        if let Ok(stat) = nix::sys::stat::fstat(&carrier) {
            if let Some(&slot) = self.by_local_inode.get(&stat.st_ino) {
                if self.records[slot].as_ref().is_some_and(|r| r.carrier.is_none()) {
                    return Ok(self.join(id, slot));
                }
            }
        }
        let name = crate::carrier::identify(carrier.as_fd()).ok_or_else(|| {
            ProtocolError::Descriptor { message: "not a carrier of this daemon".into() }
        })?;
        let slot = *self.by_carrier_name.get(&name).ok_or(ProtocolError::UnknownSocket)?;
        Ok(self.join(id, slot))
    }

    fn share(&mut self, connection: usize, socket: Token) -> Result<Reply, ProtocolError> {
        let slot = self.resolve(connection, socket)?;
        let transfer = self.tokens.next()?;
        self.transfers.insert(transfer, (slot, socket));
        Ok(Reply::Transfer { transfer })
    }

    fn adopt(&mut self, connection: usize, transfer: Token) -> Result<Reply, ProtocolError> {
        let id = self.session_of(connection)?;
        let (slot, socket) =
            self.transfers.remove(&transfer).ok_or(ProtocolError::UnknownSocket)?;
        self.record_mut(slot, socket).ok_or(ProtocolError::UnknownSocket)?;
        Ok(self.join(id, slot))
    }

    // ---- socket calls ----

    fn socket(
        &mut self,
        cx: &mut Context<'_>,
        connection: usize,
        family: Family,
        kind: SocketKind,
    ) -> Result<(Reply, Vec<OwnedFd>), ProtocolError> {
        let id = self.session_of(connection)?;
        let engine_family = match family {
            Family::Inet => fbsd_tcp::AddressFamily::Inet,
            Family::Inet6 => fbsd_tcp::AddressFamily::Inet6,
        };
        let engine_kind = match kind {
            SocketKind::Stream => fbsd_tcp::SocketType::Stream,
            SocketKind::Datagram => fbsd_tcp::SocketType::Datagram,
        };
        let handle = cx.stack.socket(engine_family, engine_kind).map_err(errno)?;
        let made = match kind {
            SocketKind::Stream => Carrier::stream().and_then(|(carrier, program_end)| {
                let filler = carrier.prefill(program_end.as_fd())?;
                Ok((carrier, program_end, filler))
            }),
            SocketKind::Datagram => Carrier::datagram().map(|(c, p)| (c, p, 0)),
        };
        let (carrier, program_end, filler) = match made {
            Ok(made) => made,
            Err(error) => {
                let _ = cx.stack.close(cx.now, handle);
                self.counters.carrier_failures += 1;
                return Err(carrier_error(error));
            }
        };
        let token = self.tokens.next()?;
        let record = Record::new(token, handle, family, kind, filler);
        let slot = self.insert(cx, record, carrier)?;
        self.join(id, slot);
        Ok((Reply::Socket { socket: token }, vec![program_end]))
    }

    /// Stores a record with its carrier, watched by the event loop.
    fn insert(
        &mut self,
        cx: &mut Context<'_>,
        mut record: Record,
        carrier: Carrier,
    ) -> Result<usize, ProtocolError> {
        let slot = self.free_slots.pop().unwrap_or_else(|| {
            self.records.push(None);
            self.records.len() - 1
        });
        let registered = cx.registry.register(
            &mut SourceFd(&carrier.raw_fd()),
            mio::Token(CARRIER_TOKENS + slot),
            Interest::READABLE | Interest::WRITABLE,
        );
        if let Err(error) = registered {
            self.free_slots.push(slot);
            if let Some(handle) = record.handle {
                let _ = cx.stack.close(cx.now, handle);
            }
            return Err(internal(format!("cannot watch a carrier: {error}")));
        }
        if let Some(handle) = record.handle {
            self.by_handle.insert(handle, slot);
        }
        self.by_carrier_name.insert(carrier.name().to_vec(), slot);
        record.carrier = Some(carrier);
        self.records[slot] = Some(record);
        Ok(slot)
    }

    fn accept(
        &mut self,
        cx: &mut Context<'_>,
        connection: usize,
        socket: Token,
    ) -> Result<(Reply, Vec<OwnedFd>), ProtocolError> {
        let id = self.session_of(connection)?;
        let slot = self.resolve(connection, socket)?;
        let record = self.records[slot].as_mut().expect("resolved");
        let listener = record.handle.ok_or(ProtocolError::Errno { errno: libc::EINVAL })?;
        if !record.listening {
            return Err(ProtocolError::Errno { errno: libc::EINVAL });
        }
        // The client drained the doorbell before asking; ring again below if more wait.
        record.bell_rung = false;
        let family = record.family;
        if record.local_ready > 0 {
            return self.accept_local(cx, id, slot);
        }
        let accepted = cx.stack.accept(listener);
        self.pump(cx, slot);
        let (handle, peer) = accepted.map_err(errno)?;
        let (carrier, program_end) = match Carrier::stream() {
            Ok(pair) => pair,
            Err(error) => {
                self.counters.carrier_failures += 1;
                let _ = cx.stack.close(cx.now, handle);
                return Err(carrier_error(error));
            }
        };
        let token = self.tokens.next()?;
        let record = Record::new(token, handle, family, SocketKind::Stream, 0);
        let child = self.insert(cx, record, carrier)?;
        self.join(id, child);
        // Data (or a FIN) may have arrived with the handshake.
        self.pump(cx, child);
        Ok((Reply::Accepted { socket: token, peer }, vec![program_end]))
    }

    /// The calls that act on one socket and need no descriptor.
    fn socket_call(
        &mut self,
        cx: &mut Context<'_>,
        connection: usize,
        op: Operation,
    ) -> Result<Reply, ProtocolError> {
        let socket = match &op {
            Operation::Bind { socket, .. }
            | Operation::Listen { socket, .. }
            | Operation::Connect { socket, .. }
            | Operation::Shutdown { socket, .. }
            | Operation::SetOption { socket, .. }
            | Operation::GetOption { socket, .. }
            | Operation::LocalAddress { socket }
            | Operation::PeerAddress { socket }
            | Operation::Readiness { socket } => *socket,
            other => {
                return Err(ProtocolError::BadRequest {
                    message: format!("{other:?} is not a socket operation"),
                })
            }
        };
        let slot = self.resolve(connection, socket)?;
        if self.records[slot].as_ref().is_some_and(|record| record.local.is_some()) {
            return self.local_call(cx, slot, op);
        }
        if let Operation::Connect { addr, .. } = &op {
            let record = self.records[slot].as_ref().expect("resolved");
            if record.kind == SocketKind::Stream && record.handle.is_some() {
                let own = cx.stack.config().addr.addr;
                let to = ipv4_of(*addr);
                if *to.ip() == own {
                    return self.connect_local(cx, slot, to);
                }
            }
        }
        let record = self.records[slot].as_mut().expect("resolved");
        // A socket reset earlier keeps only its error and its type.
        let Some(handle) = record.handle else {
            return match op {
                Operation::GetOption { name: OptionName::Error, .. } => Ok(Reply::Option {
                    value: OptionValue::Int(record.error.take().unwrap_or(0).into()),
                }),
                Operation::GetOption { name: OptionName::Type, .. } => {
                    Ok(Reply::Option { value: OptionValue::Int(socket_type(record.kind)) })
                }
                _ => Err(ProtocolError::Errno { errno: libc::ENOTCONN }),
            };
        };
        let stack = &mut *cx.stack;
        let now = cx.now;
        let reply = match op {
            Operation::Bind { addr, .. } => {
                stack.bind(handle, addr).map_err(errno)?;
                Reply::Done
            }
            Operation::Listen { backlog, .. } => {
                if record.kind != SocketKind::Stream {
                    return Err(ProtocolError::Errno { errno: libc::EOPNOTSUPP });
                }
                stack.listen(handle, backlog as usize).map_err(errno)?;
                record.backlog = backlog.max(1) as usize;
                if !record.listening {
                    record.listen_port = stack.local_addr(handle).map_or(0, |a| a.port());
                    self.listeners.entry(record.listen_port).or_default().push(slot);
                }
                record.listening = true;
                if let Some(carrier) = &record.carrier {
                    if let Transfer::Moved(n) = carrier.discard(record.filler, &mut self.scratch) {
                        record.filler -= n;
                    }
                }
                Reply::Done
            }
            Operation::Connect { addr, .. } => match stack.connect(now, handle, addr) {
                Ok(()) => {
                    record.udp_connected = record.kind == SocketKind::Datagram;
                    Reply::Done
                }
                Err(Errno::InProgress) => {
                    record.connecting = true;
                    return Err(ProtocolError::Errno { errno: libc::EINPROGRESS });
                }
                Err(error) => return Err(errno(error)),
            },
            Operation::Shutdown { how, .. } => {
                shutdown(stack, now, record, handle, how)?;
                Reply::Done
            }
            Operation::SetOption { name, value, .. } => {
                set_option(stack, now, handle, name, value)?;
                Reply::Done
            }
            Operation::GetOption { name, .. } => {
                Reply::Option { value: get_option(stack, record, handle, name)? }
            }
            Operation::LocalAddress { .. } => {
                Reply::Address { addr: stack.local_addr(handle).map_err(errno)? }
            }
            Operation::PeerAddress { .. } => {
                Reply::Address { addr: stack.peer_addr(handle).map_err(errno)? }
            }
            Operation::Readiness { .. } => {
                let ready = stack.readiness(handle).map_err(errno)?;
                Reply::Readiness {
                    readable: ready.readable,
                    writable: ready.writable,
                    read_closed: ready.read_closed,
                    hangup: ready.hangup,
                    error: ready.error,
                }
            }
            _ => unreachable!("matched above"),
        };
        // A larger backlog may complete local connections that waited for room.
        self.admit(cx, slot);
        self.pump(cx, slot);
        Ok(reply)
    }

    // ---- local connections ----

    /// A listening socket of any session that takes connections to `to` (one of our own
    /// addresses): bound to that address or the wildcard.
    fn find_listener(&self, cx: &Context<'_>, to: SocketAddrV4) -> Option<usize> {
        let slots = self.listeners.get(&to.port())?;
        slots.iter().copied().find(|&slot| {
            let Some(record) = self.records[slot].as_ref() else { return false };
            record.listening
                && record.handle.is_some_and(|handle| {
                    cx.stack.local_addr(handle).is_ok_and(|local| {
                        let ip = *ipv4_of(local).ip();
                        ip.is_unspecified() || ip == *to.ip()
                    })
                })
        })
    }

    /// connect(2) to our own address: splices the socket to a local listener (see the module
    /// documentation), or fails as the kernel does when no one listens there.
    fn connect_local(
        &mut self,
        cx: &mut Context<'_>,
        slot: usize,
        to: SocketAddrV4,
    ) -> Result<Reply, ProtocolError> {
        let fail = |errno| Err(ProtocolError::Errno { errno });
        let own = cx.stack.config().addr.addr;
        let record = self.records[slot].as_ref().expect("resolved");
        let handle = record.handle.expect("checked by the caller");
        if record.listening {
            return fail(libc::EINVAL);
        }
        if record.connecting {
            return fail(libc::EALREADY);
        }
        if cx.stack.peer_addr(handle).is_ok() {
            return fail(libc::EISCONN);
        }
        let Some(inode) = record.carrier.as_ref().map(Carrier::program_inode) else {
            return fail(libc::EBADF);
        };
        let Some(listener) = self.find_listener(cx, to) else {
            return fail(libc::ECONNREFUSED);
        };
        // The connection's port comes from the engine's port space, and stays reserved there
        // while the connection lives.
        let bound = cx.stack.local_addr(handle).ok().map(ipv4_of).filter(|a| a.port() != 0);
        let port = match bound {
            Some(local) => local.port(),
            None => {
                let any_port = socket_address(record.family, SocketAddrV4::new(own, 0));
                cx.stack.bind(handle, any_port).map_err(errno)?;
                ipv4_of(cx.stack.local_addr(handle).map_err(errno)?).port()
            }
        };
        let local = SocketAddrV4::new(own, port);
        let connection = self.next_local;
        self.next_local += 1;
        let listener_token = self.records[listener].as_ref().expect("found").token;
        let record = self.records[slot].as_mut().expect("resolved");
        record.local = Some(LocalEnd {
            connection,
            side: 0,
            local,
            peer: to,
            inode,
            queued_on: Some((listener, listener_token)),
            established: false,
        });
        let ends = [Some((slot, record.token)), None];
        self.local_connections.insert(connection, LocalConnection { ends, rings: None });
        self.by_local_inode.insert(inode, slot);
        self.next_sweep.get_or_insert_with(|| std::time::Instant::now() + LOCAL_SWEEP_INTERVAL);
        let entry = (slot, self.records[slot].as_ref().expect("resolved").token);
        self.records[listener].as_mut().expect("found").local_queue.push_back(entry);
        self.admit(cx, listener);
        self.pump(cx, listener);
        tracing::trace!(%local, %to, "local connection");
        let established = self.records[slot]
            .as_ref()
            .and_then(|record| record.local)
            .is_some_and(|end| end.established);
        if established {
            Ok(Reply::Done)
        } else {
            fail(libc::EINPROGRESS)
        }
    }

    /// Completes the local connections queued on listener `slot` while its backlog has room.
    fn admit(&mut self, cx: &mut Context<'_>, slot: usize) {
        let _ = cx;
        loop {
            let Some(listener) = self.records.get_mut(slot).and_then(Option::as_mut) else {
                return;
            };
            let room = listener.backlog + 1;
            if listener.local_ready >= room || listener.local_ready >= listener.local_queue.len() {
                return;
            }
            let (queued, token) = listener.local_queue[listener.local_ready];
            listener.local_ready += 1;
            let scratch = &mut self.scratch;
            let Some(client) =
                self.records.get_mut(queued).and_then(Option::as_mut).filter(|r| r.token == token)
            else {
                continue;
            };
            if let Some(carrier) = &client.carrier {
                // Discarding the filler is what makes the connecting program's end writable.
                if let Transfer::Moved(n) = carrier.discard(client.filler, scratch) {
                    client.filler -= n;
                }
            }
            client.connecting = false;
            if let Some(end) = &mut client.local {
                end.established = true;
            }
        }
    }

    /// accept(2) of the oldest complete local connection on listener `slot`: the daemon's end
    /// of the connecting socket's carrier goes to the acceptor.
    fn accept_local(
        &mut self,
        cx: &mut Context<'_>,
        id: u64,
        slot: usize,
    ) -> Result<(Reply, Vec<OwnedFd>), ProtocolError> {
        let family = self.records[slot].as_ref().expect("resolved").family;
        let engine_family = match family {
            Family::Inet => fbsd_tcp::AddressFamily::Inet,
            Family::Inet6 => fbsd_tcp::AddressFamily::Inet6,
        };
        // Everything that can fail comes before the connection leaves the queue.
        let token = self.tokens.next()?;
        let handle = cx.stack.socket(engine_family, fbsd_tcp::SocketType::Stream).map_err(errno)?;
        let listener = self.records[slot].as_mut().expect("resolved");
        let (queued, queued_token) = listener.local_queue.pop_front().expect("local_ready > 0");
        listener.local_ready -= 1;
        let client = self.record_mut(queued, queued_token).expect("queued sockets are live");
        let mut end = client.local.expect("queued sockets are local");
        end.queued_on = None;
        client.local = Some(end);
        let carrier = client.carrier.take().expect("queued sockets keep their carrier");
        let _ = cx.registry.deregister(&mut SourceFd(&carrier.raw_fd()));
        self.by_carrier_name.remove(carrier.name());
        let inode = carrier.inode();
        let handed = carrier.hand_over();
        let mut record = Record::new(token, handle, family, SocketKind::Stream, 0);
        record.local = Some(LocalEnd {
            connection: end.connection,
            side: 1,
            local: end.peer,
            peer: end.local,
            inode,
            queued_on: None,
            established: true,
        });
        let accepted = self.free_slots.pop().unwrap_or_else(|| {
            self.records.push(None);
            self.records.len() - 1
        });
        self.records[accepted] = Some(record);
        self.by_handle.insert(handle, accepted);
        self.by_local_inode.insert(inode, accepted);
        if let Some(connection) = self.local_connections.get_mut(&end.connection) {
            connection.ends[1] = Some((accepted, token));
        }
        self.join(id, accepted);
        self.admit(cx, slot);
        self.pump(cx, slot);
        match handed {
            Ok(fd) => Ok((
                Reply::Accepted { socket: token, peer: socket_address(family, end.local) },
                vec![fd],
            )),
            Err(error) => {
                // The end is gone (closed with the error): both sides read end-of-stream.
                self.release(cx, accepted, Fate::Close);
                Err(carrier_error(error))
            }
        }
    }

    /// Detaches a released side from its connection and its listener's queue.
    fn unlink_local(&mut self, cx: &mut Context<'_>, slot: usize, end: LocalEnd) {
        if self.by_local_inode.get(&end.inode) == Some(&slot) {
            self.by_local_inode.remove(&end.inode);
        }
        if let Some((listener, token)) = end.queued_on {
            if let Some(record) = self.record_mut(listener, token) {
                if let Some(at) = record.local_queue.iter().position(|&(s, _)| s == slot) {
                    record.local_queue.remove(at);
                    if at < record.local_ready {
                        record.local_ready -= 1;
                    }
                }
                self.admit(cx, listener);
            }
        }
        if let Some(connection) = self.local_connections.get_mut(&end.connection) {
            connection.ends[end.side] = None;
            if connection.ends.iter().all(Option::is_none) {
                // The rings' mappings and memfds go with it.
                self.local_connections.remove(&end.connection);
            }
        }
        if self.by_local_inode.is_empty() {
            self.next_sweep = None;
        }
    }

    /// The calls on a side of a local connection, answered from the daemon's books.
    fn local_call(
        &mut self,
        cx: &mut Context<'_>,
        slot: usize,
        op: Operation,
    ) -> Result<Reply, ProtocolError> {
        let fail = |errno| Err(ProtocolError::Errno { errno });
        let record = self.records[slot].as_mut().expect("resolved");
        let end = record.local.expect("a local side");
        let family = record.family;
        let Some(handle) = record.handle else { return fail(libc::ENOTCONN) };
        match op {
            Operation::Connect { .. } => {
                fail(if end.established { libc::EISCONN } else { libc::EALREADY })
            }
            Operation::Bind { .. } | Operation::Listen { .. } => fail(libc::EINVAL),
            Operation::LocalAddress { .. } => {
                Ok(Reply::Address { addr: socket_address(family, end.local) })
            }
            Operation::PeerAddress { .. } | Operation::Shutdown { .. } if !end.established => {
                fail(libc::ENOTCONN)
            }
            Operation::PeerAddress { .. } => {
                Ok(Reply::Address { addr: socket_address(family, end.peer) })
            }
            // The programs shut the pair down themselves (the client shuts its end's writing
            // side down after this answer).
            Operation::Shutdown { .. } => Ok(Reply::Done),
            Operation::GetOption { name: OptionName::Error, .. } => Ok(Reply::Option {
                value: OptionValue::Int(record.error.take().unwrap_or(0).into()),
            }),
            Operation::GetOption { name: OptionName::TcpInfo, .. } => {
                Ok(Reply::Option { value: OptionValue::TcpInfo(local_tcp_info(end.established)) })
            }
            Operation::GetOption { name, .. } => {
                Ok(Reply::Option { value: get_option(cx.stack, record, handle, name)? })
            }
            Operation::SetOption { name, value, .. } => {
                set_option(cx.stack, cx.now, handle, name, value)?;
                Ok(Reply::Done)
            }
            Operation::Readiness { .. } => Ok(Reply::Readiness {
                readable: false,
                writable: end.established,
                read_closed: false,
                hangup: false,
                error: false,
            }),
            other => Err(ProtocolError::BadRequest {
                message: format!("{other:?} is not a socket operation"),
            }),
        }
    }

    /// The rings of `socket`'s connection: (the ring it reads, the ring it writes), made on the
    /// first request (from either side of a local connection). ENOPROTOOPT for a socket that
    /// carries no stream (unconnected, listening, UDP), which keeps the carrier.
    fn rings(
        &mut self,
        cx: &mut Context<'_>,
        connection: usize,
        socket: Token,
    ) -> Result<(Reply, Vec<OwnedFd>), ProtocolError> {
        let not_local = ProtocolError::Errno { errno: libc::ENOPROTOOPT };
        let slot = self.resolve(connection, socket)?;
        let record = self.records[slot].as_ref().ok_or(not_local.clone())?;
        if record.local.is_none() {
            return self.remote_rings(cx, slot);
        }
        let end = record.local.filter(|end| end.established).ok_or(not_local.clone())?;
        let capacity = self.ring_capacity;
        let shared = self.local_connections.get_mut(&end.connection).ok_or(not_local)?;
        if shared.rings.is_none() {
            let make = || {
                RingRegion::create(capacity).map_err(|error| match error {
                    crate::ring::RingError::Io(error) => carrier_error(error),
                    other => internal(format!("cannot make a ring: {other}")),
                })
            };
            shared.rings = Some([make()?, make()?]);
        }
        let rings = shared.rings.as_ref().expect("made above");
        let copy = |ring: &RingRegion| {
            // Regions stackd creates keep their descriptor (only a mapper may close it).
            let fd = ring.fd().ok_or_else(|| internal("a ring lost its descriptor".into()))?;
            fd.try_clone_to_owned().map_err(carrier_error)
        };
        let (rx, tx) = (copy(&rings[1 - end.side])?, copy(&rings[end.side])?);
        Ok((Reply::Rings { capacity }, vec![rx, tx]))
    }

    /// The rings of a TCP connection to a remote peer (connected or connecting), made on the
    /// first request; the data plane moves its bytes through them from then on.
    fn remote_rings(
        &mut self,
        cx: &mut Context<'_>,
        slot: usize,
    ) -> Result<(Reply, Vec<OwnedFd>), ProtocolError> {
        let not_a_stream = ProtocolError::Errno { errno: libc::ENOPROTOOPT };
        let record = self.records[slot].as_mut().ok_or(not_a_stream.clone())?;
        let handle = record.handle.ok_or(not_a_stream.clone())?;
        let carrying = record.kind == SocketKind::Stream
            && !record.listening
            && record.carrier.is_some()
            && (record.connecting || cx.stack.peer_addr(handle).is_ok());
        if !carrying {
            return Err(not_a_stream);
        }
        if record.rings.is_none() {
            let rings =
                remote_rings::SocketRings::new(self.ring_capacity, self.answer_spin, record)?;
            record.rings = Some(Box::new(rings));
            self.counters.ring_sockets += 1;
        }
        let rings = record.rings.as_ref().expect("made above");
        let capacity = rings.capacity();
        let [rx, tx] = rings.descriptors()?;
        // Bytes the engine holds for the program go to the ring now: the carrier may not bring
        // the data plane back for them.
        self.pump(cx, slot);
        Ok((Reply::Rings { capacity }, vec![rx, tx]))
    }

    /// Releases the sides of local connections whose program socket is closed (its inode
    /// is no longer among the unix sockets of this network namespace).
    pub fn sweep_local(&mut self, cx: &mut Context<'_>) {
        if self.by_local_inode.is_empty() {
            self.next_sweep = None;
            return;
        }
        let alive = match unix_socket_inodes() {
            Ok(alive) => alive,
            Err(error) => {
                tracing::debug!(%error, "cannot list unix sockets: local connections unswept");
                return;
            }
        };
        let closed: Vec<usize> = self
            .by_local_inode
            .iter()
            .filter(|(inode, _)| !alive.contains(inode))
            .map(|(_, &slot)| slot)
            // A connection still queued is held by the daemon itself: the acceptor gets it.
            .filter(|&slot| self.records[slot].as_ref().is_some_and(|r| r.carrier.is_none()))
            .collect();
        for slot in closed {
            self.release(cx, slot, Fate::Close);
        }
        self.next_sweep = (!self.by_local_inode.is_empty())
            .then(|| std::time::Instant::now() + LOCAL_SWEEP_INTERVAL);
    }

    /// Periodic work: the sweep of local connections, when due.
    pub fn housekeeping(&mut self, cx: &mut Context<'_>) {
        if self.next_sweep.is_some_and(|at| at <= std::time::Instant::now()) {
            self.sweep_local(cx);
        }
    }

    /// When [`Self::housekeeping`] next has work.
    pub fn housekeeping_deadline(&self) -> Option<std::time::Instant> {
        self.next_sweep
    }

    // ---- the data plane ----

    fn pump(&mut self, cx: &mut Context<'_>, slot: usize) {
        let Some(record) = self.records.get_mut(slot).and_then(Option::as_mut) else { return };
        // A local connection's bytes are the programs' business: never read or written here.
        if record.local.is_some() {
            return;
        }
        let fate = match (record.kind, record.listening) {
            (_, _) if record.handle.is_none() || record.carrier.is_none() => Fate::Keep,
            (SocketKind::Stream, true) => pump_listener(cx, record),
            (SocketKind::Stream, false) if record.rings.is_some() => {
                remote_rings::pump(cx, record, &mut self.scratch, &mut self.counters)
            }
            (SocketKind::Stream, false) => {
                pump_stream(cx, record, &mut self.scratch, &mut self.counters)
            }
            (SocketKind::Datagram, _) => {
                pump_datagram(cx, record, &mut self.scratch, &mut self.counters)
            }
        };
        if fate != Fate::Keep {
            self.release(cx, slot, fate);
            return;
        }
        if let Some(handle) = record.handle {
            record.last_readiness = cx.stack.readiness(handle).ok();
        }
        if let (Some(rings), Some(carrier)) = (record.rings.as_mut(), &record.carrier) {
            if let Some(space) = rings.watch_change() {
                let interest = if space {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                let token = mio::Token(CARRIER_TOKENS + slot);
                if cx.registry.reregister(&mut SourceFd(&carrier.raw_fd()), token, interest).is_ok()
                {
                    rings.watched(space);
                }
            }
        }
    }

    /// Ends a socket's life in the engine and drops its carrier. A failed socket some session
    /// still holds keeps its record (for SO_ERROR); everything else is forgotten.
    fn release(&mut self, cx: &mut Context<'_>, slot: usize, fate: Fate) {
        let Some(record) = self.records[slot].as_mut() else { return };
        if let Some(end) = record.local.take() {
            self.unlink_local(cx, slot, end);
        }
        let record = self.records[slot].as_mut().expect("checked above");
        if record.listening {
            record.listening = false;
            let port = record.listen_port;
            let queue = std::mem::take(&mut record.local_queue);
            let ready = std::mem::replace(&mut record.local_ready, 0);
            if let Some(slots) = self.listeners.get_mut(&port) {
                slots.retain(|&s| s != slot);
                if slots.is_empty() {
                    self.listeners.remove(&port);
                }
            }
            // As the kernel does for its accept queue: a complete connection is reset; one
            // still connecting meets a closed port.
            for (index, (queued, token)) in queue.into_iter().enumerate() {
                let Some(client) = self.record_mut(queued, token) else { continue };
                if let Some(end) = &mut client.local {
                    end.queued_on = None;
                }
                client.error =
                    Some(if index < ready { libc::ECONNRESET } else { libc::ECONNREFUSED });
                self.release(cx, queued, Fate::Failed);
            }
        }
        let Some(record) = self.records[slot].as_mut() else { return };
        if fate == Fate::Failed && record.error.is_none() {
            if let Some(handle) = record.handle {
                record.error = cx.stack.take_error(handle).ok().flatten().map(Errno::raw);
            }
        }
        // The program keeps its own mappings of the rings for what is left in them.
        record.rings = None;
        if let Some(carrier) = record.carrier.take() {
            self.by_carrier_name.remove(carrier.name());
            // A reset connection reads as ECONNRESET in the program, as a kernel socket's does.
            if record.kind == SocketKind::Stream && record.error == Some(libc::ECONNRESET) {
                let pids = record.owner.and_then(|id| self.sessions.get(&id)).map(|s| &s.pids[..]);
                if !carrier.reset_program_end(pids.unwrap_or(&[])) {
                    tracing::debug!("no process of the session holds the reset carrier");
                }
            }
        }
        if let Some(handle) = record.handle.take() {
            self.by_handle.remove(&handle);
            if fate == Fate::Abort {
                if let Ok(options) = cx.stack.options(handle) {
                    let options =
                        fbsd_tcp::SocketOptions { linger: Some(Duration::ZERO), ..options.clone() };
                    let _ = cx.stack.set_options(cx.now, handle, options);
                }
            }
            let _ = cx.stack.close(cx.now, handle);
        }
        if fate == Fate::Failed && record.members > 0 {
            self.dead.push_back((slot, record.token));
            while self.dead.len() > MAX_DEAD_RECORDS {
                let (old, token) = self.dead.pop_front().expect("non-empty");
                if self.record_mut(old, token).is_some_and(|r| r.handle.is_none()) {
                    self.forget(old);
                }
            }
            return;
        }
        self.forget(slot);
    }

    fn forget(&mut self, slot: usize) {
        if let Some(record) = self.records[slot].take() {
            if let Some(session) = record.owner.and_then(|id| self.sessions.get_mut(&id)) {
                session.sockets.remove(&record.token);
            }
            self.free_slots.push(slot);
        }
    }
}

/// Result of an operation before the descriptors are attached.
trait IntoAnswer {
    fn into_answer(self) -> Answer;
}

impl IntoAnswer for Result<Reply, ProtocolError> {
    fn into_answer(self) -> Answer {
        self.into()
    }
}

impl IntoAnswer for Result<(Reply, Vec<OwnedFd>), ProtocolError> {
    fn into_answer(self) -> Answer {
        match self {
            Ok((reply, descriptors)) => Answer { result: Ok(reply), descriptors },
            Err(error) => Err(error).into(),
        }
    }
}

fn pump_listener(cx: &mut Context<'_>, record: &mut Record) -> Fate {
    let (Some(handle), Some(carrier)) = (record.handle, &record.carrier) else { return Fate::Keep };
    // Nothing meaningful is written to a listener; what is, is read away so that the
    // program's close (end-of-stream) is seen.
    let mut sink = [0u8; 512];
    loop {
        match carrier.read_into(&mut sink, &mut []) {
            Transfer::Moved(_) => continue,
            Transfer::WouldBlock => break,
            Transfer::EndOfStream | Transfer::Failed(_) => return Fate::Close,
        }
    }
    let pending =
        record.local_ready > 0 || cx.stack.readiness(handle).is_ok_and(|ready| ready.readable);
    if pending && !record.bell_rung && carrier.write_from(b"!", b"") == Transfer::Moved(1) {
        record.bell_rung = true;
    }
    Fate::Keep
}

/// While a stream socket is not connected: `Some(fate)` until its connect completes, which
/// discards the carrier's filler (waking the program's pollers); `None` from then on.
fn finish_connecting(stack: &mut Stack, record: &mut Record, scratch: &mut [u8]) -> Option<Fate> {
    let (Some(handle), Some(carrier)) = (record.handle, &record.carrier) else {
        return Some(Fate::Keep);
    };
    if record.filler == 0 {
        return None;
    }
    if !record.connecting {
        // Never connected (nor listening): only the program's close matters.
        return Some(if carrier.hung_up() { Fate::Close } else { Fate::Keep });
    }
    let Ok(ready) = stack.readiness(handle) else { return Some(Fate::Failed) };
    if ready.error || ready.hangup {
        return Some(Fate::Failed);
    }
    if !ready.writable {
        return Some(Fate::Keep); // still connecting
    }
    if let Transfer::Moved(n) = carrier.discard(record.filler, scratch) {
        record.filler -= n;
    }
    record.connecting = false;
    None
}

fn pump_stream(
    cx: &mut Context<'_>,
    record: &mut Record,
    scratch: &mut [u8],
    counters: &mut ServiceCounters,
) -> Fate {
    if let Some(fate) = finish_connecting(cx.stack, record, scratch) {
        return fate;
    }
    let stack = &mut *cx.stack;

    // Engine → program, while the carrier takes it. (An uploading program's pumps, which
    // have nothing to deliver, ask the carrier nothing.)
    let input_drained = record.handovers.would_turn(Flow::ToProgram)
        && record.handle.is_some_and(|h| stack.readiness(h).is_ok_and(|r| r.readable))
        && record.carrier.as_ref().is_some_and(Carrier::nothing_from_program);
    let delivery = deliver_to_program(stack, record, |carrier, first, second| {
        match carrier.write_from(first, second) {
            Transfer::Moved(n) => n,
            _ => 0,
        }
    });
    counters.carrier_out_bytes += delivery.moved as u64;
    record.sent_to_program += delivery.moved as u64;
    if delivery.failed {
        return Fate::Failed;
    }
    if delivery.moved > 0 && record.handovers.flowed(Flow::ToProgram, || input_drained) {
        counters.carrier_turns += 1;
    }
    // A full carrier: its writable edge brings us back.
    let engine_data_left = delivery.sink_full;
    if record.failing {
        return failure_waits(record, engine_data_left);
    }
    let (Some(handle), Some(carrier)) = (record.handle, &record.carrier) else { return Fate::Keep };

    // Program → engine, while the send buffer has room.
    while !record.program_done_writing {
        let mut read = Transfer::WouldBlock;
        let result = stack.send_with(handle, |first, second| {
            read = carrier.read_into(first, second);
            match read {
                Transfer::Moved(n) => n,
                _ => 0,
            }
        });
        match (result, read) {
            (Ok(n), _) if n > 0 => {
                counters.carrier_in_bytes += n as u64;
                record.taken_from_program += n as u64;
                if record.handovers.flowed(Flow::FromProgram, || carrier.program_read_all()) {
                    counters.carrier_turns += 1;
                }
            }
            (Ok(_), Transfer::EndOfStream) => {
                record.program_done_writing = true;
                let _ = stack.shutdown(cx.now, handle, Shutdown::Write);
            }
            // The program closed its end with data unread: as the kernel, reset.
            (Ok(_), Transfer::Failed(_)) => return Fate::Abort,
            (Ok(_), _) | (Err(Errno::WouldBlock), _) => break,
            (Err(Errno::BrokenPipe), _) => {
                // Writing after a shutdown or a close: the kernel would fail the write with
                // EPIPE; the bytes already sit in the carrier, so they are dropped here.
                match carrier.discard(usize::MAX, scratch) {
                    Transfer::Moved(_) => {}
                    Transfer::EndOfStream => record.program_done_writing = true,
                    Transfer::Failed(_) => return Fate::Abort,
                    Transfer::WouldBlock => break,
                }
            }
            (Err(error), _) => {
                record.error = Some(error.raw());
                record.failing = true;
                return failure_waits(record, engine_data_left);
            }
        }
    }

    if record.program_done_writing && (record.program_told_eof || carrier.hung_up()) {
        return Fate::Close;
    }
    Fate::Keep
}

/// What one [`deliver_to_program`] left.
struct Delivery {
    /// Bytes the sink took.
    moved: usize,
    /// The sink took less than the engine offered: bytes wait in the engine.
    sink_full: bool,
    /// The connection failed (its error is in the record), or failed earlier and the program
    /// now has every byte that came before: the socket is done.
    failed: bool,
}

/// Engine → program, for both data planes: hands the engine's received bytes to `sink` (which
/// writes them to the carrier or the ring and returns how many it took) until the engine has
/// none left or the sink is full. The peer's end of stream shuts the carrier's writing side,
/// after the last byte: the program reads the carrier (or the ring before the carrier) first.
fn deliver_to_program(
    stack: &mut Stack,
    record: &mut Record,
    mut sink: impl FnMut(&Carrier, &[u8], &[u8]) -> usize,
) -> Delivery {
    let mut delivery = Delivery { moved: 0, sink_full: false, failed: false };
    let (Some(handle), Some(carrier)) = (record.handle, &record.carrier) else { return delivery };
    loop {
        let mut offered = None;
        let result = stack.recv_with(handle, |first, second| {
            offered = Some(first.len() + second.len());
            sink(carrier, first, second)
        });
        match (result, offered) {
            (Ok(n), Some(offered)) if n > 0 => {
                delivery.moved += n;
                if n < offered {
                    delivery.sink_full = true;
                    break;
                }
            }
            (Ok(_), None) if record.failing => {
                delivery.failed = true;
                break;
            }
            (Ok(_), None) => {
                // End of stream from the peer (or our SHUT_RD).
                if !record.program_told_eof {
                    carrier.finish_writing();
                    record.program_told_eof = true;
                }
                break;
            }
            (Ok(_), Some(_)) => {
                delivery.sink_full = true;
                break;
            }
            (Err(Errno::WouldBlock), _) => break,
            (Err(error), _) => {
                record.error = Some(error.raw());
                delivery.failed = true;
                break;
            }
        }
    }
    delivery
}

/// A connection that failed (reset, timed out) while the program still had received bytes to
/// take: as the kernel's, the socket delivers them first and reports the error after, so the
/// failure waits until the engine's receive queue is drained (the carrier's or ring's space
/// brings the data plane back), unless the program is gone.
fn failure_waits(record: &Record, engine_data_left: bool) -> Fate {
    let program_gone = record.carrier.as_ref().is_none_or(Carrier::hung_up);
    if engine_data_left && !program_gone {
        Fate::Keep
    } else {
        Fate::Failed
    }
}

fn pump_datagram(
    cx: &mut Context<'_>,
    record: &mut Record,
    scratch: &mut [u8],
    counters: &mut ServiceCounters,
) -> Fate {
    let (Some(handle), Some(carrier)) = (record.handle, &record.carrier) else { return Fate::Keep };
    let stack = &mut *cx.stack;

    // Program → engine, until the carrier is empty or the engine full (epoll's edges come only
    // after that).
    loop {
        let datagram: &[u8] = match record.pending_datagram.as_deref() {
            Some(pending) => pending,
            None => match carrier.receive_datagram(scratch) {
                Datagram::Received(n) => &scratch[..n],
                Datagram::Truncated => {
                    counters.datagrams_refused += 1;
                    continue;
                }
                Datagram::Empty => break,
                Datagram::Closed => return Fate::Close,
            },
        };
        let sent = if record.udp_connected {
            stack.send(handle, datagram)
        } else {
            match datagram::split(datagram) {
                Some((remote, payload)) => {
                    stack.send_to(handle, payload, Some(socket_address(record.family, remote)))
                }
                None => Err(Errno::DestAddrRequired),
            }
        };
        match sent {
            Err(Errno::WouldBlock) => {
                if record.pending_datagram.is_none() {
                    record.pending_datagram = Some(datagram.to_vec());
                }
                break;
            }
            Ok(n) => {
                counters.carrier_in_bytes += n as u64;
                record.pending_datagram = None;
            }
            Err(error) => {
                tracing::trace!(?error, "datagram refused by the engine");
                counters.datagrams_refused += 1;
                record.pending_datagram = None;
            }
        }
    }

    // Engine → program: everything queued (the engine's queue is bounded).
    let header_len = if record.udp_connected { 0 } else { datagram::HEADER_LEN };
    loop {
        let (copied, source) = match stack.recv_from(handle, &mut scratch[header_len..]) {
            Ok((copied, _, source)) => (copied, source),
            Err(Errno::WouldBlock) => break,
            Err(error) => {
                // A port unreachable for a connected socket: a carrier cannot fail a read, so
                // the error waits in SO_ERROR, where the kernel keeps it too.
                record.error = Some(error.raw());
                break;
            }
        };
        if header_len > 0 {
            scratch[..header_len].copy_from_slice(&datagram::header(ipv4_of(source)));
        }
        match carrier.write_from(&scratch[..header_len + copied], &[]) {
            Transfer::Moved(_) => counters.carrier_out_bytes += copied as u64,
            Transfer::EndOfStream => return Fate::Close,
            _ => counters.datagrams_dropped += 1,
        }
    }
    Fate::Keep
}

fn shutdown(
    stack: &mut Stack,
    now: Instant,
    record: &mut Record,
    handle: SocketHandle,
    how: ShutdownHow,
) -> Result<(), ProtocolError> {
    let (read, write) = match how {
        ShutdownHow::Read => (true, false),
        ShutdownHow::Write => (false, true),
        ShutdownHow::Both => (true, true),
    };
    if record.kind == SocketKind::Datagram || record.listening {
        let how = match how {
            ShutdownHow::Read => Shutdown::Read,
            ShutdownHow::Write => Shutdown::Write,
            ShutdownHow::Both => Shutdown::Both,
        };
        stack.shutdown(now, handle, how).map_err(errno)?;
    } else {
        // The FIN itself follows the carrier's end-of-stream, after the program's last byte;
        // here the call only answers as the kernel would.
        stack.peer_addr(handle).map_err(errno)?;
        if read {
            stack.shutdown(now, handle, Shutdown::Read).map_err(errno)?;
        }
    }
    if read && !record.program_told_eof {
        if let Some(carrier) = &record.carrier {
            carrier.finish_writing();
        }
        record.program_told_eof = true;
    }
    let _ = write;
    Ok(())
}

fn set_option(
    stack: &mut Stack,
    now: Instant,
    handle: SocketHandle,
    name: OptionName,
    value: OptionValue,
) -> Result<(), ProtocolError> {
    let invalid = ProtocolError::Errno { errno: libc::EINVAL };
    let mut options = stack.options(handle).map_err(errno)?.clone();
    let int = || match &value {
        OptionValue::Int(n) => Ok(*n),
        _ => Err(ProtocolError::Errno { errno: libc::EINVAL }),
    };
    let seconds = |n: i64| -> Result<Duration, ProtocolError> {
        u64::try_from(n)
            .ok()
            .filter(|&n| (1..=32767).contains(&n))
            .map(Duration::from_secs)
            .ok_or(ProtocolError::Errno { errno: libc::EINVAL })
    };
    let size = |n: i64| usize::try_from(n.max(0)).unwrap_or(usize::MAX);
    match name {
        OptionName::ReuseAddr => options.reuse_addr = int()? != 0,
        OptionName::ReusePort => options.reuse_port = int()? != 0,
        OptionName::KeepAlive => options.keepalive = int()? != 0,
        OptionName::NoDelay => options.nodelay = int()? != 0,
        OptionName::Broadcast => options.broadcast = int()? != 0,
        OptionName::V6Only => options.v6_only = int()? != 0,
        // Linux doubles the value asked for to cover its bookkeeping; so does this.
        OptionName::SendBuffer => options.send_buffer = size(int()?).saturating_mul(2),
        OptionName::RecvBuffer => options.recv_buffer = size(int()?).saturating_mul(2),
        OptionName::KeepIdle => options.keep_idle = seconds(int()?)?,
        OptionName::KeepInterval => options.keep_interval = seconds(int()?)?,
        OptionName::KeepCount => {
            options.keep_count =
                u32::try_from(int()?).ok().filter(|n| (1..=127).contains(n)).ok_or(invalid)?
        }
        OptionName::MaxSegment => {
            let mss = int()?;
            options.max_segment =
                if mss == 0 { None } else { Some(u16::try_from(mss).map_err(|_| invalid)?) }
        }
        OptionName::UserTimeout => {
            let millis = u64::try_from(int()?).map_err(|_| invalid)?;
            options.user_timeout = Some(Duration::from_millis(millis));
        }
        OptionName::Ttl => {
            // -1 restores the default, as on Linux.
            let ttl = int()?;
            options.ttl = if ttl == -1 {
                64
            } else {
                u8::try_from(ttl).ok().filter(|&t| t > 0).ok_or(invalid)?
            };
        }
        OptionName::Linger => match value {
            OptionValue::Linger(linger) => {
                options.linger = linger.map(|seconds| Duration::from_secs(u64::from(seconds)))
            }
            _ => return Err(invalid),
        },
        OptionName::Congestion => match &value {
            OptionValue::Text(name) => {
                options.congestion = CongestionAlgorithm::from_name(name)
                    .ok_or(ProtocolError::Errno { errno: libc::ENOENT })?
            }
            _ => return Err(invalid),
        },
        OptionName::Error | OptionName::Type | OptionName::AcceptConn | OptionName::TcpInfo => {
            return Err(ProtocolError::Errno { errno: libc::ENOPROTOOPT })
        }
    }
    stack.set_options(now, handle, options).map_err(errno)
}

fn get_option(
    stack: &mut Stack,
    record: &mut Record,
    handle: SocketHandle,
    name: OptionName,
) -> Result<OptionValue, ProtocolError> {
    if name == OptionName::Error {
        let pending = match record.error.take() {
            Some(error) => Some(error),
            None => stack.take_error(handle).map_err(errno)?.map(Errno::raw),
        };
        return Ok(OptionValue::Int(pending.unwrap_or(0).into()));
    }
    if name == OptionName::TcpInfo {
        return Ok(OptionValue::TcpInfo(tcp_info(&stack.tcp_info(handle).map_err(errno)?)));
    }
    let options = stack.options(handle).map_err(errno)?;
    let flag = |on: bool| OptionValue::Int(i64::from(on));
    let int = |n: u64| OptionValue::Int(i64::try_from(n).unwrap_or(i64::MAX));
    Ok(match name {
        OptionName::ReuseAddr => flag(options.reuse_addr),
        OptionName::ReusePort => flag(options.reuse_port),
        OptionName::KeepAlive => flag(options.keepalive),
        OptionName::NoDelay => flag(options.nodelay),
        OptionName::Broadcast => flag(options.broadcast),
        OptionName::V6Only => flag(options.v6_only),
        OptionName::AcceptConn => flag(record.listening),
        OptionName::Type => OptionValue::Int(socket_type(record.kind)),
        OptionName::SendBuffer => int(options.send_buffer as u64),
        OptionName::RecvBuffer => int(options.recv_buffer as u64),
        OptionName::KeepIdle => int(options.keep_idle.as_secs()),
        OptionName::KeepInterval => int(options.keep_interval.as_secs()),
        OptionName::KeepCount => int(options.keep_count.into()),
        OptionName::MaxSegment => {
            let mss = match options.max_segment {
                Some(mss) => usize::from(mss),
                // A spliced local connection has no segments; report what Linux reports for a
                // connection to one of its own addresses (over lo, MTU 65536).
                None if record.local.is_some() => LOCAL_MSS as usize,
                None => stack.tcp_info(handle).map(|info| info.snd_mss).unwrap_or(536),
            };
            int(mss as u64)
        }
        OptionName::UserTimeout => {
            int(options.user_timeout.map_or(0, |timeout| timeout.as_millis() as u64))
        }
        OptionName::Ttl => int(options.ttl.into()),
        OptionName::Linger => {
            OptionValue::Linger(options.linger.map(|linger| linger.as_secs() as u32))
        }
        OptionName::Congestion => OptionValue::Text(options.congestion.name().into()),
        OptionName::Error | OptionName::TcpInfo => unreachable!("answered above"),
    })
}

fn tcp_info(info: &fbsd_tcp::socket::tcp::TcpInfo) -> TcpInfoReport {
    let mss = info.snd_mss.max(1);
    let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    TcpInfoReport {
        state: linux_tcp_state(info.state),
        rto_us: info.rto.as_micros() as u64,
        rtt_us: info.rtt.as_micros() as u64,
        rttvar_us: info.rttvar.as_micros() as u64,
        snd_mss: clamp(info.snd_mss),
        rcv_mss: clamp(info.rcv_mss),
        snd_cwnd: clamp(info.snd_cwnd / mss),
        snd_ssthresh: if info.snd_ssthresh == usize::MAX {
            0
        } else {
            clamp(info.snd_ssthresh / mss)
        },
        unacked: clamp(info.unacked.div_ceil(mss)),
        total_retrans: u32::try_from(info.total_retrans).unwrap_or(u32::MAX),
        bytes_acked: info.bytes_acked,
        bytes_received: info.bytes_received,
    }
}

/// TCP_INFO of a local connection: what a loopback connection would report.
fn local_tcp_info(established: bool) -> TcpInfoReport {
    TcpInfoReport {
        state: if established { 1 } else { 2 },
        rto_us: 200_000,
        snd_mss: LOCAL_MSS,
        rcv_mss: LOCAL_MSS,
        snd_cwnd: 10,
        ..TcpInfoReport::default()
    }
}

/// The inodes of the unix sockets of this network namespace.
fn unix_socket_inodes() -> std::io::Result<HashSet<u64>> {
    let table = std::fs::read_to_string("/proc/net/unix")?;
    // Columns: Num RefCount Protocol Flags Type St Inode [Path].
    Ok(table
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(6)?.parse().ok())
        .collect())
}

/// Linux's `enum tcp_state` number for an ss state name.
fn linux_tcp_state(name: &str) -> u8 {
    match name {
        "ESTAB" => 1,
        "SYN-SENT" => 2,
        "SYN-RECV" => 3,
        "FIN-WAIT-1" => 4,
        "FIN-WAIT-2" => 5,
        "TIME-WAIT" => 6,
        "CLOSE-WAIT" => 8,
        "LAST-ACK" => 9,
        "LISTEN" => 10,
        "CLOSING" => 11,
        _ => 7, // CLOSE
    }
}

fn socket_type(kind: SocketKind) -> i64 {
    match kind {
        SocketKind::Stream => libc::SOCK_STREAM.into(),
        SocketKind::Datagram => libc::SOCK_DGRAM.into(),
    }
}

/// An IPv4 address as a socket of `family` names it (v4-mapped for AF_INET6).
fn socket_address(family: Family, addr: SocketAddrV4) -> SocketAddr {
    match family {
        Family::Inet => SocketAddr::V4(addr),
        Family::Inet6 => {
            SocketAddr::V6(SocketAddrV6::new(addr.ip().to_ipv6_mapped(), addr.port(), 0, 0))
        }
    }
}

/// The IPv4 address behind an address the engine reported (v4-mapped for AF_INET6 sockets).
fn ipv4_of(addr: SocketAddr) -> SocketAddrV4 {
    match addr {
        SocketAddr::V4(addr) => addr,
        SocketAddr::V6(addr) => SocketAddrV4::new(
            addr.ip().to_ipv4_mapped().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
            addr.port(),
        ),
    }
}

fn errno(error: Errno) -> ProtocolError {
    ProtocolError::Errno { errno: error.raw() }
}

fn internal(message: String) -> ProtocolError {
    ProtocolError::Internal { message }
}

fn carrier_error(error: std::io::Error) -> ProtocolError {
    match error.raw_os_error() {
        // Out of descriptors or memory: the program sees what socket(2) would tell it.
        Some(code @ (libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS)) => {
            ProtocolError::Errno { errno: code }
        }
        _ => internal(format!("cannot make a carrier: {error}")),
    }
}
