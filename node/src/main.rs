//! `margay-node`: the per-node agent (see the library docs).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use ipnetwork::IpNetwork;
use margay_datastore::{Datastore, DatastoreSpec};
use margay_node::autodetect::{self, Method};
use margay_node::cni_install::{CniInstall, conflist};
use margay_node::default_pool;
use margay_node::health::{self, HealthCxt};
use margay_node::kube_node;
use margay_node::register::{Registration, register};
use margay_node::supervise::{
    ChildSpec, ChildState, Stop, supervise, take_restart_marker,
    write_restart_marker,
};
use nix::sys::signal::Signal;
use tokio::sync::watch;
use tracing::{info, warn};

#[derive(Debug, Parser)]
#[command(
    name = "margay-node",
    version,
    about = "margay's node agent",
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    mode: Option<Mode>,
    /// Datastore: etcd:URL[,URL..] | kubernetes[:KUBECONFIG] | file:PATH.
    #[arg(long, env = "MARGAY_DATASTORE", required = true)]
    datastore: Option<DatastoreSpec>,
    /// This node's name (the Node resource and the CNI nodename).
    #[arg(long, env = "NODE_NAME", required = true)]
    node: Option<String>,
    /// BGP IPv4 address in CIDR form; "autodetect" picks one with
    /// --ipv4-autodetection-method; "none" registers no IPv4 address.
    #[arg(long, default_value = "autodetect")]
    ipv4_address: String,
    /// BGP IPv6 address in CIDR form, "autodetect" or "none".
    #[arg(long, default_value = "none")]
    ipv6_address: String,
    /// How "autodetect" picks the IPv4 address, as Calico's
    /// IP_AUTODETECTION_METHOD: first-found, interface=REGEX,
    /// skip-interface=REGEX, cidr=CIDR,..., can-reach=DEST,
    /// kubernetes-internal-ip, or default-route (the address of the
    /// interface holding the default route).
    #[arg(
        long,
        env = "IP_AUTODETECTION_METHOD",
        default_value = "default-route"
    )]
    ipv4_autodetection_method: Method,
    /// The same for IPv6 (Calico's IP6_AUTODETECTION_METHOD).
    #[arg(
        long,
        env = "IP6_AUTODETECTION_METHOD",
        default_value = "default-route"
    )]
    ipv6_autodetection_method: Method,
    /// Per-node AS number (spec.bgp.asNumber); default: BGPConfiguration's.
    #[arg(long)]
    as_number: Option<u32>,
    /// Make this node a route reflector with this cluster ID (IPv4 form).
    #[arg(long)]
    route_reflector_cluster_id: Option<String>,
    /// Labels for the Node, `key=value`, repeatable.
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Directory for the control socket and state.
    #[arg(long, default_value = "/var/run/margay")]
    run_dir: PathBuf,
    /// Where bgpd, felix-lite and the CNI binaries are (default: beside
    /// this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Extra argument for bgpd, repeatable.
    #[arg(long = "bgpd-arg", allow_hyphen_values = true)]
    bgpd_args: Vec<String>,
    /// Extra argument for felix-lite, repeatable.
    #[arg(long = "felix-arg", allow_hyphen_values = true)]
    felix_args: Vec<String>,
    /// Where the agent serves the CNI invocations the plugin relays to it
    /// (warm datastore and netlink connections make an ADD several times
    /// faster); "none" to leave the plugin on its own. Default: cni.sock
    /// in --run-dir.
    #[arg(long)]
    cni_socket: Option<String>,
    /// Install the CNI binaries and conflist, then keep running.
    #[arg(long)]
    install_cni: bool,
    #[arg(long, default_value = "/opt/cni/bin")]
    cni_bin_dir: PathBuf,
    #[arg(long, default_value = "/etc/cni/net.d")]
    cni_conf_dir: PathBuf,
    /// Pod interface MTU written into the conflist.
    #[arg(long, default_value_t = 1500)]
    mtu: u32,
    /// Address for /livez, /readyz and /metrics.
    #[arg(long)]
    health_addr: Option<SocketAddr>,
    /// Where bgpd serves its metrics (its --metrics-addr), merged into
    /// /metrics on --health-addr; "none" to leave bgpd's metrics off. Used
    /// only with --health-addr.
    #[arg(long, default_value = "127.0.0.1:9179")]
    bgpd_metrics_addr: String,
    /// Where felix-lite serves its metrics, merged likewise; "none" for off.
    #[arg(long, default_value = "127.0.0.1:9098")]
    felix_metrics_addr: String,
    /// Where a `margay-node cni-server` of this node serves its metrics
    /// (its --metrics-addr; the DaemonSet's margay-cni container shares
    /// the host network), merged likewise; "none" for none.
    #[arg(long, default_value = "none")]
    cni_server_metrics_addr: String,
    /// Log filter (tracing env-filter syntax).
    #[arg(long, env = "MARGAY_LOG", default_value = "info")]
    log_level: String,
}

/// Modes other than the agent.
#[derive(Debug, clap::Subcommand)]
enum Mode {
    /// Serve only the CNI verbs the plugin relays (no bgpd, no
    /// felix-lite, no Node registration): the DaemonSet's privileged
    /// margay-cni container runs this, so the agent itself keeps its
    /// least privilege. Each request's network config names the datastore
    /// and credentials (the plugin's kubeconfig, hence margay-cni's
    /// identity), as when the plugin works alone.
    CniServer(CniServerArgs),
}

#[derive(Debug, clap::Args)]
struct CniServerArgs {
    /// The socket to serve (the conflist's agent_socket). Its directory
    /// is created mode 0700 if missing, and must be writable by root alone.
    #[arg(long)]
    socket: PathBuf,
    /// Serve /metrics here (the socket's refused peers and the
    /// invocations in flight), e.g. for the agent's --health-addr to merge
    /// (its --cni-server-metrics-addr).
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
    /// Log filter (tracing env-filter syntax).
    #[arg(long, env = "MARGAY_LOG", default_value = "info")]
    log_level: String,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("label {s:?} is not key=value"))?;
    Ok((k.to_string(), v.to_string()))
}

/// A child's metrics address flag: an `IP:PORT`, or "none".
fn metrics_addr(flag: &str, arg: &str) -> anyhow::Result<Option<SocketAddr>> {
    match arg {
        "none" => Ok(None),
        a => a.parse().map(Some).with_context(|| {
            format!("{flag} {a:?}: expected IP:PORT (e.g. 127.0.0.1:9179) or \"none\"")
        }),
    }
}

fn address(
    arg: &str,
    v6: bool,
    method: &Method,
    internal_ips: Option<Vec<IpAddr>>,
) -> anyhow::Result<Option<IpNetwork>> {
    let flag = if v6 {
        "--ipv6-address"
    } else {
        "--ipv4-address"
    };
    match arg {
        "none" => Ok(None),
        "autodetect" => {
            let net = autodetect::detect(method, v6, internal_ips)
                .with_context(|| format!("{flag} autodetect"))?;
            info!(%net, ?method, "autodetected the node address");
            Ok(Some(net))
        }
        cidr => {
            let net: IpNetwork = cidr.parse().with_context(|| {
                format!(
                    "{flag} {cidr:?}: expected an address in CIDR form \
                     (e.g. 10.0.0.1/24), \"autodetect\" or \"none\""
                )
            })?;
            if net.is_ipv6() != v6 {
                bail!("{flag} {cidr}: wrong address family");
            }
            Ok(Some(net))
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let log_level = match &args.mode {
        Some(Mode::CniServer(a)) => &a.log_level,
        None => &args.log_level,
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(log_level))
        .with_writer(std::io::stderr)
        .init();
    if let Some(Mode::CniServer(a)) = &args.mode {
        return cni_server(a).await;
    }
    // Required by clap unless a subcommand is given.
    let (Some(datastore), Some(node_name)) =
        (args.datastore.clone(), args.node.clone())
    else {
        bail!("--datastore and --node are required");
    };

    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("binary has no directory")?
            .to_path_buf(),
    };
    std::fs::create_dir_all(&args.run_dir)
        .with_context(|| format!("creating {}", args.run_dir.display()))?;
    let cni_socket = match args.cni_socket.as_deref() {
        Some("none") => None,
        Some(p) => Some(PathBuf::from(p)),
        None => Some(args.run_dir.join("cni.sock")),
    };
    // Bound before the conflist names it, so a runtime never finds the
    // name without a server; served once the Node is registered.
    let cni_listener = cni_socket
        .as_ref()
        .map(|p| {
            margay_cni::agent::server::bind(p)
                .with_context(|| format!("--cni-socket {}", p.display()))
        })
        .transpose()?;

    // Calico's CALICO_IPV{4,6}POOL_* variables (see default_pool).
    default_pool::unknown_vars(std::env::vars().map(|(k, _)| k))?;
    let default_pools = default_pool::from_env(|k| std::env::var(k).ok())?;

    let ds = connect(&datastore).await?;
    if !ds.is_read_only() {
        ensure_default_pools(&ds, &default_pools).await?;
    }
    // On the kubernetes datastore, this node's Kubernetes Node gives the
    // labels copied onto the margay Node (see kube_node).
    let kube_node = match &ds {
        Datastore::Kubernetes(k) => {
            let node =
                kube_node::get(k.client(), &node_name).await.with_context(
                    || format!("reading the Kubernetes Node {node_name:?}"),
                )?;
            if node.is_none() {
                warn!(node = %node_name, "no Kubernetes Node of this name (yet): its labels are copied once it exists");
            }
            Some(node)
        }
        _ => None,
    };
    let internal_ips = kube_node
        .as_ref()
        .map(|n| n.as_ref().map(kube_node::internal_ips).unwrap_or_default());
    let reg = Registration {
        name: node_name.clone(),
        ipv4: address(
            &args.ipv4_address,
            false,
            &args.ipv4_autodetection_method,
            internal_ips.clone(),
        )?,
        ipv6: address(
            &args.ipv6_address,
            true,
            &args.ipv6_autodetection_method,
            internal_ips,
        )?,
        as_number: args.as_number,
        rr_cluster_id: args.route_reflector_cluster_id.clone(),
        labels: args.labels.iter().cloned().collect::<BTreeMap<_, _>>(),
        kube_labels: kube_node.as_ref().and_then(|n| {
            n.as_ref()
                .map(|n| n.metadata.labels.clone().unwrap_or_default())
        }),
    };
    if reg.ipv4.is_none() && reg.ipv6.is_none() {
        bail!(
            "the node needs a BGP address: set --ipv4-address or --ipv6-address"
        );
    }
    info!(node = %reg.name, ipv4 = ?reg.ipv4, ipv6 = ?reg.ipv6, "starting");
    register(&ds, &reg, Duration::from_secs(120))
        .await
        .context("registering the Node resource")?;
    if let Datastore::Kubernetes(k) = &ds {
        tokio::spawn(kube_node::sync_labels(
            k.client().clone(),
            ds.clone(),
            reg.clone(),
        ));
    }

    if args.install_cni {
        CniInstall {
            source_dir: bin_dir.clone(),
            bin_dir: args.cni_bin_dir.clone(),
            conf_dir: args.cni_conf_dir.clone(),
        }
        .install(&conflist(
            &node_name,
            &datastore,
            args.mtu,
            cni_socket.as_deref(),
        ))
        .context("installing the CNI plugin")?;
        info!(dir = %args.cni_bin_dir.display(), "CNI plugin installed");
    }

    if let Some(listener) = cni_listener {
        margay_cni::agent::server::spawn(listener)
            .context("starting the CNI service")?;
        info!(socket = ?cni_socket, "serving CNI invocations");
    }

    // The children serve metrics only when the agent has somewhere to
    // merge them (/metrics on --health-addr).
    let mut metrics_targets = Vec::new();
    if args.health_addr.is_some() {
        for (name, flag, arg) in [
            ("bgpd", "--bgpd-metrics-addr", &args.bgpd_metrics_addr),
            (
                "felix-lite",
                "--felix-metrics-addr",
                &args.felix_metrics_addr,
            ),
        ] {
            if let Some(a) = metrics_addr(flag, arg)? {
                metrics_targets.push((name, a));
            }
        }
        if let Some(a) = metrics_addr(
            "--cni-server-metrics-addr",
            &args.cni_server_metrics_addr,
        )? {
            metrics_targets.push(("cni-server", a));
        }
    }
    let child_metrics = |name: &str| {
        metrics_targets
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, a)| vec!["--metrics-addr".to_string(), a.to_string()])
            .unwrap_or_default()
    };

    let socket = args.run_dir.join("bgpd.ctl");
    let common = vec![
        "--datastore".to_string(),
        datastore.to_string(),
        "--node".to_string(),
        node_name.clone(),
    ];
    let mut bgpd_args = common.clone();
    // The previous agent stopped for a planned restart (SIGUSR1): the
    // peers keep our routes for their restart time (120 s by default),
    // so bgpd comes back as a restarting speaker (RFC 4724 4.1).
    if take_restart_marker(&args.run_dir, Duration::from_secs(120)) {
        info!("planned restart: bgpd starts with --graceful-restart");
        bgpd_args.push("--graceful-restart".into());
    }
    bgpd_args.extend(["--control-socket".into(), socket.display().to_string()]);
    bgpd_args.extend(child_metrics("bgpd"));
    bgpd_args.extend(args.bgpd_args.iter().cloned());
    let mut felix_args = common;
    felix_args.extend(["--bgpd-socket".into(), socket.display().to_string()]);
    felix_args.extend(child_metrics("felix-lite"));
    felix_args.extend(args.felix_args.iter().cloned());
    let specs = [
        ChildSpec {
            name: "bgpd",
            program: bin_dir.join("bgpd"),
            args: bgpd_args,
            // RFC 4724: peers keep our routes, and bgpd defers its own
            // advertisements until it has relearnt theirs (4.1).
            restart_args: vec!["--graceful-restart".into()],
            // Keep graceful restart: no Cease to the peers.
            restart_signal: Signal::SIGUSR1,
        },
        ChildSpec {
            name: "felix-lite",
            program: bin_dir.join("felix-lite"),
            args: felix_args,
            restart_args: Vec::new(),
            // felix-lite leaves the FIB in place whenever it stops.
            restart_signal: Signal::SIGTERM,
        },
    ];

    let (stop_tx, stop_rx) = watch::channel(Stop::No);
    let mut tasks = Vec::new();
    let mut children = Vec::new();
    for spec in specs {
        let state = Arc::new(ChildState::default());
        children.push((spec.name, state.clone()));
        tasks.push(tokio::spawn(supervise(
            spec,
            state,
            stop_rx.clone(),
            Duration::from_secs(10),
        )));
    }
    if let Some(addr) = args.health_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding --health-addr {addr}"))?;
        tokio::spawn(health::serve(
            listener,
            HealthCxt {
                children,
                bgpd_socket: socket,
                metrics_targets,
            },
        ));
    }

    let how = wait_for_signal().await?;
    if how == Stop::Restart
        && let Err(e) = write_restart_marker(&args.run_dir)
    {
        warn!(error = %e, "cannot leave the restart marker; the next bgpd starts afresh");
    }
    info!(?how, "stopping");
    let _ = stop_tx.send(how);
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

/// `margay-node cni-server`: serves the CNI socket until SIGTERM/SIGINT,
/// then unlinks it (the plugin does the work itself from then on) and
/// lets the invocations in flight finish.
async fn cni_server(a: &CniServerArgs) -> anyhow::Result<()> {
    let listener = margay_cni::agent::server::bind(&a.socket)
        .with_context(|| format!("--socket {}", a.socket.display()))?;
    margay_cni::agent::server::spawn(listener)
        .context("starting the CNI service")?;
    info!(socket = %a.socket.display(), "serving CNI invocations (CNI server only)");
    if let Some(addr) = a.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding --metrics-addr {addr}"))?;
        let router = margay_httpd::metrics_router(|| async {
            margay_cni::agent::server::metrics()
        });
        tokio::spawn(async move {
            if let Err(e) = margay_httpd::serve(listener, router).await {
                warn!(%addr, error = %e, "CNI server metrics stopped");
            }
        });
    }
    let how = wait_for_signal().await?;
    info!(?how, "stopping: no new CNI invocations");
    if let Err(e) = std::fs::remove_file(&a.socket) {
        warn!(error = %e, socket = %a.socket.display(), "removing the CNI socket");
    }
    // Bounded by the pod's termination grace period: kubelet kills us
    // then, and an ADD whose answer is lost is reported "try again later"
    // by the plugin, never repeated.
    while margay_cni::agent::server::in_flight() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Connects to the datastore, waiting while it is unreachable (the node
/// agent often starts before etcd or the apiserver is ready).
async fn connect(spec: &DatastoreSpec) -> anyhow::Result<Datastore> {
    let mut delay = Duration::from_millis(200);
    loop {
        match Datastore::connect(spec).await {
            Ok(ds) => return Ok(ds),
            Err(e) if e.is_transient() => {
                warn!(datastore = %spec, error = %e, "datastore unavailable; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e).context(format!("datastore {spec}")),
        }
    }
}

/// Creates the default pools unless pools exist, retrying while the
/// datastore is unavailable.
async fn ensure_default_pools(
    ds: &Datastore,
    pools: &[margay_crds::IPPool],
) -> anyhow::Result<()> {
    let mut delay = Duration::from_millis(200);
    loop {
        match default_pool::ensure(ds, pools).await {
            Ok(done) => {
                for d in done {
                    info!(?d, "default IPPool");
                }
                return Ok(());
            }
            Err(e) if e.is_transient() => {
                warn!(error = %e, "creating the default IPPools; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e).context("creating the default IPPools"),
        }
    }
}

/// SIGTERM / SIGINT stop for good: uninstall, node shutdown, pod deletion
/// (bgpd sends its peers Cease / Administrative Shutdown, they withdraw
/// our routes at once). SIGUSR1 is a planned restart: bgpd closes its
/// sessions keeping graceful restart and the next agent starts it with
/// `--graceful-restart`.
async fn wait_for_signal() -> anyhow::Result<Stop> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    Ok(tokio::select! {
        _ = term.recv() => Stop::Shutdown,
        _ = int.recv() => Stop::Shutdown,
        _ = usr1.recv() => Stop::Restart,
    })
}
