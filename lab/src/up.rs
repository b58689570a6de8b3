//! `lab up`: build the fabric step by step, saving state after each step so
//! that `down` can always undo a partial lab, then prove it works.

use std::io::Write as _;

use crate::state::LabState;
use crate::sys::{missing_programs, mkdir, run};
use crate::topology::{FABRIC_NS, HOST_LINK, Topology};
use crate::{
    LabDatastore, LabError, LabOptions, down, etcd, kube, neigh, node, pods,
    segment, tor,
};

/// The binaries the lab runs from `bin_dir`.
const BINARIES: [&str; 6] = [
    "margay-node",
    "bgpd",
    "felix-lite",
    "margay",
    "margay-ipam",
    "margay-controllers",
];

/// The outcome of the proofs.
#[derive(Debug, Clone)]
pub struct LabSummary {
    pub ok: bool,
    pub report: String,
}

fn step(msg: &str) {
    println!("==> {msg}");
    let _ = std::io::stdout().flush();
}

fn done(msg: &str) {
    println!("    ok: {msg}");
}

/// Builds the lab and proves it. Returns the report; `ok` is false when a
/// proof failed (the lab is left running for inspection).
pub async fn up(opts: &LabOptions) -> Result<LabSummary, LabError> {
    preflight(opts)?;
    let previous = LabState::load(&opts.state_dir).ok().flatten().is_some()
        || run("ip", &["netns", "list"])?.contains("mglab-");
    if previous {
        step("removing a previous lab");
        down(opts)?;
    }
    let topo = topology(opts, opts.pods_per_node)?;
    let dir = &opts.state_dir;
    mkdir(&dir.join("logs"))?;
    let mut state = LabState {
        state_dir: dir.clone(),
        etcd_endpoint: topo.etcd_endpoint(),
        tor_socket: dir.join("tor/bird.ctl"),
        mode: format!("{:?}", opts.mode),
        family: format!("{:?}", opts.family),
        ..Default::default()
    };
    state.save()?;

    let needed = neigh::needed_entries(&topo);
    state.raised_sysctls = neigh::raise(&topo, needed)?;
    state.save()?;
    if !state.raised_sysctls.is_empty() {
        step("raising the host's neighbour table limits");
    }
    for line in neigh::describe(&state.raised_sysctls) {
        done(&format!(
            "{line} (the lab needs ~{needed} neighbour entries; `lab down` restores it)"
        ));
    }

    step("creating the fabric segment");
    segment::create(&topo)?;
    done(&format!("bridge br0 in {FABRIC_NS}, host link {HOST_LINK}"));

    step("starting etcd");
    let etcd_pid = etcd::start_etcd(dir)?;
    state.etcd_pid = Some(etcd_pid);
    state.save()?;
    done(&topo.etcd_endpoint());
    if opts.datastore == LabDatastore::Kubernetes {
        start_kubernetes(opts, &topo, &mut state).await?;
    }
    let ds = etcd::wait_datastore(&state.admin_datastore()).await?;
    etcd::apply_resources(&ds, &topo).await?;
    done("BGPConfiguration, IPPool and BGPPeer resources created");

    step("starting the ToR (BIRD, AS 65000)");
    state.tor_pid = Some(tor::start(&topo, dir)?);
    state.save()?;
    done("eBGP to every node");

    step(&format!("starting {} nodes", topo.nodes.len()));
    for n in &topo.nodes {
        let node = node::start(opts, &topo, n, &state)?;
        state.nodes.push(node);
        state.save()?;
    }
    node::wait_sessions(&state, &topo).await?;
    done("every BGP session Established");

    step(&format!(
        "creating {} pods through the CNI plugin",
        topo.pods.len()
    ));
    for p in &topo.pods {
        let pod = pods::add_pod(opts, &topo, p, &state, &[])?;
        println!("    {} on {}: {}", pod.name, pod.node, pod.ips.join(", "));
        state.pods.push(pod);
        state.save()?;
    }

    step("proving the fabric");
    let summary = crate::prove::prove(&ds, &state).await?;
    println!("{}", summary.report);
    Ok(summary)
}

/// The lab's shape from its options; a reflector count the mode cannot
/// have is refused, naming the option.
pub(crate) fn topology(
    opts: &LabOptions,
    pods_per_node: usize,
) -> Result<Topology, LabError> {
    let rr = opts.mode == crate::PeeringMode::RouteReflector;
    let k = opts.route_reflectors;
    if rr && !(1..opts.nodes).contains(&k) {
        return Err(LabError::Options(format!(
            "route reflectors: {k} of {} nodes; allowed: 1 to {} (at \
             least one node must be a client)",
            opts.nodes,
            opts.nodes.saturating_sub(1)
        )));
    }
    Ok(
        Topology::new(opts.nodes, pods_per_node, opts.mode, opts.family)
            .with_route_reflectors(k),
    )
}

/// Starts kube-apiserver on the lab's etcd, applies deploy/ with kubectl,
/// creates the Kubernetes Nodes and mints the ServiceAccount tokens.
async fn start_kubernetes(
    opts: &LabOptions,
    topo: &Topology,
    state: &mut LabState,
) -> Result<(), LabError> {
    step("starting kube-apiserver (RBAC) on the lab's etcd");
    let k = kube::start_apiserver(&state.state_dir, topo).await?;
    done(&k.server);
    state.kube = Some(k.clone());
    state.save()?;

    step(&format!(
        "applying {0}/crds and {0} with kubectl",
        opts.deploy_dir.display()
    ));
    let warnings = kube::apply_manifests(&k, &opts.deploy_dir)?;
    for w in warnings.lines() {
        println!("    kubectl: {w}");
    }
    kube::create_nodes(&k, topo, &state.state_dir)?;
    kube::identities(&k, &state.state_dir).await?;
    let mut k = k;
    kube::start_controllers(&mut k, &opts.bin_dir, &state.state_dir)?;
    state.kube = Some(k);
    state.save()?;
    done(&format!(
        "{} Kubernetes Nodes (zone, rack labels); agents run as \
         margay-node, the CNI plugin as margay-cni, margay-controllers as \
         its own ServiceAccount (TokenRequest tokens)",
        topo.nodes.len()
    ));
    Ok(())
}

fn preflight(opts: &LabOptions) -> Result<(), LabError> {
    if !is_root() {
        return Err(LabError::NotRoot);
    }
    let missing = missing_programs(&["ip", "etcd", "bird", "birdc", "ping"]);
    if !missing.is_empty() {
        return Err(LabError::MissingPrograms {
            programs: missing.iter().map(|s| s.to_string()).collect(),
            packages: "iproute2 etcd-server bird2 iputils-ping".into(),
        });
    }
    if opts.datastore == LabDatastore::Kubernetes {
        let kube = [
            margay_apiserver::kube_apiserver_path(),
            margay_apiserver::kubectl_path(),
        ];
        let absent: Vec<String> = kube
            .iter()
            .filter(|p| !p.is_file())
            .map(|p| p.display().to_string())
            .collect();
        if !absent.is_empty() {
            return Err(LabError::MissingKube { paths: absent });
        }
    }
    let absent: Vec<String> = BINARIES
        .iter()
        .filter(|b| !opts.bin_dir.join(b).is_file())
        .map(|b| b.to_string())
        .collect();
    if !absent.is_empty() {
        return Err(LabError::MissingBinaries {
            dir: opts.bin_dir.display().to_string(),
            names: absent,
        });
    }
    if opts.nodes == 0 || opts.nodes > 200 {
        return Err(LabError::Resources(format!(
            "--nodes {}: allowed 1 to 200",
            opts.nodes
        )));
    }
    Ok(())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PeeringMode;

    #[test]
    fn reflector_count_must_leave_a_client() {
        let opts = |mode, k| LabOptions {
            nodes: 3,
            mode,
            route_reflectors: k,
            ..Default::default()
        };
        let t = topology(&opts(PeeringMode::RouteReflector, 2), 0).unwrap();
        assert_eq!(t.nodes.iter().filter(|n| n.route_reflector).count(), 2);
        for k in [0, 3] {
            let e = topology(&opts(PeeringMode::RouteReflector, k), 0)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("route reflectors") && e.contains("1 to 2"),
                "{e}"
            );
        }
        // A mesh has none, whatever the count says.
        let t = topology(&opts(PeeringMode::Mesh, 1), 0).unwrap();
        assert!(t.nodes.iter().all(|n| !n.route_reflector));
    }
}
