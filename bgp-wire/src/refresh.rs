//! ROUTE-REFRESH message (RFC 2918 3) with the RFC 7313 subtypes.

use bytes::{BufMut, BytesMut};

use crate::error::DecodeError;
use crate::iana::Family;
use crate::message::HEADER_LEN;

/// RFC 7313 3 "Message Subtype" (the former Reserved octet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefreshSubtype {
    /// 0: a normal route refresh request (RFC 2918).
    Normal,
    /// 1: Beginning of Route Refresh (BoRR).
    BeginOfRr,
    /// 2: End of Route Refresh (EoRR).
    EndOfRr,
    /// Reserved values; RFC 7313 5 says to ignore such messages.
    Other(u8),
}

/// A ROUTE-REFRESH message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RouteRefreshMsg {
    pub family: Family,
    pub subtype: RefreshSubtype,
}

impl From<u8> for RefreshSubtype {
    fn from(v: u8) -> Self {
        match v {
            0 => RefreshSubtype::Normal,
            1 => RefreshSubtype::BeginOfRr,
            2 => RefreshSubtype::EndOfRr,
            v => RefreshSubtype::Other(v),
        }
    }
}

impl From<RefreshSubtype> for u8 {
    fn from(s: RefreshSubtype) -> u8 {
        match s {
            RefreshSubtype::Normal => 0,
            RefreshSubtype::BeginOfRr => 1,
            RefreshSubtype::EndOfRr => 2,
            RefreshSubtype::Other(v) => v,
        }
    }
}

impl RouteRefreshMsg {
    /// A normal refresh request for `family`.
    pub fn request(family: Family) -> Self {
        RouteRefreshMsg {
            family,
            subtype: RefreshSubtype::Normal,
        }
    }

    /// Decodes the body; `frame` is the whole message (returned as
    /// NOTIFICATION data on a length error, RFC 7313 5).
    pub fn decode(frame: &[u8]) -> Result<Self, DecodeError> {
        let body = &frame[HEADER_LEN.min(frame.len())..];
        // RFC 7313 5: "If the length ... is not 4 [octets of body], then
        // the BGP speaker MUST send a NOTIFICATION ... Invalid Message
        // Length" with the complete message as data.
        if body.len() != 4 {
            return Err(DecodeError::BadRefreshLength {
                offset: 16,
                length: frame.len() as u16,
                message: frame.to_vec(),
            });
        }
        Ok(RouteRefreshMsg {
            family: Family::new(
                u16::from_be_bytes([body[0], body[1]]).into(),
                body[3].into(),
            ),
            subtype: body[2].into(),
        })
    }

    /// Appends the body.
    pub(crate) fn encode_body(&self, out: &mut BytesMut) {
        out.put_u16(self.family.afi.into());
        out.put_u8(self.subtype.into());
        out.put_u8(self.family.safi.into());
    }
}
