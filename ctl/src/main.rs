//! `margayctl`: the command-line front end. Each subcommand calls one
//! library function and prints what it returns.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use margay_datastore::{Datastore, DatastoreSpec};
use margayctl::output::Format;
use margayctl::resources::{self, Kind};
use margayctl::{diagnose, import, ipam, routes, status};

/// margay's command-line tool: BGP status, resources, IPAM and routes.
#[derive(Parser, Debug)]
#[command(name = "margayctl", version, about)]
struct Cli {
    /// Where margay's resources live: etcd:URL[,URL], kubernetes,
    /// kubernetes:KUBECONFIG or file:PATH.
    #[arg(
        long,
        global = true,
        env = "MARGAY_DATASTORE",
        default_value = DEFAULT_ETCD
    )]
    datastore: DatastoreSpec,
    /// bgpd's control socket.
    #[arg(long, global = true, default_value = margay_ctlproto::DEFAULT_BGPD_SOCKET)]
    bgpd_socket: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// This node's BGP daemon.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Show resources: get KIND [NAME] (kinds: ippool, bgppeer, bgpconfig,
    /// bgpfilter, node, ipamblock, blockaffinity, ipamhandle, ipamconfig,
    /// ipreservation; plurals work too).
    Get {
        kind: String,
        name: Option<String>,
        /// Output format: wide, yaml or json (default: a table).
        #[arg(short, long, value_enum)]
        output: Option<Format>,
    },
    /// Create or update the resources in a YAML file ("-" = stdin).
    Apply {
        #[arg(short = 'f', long = "filename")]
        file: String,
    },
    /// Delete KIND NAME, or every resource named in -f FILE.
    Delete(DeleteArgs),
    /// IP address management.
    #[command(subcommand)]
    Ipam(IpamCmd),
    /// bgpd's RIB (every path, with the best-path reason) next to the
    /// kernel routes felix-lite installed.
    Routes {
        /// Route protocol number felix-lite tags its kernel routes with.
        #[arg(long, default_value_t = routes::DEFAULT_FIB_PROTOCOL)]
        fib_protocol: u8,
        /// Read the FIB inside this network namespace (e.g. a lab node).
        #[arg(long)]
        netns: Option<String>,
        /// Output format: wide, yaml or json (default: a table).
        #[arg(short, long, value_enum)]
        output: Option<Format>,
        /// Show instead the routes peers sent that import refused (a
        /// BGPFilter, outside every IPPool, a loop), with the reason.
        #[arg(long)]
        rejected: bool,
    },
    /// Convert Calico YAML (projectcalico.org/v3 IPPool, BGPPeer,
    /// BGPConfiguration, BGPFilter, Node, IPReservation,
    /// IPAMConfiguration, and the crd.projectcalico.org/v1 objects of a
    /// Kubernetes-datastore Calico) into margay resources; every field
    /// dropped, or kept with a different meaning, is listed on stderr.
    ImportCalico {
        /// The Calico YAML ("-" = stdin).
        file: String,
        /// yaml (default) or json.
        #[arg(short, long, value_enum, default_value_t = Format::Yaml)]
        output: Format,
    },
    /// The local lab fabric: up, status, down.
    #[command(subcommand)]
    Lab(LabCmd),
    /// Walk the path FROM -> TO hop by hop (pod, host veth, IPAM, FIB,
    /// bgpd, remote node) and name the first broken hop (bgpd, when it
    /// explains a missing FIB route); exits 1 when the path is broken. Run
    /// it on FROM's node.
    Diagnose(DiagnoseArgs),
}

#[derive(Args, Debug)]
struct DiagnoseArgs {
    /// A pod on this node (NAMESPACE/POD or container ID) or an IP.
    from: String,
    /// A pod (NAMESPACE/POD, or a container ID on this node) or an IP.
    /// Services (svc/NAMESPACE/NAME) are refused: not followed yet.
    to: String,
    /// This node's name, as in its IPAM block affinities.
    #[arg(long, env = "NODENAME")]
    node: String,
    /// The CNI network name (IPAM handles are `<network>.<containerID>`).
    #[arg(long, default_value = "k8s-pod-network")]
    network: String,
    /// This node's endpoint records (the CNI's endpoint_dir).
    #[arg(long, default_value = "/var/run/margay/endpoints")]
    endpoints: PathBuf,
    /// Route protocol number felix-lite tags its kernel routes with.
    #[arg(long, default_value_t = routes::DEFAULT_FIB_PROTOCOL)]
    fib_protocol: u8,
    /// The destination node's network namespace (a lab node): checks
    /// its blackhole, the destination's /32 and veth (hop 6).
    #[arg(long)]
    remote_netns: Option<String>,
    /// Output format: json or yaml (default: a table).
    #[arg(short, long, value_enum)]
    output: Option<Format>,
}

#[derive(Args, Debug)]
struct DeleteArgs {
    kind: Option<String>,
    name: Option<String>,
    #[arg(short = 'f', long = "filename", conflicts_with_all = ["kind", "name"])]
    file: Option<String>,
}

#[derive(Subcommand, Debug)]
enum NodeCmd {
    /// BGP sessions, like `calicoctl node status`.
    Status {
        /// Output format: wide, yaml or json (default: a table).
        #[arg(short, long, value_enum)]
        output: Option<Format>,
    },
    /// Restart a session held Idle after a max-prefix Cease, or reset an
    /// Established one (Cease / Administrative Reset).
    Reset {
        /// The peer's address or name (see `node status -o wide`).
        peer: String,
    },
}

#[derive(Subcommand, Debug)]
enum IpamCmd {
    /// Pool utilisation (and blocks with --show-blocks).
    Show {
        #[arg(long)]
        show_blocks: bool,
    },
    /// Report inconsistencies; exits non-zero if there are any. With
    /// --node, also the node's allocations without an endpoint record in
    /// --endpoints (run it on that node).
    Check {
        /// The node whose allocations are judged against --endpoints.
        #[arg(long, requires = "network")]
        node: Option<String>,
        /// That node's endpoint records (the CNI's endpoint_dir).
        #[arg(long, default_value = "/var/run/margay/endpoints")]
        endpoints: PathBuf,
        /// The CNI network name (handles are `<network>.<containerID>`).
        #[arg(long, requires = "node")]
        network: Option<String>,
    },
    /// Free one address (--ip) or everything a handle holds (--handle).
    #[command(group(
        clap::ArgGroup::new("what").required(true).args(["ip", "handle"])
    ))]
    Release {
        #[arg(long)]
        ip: Option<IpAddr>,
        #[arg(long)]
        handle: Option<String>,
    },
}

/// `--datastore`'s default.
const DEFAULT_ETCD: &str = "etcd:http://127.0.0.1:2379";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let now = now_unix();
    match cli.command {
        Command::Lab(cmd) => return run_lab(cmd, &cli.datastore).await,
        Command::Node(NodeCmd::Status { output }) => {
            print!(
                "{}",
                status::node_status(
                    &cli.bgpd_socket,
                    output.unwrap_or_default(),
                    now
                )?
            );
        }
        Command::Node(NodeCmd::Reset { peer }) => {
            let done =
                margay_ctlproto::client::reset_peer(&cli.bgpd_socket, &peer)?;
            println!("{done}");
        }
        Command::Routes {
            fib_protocol,
            netns,
            output,
            rejected,
        } => {
            let format = output.unwrap_or_default();
            let text = if rejected {
                routes::show_rejected(&cli.bgpd_socket, format)?
            } else {
                routes::show(
                    &cli.bgpd_socket,
                    fib_protocol,
                    netns.as_deref(),
                    format,
                )?
            };
            print!("{text}");
        }
        Command::ImportCalico { file, output } => {
            let input = resources::read_input(&file)?;
            let imported = import::import_calico(&input, output)?;
            for line in &imported.dropped {
                eprintln!("{line}");
            }
            print!("{}", imported.text);
        }
        Command::Get { kind, name, output } => {
            let kind = Kind::parse(&kind)?;
            let ds = connect(&cli.datastore).await?;
            let now = i64::try_from(now).unwrap_or(i64::MAX);
            print!(
                "{}",
                resources::get(
                    &ds,
                    kind,
                    name.as_deref(),
                    output.unwrap_or_default(),
                    now
                )
                .await?
            );
        }
        Command::Apply { file } => {
            let yaml = resources::read_input(&file)?;
            let ds = connect(&cli.datastore).await?;
            print!("{}", resources::apply(&ds, &file, &yaml).await?);
        }
        Command::Delete(args) => return delete(&cli.datastore, args).await,
        Command::Ipam(cmd) => return ipam_cmd(&cli.datastore, cmd).await,
        Command::Diagnose(args) => {
            return diagnose(&cli.datastore, &cli.bgpd_socket, args).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn diagnose(
    spec: &DatastoreSpec,
    bgpd_socket: &std::path::Path,
    args: DiagnoseArgs,
) -> Result<ExitCode> {
    let ds = connect(spec).await?;
    let opts = diagnose::Options {
        node: args.node,
        network: args.network,
        endpoints: args.endpoints,
        bgpd_socket: bgpd_socket.to_path_buf(),
        fib_protocol: args.fib_protocol,
        remote_netns: args.remote_netns,
    };
    let report = diagnose::diagnose(&ds, &opts, &args.from, &args.to).await?;
    print!(
        "{}",
        diagnose::render(&report, args.output.unwrap_or_default())?
    );
    Ok(if report.whole() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn delete(spec: &DatastoreSpec, args: DeleteArgs) -> Result<ExitCode> {
    let ds = connect(spec).await?;
    match (args.file, args.kind, args.name) {
        (Some(file), _, _) => {
            let yaml = resources::read_input(&file)?;
            let (text, all_found) =
                resources::delete_file(&ds, &file, &yaml).await?;
            print!("{text}");
            Ok(if all_found {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        (None, Some(kind), Some(name)) => {
            let kind = Kind::parse(&kind)?;
            print!("{}", resources::delete(&ds, kind, &name).await?);
            Ok(ExitCode::SUCCESS)
        }
        _ => bail!("delete needs KIND NAME or -f FILE"),
    }
}

async fn ipam_cmd(spec: &DatastoreSpec, cmd: IpamCmd) -> Result<ExitCode> {
    let ds = connect(spec).await?;
    match cmd {
        IpamCmd::Show { show_blocks } => {
            print!("{}", ipam::show(&ds, show_blocks).await?)
        }
        IpamCmd::Check {
            node,
            endpoints,
            network,
        } => {
            let report = match (node, network) {
                (Some(node), Some(net)) => {
                    ipam::check_node(&ds, &node, &net, &endpoints).await?
                }
                _ => ipam::check(&ds).await?,
            };
            print!("{report}");
            if !report.is_clean() {
                return Ok(ExitCode::FAILURE);
            }
        }
        IpamCmd::Release { ip, handle } => {
            let text = match (ip, handle) {
                (Some(ip), _) => ipam::release_ip(&ds, ip).await?,
                (None, Some(h)) => ipam::release_handle(&ds, &h).await?,
                (None, None) => {
                    bail!("ipam release needs --ip IP or --handle HANDLE")
                }
            };
            print!("{text}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn connect(spec: &DatastoreSpec) -> Result<Datastore> {
    Datastore::connect(spec)
        .await
        .with_context(|| format!("connecting to the datastore {spec}"))
}

/// The error and those of its causes that its message does not already
/// include (library errors often embed their source).
fn describe(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
    }
    msg
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_kubectl_like_forms() {
        let cli = Cli::try_parse_from([
            "margayctl",
            "get",
            "ippools",
            "default",
            "-o",
            "yaml",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Get {
                output: Some(Format::Yaml),
                ..
            }
        ));
        assert!(
            Cli::try_parse_from(["margayctl", "get", "x", "-o", "table"])
                .is_err()
        );
        assert!(
            Cli::try_parse_from([
                "margayctl",
                "delete",
                "-f",
                "a.yaml",
                "ippool"
            ])
            .is_err()
        );
        assert!(Cli::try_parse_from(["margayctl", "ipam", "release"]).is_err());
        let err = Cli::try_parse_from([
            "margayctl",
            "--datastore",
            "consul:x",
            "get",
            "node",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown datastore type"), "{err}");
    }

    /// `--route-reflectors` sets the count in RR mode and is refused with
    /// a mesh.
    #[test]
    fn lab_up_route_reflectors() {
        use margay_lab::PeeringMode;
        let mode = |args: &[&str]| {
            let cli = Cli::try_parse_from(
                ["margayctl", "lab", "up"].iter().chain(args),
            )
            .unwrap();
            let Command::Lab(LabCmd::Up {
                mode,
                route_reflectors,
                ..
            }) = cli.command
            else {
                panic!("not lab up")
            };
            lab_mode(&mode, route_reflectors).map_err(|e| e.to_string())
        };
        let rr = ["--mode", "route-reflector"];
        assert_eq!(mode(&rr), Ok((PeeringMode::RouteReflector, 1)));
        let two = [&rr[..], &["--route-reflectors", "2"]].concat();
        assert_eq!(mode(&two), Ok((PeeringMode::RouteReflector, 2)));
        assert_eq!(mode(&[]), Ok((PeeringMode::Mesh, 0)));
        let err = mode(&["--route-reflectors", "2"]).unwrap_err();
        assert!(err.contains("--route-reflectors"), "{err}");
    }

    /// `lab up --datastore kubernetes` picks the Kubernetes lab; the
    /// default picks etcd; a datastore elsewhere is refused, not ignored.
    #[test]
    fn lab_up_datastore() {
        let lab = |args: &[&str]| {
            let cli = Cli::try_parse_from(
                ["margayctl", "lab", "up"].iter().chain(args),
            )
            .unwrap();
            lab_datastore(&cli.datastore).map_err(|e| e.to_string())
        };
        assert_eq!(
            lab(&["--datastore", "kubernetes"]),
            Ok(margay_lab::LabDatastore::Kubernetes)
        );
        assert_eq!(lab(&[]), Ok(margay_lab::LabDatastore::Etcd));
        for given in ["etcd:http://10.0.0.1:2379", "kubernetes:/k", "file:/f"] {
            let err = lab(&["--datastore", given]).unwrap_err();
            assert!(err.contains(given) && err.contains("allowed"), "{err}");
        }
    }
}

// ===== margayctl lab =====

/// `margayctl lab ...`: the local lab fabric.
#[derive(Debug, clap::Subcommand)]
enum LabCmd {
    /// Build the lab and prove pod-to-pod reachability.
    Up {
        /// Number of nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Pods per node.
        #[arg(long, default_value_t = 2)]
        pods_per_node: usize,
        /// mesh (iBGP full mesh) or route-reflector (node1 reflects).
        #[arg(long, default_value = "mesh", value_parser = ["mesh", "route-reflector"])]
        mode: String,
        /// With --mode route-reflector: how many reflectors (nodes 1..=N,
        /// one cluster ID; every client peers with all). Default 1; 2 is
        /// Calico's advice for redundancy.
        #[arg(long)]
        route_reflectors: Option<usize>,
        /// v4, v6 or dual.
        #[arg(long, default_value = "v4", value_parser = ["v4", "v6", "dual"])]
        family: String,
        /// The manifests a kubernetes lab applies (default: the source
        /// tree's deploy/).
        #[arg(long)]
        deploy_dir: Option<std::path::PathBuf>,
        #[command(flatten)]
        common: LabCommon,
    },
    /// Show the running lab.
    Status {
        #[command(flatten)]
        common: LabCommon,
    },
    /// Remove everything the lab created.
    Down {
        #[command(flatten)]
        common: LabCommon,
    },
}

#[derive(Debug, clap::Args)]
struct LabCommon {
    /// Where the lab keeps state, logs and etcd data.
    #[arg(long, default_value = "/var/run/margay-lab")]
    state_dir: std::path::PathBuf,
    /// Where the margay binaries are (default: beside margayctl).
    #[arg(long)]
    bin_dir: Option<std::path::PathBuf>,
}

impl LabCommon {
    fn options(&self) -> anyhow::Result<margay_lab::LabOptions> {
        let bin_dir = match &self.bin_dir {
            Some(d) => d.clone(),
            None => std::env::current_exe()?
                .parent()
                .ok_or_else(|| anyhow::anyhow!("margayctl has no directory"))?
                .to_path_buf(),
        };
        Ok(margay_lab::LabOptions {
            bin_dir,
            state_dir: self.state_dir.clone(),
            ..Default::default()
        })
    }
}

/// The lab's datastore from the global `--datastore`: `kubernetes` (a
/// kube-apiserver the lab starts on its etcd, deploy/ applied with kubectl,
/// agents and CNI with deploy/'s identities) or, by default, etcd (the lab
/// starts its own). A datastore that exists elsewhere is refused, not
/// ignored: the lab never uses one.
fn lab_datastore(
    given: &DatastoreSpec,
) -> anyhow::Result<margay_lab::LabDatastore> {
    let default: DatastoreSpec = DEFAULT_ETCD
        .parse()
        .expect("the default --datastore parses");
    match given {
        DatastoreSpec::Kubernetes { kubeconfig: None } => {
            Ok(margay_lab::LabDatastore::Kubernetes)
        }
        g if *g == default => Ok(margay_lab::LabDatastore::Etcd),
        other => anyhow::bail!(
            "lab up --datastore {other}: the lab starts its own datastore; \
             allowed: kubernetes (kube-apiserver on the lab's etcd), or \
             none for etcd (unset MARGAY_DATASTORE)"
        ),
    }
}

/// The lab's peering mode and reflector count from `--mode` and
/// `--route-reflectors`; a count without reflectors is refused, not
/// ignored.
fn lab_mode(
    mode: &str,
    route_reflectors: Option<usize>,
) -> anyhow::Result<(margay_lab::PeeringMode, usize)> {
    use margay_lab::PeeringMode;
    match (mode, route_reflectors) {
        ("mesh", None) => Ok((PeeringMode::Mesh, 0)),
        ("mesh", Some(_)) => anyhow::bail!(
            "lab up --route-reflectors: only with --mode route-reflector \
             (a mesh has no reflectors)"
        ),
        (_, k) => Ok((PeeringMode::RouteReflector, k.unwrap_or(1))),
    }
}

async fn run_lab(
    cmd: LabCmd,
    datastore: &DatastoreSpec,
) -> anyhow::Result<std::process::ExitCode> {
    use margay_lab::Family;
    use std::process::ExitCode;
    match cmd {
        LabCmd::Up {
            nodes,
            pods_per_node,
            mode,
            route_reflectors,
            family,
            deploy_dir,
            common,
        } => {
            let mut opts = common.options()?;
            opts.nodes = nodes;
            opts.pods_per_node = pods_per_node;
            (opts.mode, opts.route_reflectors) =
                lab_mode(&mode, route_reflectors)?;
            opts.family = match family.as_str() {
                "v6" => Family::V6,
                "dual" => Family::Dual,
                _ => Family::V4,
            };
            opts.datastore = lab_datastore(datastore)?;
            if let Some(d) = deploy_dir {
                opts.deploy_dir = d;
            }
            let summary = margay_lab::up(&opts).await?;
            Ok(if summary.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        LabCmd::Status { common } => {
            print!("{}", margay_lab::status(&common.options()?).await?);
            Ok(ExitCode::SUCCESS)
        }
        LabCmd::Down { common } => {
            let removed = margay_lab::down(&common.options()?)?;
            if removed.is_empty() {
                println!("nothing to remove: no lab is running");
            }
            for r in removed {
                println!("removed {r}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
