//! Calico's autodetection methods on a real kernel: a throwaway network
//! namespace with a veth pair whose ends carry different IPv4 and IPv6
//! networks, the default routes on one of them. Detection runs on a
//! thread that has entered the namespace (interfaces, routes and the
//! can-reach socket are all per network namespace).

use margay_node::autodetect::{Method, detect};
use margay_testkit::{Netns, require_root};
use nix::sched::CloneFlags;

/// Runs `methods` (method, IPv6?) in `ns`; the results as strings.
fn detect_in(
    ns: &Netns,
    methods: &[(&str, bool)],
) -> Vec<Result<String, String>> {
    let path = ns.path();
    let methods: Vec<(String, bool)> =
        methods.iter().map(|(m, v6)| (m.to_string(), *v6)).collect();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("opening the netns");
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
        methods
            .iter()
            .map(|(m, v6)| {
                let m: Method = m.parse().map_err(|e| format!("{e}"))?;
                detect(&m, *v6, None)
                    .map(|n| n.to_string())
                    .map_err(|e| e.to_string())
            })
            .collect()
    })
    .join()
    .expect("detection thread")
}

#[test]
#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
fn methods_pick_the_right_interface_on_a_real_kernel() {
    require_root("methods_pick_the_right_interface_on_a_real_kernel");
    let ns = Netns::new("autodetect").expect("netns");
    for cmd in [
        "ip link add up0 type veth peer name data1",
        "ip addr add 10.31.0.2/24 dev up0",
        "ip addr add 192.168.31.2/25 dev data1",
        "ip -6 addr add fd31:a::2/64 dev up0 nodad",
        "ip -6 addr add fd31:b::2/80 dev data1 nodad",
        "ip link set up0 up",
        "ip link set data1 up",
        "ip route add default via 10.31.0.1 dev up0",
        "ip -6 route add default via fd31:a::1 dev up0",
        // A pod veth (margay's naming) holding an address first-found must skip.
        "ip link add mg0123456789a type veth peer name mgpeer",
        "ip addr add 10.244.0.1/32 dev mg0123456789a",
        "ip link set mg0123456789a up",
    ] {
        let argv: Vec<&str> = cmd.split(' ').collect();
        ns.exec(&argv).unwrap_or_else(|e| panic!("{cmd}: {e}"));
    }
    let got = detect_in(
        &ns,
        &[
            ("default-route", false),
            ("default-route", true),
            ("first-found", false),
            ("first-found", true),
            ("interface=data.*", false),
            ("interface=data.*", true),
            ("skip-interface=up.*", false),
            ("cidr=192.168.0.0/16", false),
            ("cidr=fd31:b::/32", true),
            ("can-reach=192.168.31.100", false),
            ("can-reach=8.8.8.8", false),
            ("can-reach=fd31:b::9", true),
            ("interface=nothing-like-it", false),
            ("kubernetes-internal-ip", false),
        ],
    );
    let ok = |s: &str| Ok::<String, String>(s.to_string());
    assert_eq!(got[0], ok("10.31.0.2/24"));
    assert_eq!(got[1], ok("fd31:a::2/64"));
    // first-found: the first interface in kernel (ifindex) order, as
    // Calico's; the veth peer is created first, so data1 comes first.
    let index = |dev: &str| -> u32 {
        let out = ns.exec(&["ip", "-o", "link", "show", dev]).unwrap();
        out.split(':').next().unwrap().trim().parse().unwrap()
    };
    let (v4, v6) = if index("up0") < index("data1") {
        ("10.31.0.2/24", "fd31:a::2/64")
    } else {
        ("192.168.31.2/25", "fd31:b::2/80")
    };
    assert_eq!(got[2], ok(v4));
    assert_eq!(got[3], ok(v6));
    assert_eq!(got[4], ok("192.168.31.2/25"));
    assert_eq!(got[5], ok("fd31:b::2/80"));
    assert_eq!(got[6], ok("192.168.31.2/25"));
    assert_eq!(got[7], ok("192.168.31.2/25"));
    assert_eq!(got[8], ok("fd31:b::2/80"));
    assert_eq!(got[9], ok("192.168.31.2/25"));
    // Through the default route.
    assert_eq!(got[10], ok("10.31.0.2/24"));
    assert_eq!(got[11], ok("fd31:b::2/80"));
    let e = got[12].clone().unwrap_err();
    assert!(e.contains("interface=nothing-like-it"), "{e}");
    let e = got[13].clone().unwrap_err();
    assert!(e.contains("kubernetes-internal-ip"), "{e}");
}
