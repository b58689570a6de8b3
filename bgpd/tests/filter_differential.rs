//! Differential test of the BGPFilter prefix match against BIRD, the
//! reference Calico renders BGPFilters into.
//!
//! One BIRD in the peer namespace originates a fixed set of IPv4 and
//! IPv6 prefixes. It sends them over eBGP to bgpd, whose import filter is
//! the BGPFilter under test, and it pipes them into its own tables
//! `ref4`/`ref6` through the BIRD function Calico's confd would generate
//! for the same rules. The prefixes bgpd accepted and those in BIRD's
//! reference tables must be the same, for every `matchOperator` with and
//! without `prefixLength`, in both families.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::Lab;
use ipnetwork::IpNetwork;
use margay_ctlproto::{Request, Response};
use margay_testkit::{require_root, wait_until};

/// What BIRD originates: around the rule CIDRs 10.0.0.0/16 and
/// 2001:db8::/48, shorter, equal, longer, inside, beside and default.
const ROUTES_V4: &[&str] = &[
    "0.0.0.0/0",
    "10.0.0.0/8",
    "10.0.0.0/15",
    "10.0.0.0/16",
    "10.0.0.0/17",
    "10.0.1.0/24",
    "10.0.1.128/25",
    "10.0.1.1/32",
    "10.1.0.0/16",
    "10.1.2.0/24",
    "11.0.0.0/16",
    "192.168.0.0/16",
];
const ROUTES_V6: &[&str] = &[
    "::/0",
    "2001:db8::/32",
    "2001:db8::/47",
    "2001:db8::/48",
    "2001:db8::/56",
    "2001:db8:0:1::/64",
    "2001:db8:0:1::1/128",
    "2001:db8:1::/48",
    "2001:db9::/48",
    "fd00:1::/48",
];

/// One case: the operator and an optional `prefixLength` per family.
struct Case {
    op: &'static str,
    len_v4: Option<(u8, u8)>,
    len_v6: Option<(u8, u8)>,
}

/// The rule as margay YAML (flow style).
fn rule_yaml(cidr: &str, op: &str, len: Option<(u8, u8)>) -> String {
    let len = len.map_or(String::new(), |(min, max)| {
        format!(", prefixLength: {{min: {min}, max: {max}}}")
    });
    format!(
        "{{cidr: \"{cidr}\", matchOperator: {op}{len}, action: Accept}}, \
         {{action: Reject}}"
    )
}

/// The condition Calico's confd writes for a rule (template_funcs.go
/// `filterMatchCIDR`): the operator's BIRD symbol against the CIDR, or
/// against the set `[ cidr{lo,hi} ]` with lo raised to the CIDR's length
/// and hi capped at the family's maximum.
fn calico_condition(cidr: &str, op: &str, len: Option<(u8, u8)>) -> String {
    let sym = match op {
        "Equal" => "=",
        "NotEqual" => "!=",
        "In" => "~",
        "NotIn" => "!~",
        other => panic!("operator {other}"),
    };
    let net: IpNetwork = cidr.parse().unwrap();
    let right = match len {
        None => cidr.to_string(),
        Some((min, max)) => {
            let family_max = if net.is_ipv4() { 32 } else { 128 };
            let lo = min.max(net.prefix());
            let hi = max.min(family_max);
            format!("[ {cidr}{{{lo},{hi}}} ]")
        }
    };
    format!("if ((net {sym} {right})) then {{ accept; }}")
}

fn bird_conf(case: &Case) -> String {
    let statics = |routes: &[&str]| {
        routes
            .iter()
            .map(|r| format!("route {r} blackhole;"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        r#"router id 10.0.0.2;
protocol device {{}}
ipv4 table ref4;
ipv6 table ref6;
protocol static feed4 {{ ipv4; {s4} }}
protocol static feed6 {{ ipv6; {s6} }}
function calico_v4() {{ {c4} }}
function calico_v6() {{ {c6} }}
protocol pipe p4 {{ table master4; peer table ref4; import none; export filter {{ calico_v4(); reject; }}; }}
protocol pipe p6 {{ table master6; peer table ref6; import none; export filter {{ calico_v6(); reject; }}; }}
protocol bgp dut {{
  local 10.0.0.2 as 65001; neighbor 10.0.0.1 as 65000; connect retry time 1;
  ipv4 {{ import none; export where proto = "feed4"; }};
}}
protocol bgp dut6 {{
  local fd00::2 as 65001; neighbor fd00::1 as 65000; connect retry time 1;
  ipv6 {{ import none; export where proto = "feed6"; }};
}}
"#,
        s4 = statics(ROUTES_V4),
        s6 = statics(ROUTES_V6),
        c4 = calico_condition("10.0.0.0/16", case.op, case.len_v4),
        c6 = calico_condition("2001:db8::/48", case.op, case.len_v6),
    )
}

fn bgpd_yaml(case: &Case) -> String {
    format!(
        r#"apiVersion: margay.io/v1
kind: Node
metadata: {{name: dut}}
spec: {{bgp: {{ipv4Address: 10.0.0.1/24, ipv6Address: fd00::1/64}}}}
---
apiVersion: margay.io/v1
kind: BGPConfiguration
metadata: {{name: default}}
spec: {{asNumber: 65000, nodeToNodeMeshEnabled: false}}
---
apiVersion: margay.io/v1
kind: BGPPeer
metadata: {{name: peer}}
spec: {{peerIP: "10.0.0.2", asNumber: 65001, filters: [under-test]}}
---
apiVersion: margay.io/v1
kind: BGPPeer
metadata: {{name: peer6}}
spec: {{peerIP: "fd00::2", asNumber: 65001, filters: [under-test]}}
---
apiVersion: margay.io/v1
kind: BGPFilter
metadata: {{name: under-test}}
spec:
  importV4: [{r4}]
  importV6: [{r6}]
  exportV4: [{{action: Reject}}]
  exportV6: [{{action: Reject}}]
"#,
        r4 = rule_yaml("10.0.0.0/16", case.op, case.len_v4),
        r6 = rule_yaml("2001:db8::/48", case.op, case.len_v6),
    )
}

/// The prefixes in a `birdc show route` listing.
fn listed_prefixes(text: &str) -> BTreeSet<IpNetwork> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|w| w.parse::<IpNetwork>().ok())
        .filter(|n| n.to_string().contains('/'))
        .collect()
}

/// Runs one case; returns (accepted by bgpd, accepted by BIRD).
fn run_case(
    lab: &mut Lab,
    case: &Case,
) -> (BTreeSet<IpNetwork>, BTreeSet<IpNetwork>) {
    std::fs::write(lab.path("bird.conf"), bird_conf(case)).unwrap();
    let sock = lab.path("bird.ctl");
    let _ = std::fs::remove_file(&sock);
    let mut c = Command::new("bird");
    c.args(["-f", "-c"])
        .arg(lab.path("bird.conf"))
        .arg("-s")
        .arg(&sock);
    let bird = lab.peer.spawn(c).unwrap();
    lab.start_bgpd(&bgpd_yaml(case), &[]).unwrap();
    let total = (ROUTES_V4.len() + ROUTES_V6.len()) as u64;
    let received = || match lab.query(&Request::Peers) {
        Some(Response::Peers { peers }) => {
            peers.iter().map(|p| p.prefixes_received).sum::<u64>()
        }
        _ => 0,
    };
    let ok = wait_until(Duration::from_secs(40), || received() == total);
    assert!(
        ok,
        "case {}: bgpd received {} of {total} prefixes\nbird: {}\nbgpd: {}",
        case.op,
        received(),
        lab.peer.log(bird),
        lab.bgpd_log()
    );
    let from_bgpd: BTreeSet<IpNetwork> = match lab.query(&Request::Rib) {
        Some(Response::Rib { routes }) => {
            routes.into_iter().map(|e| e.prefix).collect()
        }
        other => panic!("rib: {other:?}"),
    };
    let sock = sock.display().to_string();
    let mut from_bird = BTreeSet::new();
    for table in ["ref4", "ref6"] {
        let out = lab
            .peer
            .exec(&["birdc", "-s", &sock, "show", "route", "table", table])
            .unwrap();
        from_bird.extend(listed_prefixes(&out));
    }
    lab.stop_bgpd();
    lab.peer.kill(bird);
    (from_bgpd, from_bird)
}

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[test]
fn prefix_match_agrees_with_bird() {
    let name = "prefix_match_agrees_with_bird";
    if !require_root(name) {
        return;
    }
    let mut lab = Lab::new("bgfd").unwrap();
    let mut cases = Vec::new();
    for op in ["Equal", "NotEqual", "In", "NotIn"] {
        cases.push(Case {
            op,
            len_v4: None,
            len_v6: None,
        });
        // min below the CIDR's length: Calico raises it to the length.
        cases.push(Case {
            op,
            len_v4: Some((8, 24)),
            len_v6: Some((32, 64)),
        });
    }
    let mut failures = Vec::new();
    for case in &cases {
        let (bgpd, bird) = run_case(&mut lab, case);
        eprintln!(
            "{} {:?}/{:?}: BIRD accepted {} prefixes",
            case.op,
            case.len_v4,
            case.len_v6,
            bird.len()
        );
        if bgpd != bird {
            failures.push(format!(
                "{} prefixLength {:?}/{:?}:\n  only bgpd: {:?}\n  only BIRD: \
                 {:?}",
                case.op,
                case.len_v4,
                case.len_v6,
                bgpd.difference(&bird)
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
                bird.difference(&bgpd)
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
