//! The running daemon: tasks that move bytes and timers around the
//! [`Reconciler`], which alone holds state.
//!
//! ```text
//!  stream::run ──StreamMsg──┐
//!  blocks (datastore) ──────┤            ┌──────────── main loop ────────────┐
//!  timers: resync, scan, ───┼──────────> │ Reconciler: events in, ops out    │
//!          stale deadline   │            └───────┬───────────────────^───────┘
//!                           │       NlRequest    │                   │ NlResult
//!                           │   (Apply / Dump)   v                   │
//!                           └──────────── netlink_task (owns the sockets)
//! ```
//!
//! One batch is in flight at a time; while it is, changes pile up in the
//! reconciler's dirty set and go out together in the next batch. No batch
//! is sent while a dump is outstanding, so a dump never overwrites the
//! optimistic state of operations it did not see.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::Instrument;

use crate::blocks::{BlockEvent, BlockTracker};
use crate::endpoints;
use crate::metrics::{Metrics, OpLabel};
use crate::netlink::{
    AckMode, Dump, KernelEvent, Netlink, NetlinkError, OpFailure, errno_meaning,
};
use crate::reconcile::{Config, Reconciler};
use crate::route::RouteOp;
use crate::stream::{self, StreamMsg};

/// Daemon settings (the binary's flags).
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub node: String,
    pub bgpd_socket: PathBuf,
    pub protocol: u8,
    pub stale_time: Duration,
    pub resync_interval: Duration,
    pub endpoint_dir: PathBuf,
    pub endpoint_scan_interval: Duration,
    pub iface_prefix: String,
    /// Program this namespace instead of the process's own.
    pub netns: Option<PathBuf>,
    pub ack_mode: AckMode,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
}

/// Requests to the netlink task.
#[derive(Debug)]
enum NlRequest {
    Apply(Vec<RouteOp>),
    Dump,
}

/// What the netlink task reports.
#[derive(Debug)]
enum NlResult {
    Applied {
        ops: Vec<RouteOp>,
        failures: Vec<OpFailure>,
        elapsed: Duration,
    },
    /// The batch failed as a whole (e.g. lost answers); state is unknown.
    ApplyFailed(NetlinkError),
    Dumped(Result<Dump, NetlinkError>),
    Kernel(Vec<KernelEvent>),
}

/// Runs until the future is dropped. `blocks` carries BlockAffinity
/// changes; `None` means no datastore, and blackholes are left alone.
pub async fn run(
    cfg: DaemonConfig,
    blocks: Option<mpsc::Receiver<BlockEvent>>,
    metrics: Arc<Metrics>,
) -> Result<(), DaemonError> {
    let nl =
        Netlink::open(cfg.netns.as_deref(), cfg.protocol, cfg.ack_mode, true)?;
    let (req_tx, req_rx) = mpsc::unbounded_channel();
    let (res_tx, mut res_rx) = mpsc::unbounded_channel();
    let nl_task = tokio::spawn(
        netlink_task(nl, req_rx, res_tx)
            .instrument(tracing::debug_span!("netlink")),
    );
    let _abort_nl = AbortOnDrop(nl_task);
    let (st_tx, mut st_rx) = mpsc::channel(4096);
    let st_task = tokio::spawn(stream::run(cfg.bgpd_socket.clone(), st_tx));
    let _abort_st = AbortOnDrop(st_task);

    let mut rec = Reconciler::new(
        Config {
            protocol: cfg.protocol,
            stale_time: cfg.stale_time,
            iface_prefix: cfg.iface_prefix.clone(),
        },
        Instant::now(),
    );
    let mut tracker = BlockTracker::new(cfg.node.clone());
    let mut blocks = blocks;
    let mut resync = tokio::time::interval(cfg.resync_interval);
    let mut scan = tokio::time::interval(cfg.endpoint_scan_interval);
    let mut publish = tokio::time::interval(Duration::from_secs(1));
    let mut bad_files = HashSet::new();
    let mut applying = false;
    let mut dumping = false;

    loop {
        let deadline = rec.next_deadline();
        tokio::select! {
            Some(msg) = st_rx.recv() => {
                process_stream_msg(&mut rec, msg);
                // Drain what is already queued: one plan for many lines.
                for _ in 0..16_384 {
                    match st_rx.try_recv() {
                        Ok(msg) => process_stream_msg(&mut rec, msg),
                        Err(_) => break,
                    }
                }
            }
            ev = recv_blocks(&mut blocks) => match ev {
                Some(ev) => {
                    if let Some(set) = tracker.apply(ev) {
                        tracing::info!(blocks = set.len(), "confirmed blocks changed");
                        metrics.set_node_blocks(&set);
                        rec.process_blocks(set);
                    }
                }
                None => {
                    tracing::warn!("block affinity watch ended");
                    blocks = None;
                }
            },
            Some(res) = res_rx.recv() => match res {
                NlResult::Applied { ops, failures, elapsed } => {
                    applying = false;
                    process_applied(&mut rec, &metrics, &ops, &failures, elapsed);
                }
                NlResult::ApplyFailed(e) => {
                    applying = false;
                    tracing::error!(error = %e, "route batch failed; resyncing");
                    dumping |= request(&req_tx, NlRequest::Dump, dumping);
                }
                NlResult::Dumped(Ok(dump)) => {
                    dumping = false;
                    metrics.dumps.inc();
                    tracing::debug!(routes = dump.routes.len(), "FIB dumped");
                    rec.process_dump(dump.links, dump.routes);
                }
                NlResult::Dumped(Err(e)) => {
                    dumping = false;
                    tracing::error!(error = %e, "FIB dump failed");
                }
                NlResult::Kernel(events) => {
                    for ev in events {
                        match ev {
                            KernelEvent::RouteNew(r) => rec.process_kernel_new(r),
                            KernelEvent::RouteDel(r) => rec.process_kernel_del(r),
                            KernelEvent::Link { name, present } => {
                                rec.process_link(&name, present);
                            }
                            KernelEvent::Overrun => {
                                tracing::debug!("netlink monitor overrun; resyncing");
                                dumping |= request(&req_tx, NlRequest::Dump, dumping);
                            }
                        }
                    }
                }
            },
            _ = resync.tick() => {
                dumping |= request(&req_tx, NlRequest::Dump, dumping);
            }
            _ = scan.tick() => {
                let scan = endpoints::scan(&cfg.endpoint_dir, &cfg.iface_prefix);
                for e in scan.errors {
                    let text = e.to_string();
                    if bad_files.insert(text.clone()) {
                        tracing::warn!(error = %text, "endpoint file skipped");
                    }
                }
                rec.process_pods(scan.pods);
            }
            _ = publish.tick() => metrics.set_counts(rec.counts()),
            _ = sleep_until(deadline), if deadline.is_some() => {
                rec.process_tick(Instant::now());
            }
        }
        if !applying && !dumping {
            let ops = rec.plan();
            if !ops.is_empty() {
                tracing::debug!(ops = ops.len(), "programming batch");
                applying = request(&req_tx, NlRequest::Apply(ops), false);
            }
        }
    }
}

/// Sends a request unless `busy` (a dump already pending); true if sent.
fn request(
    tx: &mpsc::UnboundedSender<NlRequest>,
    req: NlRequest,
    busy: bool,
) -> bool {
    !busy && tx.send(req).is_ok()
}

fn process_stream_msg(rec: &mut Reconciler, msg: StreamMsg) {
    match msg {
        StreamMsg::Up => rec.process_stream_up(),
        StreamMsg::Event(ev) => {
            let eos = ev == margay_ctlproto::RibEvent::EndOfSnapshot;
            rec.process_rib_event(ev);
            if eos {
                tracing::info!(
                    routes = rec.counts().bgp,
                    "RIB snapshot complete"
                );
            }
        }
        StreamMsg::Down(_) => rec.process_stream_down(Instant::now()),
    }
}

fn process_applied(
    rec: &mut Reconciler,
    metrics: &Metrics,
    ops: &[RouteOp],
    failures: &[OpFailure],
    elapsed: Duration,
) {
    metrics.programming_seconds.observe(elapsed.as_secs_f64());
    for op in ops {
        let op = op_name(op);
        metrics.ops.get_or_create(&OpLabel { op }).inc();
    }
    for f in failures {
        let op = &ops[f.index];
        metrics
            .netlink_errors
            .get_or_create(&OpLabel { op: op_name(op) })
            .inc();
        tracing::warn!(
            route = %op,
            errno = f.error.raw_os_error().unwrap_or(0),
            reason = %errno_meaning(&f.error),
            "kernel refused route"
        );
        rec.process_op_failed(op);
    }
}

fn op_name(op: &RouteOp) -> &'static str {
    match op {
        RouteOp::Replace(_) => "replace",
        RouteOp::Delete(_) => "delete",
    }
}

/// The one task that owns the netlink sockets.
async fn netlink_task(
    mut nl: Netlink,
    mut rx: mpsc::UnboundedReceiver<NlRequest>,
    tx: mpsc::UnboundedSender<NlResult>,
) {
    loop {
        let res = tokio::select! {
            req = rx.recv() => match req {
                None => return,
                Some(NlRequest::Apply(ops)) => {
                    let start = Instant::now();
                    match nl.apply(&ops).await {
                        Ok(failures) => NlResult::Applied {
                            ops,
                            failures,
                            elapsed: start.elapsed(),
                        },
                        Err(e) => NlResult::ApplyFailed(e),
                    }
                }
                Some(NlRequest::Dump) => NlResult::Dumped(nl.dump().await),
            },
            ev = nl.monitor() => match ev {
                Ok(events) => NlResult::Kernel(events),
                Err(e) => {
                    tracing::error!(error = %e, "netlink monitor failed");
                    NlResult::Kernel(vec![KernelEvent::Overrun])
                }
            },
        };
        if tx.send(res).is_err() {
            return;
        }
    }
}

async fn recv_blocks(
    rx: &mut Option<mpsc::Receiver<BlockEvent>>,
) -> Option<BlockEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// Aborts a helper task when the daemon future is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
