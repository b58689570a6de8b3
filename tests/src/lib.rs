//! Cross-crate tests of the whole fabric (see `tests/`), and helpers they
//! share.

use std::path::PathBuf;
use std::process::Command;

use margay_lab::{LabOptions, LabState};

/// The directory holding the workspace's binaries of this build profile
/// (`target/debug` for `cargo test`): integration test executables live in
/// `target/<profile>/deps`.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_path_buf()
}

/// Tears a lab down when dropped, also when a test panics.
pub struct LabGuard(pub LabOptions);

impl Drop for LabGuard {
    fn drop(&mut self) {
        if let Err(e) = margay_lab::down(&self.0) {
            eprintln!("lab down failed: {e}");
        }
    }
}

/// Brings a lab up and requires its proofs to pass; the guard removes it.
pub async fn lab_up(opts: &LabOptions) -> (LabGuard, LabState) {
    let guard = LabGuard(opts.clone());
    let summary = margay_lab::up(opts).await.expect("lab up");
    assert!(summary.ok, "lab failed its proofs:\n{}", summary.report);
    let state = LabState::load(&opts.state_dir)
        .expect("lab state readable")
        .expect("lab state written by up");
    (guard, state)
}

/// Pids of processes named `comm` inside network namespace `netns`.
pub fn pids_named(netns: &str, comm: &str) -> Vec<u32> {
    let out = Command::new("ip")
        .args(["netns", "pids", netns])
        .output()
        .expect("ip netns pids");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|p: &u32| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|c| c.trim() == comm)
        })
        .collect()
}
