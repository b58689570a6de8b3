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
    let input = input.replace("ipipMode: Always", "vxlanMode: CrossSubnet");
    let err = import_calico(&input, Format::Yaml).unwrap_err().to_string();
    assert!(err.contains("spec.vxlanMode: CrossSubnet"), "{err}");
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
