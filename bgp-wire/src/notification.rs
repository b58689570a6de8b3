//! NOTIFICATION message (RFC 4271 4.5), error codes and subcodes (RFC 4271
//! 6, RFC 4486 cease subcodes, RFC 6608 FSM subcodes, RFC 7313) and the
//! RFC 9003 shutdown communication.

use bytes::{BufMut, BytesMut};
use strum::FromRepr;

use crate::error::DecodeError;

// ===== error codes =====

/// NOTIFICATION error codes (RFC 4271 4.5, RFC 7313 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, FromRepr)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, FromRepr)]
#[repr(u8)]
pub enum MsgHeaderSubcode {
    ConnectionNotSynchronized = 1,
    BadMessageLength = 2,
    BadMessageType = 3,
}

/// OPEN Message Error subcodes (RFC 4271 6.2, RFC 5492 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, FromRepr)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, FromRepr)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, FromRepr)]
#[repr(u8)]
pub enum FsmSubcode {
    Unspecified = 0,
    UnexpectedInOpenSent = 1,
    UnexpectedInOpenConfirm = 2,
    UnexpectedInEstablished = 3,
}

/// Cease subcodes (RFC 4486 3, RFC 8538 5 hard reset, RFC 9384 3 BFD
/// Down).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, FromRepr)]
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
    BfdDown = 10,
}

/// ROUTE-REFRESH Message Error subcodes (RFC 7313 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, FromRepr)]
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
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
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
        ErrorCode::from_repr(self.code)
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

impl NotificationMsg {
    /// The words for the code and subcode (RFC 4271 4.5 and the subcode
    /// registries); the subcode's are empty for subcode 0.
    pub fn describe(&self) -> (&'static str, &'static str) {
        let Some(code) = self.error_code() else {
            return (
                "unknown error",
                if self.subcode == 0 { "" } else { "subcode" },
            );
        };
        let c = match code {
            ErrorCode::MessageHeader => "Message Header Error",
            ErrorCode::Open => "OPEN Message Error",
            ErrorCode::Update => "UPDATE Message Error",
            ErrorCode::HoldTimerExpired => "Hold Timer Expired",
            ErrorCode::Fsm => "Finite State Machine Error",
            ErrorCode::Cease => "Cease",
            ErrorCode::RouteRefresh => "ROUTE-REFRESH Message Error",
        };
        if self.subcode == 0 {
            return (c, "");
        }
        let s = match code {
            ErrorCode::Open => {
                OpenSubcode::from_repr(self.subcode).map(|s| match s {
                    OpenSubcode::Unspecific => "",
                    OpenSubcode::UnsupportedVersionNumber => {
                        "Unsupported Version Number"
                    }
                    OpenSubcode::BadPeerAs => "Bad Peer AS",
                    OpenSubcode::BadBgpIdentifier => "Bad BGP Identifier",
                    OpenSubcode::UnsupportedOptionalParameter => {
                        "Unsupported Optional Parameter"
                    }
                    OpenSubcode::UnacceptableHoldTime => {
                        "Unacceptable Hold Time"
                    }
                    OpenSubcode::UnsupportedCapability => {
                        "Unsupported Capability"
                    }
                    OpenSubcode::RoleMismatch => "Role Mismatch",
                })
            }
            ErrorCode::Fsm => Some("Unexpected Message"),
            ErrorCode::Cease => {
                CeaseSubcode::from_repr(self.subcode).map(|s| match s {
                    CeaseSubcode::MaxPrefixes => {
                        "Maximum Number of Prefixes Reached"
                    }
                    CeaseSubcode::AdminShutdown => "Administrative Shutdown",
                    CeaseSubcode::PeerDeconfigured => "Peer De-configured",
                    CeaseSubcode::AdminReset => "Administrative Reset",
                    CeaseSubcode::ConnectionRejected => "Connection Rejected",
                    CeaseSubcode::OtherConfigChange => {
                        "Other Configuration Change"
                    }
                    CeaseSubcode::CollisionResolution => {
                        "Connection Collision Resolution"
                    }
                    CeaseSubcode::OutOfResources => "Out of Resources",
                    CeaseSubcode::HardReset => "Hard Reset",
                    CeaseSubcode::BfdDown => "BFD Down",
                })
            }
            _ => None,
        };
        (c, s.unwrap_or("subcode"))
    }
}

impl std::fmt::Display for NotificationMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (c, s) = self.describe();
        write!(f, "NOTIFICATION {}/{} ({c}", self.code, self.subcode)?;
        if !s.is_empty() {
            write!(f, ": {s}")?;
        }
        write!(f, ")")?;
        if let Some(msg) = self.shutdown_message() {
            write!(f, " \"{msg}\"")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_communication_round_trips_and_truncates() {
        let n = NotificationMsg::shutdown(CeaseSubcode::AdminShutdown, "maint");
        assert_eq!(n.data, b"\x05maint");
        assert_eq!(n.shutdown_message(), Some("maint"));
        assert_eq!(
            n.to_string(),
            "NOTIFICATION 6/2 (Cease: Administrative Shutdown) \"maint\""
        );
        let long = "é".repeat(200); // 400 octets
        let n = NotificationMsg::shutdown(CeaseSubcode::AdminReset, &long);
        assert_eq!(n.data[0], 254, "cut at a char boundary below 255");
        assert_eq!(n.data.len(), 255);
    }

    #[test]
    fn max_prefix_data_layout() {
        let n = NotificationMsg::max_prefixes(1, 1, 1000);
        assert_eq!((n.code, n.subcode), (6, 1));
        assert_eq!(n.data, [0, 1, 1, 0, 0, 3, 0xe8]);
    }

    #[test]
    fn describes_known_and_unknown_codes() {
        let d = |c, s| {
            NotificationMsg {
                code: c,
                subcode: s,
                data: vec![],
            }
            .to_string()
        };
        assert_eq!(d(4, 0), "NOTIFICATION 4/0 (Hold Timer Expired)");
        assert_eq!(
            d(5, 2),
            "NOTIFICATION 5/2 (Finite State Machine Error: Unexpected Message)"
        );
        assert_eq!(d(6, 10), "NOTIFICATION 6/10 (Cease: BFD Down)");
        assert_eq!(
            d(2, 6),
            "NOTIFICATION 2/6 (OPEN Message Error: Unacceptable Hold Time)"
        );
        assert_eq!(d(3, 1), "NOTIFICATION 3/1 (UPDATE Message Error: subcode)");
        assert_eq!(d(9, 1), "NOTIFICATION 9/1 (unknown error: subcode)");
    }
}
