//! Path attribute encoding.
//!
//! Attributes go out in ascending type code order after MP_(UN)REACH_NLRI
//! (RFC 7606 5.1), with the canonical flags of each type and the Extended
//! Length bit only when the value exceeds 255 octets. On a session without
//! 4-octet AS support, AS numbers above 65535 become AS_TRANS and AS4_PATH
//! / AS4_AGGREGATOR carry the real ones (RFC 6793 4.2.2).

use std::net::Ipv4Addr;

use bytes::{BufMut, BytesMut};

use super::{
    Aggregator, AsPath, MpReach, MpUnreach, NextHop, PathAttrs, RawAttr,
    SegmentType,
};
use crate::DecodeCxt;
use crate::error::EncodeError;
use crate::iana::{AS_TRANS, attr_flags as F, attr_type as T};
use crate::nlri::Nlri;

const WK: u8 = F::TRANSITIVE;
const OT: u8 = F::OPTIONAL | F::TRANSITIVE;
const ON: u8 = F::OPTIONAL;

/// Writes one attribute: header then the `len` octets `body` appends.
fn attr(
    out: &mut BytesMut,
    flags: u8,
    code: u8,
    len: usize,
    body: impl FnOnce(&mut BytesMut),
) -> Result<(), EncodeError> {
    let flags = flags & !F::EXTENDED_LENGTH;
    if len > 255 {
        let l = u16::try_from(len).map_err(|_| EncodeError::AttrTooLong {
            type_code: code,
            length: len,
        })?;
        out.put_u8(flags | F::EXTENDED_LENGTH);
        out.put_u8(code);
        out.put_u16(l);
    } else {
        out.put_u8(flags);
        out.put_u8(code);
        out.put_u8(len as u8);
    }
    let start = out.len();
    body(out);
    debug_assert_eq!(out.len() - start, len, "attribute {code} length");
    Ok(())
}

/// Appends all attributes of `attrs` except NEXT_HOP, for which `next_hop`
/// is used instead (so packers can set it without cloning the set).
pub(crate) fn encode_attrs(
    a: &PathAttrs,
    next_hop: Option<Ipv4Addr>,
    cxt: &DecodeCxt,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    // Unknown attributes are merged in by type code.
    let rare = &*a.rare;
    let mut unknown: Vec<&RawAttr> = rare.unknown.iter().collect();
    unknown.sort_by_key(|r| r.type_code);
    let mut unk = unknown.into_iter().peekable();
    let mut flush = |out: &mut BytesMut,
                     below: u16|
     -> Result<(), EncodeError> {
        while let Some(r) = unk.next_if(|r| u16::from(r.type_code) < below) {
            let v = &r.value;
            attr(out, r.flags, r.type_code, v.len(), |o| o.put_slice(v))?;
        }
        Ok(())
    };
    let four = cxt.four_octet_as;
    flush(out, u16::from(T::ORIGIN))?;
    if let Some(o) = a.origin {
        attr(out, WK, T::ORIGIN, 1, |o2| o2.put_u8(o as u8))?;
    }
    flush(out, u16::from(T::AS_PATH))?;
    if let Some(p) = &a.as_path {
        let len = as_path_len(p, four);
        attr(out, WK, T::AS_PATH, len, |o| put_as_path(o, p, four))?;
    }
    flush(out, u16::from(T::NEXT_HOP))?;
    if let Some(nh) = next_hop {
        attr(out, WK, T::NEXT_HOP, 4, |o| o.put_slice(&nh.octets()))?;
    }
    flush(out, u16::from(T::MULTI_EXIT_DISC))?;
    if let Some(m) = a.med {
        attr(out, ON, T::MULTI_EXIT_DISC, 4, |o| o.put_u32(m))?;
    }
    flush(out, u16::from(T::LOCAL_PREF))?;
    if let Some(l) = a.local_pref {
        attr(out, WK, T::LOCAL_PREF, 4, |o| o.put_u32(l))?;
    }
    flush(out, u16::from(T::ATOMIC_AGGREGATE))?;
    if a.atomic_aggregate {
        attr(out, WK, T::ATOMIC_AGGREGATE, 0, |_| {})?;
    }
    flush(out, u16::from(T::AGGREGATOR))?;
    if let Some(g) = rare.aggregator {
        let len = if four { 8 } else { 6 };
        attr(out, OT, T::AGGREGATOR, len, |o| put_aggregator(o, g, four))?;
    }
    flush(out, u16::from(T::COMMUNITIES))?;
    if !a.communities.is_empty() {
        let c = &a.communities;
        attr(out, OT, T::COMMUNITIES, c.len() * 4, |o| {
            c.iter().for_each(|c| o.put_u32(c.0))
        })?;
    }
    flush(out, u16::from(T::ORIGINATOR_ID))?;
    if let Some(id) = rare.originator_id {
        attr(out, ON, T::ORIGINATOR_ID, 4, |o| o.put_slice(&id.octets()))?;
    }
    flush(out, u16::from(T::CLUSTER_LIST))?;
    if !rare.cluster_list.is_empty() {
        let c = &rare.cluster_list;
        attr(out, ON, T::CLUSTER_LIST, c.len() * 4, |o| {
            c.iter().for_each(|c| o.put_slice(&c.octets()))
        })?;
    }
    flush(out, u16::from(T::AS4_PATH))?;
    // RFC 6793 4.1: AS4_* are sent only on 2-octet sessions; 4.2.2: then
    // AS4_PATH carries the real path when it has 4-octet ASes, without
    // confederation segments.
    if !four {
        let as4 = rare.as4_path.clone().or_else(|| {
            a.as_path
                .as_ref()
                .filter(|p| p.has_4_octet())
                .map(|p| AsPath {
                    segments: p
                        .segments
                        .iter()
                        .filter(|s| {
                            matches!(
                                s.kind,
                                SegmentType::Sequence | SegmentType::Set
                            )
                        })
                        .cloned()
                        .collect(),
                })
        });
        if let Some(p) = as4.filter(|p| !p.segments.is_empty()) {
            let len = as_path_len(&p, true);
            attr(out, OT, T::AS4_PATH, len, |o| put_as_path(o, &p, true))?;
        }
    }
    flush(out, u16::from(T::AS4_AGGREGATOR))?;
    if !four {
        let as4 = rare.as4_aggregator.or_else(|| {
            rare.aggregator.filter(|g| g.asn > u32::from(u16::MAX))
        });
        if let Some(g) = as4 {
            attr(out, OT, T::AS4_AGGREGATOR, 8, |o| {
                put_aggregator(o, g, true)
            })?;
        }
    }
    flush(out, u16::from(T::LARGE_COMMUNITY))?;
    if !rare.large_communities.is_empty() {
        let c = &rare.large_communities;
        attr(out, OT, T::LARGE_COMMUNITY, c.len() * 12, |o| {
            for l in c {
                o.put_u32(l.global_admin);
                o.put_u32(l.local_data1);
                o.put_u32(l.local_data2);
            }
        })?;
    }
    flush(out, 256)?;
    Ok(())
}

/// Encoded length of an AS path; segments longer than 255 ASes are split
/// and empty ones dropped (a zero-length segment is malformed, RFC 7606
/// 7.2).
fn as_path_len(p: &AsPath, four: bool) -> usize {
    let asz = if four { 4 } else { 2 };
    p.segments
        .iter()
        .map(|s| s.asns.len().div_ceil(255) * 2 + s.asns.len() * asz)
        .sum()
}

/// Appends AS path segments; 2-octet form maps large ASes to AS_TRANS.
fn put_as_path(out: &mut BytesMut, p: &AsPath, four: bool) {
    for s in &p.segments {
        for chunk in s.asns.chunks(255) {
            out.put_u8(s.kind as u8);
            out.put_u8(chunk.len() as u8);
            for a in chunk {
                if four {
                    out.put_u32(*a);
                } else {
                    out.put_u16(u16::try_from(*a).unwrap_or(AS_TRANS));
                }
            }
        }
    }
}

/// Appends an aggregator in 2- or 4-octet form.
fn put_aggregator(out: &mut BytesMut, g: Aggregator, four: bool) {
    if four {
        out.put_u32(g.asn);
    } else {
        out.put_u16(u16::try_from(g.asn).unwrap_or(AS_TRANS));
    }
    out.put_slice(&g.addr.octets());
}

/// Length of the next hop field for `nh`.
fn next_hop_len(nh: &NextHop) -> usize {
    match nh {
        NextHop::V4(_) => 4,
        NextHop::V6 {
            link_local: None, ..
        } => 16,
        NextHop::V6 { .. } => 32,
    }
}

/// Octets of MP_REACH_NLRI before its NLRI (attribute header with
/// Extended Length, AFI, SAFI, next hop, reserved octet).
pub(crate) fn mp_reach_header_len(nh: &NextHop) -> usize {
    4 + 2 + 1 + 1 + next_hop_len(nh) + 1
}

/// Appends MP_REACH_NLRI holding `nlri` (RFC 4760 3).
pub(crate) fn encode_mp_reach_parts(
    family: crate::Family,
    next_hop: &NextHop,
    nlri: &[Nlri],
    cxt: &DecodeCxt,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let ap = cxt.add_path.contains(family);
    let nlri_len: usize = nlri.iter().map(|n| n.encoded_len(ap)).sum();
    let len = 2 + 1 + 1 + next_hop_len(next_hop) + 1 + nlri_len;
    attr(out, ON, T::MP_REACH_NLRI, len, |o| {
        o.put_u16(family.afi.into());
        o.put_u8(family.safi.into());
        o.put_u8(next_hop_len(next_hop) as u8);
        match next_hop {
            NextHop::V4(a) => o.put_slice(&a.octets()),
            NextHop::V6 { global, link_local } => {
                o.put_slice(&global.octets());
                if let Some(ll) = link_local {
                    o.put_slice(&ll.octets());
                }
            }
        }
        o.put_u8(0);
        for n in nlri {
            n.encode(ap, o);
        }
    })
}

/// Appends an [`MpReach`].
pub(crate) fn encode_mp_reach(
    r: &MpReach,
    cxt: &DecodeCxt,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    encode_mp_reach_parts(r.family, &r.next_hop, &r.nlri, cxt, out)
}

/// Appends MP_UNREACH_NLRI withdrawing `nlri` (RFC 4760 4).
pub(crate) fn encode_mp_unreach_parts(
    family: crate::Family,
    nlri: &[Nlri],
    cxt: &DecodeCxt,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let ap = cxt.add_path.contains(family);
    let len = 3 + nlri.iter().map(|n| n.encoded_len(ap)).sum::<usize>();
    attr(out, ON, T::MP_UNREACH_NLRI, len, |o| {
        o.put_u16(family.afi.into());
        o.put_u8(family.safi.into());
        for n in nlri {
            n.encode(ap, o);
        }
    })
}

/// Appends an [`MpUnreach`].
pub(crate) fn encode_mp_unreach(
    u: &MpUnreach,
    cxt: &DecodeCxt,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    encode_mp_unreach_parts(u.family, &u.withdrawn, cxt, out)
}
