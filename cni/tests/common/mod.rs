//! Helpers shared by the plugin's integration tests: invoking a binary as
//! a runtime does, an etcd with one pool, and cleanup of host links.

#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use margay_crds::{IPPool, IPPoolSpec};
use margay_datastore::{Datastore, DatastoreSpec};
use margay_testkit::EtcdServer;
use serde_json::{Value, json};

/// The `margay` binary under test: this build's, or the one in
/// `$MARGAY_CNI_PLUGIN_DIR` (scripts/test runs these tests again on the
/// static plugins the image ships, `scripts/plugins --debug`).
pub fn plugin_bin() -> String {
    bin("margay", env!("CARGO_BIN_EXE_margay"))
}

/// The `margay-ipam` binary under test (see [`plugin_bin`]).
pub fn ipam_plugin_bin() -> String {
    bin("margay-ipam", env!("CARGO_BIN_EXE_margay-ipam"))
}

fn bin(name: &str, built: &str) -> String {
    match std::env::var_os("MARGAY_CNI_PLUGIN_DIR") {
        Some(dir) => Path::new(&dir).join(name).display().to_string(),
        None => built.to_string(),
    }
}

/// A CNI invocation's outcome.
pub struct Out {
    pub ok: bool,
    pub stdout: String,
}

pub fn invoke(
    cmd: &str,
    id: &str,
    netns: Option<&Path>,
    ifname: &str,
    conf: &Value,
) -> Out {
    let netns = netns.map(|p| p.display().to_string());
    let mut env = vec![
        ("CNI_CONTAINERID", id),
        ("CNI_IFNAME", ifname),
        ("CNI_PATH", "/usr/lib/cni"),
    ];
    if let Some(ns) = &netns {
        env.push(("CNI_NETNS", ns));
    }
    run_plugin(&plugin_bin(), cmd, &env, conf)
}

/// Runs `bin` with `CNI_COMMAND=cmd` and only the variables in `env` (a
/// GC, say, gets no container, netns or interface).
pub fn run_plugin(
    bin: &str,
    cmd: &str,
    env: &[(&str, &str)],
    conf: &Value,
) -> Out {
    let mut command = Command::new(bin);
    command
        .env_clear()
        .env("CNI_COMMAND", cmd)
        .envs(env.iter().copied());
    feed(command, conf)
}

/// Starts `command` (its environment already set) with `conf` on stdin,
/// as a runtime does, and collects its answer; stderr passes through.
pub fn feed(mut command: Command, conf: &Value) -> Out {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run the plugin");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

pub struct Fixture {
    pub etcd: EtcdServer,
    pub dir: tempfile::TempDir,
    pub conf: Value,
}

pub fn fixture(cidr: &str) -> Fixture {
    let etcd = EtcdServer::start().expect("etcd");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let spec: DatastoreSpec =
            format!("etcd:{}", etcd.endpoint()).parse().unwrap();
        let ds = Datastore::connect(&spec).await.unwrap();
        let pool = IPPool::new(
            "pool-a",
            IPPoolSpec {
                cidr: cidr.into(),
                block_size: Some(28),
                ..IPPoolSpec::default()
            },
        );
        ds.create(&pool).await.unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let conf = json!({
        "cniVersion": "1.1.0",
        "name": "k8s-pod-network",
        "type": "margay",
        "nodename": "node-test",
        "datastore_type": "etcdv3",
        "etcd_endpoints": etcd.endpoint(),
        "mtu": 1400,
        "log_level": "debug",
        "ipam_lock_file": dir.path().join("ipam.lock"),
        "endpoint_dir": dir.path().join("endpoints"),
        "ipam": {"type": "margay-ipam"},
    });
    Fixture { etcd, dir, conf }
}

pub fn pod_ip(result: &Value) -> String {
    let addr = result["ips"][0]["address"].as_str().unwrap();
    addr.split('/').next().unwrap().to_string()
}

pub fn host_ifname(result: &Value) -> String {
    result["interfaces"][0]["name"]
        .as_str()
        .unwrap()
        .to_string()
}

pub fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// Removes host veths of a test even when it panics.
pub struct HostLinks(pub Vec<String>);
impl Drop for HostLinks {
    fn drop(&mut self) {
        for l in &self.0 {
            let _ = Command::new("ip")
                .args(["link", "del", l])
                .stderr(Stdio::null())
                .status();
        }
    }
}
