//! The judges, on facts written by hand: each names what it sees and
//! says what to do.

use std::net::IpAddr;

use margay_ctlproto::{PeerStatus, PeerType, RejectedRoute, RibEntry, RibPath};
use margay_ipam::block::Allocation;

use super::pod::{AddrInfo, HostFacts, Link, PodFacts, Route};
use super::target::{Spec, parse_spec};
use super::*;

fn ep() -> Endpoint {
    Endpoint {
        container_id: "c1".into(),
        ifname: "eth0".into(),
        host_iface: "mgabc".into(),
        ip: "10.244.0.5".parse().unwrap(),
    }
}

fn up(addrs: &[&str]) -> Link {
    Link {
        flags: vec!["UP".into()],
        link_netnsid: Some(1),
        addr_info: addrs
            .iter()
            .map(|a| AddrInfo {
                local: a.parse().unwrap(),
            })
            .collect(),
    }
}

fn route(dst: &str, gw: Option<&str>, dev: Option<&str>, proto: &str) -> Route {
    Route {
        dst: dst.into(),
        kind: None,
        gateway: gw.map(|g| g.parse().unwrap()),
        dev: dev.map(str::to_string),
        protocol: Some(proto.into()),
    }
}

fn blackhole(dst: &str) -> Route {
    Route {
        kind: Some("blackhole".into()),
        ..route(dst, None, None, "81")
    }
}

#[test]
fn specs() {
    assert_eq!(
        parse_spec("TO", "10.0.0.1").unwrap(),
        Spec::Ip("10.0.0.1".parse().unwrap())
    );
    assert_eq!(
        parse_spec("TO", "default/web").unwrap(),
        Spec::PodName {
            namespace: "default".into(),
            name: "web".into()
        }
    );
    assert_eq!(
        parse_spec("FROM", "abc123").unwrap(),
        Spec::ContainerId("abc123".into())
    );
    let e = parse_spec("TO", "svc/default/kubernetes").unwrap_err();
    assert!(matches!(e, DiagnoseError::ServiceNotYet { .. }), "{e}");
    assert!(e.to_string().contains("not follow Services yet"), "{e}");
    assert!(parse_spec("TO", "a/b/c").is_err());
    assert!(parse_spec("TO", "").is_err());
}

#[test]
fn pod_hop() {
    let good = PodFacts {
        netns: Some("pod-ns".into()),
        link: Some(up(&["10.244.0.5"])),
        defaults: vec![route(
            "default",
            Some("169.254.1.1"),
            Some("eth0"),
            "static",
        )],
    };
    assert_eq!(pod::judge_pod(&ep(), &good).status, Status::Ok);
    let no_default = PodFacts {
        defaults: vec![],
        ..good.clone()
    };
    let v = pod::judge_pod(&ep(), &no_default);
    assert_eq!(v.status, Status::Broken);
    assert!(
        v.detail.contains("no default route via 169.254.1.1"),
        "{v:?}"
    );
    let wrong_addr = PodFacts {
        link: Some(up(&["10.244.0.6"])),
        ..good.clone()
    };
    assert_eq!(pod::judge_pod(&ep(), &wrong_addr).status, Status::Broken);
    let down = PodFacts {
        link: Some(Link {
            flags: vec![],
            ..up(&["10.244.0.5"])
        }),
        ..good.clone()
    };
    assert!(pod::judge_pod(&ep(), &down).detail.contains("is down"));
    // No namespace name: not looked at, never called ok.
    let unnamed = pod::judge_pod(&ep(), &PodFacts::default());
    assert_eq!(unnamed.status, Status::NotChecked);
}

#[test]
fn host_hop() {
    let good = HostFacts {
        veth: Some(up(&[])),
        proxy_arp: Some("1".into()),
        host_routes: vec![route("10.244.0.5", None, Some("mgabc"), "81")],
    };
    assert_eq!(pod::judge_host(&ep(), &good).status, Status::Ok);
    let arp_off = HostFacts {
        proxy_arp: Some("0".into()),
        ..good.clone()
    };
    let v = pod::judge_host(&ep(), &arp_off);
    assert_eq!(v.status, Status::Broken);
    assert_eq!(
        v.advice.as_deref(),
        Some("sysctl -w net.ipv4.conf.mgabc.proxy_arp=1")
    );
    let no_route = HostFacts {
        host_routes: vec![],
        ..good.clone()
    };
    let v = pod::judge_host(&ep(), &no_route);
    assert!(
        v.detail.contains("no host route 10.244.0.5/32 dev mgabc"),
        "{v:?}"
    );
    // A /32 out of another device is as broken as none.
    let elsewhere = HostFacts {
        host_routes: vec![route("10.244.0.5", None, Some("other"), "81")],
        ..good.clone()
    };
    assert_eq!(pod::judge_host(&ep(), &elsewhere).status, Status::Broken);
    let gone = HostFacts { veth: None, ..good };
    assert!(
        pod::judge_host(&ep(), &gone)
            .detail
            .contains("does not exist")
    );
}

fn alloc(handle: &str) -> Allocation {
    Allocation {
        ip: "10.244.0.5".parse().unwrap(),
        ordinal: 5,
        handle_id: Some(handle.into()),
        secondary: Default::default(),
        sequence: None,
    }
}

#[test]
fn ipam_hop() {
    let block = "10.244.0.0/26".parse().unwrap();
    let mine = ipam::Facts {
        block: Some((block, Some("n1".into()))),
        allocation: Some(alloc("net.c1")),
    };
    assert_eq!(ipam::judge(&ep(), "n1", "net", &mine).status, Status::Ok);
    // Borrowed from another node's block: routed by its own /32, fine.
    let v = ipam::judge(&ep(), "n2", "net", &mine);
    assert_eq!(v.status, Status::Ok);
    assert!(v.detail.contains("borrowed"), "{v:?}");
    let free = ipam::Facts {
        allocation: None,
        ..mine.clone()
    };
    let v = ipam::judge(&ep(), "n1", "net", &free);
    assert_eq!(v.status, Status::Broken);
    assert!(v.detail.contains("is free in block 10.244.0.0/26"), "{v:?}");
    let other = ipam::Facts {
        allocation: Some(alloc("net.c2")),
        ..mine
    };
    assert!(
        ipam::judge(&ep(), "n1", "net", &other)
            .detail
            .contains("net.c2")
    );
    let none = ipam::judge(&ep(), "n1", "net", &ipam::Facts::default());
    assert!(none.detail.contains("no IPAM block"));
}

#[test]
fn fib_hop() {
    let dst: IpAddr = "10.244.1.9".parse().unwrap();
    let peers =
        vec![("10.0.0.2".parse().unwrap(), "Mesh_10.0.0.2".to_string())];
    let via = |proto: &str| fib::Facts {
        route: Some(route(
            "10.244.1.0/26",
            Some("10.0.0.2"),
            Some("eth0"),
            proto,
        )),
        peers: peers.clone(),
    };
    let v = fib::judge(dst, 81, &via("81"));
    assert_eq!(v.status, Status::Ok);
    assert!(
        v.detail
            .contains("via 10.0.0.2 (Mesh_10.0.0.2), protocol 81"),
        "{v:?}"
    );
    // Someone else's route shadows margay's.
    let v = fib::judge(dst, 81, &via("static"));
    assert_eq!(v.status, Status::Broken);
    assert!(v.detail.contains("not margay's"), "{v:?}");
    let only_default = fib::Facts {
        route: Some(route("default", Some("10.0.0.1"), Some("eth0"), "boot")),
        peers: vec![],
    };
    assert_eq!(fib::judge(dst, 81, &only_default).status, Status::Broken);
    let own_block = fib::Facts {
        route: Some(blackhole("10.244.1.0/26")),
        peers: vec![],
    };
    let v = fib::judge(dst, 81, &own_block);
    assert!(v.detail.contains("own block"), "{v:?}");
    let local = fib::Facts {
        route: Some(route("10.244.1.9", None, Some("mgx"), "81")),
        peers: vec![],
    };
    assert!(local.is_local());
    assert_eq!(fib::judge(dst, 81, &local).status, Status::Ok);
}

fn peer(addr: &str, state: &str, received: u64, accepted: u64) -> PeerStatus {
    PeerStatus {
        name: format!("Mesh_{addr}"),
        peer_type: PeerType::Mesh,
        address: addr.parse().unwrap(),
        port: 179,
        local_as: 64512,
        remote_as: 64512,
        state: state.into(),
        since_unix: 0,
        prefixes_received: received,
        prefixes_accepted: accepted,
        prefixes_advertised: 1,
        last_error: (state != "Established")
            .then(|| "Hold timer expired".into()),
        bfd_state: None,
        held_idle: None,
    }
}

#[test]
fn bgp_hop() {
    let dst: IpAddr = "10.244.1.9".parse().unwrap();
    let entry = RibEntry {
        prefix: "10.244.1.0/26".parse().unwrap(),
        paths: vec![RibPath {
            peer: Some("10.0.0.2".parse().unwrap()),
            next_hop: Some("10.0.0.2".parse().unwrap()),
            as_path: vec![],
            origin: "IGP".into(),
            local_pref: Some(100),
            med: None,
            communities: vec![],
            best: true,
            multipath: false,
            stale: false,
            reason: "only path".into(),
        }],
    };
    let good = bgp::Facts {
        rib: vec![entry],
        peers: vec![peer("10.0.0.2", "Established", 1, 1)],
        rejected: vec![],
    };
    let v = bgp::judge(dst, &good);
    assert_eq!(v.status, Status::Ok);
    assert!(v.detail.contains("from Mesh_10.0.0.2: only path"), "{v:?}");
    let down = bgp::Facts {
        rib: vec![],
        peers: vec![peer("10.0.0.2", "Active", 0, 0)],
        rejected: vec![],
    };
    let v = bgp::judge(dst, &down);
    assert_eq!(v.status, Status::Broken);
    assert!(
        v.detail
            .contains("Mesh_10.0.0.2 (10.0.0.2) is Active: Hold timer expired"),
        "{v:?}"
    );
    let filtered = bgp::Facts {
        rib: vec![],
        peers: vec![peer("10.0.0.2", "Established", 2, 1)],
        rejected: vec![RejectedRoute {
            peer: "Mesh_10.0.0.2".into(),
            address: "10.0.0.2".parse().unwrap(),
            prefix: "10.244.1.0/26".parse().unwrap(),
            reason: "rejected by a BGPFilter import rule".into(),
        }],
    };
    let v = bgp::judge(dst, &filtered);
    assert_eq!(v.status, Status::Broken);
    assert!(
        v.detail.contains(
            "Mesh_10.0.0.2 (10.0.0.2) sent 10.244.1.0/26, refused at import: \
             rejected by a BGPFilter import rule"
        ),
        "{v:?}"
    );
    // Routes refused at import that do not hold the destination (Service
    // routes a mesh peer sends, say) are not the cause.
    let silent = bgp::Facts {
        rib: vec![],
        peers: vec![peer("10.0.0.2", "Established", 3, 0)],
        rejected: vec![],
    };
    assert!(
        bgp::judge(dst, &silent)
            .detail
            .contains("no peer advertises")
    );
}

#[test]
fn remote_hop() {
    let dst: IpAddr = "10.244.1.9".parse().unwrap();
    let good = remote::Facts {
        routes: vec![
            blackhole("10.244.1.0/26"),
            route("10.244.1.9", None, Some("mgdst"), "81"),
        ],
        veth: Some(up(&[])),
    };
    let v = remote::judge(dst, "n2", 81, &good);
    assert_eq!(v.status, Status::Ok, "{v:?}");
    let no_blackhole = remote::Facts {
        routes: vec![route("10.244.1.9", None, Some("mgdst"), "81")],
        ..good.clone()
    };
    let v = remote::judge(dst, "n2", 81, &no_blackhole);
    assert!(v.detail.contains("no blackhole"), "{v:?}");
    let no_host = remote::Facts {
        routes: vec![blackhole("10.244.1.0/26")],
        veth: None,
    };
    let v = remote::judge(dst, "n2", 81, &no_host);
    assert!(v.detail.contains("no host route 10.244.1.9/32"), "{v:?}");
    // A borrowed address: the block is routed on to its owner, no
    // blackhole here, and that is fine.
    let borrowed = remote::Facts {
        routes: vec![
            route("10.244.1.0/26", Some("10.0.0.1"), Some("eth0"), "81"),
            route("10.244.1.9", None, Some("mgdst"), "81"),
        ],
        ..good
    };
    assert_eq!(remote::judge(dst, "n2", 81, &borrowed).status, Status::Ok);
}

#[test]
fn walk_stops_at_the_first_broken_hop() {
    let mut w = Walk::default();
    w.push(Hop::Pod, || Ok(Verdict::ok("fine"))).unwrap();
    w.push(Hop::Host, || Ok(Verdict::broken("gone", "fix it")))
        .unwrap();
    w.push(Hop::Ipam, || panic!("not judged after a broken hop"))
        .unwrap();
    assert_eq!(w.broken, Some(Hop::Host));
    assert_eq!(w.hops[2].verdict.status, Status::NotChecked);
    let report = Report {
        from: "pod c1".into(),
        to: "10.244.1.9".parse().unwrap(),
        hops: w.hops,
        broken: w.broken,
    };
    assert!(!report.whole());
    let text = render(&report, Format::Table).unwrap();
    assert!(
        text.ends_with("\nBROKEN at hop 2 (host veth): fix it\n"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&render(&report, Format::Json).unwrap()).unwrap();
    assert_eq!(json["broken"], "host");
    assert_eq!(json["hops"][1]["advice"], "fix it");
}

#[test]
fn a_missing_route_names_bgpd_when_it_has_no_path() {
    let dst: IpAddr = "10.244.1.9".parse().unwrap();
    let only_default = fib::Facts {
        route: Some(route("default", Some("10.0.0.1"), Some("eth0"), "boot")),
        peers: vec![],
    };
    assert!(only_default.lacks_route());
    assert!(fib::Facts::default().lacks_route());
    let fib_v = fib::judge(dst, 81, &only_default);
    let down = bgp::Facts {
        rib: vec![],
        peers: vec![peer("10.0.0.2", "Active", 0, 0)],
        rejected: vec![],
    };
    let bgp_v = bgp::judge(dst, &down);
    let fib_v = fib::missing_route_cause(fib_v, &bgp_v);
    assert!(fib_v.advice.as_deref().unwrap().contains("see hop 5"));

    let mut w = Walk::default();
    w.push(Hop::Pod, || Ok(Verdict::ok("fine"))).unwrap();
    w.push(Hop::Fib, || Ok(fib_v)).unwrap();
    w.push_cause(Hop::Bgp, bgp_v);
    w.push(Hop::Remote, || panic!("not judged after a broken hop"))
        .unwrap();
    assert_eq!(w.broken, Some(Hop::Bgp), "the deepest cause");
    assert_eq!(w.hops[1].verdict.status, Status::Broken);
    assert_eq!(w.hops[3].verdict.status, Status::NotChecked);
    let report = Report {
        from: "pod c1".into(),
        to: dst,
        hops: w.hops,
        broken: w.broken,
    };
    let text = render(&report, Format::Table).unwrap();
    assert!(
        text.contains("\nBROKEN at hop 5 (bgpd): bring the session up"),
        "{text}"
    );
}

#[test]
fn a_missing_route_bgpd_has_is_felix_lites() {
    let dst: IpAddr = "10.244.1.9".parse().unwrap();
    let fib_v = fib::judge(dst, 81, &fib::Facts::default());
    let bgp_v = Verdict::ok("best 10.244.1.0/26 via 10.0.0.2");
    let fib_v = fib::missing_route_cause(fib_v, &bgp_v);
    assert!(
        fib_v
            .advice
            .as_deref()
            .unwrap()
            .contains("felix-lite did not install it")
    );
    let mut w = Walk::default();
    w.push(Hop::Fib, || Ok(fib_v)).unwrap();
    w.push_cause(Hop::Bgp, bgp_v);
    assert_eq!(w.broken, Some(Hop::Fib));
    assert_eq!(w.hops[1].verdict.status, Status::Ok);
}
