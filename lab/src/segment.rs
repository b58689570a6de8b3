//! The fabric segment: one bridge in its own namespace, the L2 network
//! every node, the ToR and the host attach to with a veth pair.

use crate::LabError;
use crate::sys::{ns_run, run};
use crate::topology::{self, FABRIC_NS, HOST_LINK, Topology};

/// Creates the bridge and the host's link into it: etcd listens on the
/// host's address, and the nodes reach it through this link.
pub(crate) fn create(topo: &Topology) -> Result<(), LabError> {
    run("ip", &["netns", "add", FABRIC_NS])?;
    ns_run(FABRIC_NS, &["ip", "link", "add", "br0", "type", "bridge"])?;
    ns_run(FABRIC_NS, &["ip", "link", "set", "br0", "up"])?;
    attach(HOST_LINK, None, &format!("{}/24", topology::host_v4()))?;
    if topo.family.v6() {
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/64", topology::host_v6()),
                "dev",
                HOST_LINK,
                "nodad",
            ],
        )?;
    }
    Ok(())
}

/// Connects `ifname` (in `netns`, or the host when None) to the fabric
/// bridge with address `cidr`.
pub(crate) fn attach(
    ifname: &str,
    netns: Option<&str>,
    cidr: &str,
) -> Result<(), LabError> {
    let port =
        format!("p-{}", netns.unwrap_or("host").trim_start_matches("mglab-"));
    let port: String = port.chars().take(15).collect();
    let mut args = vec!["link", "add", ifname];
    if let Some(ns) = netns {
        args.extend(["netns", ns]);
    }
    args.extend(["type", "veth", "peer", "name", &port, "netns", FABRIC_NS]);
    run("ip", &args)?;
    ns_run(
        FABRIC_NS,
        &["ip", "link", "set", &port, "master", "br0", "up"],
    )?;
    match netns {
        Some(ns) => {
            ns_run(ns, &["ip", "addr", "add", cidr, "dev", ifname])?;
            ns_run(ns, &["ip", "link", "set", ifname, "up"])?;
        }
        None => {
            run("ip", &["addr", "add", cidr, "dev", ifname])?;
            run("ip", &["link", "set", ifname, "up"])?;
        }
    }
    Ok(())
}
