//! Service address advertisement, with the semantics of Calico confd's
//! route generator (`confd/pkg/backends/calico/routes.go` and the global
//! ranges of `client.go`). Sans-IO: Service and EndpointSlice events and
//! the BGPConfiguration in, the prefixes this node originates out.
//!
//! What a node announces:
//! - every node: each `serviceClusterIPs` CIDR, each `serviceExternalIPs`
//!   CIDR that is not a single address, and with
//!   `serviceLoadBalancerAggregation: Enabled` (the default) each
//!   `serviceLoadBalancerIPs` CIDR that is not a single address;
//! - per Service, its addresses as /32 (/128): the cluster IPs inside
//!   `serviceClusterIPs`, the `spec.externalIPs` inside
//!   `serviceExternalIPs`, the `status.loadBalancer.ingress[].ip` inside
//!   `serviceLoadBalancerIPs`, when [`advertised`] says so: a Service
//!   whose external (or internal) traffic policy is Local only from the
//!   nodes holding one of its ready endpoints; with aggregation Disabled a
//!   Cluster Service from every node once it has a ready endpoint
//!   anywhere; and a Cluster Service whose external or LoadBalancer
//!   address matches a single-address entry from every node.
//!
//! Cost: a Service event recomputes that Service; an EndpointSlice event
//! projects that slice (its endpoints) and recomputes its Service from the
//! projections of the Service's slices. Routes are reference counted, so
//! two Services sharing an address withdraw it only when both are gone.
//! A relist (the watch could not resume) replaces one kind and recomputes
//! every Service: the only step that costs the cluster's size.
//!
//! Blast radius: a Service carrying an address that does not parse is
//! left out as a whole and reported (kind Service, `namespace/name`,
//! field); a bad CIDR in the BGPConfiguration leaves that entry out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use margay_crds::net::contains;
use margay_crds::{Aggregation, BGPConfigurationSpec};
use margay_datastore::InvalidObject;

/// The label naming an EndpointSlice's Service (discovery.k8s.io/v1).
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// One watch item about Services or EndpointSlices.
#[derive(Debug)]
pub enum ServiceEvent {
    /// Every Service, as listed (the watch started or could not resume).
    ServicesListed(Vec<Service>),
    Service(Box<Service>),
    ServiceDeleted {
        namespace: String,
        name: String,
    },
    /// Every EndpointSlice, as listed.
    SlicesListed(Vec<EndpointSlice>),
    Slice(Box<EndpointSlice>),
    SliceDeleted {
        namespace: String,
        name: String,
    },
}

/// The service ranges of the BGPConfiguration `default` (Calico reads
/// them from the global configuration only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceCfg {
    pub cluster: Vec<IpNetwork>,
    pub external: Vec<IpNetwork>,
    pub load_balancer: Vec<IpNetwork>,
    /// `serviceLoadBalancerAggregation` is Enabled (the default).
    pub aggregate: bool,
}

impl ServiceCfg {
    /// The ranges of `spec` (BGPConfiguration `name`); a CIDR that does
    /// not parse is left out and reported in `invalid`.
    pub fn from_spec(
        spec: &BGPConfigurationSpec,
        name: &str,
        invalid: &mut Vec<InvalidObject>,
    ) -> ServiceCfg {
        let mut parse = |field: &str, list: &[margay_crds::ServiceCidr]| {
            let mut out = Vec::new();
            for (i, c) in list.iter().enumerate() {
                match c.cidr.parse::<IpNetwork>() {
                    Ok(n) => out.push(n),
                    Err(_) => invalid.push(InvalidObject {
                        kind: "BGPConfiguration".into(),
                        name: name.into(),
                        field: format!("spec.{field}[{i}].cidr"),
                        error: format!(
                            "{:?} is invalid: allowed a CIDR such as \
                             \"10.96.0.0/12\"; the entry is not announced",
                            c.cidr
                        ),
                    }),
                }
            }
            out
        };
        ServiceCfg {
            cluster: parse("serviceClusterIPs", &spec.service_cluster_ips),
            external: parse("serviceExternalIPs", &spec.service_external_ips),
            load_balancer: parse(
                "serviceLoadBalancerIPs",
                &spec.service_load_balancer_ips,
            ),
            aggregate: spec.service_load_balancer_aggregation
                != Some(Aggregation::Disabled),
        }
    }

    /// The prefixes every node announces (see the module docs).
    pub fn global(&self) -> BTreeSet<IpNetwork> {
        let mut out: BTreeSet<IpNetwork> =
            self.cluster.iter().copied().collect();
        out.extend(self.external.iter().filter(|n| !single(n)));
        if self.aggregate {
            out.extend(self.load_balancer.iter().filter(|n| !single(n)));
        }
        out
    }
}

/// What of a Service matters here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Svc {
    /// Type ClusterIP, NodePort or LoadBalancer with a cluster IP (not
    /// headless, not ExternalName).
    eligible: bool,
    load_balancer: bool,
    /// externalTrafficPolicy or internalTrafficPolicy is Local.
    local: bool,
    /// `spec.ipFamilies` as address types ("IPv4", "IPv6").
    families: Vec<String>,
    cluster_ips: Vec<IpAddr>,
    external_ips: Vec<IpAddr>,
    lb_ips: Vec<IpAddr>,
}

/// What of an EndpointSlice matters to this node.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Slice {
    /// `namespace/name` of its Service.
    service: String,
    address_type: String,
    /// A ready endpoint anywhere.
    ready_any: bool,
    /// A ready endpoint on this node.
    ready_here: bool,
}

/// The Service routes of one node, kept from the watches.
#[derive(Debug)]
pub struct ServiceRoutes {
    node: String,
    cfg: ServiceCfg,
    services: HashMap<String, Svc>,
    slices: HashMap<String, Slice>,
    /// Service key -> the keys of its slices.
    by_service: HashMap<String, BTreeSet<String>>,
    /// Service key -> the /32s (/128s) it announces now.
    announced: HashMap<String, BTreeSet<IpNetwork>>,
    /// How many Services announce each /32 (/128).
    refs: BTreeMap<IpNetwork, usize>,
    /// Services left out, by key.
    invalid: BTreeMap<String, InvalidObject>,
    services_synced: bool,
    slices_synced: bool,
}

impl ServiceRoutes {
    /// Nothing known yet, for node `node` (its Kubernetes Node name, as
    /// EndpointSlices' `nodeName` spell it).
    pub fn new(node: impl Into<String>) -> ServiceRoutes {
        ServiceRoutes {
            node: node.into(),
            cfg: ServiceCfg::default(),
            services: HashMap::new(),
            slices: HashMap::new(),
            by_service: HashMap::new(),
            announced: HashMap::new(),
            refs: BTreeMap::new(),
            invalid: BTreeMap::new(),
            services_synced: false,
            slices_synced: false,
        }
    }

    /// Whether both kinds have been listed once.
    pub fn synced(&self) -> bool {
        self.services_synced && self.slices_synced
    }

    /// Sets the ranges; a change recomputes every Service (rare: an edit
    /// of the BGPConfiguration). Returns whether the routes changed.
    pub fn set_config(&mut self, cfg: ServiceCfg) -> bool {
        if cfg == self.cfg {
            return false;
        }
        let before = self.routes();
        self.cfg = cfg;
        self.recompute_all();
        before != self.routes()
    }

    /// Applies one event; returns whether the routes or the reported
    /// Services changed.
    pub fn apply(&mut self, ev: ServiceEvent) -> bool {
        let mut changed = false;
        match ev {
            ServiceEvent::ServicesListed(list) => {
                self.services_synced = true;
                self.services.clear();
                self.invalid.clear();
                for s in list {
                    self.put_service(&s);
                }
                self.recompute_all();
                changed = true;
            }
            ServiceEvent::Service(s) => {
                let (key, reported) = self.put_service(&s);
                changed |= reported;
                changed |= self.recompute(&key);
            }
            ServiceEvent::ServiceDeleted { namespace, name } => {
                let key = format!("{namespace}/{name}");
                self.services.remove(&key);
                changed |= self.invalid.remove(&key).is_some();
                changed |= self.recompute(&key);
            }
            ServiceEvent::SlicesListed(list) => {
                self.slices_synced = true;
                self.slices.clear();
                self.by_service.clear();
                for s in list {
                    self.put_slice(&s);
                }
                self.recompute_all();
                changed = true;
            }
            ServiceEvent::Slice(s) => {
                let affected = self.put_slice(&s);
                for key in affected {
                    changed |= self.recompute(&key);
                }
            }
            ServiceEvent::SliceDeleted { namespace, name } => {
                let skey = format!("{namespace}/{name}");
                if let Some(old) = self.slices.remove(&skey) {
                    self.unlink(&old.service, &skey);
                    changed |= self.recompute(&old.service);
                }
            }
        }
        changed
    }

    /// Every prefix this node originates for Services, once both kinds
    /// are listed (before, only the configured ranges).
    pub fn routes(&self) -> BTreeSet<IpNetwork> {
        let mut out = self.cfg.global();
        out.extend(self.refs.keys().copied());
        out
    }

    /// The Services left out because a field does not parse.
    pub fn invalid(&self) -> impl Iterator<Item = &InvalidObject> {
        self.invalid.values()
    }

    // ===== helper methods =====

    /// Keeps the projection of `s`; returns its key and whether what is
    /// reported about it changed.
    fn put_service(&mut self, s: &Service) -> (String, bool) {
        let key = key_of(&s.metadata);
        let reported = match project_service(s) {
            Ok(p) => {
                self.services.insert(key.clone(), p);
                self.invalid.remove(&key).is_some()
            }
            Err((field, value)) => {
                self.services.remove(&key);
                let e = InvalidObject {
                    kind: "Service".into(),
                    name: key.clone(),
                    field,
                    error: format!(
                        "{value:?} is invalid: allowed an IPv4 or IPv6 \
                         address; the Service's addresses are not announced"
                    ),
                };
                tracing::warn!(service = %key, field = %e.field, "left out: invalid");
                self.invalid.insert(key.clone(), e.clone()) != Some(e)
            }
        };
        (key, reported)
    }

    /// Keeps the projection of `s`; returns the Services it changes (its
    /// Service, and its former one if the label changed).
    fn put_slice(&mut self, s: &EndpointSlice) -> Vec<String> {
        let skey = key_of(&s.metadata);
        let mut affected = Vec::new();
        let new = project_slice(s, &self.node);
        if let Some(old) = self.slices.remove(&skey) {
            self.unlink(&old.service, &skey);
            affected.push(old.service);
        }
        if let Some(new) = new {
            self.by_service
                .entry(new.service.clone())
                .or_default()
                .insert(skey.clone());
            if !affected.contains(&new.service) {
                affected.push(new.service.clone());
            }
            self.slices.insert(skey, new);
        }
        affected
    }

    fn unlink(&mut self, service: &str, skey: &str) {
        if let Some(set) = self.by_service.get_mut(service) {
            set.remove(skey);
            if set.is_empty() {
                self.by_service.remove(service);
            }
        }
    }

    /// Recomputes Service `key`'s /32s; returns whether they changed.
    fn recompute(&mut self, key: &str) -> bool {
        let want = self.wanted(key);
        let have = self.announced.remove(key).unwrap_or_default();
        if want == have {
            if !want.is_empty() {
                self.announced.insert(key.to_string(), want);
            }
            return false;
        }
        for p in have.difference(&want) {
            if let Some(n) = self.refs.get_mut(p) {
                *n -= 1;
                if *n == 0 {
                    self.refs.remove(p);
                }
            }
        }
        for p in want.difference(&have) {
            *self.refs.entry(*p).or_default() += 1;
        }
        if !want.is_empty() {
            self.announced.insert(key.to_string(), want);
        }
        true
    }

    fn recompute_all(&mut self) {
        let mut keys: BTreeSet<String> =
            self.services.keys().cloned().collect();
        keys.extend(self.announced.keys().cloned());
        for k in keys {
            self.recompute(&k);
        }
    }

    /// The /32s (/128s) Service `key` should announce from this node.
    fn wanted(&self, key: &str) -> BTreeSet<IpNetwork> {
        let Some(svc) = self.services.get(key) else {
            return BTreeSet::new();
        };
        let slices = self
            .by_service
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|k| self.slices.get(k));
        if !advertised(svc, slices, &self.cfg) {
            return BTreeSet::new();
        }
        let cfg = &self.cfg;
        let inside = |ip: &IpAddr, ranges: &[IpNetwork]| {
            ranges.iter().any(|r| contains(r, &host(*ip)))
        };
        svc.cluster_ips
            .iter()
            .filter(|ip| inside(ip, &cfg.cluster))
            .chain(
                svc.external_ips
                    .iter()
                    .filter(|ip| inside(ip, &cfg.external)),
            )
            .chain(
                svc.lb_ips
                    .iter()
                    .filter(|ip| inside(ip, &cfg.load_balancer)),
            )
            .map(|ip| host(*ip))
            .collect()
    }
}

// ===== global functions =====

/// Whether this node announces `svc`'s addresses, given the projections
/// of its EndpointSlices (Calico's `advertiseThisService`).
fn advertised<'a>(
    svc: &Svc,
    slices: impl Iterator<Item = &'a Slice>,
    cfg: &ServiceCfg,
) -> bool {
    if !svc.eligible {
        return false;
    }
    if !svc.local {
        // A Cluster Service whose address matches a single-address entry
        // is announced from every node: no range covers it.
        let single_match = |ip: &IpAddr, ranges: &[IpNetwork]| {
            ranges.iter().any(|r| single(r) && r.contains(*ip))
        };
        if svc.load_balancer
            && svc
                .lb_ips
                .iter()
                .any(|ip| single_match(ip, &cfg.load_balancer))
        {
            return true;
        }
        if svc
            .external_ips
            .iter()
            .any(|ip| single_match(ip, &cfg.external))
        {
            return true;
        }
        // Aggregated: the ranges cover Cluster Services.
        if cfg.aggregate {
            return false;
        }
    }
    let mut slices = slices.filter(|s| svc.families.contains(&s.address_type));
    if svc.local {
        slices.any(|s| s.ready_here)
    } else {
        slices.any(|s| s.ready_any)
    }
}

/// The projection of a Service, or the field that does not parse.
fn project_service(s: &Service) -> Result<Svc, (String, String)> {
    let spec = s.spec.clone().unwrap_or_default();
    let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
    let headless =
        matches!(spec.cluster_ip.as_deref(), None | Some("" | "None"));
    let eligible =
        matches!(ty, "ClusterIP" | "NodePort" | "LoadBalancer") && !headless;
    let parse = |field: &str, list: &[String]| {
        list.iter()
            .enumerate()
            .filter(|(_, a)| !a.is_empty() && a.as_str() != "None")
            .map(|(i, a)| {
                a.parse::<IpAddr>()
                    .map_err(|_| (format!("{field}[{i}]"), a.clone()))
            })
            .collect::<Result<Vec<IpAddr>, _>>()
    };
    let mut cluster = spec.cluster_ips.clone().unwrap_or_default();
    if cluster.is_empty() {
        cluster.extend(spec.cluster_ip.clone());
    }
    let cluster_ips = if eligible {
        parse("spec.clusterIPs", &cluster)?
    } else {
        Vec::new()
    };
    let external_ips = parse(
        "spec.externalIPs",
        spec.external_ips.as_deref().unwrap_or(&[]),
    )?;
    let ingress: Vec<String> = s
        .status
        .as_ref()
        .and_then(|st| st.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone())
        .collect();
    let lb_ips = parse("status.loadBalancer.ingress[].ip", &ingress)?;
    let mut families = spec.ip_families.clone().unwrap_or_default();
    if families.is_empty() {
        families = cluster_ips
            .iter()
            .map(|ip| family(ip).to_string())
            .collect();
    }
    let local = spec.external_traffic_policy.as_deref() == Some("Local")
        || spec.internal_traffic_policy.as_deref() == Some("Local");
    Ok(Svc {
        eligible,
        load_balancer: ty == "LoadBalancer",
        local,
        families,
        cluster_ips,
        external_ips,
        lb_ips,
    })
}

/// The projection of a slice for `node`; `None` without the Service label.
fn project_slice(s: &EndpointSlice, node: &str) -> Option<Slice> {
    let svc = s.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    let ns = s.metadata.namespace.as_deref().unwrap_or("");
    let mut ready_any = false;
    let mut ready_here = false;
    for e in &s.endpoints {
        // An unset `ready` means ready (discovery.k8s.io/v1).
        let ready = e.conditions.as_ref().and_then(|c| c.ready) != Some(false);
        if !ready || e.addresses.is_empty() {
            continue;
        }
        ready_any = true;
        ready_here |= e.node_name.as_deref() == Some(node);
    }
    Some(Slice {
        service: format!("{ns}/{svc}"),
        address_type: s.address_type.clone(),
        ready_any,
        ready_here,
    })
}

/// `namespace/name`.
fn key_of(
    m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> String {
    format!(
        "{}/{}",
        m.namespace.as_deref().unwrap_or(""),
        m.name.as_deref().unwrap_or("")
    )
}

/// A single-address range (/32 or /128).
fn single(n: &IpNetwork) -> bool {
    n.prefix() == if n.is_ipv4() { 32 } else { 128 }
}

/// `ip` as a host prefix.
fn host(ip: IpAddr) -> IpNetwork {
    IpNetwork::new(ip, if ip.is_ipv4() { 32 } else { 128 })
        .expect("host prefix")
}

/// The EndpointSlice address type of `ip`.
fn family(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
}

#[cfg(test)]
mod tests;
