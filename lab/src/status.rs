//! `lab status`: what runs, the sessions of every node, the pods.

use std::fmt::Write as _;

use crate::state::LabState;
use crate::sys::alive;
use crate::{LabError, LabOptions};

/// A printable status of the running lab, or an error when there is none.
pub async fn status(opts: &LabOptions) -> Result<String, LabError> {
    let state = LabState::load(&opts.state_dir)?.ok_or_else(|| {
        LabError::State(format!(
            "no lab state in {}: start one with `margayctl lab up`",
            opts.state_dir.display()
        ))
    })?;
    let mut out = String::new();
    let up = |pid: Option<u32>| match pid {
        Some(p) if alive(p) => format!("running (pid {p})"),
        Some(p) => format!("NOT running (pid {p} gone)"),
        None => "not started".into(),
    };
    let _ = writeln!(
        out,
        "etcd   {}  {}",
        state.etcd_endpoint,
        up(state.etcd_pid)
    );
    if let Some(k) = &state.kube {
        let _ =
            writeln!(out, "kube   {}  {}", k.server, up(Some(k.apiserver_pid)));
    }
    let _ = writeln!(
        out,
        "ToR    BIRD AS {}  {}",
        crate::topology::TOR_AS,
        up(state.tor_pid)
    );
    let _ = writeln!(out, "mode   {} / {}", state.mode, state.family);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<8} {:<16} {:<22} {:<18} {:<12} AGENT",
        "NODE", "PEER", "TYPE", "STATE", "PREFIXES"
    );
    for n in &state.nodes {
        let agent = up(Some(n.agent_pid));
        match crate::node::query_peers(&n.run_dir.join("bgpd.ctl")).await {
            Ok(peers) if !peers.is_empty() => {
                for p in peers {
                    let _ = writeln!(
                        out,
                        "{:<8} {:<16} {:<22} {:<18} {:<12} {}",
                        n.name,
                        p.address,
                        p.peer_type.describe(),
                        p.state,
                        format!(
                            "{}/{}",
                            p.prefixes_accepted, p.prefixes_advertised
                        ),
                        agent
                    );
                }
            }
            Ok(_) => {
                let _ = writeln!(out, "{:<8} (no peers)  {agent}", n.name);
            }
            Err(e) => {
                let _ = writeln!(
                    out,
                    "{:<8} bgpd not answering: {e}  {agent}",
                    n.name
                );
            }
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{:<16} {:<8} IPS", "POD", "NODE");
    for p in &state.pods {
        let _ =
            writeln!(out, "{:<16} {:<8} {}", p.name, p.node, p.ips.join(", "));
    }
    Ok(out)
}
