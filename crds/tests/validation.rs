//! Every bad-input case gives an error naming the resource, the field,
//! the bad value and what is allowed; these tests pin the exact text.

use margay_crds::{parse_documents, validate_set};

/// Errors of validating `yaml` (which must parse), as text.
fn errors(yaml: &str) -> Vec<String> {
    let docs = parse_documents(yaml).unwrap_or_else(|e| panic!("{e}"));
    match validate_set(&docs) {
        Ok(()) => vec![],
        Err(errs) => errs.iter().map(ToString::to_string).collect(),
    }
}

fn pool(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: margay.io/v1\nkind: IPPool\nmetadata:\n  name: {name}\n\
         spec:\n{spec}"
    )
}

fn peer(spec: &str) -> String {
    format!(
        "apiVersion: margay.io/v1\nkind: BGPPeer\nmetadata:\n  name: tor\n\
         spec:\n{spec}"
    )
}

fn assert_errors(yaml: &str, want: &[&str]) {
    assert_eq!(errors(yaml), want, "input:\n{yaml}");
}

#[test]
fn ip_pool_cidr_errors() {
    assert_errors(
        &pool("pool-a", "  cidr: 10.0.0.0/33\n"),
        &[
            "IPPool \"pool-a\": spec.cidr = \"10.0.0.0/33\" is invalid: \
           allowed a network in CIDR notation such as \"10.244.0.0/16\" or \
           \"fd00:10:244::/48\"",
        ],
    );
    assert_errors(
        &pool("pool-a", "  cidr: 10.1.2.3\n"),
        &[
            "IPPool \"pool-a\": spec.cidr = \"10.1.2.3\" is invalid: allowed \
           a network in CIDR notation such as \"10.244.0.0/16\" or \
           \"fd00:10:244::/48\"",
        ],
    );
    assert_errors(
        &pool("pool-a", "  cidr: 10.1.2.3/16\n"),
        &[
            "IPPool \"pool-a\": spec.cidr = \"10.1.2.3/16\" is invalid: host \
           bits are set; use \"10.1.0.0/16\"",
        ],
    );
}

#[test]
fn ip_pool_block_size_errors() {
    assert_errors(
        &pool("pool-a", "  cidr: 10.1.0.0/16\n  blockSize: 33\n"),
        &[
            "IPPool \"pool-a\": spec.blockSize = 33 is invalid: allowed 20-32 \
           for an IPv4 pool",
        ],
    );
    assert_errors(
        &pool("pool-a", "  cidr: fd00::/48\n  blockSize: 64\n"),
        &[
            "IPPool \"pool-a\": spec.blockSize = 64 is invalid: allowed \
           116-128 for an IPv6 pool",
        ],
    );
    assert_errors(
        &pool("pool-a", "  cidr: 10.1.0.0/24\n  blockSize: 22\n"),
        &[
            "IPPool \"pool-a\": spec.blockSize = 22 is invalid: allowed 24-32 \
           for pool 10.1.0.0/24: a block cannot be larger than its pool",
        ],
    );
    // The default /26 does not fit a /28 pool either.
    assert_errors(
        &pool("pool-a", "  cidr: 10.1.0.0/28\n"),
        &[
            "IPPool \"pool-a\": spec.blockSize = 26 is invalid: allowed 28-32 \
           for pool 10.1.0.0/28: a block cannot be larger than its pool",
        ],
    );
}

#[test]
fn ip_pool_encapsulation_and_selectors() {
    assert_errors(
        &pool(
            "pool-a",
            "  cidr: 10.1.0.0/16\n  vxlanMode: Always\n  nodeSelector: \
             rack = 'a'\n",
        ),
        &[
            "IPPool \"pool-a\": spec.vxlanMode = \"Always\" is invalid: \
             allowed \"Never\" or \"CrossSubnet\": margay routes pod \
             traffic without encapsulation",
            "IPPool \"pool-a\": spec.nodeSelector = \"rack = 'a'\" is \
             invalid: invalid selector \"rack = 'a'\" at byte 5: expected a \
             label key, a quoted string, an operator or a parenthesis, \
             found '='",
        ],
    );
}

#[test]
fn overlapping_pools_name_both() {
    let yaml = [
        pool("pool-a", "  cidr: 10.0.0.0/16\n"),
        pool("pool-b", "  cidr: 10.0.128.0/17\n"),
        pool("pool-c", "  cidr: 10.1.0.0/16\n"),
        pool("pool-d", "  cidr: fd00::/48\n"),
    ]
    .join("---\n");
    assert_errors(
        &yaml,
        &[
            "IPPool \"pool-b\": spec.cidr = \"10.0.128.0/17\" is invalid: \
           overlaps IPPool \"pool-a\" (10.0.0.0/16); pools must not overlap",
        ],
    );
}

#[test]
fn reserved_as_numbers() {
    // A BGPPeer's asNumber 0 is unset, as in Calico (`omitempty`).
    assert_errors(
        &peer("  peerIP: 192.0.2.1\n  asNumber: 0\n"),
        &[
            "BGPPeer \"tor\": spec.asNumber = <unset> is invalid: required \
           with spec.peerIP (0 means unset)",
        ],
    );
    let cases = [
        (
            23456u64,
            "AS 23456 is AS_TRANS, the placeholder that stands in for \
             4-byte AS numbers in 2-byte fields (RFC 6793)",
        ),
        (65535, "this AS number is reserved (RFC 7300)"),
        (4294967295, "this AS number is reserved (RFC 7300)"),
    ];
    for (asn, why) in cases {
        assert_errors(
            &peer(&format!("  peerIP: 192.0.2.1\n  asNumber: {asn}\n")),
            &[&format!(
                "BGPPeer \"tor\": spec.asNumber = {asn} is invalid: {why}; \
                 allowed 1-4294967294 except 23456 and 65535"
            )],
        );
    }
    assert_errors(&peer("  peerIP: 192.0.2.1\n  asNumber: 4200000000\n"), &[]);
}

#[test]
fn peer_ip_errors() {
    let forms = "allowed an IP address with optional port: \"192.0.2.1\", \
                 \"192.0.2.1:179\", \"2001:db8::1\" or \"[2001:db8::1]:179\"";
    assert_errors(
        &peer("  peerIP: tor.example.com\n  asNumber: 65001\n"),
        &[&format!(
            "BGPPeer \"tor\": spec.peerIP = \"tor.example.com\" is invalid: \
             {forms}"
        )],
    );
    assert_errors(
        &peer("  peerIP: 2001:db8::1:179x\n  asNumber: 65001\n"),
        &[&format!(
            "BGPPeer \"tor\": spec.peerIP = \"2001:db8::1:179x\" is invalid: \
             {forms}"
        )],
    );
    assert_errors(
        &peer("  peerIP: 192.0.2.1:0\n  asNumber: 65001\n"),
        &[
            "BGPPeer \"tor\": spec.peerIP = \"192.0.2.1:0\" is invalid: \
           allowed port 1-65535 (port 0 is not usable)",
        ],
    );
    assert_errors(
        &peer("  asNumber: 65001\n"),
        &[
            "BGPPeer \"tor\": spec.peerIP = <unset> is invalid: required \
           unless spec.peerSelector is set",
        ],
    );
    assert_errors(
        &peer("  peerIP: '[2001:db8::1]:1179'\n  asNumber: 65001\n"),
        &[],
    );
}

#[test]
fn password_errors() {
    let base = "  peerIP: 192.0.2.1\n  asNumber: 65001\n";
    assert_errors(
        &peer(&format!("{base}  password: {{}}\n")),
        &[
            "BGPPeer \"tor\": spec.password = {} is invalid: allowed exactly \
           one of secretKeyRef, file or value; none is set",
        ],
    );
    assert_errors(
        &peer(&format!(
            "{base}  password:\n    value: s3cret\n    file: /etc/pw\n"
        )),
        &[
            "BGPPeer \"tor\": spec.password = {file, value} is invalid: \
           allowed exactly one of secretKeyRef, file or value",
        ],
    );
    assert_errors(
        &peer(&format!(
            "{base}  password:\n    value: {}\n",
            "x".repeat(81)
        )),
        &[
            "BGPPeer \"tor\": spec.password.value = <81 bytes> is invalid: \
           allowed at most 80 bytes (the TCP MD5 key limit, RFC 2385)",
        ],
    );
    assert_errors(
        &peer(&format!(
            "{base}  password:\n    secretKeyRef:\n      name: bgp\n      \
             key: tor\n"
        )),
        &[],
    );
}

#[test]
fn duration_errors() {
    let base = "  peerIP: 192.0.2.1\n  asNumber: 65001\n";
    assert_errors(
        &peer(&format!(
            "{base}  maxRestartTime: 2 minutes\n  keepaliveTime: '90'\n"
        )),
        &[
            "BGPPeer \"tor\": spec.maxRestartTime = \"2 minutes\" is \
             invalid: unknown unit \" minutes\" (use ns, us, ms, s, m or h); \
             allowed a duration such as \"90s\", \"2m\" or \"1h30m\" (units \
             ns, us, ms, s, m, h)",
            "BGPPeer \"tor\": spec.keepaliveTime = \"90\" is invalid: \
             missing unit after the number at byte 2 (use ns, us, ms, s, m \
             or h); allowed a duration such as \"90s\", \"2m\" or \"1h30m\" \
             (units ns, us, ms, s, m, h)",
        ],
    );
}

#[test]
fn peer_selector_errors() {
    assert_errors(
        &peer(
            "  peerSelector: has(route-reflector\n  peerIP: 192.0.2.1\n  \
             node: n1\n  nodeSelector: all()\n",
        ),
        &[
            "BGPPeer \"tor\": spec.nodeSelector = \"all()\" is invalid: \
             allowed only when spec.node is not set (use one of node or \
             nodeSelector)",
            "BGPPeer \"tor\": spec.peerSelector = \"has(route-reflector\" is \
             invalid: invalid selector \"has(route-reflector\" at byte 19: \
             expected \")\", found end of input",
            "BGPPeer \"tor\": spec.peerIP = \"192.0.2.1\" is invalid: allowed \
             only when spec.peerSelector is not set",
        ],
    );
}

#[test]
fn bgp_configuration_errors() {
    let yaml = r#"apiVersion: margay.io/v1
kind: BGPConfiguration
metadata:
  name: default
spec:
  asNumber: 23456
  listenPort: 0
  logSeverityScreen: Verbose
  communities:
    - name: c1
      value: 65536:1
  prefixAdvertisements:
    - cidr: 10.0.0.0/8
      communities: [c2]
"#;
    assert_errors(
        yaml,
        &[
            "BGPConfiguration \"default\": spec.logSeverityScreen = \
             \"Verbose\" is invalid: allowed Trace, Debug, Info, Warning, \
             Error, Fatal (in any case)",
            "BGPConfiguration \"default\": spec.asNumber = 23456 is invalid: \
             AS 23456 is AS_TRANS, the placeholder that stands in for 4-byte \
             AS numbers in 2-byte fields (RFC 6793); allowed 1-4294967294 \
             except 23456 and 65535",
            "BGPConfiguration \"default\": spec.listenPort = 0 is invalid: \
             allowed 1-65535",
            "BGPConfiguration \"default\": spec.communities[0].value = \
             \"65536:1\" is invalid: allowed \"aa:nn\" with each part \
             0-65535 (standard community) or \"aa:nn:mm\" with each part \
             0-4294967295 (large community)",
            "BGPConfiguration \"default\": \
             spec.prefixAdvertisements[0].communities[0] = \"c2\" is \
             invalid: allowed a name from spec.communities (c1) or a \
             literal value: allowed \"aa:nn\" with each part 0-65535 \
             (standard community) or \"aa:nn:mm\" with each part \
             0-4294967295 (large community)",
        ],
    );
}

#[test]
fn bgp_filter_errors() {
    let yaml = r#"apiVersion: margay.io/v1
kind: BGPFilter
metadata:
  name: f1
spec:
  exportV4:
    - cidr: 10.0.0.0/8
      matchOperator: In
      prefixLength: {min: 24, max: 33}
      action: Accept
    - cidr: fd00::/8
      matchOperator: Equal
      action: Reject
  importV6:
    - cidr: fd00::/8
      matchOperator: In
      prefixLength: {min: 64, max: 48}
      action: Reject
      operations:
        - setPriority: {value: 0}
"#;
    assert_errors(
        yaml,
        &[
            "BGPFilter \"f1\": spec.exportV4[0].prefixLength.max = 33 is \
             invalid: allowed 0-32 for IPv4 routes",
            "BGPFilter \"f1\": spec.exportV4[1].cidr = \"fd00::/8\" is \
             invalid: allowed an IPv4 CIDR in this list",
            "BGPFilter \"f1\": spec.importV6[0].prefixLength.min = 64 is \
             invalid: allowed at most prefixLength.max (48)",
            "BGPFilter \"f1\": spec.importV6[0].operations = <1 operations> \
             is invalid: allowed only with action Accept",
            "BGPFilter \"f1\": spec.importV6[0].operations[0].setPriority.value \
             = 0 is invalid: not supported by margay: bgpd matches BGP routes \
             only and felix-lite programs them with the default metric",
        ],
    );
}

#[test]
fn node_errors() {
    let yaml = "apiVersion: margay.io/v1\nkind: Node\nmetadata:\n  name: n1\n  \
                labels: {rack: r1}\nspec:\n  bgp:\n    ipv4Address: \
                10.0.0.300/24\n    asNumber: 65535\n    \
                routeReflectorClusterID: fd00::1\n  addresses:\n    - \
                address: node-1.example.com\n      type: InternalIP\n";
    assert_errors(
        yaml,
        &[
            "Node \"n1\": spec.bgp.ipv4Address = \"10.0.0.300/24\" is \
             invalid: allowed an IPv4 address in CIDR form such as \
             \"10.0.0.1/24\"",
            "Node \"n1\": spec.bgp.asNumber = 65535 is invalid: this AS \
             number is reserved (RFC 7300); allowed 1-4294967294 except \
             23456 and 65535",
            "Node \"n1\": spec.bgp.routeReflectorClusterID = \"fd00::1\" is \
             invalid: allowed an IPv4 address such as \"224.0.0.1\" (the RFC \
             4456 CLUSTER_ID is 4 octets)",
            "Node \"n1\": spec.addresses[0].address = \"node-1.example.com\" \
             is invalid: allowed an IP address or CIDR such as \"10.0.0.1\" \
             or \"10.0.0.0/24\"",
        ],
    );
}

#[test]
fn set_errors_duplicates_and_missing_filters() {
    let yaml = [
        pool("pool-a", "  cidr: 10.0.0.0/16\n"),
        pool("pool-a", "  cidr: 10.9.0.0/16\n"),
        "apiVersion: margay.io/v1\nkind: BGPFilter\nmetadata:\n  name: \
         export-pods\nspec: {}\n"
            .to_string(),
        peer(
            "  peerIP: 192.0.2.1\n  asNumber: 65001\n  filters: \
             [export-pods, no-such-filter]\n",
        ),
    ]
    .join("---\n");
    assert_errors(
        &yaml,
        &[
            "IPPool \"pool-a\": metadata.name = \"pool-a\" is invalid: \
             another IPPool has the same name; names must be unique per kind",
            "BGPPeer \"tor\": spec.filters[1] = \"no-such-filter\" is \
             invalid: no BGPFilter named \"no-such-filter\"; defined: \
             export-pods",
        ],
    );
}

#[test]
fn mesh_fast_timer_and_bfd_errors() {
    let cfg = |spec: &str| {
        format!(
            "apiVersion: margay.io/v1\nkind: BGPConfiguration\nmetadata:\n  \
             name: default\nspec:\n{spec}"
        )
    };
    assert_errors(
        &cfg("  nodeMeshKeepaliveTime: 1s\n  nodeMeshBFD:\n    enabled: \
              true\n    minInterval: 100ms\n    multiplier: 3\n"),
        &[],
    );
    assert_errors(
        &cfg("  nodeMeshKeepaliveTime: 500ms\n  nodeMeshBFD:\n    \
              minInterval: 0s\n    multiplier: 0\n"),
        &[
            "BGPConfiguration \"default\": spec.nodeMeshKeepaliveTime = \
             \"500ms\" is invalid: allowed 1s to 21845s: the hold time is \
             three times the keepalive and must be 3-65535 seconds (RFC 4271 \
             section 4.2)",
            "BGPConfiguration \"default\": spec.nodeMeshBFD.minInterval = \
             \"0s\" is invalid: allowed a non-zero interval of at most 1h \
             (RFC 5880 section 6.8.1)",
            "BGPConfiguration \"default\": spec.nodeMeshBFD.multiplier = 0 \
             is invalid: allowed 1-255 (RFC 5880 section 6.8.6)",
        ],
    );
    assert_errors(
        &cfg("  nodeMeshKeepaliveTime: 7h\n"),
        &[
            "BGPConfiguration \"default\": spec.nodeMeshKeepaliveTime = \
           \"7h\" is invalid: allowed 1s to 21845s: the hold time is three \
           times the keepalive and must be 3-65535 seconds (RFC 4271 section \
           4.2)",
        ],
    );
    // The BGPPeer's own BFD field keeps its name in errors.
    assert_errors(
        &peer(
            "  peerIP: 192.0.2.1\n  asNumber: 65001\n  bfd:\n    \
               enabled: true\n    minInterval: fast\n",
        ),
        &[
            "BGPPeer \"tor\": spec.bfd.minInterval = \"fast\" is invalid: \
           expected a number at byte 0; allowed a duration such as \"90s\", \
           \"2m\" or \"1h30m\" (units ns, us, ms, s, m, h)",
        ],
    );
}
