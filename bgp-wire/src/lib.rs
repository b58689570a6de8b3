//! BGP-4 wire codec: messages, attributes, capabilities (no IO).
//!
//! Hand-written cursor decoders over `&[u8]` and encoders into
//! `bytes::BytesMut`, modelled on holo-bgp's `packet` module:
//!
//! - [`frame_len`] finds message boundaries in a TCP byte stream and checks
//!   the header (RFC 4271 4.1, 6.1); [`codec::BgpCodec`] wraps it as a
//!   `tokio_util` codec behind the `codec` feature.
//! - [`Message::decode`] / [`Message::encode`] handle one message, using a
//!   [`DecodeCxt`] that carries what the session negotiated (derive both
//!   directions with [`negotiate`]).
//! - UPDATE decoding follows RFC 7606: attribute problems that do not
//!   require a session reset are reported in [`UpdateMsg::errors`] and
//!   summarised by [`UpdateMsg::verdict`]; only unrecoverable errors are a
//!   [`DecodeError`], which maps to the NOTIFICATION to send.
//! - [`pack_reach`] / [`pack_unreach`] pack many prefixes that share one
//!   attribute set into as few UPDATEs as fit the negotiated size.
//!
//! Prefixes are `ipnetwork::IpNetwork` (see [`nlri`]).

pub mod attribute;
#[cfg(feature = "codec")]
pub mod codec;
pub mod error;
pub mod framing;
pub mod iana;
pub mod message;
pub mod nlri;
pub mod notification;
pub mod open;
pub mod pack;
pub mod refresh;
pub mod update;

pub use attribute::{
    Aggregator, AsPath, AsSegment, Community, LargeCommunity, MpReach,
    MpUnreach, NextHop, Origin, PathAttrs, Rare, RareAttrs, RawAttr,
    SegmentType,
};
pub use error::{
    AttrError, AttrErrorKind, DecodeError, EncodeError, ErrorAction,
};
pub use framing::frame_len;
pub use iana::{Afi, Family, FamilySet, MessageType, Safi};
pub use message::{HEADER_LEN, MAX_EXT_LEN, MAX_LEN, Message};
pub use nlri::Nlri;
pub use notification::{
    CeaseSubcode, ErrorCode, FsmSubcode, MsgHeaderSubcode, NotificationMsg,
    OpenSubcode, RefreshSubcode, UpdateSubcode,
};
pub use open::{
    AddPathFamily, AddPathMode, Capability, ExtNextHop, GrFamily,
    GracefulRestartCap, OpenMsg, negotiate,
};
pub use pack::{pack_reach, pack_unreach};
pub use refresh::{RefreshSubtype, RouteRefreshMsg};
pub use update::{UpdateMsg, Verdict};

/// What one direction of a session negotiated, needed to decode (or, as
/// [`EncodeCxt`], to encode) messages. `Default` is a bare RFC 4271
/// session: 2-octet AS, no ADD-PATH, no extended next hop, 4096 octets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DecodeCxt {
    /// RFC 6793: both sides sent the 4-octet AS capability, so AS_PATH
    /// and AGGREGATOR carry 4-octet AS numbers.
    pub four_octet_as: bool,
    /// RFC 7911: families whose NLRI carry a path identifier in this
    /// direction.
    pub add_path: FamilySet,
    /// RFC 8950: families whose NLRI may come with an IPv6 next hop.
    pub extended_nh: FamilySet,
    /// RFC 8654: messages up to 65535 octets.
    pub extended_msg: bool,
}

/// The same negotiated facts used for the sending direction.
pub type EncodeCxt = DecodeCxt;

impl DecodeCxt {
    /// A context for a modern session: 4-octet AS, nothing else.
    pub fn four_octet() -> DecodeCxt {
        DecodeCxt {
            four_octet_as: true,
            ..DecodeCxt::default()
        }
    }

    /// Largest message allowed in this direction.
    pub fn max_len(&self) -> usize {
        if self.extended_msg {
            MAX_EXT_LEN
        } else {
            MAX_LEN
        }
    }
}
