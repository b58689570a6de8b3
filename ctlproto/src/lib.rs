//! What margay's local components exchange: the control protocol spoken on
//! bgpd's Unix socket (below), and the CNI plugin's endpoint records
//! ([`endpoint`]).
//!
//! The control protocol:
//!
//! Every message is one JSON object on one line (newline-delimited JSON), so
//! the socket can be read with `socat` and a person, and framing needs no
//! length prefix. A client writes one [`Request`]; bgpd answers with one
//! [`Response`] line, except for [`Request::SubscribeRib`], which turns the
//! connection into a stream of [`RibEvent`] lines that lasts until either side
//! closes it.
//!
//! The RIB stream is what felix-lite programs into the kernel: first a full
//! snapshot of best routes (one `Route` event each), then `EndOfSnapshot`,
//! then deltas. A `Route` event replaces whatever was known for that prefix;
//! `Withdraw` removes it. A consumer must not delete routes it learned before
//! a reconnect until the new `EndOfSnapshot` arrives.

pub mod client;
pub mod endpoint;

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

/// Default path of bgpd's control socket.
pub const DEFAULT_BGPD_SOCKET: &str = "/var/run/margay/bgpd.ctl";

/// Margay's default kernel route protocol number, the one felix-lite tags
/// its routes with and margayctl reads the FIB by. Calico's Felix uses 80
/// (`DefaultRouteProto`) and BIRD 12; 81 is unassigned in
/// /etc/iproute2/rt_protos, so margay and Calico can be told apart on one
/// host.
pub const DEFAULT_FIB_PROTOCOL: u8 = 81;

/// A request from a client (felix-lite, margayctl) to bgpd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// The peer table.
    Peers,
    /// The Loc-RIB with every candidate path and the best-path reason.
    Rib,
    /// Switch this connection to the best-route stream.
    SubscribeRib,
    /// Restart a held-Idle session, or reset an Established one (Cease /
    /// Administrative Reset); `peer` is its name or address.
    ResetPeer { peer: String },
    /// The datastore objects bgpd left out because they are bad.
    Invalid,
    /// The routes peers sent that import refused (BGPFilter, outside every
    /// IPPool, loops): all of them, or those whose prefix holds `address`.
    Rejected {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<IpAddr>,
    },
}

/// bgpd's answer to a [`Request`] other than `SubscribeRib`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "snake_case")]
pub enum Response {
    Peers {
        peers: Vec<PeerStatus>,
    },
    Rib {
        routes: Vec<RibEntry>,
    },
    /// A command was carried out; `message` says what was done.
    Done {
        message: String,
    },
    Invalid {
        objects: Vec<InvalidObject>,
    },
    Rejected {
        routes: Vec<RejectedRoute>,
    },
    Error {
        message: String,
    },
}

/// A datastore object left out because it is bad: it does not decode, or
/// a field is invalid. Everything else keeps working; this one is named,
/// counted (`margay_invalid_objects`) and shown by `margayctl node status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidObject {
    /// Its kind, e.g. "BGPPeer".
    pub kind: String,
    /// Its `metadata.name` (the key's name on etcd).
    pub name: String,
    /// The dotted path of the field at fault, e.g. "spec.peerIP"; empty
    /// when the object as a whole is unreadable (not JSON, not a mapping).
    pub field: String,
    /// What is wrong with it.
    pub error: String,
}

impl std::fmt::Display for InvalidObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}", self.kind, self.name)?;
        if !self.field.is_empty() {
            write!(f, " field {}", self.field)?;
        }
        write!(f, ": {}", self.error)
    }
}

/// How a session came to exist, named as `calicoctl node status` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerType {
    /// Node-to-node mesh (`Mesh_<ip>`).
    Mesh,
    /// A BGPPeer with no node or nodeSelector (`Global_<ip>`).
    Global,
    /// A BGPPeer selecting this node (`Node_<ip>`).
    NodeSpecific,
    /// A route-reflector client of this node.
    RouteReflectorClient,
}

impl PeerType {
    /// The words `calicoctl node status` prints for this type.
    pub fn describe(self) -> &'static str {
        match self {
            PeerType::Mesh => "node-to-node mesh",
            PeerType::Global => "global",
            PeerType::NodeSpecific => "node specific",
            PeerType::RouteReflectorClient => "route reflector client",
        }
    }
}

/// A route a peer announced and import refused: BIRD keeps these with
/// `import keep filtered`, FRR with `soft-reconfiguration inbound`; margay
/// keeps the prefix and the reason only, so an operator (and `margayctl
/// diagnose`) can see that a route arrived and why it was dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedRoute {
    /// The peer's Calico-style name.
    pub peer: String,
    pub address: IpAddr,
    pub prefix: IpNetwork,
    /// Why import refused it, in words.
    pub reason: String,
}

/// One row of the peer table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Calico-style name, e.g. `Mesh_10.0.0.2` or `Node_192.0.2.1_port_1179`.
    pub name: String,
    pub peer_type: PeerType,
    pub address: IpAddr,
    pub port: u16,
    pub local_as: u32,
    pub remote_as: u32,
    /// RFC 4271 state name: Idle, Connect, Active, OpenSent, OpenConfirm,
    /// Established.
    pub state: String,
    /// Unix seconds of the last state change.
    pub since_unix: u64,
    /// Prefixes the peer announces now: accepted plus rejected at import.
    pub prefixes_received: u64,
    pub prefixes_accepted: u64,
    pub prefixes_advertised: u64,
    /// The last error or NOTIFICATION, in words.
    pub last_error: Option<String>,
    /// BFD session state when BFD is enabled for this peer.
    pub bfd_state: Option<String>,
    /// Set while the session is held Idle (after a max-prefix Cease): it
    /// does not reconnect, and refuses the peer, until `restart_unix` or
    /// `margayctl node reset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_idle: Option<HeldIdle>,
}

/// Why a session is held Idle and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldIdle {
    /// E.g. "maximum prefixes exceeded (3 > 2)".
    pub reason: String,
    /// Unix seconds when it restarts by itself; `None`: only on
    /// `margayctl node reset`.
    pub restart_unix: Option<u64>,
}

/// All candidate paths for one prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RibEntry {
    pub prefix: IpNetwork,
    pub paths: Vec<RibPath>,
}

/// One candidate path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RibPath {
    /// The peer it came from, or `None` for a locally originated route.
    pub peer: Option<IpAddr>,
    pub next_hop: Option<IpAddr>,
    pub as_path: Vec<u32>,
    pub origin: String,
    pub local_pref: Option<u32>,
    pub med: Option<u32>,
    pub communities: Vec<String>,
    pub best: bool,
    /// Installed as an equal-cost member with the best path.
    pub multipath: bool,
    /// Kept only because the peer is restarting (RFC 4724).
    pub stale: bool,
    /// Why this path won or lost against the best, e.g. "shorter AS_PATH".
    pub reason: String,
}

/// One line of the best-route stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RibEvent {
    /// Install or replace the route for `prefix` with these next hops (more
    /// than one: equal-cost multipath).
    Route {
        prefix: IpNetwork,
        next_hops: Vec<IpAddr>,
    },
    /// Remove the route for `prefix`.
    Withdraw { prefix: IpNetwork },
    /// The snapshot is complete; everything after this is a delta.
    EndOfSnapshot,
}

/// A line that could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("bad control-protocol line {line:?}: {source}")]
pub struct DecodeError {
    pub line: String,
    #[source]
    pub source: serde_json::Error,
}

/// Encode one message as a line (with its trailing newline).
pub fn encode_line<T: Serialize>(msg: &T) -> String {
    let mut s = serde_json::to_string(msg)
        .expect("control protocol types always serialize");
    s.push('\n');
    s
}

/// Decode one line (with or without its newline).
pub fn decode_line<T: for<'de> Deserialize<'de>>(
    line: &str,
) -> Result<T, DecodeError> {
    serde_json::from_str(line.trim_end()).map_err(|source| DecodeError {
        line: line.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rib_event_wire_form_is_stable() {
        let ev = RibEvent::Route {
            prefix: "10.244.1.0/26".parse().unwrap(),
            next_hops: vec!["192.0.2.2".parse().unwrap()],
        };
        let line = encode_line(&ev);
        assert_eq!(
            line,
            "{\"event\":\"route\",\"prefix\":\"10.244.1.0/26\",\
             \"next_hops\":[\"192.0.2.2\"]}\n"
        );
        assert_eq!(decode_line::<RibEvent>(&line).unwrap(), ev);
        assert_eq!(
            encode_line(&RibEvent::EndOfSnapshot),
            "{\"event\":\"end_of_snapshot\"}\n"
        );
    }

    #[test]
    fn request_round_trip_and_error() {
        let line = encode_line(&Request::SubscribeRib);
        assert_eq!(line, "{\"request\":\"subscribe_rib\"}\n");
        assert_eq!(
            decode_line::<Request>(&line).unwrap(),
            Request::SubscribeRib
        );
        let err = decode_line::<Request>("{\"request\":\"nope\"}").unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
