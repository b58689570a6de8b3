//! Sockets: the BGP listener and outgoing connections, with TCP MD5
//! (RFC 2385) and GTSM (RFC 5082) applied before any segment is sent.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::sockopt;
use crate::speaker::ConnectSpec;

/// Bind the BGP listener (e.g. on the node IP and `listenPort`).
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    listen_with(addr, false)
}

/// [`listen`], with `v6_only` for an IPv6 socket that must not take IPv4
/// connections (`bindMode: None` binds 0.0.0.0 and `::` side by side).
pub fn listen_with(addr: SocketAddr, v6_only: bool) -> io::Result<TcpListener> {
    let s = Socket::new(
        Domain::for_address(addr),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // Dual-stack on "::" so IPv4 peers reach us too, unless asked.
        s.set_only_v6(v6_only)?;
        // The node's IPv6 address may still be tentative (duplicate
        // address detection) or not configured yet when bgpd starts: bind
        // anyway, sessions come up once the address is usable.
        s.set_freebind_v6(true)?;
    } else {
        s.set_freebind_v4(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(128)?;
    TcpListener::from_std(s.into())
}

/// RFC 5082 3: send with TTL 255 and accept only TTL >= 256 - hops.
pub fn apply_gtsm(
    sock: &impl std::os::fd::AsFd,
    v6: bool,
    hops: u8,
) -> io::Result<()> {
    let s = SockRef::from(sock);
    if v6 {
        s.set_unicast_hops_v6(255)?;
    } else {
        s.set_ttl_v4(255)?;
    }
    sockopt::set_min_ttl(
        &*s,
        v6,
        255u8.saturating_sub(hops.max(1)).saturating_add(1),
    )
}

/// Connect to a peer; MD5 and GTSM are set before `connect` so that the
/// SYN is already signed. Times out after `timeout` (the ConnectRetry
/// time: RFC 4271 8.2.2 drops an attempt when it expires).
pub async fn connect(
    spec: &ConnectSpec,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let v6 = spec.remote.is_ipv6();
    let sock = if v6 {
        TcpSocket::new_v6()?
    } else {
        TcpSocket::new_v4()?
    };
    if let Some(key) = spec.password.as_deref() {
        sockopt::set_md5(&sock, spec.remote.ip(), Some(key))?;
    }
    if let Some(h) = spec.ttl_security {
        apply_gtsm(&sock, v6, h)?;
    }
    if let Some(src) = spec.source
        && src.is_ipv6() == v6
    {
        sock.bind(SocketAddr::new(src, 0))?;
    }
    sock.set_nodelay(true)?;
    match tokio::time::timeout(timeout, sock.connect(spec.remote)).await {
        Ok(r) => r,
        Err(_) => {
            Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
        }
    }
}

/// Per-peer options on the listener (MD5 key) and on accepted sockets.
pub fn listener_md5(
    l: &TcpListener,
    peer: IpAddr,
    key: Option<&str>,
) -> io::Result<()> {
    sockopt::set_md5(l, peer, key)
}
