//! What a kubectl user sees of margay's CRDs on a real kube-apiserver
//! (testkit's, built by `scripts/deps --kube`): `kubectl apply` of
//! deploy/crds/ and deploy/ prints no warning, the short names resolve and
//! `kubectl get` prints the printer columns.

use std::path::Path;
use std::process::Command;

use margay_testkit::{KubeApiServer, deploy_dir, kubectl_path};

/// Runs kubectl with `kubeconfig`; returns (stdout, stderr) of a success.
fn kubectl(
    kubeconfig: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> (String, String) {
    use std::io::Write as _;
    let mut child = Command::new(kubectl_path())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl runs (scripts/deps --kube builds it)");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "kubectl {args:?}: {stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_is_silent_and_get_shows_columns() {
    margay_testkit::kube_apiserver_binary("kubectl_apply_is_silent");
    let server = KubeApiServer::start().await.expect("kube-apiserver starts");
    let kc = server.admin_kubeconfig();
    let deploy = deploy_dir();
    let crds = deploy.join("crds").display().to_string();
    let all = deploy.display().to_string();
    // No warning: no `format: uint*`, no unknown fields, nothing deprecated.
    for args in [
        vec!["apply", "-f", crds.as_str()],
        vec![
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=60s",
        ],
        vec!["apply", "-f", all.as_str()],
    ] {
        let (_, stderr) = kubectl(&kc, &args, None);
        assert_eq!(stderr, "", "kubectl {args:?} warned");
    }

    let pool = "apiVersion: margay.io/v1\nkind: IPPool\n\
                metadata: {name: pods}\n\
                spec: {cidr: 10.244.0.0/16, blockSize: 26}\n---\n\
                apiVersion: margay.io/v1\nkind: BGPPeer\n\
                metadata: {name: tor}\n\
                spec: {peerIP: 192.0.2.1, asNumber: 65001, node: node1}\n";
    let (_, stderr) = kubectl(&kc, &["apply", "-f", "-"], Some(pool));
    assert_eq!(stderr, "");
    // Short names resolve; the columns are Calico users' first questions.
    let (out, _) = kubectl(&kc, &["get", "ipp"], None);
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["NAME", "CIDR", "BLOCKSIZE", "DISABLED", "AGE"],
        "{out}"
    );
    assert_eq!(
        lines[1][..4],
        ["pods", "10.244.0.0/16", "26", "false"],
        "{out}"
    );
    let (out, _) = kubectl(&kc, &["get", "bgpp"], None);
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["NAME", "PEERIP", "ASNUMBER", "NODE", "AGE"],
        "{out}"
    );
    assert_eq!(
        lines[1][..4],
        ["tor", "192.0.2.1", "65001", "node1"],
        "{out}"
    );
    // Every kind has a short name kubectl resolves.
    for short in [
        "ipp",
        "bgpp",
        "bgpconfig",
        "bgpf",
        "mgnode",
        "ipamb",
        "blockaff",
        "ipamh",
        "ipamc",
        "ipr",
    ] {
        let (_, stderr) = kubectl(&kc, &["get", short], None);
        assert!(
            stderr.is_empty() || stderr.starts_with("No resources found"),
            "kubectl get {short}: {stderr}"
        );
    }
}
