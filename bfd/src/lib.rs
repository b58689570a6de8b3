//! Bidirectional Forwarding Detection: RFC 5880 Asynchronous mode over
//! RFC 5881 single-hop IPv4/IPv6, without IO (as holo-bfd keeps its
//! packet and session apart from its sockets).
//!
//! - [`packet`]: the Control packet codec and its discard rules.
//! - [`session`]: the sans-IO state machine of one session.
//!
//! bgpd is the client (RFC 5882): its `bfd` module owns the sessions of
//! BFD-enabled peers and the UDP sockets.

pub mod packet;
pub mod session;

pub use packet::{ControlPacket, DecodeError, Diag, State};
pub use session::{Session, SessionCfg};

/// RFC 5881 section 4: "BFD Control packets MUST be transmitted in UDP
/// packets with destination port 3784".
pub const CONTROL_PORT: u16 = 3784;
/// RFC 5881 section 4: "The source port MUST be in the range 49152
/// through 65535."
pub const SOURCE_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;
/// RFC 5881 section 5: sent and required TTL / Hop Limit.
pub const TTL: u8 = 255;
