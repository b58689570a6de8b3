//! The plugin relaying to the node agent's CNI service
//! (`margay_cni::agent`): the same results as in-process, through the
//! namespace handle the plugin passes; the plugin on its own when no agent
//! answers; and an ADD whose answer is lost reported as "try again later"
//! rather than repeated. Root tests are ignored otherwise.

use std::io::Read;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Command;

use margay_cni::agent::server;
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
    assert!(!link_exists(&host_ifname(&r)));
    let out = invoke("CHECK", "ctr-r", Some(&a.path()), "eth0", &check);
    assert!(!out.ok, "CHECK after DEL passed");
    assert!(out.stdout.contains("no longer holds"), "{}", out.stdout);
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
