//! bgpd against BIRD 2 in network namespaces: session, routes both ways
//! (IPv4 and IPv6), TCP MD5, graceful restart, max-prefix.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Lab, dut_yaml, v6_peer_yaml};
use margay_testkit::{have_program, require_root, wait_until};

fn bird_conf(lab: &Lab, extra_neighbor: &str, extra_static: &str) -> String {
    let _ = lab;
    format!(
        r#"router id 10.0.0.2;
protocol device {{}}
protocol static s4 {{ ipv4; route 192.168.50.0/24 blackhole; {extra_static} }}
protocol static s6 {{ ipv6; route 2001:db8:50::/48 blackhole; }}
protocol bgp dut {{
  local 10.0.0.2 as 65001;
  neighbor 10.0.0.1 as 65000;
  hold time 9; keepalive time 3;
  connect retry time 1;
  graceful restart on;
  graceful restart time 60;
  {extra_neighbor}
  ipv4 {{ import all; export all; }};
}}
protocol bgp dut6 {{
  local fd00::2 as 65001;
  neighbor fd00::1 as 65000;
  connect retry time 1;
  ipv6 {{ import all; export all; }};
}}
"#
    )
}

/// Start BIRD in the peer namespace; returns the birdc socket path.
fn start_bird(lab: &Lab, conf: &str) -> String {
    std::fs::write(lab.path("bird.conf"), conf).unwrap();
    let sock = lab.path("bird.ctl").display().to_string();
    let mut c = Command::new("bird");
    c.args(["-f", "-c"])
        .arg(lab.path("bird.conf"))
        .args(["-s", &sock]);
    lab.peer.spawn(c).unwrap();
    sock
}

fn birdc(lab: &Lab, sock: &str, cmd: &str) -> String {
    let mut argv = vec!["birdc", "-s", sock];
    argv.extend(cmd.split(' '));
    lab.peer.exec(&argv).unwrap_or_else(|e| e.to_string())
}

fn skip(name: &str) -> bool {
    if !require_root(name) {
        return true;
    }
    assert!(
        have_program("bird"),
        "{name}: bird is not installed (scripts/deps installs it)"
    );
    false
}

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[test]
fn bird_ipv4_and_ipv6_routes_both_ways() {
    if skip("bird_ipv4_and_ipv6_routes_both_ways") {
        return;
    }
    let mut lab = Lab::new("bgb").unwrap();
    let yaml = dut_yaml("10.0.0.2", 65001, "") + &v6_peer_yaml(65001);
    lab.start_bgpd(&yaml, &[]).unwrap();
    let sock = start_bird(&lab, &bird_conf(&lab, "", ""));
    // BIRD -> bgpd: the static route, learned through the accept-all filter.
    let ok = wait_until(Duration::from_secs(40), || {
        lab.rib_entry("192.168.50.0/24").is_some()
    });
    assert!(
        ok,
        "no route from BIRD; bird: {}\nbgpd: {}",
        birdc(&lab, &sock, "show protocols all dut"),
        lab.bgpd_log()
    );
    let e = lab.rib_entry("192.168.50.0/24").unwrap();
    assert_eq!(e.paths[0].as_path, vec![65001]);
    assert_eq!(e.paths[0].next_hop, Some("10.0.0.2".parse().unwrap()));
    // bgpd -> BIRD: our confirmed block, next hop self, AS path 65000.
    let ok = wait_until(Duration::from_secs(20), || {
        birdc(&lab, &sock, "show route 10.244.1.0/26 all").contains("65000")
    });
    assert!(
        ok,
        "BIRD lacks our block: {}",
        birdc(&lab, &sock, "show route all")
    );
    let r = birdc(&lab, &sock, "show route 10.244.1.0/26 all");
    assert!(r.contains("BGP.next_hop: 10.0.0.1"), "{r}");
    // IPv6 both ways over the IPv6 session.
    let ok = wait_until(Duration::from_secs(30), || {
        lab.rib_entry("2001:db8:50::/48").is_some()
    });
    assert!(
        ok,
        "no IPv6 route from BIRD: {}\n{}",
        birdc(&lab, &sock, "show protocols all dut6"),
        lab.bgpd_log()
    );
    let ok = wait_until(Duration::from_secs(20), || {
        birdc(&lab, &sock, "show route fd10::/122").contains("fd10::/122")
    });
    assert!(
        ok,
        "BIRD lacks our IPv6 block: {}",
        birdc(&lab, &sock, "show route all")
    );
    // The reason the best path won is reported.
    assert_eq!(e.paths[0].reason, "only path");
    // The RIB stream: BIRD's routes with their next hops, never our own
    // block (felix-lite owns those blackholes), then EndOfSnapshot.
    let snap = common::rib_snapshot(&lab.ctl());
    assert!(
        snap.contains(&margay_ctlproto::RibEvent::Route {
            prefix: "192.168.50.0/24".parse().unwrap(),
            next_hops: vec!["10.0.0.2".parse().unwrap()],
        }),
        "{snap:?}"
    );
    assert!(snap.iter().all(|ev| !matches!(ev, margay_ctlproto::RibEvent::Route { prefix, .. } if prefix.to_string() == "10.244.1.0/26")));
}

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[test]
fn bird_ipv4_routes_with_ipv6_next_hops_over_an_ipv6_session() {
    let name = "bird_ipv4_routes_with_ipv6_next_hops_over_an_ipv6_session";
    if skip(name) {
        return;
    }
    let mut lab = Lab::new("bge").unwrap();
    // One IPv6 session carrying IPv4 too (RFC 8950, margay's annotation).
    let yaml = dut_yaml("fd00::2", 65001, "").replace(
        "metadata: {name: peer}",
        "metadata: {name: peer, annotations: \
         {margay.io/extended-next-hop: \"true\"}}",
    );
    lab.start_bgpd(&yaml, &[]).unwrap();
    let conf = r#"router id 10.0.0.2;
protocol device {}
protocol static s4 { ipv4; route 192.168.50.0/24 blackhole; }
protocol bgp dut6 {
  local fd00::2 as 65001;
  neighbor fd00::1 as 65000;
  connect retry time 1;
  ipv4 { import all; export all; extended next hop on; };
  ipv6 { import all; export all; };
}
"#;
    let sock = start_bird(&lab, conf);
    // bgpd -> BIRD: our IPv4 block with our IPv6 address as next hop.
    let ok = wait_until(Duration::from_secs(40), || {
        birdc(&lab, &sock, "show route 10.244.1.0/26 all").contains("65000")
    });
    assert!(
        ok,
        "BIRD lacks our IPv4 block: {}\n{}\n{}",
        birdc(&lab, &sock, "show protocols all dut6"),
        birdc(&lab, &sock, "show route all"),
        lab.bgpd_log()
    );
    let r = birdc(&lab, &sock, "show route 10.244.1.0/26 all");
    assert!(r.contains("BGP.next_hop: fd00::1"), "{r}");
    // BIRD -> bgpd: its IPv4 route with its IPv6 next hop, accepted.
    let ok = wait_until(Duration::from_secs(20), || {
        lab.rib_entry("192.168.50.0/24").is_some()
    });
    assert!(ok, "no IPv4 route from BIRD: {}", lab.bgpd_log());
    let e = lab.rib_entry("192.168.50.0/24").unwrap();
    assert_eq!(e.paths[0].next_hop, Some("fd00::2".parse().unwrap()));
}

/// Starts bgpd with `peer_extra` on its BGPPeer and BIRD with
/// `bird_opt` in its session, and checks whether the session comes up.
/// Returns the lab for further checks when it is up.
fn session_comes_up(
    name: &str,
    peer_extra: &str,
    bird_opt: &str,
    expect_up: bool,
) -> Lab {
    let mut lab = Lab::new(name).unwrap();
    let yaml = dut_yaml("10.0.0.2", 65001, peer_extra);
    lab.start_bgpd(&yaml, &[]).unwrap();
    let sock = start_bird(&lab, &bird_conf(&lab, bird_opt, ""));
    let up = wait_until(
        Duration::from_secs(if expect_up { 40 } else { 12 }),
        || lab.peer_state().as_deref() == Some("Established"),
    );
    assert_eq!(
        up,
        expect_up,
        "BGPPeer {peer_extra:?}, BIRD {bird_opt:?}: {}\n{}",
        birdc(&lab, &sock, "show protocols all dut"),
        lab.bgpd_log()
    );
    lab
}

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[test]
fn bird_md5_right_key_up_wrong_key_down() {
    if skip("bird_md5_right_key_up_wrong_key_down") {
        return;
    }
    for (bird_key, expect_up) in [("s3cret", true), ("wrong", false)] {
        let lab = session_comes_up(
            "bgm",
            ", password: {value: s3cret}",
            &format!("password \"{bird_key}\";"),
            expect_up,
        );
        if expect_up {
            let ok = wait_until(Duration::from_secs(20), || {
                lab.rib_entry("192.168.50.0/24").is_some()
            });
            assert!(ok, "routes over the MD5 session");
        }
    }
}

/// RFC 5082 GTSM (`ttlSecurity: 1`): with BIRD's `ttl security on` both
/// sides send TTL 255 and the session comes up; a BIRD without it sends
/// eBGP packets with TTL 1, which bgpd's minimum TTL (255) drops.
#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[test]
fn bird_ttl_security_up_only_when_both_sides_use_it() {
    if skip("bird_ttl_security_up_only_when_both_sides_use_it") {
        return;
    }
    for (bird_opt, expect_up) in [("ttl security on;", true), ("", false)] {
        session_comes_up("bgt", ", ttlSecurity: 1", bird_opt, expect_up);
    }
}

/// BGPFilter beyond prefixes: an import rule matching a community, and
/// export operations (AS-path prepend, standard and large communities)
/// that BIRD must see on our block.
#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[test]
fn bird_sees_filter_operations_and_community_match_rejects() {
    if skip("bird_sees_filter_operations_and_community_match_rejects") {
        return;
    }
    let mut lab = Lab::new("bgf").unwrap();
    let tag = r#"
---
apiVersion: margay.io/v1
kind: BGPFilter
metadata: {name: tag}
spec:
  importV4:
  - {action: Reject, communities: {values: ["65001:666"]}}
  exportV4:
  - action: Accept
    cidr: 10.244.0.0/16
    matchOperator: In
    operations:
    - prependASPath: {prefix: [65000, 65000]}
    - addCommunity: {value: "65000:42"}
    - addCommunity: {value: "65000:1:2"}
"#;
    let yaml = dut_yaml("10.0.0.2", 65001, "")
        .replace("filters: [accept-all]", "filters: [tag, accept-all]")
        + tag;
    lab.start_bgpd(&yaml, &[]).unwrap();
    let marked = "route 192.168.51.0/24 blackhole \
                  { bgp_community.add((65001,666)); };";
    let sock = start_bird(&lab, &bird_conf(&lab, "", marked));
    let ok = wait_until(Duration::from_secs(40), || {
        lab.rib_entry("192.168.50.0/24").is_some()
    });
    assert!(ok, "no route from BIRD: {}", lab.bgpd_log());
    let ok = wait_until(Duration::from_secs(20), || {
        birdc(&lab, &sock, "show route 10.244.1.0/26 all").contains("65000")
    });
    assert!(
        ok,
        "BIRD lacks our block: {}",
        birdc(&lab, &sock, "show route all")
    );
    let r = birdc(&lab, &sock, "show route 10.244.1.0/26 all");
    // Our own AS in front of the filter's prepend (BIRD's order).
    assert!(r.contains("BGP.as_path: 65000 65000 65000"), "{r}");
    assert!(r.contains("(65000,42)"), "{r}");
    assert!(r.contains("(65000, 1, 2)"), "{r}");
    // The marked route came in the same table dump; the rule rejected it.
    assert!(
        birdc(&lab, &sock, "show route 192.168.51.0/24 all")
            .contains("(65001,666)"),
        "BIRD did not tag its route"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(lab.rib_entry("192.168.51.0/24").is_none());
}

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[test]
fn bird_keeps_routes_stale_while_bgpd_restarts_until_end_of_rib() {
    if skip("bird_keeps_routes_stale_while_bgpd_restarts_until_end_of_rib") {
        return;
    }
    let mut lab = Lab::new("bgr").unwrap();
    let yaml = dut_yaml("10.0.0.2", 65001, "");
    lab.start_bgpd(&yaml, &[]).unwrap();
    let sock = start_bird(&lab, &bird_conf(&lab, "", ""));
    assert!(
        wait_until(Duration::from_secs(40), || has(
            &lab,
            &sock,
            "10.244.1.0/26"
        )),
        "{}",
        lab.bgpd_log()
    );
    // Kill bgpd: BIRD, as RFC 4724 helper, keeps our route while the
    // session is down.
    lab.stop_bgpd();
    let down = wait_until(Duration::from_secs(20), || {
        !birdc(&lab, &sock, "show protocols dut").contains("Established")
    });
    assert!(down, "BIRD did not notice bgpd's death");
    assert!(
        has(&lab, &sock, "10.244.1.0/26"),
        "route dropped instead of kept stale: {}",
        birdc(&lab, &sock, "show route all")
    );
    // Restart with another block: after our End-of-RIB BIRD purges the
    // stale /26 and keeps the new one.
    let yaml2 = yaml
        .replace("10.244.1.0/26", "10.244.2.0/26")
        .replace("dut-10-244-1-0-26", "dut-10-244-2-0-26");
    lab.start_bgpd(&yaml2, &["--graceful-restart"]).unwrap();
    let ok = wait_until(Duration::from_secs(40), || {
        has(&lab, &sock, "10.244.2.0/26") && !has(&lab, &sock, "10.244.1.0/26")
    });
    assert!(
        ok,
        "stale route not replaced: {}\n{}",
        birdc(&lab, &sock, "show route all"),
        lab.bgpd_log()
    );
    // RFC 4724 4.1: the restarted bgpd held its routes back until BIRD's
    // End-of-RIB, not until the selection deferral timer.
    let log = lab.bgpd_log();
    assert!(
        log.contains("route selection complete")
            && log.contains("End-of-RIB from every peer"),
        "{log}"
    );
}

fn signal_bgpd(lab: &Lab, sig: &str) {
    let pid = lab.bgpd.expect("bgpd running").to_string();
    let st = Command::new("kill").args([sig, &pid]).status().unwrap();
    assert!(st.success(), "kill {sig} {pid}");
}

/// BIRD has route `p` and its session to us is Established.
fn up_with(lab: &Lab, sock: &str, p: &str) -> bool {
    wait_until(Duration::from_secs(40), || {
        has(lab, sock, p)
            && birdc(lab, sock, "show protocols dut").contains("Established")
    })
}

/// SIGUSR1 is a planned restart: the session just closes and BIRD keeps
/// our route (RFC 4724 helper). SIGTERM is a shutdown: BIRD gets Cease /
/// Administrative Shutdown with our message and drops the route at once,
/// not after its 60 s restart time.
#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[test]
fn bird_keeps_routes_on_planned_restart_and_drops_them_on_shutdown() {
    let name =
        "bird_keeps_routes_on_planned_restart_and_drops_them_on_shutdown";
    if skip(name) {
        return;
    }
    let mut lab = Lab::new("bgq").unwrap();
    let yaml = dut_yaml("10.0.0.2", 65001, "");
    lab.start_bgpd(&yaml, &[]).unwrap();
    let sock = start_bird(&lab, &bird_conf(&lab, "", ""));
    let ours = "10.244.1.0/26";
    assert!(up_with(&lab, &sock, ours), "{}", lab.bgpd_log());
    signal_bgpd(&lab, "-USR1");
    let down = wait_until(Duration::from_secs(20), || {
        !birdc(&lab, &sock, "show protocols dut").contains("Established")
    });
    assert!(down, "bgpd did not stop on SIGUSR1: {}", lab.bgpd_log());
    assert!(
        has(&lab, &sock, ours),
        "planned restart: route must be kept stale: {}",
        birdc(&lab, &sock, "show route all")
    );
    lab.start_bgpd(&yaml, &["--graceful-restart"]).unwrap();
    assert!(up_with(&lab, &sock, ours), "{}", lab.bgpd_log());
    signal_bgpd(&lab, "-TERM");
    let gone = wait_until(Duration::from_secs(10), || !has(&lab, &sock, ours));
    let proto = birdc(&lab, &sock, "show protocols all dut");
    assert!(
        gone,
        "shutdown: BIRD still has our route: {}\n{proto}\n{}",
        birdc(&lab, &sock, "show route all"),
        lab.bgpd_log()
    );
    assert!(
        proto.contains("Administrative shutdown")
            && proto.contains("shutting down"),
        "{proto}"
    );
}

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[test]
fn bird_max_prefix_sends_cease() {
    if skip("bird_max_prefix_sends_cease") {
        return;
    }
    let mut lab = Lab::new("bgx").unwrap();
    let yaml = dut_yaml("10.0.0.2", 65001, "").replace(
        "metadata: {name: peer}",
        "metadata: {name: peer, annotations: {margay.io/max-prefixes: \"2\"}}",
    );
    lab.start_bgpd(&yaml, &[]).unwrap();
    let extra =
        "route 192.168.51.0/24 blackhole; route 192.168.52.0/24 blackhole;";
    let sock = start_bird(&lab, &bird_conf(&lab, "", extra));
    let ok = wait_until(Duration::from_secs(40), || {
        match lab.query(&margay_ctlproto::Request::Peers) {
            Some(margay_ctlproto::Response::Peers { peers }) => {
                peers[0].last_error.as_deref().is_some_and(|e| {
                    e.contains("Maximum Number of Prefixes Reached")
                })
            }
            _ => false,
        }
    });
    assert!(
        ok,
        "{:?}\n{}",
        lab.query(&margay_ctlproto::Request::Peers),
        lab.bgpd_log()
    );
    let bird = birdc(&lab, &sock, "show protocols all dut");
    assert!(
        bird.to_lowercase().contains("prefixes"),
        "BIRD saw no max-prefix Cease: {bird}"
    );
    assert!(
        lab.rib_entry("192.168.50.0/24").is_none(),
        "routes must go with the session"
    );
    // Held Idle: BIRD reconnects every second, and is refused; no second
    // Cease (before, six full-table cycles came in 2.5 s).
    let ceases =
        |lab: &Lab| lab.bgpd_log().matches("session held Idle").count();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(ceases(&lab), 1, "{}", lab.bgpd_log());
    let peers = match lab.query(&margay_ctlproto::Request::Peers) {
        Some(margay_ctlproto::Response::Peers { peers }) => peers,
        r => panic!("{r:?}"),
    };
    assert_eq!(peers[0].state, "Idle");
    assert!(peers[0].held_idle.is_some(), "{peers:?}");
    // An explicit reset starts it again (and the limit trips again).
    let r = lab.query(&margay_ctlproto::Request::ResetPeer {
        peer: "10.0.0.2".into(),
    });
    assert!(
        matches!(r, Some(margay_ctlproto::Response::Done { .. })),
        "{r:?}"
    );
    let again = wait_until(Duration::from_secs(20), || ceases(&lab) == 2);
    assert!(again, "{}", lab.bgpd_log());
}

fn has(lab: &Lab, sock: &str, p: &str) -> bool {
    birdc(lab, sock, &format!("show route {p}"))
        .lines()
        .any(|l| l.starts_with(p))
}

/// One iBGP BIRD client of the reflector, bound to `addr` only.
fn rr_client_conf(addr: &str, id: &str, static_route: &str) -> String {
    format!(
        r#"router id {id};
log stderr all;
debug protocols {{ states, events, packets }};
protocol device {{}}
protocol static s4 {{ ipv4; {static_route} }}
protocol bgp dut {{
  local {addr} as 65000;
  neighbor 10.0.0.1 as 65000;
  strict bind yes;
  direct;
  connect retry time 1;
  ipv4 {{ import all; export all; }};
}}
"#
    )
}

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[test]
fn route_reflector_between_two_bird_clients() {
    if skip("route_reflector_between_two_bird_clients") {
        return;
    }
    // Three namespaces on one L2 segment, so that the reflected next hop
    // (client A's address) is directly reachable from client B.
    let seg = margay_testkit::Segment::new("bgrr").unwrap();
    let dut = margay_testkit::Netns::new("bgrr-dut").unwrap();
    let a = margay_testkit::Netns::new("bgrr-a").unwrap();
    let b = margay_testkit::Netns::new("bgrr-b").unwrap();
    seg.attach(&dut, "eth0", "10.0.0.1/24").unwrap();
    seg.attach(&a, "eth0", "10.0.0.2/24").unwrap();
    seg.attach(&b, "eth0", "10.0.0.3/24").unwrap();
    let mut lab = Lab {
        dir: tempfile::tempdir().unwrap(),
        dut,
        peer: a,
        bgpd: None,
    };
    let second = r#"
---
apiVersion: margay.io/v1
kind: BGPPeer
metadata: {name: peer3}
spec: {peerIP: "10.0.0.3", asNumber: 65000, filters: [accept-all]}
"#;
    let yaml = dut_yaml("10.0.0.2", 65000, "").replace(
        "ipv4Address: 10.0.0.1/24,",
        "ipv4Address: 10.0.0.1/24, routeReflectorClusterID: 1.1.1.1,",
    ) + second;
    lab.start_bgpd(&yaml, &[]).unwrap();
    let mut socks = Vec::new();
    let mut pids = Vec::new();
    for (ns, addr, route) in [
        (&lab.peer, "10.0.0.2", "route 192.168.50.0/24 blackhole;"),
        (&b, "10.0.0.3", ""),
    ] {
        let conf = rr_client_conf(addr, addr, route);
        let name = format!("bird-{addr}");
        std::fs::write(lab.path(&format!("{name}.conf")), conf).unwrap();
        let sock = lab.path(&format!("{name}.ctl")).display().to_string();
        let mut c = Command::new("bird");
        c.args(["-f", "-c"])
            .arg(lab.path(&format!("{name}.conf")))
            .args(["-s", &sock]);
        pids.push(ns.spawn(c).unwrap());
        socks.push(sock);
    }
    // Client 10.0.0.3 gets client 10.0.0.2's route, reflected (RFC 4456 8):
    // ORIGINATOR_ID = 10.0.0.2, CLUSTER_LIST = our cluster ID, next hop
    // unchanged.
    let ok = wait_until(Duration::from_secs(40), || {
        has(&lab, &socks[1], "192.168.50.0/24")
    });
    assert!(
        ok,
        "not reflected: {}\nlog: {}\nfirst client: {}\nbgpd RIB: {:?}\npeers: {:?}",
        birdc(&lab, &socks[1], "show route all"),
        b.log(pids[1]),
        birdc(&lab, &socks[0], "show route all"),
        lab.query(&margay_ctlproto::Request::Rib),
        lab.query(&margay_ctlproto::Request::Peers),
    );
    let _ = &pids;
    let r = birdc(&lab, &socks[1], "show route 192.168.50.0/24 all");
    assert!(r.contains("BGP.originator_id: 10.0.0.2"), "{r}");
    assert!(r.contains("BGP.cluster_list: 1.1.1.1"), "{r}");
    assert!(r.contains("BGP.next_hop: 10.0.0.2"), "{r}");
    // The reflector's own block reaches both clients.
    for s in &socks {
        assert!(wait_until(Duration::from_secs(20), || has(
            &lab,
            s,
            "10.244.1.0/26"
        )));
    }
}

/// BFD (RFC 5880/5881) against BIRD's: both sides Up, then the link dies
/// silently (the peer's end of the veth goes down: no FIN, no RST) and
/// bgpd drops the session and BIRD's route long before the 90 s hold
/// timer would.
#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[test]
fn bird_bfd_down_drops_session_before_hold_timer() {
    if skip("bird_bfd_down_drops_session_before_hold_timer") {
        return;
    }
    let mut lab = Lab::new("bgf").unwrap();
    let yaml = dut_yaml(
        "10.0.0.2",
        65001,
        ", keepaliveTime: 30s, bfd: {enabled: true, minInterval: 100ms, \
         multiplier: 3}",
    );
    lab.start_bgpd(&yaml, &[]).unwrap();
    let conf = r#"router id 10.0.0.2;
protocol device {}
protocol static s4 { ipv4; route 192.168.50.0/24 blackhole; }
protocol bfd {
  interface "eth0" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; };
}
protocol bgp dut {
  local 10.0.0.2 as 65001;
  neighbor 10.0.0.1 as 65000;
  hold time 90; keepalive time 30;
  connect retry time 1;
  bfd on;
  ipv4 { import all; export all; };
}
"#;
    let sock = start_bird(&lab, conf);
    lab.wait_established("BFD session");
    let bfd_up = || match lab.query(&margay_ctlproto::Request::Peers) {
        Some(margay_ctlproto::Response::Peers { peers }) => {
            peers[0].bfd_state.as_deref() == Some("Up")
        }
        _ => false,
    };
    let ok = wait_until(Duration::from_secs(20), || {
        bfd_up()
            && birdc(&lab, &sock, "show bfd sessions").contains("Up")
            && lab.rib_entry("192.168.50.0/24").is_some()
    });
    assert!(
        ok,
        "BFD not Up on both sides: ours {:?}\nBIRD: {}\nbgpd log:\n{}",
        lab.query(&margay_ctlproto::Request::Peers),
        birdc(&lab, &sock, "show bfd sessions"),
        lab.bgpd_log()
    );
    // The negotiated hold time is 90 s: only BFD can be this fast.
    lab.peer
        .exec(&["ip", "link", "set", "eth0", "down"])
        .unwrap();
    let t0 = std::time::Instant::now();
    let gone = wait_until(Duration::from_secs(3), || {
        lab.peer_state().as_deref() != Some("Established")
            && lab.rib_entry("192.168.50.0/24").is_none()
    });
    let took = t0.elapsed();
    assert!(
        gone,
        "session or route still there {took:?} after the link died: {:?}\n\
         bgpd log:\n{}",
        lab.query(&margay_ctlproto::Request::Peers),
        lab.bgpd_log()
    );
    eprintln!("BFD: session down and route withdrawn after {took:?}");
    match lab.query(&margay_ctlproto::Request::Peers) {
        Some(margay_ctlproto::Response::Peers { peers }) => {
            let p = &peers[0];
            assert!(
                p.last_error.as_deref().is_some_and(|e| e.contains("BFD")),
                "{p:?}"
            );
            assert_ne!(p.bfd_state.as_deref(), Some("Up"), "{p:?}");
        }
        other => panic!("{other:?}"),
    }
}
