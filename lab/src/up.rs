//! `lab up`: build the fabric step by step, saving state after each step so
//! that `down` can always undo a partial lab, then prove it works.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use margay_crds::AnyResource;
use margay_ctlproto::PeerStatus;
use margay_datastore::{Datastore, DatastoreSpec};

use crate::state::{LabState, NodeState, PodState};
use crate::sys::{missing_programs, ns_run, run, spawn_detached};
use crate::topology::{self, FABRIC_NS, HOST_LINK, TOR_NS, Topology};
use crate::{LabError, LabOptions, down};

/// The binaries the lab runs from `bin_dir`.
const BINARIES: [&str; 5] =
    ["margay-node", "bgpd", "felix-lite", "margay", "margay-ipam"];

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
    let topo =
        Topology::new(opts.nodes, opts.pods_per_node, opts.mode, opts.family);
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

    step("creating the fabric segment");
    run("ip", &["netns", "add", FABRIC_NS])?;
    ns_run(FABRIC_NS, &["ip", "link", "add", "br0", "type", "bridge"])?;
    ns_run(FABRIC_NS, &["ip", "link", "set", "br0", "up"])?;
    attach(HOST_LINK, None, &format!("{}/24", topology::host_v4()))?;
    if topo.family.v6() {
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/64", topology::host_v6()),
                "dev",
                HOST_LINK,
                "nodad",
            ],
        )?;
    }
    done(&format!("bridge br0 in {FABRIC_NS}, host link {HOST_LINK}"));

    step("starting etcd");
    let etcd_pid = start_etcd(dir)?;
    state.etcd_pid = Some(etcd_pid);
    state.save()?;
    let spec: DatastoreSpec = format!("etcd:{}", topo.etcd_endpoint())
        .parse()
        .map_err(|e| LabError::Resources(format!("{e}")))?;
    let ds = wait_datastore(&spec).await?;
    apply_resources(&ds, &topo).await?;
    done(&format!(
        "{} with BGPConfiguration, IPPool and BGPPeer resources",
        topo.etcd_endpoint()
    ));

    step("starting the ToR (BIRD, AS 65000)");
    state.tor_pid = Some(start_tor(&topo, dir)?);
    state.save()?;
    done("eBGP to every node");

    step(&format!("starting {} nodes", topo.nodes.len()));
    for n in &topo.nodes {
        let node = start_node(opts, &topo, n)?;
        state.nodes.push(node);
        state.save()?;
    }
    wait_sessions(&state, &topo).await?;
    done("every BGP session Established");

    step(&format!(
        "creating {} pods through the CNI plugin",
        topo.pods.len()
    ));
    for p in &topo.pods {
        let pod = add_pod(opts, &topo, p, dir, &[])?;
        println!("    {} on {}: {}", pod.name, pod.node, pod.ips.join(", "));
        state.pods.push(pod);
        state.save()?;
    }

    step("proving the fabric");
    let summary = crate::prove::prove(&ds, &state).await?;
    println!("{}", summary.report);
    Ok(summary)
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

fn mkdir(path: &Path) -> Result<(), LabError> {
    std::fs::create_dir_all(path).map_err(|e| LabError::Io {
        what: format!("creating {}", path.display()),
        source: e,
    })
}

/// Connects `ifname` (in `netns`, or the host when None) to the fabric
/// bridge with address `cidr`.
fn attach(
    ifname: &str,
    netns: Option<&str>,
    cidr: &str,
) -> Result<(), LabError> {
    let port =
        format!("p-{}", netns.unwrap_or("host").trim_start_matches("mglab-"));
    let port: String = port.chars().take(15).collect();
    let mut args = vec!["link", "add", ifname];
    if let Some(ns) = netns {
        args.extend(["netns", ns]);
    }
    args.extend(["type", "veth", "peer", "name", &port, "netns", FABRIC_NS]);
    run("ip", &args)?;
    ns_run(
        FABRIC_NS,
        &["ip", "link", "set", &port, "master", "br0", "up"],
    )?;
    match netns {
        Some(ns) => {
            ns_run(ns, &["ip", "addr", "add", cidr, "dev", ifname])?;
            ns_run(ns, &["ip", "link", "set", ifname, "up"])?;
        }
        None => {
            run("ip", &["addr", "add", cidr, "dev", ifname])?;
            run("ip", &["link", "set", ifname, "up"])?;
        }
    }
    Ok(())
}

pub(crate) fn start_etcd(dir: &Path) -> Result<u32, LabError> {
    let addr = format!("{}:{}", topology::host_v4(), topology::ETCD_PORT);
    if let Err(e) = std::net::TcpListener::bind(&addr) {
        return Err(LabError::PortBusy {
            addr,
            detail: e.to_string(),
        });
    }
    let client = format!("http://{addr}");
    // A fixed peer port, so a restarted etcd finds its member unchanged.
    let peer = format!("http://127.0.0.1:{}", topology::ETCD_PORT + 1);
    let args = vec![
        "--name=margay-lab".to_string(),
        format!("--data-dir={}", dir.join("etcd").display()),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=margay-lab={peer}"),
        "--log-level=warn".to_string(),
    ];
    spawn_detached(None, Path::new("etcd"), &args, &dir.join("logs/etcd.log"))
}

/// Kills the lab's etcd (as a crash would); the data stays.
pub fn stop_etcd(opts: &LabOptions) -> Result<(), LabError> {
    let mut state = LabState::load(&opts.state_dir)?
        .ok_or_else(|| LabError::State("no lab is running".into()))?;
    if let Some(pid) = state.etcd_pid.take() {
        let _ = run("kill", &["-9", &pid.to_string()]);
        while crate::sys::alive(pid) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    state.save()
}

/// Starts the lab's etcd again on its data and waits until it answers.
pub async fn start_etcd_again(opts: &LabOptions) -> Result<(), LabError> {
    let mut state = LabState::load(&opts.state_dir)?
        .ok_or_else(|| LabError::State("no lab is running".into()))?;
    state.etcd_pid = Some(start_etcd(&opts.state_dir)?);
    state.save()?;
    let spec: DatastoreSpec =
        format!("etcd:{}", state.etcd_endpoint)
            .parse()
            .map_err(|e| LabError::Resources(format!("{e}")))?;
    wait_datastore(&spec).await.map(drop)
}

/// Creates one more pod on `node` of a running lab through the CNI plugin.
pub fn add_extra_pod(
    opts: &LabOptions,
    node: &str,
    pod: &str,
) -> Result<PodState, LabError> {
    add_extra_pod_in_pool(opts, node, pod, &[])
}

/// [`add_extra_pod`] with the pod's IPv4 address taken from the named
/// IPPools (the CNI config's `ipam.ipv4_pools`), e.g. the lab's Manual
/// pools [`topology::SMALL_BLOCKS_POOL`] and [`topology::ONE_BLOCK_POOL`].
pub fn add_extra_pod_in_pool(
    opts: &LabOptions,
    node: &str,
    pod: &str,
    ipv4_pools: &[&str],
) -> Result<PodState, LabError> {
    let mut state = LabState::load(&opts.state_dir)?
        .ok_or_else(|| LabError::State("no lab is running".into()))?;
    let topo = Topology::new(state.nodes.len(), 0, opts.mode, opts.family);
    let plan = topology::PodPlan {
        name: pod.to_string(),
        node: node.to_string(),
        netns: format!("{}-{node}-{pod}", topology::PREFIX),
        container_id: format!("lab-{node}-{pod}"),
    };
    let result = add_pod(opts, &topo, &plan, &opts.state_dir, ipv4_pools);
    if let Ok(p) = &result {
        state.pods.push(p.clone());
        state.save()?;
    }
    result
}

async fn wait_datastore(spec: &DatastoreSpec) -> Result<Datastore, LabError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = async {
            let ds = Datastore::connect(spec).await?;
            ds.list::<margay_crds::IPPool>().await?;
            Ok::<_, margay_datastore::DatastoreError>(ds)
        };
        match attempt.await {
            Ok(ds) => return Ok(ds),
            Err(e) if Instant::now() > deadline => {
                return Err(LabError::Timeout {
                    what: "etcd".into(),
                    detail: e.to_string(),
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn apply_resources(
    ds: &Datastore,
    topo: &Topology,
) -> Result<(), LabError> {
    let docs = margay_crds::parse_documents(&topo.resources_yaml())
        .map_err(|e| LabError::Resources(e.to_string()))?;
    for doc in docs {
        match doc {
            AnyResource::BGPConfiguration(r) => drop(ds.create(&r).await?),
            AnyResource::IPPool(r) => drop(ds.create(&r).await?),
            AnyResource::BGPPeer(r) => drop(ds.create(&r).await?),
            other => {
                return Err(LabError::Resources(format!(
                    "unexpected {} in the lab resources",
                    other.kind()
                )));
            }
        }
    }
    Ok(())
}

fn start_tor(topo: &Topology, dir: &Path) -> Result<u32, LabError> {
    run("ip", &["netns", "add", TOR_NS])?;
    ns_run(TOR_NS, &["ip", "link", "set", "lo", "up"])?;
    attach("eth0", Some(TOR_NS), &format!("{}/24", topology::tor_v4()))?;
    if topo.family.v6() {
        ns_run(
            TOR_NS,
            &[
                "ip",
                "addr",
                "add",
                &format!("{}/64", topology::tor_v6()),
                "dev",
                "eth0",
                "nodad",
            ],
        )?;
    }
    for s in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
        ns_run(TOR_NS, &["sysctl", "-qw", s])?;
    }
    let tor_dir = dir.join("tor");
    mkdir(&tor_dir)?;
    let conf = tor_dir.join("bird.conf");
    let text =
        topo.tor_bird_conf(&tor_dir.join("bird.log").display().to_string());
    std::fs::write(&conf, text).map_err(|e| LabError::Io {
        what: format!("writing {}", conf.display()),
        source: e,
    })?;
    let args = vec![
        "-f".to_string(),
        "-c".to_string(),
        conf.display().to_string(),
        "-s".to_string(),
        tor_dir.join("bird.ctl").display().to_string(),
        "-P".to_string(),
        tor_dir.join("bird.pid").display().to_string(),
    ];
    spawn_detached(
        Some(TOR_NS),
        Path::new("bird"),
        &args,
        &dir.join("logs/tor.log"),
    )
}

fn start_node(
    opts: &LabOptions,
    topo: &Topology,
    n: &topology::NodePlan,
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
    let mut args = vec![
        format!("--datastore=etcd:{}", topo.etcd_endpoint()),
        format!("--node={}", n.name),
        format!("--run-dir={}", run_dir.display()),
        format!("--bin-dir={}", opts.bin_dir.display()),
        format!("--health-addr=0.0.0.0:{}", topology::HEALTH_PORT),
        format!(
            "--felix-arg=--endpoint-dir={}",
            run_dir.join("endpoints").display()
        ),
    ];
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
    let pid = spawn_detached(Some(&n.netns), &agent, &args, &log)?;
    Ok(NodeState {
        name: n.name.clone(),
        netns: n.netns.clone(),
        address: n.v4.to_string(),
        address_v6: topo.family.v6().then(|| n.v6.to_string()),
        agent_pid: pid,
        run_dir,
        route_reflector: n.route_reflector,
    })
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
        topology::PeeringMode::RouteReflector if n.route_reflector => others,
        topology::PeeringMode::RouteReflector => 1,
    };
    // Plus the ToR; a dual-stack node has every session once per family.
    let families =
        usize::from(topo.family.v4()) + usize::from(topo.family.v6());
    (node_peers + 1) * families
}

async fn wait_sessions(
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

/// Creates the pod's namespace and runs the CNI plugin's ADD in the node's
/// namespace, exactly as a runtime does: env variables plus config on stdin.
fn add_pod(
    opts: &LabOptions,
    topo: &Topology,
    p: &topology::PodPlan,
    dir: &Path,
    ipv4_pools: &[&str],
) -> Result<PodState, LabError> {
    // A retried ADD (after a failure) reuses the pod's namespace, as a
    // runtime retries with the same sandbox.
    if !Path::new("/run/netns").join(&p.netns).exists() {
        run("ip", &["netns", "add", &p.netns])?;
        ns_run(&p.netns, &["ip", "link", "set", "lo", "up"])?;
    }
    let node_ns = topo
        .nodes
        .iter()
        .find(|n| n.name == p.node)
        .map(|n| n.netns.clone())
        .expect("pod's node is in the topology");
    let endpoint_dir = dir.join(&p.node).join("endpoints");
    let config = topo.cni_config(
        &p.node,
        &endpoint_dir.display().to_string(),
        ipv4_pools,
    );
    let plugin: PathBuf = opts.bin_dir.join("margay");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &node_ns])
        .arg(&plugin)
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", &p.container_id)
        .env("CNI_NETNS", format!("/run/netns/{}", p.netns))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", &opts.bin_dir)
        .env(
            "CNI_ARGS",
            format!("K8S_POD_NAMESPACE=default;K8S_POD_NAME={}", p.name),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| LabError::Cni {
            pod: p.name.clone(),
            detail: e.to_string(),
        })?;
    child
        .stdin
        .take()
        .expect("stdin piped")
        .write_all(config.to_string().as_bytes())
        .map_err(|e| LabError::Cni {
            pod: p.name.clone(),
            detail: e.to_string(),
        })?;
    let out = child.wait_with_output().map_err(|e| LabError::Cni {
        pod: p.name.clone(),
        detail: e.to_string(),
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(LabError::Cni {
            pod: p.name.clone(),
            detail: format!(
                "{stdout} {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    let result: serde_json::Value =
        serde_json::from_str(&stdout).map_err(|e| LabError::Cni {
            pod: p.name.clone(),
            detail: format!("unparseable result {stdout:?}: {e}"),
        })?;
    let ips = result["ips"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|ip| ip["address"].as_str())
                .filter_map(|s| s.split('/').next())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if ips.is_empty() {
        return Err(LabError::Cni {
            pod: p.name.clone(),
            detail: format!("result has no IPs: {stdout}"),
        });
    }
    Ok(PodState {
        name: p.name.clone(),
        node: p.node.clone(),
        netns: p.netns.clone(),
        container_id: p.container_id.clone(),
        ips,
    })
}
