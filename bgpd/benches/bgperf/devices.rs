//! The devices under test and how to start each one as a transit router:
//! AS 65000 at 10.0.0.1, accepting everything from the injector
//! (10.0.0.2, AS 65001) and re-advertising it to M monitors (10.0.0.3
//! and up, all AS 65002, all with the same export policy: what update
//! groups share). Every DUT is passive towards both (where it can be), the
//! tester connects; nothing listens on the tester side, so a DUT that
//! connects out anyway gets a reset and no connection collision.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use margay_testkit::{Netns, have_program};

pub const DUT: &str = "10.0.0.1";
pub const INJECTOR: &str = "10.0.0.2";
/// Monitors: at most this many (10.0.0.3 to 10.0.0.252).
pub const MAX_MONITORS: usize = 250;
pub const DUT_AS: u32 = 65000;
pub const INJECTOR_AS: u32 = 65001;
pub const MONITOR_AS: u32 = 65002;

/// The address of monitor `i` (0-based).
pub fn monitor_addr(i: usize) -> String {
    assert!(i < MAX_MONITORS, "at most {MAX_MONITORS} monitors");
    format!("10.0.0.{}", 3 + i)
}

const FRR_BGPD: &str = "/usr/lib/frr/bgpd";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Margay,
    Bird,
    Frr,
    Gobgp,
}

impl Device {
    pub const ALL: [Device; 4] =
        [Device::Margay, Device::Bird, Device::Frr, Device::Gobgp];

    pub fn name(self) -> &'static str {
        match self {
            Device::Margay => "margay",
            Device::Bird => "bird",
            Device::Frr => "frr",
            Device::Gobgp => "gobgp",
        }
    }

    pub fn parse(s: &str) -> Result<Device> {
        Device::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .with_context(|| {
                format!("unknown device {s:?}: use margay, bird, frr or gobgp")
            })
    }

    /// Why this device cannot run here, if it cannot.
    pub fn missing(self) -> Option<String> {
        let (prog, ok) = match self {
            Device::Margay => ("bgpd", margay_bin().exists()),
            Device::Bird => ("bird", have_program("bird")),
            Device::Frr => (FRR_BGPD, Path::new(FRR_BGPD).exists()),
            Device::Gobgp => ("gobgpd", have_program("gobgpd")),
        };
        (!ok).then(|| format!("{prog} not installed"))
    }

    /// Writes the configuration (with `monitors` monitor peers) into
    /// `dir` and starts the daemon inside `ns`; returns its pid (the
    /// daemon itself: `ip netns exec` execs it).
    pub fn start(self, ns: &Netns, dir: &Path, monitors: usize) -> Result<u32> {
        let cmd = match self {
            Device::Margay => margay(dir, monitors)?,
            Device::Bird => bird(dir, monitors)?,
            Device::Frr => frr(dir, monitors)?,
            Device::Gobgp => gobgp(dir, monitors)?,
        };
        ns.spawn(cmd)
            .with_context(|| format!("starting {}", self.name()))
    }
}

/// The bgpd binary given with `--bgpd` (another build, e.g. the one
/// before a change, to compare in the same run).
pub static MARGAY_BIN: std::sync::OnceLock<PathBuf> =
    std::sync::OnceLock::new();

/// The bgpd to run: `--bgpd`, else the one cargo built with this
/// (bench-profile) build.
fn margay_bin() -> PathBuf {
    MARGAY_BIN
        .get()
        .cloned()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_bgpd")))
}

fn margay(dir: &Path, monitors: usize) -> Result<Command> {
    let peer = |name: &str, ip: &str, asn: u32| {
        format!(
            "---\napiVersion: margay.io/v1\nkind: BGPPeer\nmetadata: {{name: {name}}}\n\
             spec: {{peerIP: \"{ip}\", asNumber: {asn}, filters: [accept-all]}}\n"
        )
    };
    let yaml = format!(
        r#"apiVersion: margay.io/v1
kind: Node
metadata: {{name: dut}}
spec: {{bgp: {{ipv4Address: {DUT}/24}}}}
---
apiVersion: margay.io/v1
kind: BGPConfiguration
metadata: {{name: default}}
spec: {{asNumber: {DUT_AS}, nodeToNodeMeshEnabled: false}}
---
apiVersion: margay.io/v1
kind: BGPFilter
metadata: {{name: accept-all}}
spec:
  importV4: [{{action: Accept}}]
  exportV4: [{{action: Accept}}]
{}{}"#,
        peer("injector", INJECTOR, INJECTOR_AS),
        (0..monitors)
            .map(|i| peer(&format!("monitor{i}"), &monitor_addr(i), MONITOR_AS))
            .collect::<String>()
    );
    let store = dir.join("store.yaml");
    std::fs::write(&store, yaml)?;
    let mut c = Command::new(margay_bin());
    c.arg("--datastore")
        .arg(format!("file:{}", store.display()))
        .args(["--node", "dut", "--log-level", "warn"])
        .arg("--control-socket")
        .arg(dir.join("bgpd.ctl"));
    Ok(c)
}

fn bird(dir: &Path, monitors: usize) -> Result<Command> {
    let monitor = |i: usize| {
        format!(
            r#"protocol bgp monitor{i} {{
  local {DUT} as {DUT_AS};
  neighbor {} as {MONITOR_AS};
  passive on;
  ipv4 {{ import none; export all; }};
}}
"#,
            monitor_addr(i)
        )
    };
    let mut conf = format!(
        r#"router id {DUT};
protocol device {{}}
protocol bgp injector {{
  local {DUT} as {DUT_AS};
  neighbor {INJECTOR} as {INJECTOR_AS};
  passive on;
  ipv4 {{ import all; export none; }};
}}
"#
    );
    conf.extend((0..monitors).map(monitor));
    let path = dir.join("bird.conf");
    std::fs::write(&path, conf)?;
    let mut c = Command::new("bird");
    c.arg("-f")
        .arg("-c")
        .arg(&path)
        .arg("-s")
        .arg(dir.join("bird.ctl"));
    Ok(c)
}

fn frr(dir: &Path, monitors: usize) -> Result<Command> {
    let mut conf = format!(
        r#"hostname dut
router bgp {DUT_AS}
 bgp router-id {DUT}
 no bgp ebgp-requires-policy
 neighbor {INJECTOR} remote-as {INJECTOR_AS}
 neighbor {INJECTOR} passive
"#
    );
    for i in 0..monitors {
        let m = monitor_addr(i);
        conf.push_str(&format!(
            " neighbor {m} remote-as {MONITOR_AS}\n neighbor {m} passive\n"
        ));
    }
    let path = dir.join("frr.conf");
    std::fs::write(&path, conf)?;
    let vty = dir.join("frrvty");
    std::fs::create_dir_all(&vty)?;
    // FRR drops privileges to user frr: let it write its pid file and vty
    // socket into our temp dir.
    for d in [dir, vty.as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777))?;
    }
    let mut c = Command::new(FRR_BGPD);
    // -Z: no zebra; -n: no kernel routes (a pure BGP transit, like the
    // other DUTs here).
    c.arg("-Z")
        .arg("-n")
        .arg("-f")
        .arg(&path)
        .arg("-i")
        .arg(dir.join("frr.pid"))
        .arg("--vty_socket")
        .arg(&vty)
        .args(["-u", "frr", "-g", "frr", "-l", DUT]);
    Ok(c)
}

fn gobgp(dir: &Path, monitors: usize) -> Result<Command> {
    let neighbor = |ip: &str, asn: u32| {
        format!(
            r#"[[neighbors]]
  [neighbors.config]
    neighbor-address = "{ip}"
    peer-as = {asn}
  [neighbors.transport.config]
    passive-mode = true
"#
        )
    };
    let conf = format!(
        "[global.config]\n  as = {DUT_AS}\n  router-id = \"{DUT}\"\n  port = 179\n  \
         local-address-list = [\"{DUT}\"]\n{}{}",
        neighbor(INJECTOR, INJECTOR_AS),
        (0..monitors)
            .map(|i| neighbor(&monitor_addr(i), MONITOR_AS))
            .collect::<String>()
    );
    let path = dir.join("gobgp.toml");
    std::fs::write(&path, conf)?;
    let mut c = Command::new("gobgpd");
    c.arg("-f")
        .arg(&path)
        .args(["--api-hosts", "127.0.0.1:50051", "--pprof-disable"])
        .args(["--log-level", "warn"]);
    Ok(c)
}
