//! `bgpd`: margay's BGP speaker daemon.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use futures::StreamExt;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use margay_bgpd::config::Desired;
use margay_bgpd::config::daemon_opts::{self, DaemonOpts};
use margay_bgpd::config_cache::{ConfigCache, Feeds, Update};
use margay_bgpd::speaker::{Speaker, SpeakerCfg};
use margay_bgpd::tasks::{Daemon, Input};
use margay_bgpd::{control, metrics, network, secrets};
use margay_datastore::{CacheItem, Datastore, DatastoreSpec, Feed};
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
    /// How often, in seconds, to derive the configuration again without a
    /// watch event, re-reading the Secrets that peers' passwords name
    /// (kubernetes datastore), so that a rotated password applies. The
    /// datastore's objects are watched, never re-listed on a timer.
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
    // One watch per kind feeds the cache; the first configuration waits
    // until every kind has been listed once.
    let (updates_tx, mut updates) = mpsc::unbounded_channel();
    let mut cache = ConfigCache::new(args.node.clone());
    watch_all(&ds, &updates_tx, cache.feeds());
    // Only the kubernetes datastore has Services to advertise.
    if let Datastore::Kubernetes(k) = &ds {
        watch_services(k.client().clone(), &updates_tx);
        cache = cache.watching_services(&args.node);
    }
    let (first, opts) =
        first_config(&ds, &args, &mut cache, &mut updates).await?;
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
            let serve =
                metrics::serve(addr, Arc::new(reg), m.clone(), tx.clone());
            tokio::spawn(async move {
                if let Err(e) = serve.await {
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
    let poller = Poller {
        ds,
        args,
        cache,
        updates,
        last: first,
        ctx,
    };
    tokio::spawn(poller.run(tx.clone()));
    tokio::spawn(signals(tx.clone()));
    Daemon::new(speaker, tx, listeners, m).run(rx).await;
    Ok(())
}

/// Waits until every kind is listed, then derives the first
/// configuration; an error (no Node, no router ID) stops bgpd, as before
/// it can serve nothing.
async fn first_config(
    ds: &Datastore,
    args: &Args,
    cache: &mut ConfigCache,
    updates: &mut mpsc::UnboundedReceiver<Update>,
) -> Result<(Desired, DaemonOpts)> {
    loop {
        let u = updates.recv().await.context("datastore watches ended")?;
        apply(cache, u);
        while let Ok(u) = updates.try_recv() {
            apply(cache, u);
        }
        if let Some(res) = derive(ds, args, cache).await {
            return res;
        }
    }
}

/// Keeps the speaker's configuration equal to what the watched objects
/// derive (see [`ConfigCache`]): each event is applied to its kind's
/// cache, and only what it can change is derived again; changed
/// configuration goes to the main loop. A new block affinity thus reaches
/// the peers within one watch event, and a pod event elsewhere costs no
/// datastore read.
struct Poller {
    ds: Datastore,
    args: Args,
    cache: ConfigCache,
    updates: mpsc::UnboundedReceiver<Update>,
    /// The configuration last sent.
    last: Desired,
    ctx: PollerCtx,
}

impl Poller {
    async fn run(mut self, tx: mpsc::UnboundedSender<Input>) {
        let mut tick = tokio::time::interval(Duration::from_secs(
            self.args.poll_seconds.max(1),
        ));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    // Secrets are not watched: read them again now and then.
                    if matches!(self.ds, Datastore::Kubernetes(_)) {
                        self.cache.mark_base_stale();
                    }
                }
                u = self.updates.recv() => {
                    let Some(u) = u else { return };
                    apply(&mut self.cache, u);
                    // A burst of events is derived once.
                    while let Ok(u) = self.updates.try_recv() {
                        apply(&mut self.cache, u);
                    }
                }
            }
            let res = match derive(&self.ds, &self.args, &mut self.cache).await
            {
                Some(res) => res,
                None => continue,
            };
            let res = res.map(|(d, opts)| {
                apply_opts(
                    &self.args,
                    &self.ctx.log,
                    self.ctx.metrics.as_ref(),
                    &mut self.ctx.opts,
                    opts,
                );
                d
            });
            match res {
                Ok(d) if d != self.last => {
                    if d.router_id != self.last.router_id
                        || d.listen_port != self.last.listen_port
                    {
                        tracing::warn!(
                            "router ID or listen port changed: restart bgpd to apply"
                        );
                    }
                    self.last = d.clone();
                    if tx.send(Input::Config(Box::new(d))).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("configuration not applied: {e:#}"),
            }
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

/// Starts the watch of each kind bgpd derives its configuration from;
/// their items go to `tx` as [`Update`]s.
fn watch_all(ds: &Datastore, tx: &mpsc::UnboundedSender<Update>, f: Feeds) {
    watch(ds, tx, f.nodes, Update::Node);
    watch(ds, tx, f.bgp_configs, Update::BgpConfig);
    watch(ds, tx, f.peers, Update::Peer);
    watch(ds, tx, f.filters, Update::Filter);
    watch(ds, tx, f.pools, Update::Pool);
    watch(ds, tx, f.affinities, Update::Affinity);
    watch(ds, tx, f.blocks, Update::Block);
}

/// Forwards the informer items of kind `K` (a list, then each change;
/// a list again only after a compaction) until the receiver goes away.
fn watch<K: margay_datastore::Object, V: Send + 'static>(
    ds: &Datastore,
    tx: &mpsc::UnboundedSender<Update>,
    feed: Feed<K, V>,
    wrap: fn(CacheItem<K, V>) -> Update,
) {
    let mut events = ds.list_and_watch_with(feed);
    let tx = tx.clone();
    tokio::spawn(async move {
        while let Some(item) = events.next().await {
            if tx.send(wrap(item)).is_err() {
                return;
            }
        }
    });
}

/// Starts the watches of Services and of the EndpointSlices that belong
/// to one (label `kubernetes.io/service-name`), with kube-rs' watcher: a
/// list, then each change; a list again only when the watch cannot
/// resume (410 Gone). Their items go to `tx` as [`Update::Services`].
fn watch_services(client: kube::Client, tx: &mpsc::UnboundedSender<Update>) {
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use margay_bgpd::services::{SERVICE_NAME_LABEL, ServiceEvent as E};
    use watcher::Config;
    kube_watch(
        Api::<Service>::all(client.clone()),
        Config::default(),
        tx,
        Kinds {
            listed: E::ServicesListed,
            applied: |o| E::Service(Box::new(o)),
            deleted: |namespace, name| E::ServiceDeleted { namespace, name },
        },
    );
    kube_watch(
        Api::<EndpointSlice>::all(client),
        Config::default().labels(SERVICE_NAME_LABEL),
        tx,
        Kinds {
            listed: E::SlicesListed,
            applied: |o| E::Slice(Box::new(o)),
            deleted: |namespace, name| E::SliceDeleted { namespace, name },
        },
    );
}

/// How one Kubernetes kind's watcher items become [`ServiceEvent`]s.
struct Kinds<K> {
    listed: fn(Vec<K>) -> margay_bgpd::services::ServiceEvent,
    applied: fn(K) -> margay_bgpd::services::ServiceEvent,
    deleted: fn(String, String) -> margay_bgpd::services::ServiceEvent,
}

/// Forwards one kube-rs watcher's items: the objects of a (re)list are
/// gathered from `Init` to `InitDone` and sent as one list.
fn kube_watch<K>(
    api: Api<K>,
    cfg: watcher::Config,
    tx: &mpsc::UnboundedSender<Update>,
    kinds: Kinds<K>,
) where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    let tx = tx.clone();
    tokio::spawn(async move {
        let mut events = watcher(api, cfg).default_backoff().boxed();
        let mut listing: Vec<K> = Vec::new();
        while let Some(item) = events.next().await {
            let ev = match item {
                Ok(watcher::Event::Init) => {
                    listing.clear();
                    continue;
                }
                Ok(watcher::Event::InitApply(o)) => {
                    listing.push(o);
                    continue;
                }
                Ok(watcher::Event::InitDone) => {
                    (kinds.listed)(std::mem::take(&mut listing))
                }
                Ok(watcher::Event::Apply(o)) => (kinds.applied)(o),
                Ok(watcher::Event::Delete(o)) => {
                    let m = o.meta();
                    (kinds.deleted)(
                        m.namespace.clone().unwrap_or_default(),
                        m.name.clone().unwrap_or_default(),
                    )
                }
                Err(e) => {
                    tracing::warn!(kind = %K::kind(&()), "watch: {e}");
                    continue;
                }
            };
            if tx.send(Update::Services(ev)).is_err() {
                return;
            }
        }
    });
}

/// Applies one update; errors about no object are logged (the informer
/// retries them itself).
fn apply(cache: &mut ConfigCache, u: Update) {
    if let Err(e) = cache.apply(u) {
        tracing::warn!("watch: {e}");
    }
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

/// Derives again what the applied events changed: `None` when nothing
/// did (or not every kind is listed yet). Only the kubernetes datastore
/// has Secrets; the referenced keys are read at each derivation of the
/// base (rare: peers, nodes, pools, configuration), never per block.
async fn derive(
    ds: &Datastore,
    args: &Args,
    cache: &mut ConfigCache,
) -> Option<Result<(Desired, DaemonOpts)>> {
    if !cache.synced() {
        return None;
    }
    if cache.base_stale() {
        let mut res = cache.base_resources();
        if let Datastore::Kubernetes(k) = ds {
            let ns = secrets::namespace(
                std::env::var("POD_NAMESPACE").ok(),
                Path::new(secrets::SA_NAMESPACE_FILE),
            );
            match secrets::resolve(k, &ns, &res).await {
                Ok(s) => res.secrets = Some(s),
                // The base stays stale: tried again at the next event or
                // tick.
                Err(e) => return Some(Err(e.into())),
            }
        }
        cache.rebase(res, args.router_id);
    }
    cache
        .take_desired()
        .map(|r| r.map_err(|e| anyhow::anyhow!("{e}")))
}
