//! The plugin's fast path through the node agent.
//!
//! Every plugin invocation is a new process: it connects to the datastore,
//! opens netlink sockets and loads a large binary, which is most of an
//! ADD's time. The node agent (`margay-node`) is already running on the
//! node, so it serves the same verbs on a unix socket with warm
//! connections, and the plugin only relays: it sends its CNI_* variables
//! and stdin, plus an open handle of CNI_NETNS (SCM_RIGHTS, so the agent
//! needs no view of the runtime's mount namespace), and prints the reply.
//! The agent runs exactly the code the plugin would run in-process
//! ([`crate::run`]); when it is not there, the plugin does the work itself.
//!
//! The exchange on one connection: the request as JSON, then the plugin
//! shuts down its writing half; the reply as JSON, then the agent closes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub mod client;
pub mod server;

/// The environment variables a plugin invocation consists of (SPEC.md
/// section 2), relayed as they are.
pub const CNI_VARS: [&str; 6] = [
    "CNI_COMMAND",
    "CNI_CONTAINERID",
    "CNI_NETNS",
    "CNI_IFNAME",
    "CNI_ARGS",
    "CNI_PATH",
];

/// The largest request the agent reads: a network config with a large
/// prevResult is a few KiB.
pub const MAX_REQUEST: usize = 4 << 20;

/// One invocation, relayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The CNI_* variables that were set.
    pub env: BTreeMap<String, String>,
    /// The network configuration from stdin.
    pub stdin: String,
}

/// What the plugin process prints and exits with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    pub exit: i32,
    /// The stdout text (a result or an error document; empty for DEL).
    pub stdout: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_reply_round_trip_and_reject_unknown_fields() {
        let req = Request {
            env: BTreeMap::from([("CNI_COMMAND".into(), "ADD".into())]),
            stdin: r#"{"cniVersion":"1.1.0"}"#.into(),
        };
        let text = serde_json::to_string(&req).unwrap();
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), req);
        let reply = Reply {
            exit: 1,
            stdout: "{}".into(),
        };
        let text = serde_json::to_string(&reply).unwrap();
        assert_eq!(serde_json::from_str::<Reply>(&text).unwrap(), reply);
        let bad = r#"{"exit":0,"stdout":"","extra":1}"#;
        assert!(serde_json::from_str::<Reply>(bad).is_err());
    }
}
