use serde_json::json;

use super::*;

fn base() -> Value {
    json!({
        "cniVersion": "1.1.0",
        "name": "k8s-pod-network",
        "type": "margay",
        "nodename": "node1",
        "etcd_endpoints": "http://127.0.0.1:2379",
        "mtu": 1450,
        "log_level": "warning",
        "ipam": {"type": "margay-ipam", "assign_ipv6": "true",
                 "ipv4_pools": ["default-ipv4"]},
        "container_settings": {"allow_ip_forwarding": true},
    })
}

fn parse_v(v: &Value) -> Result<NetConf> {
    parse(v.to_string().as_bytes(), Strictness::Strict)
}

fn with(key: &str, value: Value) -> Value {
    let mut v = base();
    v[key] = value;
    v
}

#[test]
fn calico_style_config_parses() {
    let c = parse_v(&base()).unwrap();
    assert_eq!(c.cni_version, Version::V1_1_0);
    assert_eq!(c.handle("abc"), "k8s-pod-network.abc");
    assert_eq!(
        c.datastore,
        DatastoreSpec::etcd(vec!["http://127.0.0.1:2379".into()])
    );
    assert_eq!(c.datastore.to_string(), "etcd:http://127.0.0.1:2379");
    assert_eq!(c.mtu, 1450);
    assert_eq!(c.num_queues, 1, "Calico's default");
    assert_eq!(
        parse_v(&with("num_queues", json!(4))).unwrap().num_queues,
        4
    );
    assert_eq!(c.log_level, LogLevel::Warn);
    assert!(c.allow_ip_forwarding);
    assert_eq!(c.endpoint_dir, PathBuf::from(DEFAULT_ENDPOINT_DIR));
    assert_eq!(
        c.ipam,
        IpamConf::Margay(MargayIpamConf {
            assign_ipv4: true,
            assign_ipv6: true,
            ipv4_pools: vec!["default-ipv4".into()],
            ipv6_pools: vec![],
        })
    );
    assert_eq!(c.node_name().unwrap(), "node1");
}

/// Calico's conflist has `"policy": {"type": "k8s"}`: accepted, with a
/// warning that margay enforces no NetworkPolicy.
#[test]
fn calico_policy_is_accepted_with_a_warning() {
    let c = parse_v(&with("policy", json!({"type": "k8s"}))).unwrap();
    assert_eq!(
        c.warnings,
        [
            r#"field "policy" = {"type":"k8s"} is ignored: margay does not enforce NetworkPolicy"#
        ]
    );
    assert!(parse_v(&base()).unwrap().warnings.is_empty());
}

/// A 10 MB value is quoted by its first characters and its size.
#[test]
fn unsupported_field_quotes_a_short_excerpt() {
    let huge = "x".repeat(10 << 20);
    let e = parse_v(&with("policy_typo", json!(huge))).unwrap_err();
    assert_eq!(e.code, Code::UnsupportedField);
    assert!(e.msg.len() < 200, "{} bytes", e.msg.len());
    assert!(e.msg.ends_with("... (10485762 bytes)"), "{}", e.msg);
    let e = parse_v(&with(&huge, json!(1))).unwrap_err();
    assert!(e.msg.len() < 200, "{} bytes", e.msg.len());
}

#[test]
fn unknown_top_level_field_is_code_2_with_key_and_value() {
    let e = parse_v(&with("plicy", json!({"type": "k8s"}))).unwrap_err();
    assert_eq!(e.code, Code::UnsupportedField);
    assert_eq!(e.msg, r#"unsupported field "plicy" = {"type":"k8s"}"#);
    assert!(
        e.details
            .starts_with("allowed here: cniVersion, name, type")
    );
}

#[test]
fn unknown_nested_fields_are_code_2() {
    let mut v = base();
    v["ipam"]["subnet"] = json!("10.0.0.0/24");
    let e = parse_v(&v).unwrap_err();
    assert_eq!(e.code, Code::UnsupportedField);
    assert_eq!(e.msg, r#"unsupported field "ipam.subnet" = "10.0.0.0/24""#);
    let e =
        parse_v(&with("kubernetes", json!({"k8s_api_root": "x"}))).unwrap_err();
    assert_eq!(
        e.msg,
        r#"unsupported field "kubernetes.k8s_api_root" = "x""#
    );
}

#[test]
fn ipam_only_mode_ignores_the_main_plugins_fields() {
    let v = with("bridge", json!("cni0"));
    let c = parse(v.to_string().as_bytes(), Strictness::IpamOnly).unwrap();
    assert_eq!(c.name, "k8s-pod-network");
    let mut v = base();
    v["ipam"]["type"] = json!("host-local");
    let e = parse(v.to_string().as_bytes(), Strictness::IpamOnly).unwrap_err();
    assert_eq!(e.code, Code::InvalidConfig);
}

#[test]
fn bad_values_are_code_7_naming_the_field() {
    let cases = [
        (
            with("mtu", json!("big")),
            "invalid network config field \"mtu\": invalid type: string \"big\", expected u32",
        ),
        (
            with("mtu", json!(500)),
            "invalid network config field \"mtu\": 500 is out of range (1280-65535)",
        ),
        (
            with("num_queues", json!(0)),
            "invalid network config field \"num_queues\": 0 is out of range (1-4096)",
        ),
        (
            with("num_queues", json!(5000)),
            "invalid network config field \"num_queues\": 5000 is out of range (1-4096)",
        ),
        (
            with("log_level", json!("loud")),
            "invalid network config field \"log_level\": \"loud\" is not one of debug, info, warning, error, none",
        ),
        (
            with("datastore_type", json!("consul")),
            "invalid network config field \"datastore_type\": \"consul\" is not one of \"etcdv3\", \"kubernetes\", \"file\"",
        ),
        (
            with("etcd_endpoints", json!("127.0.0.1:2379")),
            "invalid network config field \"etcd_endpoints\": etcd endpoint \"127.0.0.1:2379\" must start with http:// or https://",
        ),
        (
            with("name", json!("")),
            "invalid network config field \"name\": missing or empty",
        ),
    ];
    for (v, want) in cases {
        let e = parse_v(&v).unwrap_err();
        assert_eq!(e.code, Code::InvalidConfig, "{want}");
        assert_eq!(e.msg, want);
    }
    let mut v = base();
    v["ipam"]["assign_ipv4"] = json!("yes");
    let e = parse_v(&v).unwrap_err();
    assert_eq!(
        e.msg,
        "invalid network config field \"ipam.assign_ipv4\": expected true or false (boolean or string), got \"yes\""
    );
}

#[test]
fn datastore_types() {
    let mut v = with("datastore_type", json!("kubernetes"));
    v["kubernetes"] = json!({"kubeconfig": "/etc/k.conf"});
    assert_eq!(
        parse_v(&v).unwrap().datastore.to_string(),
        "kubernetes:/etc/k.conf"
    );
    let v = with("datastore_type", json!("file"));
    assert_eq!(
        parse_v(&v).unwrap_err().msg,
        "invalid network config field \"datastore_file\": required when datastore_type is \"file\""
    );
}

#[test]
fn version_decode_and_masq_errors() {
    let e = parse_v(&with("cniVersion", json!("0.2.0"))).unwrap_err();
    assert_eq!(e.code, Code::IncompatibleVersion);
    let e = parse(b"{not json", Strictness::Strict).unwrap_err();
    assert_eq!(e.code, Code::Decode);
    let e = parse_v(&with("ipMasq", json!(true))).unwrap_err();
    assert_eq!(e.code, Code::UnsupportedField);
    assert!(e.msg.contains("\"ipMasq\" = true"));
    assert_eq!(
        peek_version(b"{\"cniVersion\":\"0.4.0\"}").as_deref(),
        Some("0.4.0")
    );
}

#[test]
fn delegated_ipam_and_gc_attachments() {
    let mut v = base();
    v["ipam"] =
        json!({"type": "host-local", "ranges": [[{"subnet": "10.1.0.0/24"}]]});
    v["cni.dev/valid-attachments"] =
        json!([{"containerID": "c1", "ifname": "eth0"}]);
    let c = parse_v(&v).unwrap();
    assert_eq!(
        c.ipam,
        IpamConf::Delegated {
            plugin: "host-local".into()
        }
    );
    assert_eq!(c.valid_attachments.unwrap()[0].container_id, "c1");
}

#[test]
fn etcd_tls_keys_are_calicos_and_checked_once() {
    let mut v = with("etcd_endpoints", json!("https://10.0.0.1:2379"));
    v["etcd_scheme"] = json!("https");
    v["etcd_ca_cert_file"] = json!("/etc/margay/etcd-ca.pem");
    v["etcd_cert_file"] = json!("/etc/margay/etcd.pem");
    v["etcd_key_file"] = json!("/etc/margay/etcd-key.pem");
    let c = parse_v(&v).unwrap();
    // The same value `--datastore` takes for the daemons.
    assert_eq!(
        c.datastore.to_string(),
        "etcd:https://10.0.0.1:2379?ca_cert_file=/etc/margay/etcd-ca.pem\
         &cert_file=/etc/margay/etcd.pem&key_file=/etc/margay/etcd-key.pem"
    );
    assert_eq!(
        c.datastore.to_string().parse::<DatastoreSpec>(),
        Ok(c.datastore)
    );

    // Calico's templates leave unused keys "": unset, not a path.
    let mut plain = base();
    for k in [
        "etcd_scheme",
        "etcd_ca_cert_file",
        "etcd_cert_file",
        "etcd_key_file",
    ] {
        plain[k] = json!("");
    }
    assert!(parse_v(&plain).is_ok());

    let cases = [
        (
            "etcd_key_file",
            json!(null),
            "\"etcd_key_file\": required with etcd_cert_file",
        ),
        (
            "etcd_ca_cert_file",
            json!(null),
            "\"etcd_ca_cert_file\": required with https:// endpoints",
        ),
        (
            "etcd_scheme",
            json!("http"),
            "\"etcd_scheme\": \"http\" but etcd_endpoints \"https://10.0.0.1:2379\" is not http://",
        ),
        (
            "etcd_endpoints",
            json!("http://10.0.0.1:2379"),
            "\"etcd_endpoints\": \"http://10.0.0.1:2379\" is http:// but TLS files are given",
        ),
    ];
    for (key, value, want) in cases {
        let mut bad = v.clone();
        if value.is_null() {
            bad.as_object_mut().unwrap().remove(key);
        } else {
            bad[key] = value;
        }
        let e = parse_v(&bad).unwrap_err();
        assert_eq!(e.code, Code::InvalidConfig);
        assert!(e.msg.contains(want), "{key}: {}", e.msg);
    }
    // Not silently dropped with another datastore.
    let mut k8s = with("datastore_type", json!("kubernetes"));
    k8s["etcd_cert_file"] = json!("/c.pem");
    assert_eq!(
        parse_v(&k8s).unwrap_err().msg,
        "invalid network config field \"etcd_cert_file\": only used with datastore_type \"etcdv3\", not \"kubernetes\""
    );
}
