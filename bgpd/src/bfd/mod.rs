//! Bidirectional Forwarding Detection for BGP sessions: RFC 5880
//! Asynchronous mode over RFC 5881 single-hop IPv4/IPv6, with BGP as its
//! client (RFC 5882: a BFD session going Down tears the BGP
//! session down and its routes are withdrawn at once).
//!
//! - `packet.rs`: the Control packet codec and its discard rules.
//! - `session.rs`: the sans-IO state machine of one session.
//! - `client.rs`: the speaker's BFD sessions, one per BFD-enabled peer.
//! - `io.rs`: UDP sockets (port 3784, TTL 255) for the main loop.

pub mod client;
pub mod io;
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
