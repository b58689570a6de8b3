//! CNI ADD/DEL latency: margay (IPAM on a local etcd) on its own and
//! relaying to the node agent's CNI service, vs Debian's `ptp` +
//! `host-local` doing the same job (veth pair, /32 in the pod, host
//! route), sequential and 16 concurrent, side by side: the three take
//! turns round by round (16 at a time when concurrent). Needs root, `etcd`
//! on PATH and /usr/lib/cni. Usage: `cni-bench [ROUNDS]` (default 64), or
//! `cni-bench trace`: three ADD/DEL rounds of margay, alone and via the
//! agent, at log level debug, printing each invocation's log (every
//! datastore request, IPAM phase and netlink step with its duration) to
//! find where time goes.
//!
//! The plugin is the one beside this binary, or `$CNI_BENCH_PLUGIN` (see
//! [`plugin`]).
//!
//! `cni-bench live [ROUNDS]` and `cni-bench first-packet [ROUNDS]` do it
//! on a live node of a lab they bring up and take down (see `live.rs` and
//! `first_packet.rs`); run them under `flock` on the lab lock.

mod first_packet;
mod lab;
mod live;

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use margay_cni::agent::server;
use margay_crds::{IPPool, IPPoolSpec};
use margay_datastore::{Datastore, DatastoreSpec};
use serde_json::{Value, json};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::prelude::*;

const CONCURRENCY: usize = 16;

/// The margay plugin the benches run: `$CNI_BENCH_PLUGIN` when set (the
/// static build the image ships: `scripts/plugins`, then
/// `CNI_BENCH_PLUGIN=target/plugins/release/margay`), else the one beside
/// this binary. Printed, since the two differ in start-up time.
fn plugin() -> anyhow::Result<PathBuf> {
    let path = match std::env::var_os("CNI_BENCH_PLUGIN") {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()?.with_file_name("margay"),
    };
    // ldd fails on an executable the dynamic loader does not run.
    let linked = match Command::new("ldd").arg(&path).output() {
        Ok(out) if out.status.success() => "dynamically linked",
        Ok(_) => "static",
        Err(_) => "linking unknown: no ldd",
    };
    println!("plugin: {} ({linked})", path.display());
    Ok(path)
}

struct Etcd(Child, PathBuf);
impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_etcd(dir: &Path) -> anyhow::Result<(Etcd, String)> {
    let (c, p) = (free_port()?, free_port()?);
    let client = format!("http://127.0.0.1:{c}");
    let child = Command::new("etcd")
        .args(["--data-dir", &dir.join("etcd").display().to_string()])
        .args([
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
        ])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{p}")])
        .args(["--unsafe-no-fsync"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting etcd")?;
    let etcd = Etcd(child, dir.join("etcd"));
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", c)).is_err() {
        if start.elapsed() > Duration::from_secs(10) {
            bail!("etcd did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((etcd, client))
}

/// Network namespaces named mgbench-N, deleted on drop.
struct Namespaces(Vec<String>);
impl Namespaces {
    /// `count` namespaces `<prefix>-<i>` with `lo` up.
    fn create(prefix: &str, count: usize) -> anyhow::Result<Namespaces> {
        let mut nss = Namespaces(Vec::new());
        for i in 0..count {
            let n = format!("{prefix}-{i}");
            let st = Command::new("ip").args(["netns", "add", &n]).status()?;
            if !st.success() {
                bail!("ip netns add {n} failed (root needed)");
            }
            nss.0.push(n.clone());
            Command::new("ip")
                .args(["netns", "exec", &n, "ip", "link", "set", "lo", "up"])
                .status()?;
        }
        Ok(nss)
    }
}

/// The 1, 5 and 15 minute load averages and the running/total tasks.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// "pid (command)" for each pid.
fn describe_pids(pids: &[String]) -> String {
    pids.iter()
        .map(|p| {
            let comm = std::fs::read_to_string(format!("/proc/{p}/comm"))
                .unwrap_or_default();
            format!("{p} ({})", comm.trim())
        })
        .collect::<Vec<_>>()
        .join(", ")
}
impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn invoke(
    plugin: &Path,
    cmd: &str,
    id: &str,
    ns: &str,
    conf: &Value,
) -> anyhow::Result<Duration> {
    invoke_logged(plugin, cmd, id, ns, conf, false)
}

/// One invocation that must succeed: its duration and stdout.
fn invoke_output(
    plugin: &Path,
    cmd: &str,
    id: &str,
    ns: &str,
    conf: &Value,
) -> anyhow::Result<(Duration, String)> {
    let (took, out) = spawn_and_wait(plugin, cmd, id, ns, conf, false)?;
    if !out.status.success() {
        bail!(
            "{} {cmd} {id}: {}",
            plugin.display(),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok((took, String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// One invocation; with `show_log`, its stderr is printed.
fn invoke_logged(
    plugin: &Path,
    cmd: &str,
    id: &str,
    ns: &str,
    conf: &Value,
    show_log: bool,
) -> anyhow::Result<Duration> {
    let (took, out) = spawn_and_wait(plugin, cmd, id, ns, conf, show_log)?;
    if show_log {
        println!("----- {cmd} {id}: {took:?} wall");
        print!("{}", String::from_utf8_lossy(&out.stderr));
    }
    if !out.status.success() {
        bail!(
            "{} {cmd} {id}: {}",
            plugin.display(),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(took)
}

/// Runs the plugin as a runtime does (environment, config on stdin).
fn spawn_and_wait(
    plugin: &Path,
    cmd: &str,
    id: &str,
    ns: &str,
    conf: &Value,
    show_log: bool,
) -> anyhow::Result<(Duration, std::process::Output)> {
    let start = Instant::now();
    let mut child = Command::new(plugin)
        .env_clear()
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", format!("/run/netns/{ns}"))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(if show_log {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .spawn()?;
    let written = child
        .stdin
        .take()
        .expect("piped")
        .write_all(conf.to_string().as_bytes());
    let out = child.wait_with_output()?;
    // A program that does not read its stdin (the harness's /bin/true)
    // may exit first: a broken pipe is not the plugin's failure.
    if let Err(e) = written
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(e.into());
    }
    Ok((start.elapsed(), out))
}

/// ADD and DEL latencies of one case.
#[derive(Default)]
struct Samples {
    adds: Vec<Duration>,
    dels: Vec<Duration>,
}

/// `rounds` ADD+DEL per case over `par` threads. The cases take turns
/// wave by wave (each thread one ADD then one DEL), so that a change in
/// the machine's speed during the run (a VM's neighbours) falls on every
/// case alike and the ratios stay fair. Each ADD gets a new namespace
/// `<ns_prefix>-...`, deleted after its DEL, as a runtime does (untimed).
fn run(
    cases: &[(&Path, &Value, &str)],
    ns_prefix: &str,
    rounds: usize,
    par: usize,
) -> anyhow::Result<Vec<Samples>> {
    let mut out: Vec<Samples> =
        cases.iter().map(|_| Samples::default()).collect();
    for w in 0..rounds.div_ceil(par) {
        for ((plugin, conf, prefix), samples) in cases.iter().zip(&mut out) {
            let results: Vec<anyhow::Result<(Duration, Duration)>> =
                std::thread::scope(|s| {
                    let hs: Vec<_> = (0..par)
                        .map(|t| {
                            s.spawn(move || {
                                let id = format!("{prefix}-{t}-{w}");
                                let nss = Namespaces::create(
                                    &format!("{ns_prefix}-{id}"),
                                    1,
                                )?;
                                let ns = &nss.0[0];
                                let add = invoke(plugin, "ADD", &id, ns, conf)?;
                                let del = invoke(plugin, "DEL", &id, ns, conf)?;
                                Ok((add, del))
                            })
                        })
                        .collect();
                    hs.into_iter()
                        .map(|h| h.join().expect("no panic"))
                        .collect()
                });
            for r in results {
                let (add, del) = r?;
                samples.adds.push(add);
                samples.dels.push(del);
            }
        }
    }
    Ok(out)
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

fn main() -> anyhow::Result<()> {
    let arg = std::env::args().nth(1);
    let rounds_arg = |default| -> anyhow::Result<usize> {
        Ok(std::env::args()
            .nth(2)
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(default))
    };
    match arg.as_deref() {
        Some("live") if std::env::args().nth(2).as_deref() == Some("trace") => {
            return live::main(0, true);
        }
        Some("live") => return live::main(rounds_arg(60)?, false),
        Some("first-packet") => return first_packet::main(rounds_arg(20)?),
        _ => {}
    }
    let trace = arg.as_deref() == Some("trace");
    let rounds: usize = arg
        .filter(|_| !trace)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(64);
    let dir =
        std::env::temp_dir().join(format!("cni-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (_etcd, endpoint) = start_etcd(&dir)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let spec: DatastoreSpec = format!("etcd:{endpoint}").parse()?;
        let ds = Datastore::connect(&spec).await?;
        let pool = IPPool::new(
            "bench",
            IPPoolSpec {
                cidr: "10.240.0.0/16".into(),
                block_size: Some(26),
                ..IPPoolSpec::default()
            },
        );
        ds.create(&pool).await?;
        anyhow::Ok(())
    })?;
    let mut nss = Namespaces(Vec::new());
    for i in 0..CONCURRENCY {
        let n = format!("mgbench-{}-{i}", std::process::id());
        let st = Command::new("ip").args(["netns", "add", &n]).status()?;
        if !st.success() {
            bail!("ip netns add {n} failed (root needed)");
        }
        nss.0.push(n);
    }
    let margay = plugin()?;
    let margay_conf = json!({
        "cniVersion": "1.0.0", "name": "bench", "type": "margay",
        "nodename": "bench-node", "etcd_endpoints": endpoint, "log_level": "error",
        "ipam_lock_file": dir.join("ipam.lock"), "endpoint_dir": dir.join("endpoints"),
        "ipam": {"type": "margay-ipam"},
    });
    // The node agent's CNI service, as margay-node runs it.
    let socket = dir.join("agent.sock");
    server::spawn(server::bind(&socket)?)?;
    let mut agent_conf = margay_conf.clone();
    agent_conf["agent_socket"] = socket.display().to_string().into();
    // A node of its own: on a real node the agent serves every ADD, and
    // the plugin working alone in between would leave the agent's copy of
    // the node's block stale at every turn (costing it a re-read).
    agent_conf["nodename"] = "bench-node-agent".into();
    agent_conf["ipam_lock_file"] =
        dir.join("ipam-agent.lock").display().to_string().into();
    if trace {
        // The agent's spans, with their durations, on stdout.
        let only_margay = Targets::new().with_targets(
            ["margay_cni", "margay_ipam", "margay_datastore"]
                .map(|t| (t, tracing::Level::DEBUG)),
        );
        tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_span_events(FmtSpan::CLOSE)
                    .with_ansi(false)
                    .with_target(false)
                    .with_filter(only_margay),
            )
            .init();
        for (how, base) in [("", &margay_conf), ("agent-", &agent_conf)] {
            let mut conf = base.clone();
            conf["log_level"] = "debug".into();
            for r in 0..3 {
                let id = format!("trace-{how}{r}");
                invoke_logged(&margay, "ADD", &id, &nss.0[0], &conf, true)?;
                invoke_logged(&margay, "DEL", &id, &nss.0[0], &conf, true)?;
            }
        }
        return Ok(());
    }
    let ptp = PathBuf::from("/usr/lib/cni/ptp");
    let ptp_conf = json!({
        "cniVersion": "1.0.0", "name": "bench-ptp", "type": "ptp", "mtu": 1500,
        "ipam": {"type": "host-local", "subnet": "10.241.0.0/16",
                 "dataDir": dir.join("host-local"), "routes": [{"dst": "0.0.0.0/0"}]},
    });
    println!(
        "rounds per case: {rounds}; margay binary: {}",
        margay.display()
    );
    println!(
        "{:<30} {:>9} {:>9} {:>9} {:>9}",
        "case", "ADD p50", "ADD p99", "DEL p50", "DEL p99"
    );
    for (par, label) in [(1, "sequential"), (CONCURRENCY, "16 concurrent")] {
        let names = ["margay", "margay via agent", "ptp+host-local"];
        let cases: [(&Path, &Value, &str); 3] = [
            (&margay, &margay_conf, "m"),
            (&margay, &agent_conf, "a"),
            (&ptp, &ptp_conf, "p"),
        ];
        let samples = run(
            &cases,
            &format!("mgbench-{}", std::process::id()),
            rounds,
            par,
        )?;
        let mut rows = Vec::new();
        for (name, mut s) in names.into_iter().zip(samples) {
            let q = [
                pct(&mut s.adds, 0.5),
                pct(&mut s.adds, 0.99),
                pct(&mut s.dels, 0.5),
                pct(&mut s.dels, 0.99),
            ];
            println!(
                "{:<30} {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>7.2}ms",
                format!("{name} {label}"),
                q[0],
                q[1],
                q[2],
                q[3]
            );
            rows.push((name, q));
        }
        let ptp_q = rows[2].1;
        for (name, q) in &rows[..2] {
            println!(
                "{:<30} {:>8.2}x {:>8.2}x {:>8.2}x {:>8.2}x",
                format!("ratio ptp/{name}"),
                ptp_q[0] / q[0],
                ptp_q[1] / q[1],
                ptp_q[2] / q[2],
                ptp_q[3] / q[3]
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
