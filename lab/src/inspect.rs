//! Looking into a running lab from outside: what a node's bgpd originates,
//! a node's FIB entry for a prefix, the blocks a node holds, a ping from a
//! pod, a node agent's `/metrics`. The e2e tests and benchmarks build their
//! checks from these.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use ipnetwork::IpNetwork;
use margay_datastore::Datastore;

use crate::state::{LabState, NodeState, PodState};
use crate::sys::ns_run;
use crate::topology::HEALTH_PORT;
use crate::{LabError, LabOptions, probe};

fn state(opts: &LabOptions) -> Result<LabState, LabError> {
    LabState::load(&opts.state_dir)?
        .ok_or_else(|| LabError::State("no lab is running".into()))
}

fn node(state: &LabState, name: &str) -> Result<NodeState, LabError> {
    state
        .nodes
        .iter()
        .find(|n| n.name == name)
        .cloned()
        .ok_or_else(|| LabError::State(format!("no node {name} in the lab")))
}

fn pod(state: &LabState, name: &str) -> Result<PodState, LabError> {
    state
        .pods
        .iter()
        .find(|p| p.name == name)
        .cloned()
        .ok_or_else(|| LabError::State(format!("no pod {name} in the lab")))
}

/// The node's entry in the saved lab state (addresses, netns, run dir).
pub fn lab_node(opts: &LabOptions, name: &str) -> Result<NodeState, LabError> {
    node(&state(opts)?, name)
}

/// The prefixes `node`'s bgpd originates itself (its best path is local):
/// its blocks and the /32s and /128s it borrowed.
pub async fn originated(
    opts: &LabOptions,
    node_name: &str,
) -> Result<Vec<IpNetwork>, LabError> {
    let socket = node(&state(opts)?, node_name)?.run_dir.join("bgpd.ctl");
    let rib = tokio::task::spawn_blocking(move || {
        margay_ctlproto::client::rib(&socket)
    })
    .await
    .map_err(|e| LabError::State(e.to_string()))?
    .map_err(|e| LabError::State(format!("bgpd of {node_name}: {e}")))?;
    Ok(rib
        .into_iter()
        .filter(|r| r.paths.iter().any(|p| p.best && p.peer.is_none()))
        .map(|r| r.prefix)
        .collect())
}

/// The gateways and devices of `node`'s kernel route to exactly `cidr`
/// (several when multipath), or None when the FIB has no such route.
pub fn fib_route(
    opts: &LabOptions,
    node_name: &str,
    cidr: &str,
) -> Result<Option<Vec<(String, String)>>, LabError> {
    let n = node(&state(opts)?, node_name)?;
    let fam = if cidr.contains(':') { "-6" } else { "-4" };
    let routes = ns_run(&n.netns, &["ip", fam, "-j", "route", "show"])?;
    Ok(probe::route_via(&routes, &normalize(cidr)))
}

/// `ip -j route` prints host routes without their length.
fn normalize(cidr: &str) -> String {
    match cidr.parse::<IpNetwork>() {
        Ok(n) if n.prefix() == if n.is_ipv4() { 32 } else { 128 } => {
            n.ip().to_string()
        }
        _ => cidr.to_string(),
    }
}

/// The confirmed blocks affine to `node`, from the datastore.
pub async fn node_blocks(
    opts: &LabOptions,
    node_name: &str,
) -> Result<Vec<String>, LabError> {
    let ds = Datastore::connect(&state(opts)?.admin_datastore()).await?;
    let mut out: Vec<String> = ds
        .list::<margay_crds::BlockAffinity>()
        .await?
        .items
        .into_iter()
        .filter(|a| {
            a.spec.node == node_name
                && a.spec.state == margay_crds::AffinityState::Confirmed
                && !a.spec.deleted
        })
        .map(|a| a.spec.cidr)
        .collect();
    out.sort();
    Ok(out)
}

/// One ICMP echo from pod `from` to `dst`.
pub fn ping_from(
    opts: &LabOptions,
    from: &str,
    dst: IpAddr,
) -> Result<(), LabError> {
    let p = pod(&state(opts)?, from)?;
    probe::ping(&p.netns, dst).map_err(|detail| LabError::Command {
        command: format!("ping {dst} from {from}"),
        detail,
    })
}

/// `GET /metrics` from the node agent's health address, from inside the
/// node's namespace (where a Prometheus on the host network would scrape).
pub fn node_metrics(
    opts: &LabOptions,
    node_name: &str,
) -> Result<String, LabError> {
    let n = node(&state(opts)?, node_name)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], HEALTH_PORT));
    let fail = |e: std::io::Error| LabError::Command {
        command: format!("GET http://{addr}/metrics in {}", n.netns),
        detail: e.to_string(),
    };
    let raw = probe::in_netns(&n.netns, move || -> std::io::Result<String> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n")?;
        let mut raw = String::new();
        s.read_to_string(&mut raw)?;
        Ok(raw)
    })
    .and_then(|r| r)
    .map_err(fail)?;
    match raw.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => {
            Ok(body.to_string())
        }
        _ => Err(LabError::Command {
            command: format!("GET http://{addr}/metrics in {}", n.netns),
            detail: format!("unexpected answer: {raw:.200}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_routes_lose_their_length_like_iproute_prints_them() {
        assert_eq!(normalize("10.0.0.1/32"), "10.0.0.1");
        assert_eq!(normalize("fd44::5/128"), "fd44::5");
        assert_eq!(normalize("10.0.0.0/26"), "10.0.0.0/26");
        assert_eq!(normalize("fd44::/122"), "fd44::/122");
    }
}
