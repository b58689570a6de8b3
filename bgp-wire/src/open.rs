//! OPEN message (RFC 4271 4.2) with RFC 5492 capabilities and RFC 9072
//! extended optional parameter lengths.

use std::net::Ipv4Addr;

use bytes::{BufMut, BytesMut};
use strum::FromRepr;

use crate::DecodeCxt;
use crate::error::{DecodeError, EncodeError};
use crate::iana::{
    AS_TRANS, Afi, BGP_VERSION, Family, FamilySet, OPT_PARAM_CAPABILITIES,
    OPT_PARAM_EXTENDED, cap_code,
};
use crate::message::HEADER_LEN;

// ===== types =====

/// An OPEN message. All optional parameters are capabilities (RFC 5492);
/// other parameter types are rejected on decode (RFC 4271 6.2).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OpenMsg {
    pub version: u8,
    /// "My Autonomous System": AS_TRANS when the real AS needs 4 octets.
    pub my_as: u16,
    pub hold_time: u16,
    pub bgp_id: Ipv4Addr,
    pub capabilities: Vec<Capability>,
}

/// A capability (RFC 5492 4). Capabilities whose value does not match
/// the format we know are kept as `Unknown` so they still round-trip.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Capability {
    /// RFC 4760 8.
    MultiProtocol(Family),
    /// RFC 2918 2.
    RouteRefresh,
    /// RFC 7313 3.
    EnhancedRouteRefresh,
    /// RFC 6793 3, carrying the speaker's real AS.
    FourOctetAs(u32),
    /// RFC 4724 3.
    GracefulRestart(GracefulRestartCap),
    /// RFC 8950 3: NLRI families that may use another next-hop AFI.
    ExtendedNextHop(Vec<ExtNextHop>),
    /// RFC 8654 3.
    ExtendedMessage,
    /// RFC 7911 4.
    AddPath(Vec<AddPathFamily>),
    /// Anything else (FQDN, long-lived GR, ...), raw.
    Unknown { code: u8, value: Vec<u8> },
}

/// RFC 4724 3 graceful restart capability.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct GracefulRestartCap {
    /// "Restart State" (R) bit: the sender has restarted.
    pub restart_state: bool,
    /// RFC 8538 2 "N" bit: graceful restart also for NOTIFICATIONs.
    pub notification: bool,
    /// Restart time in seconds (12 bits, at most 4095).
    pub restart_time: u16,
    pub families: Vec<GrFamily>,
}

/// One AFI/SAFI in the graceful restart capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct GrFamily {
    pub family: Family,
    /// "Forwarding State" (F) bit: forwarding state was preserved.
    pub forwarding_preserved: bool,
}

/// One RFC 8950 3 tuple: NLRI of `family` may carry a next hop of
/// `next_hop_afi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExtNextHop {
    pub family: Family,
    pub next_hop_afi: Afi,
}

/// RFC 7911 4 Send/Receive field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, FromRepr)]
#[repr(u8)]
pub enum AddPathMode {
    Receive = 1,
    Send = 2,
    Both = 3,
}

/// One family in the ADD-PATH capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddPathFamily {
    pub family: Family,
    pub mode: AddPathMode,
}

// ===== impl OpenMsg =====

/// The families of the multiprotocol capabilities in `caps`. RFC 4760
/// section 8: a speaker that announces none supports only IPv4 unicast.
pub fn mp_families(caps: &[Capability]) -> Vec<Family> {
    let v: Vec<Family> = caps
        .iter()
        .filter_map(|c| match c {
            Capability::MultiProtocol(f) => Some(*f),
            _ => None,
        })
        .collect();
    if v.is_empty() {
        vec![Family::IPV4_UNICAST]
    } else {
        v
    }
}

impl OpenMsg {
    /// An OPEN for `asn` (AS_TRANS in My AS when it needs 4 octets, RFC
    /// 6793 4.2.1). Include `Capability::FourOctetAs(asn)` yourself.
    pub fn new(
        asn: u32,
        hold_time: u16,
        bgp_id: Ipv4Addr,
        capabilities: Vec<Capability>,
    ) -> OpenMsg {
        OpenMsg {
            version: BGP_VERSION,
            my_as: u16::try_from(asn).unwrap_or(AS_TRANS),
            hold_time,
            bgp_id,
            capabilities,
        }
    }

    /// The sender's AS: the 4-octet AS capability if present (RFC 6793
    /// 4.2.1), else My Autonomous System.
    pub fn asn(&self) -> u32 {
        self.capabilities
            .iter()
            .find_map(|c| match c {
                Capability::FourOctetAs(a) => Some(*a),
                _ => None,
            })
            .unwrap_or(u32::from(self.my_as))
    }

    /// Whether a capability satisfying `f` was sent.
    pub fn has(&self, f: impl Fn(&Capability) -> bool) -> bool {
        self.capabilities.iter().any(f)
    }

    /// Families announced with the multiprotocol capability
    /// ([`mp_families`]).
    pub fn families(&self) -> Vec<Family> {
        mp_families(&self.capabilities)
    }

    /// The graceful restart capability, if sent.
    pub fn graceful_restart(&self) -> Option<&GracefulRestartCap> {
        self.capabilities.iter().find_map(|c| match c {
            Capability::GracefulRestart(g) => Some(g),
            _ => None,
        })
    }

    /// ADD-PATH modes per family, if sent.
    fn add_path(&self) -> impl Iterator<Item = &AddPathFamily> {
        self.capabilities
            .iter()
            .filter_map(|c| match c {
                Capability::AddPath(v) => Some(v.iter()),
                _ => None,
            })
            .flatten()
    }

    /// Families for which extended next hop (RFC 8950) was announced.
    fn ext_nh(&self) -> FamilySet {
        let mut s = FamilySet::EMPTY;
        for c in &self.capabilities {
            if let Capability::ExtendedNextHop(v) = c {
                for e in v.iter().filter(|e| e.next_hop_afi == Afi::Ipv6) {
                    s.insert(e.family);
                }
            }
        }
        s
    }

    /// Decodes an OPEN body (after the header).
    pub fn decode(body: &[u8]) -> Result<OpenMsg, DecodeError> {
        let off = |p: usize| HEADER_LEN + p;
        let malformed = |p: usize, reason| DecodeError::MalformedOpen {
            offset: off(p),
            reason,
        };
        if body.len() < 10 {
            return Err(malformed(0, "shorter than the fixed OPEN fields"));
        }
        let version = body[0];
        // RFC 4271 6.2: unsupported version -> Unsupported Version Number.
        if version != BGP_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                offset: off(0),
                version,
            });
        }
        let my_as = u16::from_be_bytes([body[1], body[2]]);
        let hold_time = u16::from_be_bytes([body[3], body[4]]);
        // RFC 4271 6.2: "An implementation MUST reject Hold Time values of
        // one or two seconds."
        if hold_time == 1 || hold_time == 2 {
            return Err(DecodeError::UnacceptableHoldTime {
                offset: off(3),
                hold_time,
            });
        }
        let bgp_id = Ipv4Addr::new(body[5], body[6], body[7], body[8]);
        // RFC 6286 2.2: the BGP Identifier MUST be non-zero.
        if bgp_id.is_unspecified() {
            return Err(DecodeError::BadBgpId {
                offset: off(5),
                id: bgp_id,
            });
        }
        let opt_len = usize::from(body[9]);
        let mut pos = 10;
        // RFC 9072 2: Non-Ext OP Type 255 announces the extended format
        // with 2-octet lengths.
        let extended = opt_len > 0 && body.get(10) == Some(&OPT_PARAM_EXTENDED);
        let params_len = if extended {
            let b = body
                .get(11..13)
                .ok_or(malformed(11, "truncated extended parameters length"))?;
            pos = 13;
            usize::from(u16::from_be_bytes([b[0], b[1]]))
        } else {
            opt_len
        };
        if pos + params_len != body.len() {
            return Err(malformed(9, "optional parameters length mismatch"));
        }
        let mut capabilities = Vec::new();
        while pos < body.len() {
            let ptype = body[pos];
            let hdr = if extended { 3 } else { 2 };
            let h = body
                .get(pos..pos + hdr)
                .ok_or(malformed(pos, "truncated parameter header"))?;
            let plen = if extended {
                usize::from(u16::from_be_bytes([h[1], h[2]]))
            } else {
                usize::from(h[1])
            };
            let vstart = pos + hdr;
            let value = body
                .get(vstart..vstart + plen)
                .ok_or(malformed(pos, "parameter overruns OPEN"))?;
            // RFC 4271 6.2: an unrecognized optional parameter -> error
            // subcode Unsupported Optional Parameters.
            if ptype != OPT_PARAM_CAPABILITIES {
                return Err(DecodeError::UnsupportedOptParam {
                    offset: off(pos),
                    param_type: ptype,
                });
            }
            decode_caps(value, off(vstart), &mut capabilities)?;
            pos = vstart + plen;
        }
        Ok(OpenMsg {
            version,
            my_as,
            hold_time,
            bgp_id,
            capabilities,
        })
    }

    /// Appends the OPEN body. All capabilities go in one optional
    /// parameter, as GoBGP and BIRD send them (RFC 5492 4 allows either);
    /// beyond 255 octets the RFC 9072 extended format is used.
    pub(crate) fn encode_body(
        &self,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        out.put_u8(self.version);
        out.put_u16(self.my_as);
        out.put_u16(self.hold_time);
        out.put_slice(&self.bgp_id.octets());
        let mut caps = BytesMut::new();
        for c in &self.capabilities {
            encode_cap(c, &mut caps)?;
        }
        if caps.is_empty() {
            out.put_u8(0);
        } else if caps.len() + 2 <= 255 {
            out.put_u8(caps.len() as u8 + 2);
            out.put_u8(OPT_PARAM_CAPABILITIES);
            out.put_u8(caps.len() as u8);
            out.put_slice(&caps);
        } else {
            // RFC 9072 2: Non-Ext OP Len and Type 255, a 2-octet total,
            // then parameters with 2-octet lengths.
            let total = caps.len() + 3;
            let total16 = u16::try_from(total)
                .map_err(|_| EncodeError::OptParamsTooLong { length: total })?;
            out.put_u8(255);
            out.put_u8(OPT_PARAM_EXTENDED);
            out.put_u16(total16);
            out.put_u8(OPT_PARAM_CAPABILITIES);
            out.put_u16(caps.len() as u16);
            out.put_slice(&caps);
        }
        Ok(())
    }
}

// ===== capability decode / encode =====

/// Decodes the capabilities in one optional parameter value.
fn decode_caps(
    buf: &[u8],
    base: usize,
    out: &mut Vec<Capability>,
) -> Result<(), DecodeError> {
    let mut pos = 0;
    while pos < buf.len() {
        let h = buf.get(pos..pos + 2).ok_or(DecodeError::MalformedOpen {
            offset: base + pos,
            reason: "truncated capability header",
        })?;
        let (code, len) = (h[0], usize::from(h[1]));
        let value = buf.get(pos + 2..pos + 2 + len).ok_or(
            DecodeError::MalformedOpen {
                offset: base + pos,
                reason: "capability overruns its parameter",
            },
        )?;
        out.push(Capability::decode(code, value));
        pos += 2 + len;
    }
    Ok(())
}

/// Reads a big-endian u16 at `i`.
fn be16(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

impl Capability {
    /// Decodes one capability value; unknown codes and values of
    /// unexpected shape become `Unknown`.
    pub fn decode(code: u8, v: &[u8]) -> Capability {
        let parsed = match (code, v.len()) {
            (cap_code::MULTIPROTOCOL, 4) => Some(Capability::MultiProtocol(
                Family::new(be16(v, 0).into(), v[3].into()),
            )),
            (cap_code::ROUTE_REFRESH, 0) => Some(Capability::RouteRefresh),
            (cap_code::ENHANCED_ROUTE_REFRESH, 0) => {
                Some(Capability::EnhancedRouteRefresh)
            }
            (cap_code::EXTENDED_MESSAGE, 0) => {
                Some(Capability::ExtendedMessage)
            }
            (cap_code::FOUR_OCTET_AS, 4) => {
                Some(Capability::FourOctetAs(u32::from_be_bytes([
                    v[0], v[1], v[2], v[3],
                ])))
            }
            (cap_code::GRACEFUL_RESTART, n) if n >= 2 && (n - 2) % 4 == 0 => {
                let families = v[2..]
                    .chunks_exact(4)
                    .map(|t| GrFamily {
                        family: Family::new(be16(t, 0).into(), t[2].into()),
                        forwarding_preserved: t[3] & 0x80 != 0,
                    })
                    .collect();
                Some(Capability::GracefulRestart(GracefulRestartCap {
                    restart_state: v[0] & 0x80 != 0,
                    notification: v[0] & 0x40 != 0,
                    restart_time: be16(v, 0) & 0x0FFF,
                    families,
                }))
            }
            (cap_code::EXTENDED_NEXT_HOP, n) if n % 6 == 0 => v
                .chunks_exact(6)
                .map(|t| {
                    // The NLRI SAFI is 2 octets here; ours are 1 octet.
                    let safi = u8::try_from(be16(t, 2)).ok()?;
                    Some(ExtNextHop {
                        family: Family::new(be16(t, 0).into(), safi.into()),
                        next_hop_afi: be16(t, 4).into(),
                    })
                })
                .collect::<Option<Vec<_>>>()
                .map(Capability::ExtendedNextHop),
            (cap_code::ADD_PATH, n) if n % 4 == 0 => v
                .chunks_exact(4)
                .map(|t| {
                    let mode = AddPathMode::from_repr(t[3])?;
                    Some(AddPathFamily {
                        family: Family::new(be16(t, 0).into(), t[2].into()),
                        mode,
                    })
                })
                .collect::<Option<Vec<_>>>()
                .map(Capability::AddPath),
            _ => None,
        };
        parsed.unwrap_or_else(|| Capability::Unknown {
            code,
            value: v.to_vec(),
        })
    }

    /// The capability code.
    pub fn code(&self) -> u8 {
        match self {
            Capability::MultiProtocol(_) => cap_code::MULTIPROTOCOL,
            Capability::RouteRefresh => cap_code::ROUTE_REFRESH,
            Capability::EnhancedRouteRefresh => {
                cap_code::ENHANCED_ROUTE_REFRESH
            }
            Capability::FourOctetAs(_) => cap_code::FOUR_OCTET_AS,
            Capability::GracefulRestart(_) => cap_code::GRACEFUL_RESTART,
            Capability::ExtendedNextHop(_) => cap_code::EXTENDED_NEXT_HOP,
            Capability::ExtendedMessage => cap_code::EXTENDED_MESSAGE,
            Capability::AddPath(_) => cap_code::ADD_PATH,
            Capability::Unknown { code, .. } => *code,
        }
    }
}

/// Appends one capability (code, length, value).
fn encode_cap(c: &Capability, out: &mut BytesMut) -> Result<(), EncodeError> {
    out.put_u8(c.code());
    let len_at = out.len();
    out.put_u8(0);
    match c {
        Capability::MultiProtocol(f) => {
            out.put_u16(f.afi.into());
            out.put_u8(0);
            out.put_u8(f.safi.into());
        }
        Capability::RouteRefresh
        | Capability::EnhancedRouteRefresh
        | Capability::ExtendedMessage => {}
        Capability::FourOctetAs(a) => out.put_u32(*a),
        Capability::GracefulRestart(g) => {
            let mut flags = 0u16;
            if g.restart_state {
                flags |= 0x8000;
            }
            if g.notification {
                flags |= 0x4000;
            }
            out.put_u16(flags | (g.restart_time & 0x0FFF));
            for f in &g.families {
                out.put_u16(f.family.afi.into());
                out.put_u8(f.family.safi.into());
                out.put_u8(if f.forwarding_preserved { 0x80 } else { 0 });
            }
        }
        Capability::ExtendedNextHop(v) => {
            for e in v {
                out.put_u16(e.family.afi.into());
                out.put_u16(u8::from(e.family.safi).into());
                out.put_u16(e.next_hop_afi.into());
            }
        }
        Capability::AddPath(v) => {
            for e in v {
                out.put_u16(e.family.afi.into());
                out.put_u8(e.family.safi.into());
                out.put_u8(e.mode as u8);
            }
        }
        Capability::Unknown { value, .. } => out.put_slice(value),
    }
    let len = out.len() - len_at - 1;
    out[len_at] = u8::try_from(len)
        .map_err(|_| EncodeError::OptParamsTooLong { length: len })?;
    Ok(())
}

// ===== negotiation =====

/// Derives the per-direction codec contexts from the two OPENs:
/// `(rx, tx)`, where `rx` decodes what the peer sends and `tx` encodes
/// what we send.
///
/// - 4-octet AS: both sent the capability (RFC 6793 4.1).
/// - ADD-PATH: rx for families where we receive and the peer sends, tx
///   the other way round (RFC 7911 4).
/// - Extended next hop: rx for families we announced, tx for families
///   the peer announced (RFC 8950 3: send only if the peer announced).
/// - Extended messages: both sent the capability (RFC 8654 3).
pub fn negotiate(local: &OpenMsg, remote: &OpenMsg) -> (DecodeCxt, DecodeCxt) {
    let four = |o: &OpenMsg| o.has(|c| matches!(c, Capability::FourOctetAs(_)));
    let ext_msg = |o: &OpenMsg| o.has(|c| *c == Capability::ExtendedMessage);
    let four_octet_as = four(local) && four(remote);
    let extended_msg = ext_msg(local) && ext_msg(remote);
    let mode = |o: &OpenMsg, f: Family, want: AddPathMode| {
        o.add_path().any(|a| {
            a.family == f && (a.mode == want || a.mode == AddPathMode::Both)
        })
    };
    let (mut rx_ap, mut tx_ap) = (FamilySet::EMPTY, FamilySet::EMPTY);
    for f in local.add_path().map(|a| a.family) {
        if mode(local, f, AddPathMode::Receive)
            && mode(remote, f, AddPathMode::Send)
        {
            rx_ap.insert(f);
        }
        if mode(local, f, AddPathMode::Send)
            && mode(remote, f, AddPathMode::Receive)
        {
            tx_ap.insert(f);
        }
    }
    let rx = DecodeCxt {
        four_octet_as,
        add_path: rx_ap,
        extended_nh: local.ext_nh(),
        extended_msg,
    };
    let tx = DecodeCxt {
        four_octet_as,
        add_path: tx_ap,
        extended_nh: remote.ext_nh(),
        extended_msg,
    };
    (rx, tx)
}
