//! Pods: a namespace wired by the margay CNI plugin, invoked exactly as a
//! container runtime invokes it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::state::{LabState, PodState};
use crate::sys::{ns_run, run};
use crate::topology::{self, Topology};
use crate::{LabError, LabOptions};

/// Creates one more pod on `node` of a running lab through the CNI plugin.
pub fn add_extra_pod(
    opts: &LabOptions,
    node: &str,
    pod: &str,
) -> Result<PodState, LabError> {
    add_extra_pod_in_pool(opts, node, pod, &[])
}

/// [`add_extra_pod`] with the pod's IPv4 address taken from the named
/// IPPools (the CNI config's `ipam.ipv4_pools`), e.g. the lab's Manual
/// pools [`topology::SMALL_BLOCKS_POOL`] and [`topology::ONE_BLOCK_POOL`].
pub fn add_extra_pod_in_pool(
    opts: &LabOptions,
    node: &str,
    pod: &str,
    ipv4_pools: &[&str],
) -> Result<PodState, LabError> {
    let mut state = LabState::load(&opts.state_dir)?
        .ok_or_else(|| LabError::State("no lab is running".into()))?;
    let topo = Topology::new(state.nodes.len(), 0, opts.mode, opts.family)
        .with_route_reflectors(opts.route_reflectors);
    let plan = topology::PodPlan {
        name: pod.to_string(),
        node: node.to_string(),
        netns: format!("{}-{node}-{pod}", topology::PREFIX),
        container_id: format!("lab-{node}-{pod}"),
    };
    let result = add_pod(opts, &topo, &plan, &state, ipv4_pools);
    if let Ok(p) = &result {
        state.pods.push(p.clone());
        state.save()?;
    }
    result
}

/// Creates the pod's namespace and runs the CNI plugin's ADD in the node's
/// namespace, exactly as a runtime does: env variables plus config on stdin.
pub(crate) fn add_pod(
    opts: &LabOptions,
    topo: &Topology,
    p: &topology::PodPlan,
    state: &LabState,
    ipv4_pools: &[&str],
) -> Result<PodState, LabError> {
    let dir = &state.state_dir;
    // A retried ADD (after a failure) reuses the pod's namespace, as a
    // runtime retries with the same sandbox.
    if !Path::new("/run/netns").join(&p.netns).exists() {
        run("ip", &["netns", "add", &p.netns])?;
        ns_run(&p.netns, &["ip", "link", "set", "lo", "up"])?;
    }
    let node_ns = topo
        .nodes
        .iter()
        .find(|n| n.name == p.node)
        .map(|n| n.netns.clone())
        .expect("pod's node is in the topology");
    let mut config = topo.cni_config(&p.node, &dir.join(&p.node), ipv4_pools);
    if let Some(kube) = &state.kube {
        crate::kube::cni_datastore(&mut config, kube, &dir.join(&p.node));
    }
    let plugin: PathBuf = opts.bin_dir.join("margay");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &node_ns])
        .arg(&plugin)
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", &p.container_id)
        .env("CNI_NETNS", format!("/run/netns/{}", p.netns))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", &opts.bin_dir)
        .env(
            "CNI_ARGS",
            format!("K8S_POD_NAMESPACE=default;K8S_POD_NAME={}", p.name),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| LabError::Cni {
            pod: p.name.clone(),
            detail: e.to_string(),
        })?;
    child
        .stdin
        .take()
        .expect("stdin piped")
        .write_all(config.to_string().as_bytes())
        .map_err(|e| LabError::Cni {
            pod: p.name.clone(),
            detail: e.to_string(),
        })?;
    let out = child.wait_with_output().map_err(|e| LabError::Cni {
        pod: p.name.clone(),
        detail: e.to_string(),
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(LabError::Cni {
            pod: p.name.clone(),
            detail: format!(
                "{stdout} {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    let result: serde_json::Value =
        serde_json::from_str(&stdout).map_err(|e| LabError::Cni {
            pod: p.name.clone(),
            detail: format!("unparseable result {stdout:?}: {e}"),
        })?;
    let ips = result["ips"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|ip| ip["address"].as_str())
                .filter_map(|s| s.split('/').next())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if ips.is_empty() {
        return Err(LabError::Cni {
            pod: p.name.clone(),
            detail: format!("result has no IPs: {stdout}"),
        });
    }
    Ok(PodState {
        name: p.name.clone(),
        node: p.node.clone(),
        netns: p.netns.clone(),
        container_id: p.container_id.clone(),
        ips,
    })
}
