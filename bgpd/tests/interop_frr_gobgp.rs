//! bgpd against FRR's bgpd (`-Z`, no zebra) and GoBGP in network
//! namespaces: sessions Established and IPv4 and IPv6 routes both ways
//! (one session per family, as Calico peers).

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Lab, dut_yaml, v6_peer_yaml};
use margay_testkit::{have_program, require_root, wait_until};

fn skip(name: &str, program: &str) -> bool {
    if !require_root(name) {
        return true;
    }
    if !have_program(program) && !std::path::Path::new(program).exists() {
        eprintln!("SKIP {name}: {program} not installed");
        return true;
    }
    false
}

const FRR_BGPD: &str = "/usr/lib/frr/bgpd";

/// Start FRR's bgpd (no zebra) in the peer namespace with `conf`;
/// returns its pid (for its log) and the vty socket directory.
fn start_frr(lab: &Lab, conf: &str) -> (u32, std::path::PathBuf) {
    std::fs::write(lab.path("frr.conf"), conf).unwrap();
    let vty = lab.path("frrvty");
    std::fs::create_dir_all(&vty).unwrap();
    // FRR drops privileges to user frr (a member of frrvty): let it write
    // its pid file and vty socket in our temp dir.
    use std::os::unix::fs::PermissionsExt;
    for d in [lab.dir.path(), vty.as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777))
            .unwrap();
    }
    let mut c = Command::new(FRR_BGPD);
    c.arg("-Z")
        .arg("-f")
        .arg(lab.path("frr.conf"))
        .arg("-i")
        .arg(lab.path("frr.pid"))
        .arg("--vty_socket")
        .arg(&vty)
        .args(["-u", "frr", "-g", "frr", "-l", "10.0.0.2", "-l", "fd00::2"])
        .arg("-n");
    (lab.peer.spawn(c).unwrap(), vty)
}

/// `vtysh -c CMD` against the FRR of [`start_frr`] (empty on failure).
fn vtysh(lab: &Lab, vty: &std::path::Path, cmd: &str) -> String {
    let vty = vty.display().to_string();
    lab.peer
        .exec(&["vtysh", "--vty_socket", &vty, "-c", cmd])
        .unwrap_or_default()
}

#[test]
fn frr_ipv4_and_ipv6_routes_both_ways() {
    if skip("frr_ipv4_and_ipv6_routes_both_ways", FRR_BGPD) {
        return;
    }
    let mut lab = Lab::new("bgf").unwrap();
    let yaml = dut_yaml("10.0.0.2", 65002, "") + &v6_peer_yaml(65002);
    lab.start_bgpd(&yaml, &[]).unwrap();
    let conf = r#"hostname frr
log stdout debugging
router bgp 65002
 bgp router-id 10.0.0.2
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 10.0.0.1 remote-as 65000
 neighbor 10.0.0.1 timers connect 1
 neighbor fd00::1 remote-as 65000
 neighbor fd00::1 timers connect 1
 address-family ipv4 unicast
  network 192.168.60.0/24
  no neighbor fd00::1 activate
 exit-address-family
 address-family ipv6 unicast
  network 2001:db8:60::/48
  neighbor fd00::1 activate
 exit-address-family
"#;
    let (frr, vty) = start_frr(&lab, conf);
    let ok = wait_until(Duration::from_secs(40), || {
        lab.rib_entry("192.168.60.0/24").is_some()
    });
    assert!(
        ok,
        "no route from FRR\nfrr: {}\nbgpd: {}",
        lab.peer.log(frr),
        lab.bgpd_log()
    );
    lab.wait_established("frr");
    let e = lab.rib_entry("192.168.60.0/24").unwrap();
    assert_eq!(e.paths[0].as_path, vec![65002]);
    // bgpd -> FRR: our block. FRR logs the received prefix at debug level;
    // without vtysh access we ask FRR's own log.
    let ok = wait_until(Duration::from_secs(20), || {
        let log = lab.peer.log(frr);
        log.contains("10.244.1.0/26")
    });
    if !ok {
        // Fall back to vtysh when FRR does not log UPDATEs.
        let out = vtysh(&lab, &vty, "show bgp ipv4 unicast");
        assert!(
            out.contains("10.244.1.0/26"),
            "FRR lacks our block:\n{out}\nfrr log:\n{}",
            lab.peer.log(frr)
        );
    }
    // IPv6 over the IPv6 session, both ways.
    let ok = wait_until(Duration::from_secs(40), || {
        lab.rib_entry("2001:db8:60::/48").is_some()
    });
    assert!(
        ok,
        "no IPv6 route from FRR\nfrr: {}\nbgpd: {}",
        lab.peer.log(frr),
        lab.bgpd_log()
    );
    let e = lab.rib_entry("2001:db8:60::/48").unwrap();
    assert_eq!(e.paths[0].as_path, vec![65002]);
    let ok = wait_until(Duration::from_secs(20), || {
        lab.peer.log(frr).contains("fd10::/122")
            || vtysh(&lab, &vty, "show bgp ipv6 unicast").contains("fd10::/122")
    });
    assert!(ok, "FRR lacks our IPv6 block:\n{}", lab.peer.log(frr));
}

#[test]
fn frr_ipv4_routes_with_ipv6_next_hops_over_an_ipv6_session() {
    let name = "frr_ipv4_routes_with_ipv6_next_hops_over_an_ipv6_session";
    if skip(name, FRR_BGPD) {
        return;
    }
    let mut lab = Lab::new("bgn").unwrap();
    // One IPv6 session carrying IPv4 too (RFC 8950, margay's annotation).
    let yaml = dut_yaml("fd00::2", 65002, "").replace(
        "metadata: {name: peer}",
        "metadata: {name: peer, annotations: \
         {margay.io/extended-next-hop: \"true\"}}",
    );
    lab.start_bgpd(&yaml, &[]).unwrap();
    let conf = r#"hostname frr
log stdout debugging
router bgp 65002
 bgp router-id 10.0.0.2
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor fd00::1 remote-as 65000
 neighbor fd00::1 timers connect 1
 neighbor fd00::1 capability extended-nexthop
 address-family ipv4 unicast
  network 192.168.60.0/24
  neighbor fd00::1 activate
 exit-address-family
 address-family ipv6 unicast
  neighbor fd00::1 activate
 exit-address-family
"#;
    let (frr, vty) = start_frr(&lab, conf);
    // FRR -> bgpd: an IPv4 route whose next hop is FRR's IPv6 address.
    let ok = wait_until(Duration::from_secs(40), || {
        lab.rib_entry("192.168.60.0/24").is_some()
    });
    assert!(
        ok,
        "no IPv4 route from FRR\nfrr: {}\nbgpd: {}",
        lab.peer.log(frr),
        lab.bgpd_log()
    );
    let e = lab.rib_entry("192.168.60.0/24").unwrap();
    assert_eq!(e.paths[0].next_hop, Some("fd00::2".parse().unwrap()));
    // bgpd -> FRR: our IPv4 block, valid, with our IPv6 address as next
    // hop ("NEXTHOP from PEER" in FRR's path line).
    let ok = wait_until(Duration::from_secs(20), || {
        let r = vtysh(&lab, &vty, "show bgp ipv4 unicast 10.244.1.0/26");
        r.contains("fd00::1 from fd00::1") && r.contains("valid")
    });
    assert!(
        ok,
        "FRR lacks our IPv4 block:\n{}\nfrr log:\n{}",
        vtysh(&lab, &vty, "show bgp ipv4 unicast"),
        lab.peer.log(frr)
    );
    // FRR took the IPv6 next hop: no session reset over it.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(lab.peer_state().as_deref(), Some("Established"));
}

#[test]
fn gobgp_ipv4_and_ipv6_routes_both_ways() {
    if skip("gobgp_ipv4_and_ipv6_routes_both_ways", "gobgpd") {
        return;
    }
    let mut lab = Lab::new("bgg").unwrap();
    let yaml = dut_yaml("10.0.0.2", 65003, "") + &v6_peer_yaml(65003);
    lab.start_bgpd(&yaml, &[]).unwrap();
    let conf = r#"[global.config]
  as = 65003
  router-id = "10.0.0.2"
  port = 179
  local-address-list = ["10.0.0.2", "fd00::2"]
[[neighbors]]
  [neighbors.config]
    neighbor-address = "10.0.0.1"
    peer-as = 65000
  [neighbors.timers.config]
    connect-retry = 1
[[neighbors]]
  [neighbors.config]
    neighbor-address = "fd00::1"
    peer-as = 65000
  [neighbors.timers.config]
    connect-retry = 1
"#;
    std::fs::write(lab.path("gobgp.toml"), conf).unwrap();
    let mut c = Command::new("gobgpd");
    c.arg("-f")
        .arg(lab.path("gobgp.toml"))
        .args(["--api-hosts", "127.0.0.1:50051"]);
    let g = lab.peer.spawn(c).unwrap();
    let gobgp = |args: &[&str]| {
        let mut argv = vec!["gobgp", "-u", "127.0.0.1", "-p", "50051"];
        argv.extend_from_slice(args);
        lab.peer.exec(&argv).unwrap_or_else(|e| e.to_string())
    };
    let ok = wait_until(Duration::from_secs(20), || {
        !gobgp(&["global", "rib", "add", "192.168.70.0/24", "-a", "ipv4"])
            .contains("rror")
    });
    assert!(ok, "gobgp API not reachable: {}", lab.peer.log(g));
    for (theirs, afi, ours, our_nh) in [
        ("192.168.70.0/24", "ipv4", "10.244.1.0/26", "10.0.0.1"),
        ("2001:db8:70::/48", "ipv6", "fd10::/122", "fd00::1"),
    ] {
        // Re-adding is idempotent; it covers an add accepted by the API
        // before gobgpd finished starting its global instance.
        let ok = wait_until(Duration::from_secs(40), || {
            gobgp(&["global", "rib", "add", theirs, "-a", afi]);
            lab.rib_entry(theirs).is_some()
        });
        assert!(
            ok,
            "no {afi} route from GoBGP\ngobgp: {}\nbgpd: {}",
            gobgp(&["neighbor"]),
            lab.bgpd_log()
        );
        lab.wait_established("gobgp");
        let ok = wait_until(Duration::from_secs(20), || {
            gobgp(&["global", "rib", "-a", afi]).contains(ours)
        });
        let rib = gobgp(&["global", "rib", "-a", afi]);
        assert!(ok, "GoBGP lacks our {afi} block:\n{rib}");
        assert!(rib.contains(our_nh), "next hop self expected:\n{rib}");
        // Withdraw at GoBGP: bgpd drops the route.
        gobgp(&["global", "rib", "del", theirs, "-a", afi]);
        let ok = wait_until(Duration::from_secs(20), || {
            lab.rib_entry(theirs).is_none()
        });
        assert!(ok, "{afi} withdrawal not processed");
    }
}
