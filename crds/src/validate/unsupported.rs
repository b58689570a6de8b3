//! Calico fields margay parses but does not act on. Each is refused by
//! validation (so `margayctl apply` and `import-calico` say so), and
//! bgpd reports a stored object carrying one (error log and metric), so
//! that no field is ever accepted and silently ignored. One list, used by
//! all three.

use crate::error::ValidationError;
use crate::{BGPConfigurationSpec, BGPPeerSpec, IPPoolSpec};

/// A set field margay does not implement, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// Dotted path, e.g. `spec.serviceClusterIPs`.
    pub field: &'static str,
    /// A short rendering of the value (never more than [`MAX_VALUE`]).
    pub value: String,
    /// Why, and what to do instead.
    pub why: &'static str,
}

/// Longest value excerpt quoted back.
pub const MAX_VALUE: usize = 80;

const SERVICES: &str = "needs the kubernetes datastore: margay reads \
    Services and EndpointSlices from the Kubernetes API, and the etcd (or \
    file) datastore has no Service source, so nothing would be announced; \
    remove the field or run with --datastore kubernetes";

const SERVICES_NOT_DEFAULT: &str = "read only from the BGPConfiguration \
    named default (as Calico's confd does): the service ranges are \
    cluster-wide; set them there and remove them here";

const IGNORED_INTERFACES: &str = "not supported: margay exports only its \
    IPAM blocks and never reads interface routes, so there are no \
    interface routes to ignore; remove the field";

const REACHABLE_BY: &str = "not supported yet: margay does not install \
    the static route toward peerIP; remove the field and route peerIP via \
    the gateway on the node instead";

const NAMESPACE_SELECTOR: &str = "not supported yet: margay's IPAM does \
    not read namespace labels, so the pool would serve no pod; remove the \
    field (or set it to all()), and pick pools with nodeSelector or by \
    naming them in the CNI config (ipam.ipv4_pools / ipv6_pools)";

impl Unsupported {
    /// The validation error that refuses it.
    pub fn to_error(&self, kind: &str) -> ValidationError {
        ValidationError::new(kind, self.field, &self.value, self.why)
    }
}

/// Why `kind`'s spec field `field` (Calico spelling, without `spec.`)
/// is not supported, for importers that drop it.
pub fn reason(kind: &str, field: &str) -> Option<&'static str> {
    Some(match (kind, field) {
        ("BGPConfiguration", "ignoredInterfaces") => IGNORED_INTERFACES,
        ("BGPPeer", "reachableBy") => REACHABLE_BY,
        ("IPPool", "namespaceSelector") => NAMESPACE_SELECTOR,
        _ => return None,
    })
}

/// Cuts `s` to [`MAX_VALUE`] characters, marking the cut.
fn excerpt(s: String) -> String {
    if s.chars().count() <= MAX_VALUE {
        return s;
    }
    let cut: String = s.chars().take(MAX_VALUE).collect();
    format!("{cut}...")
}

fn list<T>(items: &[T], show: impl Fn(&T) -> String) -> String {
    let shown: Vec<String> = items.iter().map(show).collect();
    excerpt(format!("[{}]", shown.join(", ")))
}

/// The Service advertisement fields a BGPConfiguration sets, refused
/// where there is no Service source (any datastore but kubernetes).
pub fn services_without_kubernetes(
    s: &BGPConfigurationSpec,
) -> Vec<Unsupported> {
    service_fields(s, SERVICES)
}

/// The Service advertisement fields of BGPConfiguration `name` when it is
/// not `default`, the only one they are read from.
pub fn services_outside_default(
    name: &str,
    s: &BGPConfigurationSpec,
) -> Vec<Unsupported> {
    if name == "default" {
        return Vec::new();
    }
    service_fields(s, SERVICES_NOT_DEFAULT)
}

/// The Service advertisement fields `s` sets, each with `why`.
fn service_fields(
    s: &BGPConfigurationSpec,
    why: &'static str,
) -> Vec<Unsupported> {
    let mut out = Vec::new();
    for (field, cidrs) in [
        ("spec.serviceClusterIPs", &s.service_cluster_ips),
        ("spec.serviceExternalIPs", &s.service_external_ips),
        ("spec.serviceLoadBalancerIPs", &s.service_load_balancer_ips),
    ] {
        if !cidrs.is_empty() {
            out.push(Unsupported {
                field,
                value: list(cidrs, |c| format!("{:?}", c.cidr)),
                why,
            });
        }
    }
    if let Some(a) = s.service_load_balancer_aggregation {
        out.push(Unsupported {
            field: "spec.serviceLoadBalancerAggregation",
            value: format!("{a:?}"),
            why,
        });
    }
    out
}

/// The unsupported fields a BGPConfiguration sets (with any datastore).
pub fn bgp_configuration(s: &BGPConfigurationSpec) -> Vec<Unsupported> {
    let mut out = Vec::new();
    if !s.ignored_interfaces.is_empty() {
        out.push(Unsupported {
            field: "spec.ignoredInterfaces",
            value: list(&s.ignored_interfaces, |i| format!("{i:?}")),
            why: IGNORED_INTERFACES,
        });
    }
    out
}

/// The unsupported fields an IPPool sets. A `namespaceSelector` that
/// selects everything (empty or `all()`) changes nothing and is accepted.
pub fn ip_pool(s: &IPPoolSpec) -> Vec<Unsupported> {
    let mut out = Vec::new();
    if let Some(sel) = s.namespace_selector.as_deref()
        && !matches!(sel.trim(), "" | "all()")
    {
        out.push(Unsupported {
            field: "spec.namespaceSelector",
            value: excerpt(format!("{sel:?}")),
            why: NAMESPACE_SELECTOR,
        });
    }
    out
}

/// The unsupported fields a BGPPeer sets.
pub fn bgp_peer(s: &BGPPeerSpec) -> Vec<Unsupported> {
    let mut out = Vec::new();
    if let Some(gw) = s.reachable_by.as_deref().filter(|g| !g.is_empty()) {
        out.push(Unsupported {
            field: "spec.reachableBy",
            value: excerpt(format!("{gw:?}")),
            why: REACHABLE_BY,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Aggregation, ServiceCidr};

    #[test]
    fn service_fields_are_named_and_short() {
        let spec = BGPConfigurationSpec {
            service_cluster_ips: vec![
                ServiceCidr {
                    cidr: "10.96.0.0/12".into(),
                };
                50
            ],
            service_load_balancer_aggregation: Some(Aggregation::Disabled),
            ..Default::default()
        };
        let found = services_without_kubernetes(&spec);
        let fields: Vec<&str> = found.iter().map(|u| u.field).collect();
        assert_eq!(
            fields,
            [
                "spec.serviceClusterIPs",
                "spec.serviceLoadBalancerAggregation"
            ]
        );
        // 50 entries are cut to an excerpt.
        assert!(found[0].value.len() <= MAX_VALUE + 3);
        let msg = found[0].to_error("BGPConfiguration").to_string();
        assert!(msg.contains("spec.serviceClusterIPs"), "{msg}");
        assert!(msg.contains("needs the kubernetes datastore"), "{msg}");
        // Implemented with the kubernetes datastore: not refused as such.
        assert!(bgp_configuration(&spec).is_empty());
        assert!(
            services_without_kubernetes(&BGPConfigurationSpec::default())
                .is_empty()
        );
        // On a node.<name> configuration they are never read.
        assert!(services_outside_default("default", &spec).is_empty());
        let node = services_outside_default("node.n1", &spec);
        assert_eq!(node.len(), 2);
        assert!(node[0].why.contains("named default"), "{}", node[0].why);
    }
}
