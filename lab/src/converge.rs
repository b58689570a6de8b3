//! Convergence as observed from outside: every node's FIB routes every
//! other node's blocks via that node on the fabric link and its own pods
//! to their interfaces, and the ToR has learned every block. (felix-lite,
//! not the CNI plugin, installs the route to a new pod, at its next scan
//! of the endpoint directory: until then the pod is unreachable from
//! outside its node.) Probing pods before that measures how fast routes
//! propagate, not whether the fabric works; probing after it makes a
//! failed probe mean something.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::LabError;
use crate::probe;
use crate::state::LabState;
use crate::sys::run;
use crate::topology::TOR_NS;

/// A route the converged fabric has: the FIB of `at` (a node, or the ToR)
/// holds `cidr`, a block of node `owner`; a node's route goes via `via`
/// (the owner's address of the block's family) on `eth0`, the ToR's
/// route merely exists. For a node's own pod (`pod`), `cidr` is the pod's
/// address (as `ip -j route` prints host routes) and the route goes to a
/// pod interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WantedRoute {
    pub at: String,
    pub netns: String,
    pub cidr: String,
    pub owner: String,
    pub via: Option<String>,
    pub pod: Option<String>,
}

/// What a FIB holds for a wanted route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RouteCheck {
    Present,
    Missing,
    /// A route to the block with other next hops than wanted.
    Wrong(Vec<(String, String)>),
}

/// Every route of the converged fabric, for the blocks per node in
/// `blocks`: nodes in lab order, then the ToR.
pub(crate) fn wanted_routes(
    state: &LabState,
    blocks: &BTreeMap<String, Vec<String>>,
) -> Vec<WantedRoute> {
    let mut wanted = Vec::new();
    for n in &state.nodes {
        for (owner, cidrs) in blocks {
            if owner == &n.name {
                continue;
            }
            let owner_node = state.nodes.iter().find(|o| &o.name == owner);
            for cidr in cidrs {
                let via = owner_node
                    .and_then(|o| {
                        if cidr.contains(':') {
                            o.address_v6.clone()
                        } else {
                            Some(o.address.clone())
                        }
                    })
                    .unwrap_or_default();
                wanted.push(WantedRoute {
                    at: n.name.clone(),
                    netns: n.netns.clone(),
                    cidr: cidr.clone(),
                    owner: owner.clone(),
                    via: Some(via),
                    pod: None,
                });
            }
        }
        for p in state.pods.iter().filter(|p| p.node == n.name) {
            for ip in &p.ips {
                wanted.push(WantedRoute {
                    at: n.name.clone(),
                    netns: n.netns.clone(),
                    cidr: ip.clone(),
                    owner: n.name.clone(),
                    via: None,
                    pod: Some(p.name.clone()),
                });
            }
        }
    }
    for (owner, cidrs) in blocks {
        for cidr in cidrs {
            wanted.push(WantedRoute {
                at: "ToR".into(),
                netns: TOR_NS.into(),
                cidr: cidr.clone(),
                owner: owner.clone(),
                via: None,
                pod: None,
            });
        }
    }
    wanted
}

/// Checks `w` against its namespace's `ip -j route` dump of the block's
/// family.
pub(crate) fn check(dump: &str, w: &WantedRoute) -> RouteCheck {
    match (probe::route_via(dump, &w.cidr), &w.via) {
        (None, _) => RouteCheck::Missing,
        // To a pod interface: not the fabric link, not a blackhole.
        (Some(hops), None) if w.pod.is_some() => {
            if hops.iter().any(|(_, dev)| !dev.is_empty() && dev != "eth0") {
                RouteCheck::Present
            } else {
                RouteCheck::Wrong(hops)
            }
        }
        (Some(_), None) => RouteCheck::Present,
        (Some(hops), Some(via)) => {
            if hops.iter().any(|(gw, dev)| gw == via && dev == "eth0") {
                RouteCheck::Present
            } else {
                RouteCheck::Wrong(hops)
            }
        }
    }
}

/// Route dumps per (namespace, IPv6?) for every namespace in `wanted`.
/// `ip -n` only enters the network namespace: far cheaper than
/// `ip netns exec` when polling fifty namespaces.
fn dumps(
    wanted: &[WantedRoute],
) -> Result<BTreeMap<(String, bool), String>, LabError> {
    let keys: BTreeSet<(String, bool)> = wanted
        .iter()
        .map(|w| (w.netns.clone(), w.cidr.contains(':')))
        .collect();
    let mut out = BTreeMap::new();
    for (ns, v6) in keys {
        let fam = if v6 { "-6" } else { "-4" };
        let dump = run("ip", &["-n", &ns, fam, "-j", "route", "show"])?;
        out.insert((ns, v6), dump);
    }
    Ok(out)
}

/// What the FIBs hold for every wanted route, in the order of `wanted`.
pub(crate) fn checks(
    wanted: &[WantedRoute],
) -> Result<Vec<(WantedRoute, RouteCheck)>, LabError> {
    let dumps = dumps(wanted)?;
    Ok(wanted
        .iter()
        .map(|w| {
            let dump = dumps
                .get(&(w.netns.clone(), w.cidr.contains(':')))
                .map_or("", String::as_str);
            (w.clone(), check(dump, w))
        })
        .collect())
}

/// Every wanted route that the FIBs do not hold (yet), with what they hold.
fn outstanding(
    wanted: &[WantedRoute],
) -> Result<Vec<(WantedRoute, RouteCheck)>, LabError> {
    let mut all = checks(wanted)?;
    all.retain(|(_, c)| *c != RouteCheck::Present);
    Ok(all)
}

/// The outcome of waiting: how long it took, and what was still missing
/// or wrong when the timeout struck (empty when converged).
pub(crate) struct Convergence {
    pub waited: Duration,
    pub outstanding: Vec<(WantedRoute, RouteCheck)>,
}

/// How long the lab waits for convergence: propagation is quick, but a big
/// lab on a small machine brings its sessions and FIBs up slowly.
pub(crate) fn timeout_for(nodes: usize) -> Duration {
    Duration::from_secs(60 + nodes as u64)
}

/// Polls the FIBs until every wanted route is in place or `timeout`
/// passes, printing progress now and then.
pub(crate) async fn wait(
    wanted: &[WantedRoute],
    timeout: Duration,
) -> Result<Convergence, LabError> {
    let started = Instant::now();
    let mut last_report = started;
    loop {
        let left = outstanding(wanted)?;
        let waited = started.elapsed();
        if left.is_empty() || waited > timeout {
            return Ok(Convergence {
                waited,
                outstanding: left,
            });
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            last_report = Instant::now();
            println!(
                "    routes in place: {}/{} after {:.0}s",
                wanted.len() - left.len(),
                wanted.len(),
                waited.as_secs_f64()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One line per outstanding route, at most `limit` of them.
pub(crate) fn describe(
    outstanding: &[(WantedRoute, RouteCheck)],
    limit: usize,
) -> Vec<String> {
    let mut lines: Vec<String> = outstanding
        .iter()
        .take(limit)
        .map(|(w, c)| {
            let want = match (&w.via, &w.pod) {
                (Some(v), _) => format!(" via {v} dev eth0"),
                (None, Some(_)) => " to the pod's interface".to_string(),
                (None, None) => String::new(),
            };
            let what = match &w.pod {
                Some(pod) => format!("its pod {pod}"),
                None => format!("block of {}", w.owner),
            };
            match c {
                RouteCheck::Missing => format!(
                    "{} has no route to {} ({what}){want}",
                    w.at, w.cidr
                ),
                RouteCheck::Wrong(hops) => format!(
                    "{} routes {} ({what}) via {hops:?}, want{want}",
                    w.at, w.cidr
                ),
                RouteCheck::Present => String::new(),
            }
        })
        .collect();
    if outstanding.len() > limit {
        lines.push(format!("... and {} more", outstanding.len() - limit));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{NodeState, PodState};

    fn node(name: &str, addr: &str) -> NodeState {
        NodeState {
            name: name.into(),
            netns: format!("mglab-{name}"),
            address: addr.into(),
            address_v6: None,
            agent_pid: 1,
            cni_server_pid: None,
            run_dir: "/x".into(),
            route_reflector: false,
        }
    }

    #[test]
    fn every_node_wants_every_other_block_and_the_tor_all() {
        let state = LabState {
            nodes: vec![
                node("node1", "10.77.0.11"),
                node("node2", "10.77.0.12"),
                node("node3", "10.77.0.13"),
            ],
            ..Default::default()
        };
        let blocks: BTreeMap<String, Vec<String>> = [
            ("node1".to_string(), vec!["10.244.0.0/26".to_string()]),
            ("node2".to_string(), vec!["10.244.0.64/26".to_string()]),
        ]
        .into();
        let w = wanted_routes(&state, &blocks);
        // node1: node2's block; node2: node1's; node3: both; ToR: both.
        assert_eq!(w.len(), 1 + 1 + 2 + 2);
        assert!(w.iter().all(|r| r.at != r.owner));
        let with_pod = LabState {
            pods: vec![PodState {
                name: "node2-pod1".into(),
                node: "node2".into(),
                netns: "mglab-node2-pod1".into(),
                container_id: "c".into(),
                ips: vec!["10.244.0.65".into(), "fd44::41".into()],
            }],
            ..state.clone()
        };
        let local: Vec<WantedRoute> = wanted_routes(&with_pod, &blocks)
            .into_iter()
            .filter(|r| r.pod.is_some())
            .collect();
        assert_eq!(local.len(), 2, "{local:?}");
        assert!(local.iter().all(|r| r.at == "node2" && r.via.is_none()));
        assert_eq!(local[1].cidr, "fd44::41");
        let n3 = w
            .iter()
            .find(|r| r.at == "node3" && r.owner == "node2")
            .unwrap();
        assert_eq!(n3.via.as_deref(), Some("10.77.0.12"));
        assert!(w.iter().filter(|r| r.at == "ToR").all(|r| r.via.is_none()));
    }

    #[test]
    fn a_route_counts_only_via_the_owner_on_the_fabric_link() {
        let w = WantedRoute {
            at: "node1".into(),
            netns: "mglab-node1".into(),
            cidr: "10.244.1.0/26".into(),
            owner: "node2".into(),
            via: Some("10.77.0.12".into()),
            pod: None,
        };
        let good =
            r#"[{"dst":"10.244.1.0/26","gateway":"10.77.0.12","dev":"eth0"}]"#;
        let wrong =
            r#"[{"dst":"10.244.1.0/26","gateway":"10.77.0.13","dev":"eth0"}]"#;
        assert_eq!(check(good, &w), RouteCheck::Present);
        assert_eq!(
            check(wrong, &w),
            RouteCheck::Wrong(vec![("10.77.0.13".into(), "eth0".into())])
        );
        assert_eq!(check("[]", &w), RouteCheck::Missing);
        let lines = describe(&[(w.clone(), RouteCheck::Missing)], 5);
        assert_eq!(
            lines,
            vec![
                "node1 has no route to 10.244.1.0/26 (block of node2) via 10.77.0.12 dev eth0"
            ]
        );
        let pod = WantedRoute {
            cidr: "10.244.0.65".into(),
            via: None,
            pod: Some("node1-pod1".into()),
            ..w.clone()
        };
        let local = r#"[{"dst":"10.244.0.65","dev":"mg1234","scope":"link"}]"#;
        let hole = r#"[{"type":"blackhole","dst":"10.244.0.65"}]"#;
        assert_eq!(check(local, &pod), RouteCheck::Present);
        assert!(matches!(check(hole, &pod), RouteCheck::Wrong(_)));
        assert_eq!(
            describe(&[(pod, RouteCheck::Missing)], 5),
            vec![
                "node1 has no route to 10.244.0.65 (its pod node1-pod1) to the pod's interface"
            ]
        );
        let many = vec![(w, RouteCheck::Missing); 7];
        assert_eq!(describe(&many, 5).last().unwrap(), "... and 2 more");
    }
}
