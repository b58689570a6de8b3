//! Lab nodes: a namespace on the fabric segment running the margay node
//! agent (hence bgpd and felix-lite), and waiting for their sessions.

use std::path::Path;
use std::time::{Duration, Instant};

use margay_ctlproto::PeerStatus;

use crate::segment::attach;
use crate::state::{LabState, NodeState};
use crate::sys::{mkdir, ns_run, run, spawn_detached};
use crate::topology::{self, Topology};
use crate::{LabError, LabOptions};

/// Creates node `n`'s namespace and starts its agent.
pub(crate) fn start(
    opts: &LabOptions,
    topo: &Topology,
    n: &topology::NodePlan,
    state: &LabState,
) -> Result<NodeState, LabError> {
    run("ip", &["netns", "add", &n.netns])?;
    ns_run(&n.netns, &["ip", "link", "set", "lo", "up"])?;
    attach("eth0", Some(&n.netns), &format!("{}/24", n.v4))?;
    ns_run(
        &n.netns,
        &[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &topology::tor_v4().to_string(),
        ],
    )?;
    if topo.family.v6() {
        ns_run(
            &n.netns,
            &[
                "ip",
                "addr",
                "add",
                &format!("{}/64", n.v6),
                "dev",
                "eth0",
                "nodad",
            ],
        )?;
    }
    for s in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
        ns_run(&n.netns, &["sysctl", "-qw", s])?;
    }
    let run_dir = opts.state_dir.join(&n.name);
    mkdir(&run_dir.join("endpoints"))?;
    let pid = spawn_agent(opts, topo, n, state)?;
    let cni_server_pid = match state.kube {
        Some(_) => Some(spawn_cni_server(opts, n)?),
        None => None,
    };
    Ok(NodeState {
        name: n.name.clone(),
        netns: n.netns.clone(),
        address: n.v4.to_string(),
        address_v6: topo.family.v6().then(|| n.v6.to_string()),
        agent_pid: pid,
        cni_server_pid,
        run_dir,
        route_reflector: n.route_reflector,
    })
}

/// Starts node `n`'s agent in its (existing) namespace; its pid.
fn spawn_agent(
    opts: &LabOptions,
    topo: &Topology,
    n: &topology::NodePlan,
    state: &LabState,
) -> Result<u32, LabError> {
    let run_dir = opts.state_dir.join(&n.name);
    let mut args = vec![
        format!("--datastore={}", state.agent_datastore()),
        format!("--node={}", n.name),
        format!("--run-dir={}", run_dir.display()),
        format!("--bin-dir={}", opts.bin_dir.display()),
        format!("--health-addr=0.0.0.0:{}", topology::HEALTH_PORT),
        format!(
            "--felix-arg=--endpoint-dir={}",
            run_dir.join("endpoints").display()
        ),
    ];
    if state.kube.is_some() {
        // As deploy/30-daemonset.yaml runs it: the CNI verbs are served
        // by a CNI server of their own (spawn_cni_server), not the agent.
        args.push("--cni-socket=none".into());
    }
    if topo.family.v6() {
        args.push(format!("--ipv6-address={}/64", n.v6));
    }
    if !topo.family.v4() {
        args.push("--ipv4-address=none".into());
    }
    if n.route_reflector {
        args.push(format!(
            "--route-reflector-cluster-id={}",
            topology::RR_CLUSTER_ID
        ));
        args.push("--label=route-reflector=true".into());
    }
    let log = opts.state_dir.join(format!("logs/{}.log", n.name));
    let agent = opts.bin_dir.join("margay-node");
    spawn_detached(Some(&n.netns), &agent, &args, &log)
}

/// Where node `n`'s CNI server listens in a Kubernetes lab (its own
/// directory, created mode 0700, as deploy/'s /var/run/margay/cni).
pub(crate) fn cni_server_socket(run_dir: &Path) -> std::path::PathBuf {
    run_dir.join("cni").join("cni.sock")
}

/// Starts node `n`'s CNI server as deploy/30-daemonset.yaml's margay-cni
/// container runs it (`margay-node cni-server`), in the node's namespace,
/// and waits for its socket; its pid. It has no credentials of its own:
/// each relayed config names the margay-cni kubeconfig
/// (kube::cni_datastore), so it acts with margay-cni's RBAC.
fn spawn_cni_server(
    opts: &LabOptions,
    n: &topology::NodePlan,
) -> Result<u32, LabError> {
    let socket = cni_server_socket(&opts.state_dir.join(&n.name));
    let args = vec![
        "cni-server".to_string(),
        format!("--socket={}", socket.display()),
        // The relayed invocations in its log (the lab test reads them).
        "--log-level=info,margay_cni::agent=debug".to_string(),
    ];
    let log = opts.state_dir.join(format!("logs/{}-cni.log", n.name));
    let agent = opts.bin_dir.join("margay-node");
    let pid = spawn_detached(Some(&n.netns), &agent, &args, &log)?;
    // A liveness bound, not a timing check: the server binds at once.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !socket.exists() {
        if !crate::sys::alive(pid) || Instant::now() > deadline {
            return Err(LabError::Timeout {
                what: format!(
                    "{}'s CNI server socket {}",
                    n.name,
                    socket.display()
                ),
                detail: std::fs::read_to_string(&log).unwrap_or_default(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(pid)
}

/// Stops node `name`'s agent as an operator would (SIGTERM: bgpd sends
/// its peers Cease / Administrative Shutdown, so they drop its routes at
/// once) and waits until it has exited. The namespace and pods stay.
pub fn stop_node(opts: &LabOptions, name: &str) -> Result<(), LabError> {
    let state = LabState::load(&opts.state_dir)?
        .ok_or_else(|| LabError::State("no lab is running".into()))?;
    let n =
        state.nodes.iter().find(|n| n.name == name).ok_or_else(|| {
            LabError::State(format!("no node {name} in the lab"))
        })?;
    let pid = n.agent_pid;
    if crate::sys::alive(pid) {
        run("kill", &["-TERM", &pid.to_string()])?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while crate::sys::alive(pid) {
        if Instant::now() > deadline {
            return Err(LabError::Timeout {
                what: format!("{name}'s agent (pid {pid}) to stop"),
                detail: "it ignored SIGTERM for 30 s".into(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Starts node `name`'s agent again after [`stop_node`] and waits until
/// every node has all its sessions Established again.
pub async fn start_node_again(
    opts: &LabOptions,
    name: &str,
) -> Result<(), LabError> {
    let mut state = LabState::load(&opts.state_dir)?
        .ok_or_else(|| LabError::State("no lab is running".into()))?;
    let topo = crate::up::topology(opts, 0)?;
    let (i, plan) = topo
        .nodes
        .iter()
        .enumerate()
        .find(|(_, n)| n.name == name)
        .ok_or_else(|| LabError::State(format!("no node {name} in the lab")))?;
    state.nodes[i].agent_pid = spawn_agent(opts, &topo, plan, &state)?;
    state.save()?;
    wait_sessions(&state, &topo).await
}

/// bgpd's peer table through its control socket.
pub async fn query_peers(socket: &Path) -> Result<Vec<PeerStatus>, String> {
    let socket = socket.to_path_buf();
    tokio::task::spawn_blocking(move || margay_ctlproto::client::peers(&socket))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// How many sessions each node should have.
fn expected_sessions(topo: &Topology, n: &topology::NodePlan) -> usize {
    let others = topo.nodes.len() - 1;
    let node_peers = match topo.mode {
        topology::PeeringMode::Mesh => others,
        // A reflector peers with every other node (its clients and the
        // other reflectors); a client with every reflector.
        topology::PeeringMode::RouteReflector if n.route_reflector => others,
        topology::PeeringMode::RouteReflector => topo.route_reflectors,
    };
    // Plus the ToR; a dual-stack node has every session once per family.
    let families =
        usize::from(topo.family.v4()) + usize::from(topo.family.v6());
    (node_peers + 1) * families
}

/// Waits until every node has all its sessions Established.
pub(crate) async fn wait_sessions(
    state: &LabState,
    topo: &Topology,
) -> Result<(), LabError> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mut pending = Vec::new();
        for (n, plan) in state.nodes.iter().zip(&topo.nodes) {
            let want = expected_sessions(topo, plan);
            match query_peers(&n.run_dir.join("bgpd.ctl")).await {
                Ok(peers) => {
                    let up = peers
                        .iter()
                        .filter(|p| p.state == "Established")
                        .count();
                    if up < want {
                        let down: Vec<String> = peers
                            .iter()
                            .filter(|p| p.state != "Established")
                            .map(|p| format!("{} {}", p.address, p.state))
                            .collect();
                        pending.push(format!(
                            "{}: {up}/{want} Established (not: {})",
                            n.name,
                            down.join(", ")
                        ));
                    }
                }
                Err(e) => pending
                    .push(format!("{}: bgpd not answering ({e})", n.name)),
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(LabError::Timeout {
                what: "BGP sessions".into(),
                detail: format!(
                    "{}; logs in {}",
                    pending.join("; "),
                    state.state_dir.join("logs").display()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
