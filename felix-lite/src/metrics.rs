//! Prometheus metrics and their `/metrics` endpoint (on margay-httpd).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use ipnetwork::IpNetwork;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::reconcile::Counts;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// An IPPool and this node, as Calico's `ipam_*` gauges label them.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabel {
    pub ippool: String,
    pub node: String,
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
    /// This node's blocks per IPPool (see [`crate::ipam_usage`]).
    pub ipam_blocks: Family<PoolLabel, Gauge>,
    /// Addresses in use in this node's blocks, per IPPool.
    pub ipam_in_use: Family<PoolLabel, Gauge>,
    /// This node's confirmed blocks, as the daemon last saw them.
    node_blocks: Mutex<BTreeSet<IpNetwork>>,
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
        let ipam_blocks = Family::<PoolLabel, Gauge>::default();
        let ipam_in_use = Family::<PoolLabel, Gauge>::default();
        registry.register(
            "ipam_blocks",
            "IPAM blocks affine to this node, by IPPool (read at scrape time)",
            ipam_blocks.clone(),
        );
        registry.register(
            "ipam_allocations_in_use",
            "Addresses allocated in this node's blocks, by IPPool (read at scrape time)",
            ipam_in_use.clone(),
        );
        margay_httpd::register_build_info(
            &mut registry,
            "build_info",
            env!("CARGO_PKG_VERSION"),
        );
        Metrics {
            registry,
            routes,
            ops,
            netlink_errors,
            programming_seconds,
            dumps,
            ipam_blocks,
            ipam_in_use,
            node_blocks: Mutex::default(),
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

    /// Records this node's confirmed blocks (the daemon, on each change).
    pub fn set_node_blocks(&self, blocks: &BTreeSet<IpNetwork>) {
        if let Ok(mut b) = self.node_blocks.lock() {
            b.clone_from(blocks);
        }
    }

    /// Replaces the `ipam_*` series with `usage` for `node`.
    pub fn set_ipam_usage(
        &self,
        node: &str,
        usage: &std::collections::BTreeMap<
            String,
            crate::ipam_usage::PoolUsage,
        >,
    ) {
        self.ipam_blocks.clear();
        self.ipam_in_use.clear();
        for (pool, u) in usage {
            let l = PoolLabel {
                ippool: pool.clone(),
                node: node.to_string(),
            };
            let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            self.ipam_blocks.get_or_create(&l).set(clamp(u.blocks));
            self.ipam_in_use.get_or_create(&l).set(clamp(u.in_use));
        }
    }

    /// Reads this node's IPAM usage from the datastore into the gauges;
    /// on a datastore error the last values stay and the error is logged.
    pub async fn refresh_ipam(
        &self,
        ds: &margay_datastore::Datastore,
        node: &str,
    ) {
        let blocks = self
            .node_blocks
            .lock()
            .map(|b| b.clone())
            .unwrap_or_default();
        match crate::ipam_usage::read(ds, &blocks).await {
            Ok(usage) => self.set_ipam_usage(node, &usage),
            Err(e) => {
                tracing::warn!(error = %e, "IPAM metrics: datastore read failed")
            }
        }
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        margay_httpd::encode(&self.registry)
    }
}

/// Where the `ipam_*` gauges are read from at scrape time.
#[derive(Clone)]
pub struct IpamSource {
    pub ds: margay_datastore::Datastore,
    pub node: String,
}

impl std::fmt::Debug for IpamSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpamSource")
            .field("node", &self.node)
            .finish()
    }
}

/// Serves `GET /metrics` on `addr` until the task is dropped; with `ipam`,
/// each scrape first reads this node's IPAM usage.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    ipam: Option<IpamSource>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving metrics");
    let router = margay_httpd::metrics_router(move || {
        let (metrics, ipam) = (metrics.clone(), ipam.clone());
        async move {
            if let Some(src) = &ipam {
                metrics.refresh_ipam(&src.ds, &src.node).await;
            }
            metrics.encode()
        }
    });
    margay_httpd::serve(listener, router).await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use crate::ipam_usage::PoolUsage;

    use super::*;

    /// `/metrics` over HTTP: the build, the reconciler's counts, one
    /// `# EOF` at the end.
    #[tokio::test]
    async fn the_endpoint_serves_build_info_and_route_counts() {
        let m = Arc::new(Metrics::new());
        m.set_counts(Counts {
            bgp: 3,
            ..Counts::default()
        });
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        tokio::spawn(serve(addr, m, None));
        let mut text = None;
        for _ in 0..100 {
            match margay_httpd::get(addr, "/metrics", Duration::from_secs(5))
                .await
            {
                Ok(body) => {
                    text = Some(body);
                    break;
                }
                // The server task may not be listening yet.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        let text = text.expect("metrics endpoint answers");
        for want in [
            format!(
                "felix_lite_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            ),
            "felix_lite_routes{kind=\"bgp\"} 3".to_string(),
        ] {
            assert!(text.lines().any(|l| l == want), "{want:?} in\n{text}");
        }
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
    }

    /// The `ipam_*` gauges carry pool and node, and a pool this node no
    /// longer uses leaves them.
    #[test]
    fn ipam_gauges_are_by_pool_and_node() {
        let m = Metrics::new();
        let usage =
            |pairs: &[(&str, u64, u64)]| -> BTreeMap<String, PoolUsage> {
                pairs
                    .iter()
                    .map(|(p, blocks, in_use)| {
                        (
                            p.to_string(),
                            PoolUsage {
                                blocks: *blocks,
                                in_use: *in_use,
                            },
                        )
                    })
                    .collect()
            };
        m.set_ipam_usage("n1", &usage(&[("a", 2, 5), ("b", 1, 0)]));
        let text = m.encode();
        for want in [
            "felix_lite_ipam_blocks{ippool=\"a\",node=\"n1\"} 2",
            "felix_lite_ipam_allocations_in_use{ippool=\"a\",node=\"n1\"} 5",
            "felix_lite_ipam_blocks{ippool=\"b\",node=\"n1\"} 1",
        ] {
            assert!(text.lines().any(|l| l == want), "{want:?} in\n{text}");
        }
        m.set_ipam_usage("n1", &usage(&[("a", 1, 1)]));
        let text = m.encode();
        assert!(!text.contains("ippool=\"b\""), "{text}");
    }
}
