//! `node status` and `routes` against a fake bgpd control socket served by
//! the test (and, for `routes`, real kernel routes in a throwaway netns).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use margay_ctlproto::{
    InvalidObject, PeerStatus, PeerType, Request, Response, RibEntry, RibPath,
    decode_line, encode_line,
};
use margay_testkit::{Netns, require_root};
use margayctl::output::Format;
use margayctl::{routes, status};

/// A fake bgpd: answers `count` connections from `answer`, recording the
/// requests it saw.
fn serve(
    path: &Path,
    count: usize,
    answer: impl Fn(Request) -> String + Send + 'static,
) -> JoinHandle<Vec<Request>> {
    let listener = UnixListener::bind(path).expect("binding the fake socket");
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        for _ in 0..count {
            let (stream, _) = listener.accept().expect("accept");
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            reader.read_line(&mut line).expect("read request");
            let req: Request =
                decode_line(&line).expect("a valid request line");
            seen.push(req.clone());
            (&stream)
                .write_all(answer(req).as_bytes())
                .expect("write answer");
        }
        seen
    })
}

fn peer(addr: &str, ty: PeerType, state: &str, since: u64) -> PeerStatus {
    PeerStatus {
        name: format!("Mesh_{addr}"),
        peer_type: ty,
        address: addr.parse().unwrap(),
        port: 179,
        local_as: 64512,
        remote_as: 64512,
        state: state.into(),
        since_unix: since,
        prefixes_received: 1,
        prefixes_accepted: 1,
        prefixes_advertised: 2,
        last_error: None,
        bfd_state: None,
        held_idle: None,
    }
}

fn socket_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("bgpd.ctl")
}

#[test]
fn node_status_renders_peers_from_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir);
    let peers = vec![
        peer("192.0.2.12", PeerType::Global, "Active", 1_700_000_000),
        peer("192.0.2.11", PeerType::Mesh, "Established", 1_700_000_000),
        peer(
            "2001:db8::1",
            PeerType::NodeSpecific,
            "Established",
            1_700_000_000,
        ),
    ];
    let bad = InvalidObject {
        kind: "BGPPeer".into(),
        name: "typo".into(),
        field: "spec.peerIP".into(),
        error: "\"10.0.0.x\" is invalid: allowed an IP address".into(),
    };
    let server = {
        let peers = peers.clone();
        let bad = bad.clone();
        serve(&path, 3, move |req| match req {
            Request::Peers => encode_line(&Response::Peers {
                peers: peers.clone(),
            }),
            Request::Invalid => encode_line(&Response::Invalid {
                objects: vec![bad.clone()],
            }),
            other => panic!("unexpected request {other:?}"),
        })
    };
    let text =
        status::node_status(&path, Format::Table, 1_700_000_100).unwrap();
    assert!(text.starts_with("margay bgpd is running"), "{text}");
    let v4 = text.split("IPv6 BGP status").next().unwrap();
    // Sorted by address; mesh peer first.
    let mesh = v4
        .find("| 192.0.2.11   | node-to-node mesh | up    |")
        .unwrap();
    let global = v4
        .find("| 192.0.2.12   | global            | start |")
        .unwrap();
    assert!(mesh < global, "{text}");
    assert!(text.contains("| 2001:db8::1  | node specific | up    | 22:13:20 | Established | 1        | 1        | 2          |"), "{text}");
    assert!(
        text.contains(
            "Invalid datastore objects, left out (everything else is \
             configured):\n  BGPPeer \"typo\" field spec.peerIP: \
             \"10.0.0.x\" is invalid: allowed an IP address\n"
        ),
        "{text}"
    );

    let json = status::node_status(&path, Format::Json, 0).unwrap();
    let back: Vec<PeerStatus> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, peers);
    assert_eq!(
        server.join().unwrap(),
        vec![Request::Peers, Request::Invalid, Request::Peers]
    );
}

#[test]
fn node_status_explains_a_missing_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir);
    let err = status::node_status(&path, Format::Table, 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("is bgpd running?"), "{err}");
    assert!(
        err.contains(&format!("looked for {}", path.display())),
        "{err}"
    );
}

#[test]
fn node_status_reports_bgpd_errors_and_bad_answers() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir);
    let server = serve(&path, 2, |req| match req {
        Request::Peers => encode_line(&Response::Error {
            message: "shutting down".into(),
        }),
        _ => "not json\n".into(),
    });
    let err = status::node_status(&path, Format::Table, 0)
        .unwrap_err()
        .to_string();
    assert_eq!(err, "bgpd answered with an error: shutting down");
    let err = margay_ctlproto::client::rib(&path).unwrap_err().to_string();
    assert!(err.contains("bad control-protocol line"), "{err}");
    // A Peers answer to a Rib question is reported, not misread.
    drop(server.join().unwrap());
    std::fs::remove_file(&path).unwrap();
    let server = serve(&path, 1, |_| {
        encode_line(&Response::Peers { peers: vec![] })
    });
    let err = margay_ctlproto::client::rib(&path).unwrap_err().to_string();
    assert!(
        err.contains("unexpected peers response to a rib request"),
        "{err}"
    );
    server.join().unwrap();
}

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[test]
fn routes_puts_rib_and_kernel_fib_side_by_side() {
    if !require_root("routes_puts_rib_and_kernel_fib_side_by_side") {
        return;
    }
    let ns = Netns::new("mctl-routes").expect("netns");
    for cmd in [
        "ip link add a0 type veth peer name b0",
        "ip link set a0 up",
        "ip link set b0 up",
        "ip addr add 192.0.2.1/24 dev a0",
        // What felix-lite would install, with its protocol number.
        "ip route add 10.244.1.0/26 via 192.0.2.2 proto 81",
        "ip route add blackhole 10.244.0.0/26 proto 81",
        "ip route add 10.244.9.0/26 via 192.0.2.9 proto 81",
        // Not felix-lite's: must be ignored.
        "ip route add 10.244.3.0/26 via 192.0.2.3 proto static",
    ] {
        let args: Vec<&str> = cmd.split_whitespace().collect();
        ns.exec(&args).expect(cmd);
    }
    let remote = |nh: &str, best: bool, reason: &str| RibPath {
        peer: Some(nh.parse().unwrap()),
        next_hop: Some(nh.parse().unwrap()),
        as_path: vec![],
        origin: "igp".into(),
        local_pref: Some(100),
        med: None,
        communities: vec![],
        best,
        multipath: false,
        stale: false,
        reason: reason.into(),
    };
    let rib = vec![
        RibEntry {
            prefix: "10.244.0.0/26".parse().unwrap(),
            paths: vec![RibPath {
                peer: None,
                next_hop: None,
                ..remote("192.0.2.1", true, "locally originated")
            }],
        },
        RibEntry {
            prefix: "10.244.1.0/26".parse().unwrap(),
            paths: vec![
                remote("192.0.2.2", true, "lower router ID"),
                remote("192.0.2.3", false, "higher router ID"),
            ],
        },
        RibEntry {
            prefix: "10.244.2.0/26".parse().unwrap(),
            paths: vec![remote("192.0.2.2", true, "only path")],
        },
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir);
    let server = serve(&path, 1, move |_| {
        encode_line(&Response::Rib {
            routes: rib.clone(),
        })
    });
    let text = routes::show(&path, 81, Some(ns.name()), Format::Table).unwrap();
    server.join().unwrap();
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no row for {prefix}:\n{text}"))
            .to_string()
    };
    assert!(line("10.244.0.0/26").contains("blackhole"), "{text}");
    assert!(line("10.244.0.0/26").trim_end().ends_with("ok"), "{text}");
    assert!(
        line("10.244.1.0/26").contains("via 192.0.2.2 dev a0"),
        "{text}"
    );
    assert!(line("10.244.1.0/26").contains("lower router ID"), "{text}");
    assert!(text.contains("higher router ID"), "{text}");
    assert!(line("10.244.2.0/26").ends_with("MISSING"), "{text}");
    assert!(line("10.244.9.0/26").ends_with("NOT IN RIB"), "{text}");
    assert!(!text.contains("10.244.3.0/26"), "{text}");
    assert!(
        text.contains(
            "4 prefixes; FIB = kernel routes with protocol 81; 2 out of sync"
        ),
        "{text}"
    );
}
