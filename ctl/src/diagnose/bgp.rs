//! Hop 5: bgpd's view, through its control socket (what `node status`
//! and `routes` read): the best path to the destination, the peer it came
//! from and why it won; else the route a peer sent that import refused
//! (and why), or the session that is down.

use std::net::IpAddr;
use std::path::Path;

use margay_ctlproto::client as socket;
use margay_ctlproto::{PeerStatus, RejectedRoute, RibEntry};

use super::{DiagnoseError, Verdict};

#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub rib: Vec<RibEntry>,
    pub peers: Vec<PeerStatus>,
    /// Routes refused at import whose prefix holds the destination.
    pub rejected: Vec<RejectedRoute>,
}

pub fn facts(path: &Path, dst: IpAddr) -> Result<Facts, DiagnoseError> {
    let fail = |e: socket::SocketError| DiagnoseError::Command {
        command: format!("bgpd control socket {}", path.display()),
        reason: e.to_string(),
    };
    Ok(Facts {
        rib: socket::rib(path).map_err(fail)?,
        peers: socket::peers(path).map_err(fail)?,
        rejected: socket::rejected(path, Some(dst)).map_err(fail)?,
    })
}

/// Hop 5.
pub fn judge(dst: IpAddr, f: &Facts) -> Verdict {
    let best = f
        .rib
        .iter()
        .filter(|e| e.prefix.contains(dst))
        .filter_map(|e| e.paths.iter().find(|p| p.best).map(|p| (e.prefix, p)))
        .max_by_key(|(prefix, _)| prefix.prefix());
    if let Some((prefix, p)) = best {
        let from = match p.peer {
            None => "originated by this node".to_string(),
            Some(a) => {
                let name = f
                    .peers
                    .iter()
                    .find(|s| s.address == a)
                    .map_or(a.to_string(), |s| s.name.clone());
                format!("from {name}")
            }
        };
        let nh = p.next_hop.map_or("-".into(), |h| h.to_string());
        let stale = if p.stale {
            " (stale: peer restarting)"
        } else {
            ""
        };
        return Verdict::ok(format!(
            "best {prefix} via {nh} {from}: {}{stale}",
            p.reason
        ));
    }
    if !f.rejected.is_empty() {
        let refused: Vec<String> = f
            .rejected
            .iter()
            .map(|r| {
                format!(
                    "{} ({}) sent {}, refused at import: {}",
                    r.peer, r.address, r.prefix, r.reason
                )
            })
            .collect();
        return Verdict::broken(
            format!("no path to {dst}; {}", refused.join("; ")),
            "check that peer's BGPFilter import rules (importV4/importV6); \
             a prefix outside every enabled IPPool needs a pool, or a \
             BGPFilter rule that accepts it",
        );
    }
    let down: Vec<String> = f
        .peers
        .iter()
        .filter(|p| p.state != "Established")
        .map(|p| {
            let why = p
                .last_error
                .as_deref()
                .map_or(String::new(), |e| format!(": {e}"));
            format!("{} ({}) is {}{why}", p.name, p.address, p.state)
        })
        .collect();
    if !down.is_empty() {
        return Verdict::broken(
            format!("no path to {dst}; session {}", down.join("; session ")),
            "bring the session up: check the peer is reachable and its \
             BGPPeer/AS config; `margayctl node reset PEER` restarts one \
             held Idle",
        );
    }
    Verdict::broken(
        format!(
            "no path to {dst}: every session is up and no peer advertises it"
        ),
        "the destination's node does not originate its block: check that \
         node's bgpd and IPAM affinity (hop 6)",
    )
}
