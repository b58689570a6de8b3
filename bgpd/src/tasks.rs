//! The IO tasks around the sans-IO [`Speaker`].
//!
//! ```text
//!  tcp_listener ---Accepted------------+
//!  tcp_connect  ---Connected-----------+
//!  nbr_rx (per conn) ---Frames/Closed--+--> main loop (owns Speaker, timers,
//!  control clients ---Control----------+    connections, subscribers)
//!  config_poller ---Config-------------+        |
//!  bfd_rx (UDP 3784) ---Bfd------------+        |
//!                                               +--> nbr_tx (per conn): bytes
//!                                               +--> control subscribers: RibEvent
//!                                               +--> BFD sockets: datagrams
//! ```
//!
//! Only the main loop owns state. The other tasks move bytes: `nbr_rx`
//! cuts the stream into frames (bgp-wire's `frame_len`), `nbr_tx` writes
//! what the speaker encoded. Everything runs on one thread.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use margay_ctlproto::{Request, Response, RibEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use crate::bfd::io::{BfdIo, Received};
use crate::config::Desired;
use crate::export::FLUSH_CHUNK;
use crate::fsm::ConnId;
use crate::heap::Trimmer;
use crate::metrics::Metrics;
use crate::network;
use crate::rib::PeerId;
use crate::speaker::{Output, Speaker, TimerKey};

/// Inputs (frames from one socket read, accepts, queries...) handled
/// between two export slices.
const INPUT_BATCH: usize = 64;

/// Messages into the main loop.
#[derive(Debug)]
pub enum Input {
    Accepted {
        stream: TcpStream,
        remote: SocketAddr,
        local: SocketAddr,
    },
    Connected {
        peer: PeerId,
        conn: ConnId,
        result: std::io::Result<TcpStream>,
    },
    Frames {
        peer: PeerId,
        conn: ConnId,
        frames: Vec<Bytes>,
    },
    Closed {
        peer: PeerId,
        conn: ConnId,
        why: String,
    },
    Query(Request, oneshot::Sender<Response>),
    Subscribe(mpsc::UnboundedSender<RibEvent>),
    Config(Box<Desired>),
    /// A datagram on the BFD port (RFC 5881).
    Bfd(Received),
    /// Stop bgpd. `restart`: a planned restart, the sessions just close
    /// (peers keep our routes stale, RFC 4724); otherwise a shutdown, each
    /// session ends with Cease / Administrative Shutdown.
    Shutdown {
        restart: bool,
    },
}

/// How long a shutdown waits for the NOTIFICATIONs to be written.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(3);

/// One live TCP connection.
struct Conn {
    tx: mpsc::UnboundedSender<Bytes>,
    rx_task: JoinHandle<()>,
    /// Finishes once what was queued is written and the socket shut.
    tx_task: JoinHandle<()>,
}

/// The main loop's state.
pub struct Daemon {
    speaker: Speaker,
    inputs: mpsc::UnboundedSender<Input>,
    listeners: Vec<Arc<TcpListener>>,
    conns: HashMap<(PeerId, ConnId), Conn>,
    timers: HashMap<TimerKey, Instant>,
    subscribers: Vec<mpsc::UnboundedSender<RibEvent>>,
    /// Subscribers waiting for a restart's selection deferral to end.
    held_subscribers: Vec<mpsc::UnboundedSender<RibEvent>>,
    /// Every configured peer address with its RFC 5082 GTSM hop count
    /// (`None`: no GTSM), for the listeners' options and accept checks.
    listen_peers: HashMap<IpAddr, Option<u8>>,
    connect_timeout: Duration,
    metrics: Option<Metrics>,
    bfd: BfdIo,
    /// Writers of closed connections still flushing (a NOTIFICATION).
    draining: Vec<JoinHandle<()>>,
    /// Set by [`Input::Shutdown`]: leave the main loop.
    stopping: Option<bool>,
    /// The datastore objects the last configuration left out as bad.
    invalid: Vec<margay_ctlproto::InvalidObject>,
    /// Gives the memory of a burst back once it is over (`heap.rs`).
    trimmer: Arc<Trimmer>,
}

impl Daemon {
    pub fn new(
        mut speaker: Speaker,
        inputs: mpsc::UnboundedSender<Input>,
        listeners: Vec<Arc<TcpListener>>,
        metrics: Option<Metrics>,
    ) -> Daemon {
        speaker.tick(SystemTime::now());
        // Start BFD discriminators somewhere unpredictable, so a restarted
        // bgpd does not reuse those its peers still remember.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos());
        speaker.seed_bfd(nanos ^ std::process::id().rotate_left(16));
        Daemon {
            speaker,
            listeners,
            conns: HashMap::new(),
            timers: HashMap::new(),
            subscribers: Vec::new(),
            held_subscribers: Vec::new(),
            listen_peers: HashMap::new(),
            connect_timeout: Duration::from_secs(5),
            metrics,
            bfd: BfdIo::new(inputs.clone()),
            inputs,
            draining: Vec::new(),
            stopping: None,
            invalid: Vec::new(),
            trimmer: Arc::default(),
        }
    }

    /// Run until the input channel closes.
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Input>) {
        for l in &self.listeners {
            tokio::spawn(tcp_listener(l.clone(), self.inputs.clone()));
        }
        tokio::spawn(self.trimmer.clone().run());
        loop {
            if self.speaker.has_changes() {
                // Still exporting a burst: take what arrived meanwhile
                // without waiting, let the socket tasks run (this runtime
                // has one thread), then export the next slice.
                for _ in 0..INPUT_BATCH {
                    match rx.try_recv() {
                        Ok(i) => self.input(i),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => return,
                    }
                }
                self.fire_due_timers();
                tokio::task::yield_now().await;
            } else {
                let next = self.timers.values().min().copied();
                tokio::select! {
                    inp = rx.recv() => {
                        let Some(inp) = inp else { break };
                        self.input(inp);
                        // Take what is already queued too, so one slice
                        // packs many UPDATEs' worth of prefixes.
                        for _ in 1..INPUT_BATCH {
                            match rx.try_recv() {
                                Ok(i) => self.input(i),
                                Err(_) => break,
                            }
                        }
                    }
                    _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                        self.fire_due_timers();
                    }
                }
            }
            self.speaker.flush_some(FLUSH_CHUNK);
            if !self.speaker.deferring() {
                for tx in std::mem::take(&mut self.held_subscribers) {
                    self.subscribe(tx);
                }
            }
            self.perform();
            if let Some(m) = &self.metrics {
                m.update(&self.speaker);
            }
            if let Some(restart) = self.stopping {
                self.stop(restart).await;
                return;
            }
        }
    }

    /// Leave: for a shutdown, send every peer its Cease first and give
    /// the writers a moment to put it on the wire; for a restart, just
    /// go (the sockets close with the process: a TCP termination, which
    /// RFC 4724 4.2 helpers answer by keeping our routes).
    async fn stop(&mut self, restart: bool) {
        if restart {
            tracing::info!(
                "planned restart: sessions closed without NOTIFICATION (graceful restart)"
            );
            return;
        }
        let msg =
            format!("margay bgpd {} shutting down", self.speaker.router_id());
        self.speaker.tick(SystemTime::now());
        self.speaker.shutdown(&msg);
        self.perform();
        let writers = std::mem::take(&mut self.draining);
        let all = futures::future::join_all(writers);
        if tokio::time::timeout(SHUTDOWN_DRAIN, all).await.is_err() {
            tracing::warn!("shutdown: some NOTIFICATIONs not written in time");
        }
        tracing::info!("shut down: every session ended with Cease");
    }

    fn fire_due_timers(&mut self) {
        let now = Instant::now();
        self.speaker.tick(SystemTime::now());
        let due: Vec<TimerKey> = self
            .timers
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in due {
            self.timers.remove(&k);
            self.speaker.on_timer(k);
        }
    }

    /// Send a subscriber the RIB snapshot and its end marker; then it gets
    /// every change.
    fn subscribe(&mut self, tx: mpsc::UnboundedSender<RibEvent>) {
        // From now on every change must reach it.
        self.speaker.set_rib_stream(true);
        for ev in self.speaker.rib_snapshot() {
            let _ = tx.send(ev);
        }
        if tx.send(RibEvent::EndOfSnapshot).is_ok() {
            self.subscribers.push(tx);
        }
    }

    fn input(&mut self, inp: Input) {
        self.speaker.tick(SystemTime::now());
        match inp {
            Input::Accepted {
                stream,
                remote,
                local,
            } => {
                let gtsm =
                    self.listen_peers.get(&remote.ip()).copied().flatten();
                if let Some(h) = gtsm
                    && let Some(why) = gtsm_refusal(&stream, h)
                {
                    // RFC 5082 3: the peer is further away than allowed
                    // (or not using GTSM). Refuse before our OPEN: reset
                    // the connection rather than start a session on it.
                    tracing::warn!(%remote, "GTSM: {why}; connection refused");
                    self.speaker
                        .note_refused(remote.ip(), &format!("GTSM: {why}"));
                    let _ = socket2::SockRef::from(&stream)
                        .set_linger(Some(Duration::ZERO));
                    return;
                }
                self.accept(stream, remote, local, gtsm)
            }
            Input::Connected { peer, conn, result } => match result {
                Ok(stream) => {
                    let local = stream.local_addr().map(|a| a.ip());
                    match local {
                        Ok(ip) => {
                            self.register(peer, conn, stream);
                            self.speaker.on_connected(peer, conn, Ok(ip));
                        }
                        Err(e) => self.speaker.on_connected(
                            peer,
                            conn,
                            Err(e.to_string()),
                        ),
                    }
                }
                Err(e) => {
                    self.speaker.on_connected(peer, conn, Err(e.to_string()))
                }
            },
            Input::Frames { peer, conn, frames } => {
                self.trimmer.moved(frames.iter().map(Bytes::len).sum());
                for f in frames {
                    if !self.conns.contains_key(&(peer, conn)) {
                        break;
                    }
                    self.speaker.on_frame(peer, conn, &f);
                }
            }
            Input::Closed { peer, conn, why } => {
                if let Some(c) = self.conns.remove(&(peer, conn)) {
                    c.rx_task.abort();
                    self.speaker.on_closed(peer, conn, &why);
                }
            }
            Input::Query(req, reply) => {
                let resp = match req {
                    Request::Peers => Response::Peers {
                        peers: self.speaker.peer_status(),
                    },
                    Request::Rib => Response::Rib {
                        routes: self.speaker.rib_dump(),
                    },
                    Request::ResetPeer { peer } => {
                        match self.speaker.reset_peer(&peer) {
                            Ok(message) => Response::Done { message },
                            Err(message) => Response::Error { message },
                        }
                    }
                    Request::Invalid => Response::Invalid {
                        objects: self.invalid.clone(),
                    },
                    Request::Rejected { address } => Response::Rejected {
                        routes: self.speaker.rejected_routes(address),
                    },
                    Request::SubscribeRib => Response::Error {
                        message:
                            "subscribe_rib switches the connection to a stream"
                                .into(),
                    },
                };
                let _ = reply.send(resp);
            }
            // While a restart defers selection (RFC 4724 4.1) the RIB is
            // half learnt: a snapshot now would make felix-lite delete
            // the routes it kept. The subscriber waits for the full one.
            Input::Subscribe(tx) if self.speaker.deferring() => {
                self.held_subscribers.push(tx)
            }
            Input::Subscribe(tx) => self.subscribe(tx),
            Input::Config(d) => {
                if let Some(m) = &self.metrics {
                    m.set_invalid(&d.invalid);
                }
                self.invalid = d.invalid;
                self.speaker.set_global(d.global);
                self.speaker.set_peers(d.peers);
                self.speaker.set_bfd(d.bfd);
                self.speaker.set_local_routes(d.local_routes);
            }
            Input::Bfd(r) => {
                self.speaker.on_bfd_packet(r.src, r.ttl, &r.payload)
            }
            Input::Shutdown { restart } => self.stopping = Some(restart),
        }
    }

    /// Hand an accepted connection to the speaker.
    fn accept(
        &mut self,
        stream: TcpStream,
        remote: SocketAddr,
        local: SocketAddr,
        gtsm: Option<u8>,
    ) {
        match self.speaker.on_accept(remote.ip(), local.ip()) {
            Some((peer, conn)) => {
                // The per-peer minimum TTL, for every later segment.
                if let Some(h) = gtsm
                    && let Err(e) =
                        network::apply_gtsm(&stream, remote.is_ipv6(), h)
                {
                    tracing::warn!(%remote, "GTSM: {e}");
                }
                self.register(peer, conn, stream);
            }
            None => {
                tracing::info!(%remote, "connection from unknown peer refused")
            }
        }
    }

    /// RFC 5082 on the listeners: a listener whose peers all use GTSM
    /// drops low-TTL SYNs itself (its minimum TTL is the laxest of its
    /// peers'); one shared with non-GTSM peers cannot, and accept checks
    /// the SYN's TTL per peer instead (`gtsm_refusal`).
    fn update_listener_min_ttl(&self) {
        for l in &self.listeners {
            let Ok(a) = l.local_addr() else { continue };
            let mins: Vec<Option<u8>> = self
                .listen_peers
                .iter()
                .filter(|(ip, _)| ip.is_ipv6() == a.is_ipv6())
                .map(|(_, h)| h.map(network::gtsm_min_ttl))
                .collect();
            // Any non-GTSM peer (or none at all): no minimum.
            let min = match mins.is_empty() {
                true => 0,
                false => mins
                    .iter()
                    .try_fold(u8::MAX, |m, t| t.map(|t| m.min(t)))
                    .unwrap_or(0),
            };
            if let Err(e) = network::listener_min_ttl(l, min) {
                tracing::warn!(listen = %a, "GTSM on listener: {e}");
            }
        }
    }

    /// Start the rx/tx tasks of a new connection.
    fn register(&mut self, peer: PeerId, conn: ConnId, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let remote = stream.peer_addr().ok();
        let (rd, wr) = stream.into_split();
        let (tx, txrx) = mpsc::unbounded_channel();
        let span = tracing::debug_span!("neighbor", addr = ?remote, conn);
        let tx_task = tokio::spawn(
            nbr_tx(wr, txrx, self.trimmer.clone()).instrument(span.clone()),
        );
        let rx_task = tokio::spawn(
            nbr_rx(peer, conn, rd, self.inputs.clone()).instrument(span),
        );
        self.conns.insert(
            (peer, conn),
            Conn {
                tx,
                rx_task,
                tx_task,
            },
        );
    }

    /// Carry out the speaker's outputs.
    fn perform(&mut self) {
        for out in self.speaker.take_outputs() {
            match out {
                Output::Connect { peer, conn, spec } => {
                    let inputs = self.inputs.clone();
                    let timeout = self.connect_timeout;
                    tokio::spawn(async move {
                        let result = network::connect(&spec, timeout).await;
                        let _ = inputs.send(Input::Connected {
                            peer,
                            conn,
                            result,
                        });
                    });
                }
                Output::Send { peer, conn, bytes } => {
                    if let Some(c) = self.conns.get(&(peer, conn)) {
                        let _ = c.tx.send(bytes);
                    }
                }
                Output::Close { peer, conn } => {
                    // Dropping the sender lets nbr_tx write what is queued
                    // (a NOTIFICATION) and then shut the socket down.
                    if let Some(c) = self.conns.remove(&(peer, conn)) {
                        c.rx_task.abort();
                        self.draining.retain(|t| !t.is_finished());
                        self.draining.push(c.tx_task);
                    }
                }
                Output::ArmTimer(k, d) => {
                    self.timers.insert(k, Instant::now() + d);
                }
                Output::StopTimer(k) => {
                    self.timers.remove(&k);
                }
                Output::BfdOpen {
                    discr,
                    local,
                    remote,
                } => self.bfd.open(discr, local, remote),
                Output::BfdSend { discr, bytes } => {
                    self.bfd.send(discr, &bytes)
                }
                Output::BfdClose { discr } => self.bfd.close(discr),
                Output::Rib(ev) => {
                    self.subscribers.retain(|s| s.send(ev.clone()).is_ok());
                    if self.subscribers.is_empty() {
                        // Nobody listens: skip building events until
                        // somebody subscribes (and gets a snapshot).
                        self.speaker.set_rib_stream(false);
                    }
                }
                Output::ListenPeer {
                    addr,
                    password,
                    ttl_security,
                    add,
                } => {
                    // The key goes on the listener of the peer's family.
                    let same_family = |l: &&Arc<TcpListener>| {
                        l.local_addr()
                            .is_ok_and(|a| a.is_ipv6() == addr.is_ipv6())
                    };
                    for l in self.listeners.iter().filter(same_family) {
                        if add {
                            if let Some(k) = password.as_deref()
                                && let Err(e) =
                                    network::listener_md5(l, addr, Some(k))
                            {
                                tracing::warn!(%addr, "TCP MD5 on listener: {e}");
                            }
                        } else {
                            // Removing a key that was never set fails
                            // harmlessly.
                            let _ = network::listener_md5(l, addr, None);
                        }
                    }
                    if add {
                        self.listen_peers.insert(addr, ttl_security);
                    } else {
                        self.listen_peers.remove(&addr);
                    }
                    self.update_listener_min_ttl();
                }
            }
        }
    }
}

/// Why an accepted connection from a GTSM peer (`hops` away at most)
/// must be refused: its SYN arrived with too low a TTL. `None` when it
/// passes, or when the SYN was not saved (the socket's minimum TTL then
/// still drops every later low-TTL segment, so no session comes up).
fn gtsm_refusal(stream: &TcpStream, hops: u8) -> Option<String> {
    let min = network::gtsm_min_ttl(hops);
    match network::syn_ttl(stream) {
        Ok(Some(ttl)) if ttl < min => {
            Some(format!("SYN arrived with TTL {ttl}, below {min}"))
        }
        Ok(_) => None,
        Err(e) => {
            tracing::debug!("saved SYN: {e}");
            None
        }
    }
}

/// Accept connections and hand them to the main loop.
async fn tcp_listener(
    l: Arc<TcpListener>,
    inputs: mpsc::UnboundedSender<Input>,
) {
    loop {
        match l.accept().await {
            Ok((stream, remote)) => {
                let local = match stream.local_addr() {
                    Ok(a) => a,
                    Err(_) => continue,
                };
                if inputs
                    .send(Input::Accepted {
                        stream,
                        remote,
                        local,
                    })
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Read the stream and cut it into BGP messages (RFC 4271 4.1 framing).
async fn nbr_rx(
    peer: PeerId,
    conn: ConnId,
    mut rd: OwnedReadHalf,
    inputs: mpsc::UnboundedSender<Input>,
) {
    let mut buf = BytesMut::with_capacity(1 << 16);
    let why = loop {
        match rd.read_buf(&mut buf).await {
            Ok(0) => break "closed by peer".to_string(),
            Ok(_) => {}
            Err(e) => break e.to_string(),
        }
        let mut frames = Vec::new();
        let mut bad = false;
        loop {
            match bgp_wire::frame_len(&buf, false) {
                Ok(Some(n)) => frames.push(buf.split_to(n).freeze()),
                Ok(None) => break,
                Err(_) => {
                    // Hand the broken bytes over: decoding them yields the
                    // Message Header Error NOTIFICATION (RFC 4271 6.1).
                    frames.push(buf.split().freeze());
                    bad = true;
                    break;
                }
            }
        }
        if !frames.is_empty()
            && inputs.send(Input::Frames { peer, conn, frames }).is_err()
        {
            return;
        }
        if bad {
            // Leave the socket to the main loop, which closes it.
            std::future::pending::<()>().await;
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(1 << 16);
        }
    };
    let _ = inputs.send(Input::Closed { peer, conn, why });
}

/// Write what the main loop sends, then shut the connection down.
async fn nbr_tx(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    trimmer: Arc<Trimmer>,
) {
    while let Some(b) = rx.recv().await {
        if wr.write_all(&b).await.is_err() {
            return;
        }
        trimmer.moved(b.len());
    }
    let _ = wr.shutdown().await;
}
