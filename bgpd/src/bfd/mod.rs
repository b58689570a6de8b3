//! Bidirectional Forwarding Detection for BGP sessions, with BGP as its
//! client (RFC 5882: a BFD session going Down tears the BGP session down
//! and its routes are withdrawn at once). The packet codec and the
//! session state machine are the `margay-bfd` crate; this module holds
//! what ties them to the speaker:
//!
//! - `client.rs`: the speaker's BFD sessions, one per BFD-enabled peer.
//! - `io.rs`: UDP sockets (port 3784, TTL 255) for the main loop.

pub mod client;
pub mod io;

pub use margay_bfd::{
    CONTROL_PORT, ControlPacket, DecodeError, Diag, SOURCE_PORTS, Session,
    SessionCfg, State, TTL, packet, session,
};
