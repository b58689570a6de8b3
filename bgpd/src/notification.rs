//! NOTIFICATION contents: error codes and subcodes (RFC 4271 section 4.5,
//! RFC 4486 Cease subcodes, RFC 6608 FSM subcodes, RFC 9003 shutdown
//! communication).

use serde::Serialize;

/// Error codes (RFC 4271 section 4.5).
pub mod code {
    pub const HEADER: u8 = 1;
    pub const OPEN: u8 = 2;
    pub const UPDATE: u8 = 3;
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    pub const FSM: u8 = 5;
    pub const CEASE: u8 = 6;
    pub const ROUTE_REFRESH: u8 = 7;
}

/// OPEN Message Error subcodes (RFC 4271 section 6.2).
pub mod open_err {
    pub const UNSUPPORTED_VERSION: u8 = 1;
    pub const BAD_PEER_AS: u8 = 2;
    pub const BAD_BGP_ID: u8 = 3;
    pub const UNSUPPORTED_OPT_PARAM: u8 = 4;
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
    pub const UNSUPPORTED_CAPABILITY: u8 = 7;
}

/// FSM Error subcodes (RFC 6608 section 3).
pub mod fsm_err {
    pub const UNEXPECTED_IN_OPENSENT: u8 = 1;
    pub const UNEXPECTED_IN_OPENCONFIRM: u8 = 2;
    pub const UNEXPECTED_IN_ESTABLISHED: u8 = 3;
}

/// Cease subcodes (RFC 4486 section 4).
pub mod cease {
    pub const MAX_PREFIXES: u8 = 1;
    pub const ADMIN_SHUTDOWN: u8 = 2;
    pub const PEER_DECONFIGURED: u8 = 3;
    pub const ADMIN_RESET: u8 = 4;
    pub const CONNECTION_REJECTED: u8 = 5;
    pub const OTHER_CONFIG_CHANGE: u8 = 6;
    pub const COLLISION_RESOLUTION: u8 = 7;
    pub const OUT_OF_RESOURCES: u8 = 8;
    /// RFC 9384: the session was torn down because BFD went Down.
    pub const BFD_DOWN: u8 = 10;
}

/// A NOTIFICATION message's contents.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

impl Notification {
    pub fn new(code: u8, subcode: u8) -> Self {
        Notification {
            code,
            subcode,
            data: Vec::new(),
        }
    }

    pub fn with_data(code: u8, subcode: u8, data: Vec<u8>) -> Self {
        Notification {
            code,
            subcode,
            data,
        }
    }

    /// A Cease with an RFC 9003 shutdown communication: one length octet
    /// then UTF-8 text of at most 255 octets, cut at a char boundary.
    pub fn shutdown(subcode: u8, message: Option<&str>) -> Self {
        let mut data = Vec::new();
        if let Some(msg) = message.filter(|m| !m.is_empty()) {
            let mut end = msg.len().min(255);
            while !msg.is_char_boundary(end) {
                end -= 1;
            }
            data.push(end as u8);
            data.extend_from_slice(&msg.as_bytes()[..end]);
        }
        Notification::with_data(code::CEASE, subcode, data)
    }

    /// RFC 4486 section 4: Maximum Number of Prefixes Reached; the data
    /// carries AFI (2), SAFI (1) and the limit (4).
    pub fn max_prefixes(afi: u16, safi: u8, limit: u32) -> Self {
        let mut data = afi.to_be_bytes().to_vec();
        data.push(safi);
        data.extend_from_slice(&limit.to_be_bytes());
        Notification::with_data(code::CEASE, cease::MAX_PREFIXES, data)
    }

    /// The RFC 9003 shutdown communication carried, if any.
    pub fn shutdown_message(&self) -> Option<String> {
        if self.code != code::CEASE
            || !matches!(
                self.subcode,
                cease::ADMIN_SHUTDOWN | cease::ADMIN_RESET
            )
        {
            return None;
        }
        let (&len, rest) = self.data.split_first()?;
        let text = rest.get(..usize::from(len))?;
        std::str::from_utf8(text).ok().map(str::to_owned)
    }

    /// The words for the code and subcode.
    pub fn describe(&self) -> (&'static str, &'static str) {
        let c = match self.code {
            code::HEADER => "Message Header Error",
            code::OPEN => "OPEN Message Error",
            code::UPDATE => "UPDATE Message Error",
            code::HOLD_TIMER_EXPIRED => "Hold Timer Expired",
            code::FSM => "Finite State Machine Error",
            code::CEASE => "Cease",
            code::ROUTE_REFRESH => "ROUTE-REFRESH Message Error",
            _ => "unknown error",
        };
        let s = match (self.code, self.subcode) {
            (_, 0) => "",
            (code::OPEN, open_err::UNSUPPORTED_VERSION) => {
                "Unsupported Version Number"
            }
            (code::OPEN, open_err::BAD_PEER_AS) => "Bad Peer AS",
            (code::OPEN, open_err::BAD_BGP_ID) => "Bad BGP Identifier",
            (code::OPEN, open_err::UNSUPPORTED_OPT_PARAM) => {
                "Unsupported Optional Parameter"
            }
            (code::OPEN, open_err::UNACCEPTABLE_HOLD_TIME) => {
                "Unacceptable Hold Time"
            }
            (code::OPEN, open_err::UNSUPPORTED_CAPABILITY) => {
                "Unsupported Capability"
            }
            (code::FSM, _) => "Unexpected Message",
            (code::CEASE, cease::MAX_PREFIXES) => {
                "Maximum Number of Prefixes Reached"
            }
            (code::CEASE, cease::ADMIN_SHUTDOWN) => "Administrative Shutdown",
            (code::CEASE, cease::PEER_DECONFIGURED) => "Peer De-configured",
            (code::CEASE, cease::ADMIN_RESET) => "Administrative Reset",
            (code::CEASE, cease::CONNECTION_REJECTED) => "Connection Rejected",
            (code::CEASE, cease::OTHER_CONFIG_CHANGE) => {
                "Other Configuration Change"
            }
            (code::CEASE, cease::COLLISION_RESOLUTION) => {
                "Connection Collision Resolution"
            }
            (code::CEASE, cease::OUT_OF_RESOURCES) => "Out of Resources",
            (code::CEASE, cease::BFD_DOWN) => "BFD Down",
            _ => "subcode",
        };
        (c, s)
    }
}

impl std::fmt::Display for Notification {
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
        let n = Notification::shutdown(cease::ADMIN_SHUTDOWN, Some("maint"));
        assert_eq!(n.data, b"\x05maint");
        assert_eq!(n.shutdown_message().as_deref(), Some("maint"));
        assert!(n.to_string().contains("Administrative Shutdown"));
        let long = "é".repeat(200); // 400 bytes
        let n = Notification::shutdown(cease::ADMIN_RESET, Some(&long));
        assert_eq!(n.data[0], 254, "cut at a char boundary below 255");
        assert_eq!(n.data.len(), 255);
        assert!(Notification::shutdown(2, None).data.is_empty());
    }

    #[test]
    fn max_prefix_data_layout() {
        let n = Notification::max_prefixes(1, 1, 1000);
        assert_eq!((n.code, n.subcode), (6, 1));
        assert_eq!(n.data, [0, 1, 1, 0, 0, 3, 0xe8]);
    }
}
