//! `margay-controllers`: the cluster controllers (see the library docs).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use margay_controllers::lease::LeaseConfig;
use margay_controllers::run::{Config, Stats, run};
use margay_datastore::{Datastore, DatastoreSpec};

#[derive(Debug, Parser)]
#[command(
    name = "margay-controllers",
    version,
    about = "margay's cluster controllers"
)]
struct Args {
    /// Datastore: kubernetes[:KUBECONFIG] (the controllers follow
    /// Kubernetes Nodes, so they need the kubernetes datastore).
    #[arg(long, env = "MARGAY_DATASTORE")]
    datastore: DatastoreSpec,
    /// Seconds a margay Node must lack its Kubernetes Node before its
    /// addresses, blocks and Node are released.
    #[arg(long, default_value_t = 300)]
    grace_period_secs: u64,
    /// Seconds a pod must be gone before the addresses allocated to it
    /// are released (Calico's IPAM GC waits about as long).
    #[arg(long, default_value_t = 900)]
    pod_gc_grace_secs: u64,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "margay-system")]
    lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "margay-controllers")]
    lease_name: String,
    /// This replica's identity in the Lease (default: the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds without a renewal after which another replica takes over.
    #[arg(long, default_value_t = 15)]
    lease_duration_secs: u64,
    /// Log filter (tracing env-filter syntax).
    #[arg(long, env = "MARGAY_LOG", default_value = "info")]
    log_level: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log_level))
        .with_writer(std::io::stderr)
        .init();
    if args.lease_duration_secs < 3 {
        bail!(
            "--lease-duration-secs {}: allowed 3 or more",
            args.lease_duration_secs
        );
    }
    let ds = Datastore::connect(&args.datastore)
        .await
        .with_context(|| format!("datastore {}", args.datastore))?;
    let Datastore::Kubernetes(kube) = &ds else {
        bail!(
            "--datastore {}: the controllers follow Kubernetes Nodes; allowed: kubernetes[:KUBECONFIG]",
            args.datastore
        );
    };
    let identity = match args.identity {
        Some(i) => i,
        None => format!(
            "{}-{}",
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap_or_default()
                .trim(),
            std::process::id()
        ),
    };
    let lease_duration = Duration::from_secs(args.lease_duration_secs);
    let cfg = Config {
        grace: Duration::from_secs(args.grace_period_secs),
        pod_grace: Duration::from_secs(args.pod_gc_grace_secs),
        tick: Duration::from_secs(1),
        lease: LeaseConfig {
            namespace: args.lease_namespace,
            name: args.lease_name,
            identity,
            lease_duration,
            renew_every: lease_duration / 3,
        },
    };
    run(
        kube.client().clone(),
        ds.clone(),
        cfg,
        Arc::new(Stats::default()),
    )
    .await;
    Ok(())
}
