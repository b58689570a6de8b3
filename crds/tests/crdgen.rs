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
    assert_eq!(cols("Node"), ["IPv4", "ASNumber", "IPv6", "Age"]);
    assert_eq!(cols("IPAMHandle"), ["HandleID", "Age"]);
    assert_eq!(
        cols("IPAMConfig"),
        [
            "StrictAffinity",
            "MaxBlocksPerHost",
            "AutoAllocateBlocks",
            "Age"
        ]
    );
    assert_eq!(cols("IPReservation"), ["ReservedCIDRs", "Age"]);
}

/// Every kind has a short name for kubectl, none shadowing a built-in
/// Kubernetes one (`no` is core Node's, so margay's Node is `mgnode`).
#[test]
fn crds_have_short_names() {
    let mut seen = Vec::new();
    for crd in margay_crds::crd::all_crds() {
        let names = &crd.spec.names;
        let shorts = names.short_names.clone().unwrap_or_default();
        assert!(!shorts.is_empty(), "{} has a short name", names.kind);
        for s in shorts {
            assert!(
                !["no", "po", "svc", "ns", "ep", "cm", "sa", "ds"]
                    .contains(&s.as_str()),
                "{}: {s} shadows a built-in",
                names.kind
            );
            assert!(!seen.contains(&s), "{s} used twice");
            seen.push(s);
        }
    }
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

/// No `format: uint*` (OpenAPI defines none; apiservers from 1.34 warn on
/// each at apply): the bound it meant is a `maximum` instead.
#[test]
fn unsigned_fields_have_bounds_not_uint_formats() {
    let yaml = margay_crds::crd::crds_yaml().expect("CRDs serialise");
    assert!(!yaml.contains("format: uint"), "a uint format is left");
    let pools = margay_crds::crd::all_crds()
        .into_iter()
        .find(|c| c.spec.names.kind == "IPPool")
        .unwrap();
    let schema = serde_json::to_value(&pools.spec.versions[0].schema).unwrap();
    let block_size = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["blockSize"];
    // JSONSchemaProps keeps bounds as f64.
    assert_eq!(block_size["maximum"].as_f64(), Some(128.0), "{block_size}");
    assert_eq!(block_size["minimum"].as_f64(), Some(0.0), "{block_size}");
}
