//! The bench's small fabric (root): the tested node-0 and the
//! originating node-1 each in a network namespace the bench creates, on
//! one bridge (testkit's [`Segment`]), with a host link into it so that
//! both reach the bench's etcd, which listens on loopback and on the
//! host link. Everything is removed on drop, also on panic: the
//! namespaces (and with them the veths), the host link, etcd.
//!
//! ```text
//!   host: etcd 127.0.0.1 + 10.201.0.254 (link mgcp<pid>) --+
//!                                                            | br0 (hub netns)
//!   netns A: node-0 bgpd + felix-lite, 10.201.0.1 -----------+
//!   netns B: node-1 bgpd,               10.201.0.2 ----------+
//! ```

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use margay_testkit::{Netns, Segment, free_port, wait_until};

pub const HOST: &str = "10.201.0.254";
pub const NODE0: &str = "10.201.0.1";
pub const NODE1: &str = "10.201.0.2";

pub struct Fabric {
    pub a: Netns,
    pub b: Netns,
    host_link: String,
    etcd: Child,
    pub etcd_port: u16,
    _etcd_dir: tempfile::TempDir,
    // Dropped last: the bridge the others hang on.
    _segment: Segment,
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Fabric {
    pub fn new() -> Fabric {
        let segment = Segment::new("cpb").expect("netns (root)");
        let a = Netns::new("cpa").unwrap();
        let b = Netns::new("cpo").unwrap();
        segment.attach(&a, "eth0", &format!("{NODE0}/24")).unwrap();
        segment.attach(&b, "eth0", &format!("{NODE1}/24")).unwrap();
        let host_link = format!("mgcp{}", std::process::id() % 100_000);
        let hub = segment.hub().name().to_string();
        run(
            "ip",
            &[
                "link", "add", &host_link, "type", "veth", "peer", "name",
                "phost", "netns", &hub,
            ],
        );
        segment
            .hub()
            .exec(&["ip", "link", "set", "phost", "master", "br0", "up"])
            .unwrap();
        run(
            "ip",
            &["addr", "add", &format!("{HOST}/24"), "dev", &host_link],
        );
        run("ip", &["link", "set", &host_link, "up"]);
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let peer = format!("http://127.0.0.1:{}", free_port());
        let etcd = Command::new("etcd")
            .arg("--name=bench")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!(
                "--listen-client-urls=http://127.0.0.1:{port},http://{HOST}:{port}"
            ))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{port}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=bench={peer}"))
            .arg("--log-level=error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd (scripts/deps installs it)");
        let f = Fabric {
            a,
            b,
            host_link,
            etcd,
            etcd_port: port,
            _etcd_dir: dir,
            _segment: segment,
        };
        assert!(
            wait_until(Duration::from_secs(20), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            }),
            "etcd did not start"
        );
        f
    }

    /// etcd's URL on loopback (the bench) ...
    pub fn etcd_local(&self) -> String {
        format!("http://127.0.0.1:{}", self.etcd_port)
    }

    /// ... and as the nodes reach it.
    pub fn etcd_remote(&self) -> String {
        format!("http://{HOST}:{}", self.etcd_port)
    }
}

impl Drop for Fabric {
    fn drop(&mut self) {
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .output();
    }
}

/// The time each route of netns `ns` appears, from `ip monitor route`.
pub struct FibWatch {
    child: Child,
    rx: mpsc::Receiver<(Instant, String)>,
}

impl FibWatch {
    pub fn start(ns: &str) -> FibWatch {
        let mut child = Command::new("ip")
            .args(["-n", ns, "monitor", "route"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ip monitor");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if tx.send((Instant::now(), line)).is_err() {
                    return;
                }
            }
        });
        FibWatch { child, rx }
    }

    /// When a route to `prefix` was added (waits up to `timeout`).
    pub fn added(&self, prefix: &str, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let (at, line) = self.rx.recv_timeout(left).ok()?;
            if line.starts_with(prefix) && !line.starts_with("Deleted") {
                return Some(at);
            }
        }
    }
}

impl Drop for FibWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident set size in KiB and CPU time (user + system) of `pid`.
pub fn usage(pid: u32) -> (u64, Duration) {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime), in clock ticks (100 Hz).
    let ticks: u64 =
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    (rss, Duration::from_millis(ticks * 10))
}

/// Where `pid`'s resident memory is (/proc/PID/smaps), in KiB: the
/// executable's own pages (code, data), the heap (brk), anonymous
/// mappings (malloc's per-thread arenas, thread stacks), and the rest
/// (shared libraries, vdso...).
pub fn rss_breakdown(pid: u32) -> String {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps"))
        .unwrap_or_default();
    let exe =
        std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
    let exe = exe.to_string_lossy().replace(" (deleted)", "");
    let (mut bin, mut heap, mut anon, mut other) = (0u64, 0u64, 0u64, 0u64);
    let mut current = String::new();
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            // A mapping header: range perms offset dev inode [path].
            current = f.nth(4).unwrap_or_default().to_string();
        } else if first == "Rss:" {
            let kib: u64 = f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            match current.as_str() {
                p if p == exe => bin += kib,
                "[heap]" => heap += kib,
                "" => anon += kib,
                _ => other += kib,
            }
        }
    }
    let mib = |k: u64| k as f64 / 1024.0;
    format!(
        "executable {:.1} MiB, heap {:.1} MiB, anonymous {:.1} MiB, other {:.1} MiB",
        mib(bin),
        mib(heap),
        mib(anon),
        mib(other)
    )
}
