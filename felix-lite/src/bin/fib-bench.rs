//! FIB programming benchmark: felix-lite's batched netlink writer against
//! `ip -force -batch`, side by side, each in a fresh network namespace.
//!
//! For every size it adds N IPv4 /32 routes via one gateway, checks that
//! exactly N routes of the protocol are in the table, deletes them, and
//! prints routes/s for both phases.
//!
//! Run as root: `cargo run --release -p felix-lite --bin fib-bench --
//! --sizes 100000,1000000`.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use felix_lite::netlink::{AckMode, Netlink};
use felix_lite::route::{KernelRoute, Route, RouteOp, Target};
use ipnetwork::IpNetwork;

const PROTO: u8 = 81;
const GATEWAY: &str = "192.0.2.2";

#[derive(Parser, Debug)]
#[command(about = "felix-lite netlink writer vs ip -batch")]
struct Args {
    /// Route counts to program, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    sizes: Vec<usize>,
    /// Also measure felix-lite with an ack for every message.
    #[arg(long)]
    every_ack: bool,
}

/// A network namespace removed on drop.
struct Ns(String);

impl Ns {
    fn new(tag: &str) -> Result<Ns> {
        let name = format!("fib-bench-{tag}-{}", std::process::id());
        run("ip", &["netns", "add", &name])?;
        let ns = Ns(name);
        // A connected gateway so that `via` routes are accepted.
        for cmd in [
            "link add d0 type veth peer name d1",
            "link set d1 up",
            "addr add 192.0.2.1/24 dev d0",
            "link set d0 up",
            "link set lo up",
        ] {
            let mut args = vec!["-n", &ns.0];
            args.extend(cmd.split(' '));
            run("ip", &args)?;
        }
        Ok(ns)
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.0]);
    }
}

fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The i-th /32 in 10.0.0.0/8.
fn prefix(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000u32 + i as u32)
}

/// Routes of our protocol in the namespace, counted from a dump.
async fn count(nl: &mut Netlink) -> Result<usize> {
    let dump = nl.dump().await?;
    Ok(dump.routes.iter().filter(|r| r.protocol == PROTO).count())
}

/// Adds then deletes `n` routes with `ip -force -batch`; returns the times.
async fn bench_ip(n: usize) -> Result<(Duration, Duration)> {
    let ns = Ns::new("ip")?;
    let dir = tempfile::tempdir()?;
    let add = dir.path().join("add");
    let del = dir.path().join("del");
    let mut fa = std::io::BufWriter::new(std::fs::File::create(&add)?);
    let mut fd = std::io::BufWriter::new(std::fs::File::create(&del)?);
    for i in 0..n {
        let p = prefix(i);
        writeln!(fa, "route replace {p}/32 via {GATEWAY} proto {PROTO}")?;
        writeln!(fd, "route del {p}/32 proto {PROTO}")?;
    }
    fa.flush()?;
    fd.flush()?;
    drop((fa, fd));
    let mut nl =
        Netlink::open(Some(ns.path().as_ref()), PROTO, AckMode::Tail, false)?;
    let t = Instant::now();
    run(
        "ip",
        &["-n", &ns.0, "-force", "-batch", add.to_str().unwrap()],
    )?;
    let t_add = t.elapsed();
    let seen = count(&mut nl).await?;
    if seen != n {
        bail!("ip -batch: expected {n} routes, found {seen}");
    }
    let t = Instant::now();
    run(
        "ip",
        &["-n", &ns.0, "-force", "-batch", del.to_str().unwrap()],
    )?;
    let t_del = t.elapsed();
    if count(&mut nl).await? != 0 {
        bail!("ip -batch: routes left after delete");
    }
    Ok((t_add, t_del))
}

/// Adds then deletes `n` routes with felix-lite's writer.
async fn bench_felix(n: usize, ack: AckMode) -> Result<(Duration, Duration)> {
    let ns = Ns::new("fl")?;
    let mut nl = Netlink::open(Some(ns.path().as_ref()), PROTO, ack, false)?;
    let gw: IpAddr = GATEWAY.parse()?;
    // Building the operations is part of the measured work.
    let t = Instant::now();
    let adds: Vec<RouteOp> = (0..n)
        .map(|i| {
            RouteOp::Replace(Route {
                dst: IpNetwork::new(prefix(i).into(), 32).unwrap(),
                target: Target::Via(vec![gw]),
            })
        })
        .collect();
    let failures = nl.apply(&adds).await?;
    let t_add = t.elapsed();
    if !failures.is_empty() {
        bail!("{} adds refused, first: {:?}", failures.len(), failures[0]);
    }
    let seen = count(&mut nl).await?;
    if seen != n {
        bail!("felix-lite: expected {n} routes, found {seen}");
    }
    let t = Instant::now();
    let dels: Vec<RouteOp> = adds
        .into_iter()
        .map(|op| {
            RouteOp::Delete(KernelRoute {
                dst: op.dst(),
                metric: 0,
                protocol: PROTO,
                kind: libc::RTN_UNICAST,
                target: None,
            })
        })
        .collect();
    let failures = nl.apply(&dels).await?;
    let t_del = t.elapsed();
    if !failures.is_empty() {
        bail!(
            "{} deletes refused, first: {:?}",
            failures.len(),
            failures[0]
        );
    }
    if count(&mut nl).await? != 0 {
        bail!("felix-lite: routes left after delete");
    }
    Ok((t_add, t_del))
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    if !nix::unistd::geteuid().is_root() {
        bail!("fib-bench needs root (network namespaces)");
    }
    println!(
        "{:>9} {:<22} {:>10} {:>12} {:>10} {:>12}",
        "routes", "writer", "add s", "add rt/s", "del s", "del rt/s"
    );
    for &n in &args.sizes {
        let (ip_add, ip_del) = bench_ip(n).await?;
        let mut rows = vec![("ip -force -batch", ip_add, ip_del)];
        let (a, d) = bench_felix(n, AckMode::Tail).await?;
        rows.push(("felix-lite (tail ack)", a, d));
        if args.every_ack {
            let (a, d) = bench_felix(n, AckMode::Every).await?;
            rows.push(("felix-lite (every ack)", a, d));
        }
        for (name, a, d) in &rows {
            println!(
                "{n:>9} {name:<22} {:>10.3} {:>12.0} {:>10.3} {:>12.0}",
                a.as_secs_f64(),
                rate(n, *a),
                d.as_secs_f64(),
                rate(n, *d),
            );
        }
        for (name, a, d) in &rows[1..] {
            println!(
                "{n:>9} {name:<22} ratio vs ip -batch: add x{:.2}, delete x{:.2}",
                rate(n, *a) / rate(n, ip_add),
                rate(n, *d) / rate(n, ip_del),
            );
        }
    }
    Ok(())
}
