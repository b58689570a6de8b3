//! Calico's reference examples (docs.tigera.io, resources reference),
//! with only `apiVersion` changed to margay.io/v1, parse and validate.

use std::time::Duration;

use margay_crds::{
    AllowedUse, AnyResource, AssignmentMode, BindMode, EncapMode,
    parse_documents, validate_set,
};

const BGP_CONFIGURATION: &str = "\
apiVersion: margay.io/v1
kind: BGPConfiguration
metadata:
  name: default
spec:
  logSeverityScreen: Info
  nodeToNodeMeshEnabled: true
  nodeMeshMaxRestartTime: 120s
  asNumber: 63400
  listenPort: 178
  bindMode: NodeIP
  communities:
    - name: bgp-large-community
      value: 63400:300:100
  prefixAdvertisements:
    - cidr: 172.218.4.0/26
      communities:
        - bgp-large-community
        - 63400:120
";

const BGP_PEER: &str = "\
apiVersion: margay.io/v1
kind: BGPPeer
metadata:
  name: some.name
spec:
  node: rack1-host1
  peerIP: 192.168.1.1
  asNumber: 63400
";

/// The ToR example of Calico's BGP peering guide: every node in rack 1
/// peers with its ToR.
const BGP_PEER_RACK: &str = "\
apiVersion: margay.io/v1
kind: BGPPeer
metadata:
  name: rack1-tor
spec:
  peerIP: 192.20.30.40
  asNumber: 64567
  nodeSelector: rack == 'rack-1'
";

const IP_POOL_NO_ENCAP: &str = "\
apiVersion: margay.io/v1
kind: IPPool
metadata:
  name: my.ippool-1
spec:
  cidr: 10.1.0.0/16
  ipipMode: Never
  natOutgoing: true
  disabled: false
  nodeSelector: all()
  allowedUses:
    - Workload
    - Tunnel
  assignmentMode: Automatic
";

fn one(yaml: &str) -> AnyResource {
    let mut docs = parse_documents(yaml).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(docs.len(), 1);
    validate_set(&docs).unwrap_or_else(|e| panic!("{e:?}"));
    docs.pop().unwrap()
}

#[test]
fn bgp_configuration_sample() {
    let AnyResource::BGPConfiguration(c) = one(BGP_CONFIGURATION) else {
        panic!("kind");
    };
    let s = &c.spec;
    assert_eq!(s.as_number(), 63400);
    assert!(s.mesh_enabled());
    assert_eq!(s.listen_port(), 178);
    assert_eq!(s.log_severity_screen(), "Info");
    assert_eq!(s.bind_mode(), BindMode::NodeIP);
    assert_eq!(s.node_mesh_max_restart_time(), Ok(Duration::from_secs(120)));
    assert_eq!(
        s.resolve_community("bgp-large-community"),
        Some("63400:300:100")
    );
    assert_eq!(s.resolve_community("63400:120"), Some("63400:120"));
}

/// The Service part of Calico's sample: margay advertises Service
/// addresses (with the kubernetes datastore; `margayctl apply` refuses the
/// fields elsewhere), so validation accepts them and checks each CIDR.
const BGP_CONFIGURATION_SERVICES: &str = "\
apiVersion: margay.io/v1
kind: BGPConfiguration
metadata:
  name: default
spec:
  serviceClusterIPs:
    - cidr: 10.96.0.0/12
  serviceExternalIPs:
    - cidr: 104.244.42.129/32
    - cidr: 172.217.3.0/24
  serviceLoadBalancerAggregation: Disabled
";

#[test]
fn service_advertisement_fields_are_accepted_and_checked() {
    let docs = parse_documents(BGP_CONFIGURATION_SERVICES).unwrap();
    validate_set(&docs).unwrap();
    let bad =
        BGP_CONFIGURATION_SERVICES.replace("172.217.3.0/24", "172.217.3.0/33");
    let errs = validate_set(&parse_documents(&bad).unwrap()).unwrap_err();
    let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert_eq!(text.len(), 1, "{text:#?}");
    assert!(
        text[0].contains("spec.serviceExternalIPs[1].cidr"),
        "{}",
        text[0]
    );
    // Read from `default` only: elsewhere refused by name.
    let node =
        BGP_CONFIGURATION_SERVICES.replace("name: default", "name: node.n1");
    let errs = validate_set(&parse_documents(&node).unwrap()).unwrap_err();
    let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert_eq!(text.len(), 3, "{text:#?}");
    assert!(
        text.iter().all(|t| t.contains("named default")),
        "{text:#?}"
    );
}

#[test]
fn ignored_interfaces_and_reachable_by_are_refused_by_name() {
    let docs = parse_documents(
        "apiVersion: margay.io/v1\nkind: BGPConfiguration\nmetadata:\n  \
         name: default\nspec:\n  ignoredInterfaces: [\"eth9\"]\n---\n\
         apiVersion: margay.io/v1\nkind: BGPPeer\nmetadata:\n  name: tor\n\
         spec:\n  peerIP: 192.0.2.1\n  asNumber: 65001\n  \
         reachableBy: 10.0.0.1\n",
    )
    .unwrap();
    let errs = validate_set(&docs).unwrap_err();
    let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert_eq!(text.len(), 2, "{text:#?}");
    assert!(text[0].contains("spec.ignoredInterfaces"), "{}", text[0]);
    assert!(text[0].contains("not supported"), "{}", text[0]);
    assert!(text[1].contains("BGPPeer \"tor\""), "{}", text[1]);
    assert!(text[1].contains("spec.reachableBy"), "{}", text[1]);
}

#[test]
fn namespace_selector_is_refused_unless_it_selects_all() {
    let pool = |sel: &str| {
        format!(
            "apiVersion: margay.io/v1\nkind: IPPool\nmetadata:\n  name: p\n\
             spec:\n  cidr: 10.0.0.0/16\n  namespaceSelector: \"{sel}\"\n"
        )
    };
    let docs = parse_documents(&pool("team == 'a'")).unwrap();
    let errs = validate_set(&docs).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    let msg = errs[0].to_string();
    assert!(msg.contains("spec.namespaceSelector"), "{msg}");
    assert!(msg.contains("not supported yet"), "{msg}");
    for trivial in ["all()", ""] {
        let docs = parse_documents(&pool(trivial)).unwrap();
        validate_set(&docs).unwrap_or_else(|e| panic!("{trivial:?}: {e:?}"));
    }
}

#[test]
fn bgp_configuration_defaults() {
    let c = one(
        "apiVersion: margay.io/v1\nkind: BGPConfiguration\nmetadata:\n  \
         name: default\nspec: {}\n",
    );
    let AnyResource::BGPConfiguration(c) = c else {
        panic!("kind")
    };
    assert_eq!(c.spec.as_number(), 64512);
    assert!(c.spec.mesh_enabled());
    assert_eq!(c.spec.listen_port(), 179);
    assert_eq!(c.spec.log_severity_screen(), "Info");
}

#[test]
fn bgp_peer_samples() {
    let AnyResource::BGPPeer(p) = one(BGP_PEER) else {
        panic!("kind")
    };
    assert_eq!(p.spec.node.as_deref(), Some("rack1-host1"));
    assert_eq!(
        p.peer_addr().unwrap(),
        ("192.168.1.1".parse().unwrap(), None)
    );
    assert_eq!(p.spec.max_restart_time(), Ok(Duration::from_secs(120)));

    let AnyResource::BGPPeer(p) = one(BGP_PEER_RACK) else {
        panic!("kind")
    };
    let rack = |r: &str| [("rack".to_string(), r.to_string())].into();
    assert_eq!(p.spec.applies_to_node("host-7", &rack("rack-1")), Ok(true));
    assert_eq!(p.spec.applies_to_node("host-7", &rack("rack-2")), Ok(false));
}

#[test]
fn ip_pool_sample_without_encapsulation() {
    let AnyResource::IPPool(p) = one(IP_POOL_NO_ENCAP) else {
        panic!("kind");
    };
    assert_eq!(p.spec.block_size(), 26);
    assert_eq!(p.spec.ipip_mode(), EncapMode::Never);
    assert_eq!(p.spec.vxlan_mode(), EncapMode::Never);
    assert_eq!(p.spec.node_selector(), "all()");
    assert_eq!(p.spec.selects_node(&Default::default()), Ok(true));
    assert_eq!(
        p.spec.allowed_uses(),
        [AllowedUse::Workload, AllowedUse::Tunnel]
    );
    assert_eq!(p.spec.assignment_mode(), AssignmentMode::Automatic);
    assert!(p.spec.nat_outgoing);
    assert_eq!(p.cidr_net().unwrap().to_string(), "10.1.0.0/16");
}

/// Calico's sample uses `ipipMode: CrossSubnet`: margay accepts it and
/// routes without encapsulation (see `IPPoolSpec::ipip_mode`).
#[test]
fn ip_pool_sample_with_ipip_cross_subnet_validates() {
    // Calico's reference IPPool sample, unchanged but for apiVersion.
    let yaml =
        IP_POOL_NO_ENCAP.replace("ipipMode: Never", "ipipMode: CrossSubnet");
    let docs = parse_documents(&yaml).unwrap();
    validate_set(&docs).unwrap();
}

#[test]
fn ip_pool_with_ipip_always_is_rejected_clearly() {
    let yaml = IP_POOL_NO_ENCAP.replace("ipipMode: Never", "ipipMode: Always");
    let docs = parse_documents(&yaml).unwrap();
    let errs: Vec<String> = validate_set(&docs)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errs,
        [
            "IPPool \"my.ippool-1\": spec.ipipMode = \"Always\" is invalid: \
          allowed \"Never\" or \"CrossSubnet\": margay routes pod traffic \
          without encapsulation"
        ]
    );
}

#[test]
fn ipv6_pool_defaults_to_122() {
    let AnyResource::IPPool(p) = one(
        "apiVersion: margay.io/v1\nkind: IPPool\nmetadata:\n  name: v6\n\
         spec:\n  cidr: fd00:10:244::/64\n",
    ) else {
        panic!("kind");
    };
    assert_eq!(p.block_size(), 122);
}

#[test]
fn samples_round_trip_through_json() {
    let all = [BGP_CONFIGURATION, BGP_PEER, BGP_PEER_RACK, IP_POOL_NO_ENCAP]
        .join("---\n");
    let docs = parse_documents(&all).unwrap();
    assert_eq!(docs.len(), 4);
    for d in &docs {
        let json = d.to_json().unwrap();
        assert_eq!(json["apiVersion"], "margay.io/v1");
        let back = serde_yaml::to_string(&json).unwrap();
        assert_eq!(&parse_documents(&back).unwrap()[0], d);
    }
}
