//! The ToR router: BIRD in its own namespace on the fabric segment,
//! peering eBGP with every node and installing what it learns.

use std::path::Path;

use crate::LabError;
use crate::segment::attach;
use crate::sys::{mkdir, ns_run, run, spawn_detached};
use crate::topology::{self, TOR_NS, Topology};

/// Starts BIRD for the ToR; returns its pid.
pub(crate) fn start(topo: &Topology, dir: &Path) -> Result<u32, LabError> {
    run("ip", &["netns", "add", TOR_NS])?;
    ns_run(TOR_NS, &["ip", "link", "set", "lo", "up"])?;
    attach("eth0", Some(TOR_NS), &format!("{}/24", topology::tor_v4()))?;
    if topo.family.v6() {
        ns_run(
            TOR_NS,
            &[
                "ip",
                "addr",
                "add",
                &format!("{}/64", topology::tor_v6()),
                "dev",
                "eth0",
                "nodad",
            ],
        )?;
    }
    for s in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
        ns_run(TOR_NS, &["sysctl", "-qw", s])?;
    }
    let tor_dir = dir.join("tor");
    mkdir(&tor_dir)?;
    let conf = tor_dir.join("bird.conf");
    let text =
        topo.tor_bird_conf(&tor_dir.join("bird.log").display().to_string());
    std::fs::write(&conf, text).map_err(|e| LabError::Io {
        what: format!("writing {}", conf.display()),
        source: e,
    })?;
    let args = vec![
        "-f".to_string(),
        "-c".to_string(),
        conf.display().to_string(),
        "-s".to_string(),
        tor_dir.join("bird.ctl").display().to_string(),
        "-P".to_string(),
        tor_dir.join("bird.pid").display().to_string(),
    ];
    spawn_detached(
        Some(TOR_NS),
        Path::new("bird"),
        &args,
        &dir.join("logs/tor.log"),
    )
}
