//! NOTIFICATION message (RFC 4271 4.5), error codes and subcodes (RFC 4271
//! 6, RFC 4486 cease subcodes, RFC 6608 FSM subcodes, RFC 7313) and the
//! RFC 9003 shutdown communication.

use bytes::{BufMut, BytesMut};

use crate::error::DecodeError;

// ===== error codes =====

/// NOTIFICATION error codes (RFC 4271 4.5, RFC 7313 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ErrorCode {
    MessageHeader = 1,
    Open = 2,
    Update = 3,
    HoldTimerExpired = 4,
    Fsm = 5,
    Cease = 6,
    RouteRefresh = 7,
}

/// Message Header Error subcodes (RFC 4271 6.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MsgHeaderSubcode {
    ConnectionNotSynchronized = 1,
    BadMessageLength = 2,
    BadMessageType = 3,
}

/// OPEN Message Error subcodes (RFC 4271 6.2, RFC 5492 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OpenSubcode {
    Unspecific = 0,
    UnsupportedVersionNumber = 1,
    BadPeerAs = 2,
    BadBgpIdentifier = 3,
    UnsupportedOptionalParameter = 4,
    UnacceptableHoldTime = 6,
    UnsupportedCapability = 7,
    RoleMismatch = 11,
}

/// UPDATE Message Error subcodes (RFC 4271 6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum UpdateSubcode {
    MalformedAttributeList = 1,
    UnrecognizedWellKnown = 2,
    MissingWellKnown = 3,
    AttributeFlags = 4,
    AttributeLength = 5,
    InvalidOrigin = 6,
    InvalidNextHop = 8,
    OptionalAttribute = 9,
    InvalidNetworkField = 10,
    MalformedAsPath = 11,
}

/// FSM Error subcodes (RFC 6608 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FsmSubcode {
    Unspecified = 0,
    UnexpectedInOpenSent = 1,
    UnexpectedInOpenConfirm = 2,
    UnexpectedInEstablished = 3,
}

/// Cease subcodes (RFC 4486 3, RFC 8538 5 hard reset).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CeaseSubcode {
    MaxPrefixes = 1,
    AdminShutdown = 2,
    PeerDeconfigured = 3,
    AdminReset = 4,
    ConnectionRejected = 5,
    OtherConfigChange = 6,
    CollisionResolution = 7,
    OutOfResources = 8,
    HardReset = 9,
}

/// ROUTE-REFRESH Message Error subcodes (RFC 7313 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RefreshSubcode {
    InvalidMessageLength = 1,
}

/// Longest RFC 9003 shutdown communication, in octets of UTF-8.
pub const MAX_SHUTDOWN_MSG: usize = 255;

// ===== NOTIFICATION message =====

/// A NOTIFICATION message. Code and subcode stay raw octets so that
/// values we do not know survive a round trip; see [`ErrorCode`] and the
/// subcode enums for the known ones.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NotificationMsg {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

impl NotificationMsg {
    /// Builds a NOTIFICATION from a known code.
    pub fn new(code: ErrorCode, subcode: u8, data: Vec<u8>) -> Self {
        NotificationMsg {
            code: code as u8,
            subcode,
            data,
        }
    }

    /// A Cease NOTIFICATION (RFC 4486) with no data.
    pub fn cease(subcode: CeaseSubcode) -> Self {
        Self::new(ErrorCode::Cease, subcode as u8, vec![])
    }

    /// Cease / Maximum Number of Prefixes Reached. RFC 4486 4: the data
    /// MAY be AFI (2 octets), SAFI (1) and the upper bound (4).
    pub fn max_prefixes(afi: u16, safi: u8, limit: u32) -> Self {
        let mut data = Vec::with_capacity(7);
        data.extend_from_slice(&afi.to_be_bytes());
        data.push(safi);
        data.extend_from_slice(&limit.to_be_bytes());
        Self::new(ErrorCode::Cease, CeaseSubcode::MaxPrefixes as u8, data)
    }

    /// Cease / Administrative Shutdown or Reset with an RFC 9003
    /// shutdown communication: a length octet then UTF-8. Longer texts
    /// are cut at a character boundary to the 255-octet limit (RFC 9003 2).
    pub fn shutdown(subcode: CeaseSubcode, message: &str) -> Self {
        let mut end = message.len().min(MAX_SHUTDOWN_MSG);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let mut data = Vec::with_capacity(end + 1);
        data.push(end as u8);
        data.extend_from_slice(&message.as_bytes()[..end]);
        Self::new(ErrorCode::Cease, subcode as u8, data)
    }

    /// The known error code, if any.
    pub fn error_code(&self) -> Option<ErrorCode> {
        Some(match self.code {
            1 => ErrorCode::MessageHeader,
            2 => ErrorCode::Open,
            3 => ErrorCode::Update,
            4 => ErrorCode::HoldTimerExpired,
            5 => ErrorCode::Fsm,
            6 => ErrorCode::Cease,
            7 => ErrorCode::RouteRefresh,
            _ => return None,
        })
    }

    /// RFC 9003 2: the shutdown communication of a Cease / Administrative
    /// Shutdown (2) or Administrative Reset (4). `None` when absent, or
    /// when the length octet overruns the data or the text is not UTF-8
    /// (RFC 9003 4: then it is to be treated as absent, not an error).
    pub fn shutdown_message(&self) -> Option<&str> {
        let admin = self.subcode == CeaseSubcode::AdminShutdown as u8
            || self.subcode == CeaseSubcode::AdminReset as u8;
        if self.code != ErrorCode::Cease as u8 || !admin {
            return None;
        }
        let (&len, rest) = self.data.split_first()?;
        let text = rest.get(..usize::from(len))?;
        if text.is_empty() {
            return None;
        }
        std::str::from_utf8(text).ok()
    }

    /// Decodes a NOTIFICATION body (after the 19-octet header); `base` is
    /// the body's offset within the message, for error offsets.
    pub fn decode(body: &[u8], base: usize) -> Result<Self, DecodeError> {
        // RFC 4271 4.5: minimum length 21, i.e. code and subcode present.
        if body.len() < 2 {
            return Err(DecodeError::MalformedNotification {
                offset: base,
                reason: "shorter than code and subcode",
            });
        }
        Ok(NotificationMsg {
            code: body[0],
            subcode: body[1],
            data: body[2..].to_vec(),
        })
    }

    /// Appends the body (without header).
    pub(crate) fn encode_body(&self, out: &mut BytesMut) {
        out.put_u8(self.code);
        out.put_u8(self.subcode);
        out.put_slice(&self.data);
    }
}

impl std::fmt::Display for NotificationMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "code {} subcode {}", self.code, self.subcode)?;
        if let Some(m) = self.shutdown_message() {
            write!(f, " ({m:?})")?;
        }
        Ok(())
    }
}
