//! UPDATE message (RFC 4271 4.3) with RFC 7606 revised error handling.

use bytes::{BufMut, BytesMut};

use crate::DecodeCxt;
use crate::attribute::decode::SeenSet;
use crate::attribute::{
    MpReach, MpUnreach, PathAttrs, decode_path_attrs, encode_attrs,
    encode_mp_reach, encode_mp_unreach,
};
use crate::error::{AttrError, DecodeError, EncodeError, ErrorAction};
use crate::iana::{Afi, Family};
use crate::message::HEADER_LEN;
use crate::nlri::{Nlri, decode_prefixes, encode_prefixes};

// ===== types =====

/// An UPDATE message.
///
/// `withdrawn` and `nlri` are the IPv4 unicast fields of RFC 4271; other
/// families travel in `mp_reach` / `mp_unreach` (RFC 4760).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpdateMsg {
    pub withdrawn: Vec<Nlri>,
    pub attrs: PathAttrs,
    pub mp_reach: Option<MpReach>,
    pub mp_unreach: Option<MpUnreach>,
    pub nlri: Vec<Nlri>,
    /// RFC 7606 findings of the decoder (empty when built for sending;
    /// ignored by encode). Attributes named here with
    /// `AttributeDiscard` are already absent from `attrs`.
    pub errors: Vec<AttrError>,
}

/// What the receiver must do with a decoded UPDATE (RFC 7606 2, 3(h):
/// the strongest action among all errors wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// No errors: process normally.
    Accept,
    /// Some attributes were malformed and have been dropped; process the
    /// rest normally (and log `errors`).
    AttributeDiscard,
    /// Handle every prefix in `nlri` and `mp_reach` as withdrawn, as well
    /// as `withdrawn` and `mp_unreach` (see [`UpdateMsg::withdrawn_all`]).
    TreatAsWithdraw,
}

// ===== impl UpdateMsg =====

impl UpdateMsg {
    /// The RFC 7606 verdict for this message.
    pub fn verdict(&self) -> Verdict {
        match self.errors.iter().map(|e| e.action).max() {
            None => Verdict::Accept,
            Some(ErrorAction::AttributeDiscard) => Verdict::AttributeDiscard,
            // SessionReset never reaches an UpdateMsg: it is a DecodeError.
            Some(_) => Verdict::TreatAsWithdraw,
        }
    }

    /// The End-of-RIB marker for `family` (RFC 4724 2): an empty UPDATE
    /// for IPv4 unicast, else an UPDATE with an empty MP_UNREACH_NLRI.
    pub fn end_of_rib(family: Family) -> UpdateMsg {
        let mut u = UpdateMsg::default();
        if family != Family::IPV4_UNICAST {
            u.mp_unreach = Some(MpUnreach {
                family,
                withdrawn: vec![],
            });
        }
        u
    }

    /// The family this message is the End-of-RIB marker of, if it is one.
    pub fn end_of_rib_family(&self) -> Option<Family> {
        let no_attrs = self.attrs == PathAttrs::default();
        if !self.withdrawn.is_empty()
            || !self.nlri.is_empty()
            || self.mp_reach.is_some()
            || !no_attrs
        {
            return None;
        }
        match &self.mp_unreach {
            None => Some(Family::IPV4_UNICAST),
            Some(u) if u.withdrawn.is_empty() => Some(u.family),
            Some(_) => None,
        }
    }

    /// Every prefix announced: the NLRI field, then MP_REACH_NLRI's.
    pub fn announced(&self) -> impl Iterator<Item = &Nlri> {
        let mp = self.mp_reach.iter().flat_map(|r| r.nlri.iter());
        self.nlri.iter().chain(mp)
    }

    /// Every prefix to withdraw: the withdrawn routes, MP_UNREACH_NLRI's,
    /// and, when the verdict is `TreatAsWithdraw` (RFC 7606 2), the
    /// announced ones too.
    pub fn withdrawn_all(&self) -> impl Iterator<Item = &Nlri> {
        let mp = self.mp_unreach.iter().flat_map(|u| u.withdrawn.iter());
        let taw = self.verdict() == Verdict::TreatAsWithdraw;
        let ann = self.announced().filter(move |_| taw);
        self.withdrawn.iter().chain(mp).chain(ann)
    }

    /// Decodes an UPDATE body (after the 19-octet header).
    pub fn decode(
        body: &[u8],
        cxt: &DecodeCxt,
    ) -> Result<UpdateMsg, DecodeError> {
        let base = HEADER_LEN;
        let bad_list =
            |offset, reason| DecodeError::MalformedAttrList { offset, reason };
        // RFC 7606 4: when the Withdrawn Routes Length or Total Attribute
        // Length cannot be right, nothing can be located: session reset.
        let wlen = match body.get(..2) {
            Some(b) => usize::from(u16::from_be_bytes([b[0], b[1]])),
            None => return Err(bad_list(base, "truncated withdrawn length")),
        };
        let alen_at = 2 + wlen;
        let Some(a) = body.get(alen_at..alen_at + 2) else {
            return Err(bad_list(base, "withdrawn routes overrun the message"));
        };
        let alen = usize::from(u16::from_be_bytes([a[0], a[1]]));
        let attrs_at = alen_at + 2;
        let nlri_at = attrs_at + alen;
        if nlri_at > body.len() {
            return Err(bad_list(
                base + alen_at,
                "total path attribute length overruns the message",
            ));
        }
        let v4_ap = cxt.add_path.contains(Family::IPV4_UNICAST);
        let mut withdrawn = Vec::new();
        // RFC 7606 3(i): withdrawn routes are checked like NLRI.
        decode_prefixes(
            &body[2..alen_at],
            Afi::Ipv4,
            v4_ap,
            base + 2,
            &mut withdrawn,
        )?;
        let mut nlri = Vec::with_capacity((body.len() - nlri_at) / 4);
        decode_prefixes(
            &body[nlri_at..],
            Afi::Ipv4,
            v4_ap,
            base + nlri_at,
            &mut nlri,
        )?;
        let sec =
            decode_path_attrs(&body[attrs_at..nlri_at], base + attrs_at, cxt)?;
        let mut msg = UpdateMsg {
            withdrawn,
            attrs: sec.attrs,
            mp_reach: sec.mp_reach,
            mp_unreach: sec.mp_unreach,
            nlri,
            errors: sec.errors,
        };
        msg.check_mandatory(&sec.seen, base + attrs_at);
        Ok(msg)
    }

    /// RFC 4271 6.3 / RFC 7606 3(d): ORIGIN and AS_PATH must come with
    /// any reachable NLRI, NEXT_HOP with any in the NLRI field (RFC 4760 3
    /// makes it optional for MP_REACH-only messages); if missing,
    /// "treat-as-withdraw" MUST be used. `seen` marks attribute codes
    /// present, even if malformed (those already carry their own error).
    fn check_mandatory(&mut self, seen: &SeenSet, offset: usize) {
        use crate::iana::attr_type::{AS_PATH, NEXT_HOP, ORIGIN};
        let mp = self.mp_reach.as_ref().is_some_and(|r| !r.nlri.is_empty());
        if self.nlri.is_empty() && !mp {
            return;
        }
        let mut need = vec![ORIGIN, AS_PATH];
        if !self.nlri.is_empty() {
            need.push(NEXT_HOP);
        }
        for code in need {
            if !seen.has(code) {
                self.errors.push(AttrError {
                    offset,
                    type_code: code,
                    kind: crate::error::AttrErrorKind::Missing,
                    action: ErrorAction::TreatAsWithdraw,
                    // RFC 4271 6.3: data is the missing attribute's type.
                    data: vec![code],
                });
            }
        }
    }

    /// Appends the body. MP_(UN)REACH_NLRI come first (RFC 7606 5.1).
    pub(crate) fn encode_body(
        &self,
        cxt: &DecodeCxt,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let v4_ap = cxt.add_path.contains(Family::IPV4_UNICAST);
        let wlen_at = out.len();
        out.put_u16(0);
        encode_prefixes(&self.withdrawn, v4_ap, out);
        patch_len(out, wlen_at)?;
        let alen_at = out.len();
        out.put_u16(0);
        if let Some(u) = &self.mp_unreach {
            encode_mp_unreach(u, cxt, out)?;
        }
        if let Some(r) = &self.mp_reach {
            encode_mp_reach(r, cxt, out)?;
        }
        encode_attrs(&self.attrs, self.attrs.next_hop, cxt, out)?;
        patch_len(out, alen_at)?;
        encode_prefixes(&self.nlri, v4_ap, out);
        Ok(())
    }
}

/// Writes the length of what follows the 2-octet field at `at`.
fn patch_len(out: &mut BytesMut, at: usize) -> Result<(), EncodeError> {
    let len = out.len() - at - 2;
    let v = u16::try_from(len).map_err(|_| EncodeError::TooLong {
        length: len,
        max: usize::from(u16::MAX),
    })?;
    out[at..at + 2].copy_from_slice(&v.to_be_bytes());
    Ok(())
}
