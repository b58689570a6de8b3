//! Path attribute decoding with RFC 7606 error handling.
//!
//! Every attribute is parsed once. A malformed one produces an
//! [`AttrError`] carrying the action RFC 7606 section 7 assigns to that
//! attribute; only the cases where RFC 7606 keeps "session reset" (MP_REACH
//! / MP_UNREACH that cannot be parsed, repeated MP attributes) return a
//! [`DecodeError`].

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{
    Aggregator, AsPath, AsSegment, Community, LargeCommunity, MpReach,
    MpUnreach, NextHop, Origin, PathAttrs, RawAttr, SegmentType,
};
use crate::DecodeCxt;
use crate::error::{
    AttrError, AttrErrorKind as K, DecodeError, ErrorAction as A,
};
use crate::iana::{Afi, Family, Safi, attr_flags as F, attr_type as T};
use crate::nlri::decode_prefixes;

/// The decoded path attribute section of one UPDATE.
#[derive(Clone, Debug, Default)]
pub struct AttrSection {
    pub attrs: PathAttrs,
    pub mp_reach: Option<MpReach>,
    pub mp_unreach: Option<MpUnreach>,
    /// RFC 7606 findings, in order of discovery.
    pub errors: Vec<AttrError>,
    /// Type codes present (even if malformed or discarded).
    pub(crate) seen: SeenSet,
}

/// Which attribute type codes occurred (a 256-bit set).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SeenSet([u64; 4]);

impl SeenSet {
    /// Marks `code`; returns whether it was already marked.
    pub(crate) fn mark(&mut self, code: u8) -> bool {
        let (w, b) = (usize::from(code >> 6), code & 63);
        let was = self.0[w] & (1 << b) != 0;
        self.0[w] |= 1 << b;
        was
    }

    /// Whether `code` is marked.
    pub(crate) fn has(&self, code: u8) -> bool {
        self.0[usize::from(code >> 6)] & (1 << (code & 63)) != 0
    }
}

impl AttrSection {
    /// Whether an attribute of `type_code` was present.
    pub fn is_present(&self, type_code: u8) -> bool {
        self.seen.has(type_code)
    }
}

/// One attribute being decoded: where it is and its raw bytes.
struct Raw<'a> {
    offset: usize,
    flags: u8,
    code: u8,
    value: &'a [u8],
    whole: &'a [u8],
}

impl Raw<'_> {
    /// An error about this attribute with the action to take.
    fn err(&self, kind: K, action: A) -> AttrError {
        AttrError {
            offset: self.offset,
            type_code: self.code,
            kind,
            action,
            data: self.whole.to_vec(),
        }
    }
}

/// Decodes the path attributes in `buf`, which starts `base` octets into
/// the message.
pub fn decode_path_attrs(
    buf: &[u8],
    base: usize,
    cxt: &DecodeCxt,
) -> Result<AttrSection, DecodeError> {
    let mut sec = AttrSection::default();
    let mut pos = 0;
    while pos < buf.len() {
        let rest = &buf[pos..];
        let ext = rest[0] & F::EXTENDED_LENGTH != 0;
        let hdr = if ext { 4 } else { 3 };
        let len = match rest.get(..hdr) {
            Some(h) if ext => usize::from(u16::from_be_bytes([h[2], h[3]])),
            Some(h) => usize::from(h[2]),
            None => 0,
        };
        if rest.len() < hdr || rest.len() < hdr + len {
            // RFC 7606 4: an attribute overrunning the Total Attribute
            // Length, or too few octets left for a header, is handled
            // with "treat-as-withdraw" -- unless it may be MP_REACH/
            // MP_UNREACH, whose NLRI we then cannot know (RFC 7606 3(j)).
            let code = rest.get(1).copied();
            if matches!(code, Some(T::MP_REACH_NLRI | T::MP_UNREACH_NLRI)) {
                return Err(DecodeError::MalformedAttrList {
                    offset: base + pos,
                    reason: "MP_REACH/MP_UNREACH overruns the attributes",
                });
            }
            sec.errors.push(AttrError {
                offset: base + pos,
                type_code: code.unwrap_or(0),
                kind: K::Overrun,
                action: A::TreatAsWithdraw,
                data: vec![],
            });
            break;
        }
        let raw = Raw {
            offset: base + pos,
            flags: rest[0],
            code: rest[1],
            value: &rest[hdr..hdr + len],
            whole: &rest[..hdr + len],
        };
        pos += hdr + len;
        if sec.seen.mark(raw.code) {
            // RFC 7606 3(g): repeated MP_REACH/MP_UNREACH -> Malformed
            // Attribute List (session reset); any other repeat: all but
            // the first occurrence are discarded.
            if matches!(raw.code, T::MP_REACH_NLRI | T::MP_UNREACH_NLRI) {
                return Err(DecodeError::MalformedAttrList {
                    offset: raw.offset,
                    reason: "MP_REACH_NLRI or MP_UNREACH_NLRI repeated",
                });
            }
            sec.errors.push(raw.err(K::Duplicate, A::AttributeDiscard));
            continue;
        }
        if let Err(e) = decode_one(&raw, cxt, &mut sec) {
            if e.action == A::SessionReset {
                return Err(DecodeError::Attr(e));
            }
            sec.errors.push(e);
        }
    }
    // Encoding emits attributes in type code order; keep the decoded list
    // in that order too so that decode(encode(m)) == m.
    if let Some(rare) = sec.attrs.rare.get_mut() {
        rare.unknown.sort_by_key(|r| r.type_code);
    }
    Ok(sec)
}

/// Expected Optional/Transitive flag bits of the attributes we know, and
/// the action for a malformed instance (RFC 7606 7.x).
fn known(code: u8) -> Option<(u8, A)> {
    const WK: u8 = F::TRANSITIVE;
    const OT: u8 = F::OPTIONAL | F::TRANSITIVE;
    const ON: u8 = F::OPTIONAL;
    Some(match code {
        T::ORIGIN | T::AS_PATH | T::NEXT_HOP | T::LOCAL_PREF => {
            (WK, A::TreatAsWithdraw)
        }
        T::ATOMIC_AGGREGATE => (WK, A::AttributeDiscard),
        T::MULTI_EXIT_DISC | T::ORIGINATOR_ID | T::CLUSTER_LIST => {
            (ON, A::TreatAsWithdraw)
        }
        T::MP_REACH_NLRI | T::MP_UNREACH_NLRI => (ON, A::TreatAsWithdraw),
        T::COMMUNITIES | T::LARGE_COMMUNITY => (OT, A::TreatAsWithdraw),
        T::AGGREGATOR | T::AS4_PATH | T::AS4_AGGREGATOR => {
            (OT, A::AttributeDiscard)
        }
        _ => return None,
    })
}

/// Decodes one attribute into `sec`.
fn decode_one(
    r: &Raw<'_>,
    cxt: &DecodeCxt,
    sec: &mut AttrSection,
) -> Result<(), AttrError> {
    let Some((want, action)) = known(r.code) else {
        // RFC 4271 5: unrecognized optional attributes are kept (and
        // passed on if transitive). An unrecognized well-known attribute
        // cannot be honoured; we withdraw rather than reset (RFC 7606 2).
        if r.flags & F::OPTIONAL == 0 {
            return Err(r.err(K::UnrecognizedWellKnown, A::TreatAsWithdraw));
        }
        sec.attrs.rare_mut().unknown.push(RawAttr {
            flags: r.flags & !F::EXTENDED_LENGTH,
            type_code: r.code,
            value: r.value.to_vec(),
        });
        return Ok(());
    };
    let mp = matches!(r.code, T::MP_REACH_NLRI | T::MP_UNREACH_NLRI);
    // RFC 7606 3(c): Optional/Transitive bits in conflict with the type
    // make the attribute malformed, handled as that attribute's errors
    // are. MP attributes are still parsed so their NLRI can be withdrawn.
    let flags_err = (r.flags & (F::OPTIONAL | F::TRANSITIVE) != want)
        .then(|| r.err(K::Flags, action));
    if flags_err.is_some() && !mp {
        return Err(flags_err.unwrap_or_else(|| r.err(K::Flags, action)));
    }
    let v = r.value;
    let len_err = || r.err(K::Length, action);
    let a = &mut sec.attrs;
    match r.code {
        // RFC 7606 7.1: wrong length or undefined value -> withdraw.
        T::ORIGIN => {
            let [o] = v else { return Err(len_err()) };
            let o = Origin::from_repr(*o)
                .ok_or_else(|| r.err(K::InvalidOrigin, action))?;
            a.origin = Some(o);
        }
        // RFC 7606 7.2.
        T::AS_PATH => {
            let p = decode_as_path(v, cxt.four_octet_as)
                .ok_or_else(|| r.err(K::MalformedAsPath, action))?;
            // RFC 7607 2: "An UPDATE message that contains the AS number
            // of zero in the AS_PATH attribute MUST be considered as a
            // malformed message" -- RFC 7606 treat-as-withdraw.
            if p.has_as_zero() {
                return Err(r.err(K::AsZero, A::TreatAsWithdraw));
            }
            a.as_path = Some(p);
        }
        // RFC 7606 7.3; RFC 4271 6.3: a syntactically incorrect NEXT_HOP.
        T::NEXT_HOP => {
            let ip = ipv4(v).ok_or_else(len_err)?;
            if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() {
                return Err(r.err(K::InvalidNextHop, action));
            }
            a.next_hop = Some(ip);
        }
        // RFC 7606 7.4 / 7.5: length other than 4 -> withdraw.
        T::MULTI_EXIT_DISC => a.med = Some(u32_of(v).ok_or_else(len_err)?),
        T::LOCAL_PREF => a.local_pref = Some(u32_of(v).ok_or_else(len_err)?),
        // RFC 7606 7.6: length other than 0 -> attribute discard.
        T::ATOMIC_AGGREGATE => {
            if !v.is_empty() {
                return Err(len_err());
            }
            a.atomic_aggregate = true;
        }
        // RFC 7606 7.7: length other than 6 (8 with 4-octet AS) -> discard.
        // RFC 7607 2: aggregator AS 0 is malformed; RFC 7606 7.7 makes
        // that attribute discard.
        T::AGGREGATOR => {
            let g =
                decode_aggregator(v, cxt.four_octet_as).ok_or_else(len_err)?;
            if g.asn == 0 {
                return Err(r.err(K::AsZero, action));
            }
            a.rare_mut().aggregator = Some(g)
        }
        // RFC 7606 7.8: length 0 or not a multiple of 4 -> withdraw.
        T::COMMUNITIES => {
            if v.is_empty() || !v.len().is_multiple_of(4) {
                return Err(len_err());
            }
            a.communities =
                v.chunks_exact(4).map(|c| Community(be32(c))).collect();
        }
        // RFC 7606 7.9.
        T::ORIGINATOR_ID => {
            a.rare_mut().originator_id = Some(ipv4(v).ok_or_else(len_err)?)
        }
        // RFC 7606 7.10.
        T::CLUSTER_LIST => {
            if v.is_empty() || !v.len().is_multiple_of(4) {
                return Err(len_err());
            }
            a.rare_mut().cluster_list =
                v.chunks_exact(4).map(|c| Ipv4Addr::from(be32(c))).collect();
        }
        T::MP_REACH_NLRI => {
            decode_mp_reach(r, cxt, sec)?;
            return flags_err.map_or(Ok(()), Err);
        }
        T::MP_UNREACH_NLRI => {
            decode_mp_unreach(r, cxt, sec)?;
            return flags_err.map_or(Ok(()), Err);
        }
        // RFC 6793 4.1: a NEW speaker receiving AS4_PATH / AS4_AGGREGATOR
        // from a NEW speaker "MUST discard these path attributes".
        T::AS4_PATH | T::AS4_AGGREGATOR if cxt.four_octet_as => {}
        // RFC 6793 6 / RFC 7606 7.13: malformed AS4_PATH -> discard; it
        // must not hold confederation segments.
        T::AS4_PATH => {
            let p = decode_as_path(v, true)
                .filter(|p| {
                    p.segments.iter().all(|s| {
                        matches!(
                            s.kind,
                            SegmentType::Sequence | SegmentType::Set
                        )
                    })
                })
                .ok_or_else(|| r.err(K::MalformedAsPath, action))?;
            // RFC 7607 2 forbids AS 0 in AS4_PATH as in AS_PATH. Merely
            // discarding it would keep the route (with AS_TRANS standing
            // for the zero); a route whose path holds AS 0 must never be
            // used or passed on, so the UPDATE is treat-as-withdraw.
            if p.has_as_zero() {
                return Err(r.err(K::AsZero, A::TreatAsWithdraw));
            }
            a.rare_mut().as4_path = Some(p);
        }
        T::AS4_AGGREGATOR => {
            let g = decode_aggregator(v, true).ok_or_else(len_err)?;
            if g.asn == 0 {
                return Err(r.err(K::AsZero, action));
            }
            a.rare_mut().as4_aggregator = Some(g)
        }
        // RFC 8092 6: length 0 or not a multiple of 12 -> withdraw.
        T::LARGE_COMMUNITY => {
            if v.is_empty() || !v.len().is_multiple_of(12) {
                return Err(len_err());
            }
            for c in v.chunks_exact(12) {
                let lc = LargeCommunity {
                    global_admin: be32(&c[0..4]),
                    local_data1: be32(&c[4..8]),
                    local_data2: be32(&c[8..12]),
                };
                // RFC 8092 5: duplicates MUST be ignored on receipt.
                if !a.rare.large_communities.contains(&lc) {
                    a.rare_mut().large_communities.push(lc);
                }
            }
        }
        _ => unreachable!("known() lists exactly the codes matched here"),
    }
    Ok(())
}

/// MP_REACH_NLRI (RFC 4760 3). RFC 7606 7.11: a next hop length that
/// does not fit the AFI, or NLRI that cannot be parsed, leave the NLRI
/// unknown, so "session reset" applies.
fn decode_mp_reach(
    r: &Raw<'_>,
    cxt: &DecodeCxt,
    sec: &mut AttrSection,
) -> Result<(), AttrError> {
    let v = r.value;
    let reset = |k| r.err(k, A::SessionReset);
    if v.len() < 5 {
        return Err(reset(K::Length));
    }
    let family =
        Family::new(u16::from_be_bytes([v[0], v[1]]).into(), v[2].into());
    if !decodable(family) {
        // RFC 4760 7: AFI/SAFI we did not negotiate are ignored; keep the
        // attribute raw (it is non-transitive, so never passed on).
        sec.attrs.rare_mut().unknown.push(RawAttr {
            flags: r.flags & !F::EXTENDED_LENGTH,
            type_code: r.code,
            value: v.to_vec(),
        });
        return Ok(());
    }
    let nh_len = usize::from(v[3]);
    let nh = v.get(4..4 + nh_len).ok_or_else(|| reset(K::Length))?;
    let ext_ok = cxt.extended_nh.contains(family);
    let next_hop = match (family.afi, nh_len) {
        (Afi::Ipv4, 4) => {
            NextHop::V4(ipv4(nh).ok_or_else(|| reset(K::Length))?)
        }
        // RFC 8950 3: IPv4 NLRI with an IPv6 next hop when negotiated.
        (Afi::Ipv4, 16 | 32) if ext_ok => v6_next_hop(nh),
        (Afi::Ipv6, 16 | 32) => v6_next_hop(nh),
        _ => return Err(reset(K::InvalidNextHop)),
    };
    // One reserved octet (formerly SNPAs) follows the next hop.
    let nlri_at = 4 + nh_len + 1;
    let nlri_buf = v.get(nlri_at..).ok_or_else(|| reset(K::Length))?;
    let mut nlri = Vec::with_capacity(nlri_buf.len() / 4);
    let ap = cxt.add_path.contains(family);
    let hdr = r.whole.len() - v.len();
    decode_prefixes(
        nlri_buf,
        family.afi,
        ap,
        r.offset + hdr + nlri_at,
        &mut nlri,
    )
    .map_err(|_| reset(K::Optional))?;
    sec.mp_reach = Some(MpReach {
        family,
        next_hop,
        nlri,
    });
    Ok(())
}

/// MP_UNREACH_NLRI (RFC 4760 4); unparseable -> session reset (RFC 7606
/// 7.11, 5.3).
fn decode_mp_unreach(
    r: &Raw<'_>,
    cxt: &DecodeCxt,
    sec: &mut AttrSection,
) -> Result<(), AttrError> {
    let v = r.value;
    if v.len() < 3 {
        return Err(r.err(K::Length, A::SessionReset));
    }
    let family =
        Family::new(u16::from_be_bytes([v[0], v[1]]).into(), v[2].into());
    if !decodable(family) {
        sec.attrs.rare_mut().unknown.push(RawAttr {
            flags: r.flags & !F::EXTENDED_LENGTH,
            type_code: r.code,
            value: v.to_vec(),
        });
        return Ok(());
    }
    let mut withdrawn = Vec::new();
    let ap = cxt.add_path.contains(family);
    let hdr = r.whole.len() - v.len();
    decode_prefixes(
        &v[3..],
        family.afi,
        ap,
        r.offset + hdr + 3,
        &mut withdrawn,
    )
    .map_err(|_| r.err(K::Optional, A::SessionReset))?;
    sec.mp_unreach = Some(MpUnreach { family, withdrawn });
    Ok(())
}

/// Families whose NLRI we parse.
fn decodable(f: Family) -> bool {
    matches!(f.afi, Afi::Ipv4 | Afi::Ipv6)
        && matches!(f.safi, Safi::Unicast | Safi::Multicast)
}

/// An IPv6 next hop of 16 or 32 octets (global, then link-local).
fn v6_next_hop(nh: &[u8]) -> NextHop {
    let a =
        |b: &[u8]| Ipv6Addr::from(<[u8; 16]>::try_from(b).unwrap_or([0; 16]));
    NextHop::V6 {
        global: a(&nh[..16]),
        link_local: (nh.len() == 32).then(|| a(&nh[16..32])),
    }
}

/// AS_PATH / AS4_PATH segments (RFC 4271 4.3). RFC 7606 7.2: malformed
/// if a segment type is unknown, a segment has length zero or overruns,
/// or a single octet is left over.
pub(crate) fn decode_as_path(v: &[u8], four: bool) -> Option<AsPath> {
    let asz = if four { 4 } else { 2 };
    let mut segments = Vec::new();
    let mut pos = 0;
    while pos < v.len() {
        let h = v.get(pos..pos + 2)?;
        let kind = SegmentType::from_repr(h[0])?;
        let n = usize::from(h[1]);
        if n == 0 {
            return None;
        }
        let body = v.get(pos + 2..pos + 2 + n * asz)?;
        let asns = if four {
            body.chunks_exact(4).map(be32).collect()
        } else {
            body.chunks_exact(2)
                .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
                .collect()
        };
        segments.push(AsSegment { kind, asns });
        pos += 2 + n * asz;
    }
    Some(AsPath { segments })
}

/// AGGREGATOR: AS (2 or 4 octets) and IPv4 address.
fn decode_aggregator(v: &[u8], four: bool) -> Option<Aggregator> {
    match (four, v.len()) {
        (false, 6) => Some(Aggregator {
            asn: u32::from(u16::from_be_bytes([v[0], v[1]])),
            addr: ipv4(&v[2..])?,
        }),
        (true, 8) => Some(Aggregator {
            asn: be32(&v[..4]),
            addr: ipv4(&v[4..])?,
        }),
        _ => None,
    }
}

/// Exactly four octets as an IPv4 address.
fn ipv4(v: &[u8]) -> Option<Ipv4Addr> {
    u32_of(v).map(Ipv4Addr::from)
}

/// Exactly four octets as a big-endian u32.
fn u32_of(v: &[u8]) -> Option<u32> {
    (v.len() == 4).then(|| be32(v))
}

/// The first four octets as a big-endian u32 (callers checked length).
fn be32(c: &[u8]) -> u32 {
    u32::from_be_bytes([c[0], c[1], c[2], c[3]])
}
