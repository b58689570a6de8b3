//! The proofs of `lab up`, as a printable report: convergence of the FIBs,
//! reachability between every pair of pods, node FIBs, the ToR's FIB and
//! the sessions.
//!
//! Order matters: the pods are probed only once every FIB holds every
//! route (or the wait timed out, which the report says), so a failed probe
//! is a broken data path, not a route still on its way.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use margay_datastore::Datastore;

use crate::LabError;
use crate::converge::{self, RouteCheck};
use crate::node::query_peers;
use crate::probe;
use crate::reach::{self, Check, Results, Target};
use crate::state::{LabState, PodState};
use crate::sys::{ns_run, run};
use crate::topology::TOR_NS;
use crate::up::LabSummary;

/// Failed pairs whose routing is shown in detail.
const DIAGNOSED: usize = 20;

/// Confirmed blocks per node, from the datastore.
async fn confirmed_blocks(
    ds: &Datastore,
) -> Result<BTreeMap<String, Vec<String>>, LabError> {
    let affinities = ds.list::<margay_crds::BlockAffinity>().await?;
    let mut blocks: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for a in affinities.items {
        if a.spec.state == margay_crds::AffinityState::Confirmed
            && !a.spec.deleted
        {
            blocks.entry(a.spec.node).or_default().push(a.spec.cidr);
        }
    }
    Ok(blocks)
}

/// Every proof, as a report.
pub(crate) async fn prove(
    ds: &Datastore,
    state: &LabState,
) -> Result<LabSummary, LabError> {
    let mut report = String::new();
    let mut ok = true;

    let blocks = confirmed_blocks(ds).await?;
    let wanted = converge::wanted_routes(state, &blocks);
    let timeout = converge::timeout_for(state.nodes.len());
    println!(
        "    waiting until {} routes are in the node and ToR FIBs (up to {}s)",
        wanted.len(),
        timeout.as_secs()
    );
    let conv = converge::wait(&wanted, timeout).await?;
    let _ = writeln!(report, "\nCONVERGENCE");
    if conv.outstanding.is_empty() {
        let _ = writeln!(
            report,
            "  all {} routes (every node to every other node's blocks and to its own pods, the ToR to every block) in place after {:.1}s",
            wanted.len(),
            conv.waited.as_secs_f64()
        );
    } else {
        ok = false;
        let _ = writeln!(
            report,
            "  NOT CONVERGED: after {:.0}s, {} of {} routes are missing or wrong:",
            conv.waited.as_secs_f64(),
            conv.outstanding.len(),
            wanted.len()
        );
        for line in converge::describe(&conv.outstanding, 30) {
            let _ = writeln!(report, "    {line}");
        }
    }

    ok &= reachability(state, &mut report).await?;
    ok &= node_fibs(state, &wanted, &mut report)?;

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

/// Probes every pod address pair, writes the matrix and the failures.
async fn reachability(
    state: &LabState,
    report: &mut String,
) -> Result<bool, LabError> {
    let pods = state.pods.clone();
    let targets = reach::targets(&pods);
    println!(
        "    probing {} pod address pairs over ICMP and TCP",
        targets.len()
    );
    let started = std::time::Instant::now();
    let results = {
        let (pods, targets) = (pods.clone(), targets.clone());
        tokio::task::spawn_blocking(move || reach::probe_all(&pods, &targets))
            .await
            .map_err(|e| LabError::State(format!("probe pool: {e}")))?
    };
    let passed = |t: Target, c: Check| {
        results.get(&(t, c)).is_some_and(|o| o.result.is_ok())
    };
    let families = pods.iter().map(|p| p.ips.len()).max().unwrap_or(1);
    let width = 14.max(7 * families);
    let _ = writeln!(
        report,
        "\nREACHABILITY (ICMP/TCP per pod address, from row to column)"
    );
    let _ = write!(report, "{:<width$}", "");
    for p in &pods {
        let _ = write!(report, "{:<width$}", p.name);
    }
    let _ = writeln!(report);
    for (a, pa) in pods.iter().enumerate() {
        let _ = write!(report, "{:<width$}", pa.name);
        for (b, pb) in pods.iter().enumerate() {
            let cells: Vec<String> = (0..pb.ips.len())
                .map(|k| Target { a, b, k })
                .filter(|t| results.contains_key(&(*t, Check::Icmp)))
                .map(|t| {
                    let mark = |c| if passed(t, c) { "ok" } else { "FAIL" };
                    format!("{}/{}", mark(Check::Icmp), mark(Check::Tcp))
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
    let failed: Vec<Target> = targets
        .iter()
        .copied()
        .filter(|&t| !passed(t, Check::Icmp) || !passed(t, Check::Tcp))
        .collect();
    let retried = reach::passed_on_retry(&results);
    let took = started.elapsed().as_secs_f64();
    let first_failures = reach::first_failures(&results);
    let why_retried = |report: &mut String| {
        for (check, error, n) in first_failures.iter().take(8) {
            let _ = writeln!(
                report,
                "  first attempt failed {n}x: {} {error}",
                check.name()
            );
        }
    };
    if failed.is_empty() {
        let _ = writeln!(
            report,
            "all {} pod address pairs reach each other over ICMP and TCP ({retried} of {} checks passed only on a retry; probed in {took:.0}s)",
            targets.len(),
            results.len()
        );
        why_retried(report);
        return Ok(true);
    }
    let _ = writeln!(
        report,
        "{} of {} pod address pairs FAILED after {} attempts per check ({retried} other checks passed only on a retry):",
        failed.len(),
        targets.len(),
        reach::ATTEMPTS
    );
    why_retried(report);
    for (i, &t) in failed.iter().enumerate() {
        let _ =
            writeln!(report, "  FAIL {}", describe_failure(&pods, &results, t));
        if i < DIAGNOSED {
            for line in routing_of(state, &pods[t.a], &pods[t.b], t.k) {
                let _ = writeln!(report, "       {line}");
            }
        }
    }
    if failed.len() > DIAGNOSED {
        let _ = writeln!(
            report,
            "  (routing shown for the first {DIAGNOSED} failures only)"
        );
    }
    Ok(false)
}

/// "a -> b (ip): ICMP: error; TCP ok".
fn describe_failure(pods: &[PodState], results: &Results, t: Target) -> String {
    let checks: Vec<String> = [Check::Icmp, Check::Tcp]
        .into_iter()
        .map(|c| match results.get(&(t, c)) {
            Some(o) => match &o.result {
                Ok(()) => format!("{} ok", c.name()),
                Err(e) => format!("{} FAILED {}x: {e}", c.name(), o.attempts),
            },
            None => format!("{} not run", c.name()),
        })
        .collect();
    format!(
        "{} -> {} ({}): {}",
        pods[t.a].name,
        pods[t.b].name,
        pods[t.b].ips[t.k],
        checks.join("; ")
    )
}

/// How the source pod's node routes the destination, and how the
/// destination pod's node routes the reply: where a broken path breaks.
fn routing_of(
    state: &LabState,
    src: &PodState,
    dst: &PodState,
    k: usize,
) -> Vec<String> {
    let node_ns = |pod: &PodState| {
        state
            .nodes
            .iter()
            .find(|n| n.name == pod.node)
            .map(|n| n.netns.clone())
    };
    let dst_ip = &dst.ips[k];
    // The reply goes to the source pod's address of the same family.
    let src_ip = src
        .ips
        .iter()
        .find(|ip| ip.contains(':') == dst_ip.contains(':'))
        .cloned()
        .unwrap_or_default();
    let mut lines = Vec::new();
    for (pod, ip) in [(src, dst_ip), (dst, &src_ip)] {
        let Some(ns) = node_ns(pod) else { continue };
        let got = run("ip", &["-n", &ns, "route", "get", ip])
            .map(|s| s.lines().next().unwrap_or("").trim().to_string())
            .unwrap_or_else(|e| e.to_string());
        lines.push(format!("{} routes {ip}: {got}", pod.node));
    }
    lines
}

/// The node FIB table and the ToR's, from a fresh look; and no tunnels.
fn node_fibs(
    state: &LabState,
    wanted: &[converge::WantedRoute],
    report: &mut String,
) -> Result<bool, LabError> {
    let mut ok = true;
    let mut tunnels_seen = false;
    let checks = converge::checks(wanted)?;
    let _ = writeln!(report, "\nNODE FIBS (remote pod blocks, own pods)");
    for n in &state.nodes {
        let links = ns_run(&n.netns, &["ip", "-d", "-j", "link", "show"])?;
        let tunnels = probe::tunnel_devices(&links);
        if !tunnels.is_empty() {
            ok = false;
            tunnels_seen = true;
            let _ = writeln!(
                report,
                "  {}: TUNNEL DEVICES {}",
                n.name,
                tunnels.join(", ")
            );
        }
        for (w, c) in checks.iter().filter(|(w, _)| w.at == n.name) {
            let want = match (&w.via, &w.pod) {
                (Some(via), _) => format!("via {via} dev eth0"),
                (None, pod) => {
                    format!("to its pod {}", pod.as_deref().unwrap_or("?"))
                }
            };
            let cidr = &w.cidr;
            let line = match c {
                RouteCheck::Present => want,
                RouteCheck::Wrong(hops) => {
                    ok = false;
                    format!("WRONG: {hops:?} (want {want})")
                }
                RouteCheck::Missing => {
                    ok = false;
                    "MISSING".to_string()
                }
            };
            let _ = writeln!(report, "  {:<8} {cidr:<18} {line}", n.name);
        }
    }
    let _ = writeln!(
        report,
        "encapsulation: {}",
        if tunnels_seen {
            "TUNNEL DEVICES, see above"
        } else {
            "none (no tunnel devices on any node)"
        }
    );
    let _ = writeln!(report, "\nTOR (BIRD) FIB");
    for (w, c) in checks.iter().filter(|(w, _)| w.netns == TOR_NS) {
        let learned = *c == RouteCheck::Present;
        ok &= learned;
        let _ = writeln!(
            report,
            "  {:<18} from {:<8} {}",
            w.cidr,
            w.owner,
            if learned { "learned" } else { "MISSING" }
        );
    }
    Ok(ok)
}
