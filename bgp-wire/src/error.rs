//! Decode and encode errors.
//!
//! A [`DecodeError`] is fatal for the session: the caller sends the
//! NOTIFICATION given by [`DecodeError::to_notification`] (RFC 4271 6.1-6.6)
//! and closes the connection. Problems with single path attributes that
//! RFC 7606 lets us survive are [`AttrError`]s instead, reported inside the
//! decoded [`crate::UpdateMsg`] together with the action RFC 7606 asks for.

use std::net::Ipv4Addr;

use crate::iana::BGP_VERSION;
use crate::notification::{
    ErrorCode, MsgHeaderSubcode, NotificationMsg, OpenSubcode, RefreshSubcode,
    UpdateSubcode,
};

// ===== session-fatal decode errors =====

/// A decode error that resets the session. `offset` is the byte offset of
/// the offending field from the start of the BGP message (the marker).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// RFC 4271 6.1: the marker is not all ones.
    #[error("offset {offset}: marker is not all ones")]
    BadMarker { offset: usize },
    /// RFC 4271 6.1: length outside 19..=max or wrong for the type.
    #[error(
        "offset {offset}: message length {length} not allowed for type \
         {msg_type} (allowed {min}..={max})"
    )]
    BadLength {
        offset: usize,
        msg_type: u8,
        length: u16,
        min: u16,
        max: u16,
    },
    /// RFC 4271 6.1: unknown message type.
    #[error("offset {offset}: unknown message type {msg_type}")]
    BadType { offset: usize, msg_type: u8 },
    /// RFC 4271 6.2: version other than 4.
    #[error("offset {offset}: unsupported BGP version {version} (only 4)")]
    UnsupportedVersion { offset: usize, version: u8 },
    /// RFC 4271 6.2 / RFC 6286 2.2: BGP Identifier 0.0.0.0.
    #[error("offset {offset}: bad BGP identifier {id}")]
    BadBgpId { offset: usize, id: Ipv4Addr },
    /// RFC 4271 6.2: hold time 1 or 2 seconds.
    #[error("offset {offset}: unacceptable hold time {hold_time} (0 or >= 3)")]
    UnacceptableHoldTime { offset: usize, hold_time: u16 },
    /// RFC 4271 6.2: optional parameter other than capabilities.
    #[error(
        "offset {offset}: unsupported optional parameter type {param_type}"
    )]
    UnsupportedOptParam { offset: usize, param_type: u8 },
    /// OPEN body does not parse (lengths overrun, malformed capability).
    #[error("offset {offset}: malformed OPEN: {reason}")]
    MalformedOpen { offset: usize, reason: &'static str },
    /// RFC 4271 6.3 / RFC 7606 4: withdrawn/attribute lengths do not fit,
    /// or MP_REACH/MP_UNREACH repeated (RFC 7606 3(g)).
    #[error("offset {offset}: malformed attribute list: {reason}")]
    MalformedAttrList { offset: usize, reason: &'static str },
    /// RFC 4271 6.3 / RFC 7606 3(j), 5.3: NLRI or withdrawn routes (plain
    /// or inside MP_REACH/MP_UNREACH) cannot be parsed.
    #[error("offset {offset}: invalid network field: {reason}")]
    InvalidNetworkField { offset: usize, reason: &'static str },
    /// An attribute error that RFC 7606 does not let us survive, e.g. an
    /// MP_REACH_NLRI next hop length inconsistent with its AFI (7.11).
    #[error(transparent)]
    Attr(#[from] AttrError),
    /// NOTIFICATION shorter than 21 octets.
    #[error("offset {offset}: malformed NOTIFICATION: {reason}")]
    MalformedNotification { offset: usize, reason: &'static str },
    /// RFC 7313 5: ROUTE-REFRESH whose length is not 23.
    #[error("offset {offset}: ROUTE-REFRESH length {length} (must be 23)")]
    BadRefreshLength {
        offset: usize,
        length: u16,
        /// The complete message, returned as NOTIFICATION data.
        message: Vec<u8>,
    },
}

// ===== per-attribute errors (RFC 7606) =====

/// What is wrong with one path attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttrErrorKind {
    /// Optional/Transitive flags conflict with the type (RFC 7606 3(c)).
    Flags,
    /// Length wrong for the type.
    Length,
    /// Attribute overruns the path attribute area (RFC 7606 4).
    Overrun,
    /// ORIGIN value undefined (RFC 4271 6.3).
    InvalidOrigin,
    /// AS_PATH / AS4_PATH syntax (RFC 7606 7.2).
    MalformedAsPath,
    /// AS number 0 in AS_PATH, AS4_PATH, AGGREGATOR or AS4_AGGREGATOR
    /// (RFC 7607 2).
    AsZero,
    /// NEXT_HOP not a valid IPv4 unicast address.
    InvalidNextHop,
    /// Well-known mandatory attribute absent (RFC 7606 3(d)).
    Missing,
    /// Well-known (non-optional) attribute with an unknown type code.
    UnrecognizedWellKnown,
    /// Second occurrence of an attribute (RFC 7606 3(g)).
    Duplicate,
    /// Optional attribute with a bad value (RFC 4271 6.3).
    Optional,
}

/// One path attribute that failed a check, with the RFC 7606 action taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("offset {offset}: path attribute {type_code}: {kind:?} ({action:?})")]
pub struct AttrError {
    /// Offset of the attribute's flags octet from the message start.
    pub offset: usize,
    pub type_code: u8,
    pub kind: AttrErrorKind,
    /// What RFC 7606 says to do about it.
    pub action: ErrorAction,
    /// The erroneous attribute (flags, type, length, value) or, for
    /// `Missing`, the type code: NOTIFICATION data per RFC 4271 6.3.
    pub data: Vec<u8>,
}

/// RFC 7606 2 error handling approaches, weakest first; `Ord` follows
/// strength so that the strongest one wins (RFC 7606 3(h)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorAction {
    /// The attribute is dropped; the UPDATE is processed without it.
    AttributeDiscard,
    /// All NLRI in the UPDATE are handled as if withdrawn.
    TreatAsWithdraw,
    /// NOTIFICATION + close (only where RFC 7606 requires it).
    SessionReset,
}

impl AttrError {
    /// The RFC 4271 6.3 UPDATE error subcode for this attribute error.
    pub fn subcode(&self) -> UpdateSubcode {
        match self.kind {
            AttrErrorKind::Flags => UpdateSubcode::AttributeFlags,
            AttrErrorKind::Length => UpdateSubcode::AttributeLength,
            AttrErrorKind::Overrun | AttrErrorKind::Duplicate => {
                UpdateSubcode::MalformedAttributeList
            }
            AttrErrorKind::InvalidOrigin => UpdateSubcode::InvalidOrigin,
            AttrErrorKind::MalformedAsPath => UpdateSubcode::MalformedAsPath,
            // RFC 7607 2: "considered as a malformed message"; for the
            // aggregators the attribute is what is malformed.
            AttrErrorKind::AsZero => match self.type_code {
                crate::iana::attr_type::AGGREGATOR
                | crate::iana::attr_type::AS4_AGGREGATOR => {
                    UpdateSubcode::OptionalAttribute
                }
                _ => UpdateSubcode::MalformedAsPath,
            },
            AttrErrorKind::InvalidNextHop => UpdateSubcode::InvalidNextHop,
            AttrErrorKind::Missing => UpdateSubcode::MissingWellKnown,
            AttrErrorKind::UnrecognizedWellKnown => {
                UpdateSubcode::UnrecognizedWellKnown
            }
            AttrErrorKind::Optional => UpdateSubcode::OptionalAttribute,
        }
    }
}

// ===== NOTIFICATION mapping =====

impl DecodeError {
    /// The NOTIFICATION to send for this error (RFC 4271 6.1-6.3, RFC 7313 5).
    pub fn to_notification(&self) -> NotificationMsg {
        use DecodeError as E;
        let hdr = |s: MsgHeaderSubcode, data: Vec<u8>| {
            NotificationMsg::new(ErrorCode::MessageHeader, s as u8, data)
        };
        let open = |s: OpenSubcode, data: Vec<u8>| {
            NotificationMsg::new(ErrorCode::Open, s as u8, data)
        };
        let upd = |s: UpdateSubcode, data: Vec<u8>| {
            NotificationMsg::new(ErrorCode::Update, s as u8, data)
        };
        match self {
            E::BadMarker { .. } => {
                hdr(MsgHeaderSubcode::ConnectionNotSynchronized, vec![])
            }
            // RFC 4271 6.1: "the Data field MUST contain the erroneous
            // Length field".
            E::BadLength { length, .. } => hdr(
                MsgHeaderSubcode::BadMessageLength,
                length.to_be_bytes().to_vec(),
            ),
            // RFC 4271 6.1: Data "MUST contain the erroneous Type field".
            E::BadType { msg_type, .. } => {
                hdr(MsgHeaderSubcode::BadMessageType, vec![*msg_type])
            }
            // RFC 4271 6.2: Data is the largest supported version number.
            E::UnsupportedVersion { .. } => open(
                OpenSubcode::UnsupportedVersionNumber,
                u16::from(BGP_VERSION).to_be_bytes().to_vec(),
            ),
            E::BadBgpId { .. } => open(OpenSubcode::BadBgpIdentifier, vec![]),
            E::UnacceptableHoldTime { .. } => {
                open(OpenSubcode::UnacceptableHoldTime, vec![])
            }
            E::UnsupportedOptParam { .. } => {
                open(OpenSubcode::UnsupportedOptionalParameter, vec![])
            }
            E::MalformedOpen { .. } => open(OpenSubcode::Unspecific, vec![]),
            E::MalformedAttrList { .. } => {
                upd(UpdateSubcode::MalformedAttributeList, vec![])
            }
            E::InvalidNetworkField { .. } => {
                upd(UpdateSubcode::InvalidNetworkField, vec![])
            }
            E::Attr(a) => upd(a.subcode(), a.data.clone()),
            E::MalformedNotification { .. } => {
                hdr(MsgHeaderSubcode::BadMessageLength, vec![])
            }
            // RFC 7313 5: "Invalid Message Length", data = whole message.
            E::BadRefreshLength { message, .. } => NotificationMsg::new(
                ErrorCode::RouteRefresh,
                RefreshSubcode::InvalidMessageLength as u8,
                message.clone(),
            ),
        }
    }

    /// Byte offset of the problem from the start of the message.
    pub fn offset(&self) -> usize {
        use DecodeError as E;
        match self {
            E::BadMarker { offset }
            | E::BadLength { offset, .. }
            | E::BadType { offset, .. }
            | E::UnsupportedVersion { offset, .. }
            | E::BadBgpId { offset, .. }
            | E::UnacceptableHoldTime { offset, .. }
            | E::UnsupportedOptParam { offset, .. }
            | E::MalformedOpen { offset, .. }
            | E::MalformedAttrList { offset, .. }
            | E::InvalidNetworkField { offset, .. }
            | E::MalformedNotification { offset, .. }
            | E::BadRefreshLength { offset, .. } => *offset,
            E::Attr(a) => a.offset,
        }
    }
}

impl From<&DecodeError> for NotificationMsg {
    fn from(e: &DecodeError) -> NotificationMsg {
        e.to_notification()
    }
}

impl From<DecodeError> for NotificationMsg {
    fn from(e: DecodeError) -> NotificationMsg {
        e.to_notification()
    }
}

// ===== encode errors =====

/// Why a message could not be encoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The message would exceed the negotiated maximum (4096, or 65535
    /// with RFC 8654 extended messages).
    #[error("message of {length} octets exceeds the maximum of {max}")]
    TooLong { length: usize, max: usize },
    /// A single path attribute longer than 65535 octets.
    #[error("path attribute {type_code} of {length} octets is too long")]
    AttrTooLong { type_code: u8, length: usize },
    /// Capability or optional parameters longer than the format allows.
    #[error("OPEN optional parameters of {length} octets are too long")]
    OptParamsTooLong { length: usize },
    /// A field that cannot be represented (e.g. mixed address families).
    #[error("cannot encode: {reason}")]
    Invalid { reason: &'static str },
}
