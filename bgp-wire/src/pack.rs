//! UPDATE packing: many prefixes sharing one attribute set, split into as
//! few messages as the negotiated maximum size allows (4096 octets, or
//! 65535 with RFC 8654 extended messages).
//!
//! The attribute set is encoded once and copied into every message; each
//! message is filled greedily with as many NLRI as fit. Messages are
//! appended back to back to `out`, ready to be written to the socket.

use std::ops::Range;

use bytes::{BufMut, BytesMut};

use crate::DecodeCxt;
use crate::attribute::{
    NextHop, PathAttrs, encode_attrs, encode_mp_reach_parts,
    encode_mp_unreach_parts, mp_reach_header_len,
};
use crate::error::EncodeError;
use crate::iana::{Family, MessageType};
use crate::message::{HEADER_LEN, finish_header, put_header};
use crate::nlri::Nlri;

/// Octets of an empty UPDATE: header, withdrawn length, attribute length.
const UPDATE_MIN: usize = HEADER_LEN + 2 + 2;
/// MP_UNREACH_NLRI before its NLRI: extended header, AFI, SAFI.
const MP_UNREACH_HDR: usize = 4 + 3;

/// Announces `nlri` of `family` with `attrs` and `next_hop`, appending
/// UPDATEs to `out`; returns how many messages were written.
///
/// IPv4 unicast with an IPv4 next hop uses the plain NLRI field and a
/// NEXT_HOP attribute (RFC 4271 4.3); everything else uses MP_REACH_NLRI
/// (RFC 4760 3), without NEXT_HOP (RFC 7606 5.2). `attrs.next_hop` is
/// ignored in favour of `next_hop`. On error, `out` is left unchanged.
pub fn pack_reach(
    family: Family,
    attrs: &PathAttrs,
    next_hop: NextHop,
    nlri: &[Nlri],
    cxt: &DecodeCxt,
    out: &mut BytesMut,
) -> Result<usize, EncodeError> {
    let classic_nh = match next_hop {
        NextHop::V4(a) if family == Family::IPV4_UNICAST => Some(a),
        _ => None,
    };
    let mut attr_buf = BytesMut::with_capacity(128);
    encode_attrs(attrs, classic_nh, cxt, &mut attr_buf)?;
    let mp_hdr = if classic_nh.is_some() {
        0
    } else {
        mp_reach_header_len(&next_hop)
    };
    let fixed = UPDATE_MIN + attr_buf.len() + mp_hdr;
    let ap = cxt.add_path.contains(family);
    let start = out.len();
    let r = for_each_chunk(nlri, ap, fixed, cxt.max_len(), |chunk| {
        let m = out.len();
        put_header(out, MessageType::Update);
        out.put_u16(0);
        let alen_at = out.len();
        out.put_u16(0);
        if classic_nh.is_none() {
            encode_mp_reach_parts(family, &next_hop, chunk, cxt, out)?;
        }
        out.put_slice(&attr_buf);
        let alen = (out.len() - alen_at - 2) as u16;
        out[alen_at..alen_at + 2].copy_from_slice(&alen.to_be_bytes());
        if classic_nh.is_some() {
            for n in chunk {
                n.encode(ap, out);
            }
        }
        finish_header(out, m, cxt.max_len())
    });
    if r.is_err() {
        out.truncate(start);
    }
    r
}

/// Withdraws `nlri` of `family`, appending UPDATEs to `out`; returns how
/// many messages were written. IPv4 unicast uses the Withdrawn Routes
/// field, other families MP_UNREACH_NLRI with no other attribute.
pub fn pack_unreach(
    family: Family,
    nlri: &[Nlri],
    cxt: &DecodeCxt,
    out: &mut BytesMut,
) -> Result<usize, EncodeError> {
    let classic = family == Family::IPV4_UNICAST;
    let fixed = UPDATE_MIN + if classic { 0 } else { MP_UNREACH_HDR };
    let ap = cxt.add_path.contains(family);
    let start = out.len();
    let r = for_each_chunk(nlri, ap, fixed, cxt.max_len(), |chunk| {
        let m = out.len();
        put_header(out, MessageType::Update);
        let wlen_at = out.len();
        out.put_u16(0);
        if classic {
            for n in chunk {
                n.encode(ap, out);
            }
            let wlen = (out.len() - wlen_at - 2) as u16;
            out[wlen_at..wlen_at + 2].copy_from_slice(&wlen.to_be_bytes());
            out.put_u16(0);
        } else {
            let alen_at = out.len();
            out.put_u16(0);
            encode_mp_unreach_parts(family, chunk, cxt, out)?;
            let alen = (out.len() - alen_at - 2) as u16;
            out[alen_at..alen_at + 2].copy_from_slice(&alen.to_be_bytes());
        }
        finish_header(out, m, cxt.max_len())
    });
    if r.is_err() {
        out.truncate(start);
    }
    r
}

/// Splits `nlri` greedily into runs whose encoding fits in `max - fixed`
/// octets and calls `emit` for each; returns the number of runs.
fn for_each_chunk(
    nlri: &[Nlri],
    ap: bool,
    fixed: usize,
    max: usize,
    mut emit: impl FnMut(&[Nlri]) -> Result<(), EncodeError>,
) -> Result<usize, EncodeError> {
    let budget = max.saturating_sub(fixed);
    let mut count = 0;
    let mut run: Range<usize> = 0..0;
    let mut used = 0;
    for (i, n) in nlri.iter().enumerate() {
        let l = n.encoded_len(ap);
        if used + l > budget {
            if run.is_empty() {
                // Not even one prefix fits next to the attributes.
                return Err(EncodeError::TooLong {
                    length: fixed + l,
                    max,
                });
            }
            emit(&nlri[run.clone()])?;
            count += 1;
            run = i..i;
            used = 0;
        }
        used += l;
        run.end = i + 1;
    }
    if !run.is_empty() {
        emit(&nlri[run])?;
        count += 1;
    }
    Ok(count)
}
