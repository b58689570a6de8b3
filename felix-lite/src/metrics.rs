//! Prometheus metrics and the tiny HTTP endpoint that serves them.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::reconcile::Counts;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    pub op: &'static str,
}

/// Everything felix-lite exports.
pub struct Metrics {
    registry: Registry,
    /// Desired routes by kind: bgp, stale, blackhole, pod, conflict.
    pub routes: Family<KindLabel, Gauge>,
    /// Route operations sent, by op (replace, delete).
    pub ops: Family<OpLabel, Counter>,
    /// Operations the kernel refused, by op.
    pub netlink_errors: Family<OpLabel, Counter>,
    /// Seconds to program one batch (send to last ack).
    pub programming_seconds: Histogram,
    /// Full dumps done (start, periodic, after a monitor overrun).
    pub dumps: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("felix_lite");
        let routes = Family::<KindLabel, Gauge>::default();
        let ops = Family::<OpLabel, Counter>::default();
        let netlink_errors = Family::<OpLabel, Counter>::default();
        let programming_seconds =
            Histogram::new(exponential_buckets(0.0001, 4.0, 10));
        let dumps = Counter::default();
        registry.register("routes", "Desired routes by kind", routes.clone());
        registry.register("route_ops", "Route operations sent", ops.clone());
        registry.register(
            "netlink_errors",
            "Route operations the kernel refused",
            netlink_errors.clone(),
        );
        registry.register(
            "programming_seconds",
            "Time to program one batch of route operations",
            programming_seconds.clone(),
        );
        registry.register("dumps", "Full FIB dumps", dumps.clone());
        Metrics {
            registry,
            routes,
            ops,
            netlink_errors,
            programming_seconds,
            dumps,
        }
    }

    /// Publishes the reconciler's counts.
    pub fn set_counts(&self, c: Counts) {
        for (kind, n) in [
            ("bgp", c.bgp),
            ("stale", c.stale),
            ("blackhole", c.blackhole),
            ("pod", c.pod),
            ("conflict", c.conflicts),
        ] {
            self.routes.get_or_create(&KindLabel { kind }).set(n as i64);
        }
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ =
            prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Serves `GET /metrics` (any path, really) on `addr` until the task is
/// dropped.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving metrics");
    loop {
        let (mut conn, _) = listener.accept().await?;
        let metrics = metrics.clone();
        tokio::spawn(async move {
            // Read the request head; its content does not matter.
            let mut buf = [0u8; 2048];
            let _ = conn.read(&mut buf).await;
            let body = metrics.encode();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; \
                 version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes()).await;
            let _ = conn.write_all(body.as_bytes()).await;
        });
    }
}
