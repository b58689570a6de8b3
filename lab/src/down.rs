//! Teardown: everything `up` created, found by name as well as from the
//! state file, so that it also cleans up after a failed or interrupted `up`.

use std::path::Path;
use std::time::Duration;

use crate::state::LabState;
use crate::sys::{alive, run};
use crate::topology::{HOST_LINK, PREFIX};
use crate::{LabError, LabOptions};

/// Removes every namespace, link, process and file of the lab. Returns
/// what it removed, in words; removing nothing is not an error.
pub fn down(opts: &LabOptions) -> Result<Vec<String>, LabError> {
    let mut removed = Vec::new();
    let state = LabState::load(&opts.state_dir).ok().flatten();

    let namespaces: Vec<String> = run("ip", &["netns", "list"])?
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{PREFIX}-")))
        .map(str::to_string)
        .collect();
    // Kill first (agents would restart their children), then delete.
    for ns in &namespaces {
        if let Ok(pids) = run("ip", &["netns", "pids", ns]) {
            for pid in pids.split_whitespace() {
                let _ = run("kill", &["-9", pid]);
            }
        }
    }
    // margay-controllers and kube-apiserver before etcd.
    if let Some(k) = state.as_ref().and_then(|s| s.kube.as_ref()) {
        if let Some(pid) = k.controllers_pid {
            kill_if_ours(
                pid,
                "margay-controllers",
                &opts.state_dir,
                &mut removed,
            );
        }
        kill_if_ours(
            k.apiserver_pid,
            "kube-apiserver",
            &opts.state_dir,
            &mut removed,
        );
    }
    // Only kube-apiserver names its --cert-dir there.
    for pid in pids_with_arg(&opts.state_dir.join("kube/certs")) {
        kill_if_ours(pid, "kube-apiserver", &opts.state_dir, &mut removed);
    }
    if let Some(pid) = state.as_ref().and_then(|s| s.etcd_pid) {
        kill_if_ours(pid, "etcd", &opts.state_dir, &mut removed);
    }
    // An etcd whose state file was lost is still recognisable by its data
    // directory inside the state dir.
    for pid in pids_with_arg(&opts.state_dir.join("etcd")) {
        kill_if_ours(pid, "etcd", &opts.state_dir, &mut removed);
    }
    for ns in &namespaces {
        run("ip", &["netns", "del", ns])?;
        removed.push(format!("netns {ns}"));
    }
    if run("ip", &["link", "show", HOST_LINK]).is_ok() {
        run("ip", &["link", "del", HOST_LINK])?;
        removed.push(format!("link {HOST_LINK}"));
    }
    if let Some(s) = &state {
        removed.extend(crate::neigh::restore(&s.raised_sysctls));
    }
    if opts.state_dir.exists() {
        std::fs::remove_dir_all(&opts.state_dir).map_err(|e| LabError::Io {
            what: format!("removing {}", opts.state_dir.display()),
            source: e,
        })?;
        removed.push(format!("directory {}", opts.state_dir.display()));
    }
    Ok(removed)
}

fn kill_if_ours(
    pid: u32,
    what: &str,
    state_dir: &Path,
    removed: &mut Vec<String>,
) {
    let cmdline =
        std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline);
    if !alive(pid) || !cmdline.contains(&*state_dir.to_string_lossy()) {
        return;
    }
    let _ = run("kill", &["-9", &pid.to_string()]);
    for _ in 0..50 {
        if !alive(pid) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    removed.push(format!("process {pid} ({what})"));
}

/// Pids whose command line has an argument mentioning `path`.
fn pids_with_arg(path: &Path) -> Vec<u32> {
    let needle = path.to_string_lossy().into_owned();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                .unwrap_or(false)
        })
        .collect()
}
