//! Raw rtnetlink IO: batched route writes, dumps and the change monitor.
//!
//! rtnetlink (the crate) sends one request per message and waits for each
//! ack; that is what `ip -batch` does too. Here many RTM_NEWROUTE /
//! RTM_DELROUTE messages go out in one `send`, each with its own sequence
//! number. The kernel handles a netlink `sendmsg` synchronously, message by
//! message, and queues one NLMSG_ERROR per message on our socket (code 0 =
//! ack) before `send` returns; we then drain that queue and match answers to
//! operations by sequence number. Batches are bounded so the answers fit in
//! the receive buffer (an answer that does not fit is dropped by the kernel,
//! which we would notice as a missing sequence number).
//!
//! [`AckMode::Tail`] asks for an ack only on the last message of a batch:
//! the kernel still reports every failure (netlink_rcv_skb acks on error
//! whatever the flags), and the tail ack proves everything before it was
//! handled. That saves one skb and one `recv` per route.
//!
//! Namespaces: a netlink socket talks to the network namespace of the
//! thread that created it, forever. [`Netlink::open`] creates both sockets
//! on a short-lived thread that first `setns`es into the requested
//! namespace, so the rest of the process (and tokio's workers) never change
//! namespace.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use ipnetwork::IpNetwork;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE, NLM_F_REQUEST,
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteNextHop,
    RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use nix::sched::CloneFlags;
use nix::sys::socket::{setsockopt, sockopt};
use tokio::io::unix::AsyncFd;

use crate::route::{KernelRoute, MAIN_TABLE, RouteOp, Target};

/// Bytes of route messages per `send`. Kept under the default socket send
/// buffer (the kernel refuses a netlink message larger than sndbuf - 32).
const BATCH_BYTES: usize = 128 * 1024;
/// Socket buffer we ask for (SO_RCVBUFFORCE needs CAP_NET_ADMIN, which
/// felix-lite has anyway): answers of a full batch fit with room to spare.
const RCVBUF: usize = 32 * 1024 * 1024;

/// Errors of the netlink layer.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot open network namespace {path}: {source}")]
    Netns {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("netlink socket: {0}")]
    Io(#[from] io::Error),
    #[error("cannot decode a netlink message: {0}")]
    Decode(String),
    #[error("kernel answered {what} with {source}")]
    Kernel {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(
        "{missing} netlink answers went missing (receive buffer overrun); \
         a dump will resync"
    )]
    LostAcks { missing: usize },
}

/// When the kernel acks a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AckMode {
    /// NLM_F_ACK on every message (one answer per route).
    Every,
    /// NLM_F_ACK on the last message only; failures are still answered.
    #[default]
    Tail,
}

/// An operation the kernel refused.
#[derive(Debug)]
pub struct OpFailure {
    /// Index into the slice given to [`Netlink::apply`].
    pub index: usize,
    pub error: io::Error,
}

/// What one dump saw.
#[derive(Debug, Default)]
pub struct Dump {
    pub links: Vec<String>,
    pub routes: Vec<KernelRoute>,
}

/// A change the monitor socket reported.
#[derive(Debug)]
pub enum KernelEvent {
    RouteNew(KernelRoute),
    RouteDel(KernelRoute),
    Link {
        name: String,
        present: bool,
    },
    /// Notifications were lost: only a full dump tells the truth now.
    Overrun,
}

/// The two rtnetlink sockets of one namespace and the interface names.
pub struct Netlink {
    req: AsyncFd<Socket>,
    mon: Option<AsyncFd<Socket>>,
    protocol: u8,
    ack: AckMode,
    seq: u32,
    names: HashMap<u32, String>,
    indexes: HashMap<String, u32>,
    rx: BytesMut,
    tx: Vec<u8>,
}

// ===== impl Netlink =====

impl Netlink {
    /// Opens the request socket (and, with `monitor`, a socket subscribed
    /// to route and link changes) in the namespace at `netns`, or in the
    /// calling process's namespace. Must run inside a tokio runtime.
    pub fn open(
        netns: Option<&Path>,
        protocol: u8,
        ack: AckMode,
        monitor: bool,
    ) -> Result<Netlink, NetlinkError> {
        let netns = netns.map(Path::to_path_buf);
        let (req, mon) = std::thread::scope(|s| {
            s.spawn(|| open_sockets(netns.as_deref(), monitor))
                .join()
                .unwrap_or_else(|_| {
                    Err(NetlinkError::Io(io::Error::other(
                        "socket thread panicked",
                    )))
                })
        })?;
        Ok(Netlink {
            req: async_fd(req)?,
            mon: mon.map(async_fd).transpose()?,
            protocol,
            ack,
            seq: 1,
            names: HashMap::new(),
            indexes: HashMap::new(),
            rx: BytesMut::with_capacity(1 << 20),
            tx: Vec::with_capacity(BATCH_BYTES + 4096),
        })
    }

    /// Applies `ops` in batches; returns the ones the kernel refused.
    /// A delete of a route that is already gone (ESRCH/ENOENT) is success.
    pub async fn apply(
        &mut self,
        ops: &[RouteOp],
    ) -> Result<Vec<OpFailure>, NetlinkError> {
        let mut failures = Vec::new();
        let mut start = 0;
        while start < ops.len() {
            self.tx.clear();
            let first_seq = self.seq;
            let mut end = start;
            while end < ops.len() && self.tx.len() < BATCH_BYTES {
                self.encode_op(&ops[end]);
                end += 1;
            }
            // Only now is the last message of the batch known.
            self.force_tail_ack(first_seq, end - start);
            self.req.get_ref().send(&self.tx, 0)?;
            self.collect_acks(
                first_seq,
                start,
                end - start,
                ops,
                &mut failures,
            )
            .await?;
            start = end;
        }
        Ok(failures)
    }

    /// Appends one operation to the batch buffer.
    fn encode_op(&mut self, op: &RouteOp) {
        let ack = match self.ack {
            AckMode::Every => NLM_F_ACK,
            AckMode::Tail => 0,
        };
        let (inner, flags) = match op {
            RouteOp::Replace(r) => {
                let msg = self.new_route_msg(r.dst, &r.target);
                (
                    RouteNetlinkMessage::NewRoute(msg),
                    NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE | ack,
                )
            }
            RouteOp::Delete(k) => (
                RouteNetlinkMessage::DelRoute(del_route_msg(k)),
                NLM_F_REQUEST | ack,
            ),
        };
        self.push_msg(inner, flags);
    }

    /// Sets NLM_F_ACK on the last message of the batch in `tx`.
    fn force_tail_ack(&mut self, first_seq: u32, count: usize) {
        if self.ack != AckMode::Tail || count == 0 {
            return;
        }
        let mut off = 0;
        for _ in 0..count - 1 {
            off += nl_len(&self.tx[off..]);
        }
        debug_assert_eq!(
            u32::from_ne_bytes(self.tx[off + 8..off + 12].try_into().unwrap()),
            first_seq.wrapping_add(count as u32 - 1)
        );
        // nlmsg_flags is the u16 at offset 6 of the header.
        let flags = u16::from_ne_bytes([self.tx[off + 6], self.tx[off + 7]])
            | NLM_F_ACK;
        self.tx[off + 6..off + 8].copy_from_slice(&flags.to_ne_bytes());
    }

    fn push_msg(&mut self, inner: RouteNetlinkMessage, flags: u16) {
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(inner));
        msg.finalize();
        let at = self.tx.len();
        self.tx.resize(at + msg.buffer_len(), 0);
        msg.serialize(&mut self.tx[at..]);
    }

    /// Reads answers for `count` messages starting at `first_seq`.
    async fn collect_acks(
        &mut self,
        first_seq: u32,
        first_op: usize,
        count: usize,
        ops: &[RouteOp],
        failures: &mut Vec<OpFailure>,
    ) -> Result<(), NetlinkError> {
        let last_seq = first_seq.wrapping_add(count as u32 - 1);
        let mut answered = 0usize;
        loop {
            let done = match self.ack {
                AckMode::Every => answered == count,
                AckMode::Tail => false,
            };
            if done {
                return Ok(());
            }
            self.recv_req().await?;
            let mut off = 0;
            while off < self.rx.len() {
                let len = nl_len(&self.rx[off..]);
                if len == 0 {
                    break;
                }
                let msg = &self.rx[off..off + len];
                off += len;
                let Some((seq, code)) = parse_error_msg(msg) else {
                    continue;
                };
                let idx = seq.wrapping_sub(first_seq) as usize;
                if idx >= count {
                    continue; // an answer to something older
                }
                answered += 1;
                if code != 0 {
                    let op = &ops[first_op + idx];
                    let errno = -code;
                    let tolerated = matches!(op, RouteOp::Delete(_))
                        && (errno == libc::ESRCH || errno == libc::ENOENT);
                    if !tolerated {
                        failures.push(OpFailure {
                            index: first_op + idx,
                            error: io::Error::from_raw_os_error(errno),
                        });
                    }
                }
                if self.ack == AckMode::Tail && seq == last_seq {
                    return Ok(());
                }
            }
        }
    }

    /// One datagram from the request socket into `rx`.
    async fn recv_req(&mut self) -> Result<(), NetlinkError> {
        self.rx.clear();
        loop {
            let mut guard = self.req.readable().await?;
            let rx = &mut self.rx;
            match guard.try_io(|s| s.get_ref().recv(rx, 0)) {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    return Err(NetlinkError::LostAcks { missing: 1 });
                }
                Ok(Err(e)) => return Err(e.into()),
                Err(_would_block) => continue,
            }
        }
    }

    /// Dumps links then every route, keeping main-table IPv4/IPv6 routes.
    pub async fn dump(&mut self) -> Result<Dump, NetlinkError> {
        let mut dump = Dump::default();
        self.tx.clear();
        let mut link = LinkMessage::default();
        link.header.interface_family = AddressFamily::Unspec;
        self.push_msg(
            RouteNetlinkMessage::GetLink(link),
            NLM_F_REQUEST | NLM_F_DUMP,
        );
        self.req.get_ref().send(&self.tx, 0)?;
        self.names.clear();
        self.indexes.clear();
        for msg in self.recv_dump("link dump").await? {
            if let RouteNetlinkMessage::NewLink(l) = msg {
                self.learn_link(&l, true);
            }
        }
        dump.links = self.indexes.keys().cloned().collect();

        self.tx.clear();
        self.push_msg(
            RouteNetlinkMessage::GetRoute(RouteMessage::default()),
            NLM_F_REQUEST | NLM_F_DUMP,
        );
        self.req.get_ref().send(&self.tx, 0)?;
        for msg in self.recv_dump("route dump").await? {
            if let RouteNetlinkMessage::NewRoute(r) = msg
                && let Some(k) = self.kernel_route(&r)
            {
                dump.routes.push(k);
            }
        }
        Ok(dump)
    }

    /// Collects a multipart answer up to NLMSG_DONE.
    async fn recv_dump(
        &mut self,
        what: &'static str,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        let mut out = Vec::new();
        loop {
            self.recv_req().await?;
            let mut off = 0;
            while off < self.rx.len() {
                let len = nl_len(&self.rx[off..]);
                if len == 0 {
                    break;
                }
                let bytes = &self.rx[off..off + len];
                off += len;
                match decode(bytes)? {
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) if e.code.is_some() => {
                        return Err(NetlinkError::Kernel {
                            what,
                            source: e.to_io(),
                        });
                    }
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    _ => {}
                }
            }
        }
    }

    /// Waits for the next batch of notifications (never returns without a
    /// monitor socket).
    pub async fn monitor(&mut self) -> Result<Vec<KernelEvent>, NetlinkError> {
        let Some(mon) = &self.mon else {
            return std::future::pending().await;
        };
        let mut buf = BytesMut::with_capacity(256 * 1024);
        loop {
            let mut guard = mon.readable().await?;
            match guard.try_io(|s| s.get_ref().recv(&mut buf, 0)) {
                Ok(Ok(_)) => break,
                Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    return Ok(vec![KernelEvent::Overrun]);
                }
                Ok(Err(e)) => return Err(e.into()),
                Err(_would_block) => continue,
            }
        }
        let mut events = Vec::new();
        let mut off = 0;
        while off < buf.len() {
            let len = nl_len(&buf[off..]);
            if len == 0 {
                break;
            }
            let payload = decode(&buf[off..off + len])?;
            off += len;
            let NetlinkPayload::InnerMessage(msg) = payload else {
                continue;
            };
            match msg {
                RouteNetlinkMessage::NewRoute(r) => {
                    events.extend(
                        self.kernel_route(&r).map(KernelEvent::RouteNew),
                    );
                }
                RouteNetlinkMessage::DelRoute(r) => {
                    events.extend(
                        self.kernel_route(&r).map(KernelEvent::RouteDel),
                    );
                }
                RouteNetlinkMessage::NewLink(l) => {
                    events.extend(self.learn_link(&l, true));
                }
                RouteNetlinkMessage::DelLink(l) => {
                    events.extend(self.learn_link(&l, false));
                }
                _ => {}
            }
        }
        Ok(events)
    }

    /// Updates the name tables; reports a link that appeared or vanished.
    fn learn_link(
        &mut self,
        l: &LinkMessage,
        present: bool,
    ) -> Option<KernelEvent> {
        let index = l.header.index;
        let name = l.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        });
        if present {
            let name = name?;
            let old = self.names.insert(index, name.clone());
            if let Some(old) = &old
                && *old != name
            {
                self.indexes.remove(old);
            }
            self.indexes.insert(name.clone(), index);
            (old.as_ref() != Some(&name)).then_some(KernelEvent::Link {
                name,
                present: true,
            })
        } else {
            let name = self.names.remove(&index).or(name)?;
            self.indexes.remove(&name);
            Some(KernelEvent::Link {
                name,
                present: false,
            })
        }
    }

    // ----- message conversion -----

    /// RTM_NEWROUTE body for a route of ours.
    fn new_route_msg(&self, dst: IpNetwork, target: &Target) -> RouteMessage {
        let mut msg = RouteMessage::default();
        fill_header(&mut msg.header, dst, self.protocol);
        msg.attributes
            .push(RouteAttribute::Destination(dst.ip().into()));
        match target {
            Target::Via(hops) if hops.len() == 1 => {
                msg.header.kind = RouteType::Unicast;
                msg.attributes.push(RouteAttribute::Gateway(hops[0].into()));
            }
            Target::Via(hops) => {
                msg.header.kind = RouteType::Unicast;
                let nhs = hops
                    .iter()
                    .map(|h| {
                        let mut nh = RouteNextHop::default();
                        nh.attributes
                            .push(RouteAttribute::Gateway((*h).into()));
                        nh
                    })
                    .collect();
                msg.attributes.push(RouteAttribute::MultiPath(nhs));
            }
            Target::Blackhole => msg.header.kind = RouteType::BlackHole,
            Target::Dev(name) => {
                msg.header.kind = RouteType::Unicast;
                msg.header.scope = RouteScope::Link;
                // An unknown name gets index 0, which the kernel refuses
                // with ENODEV: reported like any refusal.
                let index = self.indexes.get(name).copied().unwrap_or(0);
                msg.attributes.push(RouteAttribute::Oif(index));
            }
        }
        msg
    }

    /// A decoded main-table IPv4/IPv6 route, or `None` for anything else.
    pub fn kernel_route(&self, msg: &RouteMessage) -> Option<KernelRoute> {
        let h = &msg.header;
        let mut table = u32::from(h.table);
        let mut dst_ip = None;
        let mut metric = 0;
        let mut gateway = None;
        let mut oif = None;
        let mut multipath = None;
        let mut odd = false;
        for attr in &msg.attributes {
            match attr {
                RouteAttribute::Table(t) => table = *t,
                RouteAttribute::Destination(a) => dst_ip = route_ip(a),
                RouteAttribute::Priority(p) => metric = *p,
                RouteAttribute::Gateway(a) => gateway = route_ip(a),
                RouteAttribute::Oif(i) => oif = Some(*i),
                RouteAttribute::MultiPath(nhs) => multipath = Some(nhs),
                RouteAttribute::Encap(_) | RouteAttribute::Via(_) => odd = true,
                _ => {}
            }
        }
        if table != MAIN_TABLE || h.flags.bits() & libc::RTM_F_CLONED != 0 {
            return None;
        }
        let unspecified = match h.address_family {
            AddressFamily::Inet => IpAddr::from([0u8; 4]),
            AddressFamily::Inet6 => IpAddr::from([0u16; 8]),
            _ => return None,
        };
        let dst = IpNetwork::new(
            dst_ip.unwrap_or(unspecified),
            h.destination_prefix_length,
        )
        .ok()?;
        let kind = u8::from(h.kind);
        let target = if odd {
            None
        } else if h.kind == RouteType::BlackHole {
            Some(Target::Blackhole)
        } else if h.kind != RouteType::Unicast {
            None
        } else if let Some(nhs) = multipath {
            let hops: Option<Vec<IpAddr>> = nhs
                .iter()
                .map(|nh| {
                    nh.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Gateway(g) => route_ip(g),
                        _ => None,
                    })
                })
                .collect();
            hops.and_then(Target::via)
        } else if let Some(gw) = gateway {
            Some(Target::Via(vec![gw]))
        } else if h.scope == RouteScope::Link
            // IPv6 has no route scopes: the kernel reports every IPv6
            // route as universe, so a device route is one without gateway.
            || h.address_family == AddressFamily::Inet6
        {
            oif.and_then(|i| self.names.get(&i))
                .cloned()
                .map(Target::Dev)
        } else {
            None
        };
        Some(KernelRoute {
            dst,
            metric,
            protocol: u8::from(h.protocol),
            kind,
            target,
        })
    }
}

// ===== helper functions =====

/// Creates the sockets, inside `netns` when given. Runs on its own thread.
fn open_sockets(
    netns: Option<&Path>,
    monitor: bool,
) -> Result<(Socket, Option<Socket>), NetlinkError> {
    if let Some(path) = netns {
        let netns_err = |source| NetlinkError::Netns {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(netns_err)?;
        nix::sched::setns(file.as_fd(), CloneFlags::CLONE_NEWNET)
            .map_err(|e| netns_err(io::Error::from(e)))?;
    }
    let req = new_socket()?;
    // Failure answers carry only the header of the refused message.
    req.set_cap_ack(true)?;
    req.connect(&SocketAddr::new(0, 0))?;
    let mon = if monitor {
        let mon = new_socket()?;
        for group in [
            libc::RTNLGRP_LINK,
            libc::RTNLGRP_IPV4_ROUTE,
            libc::RTNLGRP_IPV6_ROUTE,
        ] {
            mon.add_membership(group)?;
        }
        Some(mon)
    } else {
        None
    };
    Ok((req, mon))
}

fn new_socket() -> Result<Socket, NetlinkError> {
    let mut sock = Socket::new(NETLINK_ROUTE)?;
    sock.bind_auto()?;
    sock.set_non_blocking(true)?;
    if setsockopt(&sock, sockopt::RcvBufForce, &RCVBUF).is_err() {
        // Not CAP_NET_ADMIN: take what rmem_max allows.
        sock.set_rx_buf_sz(RCVBUF)?;
    }
    let _ = setsockopt(&sock, sockopt::SndBufForce, &(4 * BATCH_BYTES));
    Ok(sock)
}

/// Registers a socket with tokio's reactor.
///
/// `AsyncFd::new` is deprecated because a type could hand out a different
/// or closed fd later; its replacement `register` is `unsafe`, which this
/// workspace forbids. `netlink_sys::Socket` owns its fd for its whole life
/// and closes it only in `Drop`, which is exactly the contract `register`
/// asks for, so the safe (deprecated) constructor is sound here.
#[allow(deprecated)]
fn async_fd(sock: Socket) -> io::Result<AsyncFd<Socket>> {
    AsyncFd::new(sock)
}

/// Header fields common to our routes.
fn fill_header(h: &mut RouteHeader, dst: IpNetwork, protocol: u8) {
    h.address_family = match dst {
        IpNetwork::V4(_) => AddressFamily::Inet,
        IpNetwork::V6(_) => AddressFamily::Inet6,
    };
    h.destination_prefix_length = dst.prefix();
    h.table = RouteHeader::RT_TABLE_MAIN;
    h.protocol = RouteProtocol::from(protocol);
    h.scope = RouteScope::Universe;
}

/// RTM_DELROUTE body matching exactly one kernel route.
fn del_route_msg(k: &KernelRoute) -> RouteMessage {
    let mut msg = RouteMessage::default();
    fill_header(&mut msg.header, k.dst, k.protocol);
    // RT_SCOPE_NOWHERE on delete means "any scope" (what `ip route del`
    // sends).
    msg.header.scope = RouteScope::NoWhere;
    msg.header.kind = RouteType::from(k.kind);
    msg.attributes
        .push(RouteAttribute::Destination(k.dst.ip().into()));
    if k.metric != 0 {
        msg.attributes.push(RouteAttribute::Priority(k.metric));
    }
    msg
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// `nlmsg_len` of the message at the start of `buf`, aligned to 4, or 0
/// when `buf` holds no complete message.
fn nl_len(buf: &[u8]) -> usize {
    match NetlinkBuffer::new_checked(buf) {
        Ok(b) => ((b.length() as usize + 3) & !3).min(buf.len()),
        Err(_) => 0,
    }
}

fn decode(
    bytes: &[u8],
) -> Result<NetlinkPayload<RouteNetlinkMessage>, NetlinkError> {
    NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes)
        .map(|m| m.payload)
        .map_err(|e| NetlinkError::Decode(e.to_string()))
}

/// `(sequence number, error code)` of an NLMSG_ERROR answer, read straight
/// from the bytes: this runs once per route in `AckMode::Every`.
fn parse_error_msg(msg: &[u8]) -> Option<(u32, i32)> {
    // struct nlmsghdr { u32 len; u16 type; u16 flags; u32 seq; u32 pid; }
    // followed, for NLMSG_ERROR, by { i32 error; struct nlmsghdr orig; }.
    if msg.len() < 20 {
        return None;
    }
    let kind = u16::from_ne_bytes([msg[4], msg[5]]);
    if kind != netlink_packet_core::NLMSG_ERROR {
        return None;
    }
    let seq = u32::from_ne_bytes(msg[8..12].try_into().ok()?);
    let code = i32::from_ne_bytes(msg[16..20].try_into().ok()?);
    Some((seq, code))
}

/// What an errno means, for the log line of a refused route.
pub fn errno_meaning(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(libc::ENETUNREACH) => {
            "next hop not reachable on any connected network".into()
        }
        Some(libc::ENODEV) => "interface does not exist".into(),
        Some(libc::EEXIST) => "a conflicting route exists".into(),
        Some(libc::EINVAL) => "invalid route (prefix, next hop or type)".into(),
        _ => err.to_string(),
    }
}
