use super::*;
use crate::policy::{AnyCommunity, Operation, Rule, Verdict};

fn res(yaml: &str) -> Resources {
    Resources::from_documents(crds::parse_documents(yaml).expect("valid YAML"))
}

const TRANSIT: &str = r#"
apiVersion: margay.io/v1
kind: Node
metadata: {name: dut}
spec: {bgp: {ipv4Address: 10.0.0.1/24}}
---
apiVersion: margay.io/v1
kind: BGPConfiguration
metadata: {name: default}
spec: {asNumber: 65000, nodeToNodeMeshEnabled: false}
---
apiVersion: margay.io/v1
kind: BGPPeer
metadata: {name: left}
spec: {peerIP: 10.0.0.2, asNumber: 65001, filters: [accept-all]}
---
apiVersion: margay.io/v1
kind: BGPPeer
metadata: {name: right, annotations: {margay.io/max-prefixes: "1000"}}
spec: {peerIP: "10.0.1.2:1179", asNumber: 65002, filters: [accept-all], keepaliveTime: 1s}
---
apiVersion: margay.io/v1
kind: BGPFilter
metadata: {name: accept-all}
spec:
  importV4: [{action: Accept}]
  exportV4: [{action: Accept}]
"#;

#[test]
fn transit_example_gives_two_global_ebgp_peers_with_filters() {
    let d = derive(&res(TRANSIT), "dut", None).unwrap();
    assert_eq!(d.router_id, Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(d.local_as, 65000);
    let names: Vec<_> = d.peers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["Global_10.0.0.2", "Global_10.0.1.2_port_1179"]);
    let right = &d.peers[1];
    assert_eq!(
        (right.port, right.remote_as, right.local_as),
        (1179, 65002, 65000)
    );
    assert_eq!(right.max_prefixes, Some(1000));
    assert_eq!((right.keepalive, right.hold_time), (1, 3));
    assert_eq!(right.policy.import.v4, vec![Rule::all(Verdict::Accept)]);
    assert_eq!(right.policy.export.v4, vec![Rule::all(Verdict::Accept)]);
    assert!(!right.passive);
    assert!(d.local_routes.is_empty());
}

const MESH: &str = r#"
apiVersion: margay.io/v1
kind: Node
metadata: {name: a, labels: {rack: r1}}
spec: {bgp: {ipv4Address: 10.0.0.5/24}}
---
apiVersion: margay.io/v1
kind: Node
metadata: {name: b}
spec: {bgp: {ipv4Address: 10.0.0.6/24, asNumber: 65010}}
---
apiVersion: margay.io/v1
kind: Node
metadata: {name: c}
spec: {bgp: {ipv4Address: 10.0.0.4/24}}
---
apiVersion: margay.io/v1
kind: Node
metadata: {name: rr}
spec: {bgp: {ipv4Address: 10.0.0.9/24, routeReflectorClusterID: 1.1.1.1}}
---
apiVersion: margay.io/v1
kind: BGPPeer
metadata: {name: tor}
spec: {peerIP: 10.0.0.254, asNumber: 65100, nodeSelector: "rack == 'r1'"}
---
apiVersion: margay.io/v1
kind: BGPPeer
metadata: {name: other-rack}
spec: {peerIP: 10.0.0.253, asNumber: 65100, nodeSelector: "rack == 'r2'"}
---
apiVersion: margay.io/v1
kind: BlockAffinity
metadata: {name: a-10-244-1-0-26}
spec: {state: confirmed, node: a, type: host, cidr: 10.244.1.0/26}
---
apiVersion: margay.io/v1
kind: BlockAffinity
metadata: {name: a-10-244-2-0-26}
spec: {state: pending, node: a, type: host, cidr: 10.244.2.0/26}
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

#[test]
fn mesh_skips_self_and_reflectors_and_is_one_directional() {
    let d = derive(&res(MESH), "a", None).unwrap();
    let names: Vec<_> = d.peers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["Mesh_10.0.0.4", "Mesh_10.0.0.6", "Node_10.0.0.254"]);
    let m4 = &d.peers[0];
    let m6 = &d.peers[1];
    // "10.0.0.6" > "10.0.0.5": passive toward it; active toward .4.
    assert!(m6.passive && !m4.passive);
    assert_eq!((m6.remote_as, m6.local_as), (65010, DEFAULT_AS));
    assert_eq!(d.peers[2].peer_type, PeerType::NodeSpecific);
    // Originated: the confirmed block and the IP borrowed from b's block
    // (ordinal 2 = 10.244.3.2), never the pending affinity.
    let mut r: Vec<_> = d.local_routes.iter().map(|n| n.to_string()).collect();
    r.sort();
    assert_eq!(r, ["10.244.1.0/26", "10.244.3.2/32"]);
}

#[test]
fn a_borrowed_address_in_a_block_affine_to_none_is_still_originated() {
    // A departed node's block after its affinity went (Calico's
    // ReleaseHostAffinities without mustBeEmpty): it keeps a's address,
    // whose /32 a keeps originating; nobody originates the block.
    let orphan = r#"
apiVersion: margay.io/v1
kind: IPAMBlock
metadata: {name: 10-244-9-0-26}
spec:
  cidr: 10.244.9.0/26
  allocations: [null, 0]
  unallocated: [0]
  attributes:
  - {handle_id: h1, secondary: {node: a}}
"#;
    let d = derive(&res(&format!("{MESH}---{orphan}")), "a", None).unwrap();
    let r: Vec<_> = d.local_routes.iter().map(|n| n.to_string()).collect();
    assert!(r.contains(&"10.244.9.1/32".to_string()), "{r:?}");
    assert!(!r.iter().any(|n| n.starts_with("10.244.9.0/")), "{r:?}");
    let d = derive(&res(&format!("{MESH}---{orphan}")), "b", None).unwrap();
    let r: Vec<_> = d.local_routes.iter().map(|n| n.to_string()).collect();
    assert!(!r.iter().any(|n| n.starts_with("10.244.9.")), "{r:?}");
}

#[test]
fn reflector_has_no_mesh_and_mesh_can_be_disabled() {
    let d = derive(&res(MESH), "rr", None).unwrap();
    assert!(
        d.peers.iter().all(|p| p.peer_type != PeerType::Mesh),
        "{:?}",
        d.peers
    );
    let off = format!(
        "{MESH}---\napiVersion: margay.io/v1\nkind: BGPConfiguration\nmetadata: {{name: default}}\nspec: {{nodeToNodeMeshEnabled: false}}\n"
    );
    let d = derive(&res(&off), "a", None).unwrap();
    assert_eq!(d.peers.len(), 1);
}

/// What derive left out, as it reports it.
fn skipped(d: &Desired) -> Vec<String> {
    d.invalid.iter().map(ToString::to_string).collect()
}

#[test]
fn missing_node_is_an_error_missing_filter_skips_its_peer_only() {
    let e = derive(&res(TRANSIT), "nope", None).unwrap_err();
    assert!(e.to_string().contains("\"nope\" not found"), "{e}");
    let broken =
        TRANSIT.replace("filters: [accept-all]}", "filters: [missing]}");
    let d = derive(&res(&broken), "dut", None).unwrap();
    let names: Vec<_> = d.peers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["Global_10.0.1.2_port_1179"]);
    let bad = skipped(&d);
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(
        bad[0].starts_with("BGPPeer \"left\" field spec.filters: ")
            && bad[0].contains("BGPFilter \"missing\", which does not exist")
            && bad[0].contains("not configured"),
        "{bad:?}"
    );
}

/// One bad object of each kind derive reads leaves out that object alone:
/// a BGPPeer with a bad peerIP, a Node with a bad address (no mesh
/// session with it), an IPPool and a BlockAffinity with a bad CIDR.
#[test]
fn bad_objects_are_left_out_and_everything_else_configured() {
    let yaml = format!(
        "{MESH}---
apiVersion: margay.io/v1
kind: Node
metadata: {{name: broken}}
spec: {{bgp: {{ipv4Address: 10.0.0.300/24}}}}
---
apiVersion: margay.io/v1
kind: BGPPeer
metadata: {{name: typo}}
spec: {{peerIP: 10.0.0.x, asNumber: 65001}}
---
apiVersion: margay.io/v1
kind: IPPool
metadata: {{name: good}}
spec: {{cidr: 10.244.0.0/16}}
---
apiVersion: margay.io/v1
kind: IPPool
metadata: {{name: bad}}
spec: {{cidr: 10.245.0.0/33}}
---
apiVersion: margay.io/v1
kind: BlockAffinity
metadata: {{name: a-10-244-0-0-26}}
spec: {{node: a, type: host, cidr: 10.244.0.0/26, state: confirmed}}
---
apiVersion: margay.io/v1
kind: BlockAffinity
metadata: {{name: a-junk}}
spec: {{node: a, type: host, cidr: junk, state: confirmed}}
"
    );
    let good = derive(&res(MESH), "a", None).unwrap();
    let d = derive(&res(&yaml), "a", None).unwrap();
    assert_eq!(d.peers, good.peers, "the good sessions are unchanged");
    assert_eq!(d.global.pools.len(), good.global.pools.len() + 1);
    let mut want = good.local_routes.clone();
    want.insert("10.244.0.0/26".parse().unwrap());
    assert_eq!(d.local_routes, want);
    let kinds: Vec<_> = d
        .invalid
        .iter()
        .map(|o| (o.kind.as_str(), o.name.as_str(), o.field.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("BGPPeer", "typo", "spec.peerIP"),
            ("BlockAffinity", "a-junk", "spec.cidr"),
            ("IPPool", "bad", "spec.cidr"),
            ("Node", "broken", "spec.bgp.ipv4Address"),
        ]
    );
}

const RR: &str = r#"
apiVersion: margay.io/v1
kind: Node
metadata: {name: rr, labels: {route-reflector: "true"}}
spec: {bgp: {ipv4Address: 10.0.0.9/24, routeReflectorClusterID: 244.0.0.1}}
---
apiVersion: margay.io/v1
kind: Node
metadata: {name: c1}
spec: {bgp: {ipv4Address: 10.0.0.11/24}}
---
apiVersion: margay.io/v1
kind: Node
metadata: {name: c2}
spec: {bgp: {ipv4Address: 10.0.0.12/24}}
---
apiVersion: margay.io/v1
kind: BGPConfiguration
metadata: {name: default}
spec: {nodeToNodeMeshEnabled: false}
---
apiVersion: margay.io/v1
kind: BGPPeer
metadata: {name: peer-with-route-reflectors}
spec: {nodeSelector: all(), peerSelector: "route-reflector == 'true'"}
"#;

#[test]
fn peer_selector_peering_is_reversed_for_route_reflectors() {
    // A client peers with the reflector (forward direction)...
    let d = derive(&res(RR), "c1", None).unwrap();
    let addrs: Vec<String> =
        d.peers.iter().map(|p| p.addr.to_string()).collect();
    assert_eq!(addrs, ["10.0.0.9"]);
    assert!(!d.peers[0].policy.rr_client);
    // ...and the reflector, selected by peerSelector, peers back with every
    // node on the node side, each as its route-reflector client.
    let d = derive(&res(RR), "rr", None).unwrap();
    let addrs: Vec<String> =
        d.peers.iter().map(|p| p.addr.to_string()).collect();
    assert_eq!(addrs, ["10.0.0.11", "10.0.0.12"]);
    assert!(d.peers.iter().all(|p| p.policy.rr_client));
    // reversePeering: Manual turns the reverse direction off.
    let manual = RR.replace(
        "peerSelector: \"route-reflector == 'true'\"}",
        "peerSelector: \"route-reflector == 'true'\", reversePeering: Manual}",
    );
    let d = derive(&res(&manual), "rr", None).unwrap();
    assert!(d.peers.is_empty(), "{:?}", d.peers);
}

#[test]
fn filter_communities_as_path_and_operations_compile() {
    let yaml = TRANSIT.replace(
        "  importV4: [{action: Accept}]",
        r#"  importV4:
  - action: Reject
    communities: {values: ["65000:666"]}
  - action: Accept
    source: RemotePeers
    asPathPrefix: [65001]
    operations:
    - addCommunity: {value: "65000:1:2"}
    - prependASPath: {prefix: [65000, 65000]}"#,
    );
    let d = derive(&res(&yaml), "dut", None).unwrap();
    let import = &d.peers[0].policy.import.v4;
    assert_eq!(
        import[0].community,
        Some(AnyCommunity::Standard(bgp_wire::Community::new(65000, 666)))
    );
    assert!(import[1].remote_peers_only);
    assert_eq!(import[1].as_path_prefix, vec![65001]);
    assert_eq!(
        import[1].operations,
        vec![
            Operation::AddCommunity(AnyCommunity::Large(
                bgp_wire::LargeCommunity {
                    global_admin: 65000,
                    local_data1: 1,
                    local_data2: 2,
                }
            )),
            Operation::PrependAsPath(vec![65000, 65000]),
        ]
    );
}

#[test]
fn kernel_route_filter_fields_are_refused_by_name() {
    for (rule, field) in [
        ("{action: Accept, interface: eth0}", "rule.interface"),
        ("{action: Accept, priority: 10}", "rule.priority"),
        (
            "{action: Accept, operations: [{setPriority: {value: 5}}]}",
            "rule.operations.setPriority",
        ),
    ] {
        let yaml = TRANSIT.replace(
            "  importV4: [{action: Accept}]",
            &format!("  importV4: [{rule}]"),
        );
        // The filter is reported by name and rule, and both peers using
        // it are left out rather than run with part of their policy.
        let d = derive(&res(&yaml), "dut", None).unwrap();
        assert!(d.peers.is_empty(), "{:?}", d.peers);
        let bad = skipped(&d);
        let field = field.replace("rule", "spec.importV4[0]");
        assert!(
            bad[0].starts_with(&format!(
                "BGPFilter \"accept-all\" field {field}: "
            )) && bad[0].contains("not supported by margay"),
            "{bad:?}"
        );
        for peer in ["left", "right"] {
            assert!(
                bad.iter().any(|b| b.starts_with(&format!(
                    "BGPPeer \"{peer}\" field spec.filters: spec.filters \
                     names BGPFilter \"accept-all\", which is invalid"
                )) && b.contains(&field)),
                "{bad:?}"
            );
        }
    }
}

/// MESH plus a default BGPConfiguration with `spec`.
fn mesh_with(spec: &str) -> Resources {
    res(&format!(
        "{MESH}---\napiVersion: margay.io/v1\nkind: BGPConfiguration\n\
         metadata: {{name: default}}\nspec: {spec}\n"
    ))
}

#[test]
fn mesh_keepalive_sets_fast_timers_on_mesh_sessions_only() {
    let slow = derive(&res(MESH), "a", None).unwrap();
    for p in &slow.peers {
        assert_eq!((p.hold_time, p.keepalive), (240, 80), "{}", p.name);
    }
    let fast =
        derive(&mesh_with("{nodeMeshKeepaliveTime: 1s}"), "a", None).unwrap();
    let timers: Vec<_> = fast
        .peers
        .iter()
        .map(|p| (p.name.as_str(), p.hold_time, p.keepalive))
        .collect();
    assert_eq!(
        timers,
        [
            ("Mesh_10.0.0.4", 3, 1),
            ("Mesh_10.0.0.6", 3, 1),
            ("Node_10.0.0.254", 240, 80),
        ]
    );
    // Applied live, `Speaker::set_peers` restarts a peer whose config is
    // not the same session: the mesh ones, not the ToR.
    for (old, new) in slow.peers.iter().zip(&fast.peers) {
        let is_mesh = new.peer_type == PeerType::Mesh;
        assert_eq!(old.same_session(new), !is_mesh, "{}", new.name);
        assert_eq!(old == new, !is_mesh, "{}", new.name);
    }
    // Fractions round down to whole seconds of hold time.
    let d = derive(&mesh_with("{nodeMeshKeepaliveTime: 1500ms}"), "a", None)
        .unwrap();
    assert_eq!((d.peers[0].hold_time, d.peers[0].keepalive), (4, 1));
}

#[test]
fn mesh_keepalive_below_one_second_is_rejected_by_name() {
    // A bad default BGPConfiguration is left out and named; derive goes
    // on with the built-in defaults (AS 64512, mesh with BIRD's timers).
    let d = derive(
        &mesh_with("{asNumber: 65000, nodeMeshKeepaliveTime: 900ms}"),
        "a",
        None,
    )
    .unwrap();
    assert_eq!(
        skipped(&d),
        [
            "BGPConfiguration \"default\" field spec.nodeMeshKeepaliveTime: \
          \"900ms\" is invalid: allowed 1s to 21845s: the hold time is \
          three times the keepalive and must be 3-65535 seconds (RFC 4271 \
          section 4.2)"
        ]
    );
    assert_eq!(d.local_as, DEFAULT_AS);
    let mesh: Vec<_> = d
        .peers
        .iter()
        .filter(|p| p.peer_type == PeerType::Mesh)
        .map(|p| (p.hold_time, p.keepalive))
        .collect();
    assert_eq!(mesh, [(240, 80), (240, 80)]);
}

#[test]
fn bad_bgp_configuration_keeps_the_last_good_one() {
    let mut last_good = BTreeMap::new();
    let mut good = mesh_with("{asNumber: 65000, nodeMeshKeepaliveTime: 2s}");
    assert!(bgp_config::screen(&mut good, &mut last_good).is_empty());
    // The next version is bad (BFD multiplier 0): the good one stays in
    // its place, and the bad one is reported.
    let mut bad = mesh_with(
        "{asNumber: 65001, nodeMeshBFD: {enabled: true, multiplier: 0}}",
    );
    let invalid = bgp_config::screen(&mut bad, &mut last_good);
    assert_eq!(invalid.len(), 1);
    assert_eq!(
        (invalid[0].kind.as_str(), invalid[0].name.as_str()),
        ("BGPConfiguration", "default")
    );
    assert!(
        invalid[0].field.starts_with("spec.nodeMeshBFD"),
        "{:?}",
        invalid[0]
    );
    let d = derive(&bad, "a", None).unwrap();
    assert!(d.invalid.is_empty(), "{:?}", d.invalid);
    assert_eq!(d.local_as, 65000);
    assert!(d.peers.iter().any(|p| p.keepalive == 2));
    // Deleted, then bad again: no last good any more, built-in defaults.
    let mut gone = res(MESH);
    assert!(bgp_config::screen(&mut gone, &mut last_good).is_empty());
    let mut bad_again =
        mesh_with("{asNumber: 65001, nodeMeshKeepaliveTime: 1ms}");
    assert_eq!(bgp_config::screen(&mut bad_again, &mut last_good).len(), 1);
    assert!(bad_again.bgp_configs.is_empty());
    assert_eq!(derive(&bad_again, "a", None).unwrap().local_as, DEFAULT_AS);
}

#[test]
fn unreadable_mesh_password_is_a_bad_bgp_configuration() {
    let d = derive(
        &mesh_with("{nodeMeshPassword: {file: /nonexistent/mesh-key}}"),
        "a",
        None,
    )
    .unwrap();
    let s = skipped(&d);
    assert_eq!(s.len(), 1, "{s:?}");
    assert!(
        s[0].starts_with(
            "BGPConfiguration \"default\" field spec.nodeMeshPassword"
        ),
        "{s:?}"
    );
}

#[test]
fn bfd_from_mesh_setting_and_bgp_peer() {
    let none = derive(&res(MESH), "a", None).unwrap();
    assert!(none.bfd.is_empty());
    let yaml = format!(
        "{MESH}---\napiVersion: margay.io/v1\nkind: BGPConfiguration\n\
         metadata: {{name: default}}\nspec: {{nodeMeshBFD: {{enabled: true, \
         minInterval: 100ms, multiplier: 4}}}}\n"
    )
    .replace(
        "nodeSelector: \"rack == 'r1'\"}",
        "nodeSelector: \"rack == 'r1'\", bfd: {enabled: true}}",
    );
    let d = derive(&res(&yaml), "a", None).unwrap();
    let fast = SessionCfg {
        min_interval: Duration::from_millis(100),
        multiplier: 4,
    };
    // The BGPPeer's defaults: 300 ms x 3.
    let default = SessionCfg {
        min_interval: Duration::from_millis(300),
        multiplier: 3,
    };
    let got: Vec<_> = d.bfd.iter().map(|(n, c)| (n.as_str(), *c)).collect();
    assert_eq!(
        got,
        [
            ("Mesh_10.0.0.4", fast),
            ("Mesh_10.0.0.6", fast),
            ("Node_10.0.0.254", default),
        ]
    );
    // Disabled settings run no BFD; BFD changes never touch the BGP
    // session config.
    let off = yaml.replace("enabled: true", "enabled: false");
    let d2 = derive(&res(&off), "a", None).unwrap();
    assert!(d2.bfd.is_empty());
    assert_eq!(d.peers, d2.peers);
}

#[test]
fn bad_bfd_settings_name_resource_and_field() {
    let yaml = MESH.replace(
        "nodeSelector: \"rack == 'r1'\"}",
        "nodeSelector: \"rack == 'r1'\", bfd: {enabled: true, multiplier: 0}}",
    );
    let d = derive(&res(&yaml), "a", None).unwrap();
    assert_eq!(
        skipped(&d),
        [
            "BGPPeer \"tor\" field spec.bfd.multiplier: 0 is invalid: allowed \
          1-255 (RFC 5880 section 6.8.6)"
        ]
    );
    assert!(d.peers.iter().all(|p| p.peer_type == PeerType::Mesh));
}

const EXT_NH: &str = r#"
apiVersion: margay.io/v1
kind: Node
metadata: {name: dut}
spec: {bgp: {ipv4Address: 10.0.0.1/24, ipv6Address: "fd00::1/64"}}
---
apiVersion: margay.io/v1
kind: BGPConfiguration
metadata: {name: default}
spec: {asNumber: 65000, nodeToNodeMeshEnabled: false}
---
apiVersion: margay.io/v1
kind: BGPPeer
metadata: {name: v6, annotations: {margay.io/extended-next-hop: "VALUE"}}
spec: {peerIP: "fd00::2", asNumber: 65001}
---
apiVersion: margay.io/v1
kind: BGPPeer
metadata: {name: v4, annotations: {margay.io/extended-next-hop: "true"}}
spec: {peerIP: 10.0.0.2, asNumber: 65001}
---
apiVersion: margay.io/v1
kind: BGPPeer
metadata: {name: plain6}
spec: {peerIP: "fd00::3", asNumber: 65001}
"#;

#[test]
fn extended_next_hop_annotation_adds_ipv4_to_ipv6_sessions_only() {
    let d =
        derive(&res(&EXT_NH.replace("VALUE", "true")), "dut", None).unwrap();
    let fams = |n: &str| {
        d.peers
            .iter()
            .find(|p| p.name == n)
            .unwrap()
            .families
            .clone()
    };
    assert_eq!(
        fams("Global_fd00::2"),
        [Family::IPV6_UNICAST, Family::IPV4_UNICAST]
    );
    // An IPv4 session carries IPv4 natively; no annotation, no IPv4.
    assert_eq!(fams("Global_10.0.0.2"), [Family::IPV4_UNICAST]);
    assert_eq!(fams("Global_fd00::3"), [Family::IPV6_UNICAST]);

    let d =
        derive(&res(&EXT_NH.replace("VALUE", "false")), "dut", None).unwrap();
    assert_eq!(d.peers[1].name, "Global_fd00::2");
    assert_eq!(d.peers[1].families, [Family::IPV6_UNICAST]);

    let d = derive(&res(&EXT_NH.replace("VALUE", "yes")), "dut", None).unwrap();
    assert_eq!(d.peers.len(), 2, "v4 and plain6 still peer");
    let e = skipped(&d).join("\n");
    assert!(
        e.contains("v6")
            && e.contains("margay.io/extended-next-hop")
            && e.contains("\"yes\"")
            && e.contains("allowed \"true\" or \"false\""),
        "{e}"
    );
}

#[test]
fn max_prefixes_restart_annotation_is_parsed_and_checked() {
    let with = |v: &str| {
        TRANSIT.replace(
            r#"annotations: {margay.io/max-prefixes: "1000"}"#,
            &format!(
                r#"annotations: {{margay.io/max-prefixes: "1000", margay.io/max-prefixes-restart: "{v}"}}"#
            ),
        )
    };
    let d = derive(&res(&with("5m")), "dut", None).unwrap();
    assert_eq!(
        d.peers[1].max_prefixes_restart,
        Some(Duration::from_secs(300))
    );
    assert_eq!(d.peers[0].max_prefixes_restart, None);
    // A bad value leaves that peer out (one bad object stops nothing
    // else), named with the annotation.
    for bad in ["soon", "0s", "-1m"] {
        let d = derive(&res(&with(bad)), "dut", None).unwrap();
        assert_eq!(d.peers.len(), 1, "{bad}: only the other peer is left");
        let e = d
            .invalid
            .iter()
            .find(|o| o.kind == "BGPPeer" && o.name == "right")
            .unwrap_or_else(|| panic!("{bad}: {:?}", d.invalid));
        assert_eq!(e.field, "metadata.annotations", "{bad}");
        assert!(
            e.error.contains("margay.io/max-prefixes-restart"),
            "{bad}: {e:?}"
        );
    }
}

/// Calico's redundant pair: two reflectors with one cluster ID peer with
/// each other as non-clients (RFC 4456 6: a non-client's routes go to
/// clients only), each with its cluster ID for the loop check.
#[test]
fn twin_reflectors_of_one_cluster_peer_as_non_clients() {
    let two = format!(
        "{RR}---\napiVersion: margay.io/v1\nkind: Node\nmetadata: {{name: rr2, labels: {{route-reflector: \"true\"}}}}\nspec: {{bgp: {{ipv4Address: 10.0.0.8/24, routeReflectorClusterID: 244.0.0.1}}}}\n"
    );
    let d = derive(&res(&two), "rr", None).unwrap();
    let twin = d
        .peers
        .iter()
        .find(|p| p.addr.to_string() == "10.0.0.8")
        .unwrap();
    assert_eq!(twin.policy.cluster_id, Some(Ipv4Addr::new(244, 0, 0, 1)));
    assert!(!twin.policy.rr_client);
}
