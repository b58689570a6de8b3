//! From datastore resources to the speaker's desired state, the way
//! Calico's confd `bgp_processor.go` derives BIRD's configuration
//! (calico.md section 4): mesh peers, BGPPeers selecting this node,
//! route-reflector clients, and the originated prefixes.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ipnetwork::IpNetwork;
use margay_crds as crds;
use margay_crds::{
    BGPConfiguration, BGPFilter, BGPPeer, BlockAffinity, IPAMBlock, IPPool,
    Node, Selector,
};
use margay_ctlproto::PeerType;
use margay_datastore::InvalidObject;

use crate::bfd::SessionCfg;
use crate::policy::{GlobalPolicy, NextHopMode, RuleSet, SessionPolicy};
use crate::secrets::Secrets;
use crate::speaker::PeerCfg;
use bgp_wire::Family;

pub mod bgp_config;
pub mod daemon_opts;
mod origin;
mod session_opts;

use origin::global_policy;
pub use origin::originated;
pub use session_opts::EXT_NH_ANNOTATION;
pub use session_opts::MAX_PREFIX_RESTART_ANNOTATION;
use session_opts::{
    bfd_cfg, extended_next_hop_annotation, max_prefix_annotation,
    max_prefix_restart_annotation, password,
};

/// Calico's default AS (confd `client.go`).
pub const DEFAULT_AS: u32 = 64512;
/// Hold time margay proposes when no keepalive is configured (BIRD's).
const DEFAULT_HOLD: u16 = 240;
/// BIRD's `connect retry time 5` in Calico's template.
const CONNECT_RETRY: Duration = Duration::from_secs(5);

/// Every resource kind the speaker reads.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    pub nodes: Vec<Node>,
    pub bgp_configs: Vec<BGPConfiguration>,
    pub peers: Vec<BGPPeer>,
    pub filters: Vec<BGPFilter>,
    pub pools: Vec<IPPool>,
    pub affinities: Vec<BlockAffinity>,
    pub blocks: Vec<IPAMBlock>,
    /// Secret keys for `password.secretKeyRef`, read by the caller with
    /// the kubernetes datastore; `None` for datastores without Secrets.
    pub secrets: Option<Secrets>,
}

/// What the speaker should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub router_id: Ipv4Addr,
    pub local_as: u32,
    pub listen_port: u16,
    pub node_v4: Option<Ipv4Addr>,
    /// The node's IPv6 address: a dual-stack node listens on both.
    pub node_v6: Option<Ipv6Addr>,
    pub peers: Vec<PeerCfg>,
    pub global: GlobalPolicy,
    pub local_routes: HashSet<IpNetwork>,
    /// BFD settings of the peers (by name) that run BFD.
    pub bfd: BTreeMap<String, SessionCfg>,
    /// Objects left out because they are bad (a BGPPeer whose session is
    /// not configured, a BGPFilter, a Node, an IPPool ...), each naming
    /// kind, name and field; everything else is configured. Sorted.
    pub invalid: Vec<InvalidObject>,
}

/// Configuration that cannot be turned into sessions.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("node {0:?} not found in the datastore")]
    NodeNotFound(String),
    #[error(
        "node {0:?} has no spec.bgp.ipv4Address and no --router-id was given; \
         allowed: an IPv4 address such as \"10.0.0.1/24\""
    )]
    NoRouterId(String),
    #[error(transparent)]
    Invalid(#[from] crds::ValidationError),
    #[error("BGPPeer {peer:?}: {reason}")]
    Peer { peer: String, reason: String },
}

impl Resources {
    /// Sort parsed documents (e.g. a `file:` datastore) by kind.
    pub fn from_documents(docs: Vec<crds::AnyResource>) -> Resources {
        let mut r = Resources::default();
        for d in docs {
            match d {
                crds::AnyResource::Node(x) => r.nodes.push(x),
                crds::AnyResource::BGPConfiguration(x) => r.bgp_configs.push(x),
                crds::AnyResource::BGPPeer(x) => r.peers.push(x),
                crds::AnyResource::BGPFilter(x) => r.filters.push(x),
                crds::AnyResource::IPPool(x) => r.pools.push(x),
                crds::AnyResource::BlockAffinity(x) => r.affinities.push(x),
                crds::AnyResource::IPAMBlock(x) => r.blocks.push(x),
                _ => {}
            }
        }
        r
    }
}

/// Derive the desired state of node `node`.
pub fn derive(
    res: &Resources,
    node: &str,
    router_id: Option<Ipv4Addr>,
) -> Result<Desired, ConfigError> {
    let me = res
        .nodes
        .iter()
        .find(|n| name(&n.metadata) == node)
        .ok_or_else(|| ConfigError::NodeNotFound(node.into()))?;
    let my_bgp = me.spec.bgp.clone().unwrap_or_default();
    let my_v4 = my_bgp.ipv4_addr()?;
    let my_v6 = my_bgp.ipv6_addr()?;
    let router_id = router_id
        .or(my_v4)
        .ok_or_else(|| ConfigError::NoRouterId(node.into()))?;
    let mut invalid: Vec<InvalidObject> = Vec::new();
    // Calico: BGPConfiguration "default" is global, "node.<name>" per node.
    // A bad one counts as absent here (built-in defaults); the daemon
    // puts the last good copy in its place first (`bgp_config::screen`).
    let mut config_named = |want: &str| {
        let c = res.bgp_configs.iter().find(|c| name(&c.metadata) == want)?;
        match bgp_config::problem(c, res.secrets.as_ref()) {
            None => Some(c.spec.clone()),
            Some(bad) => {
                invalid.push(bad);
                None
            }
        }
    };
    let global_cfg = config_named("default").unwrap_or_default();
    let node_cfg = config_named(&format!("node.{node}"));
    let cfg_as = global_cfg.as_number.unwrap_or(DEFAULT_AS);
    let local_as = my_bgp.as_number.unwrap_or(cfg_as);
    let listen_port = node_cfg
        .as_ref()
        .and_then(|c| c.listen_port)
        .unwrap_or_else(|| global_cfg.listen_port());
    let my_cluster = my_bgp.rr_cluster_id()?;
    let my_labels = me.labels();
    // Other nodes whose BGP addresses do not parse: no session with them
    // (mesh or peerSelector), every other node still peers.
    let nodes: Vec<&Node> = res
        .nodes
        .iter()
        .filter(|n| match node_bgp_check(n) {
            Ok(()) => true,
            Err(e) => {
                invalid.push(to_invalid(
                    "Node",
                    name(&n.metadata),
                    "spec.bgp",
                    e,
                ));
                false
            }
        })
        .collect();
    // BGPFilters are compiled once; a bad one is reported here and any
    // peer naming it is left out below.
    let filters = compile_filters(res, &mut invalid);
    let local_addr = |peer: IpAddr| -> Option<IpAddr> {
        if peer.is_ipv4() {
            my_v4.map(IpAddr::V4)
        } else {
            my_v6.map(IpAddr::V6)
        }
    };
    let base = |peer_addr: IpAddr, remote_as: u32, cluster_client: bool| {
        SessionPolicy {
            local_as,
            remote_as,
            router_id,
            cluster_id: my_cluster,
            rr_client: cluster_client,
            import: RuleSet::default(),
            export: RuleSet::default(),
            allowed_local_as: 0,
            next_hop_mode: NextHopMode::Auto,
            local_addr: local_addr(peer_addr),
            local_addr_other: if peer_addr.is_ipv4() {
                my_v6.map(IpAddr::V6)
            } else {
                my_v4.map(IpAddr::V4)
            },
            ext_next_hop: false,
        }
    };
    let mut peers: Vec<PeerCfg> = Vec::new();
    let mut bfd: BTreeMap<String, SessionCfg> = BTreeMap::new();

    // Mesh: every other node with a BGP address, unless disabled or we
    // are a route reflector; reflector nodes are skipped (they peer via
    // BGPPeers / RR clients instead).
    if global_cfg.mesh_enabled() && my_cluster.is_none() {
        let mesh_password = match &global_cfg.node_mesh_password {
            Some(p) => password(
                p,
                res.secrets.as_ref(),
                ("BGPConfiguration", "default"),
                "spec.nodeMeshPassword",
            )?,
            None => None,
        };
        let restart = global_cfg.node_mesh_max_restart_time()?;
        // margay extension: fast mesh timers, hold = 3 x keepalive.
        let (mesh_hold, mesh_keepalive) =
            match global_cfg.node_mesh_keepalive_time()? {
                Some(k) => {
                    let hold = secs(k * 3).max(3);
                    (hold, (hold / 3).max(1))
                }
                None => (DEFAULT_HOLD, DEFAULT_HOLD / 3),
            };
        let mesh_bfd = bfd_cfg(
            global_cfg.node_mesh_bfd.as_ref(),
            "BGPConfiguration",
            "spec.nodeMeshBFD",
        )?;
        for n in &nodes {
            if name(&n.metadata) == node {
                continue;
            }
            let Some(b) = &n.spec.bgp else { continue };
            if b.rr_cluster_id()?.is_some() {
                continue;
            }
            for addr in [
                b.ipv4_addr()?.map(IpAddr::V4),
                b.ipv6_addr()?.map(IpAddr::V6),
            ]
            .into_iter()
            .flatten()
            {
                let Some(mine) = local_addr(addr) else {
                    continue;
                };
                let remote_as = b.as_number.unwrap_or(cfg_as);
                peers.push(PeerCfg {
                    name: format!("Mesh_{addr}"),
                    peer_type: PeerType::Mesh,
                    addr,
                    port: listen_port,
                    local_as,
                    remote_as,
                    // One-directional mesh: passive towards a peer whose
                    // address string compares greater than ours (Calico).
                    passive: addr.to_string() > mine.to_string(),
                    hold_time: mesh_hold,
                    keepalive: mesh_keepalive,
                    connect_retry: CONNECT_RETRY,
                    password: mesh_password.clone(),
                    ttl_security: None,
                    source_addr: Some(mine),
                    restart_time: secs(restart),
                    max_prefixes: None,
                    max_prefixes_restart: None,
                    families: vec![family_of(addr)],
                    policy: base(addr, remote_as, false),
                });
                if let (Some(b), Some(p)) = (mesh_bfd, peers.last()) {
                    bfd.entry(p.name.clone()).or_insert(b);
                }
            }
        }
    }

    // The sessions one BGPPeer asks for (none when it does not select
    // this node), or the field at fault and why.
    let peer_sessions = |bp: &BGPPeer,
                         have: &[PeerCfg]|
     -> Result<Vec<Session>, Skip> {
        let s = &bp.spec;
        let pname = name(&bp.metadata).to_string();
        let mut out: Vec<Session> = Vec::new();
        let node_sel = match &s.node {
            Some(_) => None,
            None => Some(
                parse_selector(&s.effective_node_selector(), &pname)
                    .map_err(|e| skip("spec.nodeSelector", e))?,
            ),
        };
        // Whether a node is on the BGPPeer's "node" side.
        let on_node_side =
            |n_name: &str, labels: &BTreeMap<String, String>| match (
                &s.node, &node_sel,
            ) {
                (Some(want), _) => want == n_name,
                (None, Some(sel)) => sel.matches(labels),
                (None, None) => false,
            };
        let selects_me = on_node_side(node, &my_labels);
        let peer_sel = match &s.peer_selector {
            Some(ps) => Some(
                parse_selector(ps, &pname)
                    .map_err(|e| skip("spec.peerSelector", e))?,
            ),
            None => None,
        };
        // Calico's reversePeering: Auto: a node selected by peerSelector
        // also peers with the nodes on the BGPPeer's node side, so a route
        // reflector selected by its clients' BGPPeer peers back with them.
        let reverse = s.reverse_peering() == crds::ReversePeering::Auto
            && peer_sel.as_ref().is_some_and(|ps| ps.matches(&my_labels));
        if !selects_me && !reverse {
            return Ok(out);
        }
        let targets: Vec<(IpAddr, Option<u16>, Option<u32>, bool)> =
            match &peer_sel {
                Some(sel) => {
                    // peerSelector: every matching node (not ourselves), and in
                    // reverse every node on the node side.
                    let mut v = Vec::new();
                    // (Nodes with bad BGP addresses were left out above.)
                    for n in &nodes {
                        let n_name = name(&n.metadata);
                        let labels = n.labels();
                        let forward = selects_me && sel.matches(&labels);
                        let backward = reverse && on_node_side(n_name, &labels);
                        if n_name == node || !(forward || backward) {
                            continue;
                        }
                        let Some(b) = &n.spec.bgp else { continue };
                        let client = my_cluster.is_some()
                            && b.rr_cluster_id().ok().flatten() != my_cluster;
                        for a in [
                            b.ipv4_addr().ok().flatten().map(IpAddr::V4),
                            b.ipv6_addr().ok().flatten().map(IpAddr::V6),
                        ]
                        .into_iter()
                        .flatten()
                        {
                            v.push((
                                a,
                                None,
                                Some(b.as_number.unwrap_or(cfg_as)),
                                client,
                            ));
                        }
                    }
                    v
                }
                None => {
                    let (a, port) = bp
                        .peer_addr()
                        .map_err(|e| skip("spec.peerIP", e.into()))?;
                    vec![(a, port, s.as_number, false)]
                }
            };
        // Never run a session with part of its policy: a peer naming a
        // missing or bad BGPFilter is left out as a whole.
        let filters = filter_rules(&filters, &s.filters, &pname)
            .map_err(|e| skip("spec.filters", e))?;
        let peer_bfd =
            bfd_cfg(s.bfd.as_ref(), "BGPPeer", "spec.bfd").map_err(|e| {
                skip("spec.bfd", ConfigError::Invalid(e.named(&pname)))
            })?;
        let ext_nh = extended_next_hop_annotation(bp)
            .map_err(|e| skip("metadata.annotations", e))?;
        let mp_restart = max_prefix_restart_annotation(bp)
            .map_err(|e| skip("metadata.annotations", e))?;
        let pw = match &s.password {
            Some(p) => password(
                p,
                res.secrets.as_ref(),
                ("BGPPeer", &pname),
                "spec.password",
            )
            .map_err(|e| skip("spec.password", e))?,
            None => None,
        };
        for (addr, port, remote_as, client_by_cluster) in targets {
            if Some(addr) == my_v4.map(IpAddr::V4)
                || Some(addr) == my_v6.map(IpAddr::V6)
                // Two BGPPeers (or both directions of one) naming the
                // same session: the first one wins, as in Calico.
                || have.iter().chain(out.iter().map(|(p, _)| p)).any(|p| p.addr == addr && p.port == port.unwrap_or(179))
            {
                continue;
            }
            let remote_as = remote_as.ok_or_else(|| {
                skip(
                    "spec.asNumber",
                    ConfigError::Peer {
                        peer: pname.clone(),
                        reason: "spec.asNumber is required with spec.peerIP"
                            .into(),
                    },
                )
            })?;
            let peer_local_as = s.local_as_number.unwrap_or(local_as);
            let ibgp = remote_as == peer_local_as;
            let kind = if s.node.is_some() || s.node_selector.is_some() {
                "Node"
            } else {
                "Global"
            };
            let name = match port {
                Some(p) => format!("{kind}_{addr}_port_{p}"),
                None => format!("{kind}_{addr}"),
            };
            // Calico: an iBGP peer is an RR client when we have a cluster
            // ID and the peer has none or another one.
            let rr_client = ibgp
                && my_cluster.is_some()
                && (client_by_cluster || s.peer_selector.is_none());
            let mut policy = base(addr, remote_as, rr_client);
            policy.local_as = peer_local_as;
            policy.import = filters.0.clone();
            policy.export = filters.1.clone();
            policy.allowed_local_as =
                s.num_allowed_local_as_numbers.unwrap_or(0).min(255) as u8;
            policy.next_hop_mode = match s.next_hop_mode() {
                crds::NextHopMode::Auto => NextHopMode::Auto,
                crds::NextHopMode::SelfHop => NextHopMode::SelfAddr,
                crds::NextHopMode::Keep => NextHopMode::Keep,
            };
            let keepalive = s
                .keepalive_time()
                .map_err(|e| skip("spec.keepaliveTime", e.into()))?
                .map(secs);
            let hold =
                keepalive.map_or(DEFAULT_HOLD, |k| k.saturating_mul(3).max(3));
            let restart = s
                .max_restart_time()
                .map_err(|e| skip("spec.maxRestartTime", e.into()))?;
            let cfg = PeerCfg {
                name,
                peer_type: if rr_client {
                    PeerType::RouteReflectorClient
                } else if kind == "Node" {
                    PeerType::NodeSpecific
                } else {
                    PeerType::Global
                },
                addr,
                port: port.unwrap_or(179),
                local_as: peer_local_as,
                remote_as,
                passive: false,
                hold_time: hold,
                keepalive: keepalive.unwrap_or(hold / 3),
                connect_retry: CONNECT_RETRY,
                password: pw.clone(),
                ttl_security: s.ttl_security.filter(|t| *t > 0),
                source_addr: match s.source_address() {
                    crds::SourceAddress::None => None,
                    _ => local_addr(addr),
                },
                restart_time: secs(restart),
                max_prefixes: max_prefix_annotation(bp),
                max_prefixes_restart: mp_restart,
                // RFC 8950: IPv4 unicast rides the IPv6 session too.
                families: if ext_nh && addr.is_ipv6() {
                    vec![Family::IPV6_UNICAST, Family::IPV4_UNICAST]
                } else {
                    vec![family_of(addr)]
                },
                policy,
            };
            out.push((cfg, peer_bfd));
        }
        Ok(out)
    };
    // BGPPeers selecting this node. A bad one is left out (its sessions
    // are not configured) and reported; the others are configured.
    for bp in &res.peers {
        let pname = name(&bp.metadata).to_string();
        match peer_sessions(bp, &peers) {
            Ok(new) => {
                for (p, b) in new {
                    if let Some(b) = b {
                        bfd.entry(p.name.clone()).or_insert(b);
                    }
                    peers.push(p);
                }
            }
            Err(e) => {
                let (field, e) = *e;
                invalid.push(to_invalid("BGPPeer", &pname, field, e));
            }
        }
    }
    peers.sort_by(|a, b| a.name.cmp(&b.name));
    peers.dedup_by(|a, b| a.name == b.name);

    let global = global_policy(res, &global_cfg, &mut invalid);
    let local_routes = originated(res, node, &mut invalid);
    invalid.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
    Ok(Desired {
        router_id,
        local_as,
        listen_port,
        node_v4: my_v4,
        node_v6: my_v6,
        peers,
        global,
        local_routes,
        bfd,
        invalid,
    })
}

/// Every BGPFilter compiled, by name: `Err` (naming the filter and the
/// rule's field) for a bad one, which is also reported in `invalid`.
fn compile_filters(
    res: &Resources,
    invalid: &mut Vec<InvalidObject>,
) -> BTreeMap<String, Result<(RuleSet, RuleSet), crds::ValidationError>> {
    let mut out = BTreeMap::new();
    for f in &res.filters {
        let fname = name(&f.metadata);
        let compiled = compile_filter(f);
        if let Err(e) = &compiled {
            invalid.push(to_invalid(
                "BGPFilter",
                fname,
                "spec",
                ConfigError::Invalid(e.clone()),
            ));
        }
        out.insert(fname.to_string(), compiled);
    }
    out
}

/// One BGPFilter's rules as import and export rule sets. An error names
/// the filter and the rule, e.g. `spec.exportV4[2].interface`.
fn compile_filter(
    f: &BGPFilter,
) -> Result<(RuleSet, RuleSet), crds::ValidationError> {
    let fname = name(&f.metadata);
    let mut import = RuleSet::default();
    let mut export = RuleSet::default();
    let lists = [
        ("spec.importV4", &f.spec.import_v4, &mut import.v4),
        ("spec.importV6", &f.spec.import_v6, &mut import.v6),
        ("spec.exportV4", &f.spec.export_v4, &mut export.v4),
        ("spec.exportV6", &f.spec.export_v6, &mut export.v6),
    ];
    for (field, rules, out) in lists {
        for (i, r) in rules.iter().enumerate() {
            let rule = crate::filter::compile(r).map_err(|mut e| {
                // filter::compile names fields "rule.<field>".
                let rest = e.field.strip_prefix("rule").unwrap_or(&e.field);
                e.field = format!("{field}[{i}]{rest}");
                e.named(fname)
            })?;
            out.push(rule);
        }
    }
    Ok((import, export))
}

/// The peer's filters as import and export rule sets, in order.
fn filter_rules(
    filters: &BTreeMap<
        String,
        Result<(RuleSet, RuleSet), crds::ValidationError>,
    >,
    names: &[String],
    peer: &str,
) -> Result<(RuleSet, RuleSet), ConfigError> {
    let mut import = RuleSet::default();
    let mut export = RuleSet::default();
    for fname in names {
        let f = match filters.get(fname) {
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                return Err(ConfigError::Peer {
                    peer: peer.into(),
                    reason: format!(
                        "spec.filters names BGPFilter {fname:?}, which is \
                         invalid ({e}); the peer is not configured rather \
                         than run with part of its policy"
                    ),
                });
            }
            None => {
                return Err(ConfigError::Peer {
                    peer: peer.into(),
                    reason: format!(
                        "spec.filters names BGPFilter {fname:?}, which does \
                         not exist; the peer is not configured rather than \
                         run without its policy"
                    ),
                });
            }
        };
        import.v4.extend(f.0.v4.iter().cloned());
        import.v6.extend(f.0.v6.iter().cloned());
        export.v4.extend(f.1.v4.iter().cloned());
        export.v6.extend(f.1.v6.iter().cloned());
    }
    Ok((import, export))
}

/// The sessions of one BGPPeer, each with its BFD settings.
type Session = (PeerCfg, Option<SessionCfg>);

/// Why a BGPPeer is left out: the field at fault and the error (boxed:
/// errors are large and this is the rare path).
type Skip = Box<(&'static str, ConfigError)>;

fn skip(field: &'static str, e: ConfigError) -> Skip {
    Box::new((field, e))
}

/// A Node's BGP addresses and cluster ID parse.
fn node_bgp_check(n: &Node) -> Result<(), ConfigError> {
    if let Some(b) = &n.spec.bgp {
        b.ipv4_addr()?;
        b.ipv6_addr()?;
        b.rr_cluster_id()?;
    }
    Ok(())
}

/// `e` about object `kind` `name` as a reported invalid object; the field
/// is the error's own when it names one, else `field`.
fn to_invalid(
    kind: &str,
    name: &str,
    field: &str,
    e: ConfigError,
) -> InvalidObject {
    let (field, error) = match e {
        ConfigError::Invalid(v) => (
            v.field.clone(),
            format!("{} is invalid: {}", v.value, v.allowed),
        ),
        ConfigError::Peer { reason, .. } => (field.to_string(), reason),
        other => (field.to_string(), other.to_string()),
    };
    tracing::warn!(%kind, %name, %field, %error, "left out: invalid");
    InvalidObject {
        kind: kind.into(),
        name: name.into(),
        field,
        error,
    }
}

fn parse_selector(s: &str, peer: &str) -> Result<Selector, ConfigError> {
    Selector::parse(s).map_err(|e| ConfigError::Peer {
        peer: peer.into(),
        reason: format!("selector {s:?}: {e}"),
    })
}

fn name(
    m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> &str {
    m.name.as_deref().unwrap_or("")
}

fn family_of(a: IpAddr) -> Family {
    if a.is_ipv4() {
        Family::IPV4_UNICAST
    } else {
        Family::IPV6_UNICAST
    }
}

fn secs(d: Duration) -> u16 {
    d.as_secs().min(u64::from(u16::MAX)) as u16
}

#[cfg(test)]
mod tests;
