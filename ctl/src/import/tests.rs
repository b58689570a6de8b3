//! import-calico against a realistic Calico export.

use super::*;

/// What `calicoctl get ippool,bgppeer,bgpconfig,bgpfilter -o yaml` and
/// `kubectl get ippools.crd.projectcalico.org -o yaml` print on a typical
/// cluster (server-set metadata included).
const CALICO: &str = r#"
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv4-ippool
  uid: 5b1c4c3e-9a56-4b8e-a9a6-0d0e7f0c1b2a
  resourceVersion: "1234"
  creationTimestamp: "2025-05-01T10:00:00Z"
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: '{"apiVersion":"projectcalico.org/v3"}'
spec:
  cidr: 10.244.0.0/16
  blockSize: 26
  ipipMode: Never
  vxlanMode: Never
  natOutgoing: true
  nodeSelector: all()
  allowedUses:
  - Workload
  - Tunnel
status:
  conditions:
  - type: Allocatable
    status: "True"
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: default
spec:
  logSeverityScreen: Info
  nodeToNodeMeshEnabled: false
  asNumber: 64512
  serviceClusterIPs:
  - cidr: 10.96.0.0/12
  programClusterRoutes: EnabledNoEncapOnly
  ipv4NormalRoutePriority: 1024
---
apiVersion: projectcalico.org/v3
kind: BGPPeerList
items:
- apiVersion: projectcalico.org/v3
  kind: BGPPeer
  metadata:
    name: rack1-tor
    labels:
      rack: r1
  spec:
    peerIP: 192.0.2.1
    asNumber: 65001
    nodeSelector: rack == 'r1'
    keepaliveTime: 20s
    maxRestartTime: 2m0s
    filters:
    - export-pods-only
    password:
      secretKeyRef:
        name: bgp-secrets
        key: rack1
---
apiVersion: projectcalico.org/v3
kind: BGPFilter
metadata:
  name: export-pods-only
spec:
  exportV4:
  - action: Accept
    matchOperator: In
    cidr: 10.244.0.0/16
  - action: Reject
---
apiVersion: crd.projectcalico.org/v1
kind: IPPool
metadata:
  name: legacy-v6
  annotations:
    projectcalico.org/metadata: '{"uid":"x","creationTimestamp":null}'
spec:
  cidr: fd00:10:244::/56
  blockSize: 122
  nat-outgoing: true
  ipip:
    enabled: false
  nodeSelector: all()
"#;

const MARGAY: &str = r#"apiVersion: margay.io/v1
kind: IPPool
metadata:
  name: default-ipv4-ippool
spec:
  cidr: 10.244.0.0/16
  blockSize: 26
  ipipMode: Never
  vxlanMode: Never
  natOutgoing: true
  nodeSelector: all()
  allowedUses:
  - Workload
  - Tunnel
---
apiVersion: margay.io/v1
kind: BGPConfiguration
metadata:
  name: default
spec:
  logSeverityScreen: Info
  nodeToNodeMeshEnabled: false
  asNumber: 64512
  serviceClusterIPs:
  - cidr: 10.96.0.0/12
---
apiVersion: margay.io/v1
kind: BGPPeer
metadata:
  name: rack1-tor
  labels:
    rack: r1
spec:
  peerIP: 192.0.2.1
  asNumber: 65001
  nodeSelector: rack == 'r1'
  keepaliveTime: 20s
  maxRestartTime: 2m0s
  filters:
  - export-pods-only
  password:
    secretKeyRef:
      name: bgp-secrets
      key: rack1
---
apiVersion: margay.io/v1
kind: BGPFilter
metadata:
  name: export-pods-only
spec:
  exportV4:
  - action: Accept
    matchOperator: In
    cidr: 10.244.0.0/16
  - action: Reject
---
apiVersion: margay.io/v1
kind: IPPool
metadata:
  name: legacy-v6
spec:
  cidr: fd00:10:244::/56
  blockSize: 122
  nodeSelector: all()
  natOutgoing: true
"#;

#[test]
fn converts_a_realistic_calico_export_exactly() {
    let got = import_calico(CALICO, Format::Yaml).unwrap();
    assert_eq!(got.text, MARGAY);
    assert_eq!(
        got.dropped,
        vec![
            "IPPool default-ipv4-ippool: dropped status (the source \
             cluster's state)",
            "BGPConfiguration default: dropped spec.programClusterRoutes \
             (felix-lite always programs the routes bgpd selects)",
            "BGPConfiguration default: dropped spec.ipv4NormalRoutePriority \
             (margay installs routes with the kernel's default priority)",
            "IPPool legacy-v6: dropped spec.nat-outgoing (deprecated; carried \
             over as natOutgoing)",
            "IPPool legacy-v6: dropped spec.ipip (deprecated; IP-in-IP is \
             disabled)",
        ]
    );
    // The output is what `apply -f` reads.
    assert_eq!(margay_crds::parse_documents(&got.text).unwrap().len(), 5);
}

#[test]
fn refuses_encapsulation_with_an_explanation() {
    let input = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  \
                 name: p\nspec:\n  cidr: 10.0.0.0/16\n  ipipMode: Always\n";
    let err = import_calico(input, Format::Yaml).unwrap_err().to_string();
    assert!(
        err.starts_with("IPPool \"p\": cannot convert spec.ipipMode: Always"),
        "{err}"
    );
    assert!(err.contains("no encapsulation"), "{err}");
    let input = input.replace("ipipMode: Always", "vxlanMode: VXLAN");
    let err = import_calico(&input, Format::Yaml).unwrap_err().to_string();
    assert!(err.contains("spec.vxlanMode: VXLAN"), "{err}");
}

#[test]
fn cross_subnet_is_kept_as_apply_accepts_it_and_said_so() {
    let input = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  \
                 name: p\nspec:\n  cidr: 10.0.0.0/16\n  ipipMode: CrossSubnet\n";
    let got = import_calico(input, Format::Yaml).unwrap();
    assert!(got.text.contains("ipipMode: CrossSubnet"), "{}", got.text);
    assert_eq!(got.dropped.len(), 1, "{:?}", got.dropped);
    assert!(
        got.dropped[0].starts_with("IPPool p: kept spec.ipipMode: CrossSubnet"),
        "{:?}",
        got.dropped
    );
}

/// Node, IPReservation and IPAMConfiguration from the v3 API, and the
/// Kubernetes datastore's crd.projectcalico.org/v1 kinds.
const MORE: &str = r#"
apiVersion: projectcalico.org/v3
kind: Node
metadata:
  name: node-1
  labels:
    rack: r1
spec:
  bgp:
    ipv4Address: 192.0.2.11/24
    ipv4IPIPTunnelAddr: 10.244.3.0
    asNumber: 65010
  orchRefs:
  - nodeName: node-1
    orchestrator: k8s
  addresses:
  - address: 192.0.2.11
    type: CalicoNodeIP
status:
  podCIDRs: []
---
apiVersion: projectcalico.org/v3
kind: IPReservation
metadata:
  name: keep-out
spec:
  reservedCIDRs:
  - 10.244.0.0/28
---
apiVersion: projectcalico.org/v3
kind: IPAMConfiguration
metadata:
  name: default
spec:
  strictAffinity: true
  maxBlocksPerHost: 4
---
apiVersion: crd.projectcalico.org/v1
kind: BGPPeer
metadata:
  name: tor
  annotations:
    projectcalico.org/metadata: '{"creationTimestamp":null}'
spec:
  peerIP: 192.0.2.1
  asNumber: 65001
  reachableBy: 192.0.2.254
---
apiVersion: crd.projectcalico.org/v1
kind: IPPool
metadata:
  name: team-a
spec:
  cidr: 10.245.0.0/16
  namespaceSelector: team == 'a'
"#;

#[test]
fn converts_nodes_reservations_ipam_config_and_v1_kinds() {
    let got = import_calico(MORE, Format::Yaml).unwrap();
    let docs = margay_crds::parse_documents(&got.text).unwrap();
    let kinds: Vec<&str> = docs.iter().map(|d| d.kind()).collect();
    assert_eq!(
        kinds,
        ["Node", "IPReservation", "IPAMConfig", "BGPPeer", "IPPool"]
    );
    let margay_crds::AnyResource::Node(n) = &docs[0] else {
        panic!()
    };
    let bgp = n.spec.bgp.as_ref().unwrap();
    assert_eq!(bgp.ipv4_address.as_deref(), Some("192.0.2.11/24"));
    assert_eq!(bgp.as_number, Some(65010));
    assert_eq!(n.spec.addresses.len(), 1);
    let margay_crds::AnyResource::IPAMConfig(c) = &docs[2] else {
        panic!()
    };
    assert!(c.spec.strict_affinity);
    assert_eq!(c.spec.max_blocks_per_host, 4);
    let dropped = got.dropped.join("\n");
    for line in [
        "Node node-1: dropped status",
        "Node node-1: dropped spec.bgp.ipv4IPIPTunnelAddr (margay never \
         encapsulates",
        "Node node-1: dropped spec.orchRefs",
        "BGPPeer tor: dropped spec.reachableBy (not supported yet",
        "IPPool team-a: dropped spec.namespaceSelector (not supported yet",
    ] {
        assert!(dropped.contains(line), "missing {line:?} in:\n{dropped}");
    }
    assert_eq!(got.dropped.len(), 5, "{dropped}");
    // The v1 CRD's kind name for IPAMConfiguration.
    let v1 = "apiVersion: crd.projectcalico.org/v1\nkind: IPAMConfig\n\
              metadata:\n  name: default\nspec:\n  strictAffinity: false\n  \
              autoAllocateBlocks: true\n";
    let got = import_calico(v1, Format::Yaml).unwrap();
    assert!(got.text.contains("kind: IPAMConfig"), "{}", got.text);
    assert!(got.dropped.is_empty(), "{:?}", got.dropped);
}

#[test]
fn refuses_workload_peering_and_foreign_kinds() {
    let peer = "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  \
                name: p\nspec:\n  localWorkloadSelector: app == 'lb'\n  asNumber: 65000\n";
    let err = import_calico(peer, Format::Yaml).unwrap_err().to_string();
    assert!(err.contains("spec.localWorkloadSelector"), "{err}");
    let felix = "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\n\
                 metadata:\n  name: default\nspec: {}\n";
    let err = import_calico(felix, Format::Yaml).unwrap_err().to_string();
    assert!(
        err.contains("\"FelixConfiguration\" is not importable"),
        "{err}"
    );
    let v1_peer =
        peer.replace("projectcalico.org/v3", "crd.projectcalico.org/v1");
    assert!(import_calico(&v1_peer, Format::Yaml).is_err());
}

#[test]
fn invalid_converted_values_fail_validation() {
    // Host bits set: Calico's own validation would reject it too.
    let input = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  \
                 name: p\nspec:\n  cidr: 10.0.0.1/16\n";
    let err = import_calico(input, Format::Yaml).unwrap_err().to_string();
    assert!(err.contains("do not validate"), "{err}");
    assert!(err.contains("10.0.0.1/16"), "{err}");
}

#[test]
fn json_output_is_an_array_of_resources() {
    let got = import_calico(CALICO, Format::Json).unwrap();
    let v: serde_json::Value = serde_json::from_str(&got.text).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 5);
    assert_eq!(v[2]["kind"], "BGPPeer");
    assert_eq!(v[2]["spec"]["peerIP"], "192.0.2.1");
}
