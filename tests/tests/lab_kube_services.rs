//! Service addresses over BGP in the Kubernetes lab (issue 15, section 1):
//! Services of each kind, EndpointSlices written by hand (no
//! controller-manager runs), and what the BIRD ToR learns from which node;
//! then, as kube-proxy would, one DNAT rule on one node and a TCP
//! connection from the ToR to a pod through the Service address.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use margay_lab::topology::TOR_NS;
use margay_lab::{Family, LabDatastore, LabOptions, LabState, PeeringMode};
use margay_tests::LabGuard;

const CLUSTER_RANGE: &str = "10.96.0.0/24";
const EXTERNAL_RANGE: &str = "192.0.2.0/24";
const LB_RANGE: &str = "203.0.113.0/24";

/// Prefix -> the next hops (node addresses) the ToR has for it.
type Learned = BTreeMap<String, BTreeSet<String>>;

fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(margay_testkit::kubectl_path())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs (scripts/deps --kube builds it)");
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every route the ToR's BIRD holds inside the service ranges, best or
/// not, with its next hop (`birdc show route`).
fn tor_service_routes(socket: &Path) -> Learned {
    let text = birdc(socket, &["show", "route"]);
    let ranges: Vec<ipnetwork::IpNetwork> =
        [CLUSTER_RANGE, EXTERNAL_RANGE, LB_RANGE]
            .iter()
            .map(|r| r.parse().unwrap())
            .collect();
    let mut learned = Learned::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) {
            current = line
                .split_whitespace()
                .next()
                .filter(|t| t.contains('/'))
                .map(str::to_string);
            continue;
        }
        let t = line.trim_start();
        let (Some(prefix), Some(rest)) = (&current, t.strip_prefix("via "))
        else {
            continue;
        };
        let Ok(net) = prefix.parse::<ipnetwork::IpNetwork>() else {
            continue;
        };
        if !ranges
            .iter()
            .any(|r| r.contains(net.network()) && r.prefix() <= net.prefix())
        {
            continue;
        }
        let hop = rest.split_whitespace().next().unwrap_or("").to_string();
        learned.entry(prefix.clone()).or_default().insert(hop);
    }
    learned
}

/// Waits until the ToR's service routes are `want`; the time it took.
async fn wait_for(socket: &Path, want: &Learned, what: &str) -> Duration {
    let start = Instant::now();
    loop {
        let got = tor_service_routes(socket);
        if &got == want {
            return start.elapsed();
        }
        if start.elapsed() > Duration::from_secs(30) {
            panic!(
                "{what}: the ToR did not converge in 30 s\nwant {want:#?}\ngot  {got:#?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn expect(list: &[(&str, &[&str])]) -> Learned {
    list.iter()
        .map(|(p, hops)| {
            (p.to_string(), hops.iter().map(|h| h.to_string()).collect())
        })
        .collect()
}

/// An EndpointSlice of Service `svc` with one ready endpoint `ip` on
/// `node`.
fn slice(name: &str, svc: &str, ip: &str, node: &str) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  \
         name: {name}\n  namespace: default\n  labels:\n    \
         kubernetes.io/service-name: {svc}\naddressType: IPv4\nports:\n- \
         name: http\n  port: 8080\n  protocol: TCP\nendpoints:\n- addresses: \
         [\"{ip}\"]\n  nodeName: {node}\n  conditions: {{ready: true}}\n"
    )
}

const SERVICES: &str = "\
apiVersion: v1
kind: Service
metadata: {name: plain, namespace: default}
spec:
  clusterIP: 10.96.0.40
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: local, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.96.0.50
  externalTrafficPolicy: Local
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.96.0.51
  externalTrafficPolicy: Local
  externalIPs: [192.0.2.10]
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: lb, namespace: default}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.52
  ports: [{name: http, port: 80, targetPort: 8080}]
";

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_lab_advertises_service_addresses() {
    if !margay_testkit::require_root("kubernetes_lab_services") {
        return;
    }
    margay_testkit::kube_apiserver_binary("kubernetes_lab_services");
    let state = tempfile::tempdir().unwrap();
    let opts = LabOptions {
        nodes: 3,
        pods_per_node: 1,
        mode: PeeringMode::Mesh,
        route_reflectors: 1,
        family: Family::V4,
        bin_dir: margay_tests::bin_dir(),
        state_dir: state.path().join("lab"),
        datastore: LabDatastore::Kubernetes,
        deploy_dir: margay_testkit::deploy_dir(),
    };
    let _guard = LabGuard(opts.clone());
    let summary = margay_lab::up(&opts).await.expect("kubernetes lab up");
    assert!(summary.ok, "lab failed its proofs:\n{}", summary.report);
    let lab = LabState::load(&opts.state_dir).unwrap().expect("lab state");
    let kube = lab.kube.clone().expect("a kubernetes lab");
    let admin = kube.admin_kubeconfig.as_path();
    let tor = lab.tor_socket.as_path();
    let addr = |node: &str| -> String {
        let n = lab.nodes.iter().find(|n| n.name == node).unwrap();
        n.address.split('/').next().unwrap().to_string()
    };
    let (n1, n2, n3) = (addr("node1"), addr("node2"), addr("node3"));
    let all: &[&str] = &[&n1, &n2, &n3];
    let only1: &[&str] = &[&n1];
    let only2: &[&str] = &[&n2];
    let pod =
        |node: &str| lab.pods.iter().find(|p| p.node == node).unwrap().clone();
    let pod_ip =
        |node: &str| pod(node).ips[0].split('/').next().unwrap().to_string();

    // margay-node (bgpd's identity) may list and watch Services and
    // EndpointSlices, and do nothing else with them.
    for (verb, resource, allowed) in [
        ("list", "services", true),
        ("watch", "services", true),
        ("list", "endpointslices.discovery.k8s.io", true),
        ("watch", "endpointslices.discovery.k8s.io", true),
        ("get", "services", false),
        ("update", "services", false),
        ("get", "endpointslices.discovery.k8s.io", false),
        ("create", "endpointslices.discovery.k8s.io", false),
    ] {
        let out = Command::new(margay_testkit::kubectl_path())
            .arg("--kubeconfig")
            .arg(&kube.node_kubeconfig)
            .args(["auth", "can-i", verb, resource, "--all-namespaces"])
            .output()
            .unwrap();
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(
            answer,
            if allowed { "yes" } else { "no" },
            "margay-node: can-i {verb} {resource}"
        );
    }

    // Before any service range is configured: nothing of it.
    assert_eq!(tor_service_routes(tor), Learned::new());

    kubectl(admin, &["apply", "-f", "-"], Some(SERVICES));
    kubectl(
        admin,
        &[
            "patch",
            "service",
            "lb",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"loadBalancer":{"ingress":[{"ip":"203.0.113.7"},{"ip":"198.18.0.7"}]}}}"#,
        ],
        None,
    );
    let slices = [
        slice("local-1", "local", &pod_ip("node1"), "node1"),
        slice("ext-1", "ext", &pod_ip("node2"), "node2"),
        slice("lb-1", "lb", &pod_ip("node3"), "node3"),
    ]
    .join("---\n");
    kubectl(admin, &["apply", "-f", "-"], Some(&slices));
    kubectl(
        admin,
        &[
            "patch",
            "bgpconfiguration",
            "default",
            "--type=merge",
            "-p",
            &format!(
                r#"{{"spec":{{"serviceClusterIPs":[{{"cidr":"{CLUSTER_RANGE}"}}],"serviceExternalIPs":[{{"cidr":"{EXTERNAL_RANGE}"}}],"serviceLoadBalancerIPs":[{{"cidr":"{LB_RANGE}"}}]}}}}"#
            ),
        ],
        None,
    );

    // Every node announces the three ranges; the Local Services' addresses
    // come only from the node holding their endpoint; the Cluster
    // Services (plain, lb) are covered by the ranges (aggregation
    // Enabled, the default); 198.18.0.7 is outside every range.
    let base = [(CLUSTER_RANGE, all), (EXTERNAL_RANGE, all), (LB_RANGE, all)];
    let mut want: Vec<(&str, &[&str])> = base.to_vec();
    want.extend([
        ("10.96.0.50/32", only1),
        ("10.96.0.51/32", only2),
        ("192.0.2.10/32", only2),
    ]);
    wait_for(tor, &expect(&want), "services created").await;
    // No node programs a Service route into its FIB (kube-proxy handles
    // those addresses on every node; Calico's /rejectcidrs): nodes do not
    // import each other's (import accepts pool prefixes only).
    for n in &lab.nodes {
        let out = Command::new("ip")
            .args(["-n", &n.netns, "route", "show", "table", "main"])
            .output()
            .unwrap();
        let fib = String::from_utf8_lossy(&out.stdout).into_owned();
        for svc in ["10.96.0.", "192.0.2.", "203.0.113."] {
            assert!(
                !fib.lines().any(|l| l.starts_with(svc)),
                "{} programmed a Service route:\n{fib}",
                n.name
            );
        }
    }

    // The endpoint of `local` moves from node1 to node2: the /32 follows.
    kubectl(
        admin,
        &["apply", "-f", "-"],
        Some(&slice("local-1", "local", &pod_ip("node2"), "node2")),
    );
    let mut moved = want.clone();
    moved[3] = ("10.96.0.50/32", only2);
    let took = wait_for(tor, &expect(&moved), "endpoint moved").await;
    eprintln!("the /32 moved from node1 to node2 at the ToR in {took:?}");
    assert!(
        took < Duration::from_secs(1),
        "the /32 took {took:?} to move (issue 15: within a second)"
    );

    // As kube-proxy would on node2: the external IP of `ext`, port 80,
    // DNATed to its endpoint (node2's pod) on 8080. A client on the ToR
    // reaches the pod through the Service address.
    let node2 = lab.nodes.iter().find(|n| n.name == "node2").unwrap();
    let rules = format!(
        "table ip mglab_svc {{\n  chain prerouting {{\n    type nat hook \
         prerouting priority dstnat; policy accept;\n    ip daddr 192.0.2.10 \
         tcp dport 80 dnat to {}:8080\n  }}\n}}\n",
        pod_ip("node2")
    );
    let mut nft = Command::new("ip")
        .args(["netns", "exec", &node2.netns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("nft runs");
    nft.stdin
        .take()
        .unwrap()
        .write_all(rules.as_bytes())
        .unwrap();
    assert!(nft.wait().unwrap().success(), "nft -f:\n{rules}");
    let listen =
        SocketAddr::new(pod_ip("node2").parse::<IpAddr>().unwrap(), 8080);
    let service = SocketAddr::new("192.0.2.10".parse().unwrap(), 80);
    margay_lab::tcp_via(TOR_NS, &pod("node2").netns, listen, service)
        .expect("a TCP connection from the ToR reaches node2's pod through 192.0.2.10:80");

    // Aggregation Disabled: the LoadBalancer range is withdrawn and each
    // Cluster Service with a ready endpoint anywhere is announced as /32s
    // from every node: lb (its cluster IP and its status IP inside the
    // range), and the apiserver's own `kubernetes` Service when it has an
    // EndpointSlice; plain has no endpoint and stays unannounced.
    kubectl(
        admin,
        &[
            "patch",
            "bgpconfiguration",
            "default",
            "--type=merge",
            "-p",
            r#"{"spec":{"serviceLoadBalancerAggregation":"Disabled"}}"#,
        ],
        None,
    );
    let mut disabled: Vec<(&str, &[&str])> = moved
        .iter()
        .filter(|(p, _)| *p != LB_RANGE)
        .cloned()
        .collect();
    disabled.extend([("10.96.0.52/32", all), ("203.0.113.7/32", all)]);
    let kubernetes_slices = kubectl(
        admin,
        &[
            "get",
            "endpointslices",
            "-n",
            "default",
            "-l",
            "kubernetes.io/service-name=kubernetes",
            "-o",
            "name",
        ],
        None,
    );
    if !kubernetes_slices.trim().is_empty() {
        disabled.push(("10.96.0.1/32", all));
    }
    wait_for(tor, &expect(&disabled), "aggregation disabled").await;

    // `local` deleted: the ToR forgets its /32; the rest stays.
    kubectl(admin, &["delete", "service", "local"], None);
    let gone: Vec<(&str, &[&str])> = disabled
        .iter()
        .filter(|(p, _)| *p != "10.96.0.50/32")
        .cloned()
        .collect();
    wait_for(tor, &expect(&gone), "service deleted").await;

    // They are this node's routes for export like the blocks: a
    // prefixAdvertisements community is attached ...
    kubectl(
        admin,
        &[
            "patch",
            "bgpconfiguration",
            "default",
            "--type=merge",
            "-p",
            r#"{"spec":{"communities":[{"name":"svc","value":"65000:100"}],"prefixAdvertisements":[{"cidr":"10.96.0.0/24","communities":["svc"]}]}}"#,
        ],
        None,
    );
    let start = Instant::now();
    loop {
        let all_attrs = birdc(tor, &["show", "route", "10.96.0.51/32", "all"]);
        if all_attrs.contains("BGP.community: (65000,100)") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no community on 10.96.0.51/32 at the ToR:\n{all_attrs}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ... and a BGPFilter export rule on the ToR peer rejects the
    // external range and everything inside it.
    kubectl(
        admin,
        &["apply", "-f", "-"],
        Some(
            "apiVersion: margay.io/v1\nkind: BGPFilter\nmetadata: {name: \
             no-external}\nspec:\n  exportV4:\n  - {cidr: 192.0.2.0/24, \
             matchOperator: In, action: Reject}\n",
        ),
    );
    kubectl(
        admin,
        &[
            "patch",
            "bgppeer",
            "tor",
            "--type=merge",
            "-p",
            r#"{"spec":{"filters":["no-external"]}}"#,
        ],
        None,
    );
    let filtered: Vec<(&str, &[&str])> = gone
        .iter()
        .filter(|(p, _)| !p.starts_with("192.0.2."))
        .cloned()
        .collect();
    wait_for(tor, &expect(&filtered), "export filter").await;
}

fn birdc(socket: &Path, args: &[&str]) -> String {
    let out = Command::new("birdc")
        .arg("-s")
        .arg(socket)
        .args(args)
        .output()
        .expect("birdc runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
