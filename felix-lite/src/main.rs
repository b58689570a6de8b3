//! `felix-lite`: programs bgpd's best routes, this node's block blackholes
//! and its pods' routes into the kernel FIB.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use felix_lite::daemon::{self, DaemonConfig};
use felix_lite::endpoints::DEFAULT_ENDPOINT_DIR;
use felix_lite::metrics::{self, Metrics};
use felix_lite::netlink::AckMode;
use felix_lite::route::DEFAULT_PROTOCOL;
use margay_datastore::DatastoreSpec;
use tokio::sync::mpsc;

#[derive(Parser, Debug)]
#[command(version, about = "Keeps the kernel FIB equal to bgpd's best routes")]
struct Args {
    /// This node's name (as in the Node resource and BlockAffinity.node).
    #[arg(long, env = "NODENAME")]
    node: String,
    /// Where BlockAffinity objects live: etcd:URL[,URL], kubernetes[:PATH],
    /// file:PATH.
    #[arg(long)]
    datastore: DatastoreSpec,
    /// bgpd's control socket.
    #[arg(long, default_value = margay_ctlproto::DEFAULT_BGPD_SOCKET)]
    bgpd_socket: PathBuf,
    /// Route protocol number that marks margay's routes (Calico's Felix uses
    /// 80, BIRD 12).
    #[arg(long, default_value_t = DEFAULT_PROTOCOL, value_parser = parse_protocol)]
    protocol: u8,
    /// How long routes survive after bgpd's stream drops without a new
    /// snapshot (e.g. 120s, 2m).
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    stale_time: Duration,
    /// Full FIB dump and repair period.
    #[arg(long, default_value = "90s", value_parser = parse_duration)]
    resync_interval: Duration,
    /// Serve Prometheus metrics here (e.g. 127.0.0.1:9099).
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
    /// Directory of the CNI plugin's endpoint files.
    #[arg(long, default_value = DEFAULT_ENDPOINT_DIR)]
    endpoint_dir: PathBuf,
    /// How often the endpoint directory is read.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    endpoint_scan_interval: Duration,
    /// Name prefix of the CNI host-side veths.
    #[arg(long, default_value = "mg")]
    iface_prefix: String,
    /// Program the network namespace at this path (e.g.
    /// /run/netns/NAME) instead of felix-lite's own.
    #[arg(long)]
    netns: Option<PathBuf>,
    /// Ask the kernel to ack every route, or only the last of each batch.
    #[arg(long, value_enum, default_value_t = AckArg::Tail)]
    ack: AckArg,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
    /// Do not program IPPool `natOutgoing` (leave nftables alone).
    #[arg(long)]
    no_nat: bool,
    /// Uninstall: delete margay's nftables table (`inet margay`, the
    /// natOutgoing rules) and exit. Stopping felix-lite keeps it, as it
    /// keeps routes.
    #[arg(long)]
    remove_nat: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AckArg {
    Every,
    Tail,
}

/// Protocol numbers 0-4 belong to the kernel (unspec, redirect, kernel,
/// boot, static): routes of other tools would be taken for ours.
fn parse_protocol(s: &str) -> Result<u8, String> {
    let n: u8 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number from 5 to 255"))?;
    if n < 5 {
        return Err(format!(
            "protocol {n} is reserved by the kernel (0 unspec, 1 redirect, \
             2 kernel, 3 boot, 4 static); use 5-255"
        ));
    }
    Ok(n)
}

/// "120s", "2m", "500ms", "1h", or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let err =
        || format!("{s:?} is not a duration; use e.g. 500ms, 120s, 2m, 1h");
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num.parse().map_err(|_| err())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(err()),
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    init_logging(args.log_json);
    if args.resync_interval.is_zero() || args.endpoint_scan_interval.is_zero() {
        bail!("--resync-interval and --endpoint-scan-interval must be > 0");
    }
    if args.remove_nat {
        felix_lite::nat::nft_remove(args.netns.as_deref())
            .context("removing table inet margay")?;
        tracing::info!("table inet margay removed");
        return Ok(());
    }
    let metrics = Arc::new(Metrics::new());
    let ds = margay_datastore::Datastore::connect(&args.datastore)
        .await
        .with_context(|| {
            format!("connecting to datastore {:?}", args.datastore)
        })?;
    if let Some(addr) = args.metrics_addr {
        let m = metrics.clone();
        let ipam = metrics::IpamSource {
            ds: ds.clone(),
            node: args.node.clone(),
        };
        tokio::spawn(async move {
            if let Err(e) = metrics::serve(addr, m, Some(ipam)).await {
                tracing::error!(%addr, error = %e, "metrics server failed");
            }
        });
    }
    let (blocks_tx, blocks_rx) = mpsc::channel(1024);
    if !args.no_nat {
        tokio::spawn(felix_lite::nat::run(
            ds.clone(),
            args.netns.clone(),
            args.resync_interval,
        ));
    }
    tokio::spawn(felix_lite::blocks::watch_affinities(ds, blocks_tx));
    let cfg = DaemonConfig {
        node: args.node,
        bgpd_socket: args.bgpd_socket,
        protocol: args.protocol,
        stale_time: args.stale_time,
        resync_interval: args.resync_interval,
        endpoint_dir: args.endpoint_dir,
        endpoint_scan_interval: args.endpoint_scan_interval,
        iface_prefix: args.iface_prefix,
        netns: args.netns,
        ack_mode: match args.ack {
            AckArg::Every => AckMode::Every,
            AckArg::Tail => AckMode::Tail,
        },
    };
    tracing::info!(node = %cfg.node, protocol = cfg.protocol, "felix-lite starting");
    tokio::select! {
        res = daemon::run(cfg, Some(blocks_rx), metrics) => {
            res.context("felix-lite failed")?;
        }
        _ = tokio::signal::ctrl_c() => {
            // Routes stay in the FIB on purpose: the next felix-lite takes
            // them over after its first snapshot.
            tracing::info!("interrupted; leaving routes in place");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("120s"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("2 weeks").unwrap_err().contains("120s"));
    }

    #[test]
    fn kernel_protocols_are_refused() {
        assert_eq!(parse_protocol("81"), Ok(81));
        assert!(parse_protocol("3").unwrap_err().contains("boot"));
        assert!(parse_protocol("300").is_err());
    }
}
