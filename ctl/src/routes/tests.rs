//! Unit tests for the RIB/FIB comparison and the `ip -j` parser.

use super::*;

fn path(peer: Option<&str>, nh: Option<&str>, best: bool) -> RibPath {
    RibPath {
        peer: peer.map(|p| p.parse().unwrap()),
        next_hop: nh.map(|p| p.parse().unwrap()),
        as_path: if peer.is_some() { vec![64513] } else { vec![] },
        origin: "igp".into(),
        local_pref: Some(100),
        med: None,
        communities: vec![],
        best,
        multipath: false,
        stale: false,
        reason: if best {
            "only path".into()
        } else {
            "longer AS_PATH".into()
        },
    }
}

fn entry(prefix: &str, paths: Vec<RibPath>) -> RibEntry {
    RibEntry {
        prefix: prefix.parse().unwrap(),
        paths,
    }
}

#[test]
fn parses_ip_json_forms() {
    let text = r#"[{"type":"blackhole","dst":"10.1.0.0/26","flags":[]},
      {"dst":"10.2.0.0/26","flags":[],"nexthops":[
        {"gateway":"192.0.2.2","dev":"a0","weight":1,"flags":[]},
        {"gateway":"192.0.2.3","dev":"a0","weight":1,"flags":[]}]},
      {"dst":"10.3.0.1","gateway":"192.0.2.9","dev":"a0","flags":[]},
      {"type":"unreachable","dst":"fd00::/64","flags":[]}]"#;
    let routes = parse_ip_json(text).unwrap();
    assert_eq!(routes.len(), 4);
    assert_eq!(routes[0].action, FibAction::Blackhole);
    let FibAction::Forward { hops } = &routes[1].action else {
        panic!("{:?}", routes[1]);
    };
    assert_eq!(hops.len(), 2);
    assert_eq!(routes[2].prefix.to_string(), "10.3.0.1/32");
    assert_eq!(
        routes[3].action,
        FibAction::Reject {
            kind: "unreachable".into()
        }
    );
    assert!(parse_ip_json("").unwrap().is_empty());
    assert!(parse_ip_json("[]").unwrap().is_empty());
    let err = parse_ip_json(r#"[{"dst":"default","flags":[]}]"#).unwrap_err();
    assert!(err.contains("default route"), "{err}");
}

#[test]
fn verdicts_cover_each_case() {
    let fwd = |p: &str, gws: &[&str]| FibRoute {
        prefix: p.parse().unwrap(),
        action: FibAction::Forward {
            hops: gws
                .iter()
                .map(|g| FibHop {
                    gateway: Some(g.parse().unwrap()),
                    dev: Some("eth0".into()),
                })
                .collect(),
        },
    };
    let mut ecmp_b = path(Some("192.0.2.3"), Some("192.0.2.3"), false);
    ecmp_b.multipath = true;
    let rib = vec![
        // Remote, programmed with the same hop.
        entry(
            "10.0.1.0/26",
            vec![path(Some("192.0.2.2"), Some("192.0.2.2"), true)],
        ),
        // Remote, not programmed.
        entry(
            "10.0.2.0/26",
            vec![path(Some("192.0.2.2"), Some("192.0.2.2"), true)],
        ),
        // Remote, programmed via another hop.
        entry(
            "10.0.3.0/26",
            vec![path(Some("192.0.2.2"), Some("192.0.2.2"), true)],
        ),
        // Own block, blackholed.
        entry("10.0.4.0/26", vec![path(None, None, true)]),
        // Borrowed /32, routed by the CNI plugin, not felix-lite.
        entry("10.0.5.7/32", vec![path(None, None, true)]),
        // ECMP: both hops must be in the FIB.
        entry(
            "10.0.6.0/26",
            vec![path(Some("192.0.2.2"), Some("192.0.2.2"), true), ecmp_b],
        ),
    ];
    let fib = vec![
        fwd("10.0.1.0/26", &["192.0.2.2"]),
        fwd("10.0.3.0/26", &["192.0.2.9"]),
        FibRoute {
            prefix: "10.0.4.0/26".parse().unwrap(),
            action: FibAction::Blackhole,
        },
        fwd("10.0.6.0/26", &["192.0.2.3", "192.0.2.2"]),
        fwd("10.9.0.0/26", &["192.0.2.2"]),
    ];
    let views = compare(rib, fib);
    let got: Vec<(String, Verdict)> = views
        .iter()
        .map(|v| (v.prefix.to_string(), v.verdict))
        .collect();
    assert_eq!(
        got,
        vec![
            ("10.0.1.0/26".into(), Verdict::Ok),
            ("10.0.2.0/26".into(), Verdict::Missing),
            ("10.0.3.0/26".into(), Verdict::Differs),
            ("10.0.4.0/26".into(), Verdict::Ok),
            ("10.0.5.7/32".into(), Verdict::Local),
            ("10.0.6.0/26".into(), Verdict::Ok),
            ("10.9.0.0/26".into(), Verdict::NotInRib),
        ]
    );
}

#[test]
fn renders_paths_with_reason_best_first() {
    let views = compare(
        vec![entry(
            "10.0.1.0/26",
            vec![
                path(Some("192.0.2.3"), Some("192.0.2.3"), false),
                path(Some("192.0.2.2"), Some("192.0.2.2"), true),
            ],
        )],
        vec![],
    );
    let text = render(&views, 80, false);
    let want = "\
PREFIX        BEST   NEXT HOP    FROM        AS PATH   LOCAL PREF   REASON           FIB   SYNC
10.0.1.0/26   *      192.0.2.2   192.0.2.2   64513     100          only path        -     MISSING
                     192.0.2.3   192.0.2.3   64513     100          longer AS_PATH

1 prefixes; FIB = kernel routes with protocol 80; 1 out of sync
";
    assert_eq!(text, want);
}

#[test]
fn renders_rejected_routes_with_peer_and_reason() {
    let routes = vec![RejectedRoute {
        peer: "Mesh_10.77.0.12".into(),
        address: "10.77.0.12".parse().unwrap(),
        prefix: "10.96.0.0/12".parse().unwrap(),
        reason: "outside every enabled IPPool (and no BGPFilter accepts it)"
            .into(),
    }];
    let text = render_rejected(&routes);
    assert!(text.starts_with("PREFIX"), "{text}");
    let row = text.lines().nth(1).unwrap();
    for want in [
        "10.96.0.0/12",
        "10.77.0.12",
        "Mesh_10.77.0.12",
        "outside every enabled IPPool",
    ] {
        assert!(row.contains(want), "{want} in {row}");
    }
    assert!(text.ends_with(
        "1 routes refused at import (they are in no RIB and no FIB)\n"
    ));
}
