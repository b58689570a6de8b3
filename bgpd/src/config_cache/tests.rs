use margay_crds as crds;
use margay_datastore::{List, WatchEvent};

use super::*;

const CLUSTER: &str = r#"
apiVersion: margay.io/v1
kind: Node
metadata: {name: a}
spec: {bgp: {ipv4Address: 10.0.0.5/24}}
---
apiVersion: margay.io/v1
kind: Node
metadata: {name: b}
spec: {bgp: {ipv4Address: 10.0.0.6/24}}
---
apiVersion: margay.io/v1
kind: BGPConfiguration
metadata: {name: default}
spec: {asNumber: 65000}
---
apiVersion: margay.io/v1
kind: IPPool
metadata: {name: pool}
spec: {cidr: 10.244.0.0/16}
---
apiVersion: margay.io/v1
kind: BlockAffinity
metadata: {name: a-10-244-1-0-26}
spec: {state: confirmed, node: a, type: host, cidr: 10.244.1.0/26}
---
apiVersion: margay.io/v1
kind: BlockAffinity
metadata: {name: b-10-244-3-0-26}
spec: {state: confirmed, node: b, type: host, cidr: 10.244.3.0/26}
---
apiVersion: margay.io/v1
kind: IPAMBlock
metadata: {name: 10-244-3-0-26}
spec:
  cidr: 10.244.3.0/26
  affinity: host:b
  allocations: [0, null, 1]
  unallocated: [1]
  attributes:
  - {handle_id: h0, secondary: {node: b}}
  - {handle_id: h2, secondary: {node: a}}
"#;

fn res(yaml: &str) -> Resources {
    Resources::from_documents(crds::parse_documents(yaml).expect("valid"))
}

fn one<K: Clone>(v: &[K]) -> K {
    v[0].clone()
}

/// A list of `items` as the watch with `feed` delivers it.
fn list<K, V>(feed: &Feed<K, V>, items: Vec<K>) -> CacheItem<K, V> {
    Ok(ListWatchEvent::Listed(List {
        items: items.into_iter().map(|o| feed(o)).collect(),
        resource_version: "1".into(),
        invalid: Vec::new(),
    }))
}

fn ev<K, V>(e: WatchEvent<K>) -> CacheItem<K, V> {
    Ok(ListWatchEvent::Event(e))
}

/// A cache fed the lists of `r`, every kind synced.
fn synced(r: Resources) -> ConfigCache {
    let mut c = ConfigCache::new("a");
    for u in [
        Update::Node(list(&c.feeds().nodes, r.nodes)),
        Update::BgpConfig(list(&c.feeds().bgp_configs, r.bgp_configs)),
        Update::Peer(list(&c.feeds().peers, r.peers)),
        Update::Filter(list(&c.feeds().filters, r.filters)),
        Update::Pool(list(&c.feeds().pools, r.pools)),
        Update::Affinity(list(&c.feeds().affinities, r.affinities)),
        Update::Block(list(&c.feeds().blocks, r.blocks)),
    ] {
        c.apply(u).unwrap();
    }
    c
}

/// Derives as the binary does (rebase when stale).
fn take(c: &mut ConfigCache) -> Option<Desired> {
    if c.base_stale() {
        let r = c.base_resources();
        c.rebase(r, None);
    }
    c.take_desired().map(|r| r.expect("derives").0)
}

fn routes(d: &Desired) -> Vec<String> {
    let mut r: Vec<_> = d.local_routes.iter().map(|n| n.to_string()).collect();
    r.sort();
    r
}

/// The incremental result equals the pure derivation over a full list
/// (what the re-listing pipeline computed).
#[test]
fn same_as_deriving_from_a_full_list() {
    let mut c = synced(res(CLUSTER));
    let d = take(&mut c).expect("first configuration");
    assert_eq!(d, config::derive(&res(CLUSTER), "a", None).unwrap());
    assert_eq!(routes(&d), ["10.244.1.0/26", "10.244.3.2/32"]);
    // Nothing changed since: nothing to send.
    assert!(take(&mut c).is_none());
}

#[test]
fn nothing_is_derived_before_every_kind_is_listed() {
    let r = res(CLUSTER);
    let mut c = ConfigCache::new("a");
    c.apply(Update::Node(list(&c.feeds().nodes, r.nodes)))
        .unwrap();
    c.apply(Update::BgpConfig(list(
        &c.feeds().bgp_configs,
        r.bgp_configs,
    )))
    .unwrap();
    c.apply(Update::Peer(list(&c.feeds().peers, r.peers)))
        .unwrap();
    c.apply(Update::Filter(list(&c.feeds().filters, r.filters)))
        .unwrap();
    c.apply(Update::Pool(list(&c.feeds().pools, r.pools)))
        .unwrap();
    c.apply(Update::Affinity(list(&c.feeds().affinities, r.affinities)))
        .unwrap();
    assert!(!c.synced());
    assert!(take(&mut c).is_none());
    c.apply(Update::Block(list(&c.feeds().blocks, r.blocks)))
        .unwrap();
    assert!(take(&mut c).is_some());
}

/// A pod event in another node's block that lends this node nothing
/// derives nothing; one that lends it an address adds one route, without
/// deriving the rest again.
#[test]
fn a_block_event_changes_only_its_own_share() {
    let r = res(CLUSTER);
    let mut c = synced(r.clone());
    take(&mut c).unwrap();
    let mut block = one(&r.blocks);
    // b's pod in slot 1: nothing for node a.
    block.spec.allocations[1] = Some(0);
    c.apply(Update::Block(ev(WatchEvent::Modified(block.clone()))))
        .unwrap();
    assert!(!c.base_stale());
    assert!(take(&mut c).is_none(), "no change for this node");
    // Slot 1 now lent to node a.
    block.spec.allocations[1] = Some(1);
    c.apply(Update::Block(ev(WatchEvent::Modified(block.clone()))))
        .unwrap();
    assert!(!c.base_stale(), "a block never re-derives the base");
    let d = take(&mut c).unwrap();
    assert_eq!(
        routes(&d),
        ["10.244.1.0/26", "10.244.3.1/32", "10.244.3.2/32"]
    );
    // A new block elsewhere: nothing.
    let mut other = block.clone();
    other.metadata.name = Some("10-244-4-0-26".into());
    other.spec.cidr = "10.244.4.0/26".into();
    other.spec.allocations = vec![Some(0)];
    other.spec.attributes.truncate(1);
    c.apply(Update::Block(ev(WatchEvent::Added(other))))
        .unwrap();
    assert!(take(&mut c).is_none());
    // The lending block is deleted: its routes go.
    c.apply(Update::Block(ev(WatchEvent::Deleted(block))))
        .unwrap();
    assert_eq!(routes(&take(&mut c).unwrap()), ["10.244.1.0/26"]);
}

/// Another node's affinity does not touch this node's base; this node's
/// does.
#[test]
fn only_this_nodes_affinities_rederive() {
    let r = res(CLUSTER);
    let mut c = synced(r.clone());
    take(&mut c).unwrap();
    let theirs = r.affinities[1].clone();
    c.apply(Update::Affinity(ev(WatchEvent::Deleted(theirs))))
        .unwrap();
    assert!(!c.base_stale());
    let mut mine = r.affinities[0].clone();
    mine.metadata.name = Some("a-10-244-9-0-26".into());
    mine.spec.cidr = "10.244.9.0/26".into();
    c.apply(Update::Affinity(ev(WatchEvent::Added(mine))))
        .unwrap();
    assert!(c.base_stale());
    let d = take(&mut c).unwrap();
    assert_eq!(
        routes(&d),
        ["10.244.1.0/26", "10.244.3.2/32", "10.244.9.0/26"]
    );
}

fn decode_error(kind: &str, name: &str) -> DatastoreError {
    DatastoreError::Decode {
        kind: kind.into(),
        name: name.into(),
        field: "spec.peerIP".into(),
        source: serde_json::from_str::<u8>("\"x\"").unwrap_err(),
    }
}

/// Blast radius, per object: a peer that stops decoding is left out and
/// reported; fixed, it is configured again and no longer reported; a bad
/// block deleted is no longer reported.
#[test]
fn invalid_objects_come_and_go_per_object() {
    let peer_yaml = r#"
apiVersion: margay.io/v1
kind: BGPPeer
metadata: {name: tor}
spec: {peerIP: 10.0.0.254, asNumber: 65100}
"#;
    let full = format!("{CLUSTER}---{peer_yaml}");
    let r = res(&full);
    let mut c = synced(r.clone());
    let d = take(&mut c).unwrap();
    assert_eq!(d.peers.len(), 2, "mesh to b + tor");
    c.apply(Update::Peer(Err(decode_error("BGPPeer", "tor"))))
        .unwrap();
    let d = take(&mut c).unwrap();
    assert_eq!(d.peers.len(), 1);
    let bad: Vec<_> = d.invalid.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(bad, ["tor"]);
    c.apply(Update::Peer(ev(WatchEvent::Modified(r.peers[0].clone()))))
        .unwrap();
    let d = take(&mut c).unwrap();
    assert_eq!(d.peers.len(), 2);
    assert!(d.invalid.is_empty());
    // A block that does not decode, then deleted.
    c.apply(Update::Block(Err(decode_error("IPAMBlock", "junk"))))
        .unwrap();
    assert_eq!(take(&mut c).unwrap().invalid.len(), 1);
    let gone = DatastoreError::DeletedUndecodable {
        kind: "IPAMBlock".into(),
        name: "junk".into(),
    };
    c.apply(Update::Block(Err(gone))).unwrap();
    assert!(take(&mut c).unwrap().invalid.is_empty());
}

/// A re-list after compaction replaces each kind: a block deleted while
/// the watch was away stops lending.
#[test]
fn relist_replaces_what_the_watch_missed() {
    let r = res(CLUSTER);
    let mut c = synced(r.clone());
    take(&mut c).unwrap();
    c.apply(Update::Block(list(&c.feeds().blocks, Vec::new())))
        .unwrap();
    assert_eq!(routes(&take(&mut c).unwrap()), ["10.244.1.0/26"]);
}

/// With a Service source, the service ranges of `default` and a Local
/// Service's /32 join the originated routes; each Service event changes
/// the configuration only when the announced set changes. Without one
/// (etcd), the ranges are not announced and the fields are reported.
#[test]
fn service_routes_join_the_originated_routes() {
    use crate::services::ServiceEvent;
    let mut r = res(CLUSTER);
    r.bgp_configs[0].spec.service_cluster_ips = vec![crds::ServiceCidr {
        cidr: "10.96.0.0/24".into(),
    }];
    let mut etcd = synced(r.clone());
    let d = take(&mut etcd).unwrap();
    assert_eq!(routes(&d), ["10.244.1.0/26", "10.244.3.2/32"]);
    assert!(etcd.take_desired().is_none());
    let base = etcd.base.as_ref().unwrap();
    assert_eq!(base.opts.unsupported[0].field, "spec.serviceClusterIPs");

    let mut c = synced(r).watching_services("a");
    let d = take(&mut c).unwrap();
    assert_eq!(
        routes(&d),
        ["10.244.1.0/26", "10.244.3.2/32", "10.96.0.0/24"]
    );
    assert!(c.base.as_ref().unwrap().opts.unsupported.is_empty());
    let svc = serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": "ns", "name": "s"},
        "spec": {"type": "NodePort", "clusterIP": "10.96.0.9",
                 "externalTrafficPolicy": "Local", "ipFamilies": ["IPv4"]}
    }))
    .unwrap();
    let slice = |node: &str| {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "ns", "name": "s-1",
                "labels": {"kubernetes.io/service-name": "s"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.3.2"], "nodeName": node}]
        }))
        .unwrap()
    };
    c.apply(Update::Services(ServiceEvent::ServicesListed(vec![svc])))
        .unwrap();
    c.apply(Update::Services(ServiceEvent::SlicesListed(vec![slice(
        "b",
    )])))
    .unwrap();
    // Listed, but nothing of it on this node: the same routes.
    if let Some(d) = take(&mut c) {
        assert_eq!(routes(&d).len(), 3);
    }
    c.apply(Update::Services(ServiceEvent::Slice(Box::new(slice("a")))))
        .unwrap();
    let d = take(&mut c).expect("the endpoint came here");
    assert!(routes(&d).contains(&"10.96.0.9/32".to_string()));
    c.apply(Update::Services(ServiceEvent::ServiceDeleted {
        namespace: "ns".into(),
        name: "s".into(),
    }))
    .unwrap();
    let d = take(&mut c).expect("the Service is gone");
    assert!(!routes(&d).contains(&"10.96.0.9/32".to_string()));
}
