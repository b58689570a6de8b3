//! The proofs of `lab up`, as a printable report: reachability between
//! every pair of pods, node FIBs, the ToR's FIB and the sessions.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use margay_datastore::Datastore;

use crate::LabError;
use crate::probe;
use crate::state::LabState;
use crate::sys::ns_run;
use crate::topology::TOR_NS;
use crate::up::{LabSummary, query_peers};

/// ICMP and TCP outcomes of one pod pair.
type PairResult = (Result<(), String>, Result<(), String>);

/// From pod `a` to address `k` of pod `b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Target {
    a: usize,
    b: usize,
    k: usize,
}

/// A route dump per family: `ip -4` and `ip -6` list separately.
fn routes_of(netns: &str) -> Result<[String; 2], LabError> {
    Ok([
        ns_run(netns, &["ip", "-4", "-j", "route", "show"])?,
        ns_run(netns, &["ip", "-6", "-j", "route", "show"])?,
    ])
}

/// The dump of `cidr`'s family.
fn dump_for<'a>(routes: &'a [String; 2], cidr: &str) -> &'a str {
    &routes[usize::from(cidr.contains(':'))]
}

/// Every proof, as a report. Reachability is retried for a while first,
/// because routes to the newest blocks may still be propagating.
pub(crate) async fn prove(
    ds: &Datastore,
    state: &LabState,
) -> Result<LabSummary, LabError> {
    let mut report = String::new();
    let mut ok = true;

    // Blocks per node, from the datastore (confirmed affinities only).
    let affinities = ds.list::<margay_crds::BlockAffinity>().await?;
    let mut blocks: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for a in affinities.items {
        if a.spec.state == margay_crds::AffinityState::Confirmed
            && !a.spec.deleted
        {
            blocks
                .entry(a.spec.node.clone())
                .or_default()
                .push(a.spec.cidr.clone());
        }
    }

    // Reachability to every address of every pod (both families in a
    // dual-stack lab), with a convergence window.
    let pods = &state.pods;
    let targets: Vec<Target> = (0..pods.len())
        .flat_map(|a| {
            (0..pods.len()).filter(move |&b| b != a).flat_map(move |b| {
                (0..pods[b].ips.len()).map(move |k| Target { a, b, k })
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut results: BTreeMap<Target, PairResult>;
    let converged_after;
    let started = Instant::now();
    loop {
        results = BTreeMap::new();
        for (port, &t) in (20000u16..).zip(&targets) {
            let dst: IpAddr =
                pods[t.b].ips[t.k].parse().expect("pod IP from CNI result");
            let icmp = probe::ping(&pods[t.a].netns, dst);
            let tcp = probe::tcp(&pods[t.a].netns, &pods[t.b].netns, dst, port);
            results.insert(t, (icmp, tcp));
        }
        let all = results.values().all(|(i, t)| i.is_ok() && t.is_ok());
        if all || Instant::now() > deadline {
            converged_after = started.elapsed();
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let families = pods.iter().map(|p| p.ips.len()).max().unwrap_or(1);
    let width = 14.max(7 * families);
    let _ = writeln!(
        report,
        "\nREACHABILITY (ICMP/TCP per pod address, from row to column)"
    );
    let _ = write!(report, "{:<width$}", "");
    for p in pods {
        let _ = write!(report, "{:<width$}", p.name);
    }
    let _ = writeln!(report);
    for (a, pa) in pods.iter().enumerate() {
        let _ = write!(report, "{:<width$}", pa.name);
        for (b, pb) in pods.iter().enumerate() {
            let cells: Vec<String> = (0..pb.ips.len())
                .filter_map(|k| results.get(&Target { a, b, k }))
                .map(|(i, t)| {
                    format!(
                        "{}/{}",
                        if i.is_ok() { "ok" } else { "FAIL" },
                        if t.is_ok() { "ok" } else { "FAIL" }
                    )
                })
                .collect();
            let cell = if cells.is_empty() {
                "-".to_string()
            } else {
                cells.join(" ")
            };
            let _ = write!(report, "{cell:<width$}");
        }
        let _ = writeln!(report);
    }
    let failures: Vec<String> = results
        .iter()
        .filter_map(|(t, (i, tcp))| {
            let errs: Vec<&String> = [i, tcp]
                .into_iter()
                .filter_map(|r| r.as_ref().err())
                .collect();
            (!errs.is_empty()).then(|| {
                format!(
                    "{} -> {} ({}): {}",
                    pods[t.a].name,
                    pods[t.b].name,
                    pods[t.b].ips[t.k],
                    errs.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            })
        })
        .collect();
    if failures.is_empty() {
        let _ = writeln!(
            report,
            "all {} pod address pairs reach each other over ICMP and TCP (converged in {:.1}s)",
            targets.len(),
            converged_after.as_secs_f64()
        );
    } else {
        ok = false;
        for f in &failures {
            let _ = writeln!(report, "  FAIL {f}");
        }
    }

    // Node FIBs: every other node's blocks via that node's address, and no
    // tunnel devices anywhere.
    let _ = writeln!(report, "\nNODE FIBS (remote pod blocks)");
    for n in &state.nodes {
        let routes = routes_of(&n.netns)?;
        let links = ns_run(&n.netns, &["ip", "-d", "-j", "link", "show"])?;
        let tunnels = probe::tunnel_devices(&links);
        if !tunnels.is_empty() {
            ok = false;
            let _ = writeln!(
                report,
                "  {}: TUNNEL DEVICES {}",
                n.name,
                tunnels.join(", ")
            );
        }
        for (owner, cidrs) in &blocks {
            if owner == &n.name {
                continue;
            }
            let owner = state.nodes.iter().find(|o| &o.name == owner);
            for cidr in cidrs {
                // A block's next hop is its owner's address of its family.
                let owner_addr = owner
                    .and_then(|o| {
                        if cidr.contains(':') {
                            o.address_v6.clone()
                        } else {
                            Some(o.address.clone())
                        }
                    })
                    .unwrap_or_default();
                match probe::route_via(dump_for(&routes, cidr), cidr) {
                    Some(hops)
                        if hops.iter().any(|(gw, dev)| {
                            gw == &owner_addr && dev == "eth0"
                        }) =>
                    {
                        let _ = writeln!(
                            report,
                            "  {:<8} {cidr:<18} via {owner_addr} dev eth0",
                            n.name
                        );
                    }
                    Some(hops) => {
                        ok = false;
                        let _ = writeln!(
                            report,
                            "  {:<8} {cidr:<18} WRONG: {hops:?} (want via {owner_addr})",
                            n.name
                        );
                    }
                    None => {
                        ok = false;
                        let _ = writeln!(
                            report,
                            "  {:<8} {cidr:<18} MISSING",
                            n.name
                        );
                    }
                }
            }
        }
    }
    let _ = writeln!(
        report,
        "encapsulation: {}",
        if ok {
            "none (no tunnel devices on any node)"
        } else {
            "see above"
        }
    );

    // The ToR learned every block.
    let tor_routes = routes_of(TOR_NS)?;
    let _ = writeln!(report, "\nTOR (BIRD) FIB");
    for (owner, cidrs) in &blocks {
        for cidr in cidrs {
            let learned =
                probe::route_via(dump_for(&tor_routes, cidr), cidr).is_some();
            ok &= learned;
            let _ = writeln!(
                report,
                "  {cidr:<18} from {owner:<8} {}",
                if learned { "learned" } else { "MISSING" }
            );
        }
    }

    // Sessions.
    let _ = writeln!(report, "\nSESSIONS");
    for n in &state.nodes {
        for p in query_peers(&n.run_dir.join("bgpd.ctl"))
            .await
            .unwrap_or_default()
        {
            ok &= p.state == "Established";
            let _ = writeln!(
                report,
                "  {:<8} {:<16} {:<24} {}",
                n.name,
                p.address.to_string(),
                p.peer_type.describe(),
                p.state
            );
        }
    }
    let _ = writeln!(
        report,
        "\n{}",
        if ok {
            "LAB OK: pods reach each other across nodes with plain routing. `margayctl lab status`, `margayctl lab down`."
        } else {
            "LAB NOT OK: see the failures above; logs are in the state directory's logs/."
        }
    );
    Ok(LabSummary { ok, report })
}
