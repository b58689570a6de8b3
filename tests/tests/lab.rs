//! The lab end to end: the README's main job, in CI.
//!
//! One test function runs the scenarios in sequence because every lab uses
//! the same `mglab-*` names.

use margay_lab::{Family, LabOptions, PeeringMode};

fn options(
    state: &tempfile::TempDir,
    nodes: usize,
    mode: PeeringMode,
) -> LabOptions {
    LabOptions {
        nodes,
        pods_per_node: 2,
        mode,
        family: Family::V4,
        bin_dir: margay_tests::bin_dir(),
        state_dir: state.path().join("lab"),
    }
}

/// Tears the lab down even when an assertion fails.
struct Down(LabOptions);

impl Drop for Down {
    fn drop(&mut self) {
        if let Err(e) = margay_lab::down(&self.0) {
            eprintln!("lab down failed: {e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_mesh_then_route_reflector() {
    if !margay_testkit::require_root("lab_mesh_then_route_reflector") {
        return;
    }
    let state = tempfile::tempdir().unwrap();

    // Three nodes in a full mesh, BIRD ToR, two pods each.
    let mesh = options(&state, 3, PeeringMode::Mesh);
    let guard = Down(mesh.clone());
    let summary = margay_lab::up(&mesh).await.expect("lab up (mesh)");
    assert!(
        summary.ok,
        "mesh lab failed its proofs:\n{}",
        summary.report
    );
    let status = margay_lab::status(&mesh).await.unwrap();
    assert!(status.contains("node3"), "{status}");
    drop(guard);
    assert!(
        !std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("mglab-"))
            .unwrap(),
        "lab down left namespaces behind"
    );

    // One route reflector and four clients, no mesh.
    let rr = options(&state, 5, PeeringMode::RouteReflector);
    let _guard = Down(rr.clone());
    let summary = margay_lab::up(&rr).await.expect("lab up (route reflector)");
    assert!(summary.ok, "RR lab failed its proofs:\n{}", summary.report);
}
