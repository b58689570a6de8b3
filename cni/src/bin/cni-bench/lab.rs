//! A lab of its own for the live benches: `margayctl lab up` (beside this
//! binary) before, `margayctl lab down` after, also when the bench fails
//! or panics (the guard's drop). The lab is shared by the whole machine:
//! run the bench under `flock` on the lab lock (see the README).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::Value;

/// A running lab; dropping it runs `lab down`.
pub struct Lab {
    margayctl: PathBuf,
    state_dir: PathBuf,
    /// The lab's saved state (`lab.json`).
    pub state: Value,
}

impl Lab {
    /// `lab up` with `nodes` nodes and `pods` pods per node, its state in
    /// `state_dir`. A lab already up there is refused, not reused: its
    /// pods and history would not be this run's.
    pub fn up(
        state_dir: &Path,
        nodes: usize,
        pods: usize,
    ) -> anyhow::Result<Lab> {
        let margayctl = std::env::current_exe()?.with_file_name("margayctl");
        if state_dir.join("lab.json").exists() {
            bail!(
                "a lab is already up in {} (`margayctl lab down --state-dir {0}`)",
                state_dir.display()
            );
        }
        // The guard exists before `up` runs: a failed `up` leaves pieces.
        let mut lab = Lab {
            margayctl,
            state_dir: state_dir.to_path_buf(),
            state: Value::Null,
        };
        let st = Command::new(&lab.margayctl)
            .args(["lab", "up", "--nodes", &nodes.to_string()])
            .args(["--pods-per-node", &pods.to_string()])
            .arg("--state-dir")
            .arg(state_dir)
            .status()
            .with_context(|| format!("running {}", lab.margayctl.display()))?;
        if !st.success() {
            bail!("margayctl lab up failed ({st})");
        }
        let text = std::fs::read_to_string(state_dir.join("lab.json"))?;
        lab.state = serde_json::from_str(&text)?;
        Ok(lab)
    }

    /// Node `name`'s saved state (netns, run_dir, address).
    pub fn node(&self, name: &str) -> anyhow::Result<&Value> {
        self.state["nodes"]
            .as_array()
            .and_then(|ns| ns.iter().find(|n| n["name"] == name))
            .with_context(|| format!("the lab has no node {name}"))
    }

    /// The lab's first pod on node `name`.
    pub fn pod_on(&self, name: &str) -> anyhow::Result<&Value> {
        self.state["pods"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["node"] == name))
            .with_context(|| format!("the lab has no pod on {name}"))
    }

    /// The CNI config the lab gives pods of node `name` (as `lab up`
    /// wrote it for its own pods: `cni_config` in margay-lab).
    pub fn cni_config(&self, name: &str) -> anyhow::Result<Value> {
        let node = self.node(name)?;
        let run_dir = node["run_dir"].as_str().context("run_dir")?;
        Ok(serde_json::json!({
            "cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "margay",
            "nodename": name, "datastore_type": "etcdv3",
            "etcd_endpoints": self.state["etcd_endpoint"], "mtu": 1500,
            "log_level": "info",
            "endpoint_dir": format!("{run_dir}/endpoints"),
            "agent_socket": format!("{run_dir}/cni.sock"),
            "ipam": {"type": "margay-ipam", "assign_ipv4": "true", "assign_ipv6": "false"},
        }))
    }

    /// The pids of the node's agent and its children (bgpd, felix-lite).
    pub fn node_pids(&self, name: &str) -> anyhow::Result<Vec<String>> {
        let ns = self.node(name)?["netns"].as_str().context("netns")?;
        let out = Command::new("ip").args(["netns", "pids", ns]).output()?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let st = Command::new(&self.margayctl)
            .args(["lab", "down", "--state-dir"])
            .arg(&self.state_dir)
            .stdout(std::process::Stdio::null())
            .status();
        if !matches!(st, Ok(s) if s.success()) {
            eprintln!(
                "margayctl lab down failed ({st:?}): run it by hand with --state-dir {}",
                self.state_dir.display()
            );
        }
    }
}

/// Moves the calling thread into the network namespace at
/// /run/netns/`name`; threads and processes it starts afterwards are
/// there too (a thread's namespaces are copied by clone(2)).
pub fn enter_netns(name: &str) -> anyhow::Result<()> {
    let f = File::open(Path::new("/run/netns").join(name))
        .with_context(|| format!("opening netns {name}"))?;
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("setns {name}"))?;
    Ok(())
}
