//! Shared pieces of the netns interop tests: a DUT namespace running
//! bgpd from a YAML file, a peer namespace, and control-socket queries.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use margay_ctlproto::{Request, Response, RibEntry, decode_line, encode_line};
use margay_testkit::{Netns, veth_between, wait_until};

/// Where `cargo test` put the bgpd binary.
pub fn bgpd_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bgpd"))
}

/// A DUT running bgpd and one peer namespace linked by a veth pair:
/// DUT 10.0.0.1/24 (and fd00::1/64), peer 10.0.0.2/24 (fd00::2/64).
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub dut: Netns,
    pub peer: Netns,
    pub bgpd: Option<u32>,
}

impl Lab {
    pub fn new(name: &str) -> std::io::Result<Lab> {
        let dut = Netns::new(&format!("{name}-dut"))?;
        let peer = Netns::new(&format!("{name}-peer"))?;
        veth_between(
            &dut,
            "eth0",
            "10.0.0.1/24",
            &peer,
            "eth0",
            "10.0.0.2/24",
        )?;
        for (ns, a) in [(&dut, "fd00::1/64"), (&peer, "fd00::2/64")] {
            ns.exec(&["ip", "-6", "addr", "add", a, "dev", "eth0", "nodad"])?;
        }
        Ok(Lab {
            dir: tempfile::tempdir()?,
            dut,
            peer,
            bgpd: None,
        })
    }

    pub fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    pub fn ctl(&self) -> PathBuf {
        self.path("bgpd.ctl")
    }

    /// Write the datastore file and start bgpd on it.
    pub fn start_bgpd(
        &mut self,
        yaml: &str,
        extra: &[&str],
    ) -> std::io::Result<u32> {
        std::fs::write(self.path("store.yaml"), yaml)?;
        let mut c = Command::new(bgpd_bin());
        c.arg("--datastore")
            .arg(format!("file:{}", self.path("store.yaml").display()))
            .args([
                "--node",
                "dut",
                "--log-level",
                "debug",
                "--poll-seconds",
                "1",
            ])
            .arg("--control-socket")
            .arg(self.ctl())
            .args(extra);
        let pid = self.dut.spawn(c)?;
        self.bgpd = Some(pid);
        Ok(pid)
    }

    pub fn stop_bgpd(&mut self) {
        if let Some(pid) = self.bgpd.take() {
            self.dut.kill(pid);
        }
    }

    pub fn bgpd_log(&self) -> String {
        self.bgpd.map(|p| self.dut.log(p)).unwrap_or_default()
    }

    pub fn query(&self, req: &Request) -> Option<Response> {
        query(&self.ctl(), req)
    }

    /// The Loc-RIB entry for `prefix`, if present.
    pub fn rib_entry(&self, prefix: &str) -> Option<RibEntry> {
        match self.query(&Request::Rib)? {
            Response::Rib { routes } => {
                routes.into_iter().find(|e| e.prefix.to_string() == prefix)
            }
            _ => None,
        }
    }

    /// The state of the (only) peer, e.g. "Established".
    pub fn peer_state(&self) -> Option<String> {
        match self.query(&Request::Peers)? {
            Response::Peers { peers } => peers.first().map(|p| p.state.clone()),
            _ => None,
        }
    }

    pub fn wait_established(&self, what: &str) {
        let ok = wait_until(Duration::from_secs(40), || {
            self.peer_state().as_deref() == Some("Established")
        });
        assert!(
            ok,
            "{what}: session not Established: {:?}\nbgpd log:\n{}",
            self.query(&Request::Peers),
            self.bgpd_log()
        );
    }
}

/// Subscribe to the RIB stream and read lines until `EndOfSnapshot`.
pub fn rib_snapshot(path: &Path) -> Vec<margay_ctlproto::RibEvent> {
    let mut s = UnixStream::connect(path).expect("control socket");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(encode_line(&Request::SubscribeRib).as_bytes())
        .unwrap();
    let mut r = BufReader::new(s);
    let mut out = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            panic!("stream ended before EndOfSnapshot: {out:?}");
        }
        let ev: margay_ctlproto::RibEvent = decode_line(&line).unwrap();
        if ev == margay_ctlproto::RibEvent::EndOfSnapshot {
            return out;
        }
        out.push(ev);
    }
}

/// One request on the control socket.
pub fn query(path: &Path, req: &Request) -> Option<Response> {
    let mut s = UnixStream::connect(path).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(encode_line(req).as_bytes()).ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    decode_line(&line).ok()
}

/// The standalone transit configuration of issue 3 (DUT AS 65000 with one
/// eBGP peer), plus a confirmed block so the DUT originates something.
pub fn dut_yaml(peer_ip: &str, peer_as: u32, extra_peer_spec: &str) -> String {
    format!(
        r#"apiVersion: margay.io/v1
kind: Node
metadata: {{name: dut}}
spec: {{bgp: {{ipv4Address: 10.0.0.1/24, ipv6Address: fd00::1/64}}}}
---
apiVersion: margay.io/v1
kind: BGPConfiguration
metadata: {{name: default}}
spec: {{asNumber: 65000, nodeToNodeMeshEnabled: false}}
---
apiVersion: margay.io/v1
kind: IPPool
metadata: {{name: pool}}
spec: {{cidr: 10.244.0.0/16}}
---
apiVersion: margay.io/v1
kind: BlockAffinity
metadata: {{name: dut-10-244-1-0-26}}
spec: {{state: confirmed, node: dut, type: host, cidr: 10.244.1.0/26}}
---
apiVersion: margay.io/v1
kind: BGPPeer
metadata: {{name: peer}}
spec: {{peerIP: "{peer_ip}", asNumber: {peer_as}, filters: [accept-all]{extra_peer_spec}}}
---
apiVersion: margay.io/v1
kind: BGPFilter
metadata: {{name: accept-all}}
spec:
  importV4: [{{action: Accept}}]
  exportV4: [{{action: Accept}}]
  importV6: [{{action: Accept}}]
  exportV6: [{{action: Accept}}]
"#
    )
}

/// An IPv6 session to the peer at fd00::2 in AS `peer_as`, an IPv6 pool
/// and a confirmed IPv6 block, appended to [`dut_yaml`] for dual-stack
/// interop tests.
pub fn v6_peer_yaml(peer_as: u32) -> String {
    format!(
        r#"
---
apiVersion: margay.io/v1
kind: BGPPeer
metadata: {{name: peer6}}
spec: {{peerIP: "fd00::2", asNumber: {peer_as}, filters: [accept-all]}}
---
apiVersion: margay.io/v1
kind: IPPool
metadata: {{name: pool6}}
spec: {{cidr: "fd10::/48"}}
---
apiVersion: margay.io/v1
kind: BlockAffinity
metadata: {{name: dut-fd10--122}}
spec: {{state: confirmed, node: dut, type: host, cidr: "fd10::/122"}}
"#
    )
}
