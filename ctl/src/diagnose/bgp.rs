//! Hop 5: bgpd's view, through its control socket (what `node status`
//! and `routes` read): the best path to the destination, the peer it came
//! from and why it won; else the session that is down, or the peer whose
//! routes an import filter rejected.

use std::net::IpAddr;
use std::path::Path;

use margay_ctlproto::client as socket;
use margay_ctlproto::{PeerStatus, RibEntry};

use super::{DiagnoseError, Verdict};

#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub rib: Vec<RibEntry>,
    pub peers: Vec<PeerStatus>,
}

pub fn facts(path: &Path) -> Result<Facts, DiagnoseError> {
    let fail = |e: socket::SocketError| DiagnoseError::Command {
        command: format!("bgpd control socket {}", path.display()),
        reason: e.to_string(),
    };
    Ok(Facts {
        rib: socket::rib(path).map_err(fail)?,
        peers: socket::peers(path).map_err(fail)?,
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
    let filtered: Vec<String> = f
        .peers
        .iter()
        .filter(|p| p.prefixes_received > p.prefixes_accepted)
        .map(|p| {
            format!(
                "{} sent {} prefixes, {} accepted",
                p.name, p.prefixes_received, p.prefixes_accepted
            )
        })
        .collect();
    if !filtered.is_empty() {
        return Verdict::broken(
            format!(
                "no path to {dst}; an import filter rejected routes: {}",
                filtered.join("; ")
            ),
            "check the BGPFilters of these peers (importV4/importV6 rules \
             that reject the destination's block)",
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
