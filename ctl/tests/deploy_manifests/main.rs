//! Checks the Kubernetes manifests in deploy/:
//! - every document parses into its k8s-openapi type, and nothing is lost
//!   on the way (k8s-openapi ignores unknown fields, so a typo such as
//!   `hostNetwrok` would otherwise pass silently: the test compares the
//!   document with its typed round trip);
//! - RBAC grants each identity exactly the API calls in [`REQUIRED`]: no
//!   call is missing, no verb or resource is granted beyond it;
//! - [`REQUIRED`] covers every datastore call on a concrete type found in
//!   the components' sources.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::Resource;
use margay_crds::{
    BGPConfiguration, BGPFilter, BGPPeer, BlockAffinity, IPAMBlock, IPAMConfig,
    IPAMHandle, IPPool, IPReservation, Node,
};
use serde_json::Value;

mod manifests;

use manifests::{Manifests, load, typed, workspace};

const NAMESPACE: &str = "margay-system";

/// Who makes API calls: a ServiceAccount (namespace margay-system), or a
/// ClusterRole meant for people (`role:NAME`).
type Identity = &'static str;

/// The API calls each identity makes: (identity, apiGroup, resource,
/// verbs), derived by reading the code. margay-datastore maps its calls
/// onto the Kubernetes API as get -> get, list -> list, create ->
/// create, update -> update (PUT with resourceVersion), delete -> delete
/// (with a resourceVersion precondition), watch -> watch, and
/// list_and_watch -> list + watch (datastore/src/kubernetes.rs,
/// informer.rs).
const REQUIRED: &[(Identity, &str, &str, &[&str])] = &[
    // node/src/register.rs: get, then create or update of its own Node.
    // bgpd: list_and_watch of every Node (mesh, peerSelector).
    (
        "margay-node",
        "margay.io",
        "nodes",
        &["get", "list", "watch", "create", "update"],
    ),
    // bgpd: list_and_watch of its configuration, peers, filters, pools
    // (import/export policy) and of blocks and affinities (originates
    // confirmed blocks affine to this node and borrowed /32s).
    (
        "margay-node",
        "margay.io",
        "bgpconfigurations",
        &["list", "watch"],
    ),
    ("margay-node", "margay.io", "bgppeers", &["list", "watch"]),
    ("margay-node", "margay.io", "bgpfilters", &["list", "watch"]),
    // node/src/default_pool.rs: list, then create the default pools.
    (
        "margay-node",
        "margay.io",
        "ippools",
        &["list", "watch", "create"],
    ),
    (
        "margay-node",
        "margay.io",
        "ipamblocks",
        &["get", "list", "watch"],
    ),
    (
        "margay-node",
        "margay.io",
        "blockaffinities",
        &["list", "watch"],
    ),
    // node/src/kube_node.rs: get, then watch_object (list + watch) of
    // its own core/v1 Node.
    ("margay-node", "", "nodes", &["get", "list", "watch"]),
    // bgpd/src/main.rs watch_services: kube-rs watchers (list + watch)
    // of Services and of EndpointSlices labelled with their Service.
    ("margay-node", "", "services", &["list", "watch"]),
    (
        "margay-node",
        "discovery.k8s.io",
        "endpointslices",
        &["list", "watch"],
    ),
    // bgpd: BGPPeer password.secretKeyRef (namespaced Role).
    ("margay-node", "", "secrets", &["get"]),
    // ipam/src/ipam.rs load_ctx: get IPAMConfig and this Node, list pools
    // and reservations; snapshot (release_empty_blocks, gc) lists Nodes.
    // ipam/src/ctx_cache.rs watch(), in the CNI server (the DaemonSet's
    // margay-cni container, with the plugin's kubeconfig):
    // list_and_watch_with (list + watch) of IPAMConfig, pools,
    // reservations, Nodes and affinities.
    (
        "margay-cni",
        "margay.io",
        "ipamconfigs",
        &["get", "list", "watch"],
    ),
    ("margay-cni", "margay.io", "ippools", &["list", "watch"]),
    (
        "margay-cni",
        "margay.io",
        "ipreservations",
        &["list", "watch"],
    ),
    (
        "margay-cni",
        "margay.io",
        "nodes",
        &["get", "list", "watch"],
    ),
    // ipam/src/{assign,claim,handle,release,store}.rs: the two-phase
    // claim, CAS updates, soft delete (update) then delete.
    (
        "margay-cni",
        "margay.io",
        "ipamblocks",
        &["get", "list", "create", "update", "delete"],
    ),
    (
        "margay-cni",
        "margay.io",
        "blockaffinities",
        &["get", "list", "watch", "create", "update", "delete"],
    ),
    (
        "margay-cni",
        "margay.io",
        "ipamhandles",
        &["get", "list", "create", "update", "delete"],
    ),
    // controllers/src/run.rs: the Kubernetes Nodes' names (metadata
    // watch), the margay Nodes (list_and_watch, delete of a departed one);
    // lease.rs: get, create, update of its Lease (namespaced Role).
    ("margay-controllers", "", "nodes", &["list", "watch"]),
    // run.rs pods(): the pods' names (metadata watch) for the pod GC.
    ("margay-controllers", "", "pods", &["list", "watch"]),
    // The pod GC: release_ips lists the pools.
    ("margay-controllers", "margay.io", "ippools", &["list"]),
    (
        "margay-controllers",
        "margay.io",
        "nodes",
        &["list", "watch", "delete"],
    ),
    (
        "margay-controllers",
        "coordination.k8s.io",
        "leases",
        &["get", "create", "update"],
    ),
    // ipam/src/departed.rs (gc, release_affinity): list, CAS updates,
    // soft delete then delete; handles lose freed addresses. run.rs
    // blocks(): list_and_watch for the pod GC.
    (
        "margay-controllers",
        "margay.io",
        "ipamblocks",
        &["get", "list", "watch", "update", "delete"],
    ),
    (
        "margay-controllers",
        "margay.io",
        "blockaffinities",
        &["get", "list", "update", "delete"],
    ),
    (
        "margay-controllers",
        "margay.io",
        "ipamhandles",
        &["get", "update", "delete"],
    ),
    // margayctl (ctl/src/resources.rs, ipam.rs): get/list for `get` and
    // `ipam show|check`, create/update for `apply`, delete for `delete`
    // and `ipam release` (handles).
    (
        "role:margay-admin",
        "margay.io",
        "ippools",
        &["get", "list", "create", "update", "delete"],
    ),
    (
        "role:margay-admin",
        "margay.io",
        "bgppeers",
        &["get", "list", "create", "update", "delete"],
    ),
    (
        "role:margay-admin",
        "margay.io",
        "bgpconfigurations",
        &["get", "list", "create", "update", "delete"],
    ),
    (
        "role:margay-admin",
        "margay.io",
        "bgpfilters",
        &["get", "list", "create", "update", "delete"],
    ),
    (
        "role:margay-admin",
        "margay.io",
        "nodes",
        &["get", "list", "create", "update", "delete"],
    ),
    (
        "role:margay-admin",
        "margay.io",
        "ipamblocks",
        &["get", "list", "create", "update", "delete"],
    ),
    (
        "role:margay-admin",
        "margay.io",
        "blockaffinities",
        &["get", "list", "create", "update", "delete"],
    ),
    (
        "role:margay-admin",
        "margay.io",
        "ipamhandles",
        &["get", "list", "create", "update", "delete"],
    ),
    (
        "role:margay-admin",
        "margay.io",
        "ipamconfigs",
        &["get", "list", "create", "update", "delete"],
    ),
    (
        "role:margay-admin",
        "margay.io",
        "ipreservations",
        &["get", "list", "create", "update", "delete"],
    ),
];

/// Which crates' code runs as which identity.
const CRATES: &[(Identity, &str)] = &[
    ("margay-node", "node"),
    ("margay-node", "bgpd"),
    ("margay-node", "felix-lite"),
    ("margay-cni", "cni"),
    ("margay-cni", "ipam"),
    ("margay-controllers", "controllers"),
    ("role:margay-admin", "ctl"),
];

/// The plural (API resource name) of each margay kind, from the CRD types.
fn plurals() -> BTreeMap<&'static str, String> {
    fn p<K: Resource<DynamicType = ()>>() -> String {
        K::plural(&()).into_owned()
    }
    BTreeMap::from([
        ("IPPool", p::<IPPool>()),
        ("BGPPeer", p::<BGPPeer>()),
        ("BGPConfiguration", p::<BGPConfiguration>()),
        ("BGPFilter", p::<BGPFilter>()),
        ("Node", p::<Node>()),
        ("IPAMBlock", p::<IPAMBlock>()),
        ("BlockAffinity", p::<BlockAffinity>()),
        ("IPAMHandle", p::<IPAMHandle>()),
        ("IPAMConfig", p::<IPAMConfig>()),
        ("IPReservation", p::<IPReservation>()),
    ])
}

/// (apiGroup, resource, verb) triples granted by `rules`; wildcards and
/// resourceNames-free rules only.
fn expand(
    rules: &[PolicyRule],
    at: &str,
) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for r in rules {
        assert!(r.non_resource_urls.is_none(), "{at}: nonResourceURLs");
        let groups = r.api_groups.clone().unwrap_or_default();
        let resources = r.resources.clone().unwrap_or_default();
        for g in &groups {
            for res in &resources {
                for v in &r.verbs {
                    assert!(
                        g != "*" && res != "*" && v != "*",
                        "{at}: wildcard in {g}/{res}/{v}: not least privilege"
                    );
                    out.insert((g.clone(), res.clone(), v.clone()));
                }
            }
        }
    }
    out
}

/// What each identity is granted: service accounts through their
/// bindings, `role:NAME` through an unbound ClusterRole itself.
fn granted(
    m: &Manifests,
) -> BTreeMap<String, BTreeSet<(String, String, String)>> {
    let mut out: BTreeMap<String, BTreeSet<_>> = BTreeMap::new();
    let cluster_role = |name: &str| {
        m.cluster_roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| {
                panic!("ClusterRole {name} is bound but not defined")
            })
    };
    let bound: BTreeSet<&str> = m
        .cluster_role_bindings
        .iter()
        .map(|b| b.role_ref.name.as_str())
        .collect();
    // ClusterRoles bound to no ServiceAccount are for people (`role:NAME`).
    for cr in &m.cluster_roles {
        let name = cr.metadata.name.clone().unwrap_or_default();
        if bound.contains(name.as_str()) {
            continue;
        }
        let rules = cr.rules.clone().unwrap_or_default();
        out.entry(format!("role:{name}"))
            .or_default()
            .extend(expand(&rules, &format!("ClusterRole {name}")));
    }
    for b in &m.cluster_role_bindings {
        assert_eq!(b.role_ref.kind, "ClusterRole");
        let rules = cluster_role(&b.role_ref.name)
            .rules
            .clone()
            .unwrap_or_default();
        for s in b.subjects.iter().flatten() {
            assert_eq!(s.kind, "ServiceAccount");
            assert_eq!(s.namespace.as_deref(), Some(NAMESPACE));
            out.entry(s.name.clone())
                .or_default()
                .extend(expand(&rules, &b.role_ref.name));
        }
    }
    for b in &m.role_bindings {
        assert_eq!(b.metadata.namespace.as_deref(), Some(NAMESPACE));
        assert_eq!(b.role_ref.kind, "Role", "RoleBindings bind Roles here");
        let role = m
            .roles
            .iter()
            .find(|r| {
                r.metadata.name.as_deref() == Some(b.role_ref.name.as_str())
            })
            .unwrap_or_else(|| panic!("Role {} not defined", b.role_ref.name));
        assert_eq!(role.metadata.namespace.as_deref(), Some(NAMESPACE));
        let rules = role.rules.clone().unwrap_or_default();
        for s in b.subjects.iter().flatten() {
            out.entry(s.name.clone())
                .or_default()
                .extend(expand(&rules, &b.role_ref.name));
        }
    }
    out
}

fn required() -> BTreeMap<String, BTreeSet<(String, String, String)>> {
    let mut out: BTreeMap<String, BTreeSet<_>> = BTreeMap::new();
    for (who, group, res, verbs) in REQUIRED {
        for v in *verbs {
            out.entry(who.to_string()).or_default().insert((
                group.to_string(),
                res.to_string(),
                v.to_string(),
            ));
        }
    }
    out
}

#[test]
fn manifests_parse_into_kubernetes_types() {
    let m = load();
    assert_eq!(m.namespaces.len(), 1);
    assert_eq!(m.daemonsets.len(), 1);
    assert!(!m.config_maps.is_empty());
    assert!(!m.service_accounts.is_empty());
    // deploy/crds/ (generated by margay-crds) names every kind RBAC uses.
    if !m.crds.is_empty() {
        let crd_plurals: BTreeSet<String> = m
            .crds
            .iter()
            .filter(|c| c.spec.group == "margay.io")
            .map(|c| c.spec.names.plural.clone())
            .collect();
        let want: BTreeSet<String> = plurals().into_values().collect();
        assert_eq!(crd_plurals, want);
    }
}

#[test]
fn rbac_grants_exactly_the_calls_the_code_makes() {
    let m = load();
    let granted = granted(&m);
    let required = required();
    for (who, calls) in &required {
        let have = granted.get(who).cloned().unwrap_or_default();
        let missing: Vec<_> = calls.difference(&have).collect();
        assert!(missing.is_empty(), "{who} lacks {missing:?}");
        let extra: Vec<_> = have.difference(calls).collect();
        assert!(
            extra.is_empty(),
            "{who} is granted more than it uses: {extra:?}"
        );
    }
    for who in granted.keys() {
        assert!(
            required.contains_key(who),
            "{who} is granted rights but the table lists no call for it"
        );
    }
    // Every margay.io resource named is a real CRD plural.
    let plurals: BTreeSet<String> = plurals().into_values().collect();
    for (_, group, res, _) in REQUIRED {
        if *group == "margay.io" {
            assert!(plurals.contains(*res), "{res} is not a margay.io plural");
        }
    }
    // Secrets are readable only in margay-system (a Role, not a
    // ClusterRole), and only with get.
    for cr in &m.cluster_roles {
        let rules = cr.rules.clone().unwrap_or_default();
        assert!(
            !expand(&rules, "").iter().any(|(_, r, _)| r == "secrets"),
            "ClusterRole {:?} grants secrets cluster-wide",
            cr.metadata.name
        );
    }
}

#[test]
fn table_covers_typed_datastore_calls_in_the_sources() {
    let plurals = plurals();
    let required = required();
    // Datastore helpers whose turbofish names the kind, and the verbs
    // each one uses.
    let calls: &[(&str, &[&str])] = &[
        ("get", &["get"]),
        ("get_live", &["get"]),
        ("list", &["list"]),
        ("list_live", &["list"]),
        ("watch", &["watch"]),
        ("list_and_watch", &["list", "watch"]),
        ("delete", &["delete"]),
        ("hard_delete", &["delete"]),
    ];
    let mut checked = 0;
    for (who, krate) in CRATES {
        let src = workspace().join(krate).join("src");
        if !src.is_dir() {
            continue;
        }
        let mut files = Vec::new();
        rs_files(&src, &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).expect("reading source");
            // A `Feed<K..>` feeds a cache from list_and_watch_with.
            let feeds = feed_kinds(&text);
            let found = calls
                .iter()
                .map(|(call, verbs)| (typed_calls(&text, call), *call, *verbs))
                .chain(std::iter::once((
                    feeds,
                    "Feed",
                    &["list", "watch"][..],
                )));
            for (kinds, call, verbs) in found {
                for kind in kinds {
                    let Some(plural) = plurals.get(kind.as_str()) else {
                        continue;
                    };
                    for verb in verbs {
                        checked += 1;
                        let key = (
                            "margay.io".to_string(),
                            plural.clone(),
                            verb.to_string(),
                        );
                        assert!(
                            required
                                .get(*who)
                                .is_some_and(|s| s.contains(&key)),
                            "{}: {call}::<{kind}> needs {verb} on {plural} for {who}, \
                             which REQUIRED (and so RBAC) lacks",
                            file.display()
                        );
                    }
                }
            }
        }
    }
    assert!(
        checked > 0,
        "found no typed datastore call at all: is the scan broken?"
    );
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("reading src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rs_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Kinds `K` in `call::<K>(` or `.call::<K>(` occurrences in `text`,
/// skipping `#[cfg(test)]` modules' bodies is not attempted: tests use
/// the same calls.
fn typed_calls(text: &str, call: &str) -> Vec<String> {
    kinds_after(text, &format!("{call}::<"), &[">("])
}

/// Kinds `K` in `Feed<K>` / `Feed<K, V>` occurrences in `text` (a cache
/// fed by `list_and_watch_with`).
fn feed_kinds(text: &str) -> Vec<String> {
    kinds_after(text, "Feed<", &[",", ">"])
}

/// The identifier after each whole-word `pat` in `text` that one of
/// `then` follows (`pat` not the tail of e.g. `my_get::<`).
fn kinds_after(text: &str, pat: &str, then: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(pos) = rest.find(pat) {
        let before = rest[..pos].chars().next_back();
        let after = &rest[pos + pat.len()..];
        rest = after;
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let kind: String = after
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if then.iter().any(|t| after[kind.len()..].starts_with(t)) {
            out.push(kind);
        }
    }
    out
}

#[test]
fn feed_scanner_finds_the_watched_kinds() {
    let text = "pub config: Feed<IPAMConfig>,\n nodes: Feed<Node, Option<L>>,\n \
                MyFeed<IPPool> x; feed: Feed<K, V>";
    assert_eq!(feed_kinds(text), vec!["IPAMConfig", "Node", "K"]);
}

#[test]
fn typed_call_scanner_finds_whole_calls_only() {
    let text = "ds.get::<IPPool>(n); get_live::<IPAMBlock>(&ds, n); \
                my_get::<Node>(x); ds.get::<K>(n); list::<Vec<u8>>()";
    assert_eq!(typed_calls(text, "get"), vec!["IPPool", "K"]);
    assert_eq!(typed_calls(text, "get_live"), vec!["IPAMBlock"]);
    assert!(typed_calls(text, "list").is_empty());
}

#[test]
fn daemonset_is_host_network_with_minimal_capabilities_and_probes() {
    let m = load();
    let ds = &m.daemonsets[0];
    let pod = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(pod.service_account_name.as_deref(), Some("margay-node"));
    let sa_names: BTreeSet<_> = m
        .service_accounts
        .iter()
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    assert!(sa_names.contains("margay-node"), "{sa_names:?}");
    let init = pod
        .init_containers
        .as_ref()
        .expect("an install-cni init container");
    let cni = init
        .iter()
        .find(|c| c.name == "install-cni")
        .expect("install-cni");
    let mounts: BTreeSet<_> = cni
        .volume_mounts
        .iter()
        .flatten()
        .map(|v| v.mount_path.clone())
        .collect();
    assert!(
        mounts.contains("/host/opt/cni/bin")
            && mounts.contains("/host/etc/cni/net.d")
    );
    let main = pod
        .containers
        .iter()
        .find(|c| c.name == "margay-node")
        .expect("the margay-node container");
    let caps = main
        .security_context
        .as_ref()
        .and_then(|s| s.capabilities.as_ref())
        .expect("capabilities");
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    let added: BTreeSet<_> = caps.add.iter().flatten().cloned().collect();
    assert_eq!(
        added,
        BTreeSet::from([
            "NET_ADMIN".to_string(),
            "NET_BIND_SERVICE".to_string()
        ])
    );
    assert_ne!(
        main.security_context.as_ref().and_then(|s| s.privileged),
        Some(true)
    );
    let args = main.args.clone().unwrap_or_default().join(" ");
    for flag in [
        "--node=$(NODE_NAME)",
        "--health-addr=0.0.0.0:9099",
        // The CNI verbs are the margay-cni container's, not the agent's.
        "--cni-socket=none",
    ] {
        assert!(args.contains(flag), "{args}");
    }
    let probe_path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    assert_eq!(probe_path(&main.liveness_probe).as_deref(), Some("/livez"));
    assert_eq!(
        probe_path(&main.readiness_probe).as_deref(),
        Some("/readyz")
    );
    let annotations = ds
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    assert_eq!(
        annotations.get("prometheus.io/scrape").map(String::as_str),
        Some("true")
    );
    // Every ConfigMap key the pod references exists.
    let cm = m
        .config_maps
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some("margay-config"))
        .expect("margay-config");
    let data = cm.data.clone().unwrap_or_default();
    for c in init.iter().chain(&pod.containers) {
        for e in c.env.iter().flatten() {
            if let Some(r) = e
                .value_from
                .as_ref()
                .and_then(|v| v.config_map_key_ref.as_ref())
            {
                assert_eq!(r.name, "margay-config");
                assert!(
                    data.contains_key(&r.key),
                    "missing ConfigMap key {}",
                    r.key
                );
            }
        }
    }
    // The conflist template is valid JSON once substituted.
    let conf = data["cni_network_config"]
        .replace("__NODE_NAME__", "n1")
        .replace("__MTU__", "1500");
    let conf: Value = serde_json::from_str(&conf).expect("conflist is JSON");
    assert_eq!(conf["plugins"][0]["type"], "margay");
    cni_server_is_the_default_path(pod, &conf);
}

/// The CNI fast path by default: the conflist names the socket the
/// privileged margay-cni container serves (and nothing else), in a
/// hostPath directory the plugin on the host sees at the same path; the
/// server reads the plugin's kubeconfig (margay-cni's identity).
fn cni_server_is_the_default_path(
    pod: &k8s_openapi::api::core::v1::PodSpec,
    conf: &Value,
) {
    let socket = conf["plugins"][0]["agent_socket"]
        .as_str()
        .expect("the conflist names agent_socket");
    let cni = pod
        .containers
        .iter()
        .find(|c| c.name == "margay-cni")
        .expect("a margay-cni container");
    assert_eq!(
        cni.command.as_deref(),
        Some(&["margay-node".to_string()][..])
    );
    let args = cni.args.clone().unwrap_or_default();
    assert_eq!(
        args[..2],
        ["cni-server".to_string(), format!("--socket={socket}")]
    );
    // Its metrics address is the one the agent merges.
    let metrics = args
        .iter()
        .find_map(|a| a.strip_prefix("--metrics-addr="))
        .expect("the CNI server's --metrics-addr");
    let agent = pod
        .containers
        .iter()
        .find(|c| c.name == "margay-node")
        .and_then(|c| c.args.clone())
        .unwrap_or_default();
    assert!(
        agent.contains(&format!("--cni-server-metrics-addr={metrics}")),
        "{agent:?}"
    );
    let sc = cni.security_context.as_ref().expect("securityContext");
    assert_eq!(sc.privileged, Some(true), "setns and /proc/sys need it");
    assert_eq!(sc.run_as_user, Some(0));
    // The socket's directory is a host directory mounted at the same
    // path (the plugin connects on the host).
    let mount = |c: &k8s_openapi::api::core::v1::Container, path: &str| {
        c.volume_mounts
            .iter()
            .flatten()
            .filter(|m| Path::new(path).starts_with(&m.mount_path))
            .max_by_key(|m| m.mount_path.len())
            .cloned()
            .unwrap_or_else(|| panic!("{}: nothing mounted at {path}", c.name))
    };
    let host_path = |name: &str| {
        pod.volumes
            .iter()
            .flatten()
            .find(|v| v.name == name)
            .and_then(|v| v.host_path.as_ref())
            .map(|h| h.path.clone())
            .unwrap_or_else(|| panic!("volume {name} is not a hostPath"))
    };
    let m = mount(cni, socket);
    assert_eq!(host_path(&m.name), m.mount_path, "{socket}: same path");
    assert_ne!(m.read_only, Some(true));
    // The kubeconfig the conflist names, read-only, at the same path.
    let kubeconfig = conf["plugins"][0]["kubernetes"]["kubeconfig"]
        .as_str()
        .expect("kubernetes.kubeconfig");
    let m = mount(cni, kubeconfig);
    assert_eq!(host_path(&m.name), m.mount_path);
    assert_eq!(m.read_only, Some(true));
    // The server's datastore is the one the conflist names, with the
    // kubeconfig above: margay-cni's identity, not the pod's margay-node.
    assert_eq!(conf["plugins"][0]["datastore_type"], "kubernetes");
    // No other container is privileged.
    for c in pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
    {
        if c.name != "margay-cni" {
            assert_ne!(
                c.security_context.as_ref().and_then(|s| s.privileged),
                Some(true),
                "{} is privileged",
                c.name
            );
        }
    }
}

#[test]
fn a_misspelt_field_is_caught() {
    let doc: Value = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "x"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"spec": {"hostNetwrok": true, "containers": []}}
        }
    });
    let err = std::panic::catch_unwind(|| typed::<DaemonSet>(&doc, "typo"))
        .expect_err("a misspelt field must fail");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains(".spec.template.spec.hostNetwrok"), "{msg}");
}
