//! The two peers around the device under test: an injector that blasts
//! pre-encoded UPDATEs and a monitor that counts the prefixes it receives.
//!
//! Both are plain blocking sockets on their own threads: the work is a
//! `write_all` of a few MB on one side and a frame-by-frame read on the
//! other, so an async runtime would add nothing but noise. The sockets
//! are created inside the tester namespace (see [`in_netns`]) and keep
//! living there whichever thread uses them afterwards.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bgp_wire::{
    Capability, DecodeCxt, Family, Message, NextHop, Nlri, OpenMsg, PathAttrs,
};
use bytes::BytesMut;
use ipnetwork::{IpNetwork, Ipv4Network};
use nix::sched::{CloneFlags, setns};
use socket2::{Domain, Socket, Type};

/// The first /24 of the injected range: prefix `i` is 11.0.0.0 + i * 256.
const BASE: u32 = 0x0B00_0000;

/// Runs `f` on a thread that has joined the network namespace at `ns`
/// (`setns` changes only the calling thread; sockets created there stay
/// in that namespace for their whole life).
pub fn in_netns<T: Send>(
    ns: &Path,
    f: impl FnOnce() -> Result<T> + Send,
) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let fd = File::open(ns)
                .with_context(|| format!("opening {}", ns.display()))?;
            setns(&fd, CloneFlags::CLONE_NEWNET)
                .with_context(|| format!("setns {}", ns.display()))?;
            f()
        })
        .join()
        .map_err(|_| anyhow!("netns thread panicked"))?
    })
}

/// The N prefixes of a run.
pub fn prefixes(n: usize) -> Vec<Nlri> {
    (0..n)
        .map(|i| {
            let a = Ipv4Addr::from(BASE + ((i as u32) << 8));
            Nlri::new(IpNetwork::V4(Ipv4Network::new(a, 24).expect("/24")))
        })
        .collect()
}

/// The attribute set of prefix `i` when a run has `k` of them: set
/// `i % k`. Set `j` has an AS path of 2 to 6 hops, first the injector's
/// `asn` (RFC 4271 9.1.2: an eBGP peer's own AS leads the path), then
/// AS numbers of 1000 and up (never the DUT's or the monitors'), and one
/// community that alone tells the sets apart, so `k` sets are `k`
/// distinct attribute sets.
fn attr_set(j: usize, asn: u32) -> PathAttrs {
    let hops = 2 + j % 5;
    let mut path = vec![asn];
    path.extend((1..hops).map(|h| 1000 + ((j * 7 + h * 131) % 50_000) as u32));
    PathAttrs {
        origin: Some(bgp_wire::Origin::Igp),
        as_path: Some(bgp_wire::AsPath::from_sequence(&path)),
        communities: vec![bgp_wire::Community(
            ((100 + (j >> 16) as u32) << 16) | (j as u32 & 0xFFFF),
        )],
        ..Default::default()
    }
}

/// The injector's UPDATEs, packed into 4096-octet messages, prefix `i`
/// with attribute set `i % k` (see [`attr_set`]): (announcements,
/// withdrawals).
pub fn encode_updates(
    n: usize,
    k: usize,
    asn: u32,
    next_hop: Ipv4Addr,
) -> Result<(BytesMut, BytesMut)> {
    let nlri = prefixes(n);
    let k = k.clamp(1, n.max(1));
    let mut by_set: Vec<Vec<Nlri>> = vec![Vec::new(); k];
    for (i, p) in nlri.iter().enumerate() {
        by_set[i % k].push(*p);
    }
    let cxt = DecodeCxt::four_octet();
    let mut ann = BytesMut::new();
    for (j, set) in by_set.iter().enumerate() {
        bgp_wire::pack_reach(
            Family::IPV4_UNICAST,
            &attr_set(j, asn),
            NextHop::V4(next_hop),
            set,
            &cxt,
            &mut ann,
        )?;
    }
    let mut wd = BytesMut::new();
    bgp_wire::pack_unreach(Family::IPV4_UNICAST, &nlri, &cxt, &mut wd)?;
    Ok((ann, wd))
}

/// Hold time we propose. Not 0: GoBGP derives its socket write deadline
/// from the negotiated hold time and fails every write with 0.
const HOLD_TIME: u16 = 90;

/// One established session, seen from the tester's side.
pub struct Session {
    /// Writes go through the lock so that KEEPALIVEs never land inside
    /// an UPDATE being written.
    pub writer: Arc<Mutex<TcpStream>>,
    reader: TcpStream,
    /// Bytes read after the handshake that belong to later messages.
    pending: BytesMut,
}

/// Connects from `local` to the DUT (retrying while it starts up), runs
/// the OPEN / KEEPALIVE handshake and starts a thread sending KEEPALIVEs
/// (RFC 4271 4.4) until the connection is shut down.
pub fn open_session(
    local: Ipv4Addr,
    dut: Ipv4Addr,
    asn: u32,
    deadline: Instant,
) -> Result<Session> {
    let stream = loop {
        match connect(local, dut) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e).context("connecting to the DUT"),
        }
    };
    stream.set_nodelay(true)?;
    let cxt = DecodeCxt::four_octet();
    let open = OpenMsg::new(
        asn,
        HOLD_TIME,
        local,
        vec![
            Capability::MultiProtocol(Family::IPV4_UNICAST),
            Capability::FourOctetAs(asn),
        ],
    );
    let keepalive = Message::Keepalive.to_bytes(&cxt)?;
    let mut s = Session {
        reader: stream.try_clone()?,
        writer: Arc::new(Mutex::new(stream)),
        pending: BytesMut::new(),
    };
    s.write(&Message::Open(open).to_bytes(&cxt)?)?;
    let left = deadline.saturating_duration_since(Instant::now());
    s.reader
        .set_read_timeout(Some(left.max(Duration::from_secs(1))))?;
    let mut got_open = false;
    loop {
        let frame = s.next_frame()?;
        match Message::decode(&frame, &cxt)? {
            Message::Open(_) => {
                got_open = true;
                s.write(&keepalive)?;
            }
            Message::Keepalive if got_open => break,
            Message::Notification(n) => {
                bail!("DUT refused the session: {n:?}")
            }
            other => {
                bail!("unexpected {:?} in the handshake", other.msg_type())
            }
        }
    }
    s.reader.set_read_timeout(None)?;
    let w = s.writer.clone();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(u64::from(HOLD_TIME / 3)));
            let mut w = w.lock().unwrap_or_else(|e| e.into_inner());
            if w.write_all(&keepalive).is_err() {
                return;
            }
        }
    });
    Ok(s)
}

fn connect(local: Ipv4Addr, dut: Ipv4Addr) -> Result<TcpStream> {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    sock.bind(&SocketAddr::new(local.into(), 0).into())?;
    sock.connect_timeout(
        &SocketAddr::new(dut.into(), 179).into(),
        Duration::from_secs(1),
    )?;
    Ok(sock.into())
}

impl Session {
    /// Writes whole messages under the writer lock.
    pub fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        w.write_all(bytes)
    }

    /// A handle that can shut the connection down from another thread.
    pub fn handle(&self) -> Result<TcpStream> {
        Ok(self.reader.try_clone()?)
    }

    /// Reads and throws away everything the DUT sends (the injector's
    /// side), so that a DUT sending routes back never blocks on a full
    /// socket buffer.
    pub fn drain(mut self) {
        let mut buf = vec![0u8; 65536];
        while matches!(self.reader.read(&mut buf), Ok(k) if k > 0) {}
    }

    /// The next whole message (blocking).
    fn next_frame(&mut self) -> Result<BytesMut> {
        loop {
            if let Some(n) = bgp_wire::frame_len(&self.pending, false)? {
                return Ok(self.pending.split_to(n));
            }
            let mut buf = [0u8; 65536];
            let got = self.reader.read(&mut buf)?;
            if got == 0 {
                bail!("the DUT closed the session");
            }
            self.pending.extend_from_slice(&buf[..got]);
        }
    }
}

/// What the monitor saw, sent to the main thread as it happens.
#[derive(Debug)]
pub enum Seen {
    /// All N prefixes present.
    Full(Instant),
    /// None of them left.
    Empty(Instant),
    /// The session ended.
    Down(String),
}

/// Counts the injected prefixes present at the monitor: a bit per /24
/// of the injected range, so duplicates and re-announcements are not
/// counted twice. `present` is readable from other threads (for the
/// progress shown on a timeout).
pub fn monitor(
    mut s: Session,
    n: usize,
    present: Arc<AtomicUsize>,
    tx: mpsc::Sender<Seen>,
) {
    let cxt = DecodeCxt::four_octet();
    let mut bits = vec![0u64; n.div_ceil(64)];
    let mut count = 0usize;
    let mut was_full = false;
    let index = |p: &Nlri| -> Option<usize> {
        let IpNetwork::V4(v4) = p.prefix else {
            return None;
        };
        let i = (u32::from(v4.ip()).checked_sub(BASE)? >> 8) as usize;
        (v4.prefix() == 24 && i < n).then_some(i)
    };
    loop {
        let frame = match s.next_frame() {
            Ok(f) => f,
            Err(e) => {
                let _ = tx.send(Seen::Down(e.to_string()));
                return;
            }
        };
        let upd = match Message::decode(&frame, &cxt) {
            Ok(Message::Update(u)) => u,
            Ok(Message::Notification(m)) => {
                let _ = tx.send(Seen::Down(format!("NOTIFICATION {m:?}")));
                return;
            }
            Ok(_) => continue,
            Err(e) => {
                let _ = tx.send(Seen::Down(format!("bad message: {e}")));
                return;
            }
        };
        for i in upd.withdrawn_all().filter_map(index) {
            let (w, b) = (i / 64, 1u64 << (i % 64));
            if bits[w] & b != 0 {
                bits[w] &= !b;
                count -= 1;
            }
        }
        if upd.verdict() != bgp_wire::Verdict::TreatAsWithdraw {
            for i in upd.announced().filter_map(index) {
                let (w, b) = (i / 64, 1u64 << (i % 64));
                if bits[w] & b == 0 {
                    bits[w] |= b;
                    count += 1;
                }
            }
        }
        present.store(count, Ordering::Relaxed);
        if count == n && !was_full {
            was_full = true;
            let _ = tx.send(Seen::Full(Instant::now()));
        } else if count == 0 && was_full {
            was_full = false;
            let _ = tx.send(Seen::Empty(Instant::now()));
        }
    }
}
