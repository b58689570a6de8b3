//! The BFD sockets of the main loop (RFC 5881): one listener per address
//! family on UDP port 3784 that reports each datagram with its TTL, and
//! one sending socket per session, bound to its own source port in
//! 49152-65535 and sending with TTL 255. Nothing here knows the protocol.

use std::collections::HashMap;
use std::io;
use std::io::IoSliceMut;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;

use bytes::Bytes;
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt,
    sockopt,
};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::{CONTROL_PORT, SOURCE_PORTS, TTL};
use crate::tasks::Input;

/// One datagram received on port 3784.
#[derive(Debug)]
pub struct Received {
    pub src: IpAddr,
    /// IPv4 TTL or IPv6 Hop Limit as received (0 when the kernel did not
    /// report it, which fails the RFC 5881 check).
    pub ttl: u8,
    pub payload: Bytes,
}

/// The sockets.
pub struct BfdIo {
    inputs: mpsc::UnboundedSender<Input>,
    sessions: HashMap<u32, (UdpSocket, SocketAddr)>,
    listening_v4: bool,
    listening_v6: bool,
}

impl BfdIo {
    pub fn new(inputs: mpsc::UnboundedSender<Input>) -> BfdIo {
        BfdIo {
            inputs,
            sessions: HashMap::new(),
            listening_v4: false,
            listening_v6: false,
        }
    }

    /// Open session `discr`'s socket (and the family's listener, once).
    pub fn open(&mut self, discr: u32, local: Option<IpAddr>, remote: IpAddr) {
        let listening = if remote.is_ipv4() {
            &mut self.listening_v4
        } else {
            &mut self.listening_v6
        };
        if !*listening {
            match listener(remote.is_ipv6()) {
                Ok(sock) => {
                    *listening = true;
                    tokio::spawn(bfd_rx(sock, self.inputs.clone()));
                }
                Err(e) => tracing::warn!(
                    port = CONTROL_PORT,
                    "BFD listener not opened, retried with the next \
                     session: {e}"
                ),
            }
        }
        match sender(discr, local, remote) {
            Ok(s) => {
                self.sessions
                    .insert(discr, (s, SocketAddr::new(remote, CONTROL_PORT)));
            }
            Err(e) => tracing::warn!(%remote, discr, "BFD socket: {e}"),
        }
    }

    /// Send without waiting: a datagram that does not fit the socket
    /// buffer is lost, which BFD tolerates (the Detection Time spans
    /// several packets).
    pub fn send(&self, discr: u32, bytes: &[u8]) {
        if let Some((s, to)) = self.sessions.get(&discr)
            && let Err(e) = s.try_send_to(bytes, *to)
        {
            tracing::debug!(%to, "BFD send: {e}");
        }
    }

    pub fn close(&mut self, discr: u32) {
        self.sessions.remove(&discr);
    }
}

/// The port-3784 listener of one family, reporting received TTLs.
fn listener(v6: bool) -> io::Result<UdpSocket> {
    let (domain, addr) = if v6 {
        (Domain::IPV6, IpAddr::V6(Ipv6Addr::UNSPECIFIED))
    } else {
        (Domain::IPV4, IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if v6 {
        s.set_only_v6(true)?;
        setsockopt(&s, sockopt::Ipv6RecvHopLimit, &true)?;
    } else {
        setsockopt(&s, sockopt::Ipv4RecvTtl, &true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::new(addr, CONTROL_PORT).into())?;
    UdpSocket::from_std(s.into())
}

/// A sending socket on a free source port of RFC 5881's range, TTL 255.
fn sender(
    discr: u32,
    local: Option<IpAddr>,
    remote: IpAddr,
) -> io::Result<UdpSocket> {
    let domain = Domain::for_address(SocketAddr::new(remote, 0));
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    // RFC 5881 section 5: "all BFD Control packets for the session MUST
    // be sent with a Time to Live (TTL) or Hop Limit value of 255."
    if remote.is_ipv4() {
        s.set_ttl_v4(TTL.into())?;
    } else {
        s.set_unicast_hops_v6(TTL.into())?;
    }
    s.set_nonblocking(true)?;
    let ip = local.unwrap_or(match remote {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    });
    // The source port "SHOULD be unique among all BFD sessions": start
    // at a port derived from the discriminator and take the first free.
    let (lo, hi) = (*SOURCE_PORTS.start(), *SOURCE_PORTS.end());
    let span = u32::from(hi - lo) + 1;
    let first = discr % span;
    let mut last = None;
    for i in 0..64 {
        let port = lo + ((first + i * 7919) % span) as u16;
        match s.bind(&SocketAddr::new(ip, port).into()) {
            Ok(()) => return UdpSocket::from_std(s.into()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free source port")))
}

/// Read datagrams with their TTL and hand them to the main loop.
async fn bfd_rx(sock: UdpSocket, inputs: mpsc::UnboundedSender<Input>) {
    let mut buf = [0u8; 512];
    loop {
        if let Err(e) = sock.readable().await {
            tracing::warn!("BFD listener: {e}");
            return;
        }
        let got = sock.try_io(Interest::READABLE, || {
            recv_with_ttl(sock.as_raw_fd(), &mut buf)
        });
        match got {
            Ok((src, ttl, n)) => {
                let r = Received {
                    src,
                    ttl,
                    payload: Bytes::copy_from_slice(&buf[..n]),
                };
                if inputs.send(Input::Bfd(r)).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => tracing::debug!("BFD receive: {e}"),
        }
    }
}

/// One `recvmsg` returning the source, the TTL / Hop Limit and the size.
fn recv_with_ttl(
    fd: std::os::fd::RawFd,
    buf: &mut [u8],
) -> io::Result<(IpAddr, u8, usize)> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(libc::c_int);
    let msg = recvmsg::<SockaddrStorage>(
        fd,
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .map_err(io::Error::from)?;
    let src = msg
        .address
        .and_then(|a| {
            a.as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        })
        .ok_or_else(|| io::Error::other("datagram without source"))?;
    let mut ttl = 0u8;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            match c {
                ControlMessageOwned::Ipv4Ttl(t)
                | ControlMessageOwned::Ipv6HopLimit(t) => {
                    ttl = u8::try_from(t).unwrap_or(0);
                }
                _ => {}
            }
        }
    }
    Ok((src, ttl, msg.bytes))
}
