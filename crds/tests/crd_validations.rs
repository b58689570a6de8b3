//! The generated CRDs carry margay's single-object checks as OpenAPI
//! constraints and CEL `x-kubernetes-validations`, so `kubectl apply`
//! refuses what margay refuses. No apiserver runs here: these tests pin
//! where each rule sits and check every rule's shape (balanced
//! parentheses and quotes, only functions of the Kubernetes CEL
//! libraries available from 1.31: strings, lists, `isIP`, `isCIDR`,
//! `cidr()`).

use margay_crds::crd::all_crds;
use serde_json::Value;

/// The `spec` schema of the CRD of `kind`.
fn spec_schema(kind: &str) -> Value {
    let crd = all_crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"));
    let v = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
    v["openAPIV3Schema"]["properties"]["spec"].clone()
}

/// The rules at `schema` (its `x-kubernetes-validations`).
fn rules(schema: &Value) -> Vec<String> {
    schema["x-kubernetes-validations"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["rule"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn has_rule(schema: &Value, needle: &str) -> bool {
    rules(schema).iter().any(|r| r.contains(needle))
}

/// Every rule object in `v`, recursively.
fn all_rules(v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Array(rs)) = m.get("x-kubernetes-validations") {
                for r in rs {
                    out.push((
                        r["rule"].as_str().unwrap_or_default().to_string(),
                        r["message"].as_str().unwrap_or_default().to_string(),
                    ));
                }
            }
            m.values().for_each(|x| all_rules(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| all_rules(x, out)),
        _ => {}
    }
}

#[test]
fn ip_pool_rules() {
    let spec = spec_schema("IPPool");
    let cidr = &spec["properties"]["cidr"];
    assert_eq!(cidr["maxLength"], 48);
    assert!(has_rule(cidr, "isCIDR(self)"));
    assert!(has_rule(cidr, "cidr(self) == cidr(self).masked()"));
    assert!(has_rule(cidr, "169.254.0.0/16"));
    assert!(has_rule(cidr, "fe80::/10"));
    assert!(rules(cidr).contains(&"self == oldSelf".to_string()));
    let bs = &spec["properties"]["blockSize"];
    assert!(rules(bs).contains(&"self == oldSelf".to_string()));
    assert_eq!(bs["maximum"], 128.0);
    assert!(has_rule(
        &spec,
        "self.blockSize >= 20 && self.blockSize <= 32"
    ));
    assert!(has_rule(&spec, "cidr(self.cidr).prefixLength() <="));
    for mode in ["vxlanMode", "ipipMode"] {
        assert!(has_rule(&spec["properties"][mode], "self != 'Always'"));
    }
    assert!(has_rule(
        &spec["properties"]["allowedUses"],
        "self.all(u, u == 'LoadBalancer')"
    ));
}

#[test]
fn bgp_peer_rules() {
    let spec = spec_schema("BGPPeer");
    for needle in [
        "!has(self.nodeSelector)",
        "!has(self.peerSelector) || size(self.peerSelector) == 0 || \
         !has(self.asNumber)",
        "peerIP is required",
        "!has(self.keepOriginalNextHop) || !self.keepOriginalNextHop",
        "!has(self.reachableBy)",
    ] {
        let found = has_rule(&spec, needle)
            || spec["x-kubernetes-validations"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["message"].as_str().unwrap().contains(needle));
        assert!(found, "{needle}: {:?}", rules(&spec));
    }
    assert!(has_rule(&spec["properties"]["reachableBy"], "isIP(self)"));
    let next_hop = &spec["properties"]["nextHopMode"]["enum"];
    assert!(next_hop.as_array().unwrap().contains(&"Self".into()));
}

#[test]
fn bgp_filter_rules() {
    let spec = spec_schema("BGPFilter");
    assert!(has_rule(&spec, "self.importV6.all(r,"));
    let list = &spec["properties"]["exportV4"];
    assert_eq!(list["maxItems"], 1000);
    let rule = &list["items"];
    for needle in [
        "== has(self.matchOperator)",
        "!has(self.interface) || size(self.interface) == 0",
        "!has(self.priority)",
        "self.action == 'Accept'",
        "self.prefixLength.max >= cidr(self.cidr).prefixLength()",
    ] {
        assert!(has_rule(rule, needle), "{needle}: {:?}", rules(rule));
    }
    let cidr = &rule["properties"]["cidr"];
    assert_eq!(cidr["maxLength"], 43);
    assert!(has_rule(cidr, "cidr(self) == cidr(self).masked()"));
    let ops = &rule["properties"]["operations"];
    assert_eq!(ops["maxItems"], 10);
    assert_eq!(ops["items"]["maxProperties"], 1);
    assert!(has_rule(&ops["items"], "!has(self.setPriority)"));
    let op = &rule["properties"]["matchOperator"]["enum"];
    for v in ["Equal", "NotEqual", "In", "NotIn"] {
        assert!(op.as_array().unwrap().contains(&v.into()), "{op}");
    }
    assert!(has_rule(
        &rule["properties"]["prefixLength"],
        "self.min <= self.max"
    ));
}

#[test]
fn bgp_configuration_and_ipam_config_rules() {
    let spec = spec_schema("BGPConfiguration");
    assert_eq!(
        spec["properties"]["logSeverityScreen"]["pattern"],
        "^(?i)(Trace|Debug|Info|Warning|Error|Fatal)?$"
    );
    assert_eq!(spec["properties"]["listenPort"]["minimum"], 1.0);
    let spec = spec_schema("IPAMConfig");
    assert!(has_rule(&spec, "self.maxBlocksPerHost == 0"));
    assert!(has_rule(&spec, "self.autoAllocateBlocks"));
}

/// Every rule is well formed and uses only functions the apiserver
/// knows; every message is set.
#[test]
fn every_rule_is_well_formed() {
    const KNOWN: &[&str] = &[
        "has",
        "size",
        "all",
        "exists",
        "isCIDR",
        "cidr",
        "masked",
        "ip",
        "family",
        "prefixLength",
        "containsIP",
        "isIP",
        "string",
    ];
    let mut found = Vec::new();
    for crd in all_crds() {
        all_rules(&serde_json::to_value(&crd).unwrap(), &mut found);
    }
    assert!(found.len() > 30, "{}", found.len());
    for (rule, message) in &found {
        assert!(!message.is_empty(), "rule without message: {rule}");
        let (mut depth, mut quote) = (0i32, false);
        let chars: Vec<char> = rule.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            match c {
                '\'' => quote = !quote,
                '(' if !quote => depth += 1,
                ')' if !quote => depth -= 1,
                _ => {}
            }
            assert!(depth >= 0, "unbalanced: {rule}");
            // A call: an identifier directly followed by '('.
            if *c == '(' && !quote && i > 0 && chars[i - 1].is_alphanumeric() {
                let name: String = chars[..i]
                    .iter()
                    .rev()
                    .take_while(|c| c.is_alphanumeric())
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                assert!(KNOWN.contains(&name.as_str()), "{name}() in {rule}");
            }
        }
        assert_eq!((depth, quote), (0, false), "unbalanced: {rule}");
        assert!(!rule.contains('"'), "CEL strings here use ': {rule}");
    }
}
