//! `bgpd`: margay's BGP speaker daemon.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use futures::StreamExt;
use margay_bgpd::config::daemon_opts::{self, DaemonOpts};
use margay_bgpd::config::{self, Desired, Resources};
use margay_bgpd::speaker::{Speaker, SpeakerCfg};
use margay_bgpd::tasks::{Daemon, Input};
use margay_bgpd::{control, metrics, network, secrets};
use margay_crds::{
    BGPConfiguration, BGPFilter, BGPPeer, BlockAffinity, IPAMBlock, IPPool,
    Node,
};
use margay_datastore::{Datastore, DatastoreSpec};
use tokio::sync::mpsc;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// Changes the log filter at run time (BGPConfiguration
/// `logSeverityScreen`).
type LogHandle = reload::Handle<EnvFilter, Registry>;

/// margay's BGP speaker: peers, routes and policy from the datastore.
#[derive(Debug, Parser)]
#[command(name = "bgpd", version)]
struct Args {
    /// `etcd:URL[,URL]`, `kubernetes[:KUBECONFIG]` or `file:PATH`.
    #[arg(long, env = "MARGAY_DATASTORE")]
    datastore: DatastoreSpec,
    /// This node's name (the Node resource to act as).
    #[arg(long, env = "MARGAY_NODE")]
    node: String,
    /// BGP identifier; default: the node's spec.bgp.ipv4Address.
    #[arg(long)]
    router_id: Option<Ipv4Addr>,
    /// Address to listen on; default: the node's IPv4 address.
    #[arg(long)]
    listen_addr: Option<IpAddr>,
    /// Unix control socket (margay-ctlproto).
    #[arg(long, default_value = margay_ctlproto::DEFAULT_BGPD_SOCKET)]
    control_socket: PathBuf,
    /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9179.
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
    /// trace, debug, info, warn or error (or an EnvFilter directive).
    /// Default: the BGPConfiguration's `logSeverityScreen` (node.<name>,
    /// else default), followed at run time; Info when unset. The flag wins
    /// over the datastore.
    #[arg(long)]
    log_level: Option<String>,
    /// Restarting speaker (RFC 4724, like `bird -R`): set the Restart
    /// State bit and the forwarding-preserved flags in the first OPENs,
    /// because felix-lite kept the FIB while bgpd was down.
    #[arg(long)]
    graceful_restart: bool,
    /// With --graceful-restart: the longest wait, in seconds, for every
    /// peer's End-of-RIB before our own routes go out (RFC 4724 4.1
    /// Selection_Deferral_Timer). Keep it below the 120 s that felix-lite
    /// (--stale-time) and the peers (maxRestartTime) keep our routes.
    #[arg(long, default_value_t = 90)]
    select_defer_time: u64,
    /// How often to re-read the datastore even without a watch event, in
    /// seconds (a safety net: changes are watched).
    #[arg(long, default_value_t = 30)]
    poll_seconds: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let level = args.log_level.as_deref().unwrap_or("info");
    let filter = EnvFilter::try_new(level)
        .with_context(|| format!("--log-level {level:?}"))?;
    let (filter, log) = reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
    // One thread: the daemon is single-threaded by design (2-core nodes).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args, log))
}

async fn run(args: Args, log: LogHandle) -> Result<()> {
    let ds = Datastore::connect(&args.datastore).await.with_context(|| {
        format!("connecting to datastore {:?}", args.datastore)
    })?;
    // The last good copy of each BGPConfiguration, kept in place of a
    // bad new version.
    let mut last_good = BTreeMap::new();
    let (first, opts) = desired(&ds, &args, &mut last_good).await?;
    tracing::info!(router_id = %first.router_id, asn = first.local_as, peers = first.peers.len(), "configuration loaded");
    let speaker = Speaker::new(SpeakerCfg {
        router_id: first.router_id,
        restarting: args.graceful_restart,
        select_defer: Duration::from_secs(args.select_defer_time),
        idle_hold: Duration::from_secs(5),
    });
    // One listener per node address: a dual-stack node has IPv6 sessions
    // (mesh, IPv6 peers) as well as IPv4 ones, and each side of a session
    // may be the one that connects (RFC 4271 6.8).
    // BGPConfiguration bindMode chooses between the node's addresses and
    // every address.
    let listen_ips = daemon_opts::listen_ips(
        args.listen_addr,
        opts.bind_mode,
        first.node_v4,
        first.node_v6,
    );
    let mut listeners = Vec::new();
    for (ip, v6_only) in listen_ips {
        let listen = SocketAddr::new(ip, first.listen_port);
        let listener = network::listen_with(listen, v6_only)
            .with_context(|| format!("listening on {listen}"))?;
        tracing::info!(%listen, "listening");
        listeners.push(Arc::new(listener));
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let ctl = control::bind(&args.control_socket).with_context(|| {
        format!("control socket {}", args.control_socket.display())
    })?;
    tokio::spawn(control::serve(ctl, tx.clone()));
    let m = match args.metrics_addr {
        Some(addr) => {
            let mut reg = prometheus_client::registry::Registry::default();
            let m = metrics::Metrics::new(&mut reg);
            let reg = Arc::new(reg);
            tokio::spawn(async move {
                if let Err(e) = metrics::serve(addr, reg).await {
                    tracing::error!(%addr, "metrics endpoint: {e}");
                }
            });
            Some(m)
        }
        None => None,
    };
    let _ = tx.send(Input::Config(Box::new(first.clone())));
    let mut applied = DaemonOpts {
        // The listeners above are what runs; later changes need a restart.
        bind_mode: opts.bind_mode,
        ..Default::default()
    };
    apply_opts(&args, &log, m.as_ref(), &mut applied, opts);
    let ctx = PollerCtx {
        log,
        metrics: m.clone(),
        opts: applied,
    };
    tokio::spawn(config_poller(ds, args, first, last_good, ctx, tx.clone()));
    tokio::spawn(signals(tx.clone()));
    Daemon::new(speaker, tx, listeners, m).run(rx).await;
    Ok(())
}

/// Re-read the datastore whenever a watched resource changes (and every
/// `--poll-seconds` regardless) and push changed configuration to the main
/// loop. A new block affinity thus reaches the peers within one datastore
/// round trip, not one poll period.
async fn config_poller(
    ds: Datastore,
    args: Args,
    mut last: Desired,
    mut last_good: BTreeMap<String, BGPConfiguration>,
    mut ctx: PollerCtx,
    tx: mpsc::UnboundedSender<Input>,
) {
    let changed = Arc::new(tokio::sync::Notify::new());
    watch_for_changes::<Node>(&ds, &changed);
    watch_for_changes::<BGPConfiguration>(&ds, &changed);
    watch_for_changes::<BGPPeer>(&ds, &changed);
    watch_for_changes::<BGPFilter>(&ds, &changed);
    watch_for_changes::<IPPool>(&ds, &changed);
    watch_for_changes::<BlockAffinity>(&ds, &changed);
    watch_for_changes::<IPAMBlock>(&ds, &changed);
    let mut tick =
        tokio::time::interval(Duration::from_secs(args.poll_seconds.max(1)));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = changed.notified() => {}
        }
        let res = desired(&ds, &args, &mut last_good).await.map(|(d, opts)| {
            apply_opts(
                &args,
                &ctx.log,
                ctx.metrics.as_ref(),
                &mut ctx.opts,
                opts,
            );
            d
        });
        match res {
            Ok(d) if d != last => {
                if d.router_id != last.router_id
                    || d.listen_port != last.listen_port
                {
                    tracing::warn!(
                        "router ID or listen port changed: restart bgpd to apply"
                    );
                }
                last = d.clone();
                if tx.send(Input::Config(Box::new(d))).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("configuration not applied: {e:#}"),
        }
    }
}

/// SIGTERM / SIGINT: shutdown, every peer gets Cease / Administrative
/// Shutdown and withdraws our routes at once. SIGUSR1: planned restart,
/// the sessions just close and the peers keep our routes while bgpd comes
/// back with `--graceful-restart` (RFC 4724).
async fn signals(tx: mpsc::UnboundedSender<Input>) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let restart = tokio::select! {
        _ = term.recv() => false,
        _ = int.recv() => false,
        _ = usr1.recv() => true,
    };
    tracing::info!(restart, "stop requested");
    let _ = tx.send(Input::Shutdown { restart });
    Ok(())
}

/// Wakes `changed` on every change to objects of kind `K`. The events
/// themselves are not used: the poller re-lists everything, so that the
/// derived configuration always comes from one consistent read.
fn watch_for_changes<K: margay_datastore::Object>(
    ds: &Datastore,
    changed: &Arc<tokio::sync::Notify>,
) {
    let mut events = ds.list_and_watch::<K>();
    let changed = changed.clone();
    tokio::spawn(async move {
        while let Some(ev) = events.next().await {
            match ev {
                // A list (the first, or after compaction) may hold changes
                // made since the last read: re-read as for an event.
                Ok(_) => changed.notify_one(),
                // An object that became bad is a change too: the re-read
                // leaves it out and reports it.
                Err(e) if e.invalid_object().is_some() => changed.notify_one(),
                Err(e) => tracing::warn!("watch: {e}"),
            }
        }
    });
}

/// What the poller needs to apply [`DaemonOpts`].
struct PollerCtx {
    log: LogHandle,
    metrics: Option<metrics::Metrics>,
    /// The options last applied.
    opts: DaemonOpts,
}

/// Applies what changed in `new` against `cur`: the log level (unless
/// `--log-level` was given), a bindMode change (needs a restart: the
/// listeners are bound once), and the stored fields bgpd does not act on
/// (an error per new one, and the `bgpd_unsupported_fields` metric).
fn apply_opts(
    args: &Args,
    log: &LogHandle,
    metrics: Option<&metrics::Metrics>,
    cur: &mut DaemonOpts,
    new: DaemonOpts,
) {
    if new.log_level != cur.log_level && args.log_level.is_none() {
        let level = new.log_level.unwrap_or("info");
        match log.reload(EnvFilter::new(level)) {
            Ok(()) => {
                tracing::info!(level, "log level set from logSeverityScreen")
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot change the log level")
            }
        }
    }
    if new.bind_mode != cur.bind_mode {
        tracing::warn!(
            bind_mode = ?new.bind_mode,
            "BGPConfiguration bindMode changed: restart bgpd to apply"
        );
    }
    if new.unsupported != cur.unsupported {
        for u in &new.unsupported {
            if !cur.unsupported.contains(u) {
                tracing::error!(
                    kind = u.kind, name = %u.name, field = u.field,
                    "{} {:?}: {} is set but {}", u.kind, u.name, u.field, u.why
                );
            }
        }
        if let Some(m) = metrics {
            m.set_unsupported(&new.unsupported);
        }
    }
    *cur = new;
}

async fn desired(
    ds: &Datastore,
    args: &Args,
    last_good: &mut BTreeMap<String, BGPConfiguration>,
) -> Result<(Desired, DaemonOpts)> {
    // Objects that do not decode are left out of each list and reported
    // with what derive leaves out: one bad object stops nothing else.
    let mut invalid = Vec::new();
    let mut res = Resources {
        nodes: items(ds.list::<Node>().await?, &mut invalid),
        bgp_configs: items(ds.list::<BGPConfiguration>().await?, &mut invalid),
        peers: items(ds.list::<BGPPeer>().await?, &mut invalid),
        filters: items(ds.list::<BGPFilter>().await?, &mut invalid),
        pools: items(ds.list::<IPPool>().await?, &mut invalid),
        affinities: items(ds.list::<BlockAffinity>().await?, &mut invalid),
        blocks: items(ds.list::<IPAMBlock>().await?, &mut invalid),
        secrets: None,
    };
    // Only the kubernetes datastore has Secrets; read the referenced keys
    // on every derivation so that a rotated password applies.
    if let Datastore::Kubernetes(k) = ds {
        let ns = secrets::namespace(
            std::env::var("POD_NAMESPACE").ok(),
            Path::new(secrets::SA_NAMESPACE_FILE),
        );
        res.secrets = Some(secrets::resolve(k, &ns, &res).await?);
    }
    invalid.extend(config::bgp_config::screen(&mut res, last_good));
    let opts = daemon_opts::daemon_opts(&res, &args.node);
    let mut d = config::derive(&res, &args.node, args.router_id)?;
    // A peer naming a BGPFilter that does not decode is reported by derive
    // as naming a missing filter; the filter itself is reported here.
    d.invalid.append(&mut invalid);
    d.invalid
        .sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
    Ok((d, opts))
}

/// The good objects of `list`; the ones that do not decode go to `invalid`.
fn items<K>(
    list: margay_datastore::List<K>,
    invalid: &mut Vec<margay_datastore::InvalidObject>,
) -> Vec<K> {
    invalid.extend(list.invalid);
    list.items
}
