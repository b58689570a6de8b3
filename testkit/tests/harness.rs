//! The harness tested on itself: what it creates exists, and is gone after.

use std::time::Duration;

use margay_testkit::{EtcdServer, Netns, Segment, require_root, veth_between};

fn netns_exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[test]
fn netns_veth_and_segment_are_created_and_removed() {
    if !require_root("netns_veth_and_segment_are_created_and_removed") {
        return;
    }
    let (a_name, b_name, c_name, hub_name);
    {
        let a = Netns::new("tk").unwrap();
        let b = Netns::new("tk").unwrap();
        veth_between(&a, "ve0", "10.99.0.1/30", &b, "ve0", "10.99.0.2/30")
            .unwrap();
        a.exec(&["ping", "-c1", "-W2", "10.99.0.2"]).unwrap();

        let seg = Segment::new("tkhub").unwrap();
        let c = Netns::new("tk").unwrap();
        seg.attach(&b, "eth1", "10.98.0.2/24").unwrap();
        seg.attach(&c, "eth1", "10.98.0.3/24").unwrap();
        c.exec(&["ping", "-c1", "-W2", "10.98.0.2"]).unwrap();

        let mut sleeper = std::process::Command::new("sleep");
        sleeper.arg("600");
        let pid = c.spawn(sleeper).unwrap();
        assert!(c.is_running(pid));
        a_name = a.name().to_string();
        b_name = b.name().to_string();
        c_name = c.name().to_string();
        hub_name = seg.hub().name().to_string();
        assert!(netns_exists(&a_name) && netns_exists(&hub_name));
    }
    for n in [a_name, b_name, c_name, hub_name] {
        assert!(!netns_exists(&n), "{n} left behind");
    }
}

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[test]
fn exec_reports_the_failing_command() {
    if !require_root("exec_reports_the_failing_command") {
        return;
    }
    let ns = Netns::new("tk").unwrap();
    let err = ns.exec(&["ip", "link", "show", "nope0"]).unwrap_err();
    assert!(err.to_string().contains("nope0"), "{err}");
}

#[test]
fn etcd_starts_stops_and_restarts() {
    if !margay_testkit::have_program("etcd") {
        panic!("etcd is not installed: apt-get install etcd-server");
    }
    let mut etcd = EtcdServer::start().unwrap();
    let port: u16 =
        etcd.endpoint().rsplit(':').next().unwrap().parse().unwrap();
    let up = || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    assert!(up());
    etcd.stop();
    assert!(margay_testkit::wait_until(Duration::from_secs(5), || !up()));
    etcd.restart().unwrap();
    assert!(up());
}
