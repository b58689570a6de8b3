//! The committed CRD manifests must be what the Rust types generate.

#[test]
fn committed_crds_match_types() {
    let path =
        concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/crds/margay.io.yaml");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let generated = margay_crds::crd::crds_yaml().expect("CRDs serialise");
    assert!(
        committed == generated,
        "{path} is out of date with the types in crds/src; regenerate it \
         with `cargo run -p margay-crds --bin crdgen > \
         deploy/crds/margay.io.yaml`"
    );
}

#[test]
fn crds_are_cluster_scoped_with_printer_columns() {
    let crds = margay_crds::crd::all_crds();
    assert_eq!(crds.len(), margay_crds::KINDS.len());
    for crd in &crds {
        assert_eq!(crd.spec.group, "margay.io");
        assert_eq!(crd.spec.scope, "Cluster");
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1");
        assert!(v.schema.is_some(), "{} has a schema", crd.spec.names.kind);
        let cols: Vec<&str> = v
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert!(cols.contains(&"Age"), "{} has Age", crd.spec.names.kind);
    }
    let cols = |kind: &str| -> Vec<String> {
        let crd = crds.iter().find(|c| c.spec.names.kind == kind).unwrap();
        crd.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect()
    };
    assert_eq!(cols("IPPool"), ["CIDR", "BlockSize", "Disabled", "Age"]);
    assert_eq!(cols("BGPPeer"), ["PeerIP", "ASNumber", "Node", "Age"]);
    assert_eq!(cols("BlockAffinity"), ["Node", "CIDR", "State", "Age"]);
    assert_eq!(cols("IPAMBlock"), ["CIDR", "Affinity", "Age"]);
    assert_eq!(cols("Node"), ["IPv4", "ASNumber", "Age"]);
}

#[test]
fn schemas_keep_calico_field_names() {
    let yaml = margay_crds::crd::crds_yaml().unwrap();
    for field in [
        "disableBGPExport",
        "peerIP",
        "localASNumber",
        "numAllowedLocalASNumbers",
        "serviceClusterIPs",
        "routeReflectorClusterID",
        "handle_id",
        "handleID",
        "reservedCIDRs",
        "prependASPath",
    ] {
        assert!(yaml.contains(&format!("{field}:")), "schema has {field}");
    }
}
