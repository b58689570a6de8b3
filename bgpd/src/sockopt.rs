//! Socket options no safe crate offers: RFC 2385 TCP MD5 signatures, the
//! RFC 5082 minimum TTL and the saved SYN (whose TTL GTSM checks on a
//! listener shared with non-GTSM peers). The only module of the crate
//! with `unsafe` apart from one prefetch hint in `rib/table/index.rs`
//! (bgpd/Cargo.toml says why each is there).
#![allow(unsafe_code)]

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

/// RFC 2385 keys are at most 80 octets on Linux (TCP_MD5SIG_MAXKEYLEN).
pub const MD5_MAX_KEY_LEN: usize = 80;

/// `struct tcp_md5sig` from linux/tcp.h (uapi), which libc lacks.
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: u32,
    key: [u8; MD5_MAX_KEY_LEN],
}

/// Install (or, with `None`, remove) the MD5 key for segments to/from
/// `peer` on `sock` (a listener or a socket before `connect`).
pub fn set_md5(
    sock: &impl AsRawFd,
    peer: IpAddr,
    key: Option<&str>,
) -> io::Result<()> {
    let key = key.unwrap_or("").as_bytes();
    if key.len() > MD5_MAX_KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "TCP MD5 key is {} octets; at most {MD5_MAX_KEY_LEN} allowed",
                key.len()
            ),
        ));
    }
    let sa = socket2::SockAddr::from(SocketAddr::new(peer, 0));
    // SAFETY: sockaddr_storage and the rest are plain integers, for which
    // all-zero is a valid value.
    let mut sig: TcpMd5Sig = unsafe { std::mem::zeroed() };
    // SAFETY: `sa.as_ptr()` points to `sa.len()` valid bytes, at most the
    // size of sockaddr_storage, which is what we copy into.
    unsafe {
        std::ptr::copy_nonoverlapping(
            sa.as_ptr() as *const u8,
            &mut sig.addr as *mut _ as *mut u8,
            sa.len() as usize,
        );
    }
    sig.keylen = key.len() as u16;
    sig.key[..key.len()].copy_from_slice(key);
    // SAFETY: `sig` is a live, initialised tcp_md5sig and the length passed
    // is its size, as the kernel's do_tcp_setsockopt expects.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            &sig as *const _ as *const libc::c_void,
            size_of::<TcpMd5Sig>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// RFC 5082 3: accept only packets whose TTL (hop limit) is at least
/// `min` (255 minus the allowed hops + 1).
pub fn set_min_ttl(sock: &impl AsRawFd, v6: bool, min: u8) -> io::Result<()> {
    let (level, opt) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_MINHOPCOUNT)
    } else {
        (libc::IPPROTO_IP, libc::IP_MINTTL)
    };
    let v: libc::c_int = min.into();
    // SAFETY: an int option value with its exact size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            opt,
            &v as *const _ as *const libc::c_void,
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Keep the headers of each incoming SYN on `listener` (TCP_SAVE_SYN), so
/// that [`saved_syn_ttl`] can read the TTL the peer sent it with.
pub fn set_save_syn(listener: &impl AsRawFd) -> io::Result<()> {
    let v: libc::c_int = 1;
    // SAFETY: an int option value with its exact size.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_SAVE_SYN,
            &v as *const _ as *const libc::c_void,
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The TTL (IPv4) or hop limit (IPv6) of the SYN that opened the accepted
/// `sock`, from the headers the listener saved (TCP_SAVED_SYN). `None`
/// when nothing was saved. The kernel hands the headers out only once.
pub fn saved_syn_ttl(sock: &impl AsRawFd) -> io::Result<Option<u8>> {
    // An IPv6 header with extension headers plus a TCP header with
    // options fits easily.
    let mut buf = [0u8; 512];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: `buf` is writable for `len` bytes; the kernel writes at most
    // that many and stores the real length in `len`.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_SAVED_SYN,
            buf.as_mut_ptr() as *mut libc::c_void,
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(header_ttl(&buf[..(len as usize).min(buf.len())]))
}

/// The TTL / hop limit field of an IPv4 or IPv6 header.
fn header_ttl(h: &[u8]) -> Option<u8> {
    match h.first()? >> 4 {
        4 => h.get(8).copied(),
        6 => h.get(7).copied(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_key_length_is_checked_and_options_apply() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer: IpAddr = "127.0.0.2".parse().unwrap();
        set_md5(&l, peer, Some("secret")).unwrap();
        set_md5(&l, peer, None).unwrap();
        let long = "x".repeat(81);
        let e = set_md5(&l, peer, Some(&long)).unwrap_err();
        assert!(e.to_string().contains("at most 80"), "{e}");
        set_min_ttl(&l, false, 254).unwrap();
    }

    #[test]
    fn saved_syn_gives_the_ttl_the_peer_sent() {
        let l = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            None,
        )
        .unwrap();
        l.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        set_save_syn(&l).unwrap();
        l.listen(1).unwrap();
        let addr = l.local_addr().unwrap().as_socket().unwrap();
        let c = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            None,
        )
        .unwrap();
        c.set_ttl_v4(77).unwrap();
        c.connect(&addr.into()).unwrap();
        let (a, _) = l.accept().unwrap();
        assert_eq!(saved_syn_ttl(&a).unwrap(), Some(77));
        // Handed out once.
        assert_eq!(saved_syn_ttl(&a).unwrap(), None);
    }

    #[test]
    fn header_ttl_reads_both_families() {
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        v4[8] = 1;
        assert_eq!(header_ttl(&v4), Some(1));
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[7] = 255;
        assert_eq!(header_ttl(&v6), Some(255));
        assert_eq!(header_ttl(&[]), None);
    }
}
