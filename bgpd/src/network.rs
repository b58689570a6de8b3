//! Sockets: the BGP listener and outgoing connections, with TCP MD5
//! (RFC 2385), GTSM (RFC 5082) and the DSCP CS6 marking applied before
//! any segment is sent.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::sockopt;
use crate::speaker::ConnectSpec;

/// DSCP CS6 ("Network Control", RFC 4594 3.1) in the TOS / Traffic Class
/// octet: routers' control-plane QoS protects BGP marked so. BIRD and FRR
/// mark their BGP sockets the same way.
pub const TOS_CS6: u32 = 0xc0;

/// RFC 5082 3: the lowest TTL a packet sent with 255 by a peer at most
/// `hops` away arrives with (256 - hops); anything lower is refused.
pub fn gtsm_min_ttl(hops: u8) -> u8 {
    255u8.saturating_sub(hops.max(1)).saturating_add(1)
}

/// Mark `s` with DSCP CS6. An IPv6 socket may carry IPv4-mapped
/// connections too, so it gets both marks.
fn mark_cs6(s: &SockRef<'_>, v6: bool) -> io::Result<()> {
    if v6 {
        s.set_tclass_v6(TOS_CS6)?;
        // Only meaningful for IPv4-mapped traffic; an IPv6-only socket
        // may refuse it.
        let _ = s.set_tos_v4(TOS_CS6);
        Ok(())
    } else {
        s.set_tos_v4(TOS_CS6)
    }
}

/// Bind the BGP listener (e.g. on the node IP and `listenPort`).
///
/// The listener sends with TTL (hop limit) 255 and DSCP CS6: the kernel
/// answers a peer's SYN itself, from the listener's options, before bgpd
/// sees the connection, and a GTSM peer (RFC 5082 3: "MUST ... TTL of
/// 255") drops a SYN-ACK sent with less. 255 is harmless for non-GTSM
/// peers. The listener also saves each SYN's headers, so that the TTL a
/// peer used can be checked before we send it anything ([`syn_ttl`]).
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
    let v6 = addr.is_ipv6();
    if v6 {
        s.set_unicast_hops_v6(255)?;
        let _ = s.set_ttl_v4(255);
    } else {
        s.set_ttl_v4(255)?;
    }
    mark_cs6(&SockRef::from(&s), v6)?;
    sockopt::set_save_syn(&s)?;
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
    sockopt::set_min_ttl(&*s, v6, gtsm_min_ttl(hops))
}

/// RFC 5082 3 on a listener: drop SYNs below `min` TTL (0: accept all).
/// Only right when every peer on the listener uses GTSM; the caller
/// decides. An IPv6 listener may also accept IPv4-mapped connections.
pub fn listener_min_ttl(l: &TcpListener, min: u8) -> io::Result<()> {
    let v6 = l.local_addr()?.is_ipv6();
    if v6 {
        let _ = sockopt::set_min_ttl(l, false, min);
    }
    sockopt::set_min_ttl(l, v6, min)
}

/// The TTL of the SYN that opened the accepted `stream` (see [`listen`]).
pub fn syn_ttl(stream: &TcpStream) -> io::Result<Option<u8>> {
    sockopt::saved_syn_ttl(stream)
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
    mark_cs6(&SockRef::from(&sock), v6)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtsm_min_ttl_follows_rfc5082() {
        assert_eq!(gtsm_min_ttl(1), 255);
        assert_eq!(gtsm_min_ttl(0), 255);
        assert_eq!(gtsm_min_ttl(2), 254);
        assert_eq!(gtsm_min_ttl(255), 1);
    }

    /// The listener and what it accepts send with TTL 255 and CS6, and a
    /// connecting socket is marked CS6 (both families).
    #[tokio::test]
    async fn listener_and_connections_are_marked_cs6_and_ttl_255() {
        for any in ["127.0.0.1:0", "[::1]:0"] {
            let l = listen(any.parse().unwrap()).unwrap();
            let addr = l.local_addr().unwrap();
            let v6 = addr.is_ipv6();
            let s = SockRef::from(&l);
            if v6 {
                assert_eq!(s.tclass_v6().unwrap(), TOS_CS6);
                assert_eq!(s.unicast_hops_v6().unwrap(), 255);
            } else {
                assert_eq!(s.tos_v4().unwrap(), TOS_CS6);
                assert_eq!(s.ttl_v4().unwrap(), 255);
            }
            let spec = ConnectSpec {
                remote: addr,
                source: None,
                password: None,
                ttl_security: None,
            };
            let c = connect(&spec, Duration::from_secs(5)).await.unwrap();
            let (a, _) = l.accept().await.unwrap();
            for sock in [SockRef::from(&c), SockRef::from(&a)] {
                if v6 {
                    assert_eq!(sock.tclass_v6().unwrap(), TOS_CS6);
                } else {
                    assert_eq!(sock.tos_v4().unwrap(), TOS_CS6);
                }
            }
            // The accepted socket inherited the listener's TTL 255.
            let (ar, cr) = (SockRef::from(&a), SockRef::from(&c));
            let ttl = |s: &SockRef<'_>| {
                if v6 {
                    s.unicast_hops_v6().unwrap()
                } else {
                    s.ttl_v4().unwrap()
                }
            };
            assert_eq!(ttl(&ar), 255);
            // The connecting side (no GTSM) kept the default TTL, and the
            // listener saved its SYN with that TTL.
            assert_ne!(ttl(&cr), 255);
            assert_eq!(syn_ttl(&a).unwrap(), Some(ttl(&cr) as u8));
        }
    }
}
