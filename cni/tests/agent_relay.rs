//! The plugin relaying to the node agent's CNI service
//! (`margay_cni::agent`): the same results as in-process, through the
//! namespace handle the plugin passes; the plugin on its own when no agent
//! answers; and an ADD whose answer is lost reported as "try again later"
//! rather than repeated. Root tests are ignored otherwise.

use std::io::Read;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Command;

use margay_cni::agent::{client, server};
use margay_testkit::{Netns, require_root};
use serde_json::Value;

mod common;
use common::*;

/// The plugin's log (the fixture logs at debug level to this file).
fn with_log(conf: &Value, dir: &Path) -> (Value, std::path::PathBuf) {
    let log = dir.join("plugin.log");
    let mut conf = conf.clone();
    conf["log_file_path"] = log.display().to_string().into();
    (conf, log)
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[test]
fn relayed_add_check_del_work_as_in_process() {
    if !require_root("relayed_add_check_del_work_as_in_process") {
        return;
    }
    let f = fixture("10.248.0.0/24");
    let socket = f.dir.path().join("agent.sock");
    server::spawn(server::bind(&socket).unwrap()).unwrap();
    let (mut conf, log) = with_log(&f.conf, f.dir.path());
    conf["agent_socket"] = socket.display().to_string().into();
    let a = Netns::new("cnir").unwrap();
    let mut links = HostLinks(Vec::new());

    let out = invoke("ADD", "ctr-r", Some(&a.path()), "eth0", &conf);
    assert!(out.ok, "ADD: {}", out.stdout);
    let r: Value = serde_json::from_str(&out.stdout).unwrap();
    links.0.push(host_ifname(&r));
    assert!(
        read_log(&log).contains("relayed to the node agent"),
        "the ADD was not relayed: {}",
        read_log(&log)
    );
    // The agent entered the namespace through the passed handle, but the
    // result names CNI_NETNS as the runtime gave it.
    assert_eq!(
        r["interfaces"][1]["sandbox"],
        a.path().display().to_string()
    );
    let ip = pod_ip(&r);
    assert!(ip.starts_with("10.248.0."), "{ip}");
    let got = a.exec(&["ip", "-4", "-o", "addr", "show", "eth0"]).unwrap();
    assert!(got.contains(&format!("{ip}/32")), "{got}");
    let ping = Command::new("ping")
        .args(["-c1", "-W2", &ip])
        .output()
        .unwrap();
    assert!(ping.status.success(), "host -> pod: {ping:?}");

    let mut check = conf.clone();
    check["prevResult"] = r.clone();
    let out = invoke("CHECK", "ctr-r", Some(&a.path()), "eth0", &check);
    assert!(out.ok, "CHECK: {}", out.stdout);

    // Errors come back as the plugin would print them.
    let out = invoke(
        "ADD",
        "ctr-x",
        Some(Path::new("/run/netns/none")),
        "eth0",
        &conf,
    );
    assert!(!out.ok);
    let err: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(err["code"], 4, "{err}");
    assert!(err["msg"].as_str().unwrap().contains("CNI_NETNS"), "{err}");

    for _ in 0..2 {
        let out = invoke("DEL", "ctr-r", Some(&a.path()), "eth0", &conf);
        assert!(out.ok, "DEL: {}", out.stdout);
    }
    // The agent deletes the host end after answering (see the next test).
    wait_link_gone(&host_ifname(&r));
    let out = invoke("CHECK", "ctr-r", Some(&a.path()), "eth0", &check);
    assert!(!out.ok, "CHECK after DEL passed");
    assert!(out.stdout.contains("no longer holds"), "{}", out.stdout);
}

/// The index of host link `name`, if it exists.
fn link_index(name: &str) -> Option<u32> {
    let out = Command::new("ip")
        .args(["-o", "link", "show", name])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.split(':').next()?.trim().parse().ok()
}

/// Whether host link `index` exists and is administratively up.
fn index_up(index: u32) -> Option<bool> {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.split(':').next() == Some(&index.to_string()))?;
    let flags = line.split('<').nth(1)?.split('>').next()?;
    Some(flags.split(',').any(|f| f == "UP"))
}

/// The host routes to `ip`.
fn routes_to(ip: &str) -> String {
    let out = Command::new("ip")
        .args(["-4", "route", "show", &format!("{ip}/32")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Waits (up to 10 s, a liveness bound, not a timing check) until `gone`.
fn wait_until(what: &str, gone: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !gone() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "{what} still there after 10 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn wait_link_gone(name: &str) {
    wait_until(&format!("host link {name}"), || !link_exists(name));
}

/// The agent answers DEL once the host end is down (its routes gone) and
/// the address released, and deletes the link afterwards, by index: an
/// ADD of the same identity right after DEL reuses the host end's name
/// and must survive the deferred deletion of the old one; an ADD of another
/// identity into the same namespace waits for the old pair to go.
#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[test]
fn a_relayed_del_takes_the_link_down_and_deletes_it_after() {
    if !require_root("a_relayed_del_takes_the_link_down_and_deletes_it_after") {
        return;
    }
    let f = fixture("10.250.0.0/24");
    let socket = f.dir.path().join("agent.sock");
    server::spawn(server::bind(&socket).unwrap()).unwrap();
    let mut conf = f.conf.clone();
    conf["agent_socket"] = socket.display().to_string().into();
    let a = Netns::new("cnid").unwrap();
    let mut links = HostLinks(Vec::new());
    for round in 0..5 {
        // Two rounds per identity: the second ADD reuses the host end's
        // name, the next identity's first ADD the container's CNI_IFNAME
        // (the runtime reusing a namespace), while the deferred deletion
        // of the previous pair may be pending.
        let id = format!("ctr-d{}", round / 2);
        let out = invoke("ADD", &id, Some(&a.path()), "eth0", &conf);
        assert!(out.ok, "ADD {round}: {}", out.stdout);
        let r: Value = serde_json::from_str(&out.stdout).unwrap();
        let (name, ip) = (host_ifname(&r), pod_ip(&r));
        links.0.push(name.clone());
        let index = link_index(&name).expect("host end exists");
        assert_eq!(index_up(index), Some(true));
        assert!(routes_to(&ip).contains(&name), "{}", routes_to(&ip));
        let out = invoke("DEL", &id, Some(&a.path()), "eth0", &conf);
        assert!(out.ok, "DEL {round}: {}", out.stdout);
        // At the answer: no route to the pod, its host end gone or down
        // (the kernel refuses routes on a down link), the address free.
        assert_eq!(routes_to(&ip), "", "a route to the deleted pod is left");
        assert_ne!(index_up(index), Some(true), "host end still up");
        if round % 2 == 1 {
            // Straight on to the next identity's ADD in this namespace,
            // while the old pair's deletion is most likely pending.
            continue;
        }
        let mut check = conf.clone();
        check["prevResult"] = r.clone();
        let out = invoke("CHECK", &id, Some(&a.path()), "eth0", &check);
        assert!(out.stdout.contains("no longer holds"), "{}", out.stdout);
        if round < 4 {
            // Re-ADD at once (the next round); the old link's deletion,
            // maybe still pending, must not take the new one.
            continue;
        }
        wait_until("the last host end", || index_up(index).is_none());
    }
    // Every deferred deletion is done; an ADD now has a working pod.
    let out = invoke("ADD", "ctr-d", Some(&a.path()), "eth0", &conf);
    assert!(out.ok, "ADD: {}", out.stdout);
    let r: Value = serde_json::from_str(&out.stdout).unwrap();
    let index = link_index(&host_ifname(&r)).expect("host end exists");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        link_index(&host_ifname(&r)),
        Some(index),
        "new host end deleted"
    );
    assert_eq!(index_up(index), Some(true));
    let ping = Command::new("ping")
        .args(["-c1", "-W2", &pod_ip(&r)])
        .output()
        .unwrap();
    assert!(ping.status.success(), "host -> pod: {ping:?}");
    let out = invoke("DEL", "ctr-d", Some(&a.path()), "eth0", &conf);
    assert!(out.ok, "DEL: {}", out.stdout);
    wait_link_gone(&host_ifname(&r));
}

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[test]
fn the_plugin_works_alone_when_no_agent_answers() {
    if !require_root("the_plugin_works_alone_when_no_agent_answers") {
        return;
    }
    let f = fixture("10.249.0.0/24");
    let (mut conf, log) = with_log(&f.conf, f.dir.path());
    conf["agent_socket"] = f
        .dir
        .path()
        .join("absent.sock")
        .display()
        .to_string()
        .into();
    let a = Netns::new("cnis").unwrap();
    let mut links = HostLinks(Vec::new());
    let out = invoke("ADD", "ctr-s", Some(&a.path()), "eth0", &conf);
    assert!(out.ok, "ADD: {}", out.stdout);
    let r: Value = serde_json::from_str(&out.stdout).unwrap();
    links.0.push(host_ifname(&r));
    let text = read_log(&log);
    assert!(text.contains("doing the work here"), "{text}");
    assert!(!text.contains("relayed to the node agent"), "{text}");
    let out = invoke("DEL", "ctr-s", Some(&a.path()), "eth0", &conf);
    assert!(out.ok, "DEL: {}", out.stdout);
    assert!(!link_exists(&host_ifname(&r)));
}

/// An agent that takes the request and dies before answering: the ADD
/// may have happened there, so the plugin must not allocate again.
#[test]
fn an_add_whose_answer_is_lost_is_try_again_later() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let taker = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut req = Vec::new();
        s.read_to_end(&mut req).unwrap();
        req
    });
    let conf = serde_json::json!({
        "cniVersion": "1.1.0", "name": "net", "type": "margay",
        "nodename": "n1", "datastore_type": "etcdv3",
        "etcd_endpoints": "http://127.0.0.1:9", "agent_socket": socket,
        "ipam": {"type": "margay-ipam"},
    });
    let out = invoke(
        "ADD",
        "ctr-l",
        Some(Path::new("/proc/self/ns/net")),
        "eth0",
        &conf,
    );
    let req: Value = serde_json::from_slice(&taker.join().unwrap()).unwrap();
    assert_eq!(req["env"]["CNI_COMMAND"], "ADD");
    assert_eq!(req["env"]["CNI_CONTAINERID"], "ctr-l");
    assert!(!out.ok);
    let err: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(err["code"], 11, "{err}");
    assert!(
        err["msg"].as_str().unwrap().contains("did not answer"),
        "{err}"
    );
}

/// The relayed invocation `env` with `conf` on stdin, through
/// [`client::relay`] with the namespace handle of `netns`.
fn relay_raw(
    socket: &Path,
    env: &[(&str, &str)],
    conf: &Value,
    netns: Option<&Path>,
) -> margay_cni::agent::Reply {
    let env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    match client::relay(socket, env, conf.to_string().as_bytes(), netns) {
        client::Relay::Reply(r) => r,
        other => panic!("the agent did not answer: {other:?}"),
    }
}

/// CNI_NETNS is a path in the runtime's mount (and PID) namespaces, which
/// the agent's container may not share: the agent enters the namespace
/// only through the handle the plugin passes, and refuses a relayed
/// CNI_NETNS without one rather than opening the path itself.
#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[test]
fn the_agent_enters_the_namespace_through_the_handle_only() {
    if !require_root("the_agent_enters_the_namespace_through_the_handle_only") {
        return;
    }
    let f = fixture("10.251.0.0/24");
    let socket = f.dir.path().join("run/agent.sock");
    server::spawn(server::bind(&socket).unwrap()).unwrap();
    let a = Netns::new("cnih").unwrap();
    let mut links = HostLinks(Vec::new());
    // A path that exists only for the runtime (here: for nobody).
    let runtime_path = "/var/run/netns/cni-only-the-runtime-sees-this";
    let env = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "ctr-h"),
        ("CNI_NETNS", runtime_path),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/usr/lib/cni"),
    ];
    let reply = relay_raw(&socket, &env, &f.conf, Some(&a.path()));
    assert_eq!(reply.exit, 0, "ADD: {}", reply.stdout);
    let r: Value = serde_json::from_str(&reply.stdout).unwrap();
    links.0.push(host_ifname(&r));
    assert_eq!(r["interfaces"][1]["sandbox"], runtime_path);
    let got = a.exec(&["ip", "-4", "-o", "addr", "show", "eth0"]).unwrap();
    assert!(got.contains(&pod_ip(&r)), "{got}");

    // No handle, and a path the agent could open: refused, not opened.
    let path = a.path().display().to_string();
    let mut env2 = env;
    env2[1] = ("CNI_CONTAINERID", "ctr-h2");
    env2[2] = ("CNI_NETNS", &path);
    let reply = relay_raw(&socket, &env2, &f.conf, None);
    assert_eq!(reply.exit, 1, "{}", reply.stdout);
    let err: Value = serde_json::from_str(&reply.stdout).unwrap();
    assert_eq!(err["code"], 4, "{err}");
    assert!(
        err["msg"].as_str().unwrap().contains("CNI_NETNS")
            && err["msg"].as_str().unwrap().contains("handle"),
        "{err}"
    );
    let got = a.exec(&["ip", "-o", "link", "show"]).unwrap();
    assert_eq!(got.matches("eth0").count(), 1, "a second interface: {got}");

    let mut del = env;
    del[0] = ("CNI_COMMAND", "DEL");
    let reply = relay_raw(&socket, &del, &f.conf, Some(&a.path()));
    assert_eq!(reply.exit, 0, "DEL: {}", reply.stdout);
}

/// Set in the child that [`a_peer_that_is_not_root_is_refused`] runs as
/// nobody: the socket to ask.
const PEER_SOCKET_VAR: &str = "MARGAY_TEST_PEER_SOCKET";

/// Not a test: the client half of [`a_peer_that_is_not_root_is_refused`],
/// which runs this test binary again as nobody with only this one.
#[ignore = "helper process of a_peer_that_is_not_root_is_refused"]
#[test]
fn peer_cred_client_helper() {
    let Ok(socket) = std::env::var(PEER_SOCKET_VAR) else {
        return;
    };
    let env = [("CNI_COMMAND".to_string(), "VERSION".to_string())];
    let stdin = br#"{"cniVersion":"1.0.0"}"#;
    // The server answers a refused peer without reading its request, so
    // the request may meet a closed socket (EPIPE: not taken).
    let reply = match client::relay(Path::new(&socket), env.into(), stdin, None)
    {
        client::Relay::Reply(r) => r,
        other => margay_cni::agent::Reply {
            exit: -1,
            stdout: format!("not served: {other:?}"),
        },
    };
    println!("\nREPLY {}", serde_json::to_string(&reply).unwrap());
}

/// The relay of `PEER_SOCKET_VAR`'s child, `client` (a copy of this test
/// binary) run as `uid`: the agent's reply, or exit -1 when the request
/// was not taken or answered.
fn ask_as(uid: u32, client: &Path, socket: &Path) -> margay_cni::agent::Reply {
    use std::os::unix::process::CommandExt;
    let out = Command::new(client)
        .args([
            "--exact",
            "peer_cred_client_helper",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PEER_SOCKET_VAR, socket)
        .uid(uid)
        .gid(uid)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.split_once("REPLY ").map(|(_, r)| r))
        .unwrap_or_else(|| {
            panic!(
                "no reply from the helper as uid {uid}: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    serde_json::from_str(line).unwrap()
}

/// Defence in depth behind the modes (directory 0700, socket 0600): with
/// both loosened, as a careless host change might, a peer that is not
/// root still gets nothing done, and the refusal is counted.
#[ignore = "needs root (setuid to nobody): scripts/test runs it as root"]
#[test]
fn a_peer_that_is_not_root_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    if !require_root("a_peer_that_is_not_root_is_refused") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/agent.sock");
    server::spawn(server::bind(&socket).unwrap()).unwrap();
    let open = |p: &Path, mode| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
            .unwrap()
    };
    open(dir.path(), 0o755);
    open(&dir.path().join("run"), 0o755);
    open(&socket, 0o666);
    // The client runs from a copy that nobody may execute: the build's own
    // path may not be (a checkout under root's 0700 home).
    let client = dir.path().join("client");
    std::fs::copy(std::env::current_exe().unwrap(), &client).unwrap();
    open(&client, 0o755);

    let root = ask_as(0, &client, &socket);
    assert_eq!(root.exit, 0, "root is served: {}", root.stdout);
    assert!(root.stdout.contains("supportedVersions"), "{}", root.stdout);

    let before = server::refused_peers();
    const NOBODY: u32 = 65534;
    let nobody = ask_as(NOBODY, &client, &socket);
    assert_ne!(nobody.exit, 0, "nobody was served: {}", nobody.stdout);
    assert!(
        nobody.exit == -1
            || nobody
                .stdout
                .contains("uid 65534 may not use the CNI socket"),
        "{}",
        nobody.stdout
    );
    assert!(!nobody.stdout.contains("supportedVersions"));
    // Counted once the server's task has run (a liveness bound only).
    let start = std::time::Instant::now();
    while server::refused_peers() == before {
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(server::refused_peers(), before + 1);
    let text = server::metrics();
    assert!(
        text.contains(&format!(
            "margay_cni_server_refused_peers_total {}\n",
            before + 1
        )),
        "{text}"
    );
}
