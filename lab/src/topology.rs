//! The lab's shape as pure data: names, addresses, the ToR's BIRD config
//! and the resources written into the datastore. Nothing here touches the
//! system, so all of it is unit-tested.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// How the nodes peer with each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeeringMode {
    /// iBGP full mesh between all nodes (Calico's default).
    Mesh,
    /// Nodes 1..=k (the topology's `route_reflectors`) are route
    /// reflectors of one cluster ID; the others are clients of every
    /// reflector; no mesh.
    RouteReflector,
}

/// Address families of the pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
    Dual,
}

impl Family {
    pub fn v4(self) -> bool {
        matches!(self, Family::V4 | Family::Dual)
    }
    pub fn v6(self) -> bool {
        matches!(self, Family::V6 | Family::Dual)
    }
}

/// Every name the lab creates starts with this, so `down` can find
/// leftovers of a failed `up` even without its state file.
pub const PREFIX: &str = "mglab";
/// The host end of the link into the fabric segment.
pub const HOST_LINK: &str = "mglab0";
pub const FABRIC_NS: &str = "mglab-fabric";
pub const TOR_NS: &str = "mglab-tor";
pub const NODE_AS: u32 = 64512;
pub const TOR_AS: u32 = 65000;
pub const ETCD_PORT: u16 = 23790;
/// kube-apiserver's port (Kubernetes-datastore labs), on the host address.
pub const KUBE_PORT: u16 = 26443;
/// The `topology.kubernetes.io/zone` label of the lab's Kubernetes Nodes.
pub const ZONE: &str = "lab-zone-a";
pub const POOL_V4: &str = "10.244.0.0/16";
pub const POOL_V6: &str = "fd44::/112";
/// A Manual pool of tiny blocks (4 addresses), used only by pods that name
/// it: a few pods on one node make it claim block after block.
pub const SMALL_BLOCKS_POOL: &str = "small-blocks";
pub const SMALL_BLOCKS_CIDR: &str = "10.246.0.0/24";
/// A Manual pool that is exactly one block: once a node holds it, every
/// other node asking for it must borrow an address (no strictAffinity).
pub const ONE_BLOCK_POOL: &str = "one-block";
pub const ONE_BLOCK_CIDR: &str = "10.247.0.0/30";
/// The node agent's health and metrics port (the DaemonSet's).
pub const HEALTH_PORT: u16 = 9099;
/// The route-reflector cluster ID in RR mode (Calico's docs use this one).
pub const RR_CLUSTER_ID: &str = "244.0.0.1";

/// Fabric addresses: hosts on one /24 (and /64).
pub fn tor_v4() -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, 1)
}
pub fn host_v4() -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, 254)
}
pub fn tor_v6() -> Ipv6Addr {
    "fd77::1".parse().expect("literal")
}
pub fn host_v6() -> Ipv6Addr {
    "fd77::fe".parse().expect("literal")
}

/// One lab node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePlan {
    pub name: String,
    pub netns: String,
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
    pub route_reflector: bool,
}

/// One lab pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPlan {
    pub name: String,
    pub node: String,
    pub netns: String,
    pub container_id: String,
}

/// The whole lab.
#[derive(Debug, Clone)]
pub struct Topology {
    pub nodes: Vec<NodePlan>,
    pub pods: Vec<PodPlan>,
    pub mode: PeeringMode,
    pub family: Family,
    /// How many reflectors (nodes 1..=k) in RR mode.
    pub route_reflectors: usize,
}

impl Topology {
    pub fn new(
        nodes: usize,
        pods_per_node: usize,
        mode: PeeringMode,
        family: Family,
    ) -> Topology {
        let nodes: Vec<NodePlan> = (1..=nodes)
            .map(|i| NodePlan {
                name: format!("node{i}"),
                netns: format!("{PREFIX}-node{i}"),
                v4: Ipv4Addr::new(10, 77, 0, 10 + i as u8),
                v6: Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 0x10 + i as u16),
                route_reflector: mode == PeeringMode::RouteReflector && i == 1,
            })
            .collect();
        let pods = nodes
            .iter()
            .flat_map(|n| {
                (1..=pods_per_node).map(move |j| PodPlan {
                    name: format!("{}-pod{j}", n.name),
                    node: n.name.clone(),
                    netns: format!("{}-pod{j}", n.netns),
                    container_id: format!("lab-{}-pod{j}", n.name),
                })
            })
            .collect();
        Topology {
            nodes,
            pods,
            mode,
            family,
            route_reflectors: usize::from(mode == PeeringMode::RouteReflector),
        }
    }

    /// Makes nodes 1..=`k` reflectors of the one cluster ID
    /// ([`RR_CLUSTER_ID`]): Calico's docs advise two per cluster ID, so
    /// that the clients, peering with every reflector, keep their routes
    /// while one is down. Only meaningful in RR mode.
    pub fn with_route_reflectors(mut self, k: usize) -> Topology {
        if self.mode == PeeringMode::RouteReflector {
            self.route_reflectors = k;
            for (i, n) in self.nodes.iter_mut().enumerate() {
                n.route_reflector = i < k;
            }
        }
        self
    }

    pub fn etcd_endpoint(&self) -> String {
        format!("http://{}:{ETCD_PORT}", host_v4())
    }

    /// The BIRD configuration of the ToR: one eBGP session per node and
    /// family (as margay's BGPPeers), all routes learned installed into
    /// the ToR's kernel table.
    pub fn tor_bird_conf(&self, log_path: &str) -> String {
        let mut c = String::new();
        let _ = writeln!(c, "# margay lab ToR (generated)");
        let _ = writeln!(c, "router id {};", tor_v4());
        let _ = writeln!(c, "log \"{log_path}\" all;");
        let _ = writeln!(c, "protocol device {{ scan time 10; }}");
        for (fam, on) in
            [("ipv4", self.family.v4()), ("ipv6", self.family.v6())]
        {
            if on {
                let _ = writeln!(
                    c,
                    "protocol kernel kernel_{fam} {{ merge paths on; \
                     {fam} {{ import none; export all; }}; }}"
                );
            }
        }
        for n in &self.nodes {
            for (fam, on, local, peer) in [
                (
                    "ipv4",
                    self.family.v4(),
                    IpAddr::V4(tor_v4()),
                    IpAddr::V4(n.v4),
                ),
                (
                    "ipv6",
                    self.family.v6(),
                    IpAddr::V6(tor_v6()),
                    IpAddr::V6(n.v6),
                ),
            ] {
                if !on {
                    continue;
                }
                let _ = writeln!(
                    c,
                    "protocol bgp {name}_{fam} {{\n  local {local} as {TOR_AS};\n  \
                     neighbor {peer} as {NODE_AS};\n  hold time 9;\n  \
                     {fam} {{ import all; export none; }};",
                    name = n.name,
                );
                let _ = writeln!(c, "}}");
            }
        }
        c
    }

    /// The resources the lab applies: BGPConfiguration, IPPool(s) and the
    /// BGPPeers (ToR for everyone; route reflector in RR mode), as YAML a
    /// user would write.
    pub fn resources_yaml(&self) -> String {
        let mut y = String::new();
        let mesh = self.mode == PeeringMode::Mesh;
        let _ = write!(
            y,
            "apiVersion: margay.io/v1\nkind: BGPConfiguration\nmetadata:\n  \
             name: default\nspec:\n  asNumber: {NODE_AS}\n  \
             nodeToNodeMeshEnabled: {mesh}\n  logSeverityScreen: Info\n"
        );
        if self.family.v4() {
            let _ = write!(
                y,
                "---\napiVersion: margay.io/v1\nkind: IPPool\nmetadata:\n  \
                 name: default-ipv4\nspec:\n  cidr: {POOL_V4}\n  blockSize: 26\n  \
                 nodeSelector: all()\n"
            );
        }
        if self.family.v4() {
            for (name, cidr) in [
                (SMALL_BLOCKS_POOL, SMALL_BLOCKS_CIDR),
                (ONE_BLOCK_POOL, ONE_BLOCK_CIDR),
            ] {
                let _ = write!(
                    y,
                    "---\napiVersion: margay.io/v1\nkind: IPPool\nmetadata:\n  \
                     name: {name}\nspec:\n  cidr: {cidr}\n  blockSize: 30\n  \
                     nodeSelector: all()\n  assignmentMode: Manual\n"
                );
            }
        }
        if self.family.v6() {
            let _ = write!(
                y,
                "---\napiVersion: margay.io/v1\nkind: IPPool\nmetadata:\n  \
                 name: default-ipv6\nspec:\n  cidr: {POOL_V6}\n  blockSize: 122\n  \
                 nodeSelector: all()\n"
            );
        }
        // One ToR session per family, as Calico peers: a session carries
        // the routes of its peer address's family only.
        let mut tors = Vec::new();
        if self.family.v4() {
            tors.push(("tor", IpAddr::V4(tor_v4())));
        }
        if self.family.v6() {
            let name = if tors.is_empty() { "tor" } else { "tor-v6" };
            tors.push((name, IpAddr::V6(tor_v6())));
        }
        for (name, tor) in tors {
            let _ = write!(
                y,
                "---\napiVersion: margay.io/v1\nkind: BGPPeer\nmetadata:\n  \
                 name: {name}\nspec:\n  peerIP: \"{tor}\"\n  asNumber: {TOR_AS}\n"
            );
        }
        if !mesh {
            let _ = write!(
                y,
                "---\napiVersion: margay.io/v1\nkind: BGPPeer\nmetadata:\n  \
                 name: peer-with-route-reflectors\nspec:\n  nodeSelector: all()\n  \
                 peerSelector: route-reflector == 'true'\n"
            );
        }
        y
    }

    /// The CNI network configuration for pods of `node`; `ipv4_pools`
    /// (IPPool names) restricts the IPv4 address to those pools.
    /// The plugin's network config for a pod on `node`, whose agent runs
    /// with `run_dir` (its endpoint records and CNI socket are there).
    pub fn cni_config(
        &self,
        node: &str,
        run_dir: &Path,
        ipv4_pools: &[&str],
    ) -> serde_json::Value {
        let mut c = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "k8s-pod-network",
            "type": "margay",
            "nodename": node,
            "datastore_type": "etcdv3",
            "etcd_endpoints": self.etcd_endpoint(),
            "mtu": 1500,
            "log_level": "info",
            "endpoint_dir": run_dir.join("endpoints"),
            "agent_socket": run_dir.join("cni.sock"),
            "ipam": {
                "type": "margay-ipam",
                "assign_ipv4": if self.family.v4() { "true" } else { "false" },
                "assign_ipv6": if self.family.v6() { "true" } else { "false" },
            },
        });
        if !ipv4_pools.is_empty() {
            c["ipam"]["ipv4_pools"] = serde_json::json!(ipv4_pools);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_node_mesh_plan() {
        let t = Topology::new(3, 2, PeeringMode::Mesh, Family::V4);
        assert_eq!(t.nodes.len(), 3);
        assert_eq!(t.pods.len(), 6);
        assert_eq!(t.nodes[2].v4.to_string(), "10.77.0.13");
        assert_eq!(t.pods[3].netns, "mglab-node2-pod2");
        assert!(t.nodes.iter().all(|n| !n.route_reflector));
        assert!(t.nodes.iter().all(|n| n.netns.starts_with(PREFIX)));
        let conf = t.tor_bird_conf("/tmp/x.log");
        assert!(conf.contains("neighbor 10.77.0.12 as 64512;"), "{conf}");
        assert_eq!(conf.matches("protocol bgp").count(), 3);
    }

    #[test]
    fn resources_parse_and_validate() {
        for (mode, fam) in [
            (PeeringMode::Mesh, Family::V4),
            (PeeringMode::RouteReflector, Family::Dual),
        ] {
            let t = Topology::new(2, 1, mode, fam);
            let docs = margay_crds::parse_documents(&t.resources_yaml())
                .expect("lab resources parse");
            margay_crds::validate_set(&docs).expect("lab resources validate");
        }
    }

    #[test]
    fn dual_stack_peers_the_tor_once_per_family() {
        let t = Topology::new(2, 1, PeeringMode::Mesh, Family::Dual);
        let conf = t.tor_bird_conf("/tmp/x.log");
        assert!(conf.contains("protocol bgp node1_ipv4 {"), "{conf}");
        assert!(conf.contains("neighbor fd77::12 as 64512;"), "{conf}");
        assert_eq!(conf.matches("protocol bgp").count(), 4, "{conf}");
        // No IPv6 channel on an IPv4 session: margay does not offer one.
        let v4_session = conf
            .split("protocol bgp")
            .find(|p| p.contains("node1_ipv4"))
            .unwrap();
        assert!(!v4_session.contains("ipv6 {"), "{v4_session}");
        let y = t.resources_yaml();
        assert!(y.contains("name: tor\n"), "{y}");
        assert!(
            y.contains("name: tor-v6\nspec:\n  peerIP: \"fd77::1\""),
            "{y}"
        );
        let v6 = Topology::new(2, 1, PeeringMode::Mesh, Family::V6);
        assert!(v6.resources_yaml().contains("peerIP: \"fd77::1\""));
        assert!(!v6.resources_yaml().contains("tor-v6"));
    }

    #[test]
    fn lab_pools_are_manual_and_named_by_pods_only() {
        let t = Topology::new(2, 1, PeeringMode::Mesh, Family::V4);
        let docs = margay_crds::parse_documents(&t.resources_yaml()).unwrap();
        let manual: Vec<String> = docs
            .iter()
            .filter_map(|d| match d {
                margay_crds::AnyResource::IPPool(p)
                    if p.spec.assignment_mode()
                        == margay_crds::AssignmentMode::Manual =>
                {
                    p.metadata.name.clone()
                }
                _ => None,
            })
            .collect();
        assert_eq!(manual, vec![SMALL_BLOCKS_POOL, ONE_BLOCK_POOL]);
        let c = t.cni_config("node1", Path::new("/x"), &[ONE_BLOCK_POOL]);
        assert_eq!(c["ipam"]["ipv4_pools"][0], ONE_BLOCK_POOL);
        assert_eq!(c["agent_socket"], "/x/cni.sock");
        assert_eq!(c["endpoint_dir"], "/x/endpoints");
        assert!(
            t.cni_config("node1", Path::new("/x"), &[])["ipam"]
                .get("ipv4_pools")
                .is_none()
        );
    }

    #[test]
    fn route_reflector_mode_marks_node1_and_disables_mesh() {
        let t = Topology::new(5, 1, PeeringMode::RouteReflector, Family::V4);
        assert!(t.nodes[0].route_reflector);
        assert!(t.nodes[1..].iter().all(|n| !n.route_reflector));
        let y = t.resources_yaml();
        assert!(y.contains("nodeToNodeMeshEnabled: false"));
        assert!(y.contains("peerSelector: route-reflector == 'true'"));
    }

    #[test]
    fn two_route_reflectors_are_nodes_1_and_2() {
        let t = Topology::new(5, 1, PeeringMode::RouteReflector, Family::V4)
            .with_route_reflectors(2);
        let rrs: Vec<&str> = t
            .nodes
            .iter()
            .filter(|n| n.route_reflector)
            .map(|n| n.name.as_str())
            .collect();
        assert_eq!(rrs, ["node1", "node2"]);
        assert_eq!(t.route_reflectors, 2);
        // Mesh mode has no reflectors, whatever is asked.
        let m = Topology::new(3, 1, PeeringMode::Mesh, Family::V4)
            .with_route_reflectors(2);
        assert!(m.nodes.iter().all(|n| !n.route_reflector));
    }
}
