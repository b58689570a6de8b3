//! NLRI prefix encoding (RFC 4271 4.3, RFC 4760 5, RFC 7911 3).
//!
//! Prefixes are `ipnetwork::IpNetwork`, the type bgpd and felix-lite
//! already exchange in margay-ctlproto: it is a plain `Copy` value (no
//! heap), so a decoded UPDATE costs one `Vec` for all its prefixes and no
//! conversion on the way to the RIB. Host bits beyond the prefix length
//! are cleared on decode (RFC 4271 4.3: "trailing bits ... are irrelevant"),
//! so equal prefixes compare equal.

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, BytesMut};
use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};

use crate::error::DecodeError;
use crate::iana::Afi;

/// One NLRI entry: a prefix and, with ADD-PATH (RFC 7911), its path id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nlri {
    pub prefix: IpNetwork,
    /// RFC 7911 3 Path Identifier; `None` when ADD-PATH is not in use for
    /// the family in this direction.
    pub path_id: Option<u32>,
}

impl Nlri {
    /// A prefix without a path id.
    pub const fn new(prefix: IpNetwork) -> Nlri {
        Nlri {
            prefix,
            path_id: None,
        }
    }

    /// A prefix with an RFC 7911 path id.
    pub const fn with_path_id(prefix: IpNetwork, path_id: u32) -> Nlri {
        Nlri {
            prefix,
            path_id: Some(path_id),
        }
    }

    /// Octets this entry takes on the wire.
    pub fn encoded_len(&self, add_path: bool) -> usize {
        let id = if add_path { 4 } else { 0 };
        id + 1 + usize::from(self.prefix.prefix()).div_ceil(8)
    }

    /// Appends the entry. With `add_path`, a missing path id is sent as 0.
    pub fn encode(&self, add_path: bool, out: &mut BytesMut) {
        if add_path {
            out.put_u32(self.path_id.unwrap_or(0));
        }
        let len = self.prefix.prefix();
        out.put_u8(len);
        let n = usize::from(len).div_ceil(8);
        match self.prefix {
            IpNetwork::V4(p) => out.put_slice(&p.ip().octets()[..n]),
            IpNetwork::V6(p) => out.put_slice(&p.ip().octets()[..n]),
        }
    }
}

impl From<IpNetwork> for Nlri {
    fn from(prefix: IpNetwork) -> Nlri {
        Nlri::new(prefix)
    }
}

/// Decodes a run of NLRI entries of one address family, appending to
/// `out`. `base` is the offset of `buf` in the message (for errors).
///
/// RFC 7606 4/5.3: a prefix length beyond the address size, or a field
/// that does not end on an entry boundary, makes the field unparseable;
/// that is an `InvalidNetworkField` (session reset).
pub fn decode_prefixes(
    buf: &[u8],
    afi: Afi,
    add_path: bool,
    base: usize,
    out: &mut Vec<Nlri>,
) -> Result<(), DecodeError> {
    let max_len: u8 = match afi {
        Afi::Ipv4 => 32,
        Afi::Ipv6 => 128,
        Afi::Other(_) => {
            return Err(DecodeError::InvalidNetworkField {
                offset: base,
                reason: "NLRI of an unsupported address family",
            });
        }
    };
    let err = |pos: usize, reason| DecodeError::InvalidNetworkField {
        offset: base + pos,
        reason,
    };
    let mut pos = 0;
    while pos < buf.len() {
        let path_id = if add_path {
            let id =
                buf.get(pos..pos + 4).ok_or(err(pos, "truncated path id"))?;
            pos += 4;
            Some(u32::from_be_bytes([id[0], id[1], id[2], id[3]]))
        } else {
            None
        };
        let len = *buf.get(pos).ok_or(err(pos, "missing prefix length"))?;
        if len > max_len {
            return Err(err(pos, "prefix length exceeds address size"));
        }
        let n = usize::from(len).div_ceil(8);
        let bytes = buf
            .get(pos + 1..pos + 1 + n)
            .ok_or(err(pos, "prefix overruns the field"))?;
        pos += 1 + n;
        let prefix = if max_len == 32 {
            let mut a = [0u8; 4];
            a[..n].copy_from_slice(bytes);
            let v = u32::from_be_bytes(a) & mask32(len);
            // `len <= 32` was checked above, so construction cannot fail.
            IpNetwork::V4(
                Ipv4Network::new_checked(Ipv4Addr::from(v), len)
                    .ok_or(err(pos, "prefix length exceeds address size"))?,
            )
        } else {
            let mut a = [0u8; 16];
            a[..n].copy_from_slice(bytes);
            let v = u128::from_be_bytes(a) & mask128(len);
            IpNetwork::V6(
                Ipv6Network::new_checked(Ipv6Addr::from(v), len)
                    .ok_or(err(pos, "prefix length exceeds address size"))?,
            )
        };
        out.push(Nlri { prefix, path_id });
    }
    Ok(())
}

/// Network mask of `len` bits for IPv4.
fn mask32(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

/// Network mask of `len` bits for IPv6.
fn mask128(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

/// Appends every entry of `nlri`.
pub fn encode_prefixes(nlri: &[Nlri], add_path: bool, out: &mut BytesMut) {
    for n in nlri {
        n.encode(add_path, out);
    }
}
