//! bgperf-style transit benchmark (issues 3 and 14): for each device
//! under test (margay bgpd, BIRD, FRR `bgpd -Z`, GoBGP), an injector peer
//! sends N IPv4 /24s carrying K distinct attribute sets (AS paths of 2-6
//! hops plus a community) to the DUT, which re-advertises them to M
//! monitor peers (fan-out: what update groups are for). Measured: the
//! time from the first UPDATE written until every monitor has all N, the
//! same for withdrawing them, and the DUT's RSS once loaded (VmRSS, a settling second later) and
//! at its peak (VmHWM). Ratios are to BIRD in the same run, and, per
//! device, to the same run with one monitor.
//!
//! Layout, per device and run: a DUT namespace (10.0.0.1) and a tester
//! namespace (injector 10.0.0.2 and monitors 10.0.0.3 and up on one
//! veth). The
//! tester's sockets are opened by a thread that `setns`-ed into the
//! tester namespace, so the injector and the monitor are ordinary
//! threads of this process (pre-encoded UPDATEs, shared clock) while the
//! DUT process is alone in its namespace. Namespaces, processes and temp
//! files go away when a run ends, also on error.
//!
//! Needs root. Run:
//! `cargo bench -p margay-bgpd --bench bgperf -- --prefixes 100000,1000000`
//! (`--devices margay,bird` to pick, `--monitors 1,10,50`,
//! `--attr-sets 1,200000`, `--timeout 120` seconds per phase, `--bgpd
//! PATH` to run another bgpd build).

mod devices;
mod tester;

use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use devices::Device;
use margay_testkit::{Netns, veth_between};
use tester::Seen;

#[derive(Debug, Parser)]
#[command(name = "bgperf")]
struct Args {
    /// Prefix counts to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100000")]
    prefixes: Vec<usize>,
    /// Distinct attribute sets among the prefixes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    attr_sets: Vec<usize>,
    /// Monitor peer counts to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    monitors: Vec<usize>,
    /// Devices to run, comma-separated: margay, bird, frr, gobgp.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "margay,bird,frr,gobgp"
    )]
    devices: Vec<String>,
    /// Seconds each phase (announce, withdraw) may take per device.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// The bgpd binary to run as `margay` (default: this build's).
    #[arg(long)]
    bgpd: Option<std::path::PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// How one phase ended.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Done(Duration),
    /// Gave up; how many prefixes the monitor had (announce) or still
    /// had (withdraw) by then.
    Timeout(usize),
    NotRun,
}

#[derive(Debug)]
enum Outcome {
    Skipped(String),
    Failed(String),
    Ran {
        announce: Phase,
        withdraw: Phase,
        idle_kib: u64,
        loaded_kib: u64,
        /// CPU time (user + system) the DUT spent in the announce phase:
        /// its own cost, apart from the monitors' decoding on the same
        /// cores.
        announce_cpu: f64,
        peak_kib: u64,
    },
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(b) = &args.bgpd {
        devices::MARGAY_BIN.set(b.clone()).expect("set once");
    }
    let devices = args
        .devices
        .iter()
        .map(|d| Device::parse(d))
        .collect::<Result<Vec<_>>>()?;
    margay_testkit::require_root("bgperf");
    if let Some(m) = args
        .monitors
        .iter()
        .find(|m| **m == 0 || **m > devices::MAX_MONITORS)
    {
        bail!(
            "--monitors {m}: each count must be 1 to {}",
            devices::MAX_MONITORS
        );
    }
    println!("bgperf: {}", std::env::args().collect::<Vec<_>>().join(" "));
    let mut summary = Vec::new();
    for &n in &args.prefixes {
        for &k in &args.attr_sets {
            for &m in &args.monitors {
                let mut rows = Vec::new();
                for &d in &devices {
                    let outcome = match d.missing() {
                        Some(why) => Outcome::Skipped(why),
                        None => {
                            run(d, n, k, m, Duration::from_secs(args.timeout))
                                .unwrap_or_else(|e| {
                                    Outcome::Failed(format!("{e:#}"))
                                })
                        }
                    };
                    if let Outcome::Skipped(why) | Outcome::Failed(why) =
                        &outcome
                    {
                        eprintln!("{}: {why}", d.name());
                    }
                    rows.push((d, outcome));
                }
                print_table(n, k, m, &rows);
                summary.push(((n, k, m), rows));
            }
        }
    }
    print_fanout(&summary);
    Ok(())
}

/// One device, one prefix count, attribute-set count and monitor count.
fn run(
    dev: Device,
    n: usize,
    k: usize,
    monitors: usize,
    timeout: Duration,
) -> Result<Outcome> {
    eprintln!(
        "{}: {n} prefixes, {k} attribute sets, {monitors} monitors ...",
        dev.name()
    );
    let dut = Netns::new("bp-dut")?;
    let tst = Netns::new("bp-tst")?;
    veth_between(&dut, "eth0", "10.0.0.1/24", &tst, "eth0", "10.0.0.2/24")?;
    for i in 0..monitors {
        let a = format!("{}/24", devices::monitor_addr(i));
        tst.exec(&["ip", "addr", "add", &a, "dev", "eth0"])?;
    }
    let dir = tempfile::tempdir()?;
    let pid = dev.start(&dut, dir.path(), monitors)?;
    let fail = |what: String| -> anyhow::Error {
        let log = dut.log(pid);
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        anyhow::anyhow!("{what}\n{} log tail:\n{}", dev.name(), tail.join("\n"))
    };

    let (ann, wd) = tester::encode_updates(
        n,
        k,
        devices::INJECTOR_AS,
        devices::INJECTOR.parse()?,
    )?;
    let deadline = Instant::now() + Duration::from_secs(30 + monitors as u64);
    let (mons, inj) = tester::in_netns(&tst.path(), || {
        let mons = (0..monitors)
            .map(|i| {
                tester::open_session(
                    devices::monitor_addr(i).parse()?,
                    devices::DUT.parse()?,
                    devices::MONITOR_AS,
                    deadline,
                )
                .with_context(|| format!("monitor {i} session"))
            })
            .collect::<Result<Vec<_>>>()?;
        let inj = tester::open_session(
            devices::INJECTOR.parse()?,
            devices::DUT.parse()?,
            devices::INJECTOR_AS,
            deadline,
        )
        .context("injector session")?;
        Ok((mons, inj))
    })
    .map_err(|e| fail(format!("{e:#}")))?;

    // Whatever the DUT does, every connection ends with this run.
    let mut handles = vec![inj.handle()?];
    for m in &mons {
        handles.push(m.handle()?);
    }
    let _close = Close(handles);
    let writer = inj.writer.clone();
    std::thread::spawn(move || inj.drain());
    let present: Vec<Arc<AtomicUsize>> = (0..monitors)
        .map(|_| Arc::new(AtomicUsize::new(0)))
        .collect();
    let (tx, rx) = mpsc::channel();
    for (mon, p) in mons.into_iter().zip(&present) {
        let (p, tx) = (p.clone(), tx.clone());
        std::thread::spawn(move || tester::monitor(mon, n, p, tx));
    }
    drop(tx);
    // Let the DUT settle (End-of-RIB, first timers) before the clock
    // starts.
    std::thread::sleep(Duration::from_secs(1));
    let idle_kib = proc_status(pid, "VmRSS:")?;
    let inj = Injector { writer, timeout };

    let cpu0 = proc_cpu(pid)?;
    let announce = phase(&inj, &ann, &rx, timeout, true, &present)
        .map_err(|e| fail(format!("announce: {e:#}")))?;
    // The loaded RSS is the table at rest, as the idle one is: sampled
    // after the same settling second (bgpd hands a burst's freed heap
    // back once its sockets are quiet: bgpd/src/heap.rs); the CPU time
    // includes that second, so the work of settling is counted too.
    std::thread::sleep(Duration::from_secs(1));
    let announce_cpu = proc_cpu(pid)? - cpu0;
    let loaded_kib = proc_status(pid, "VmRSS:")?;
    let withdraw = match announce {
        Phase::Done(_) => phase(&inj, &wd, &rx, timeout, false, &present)
            .map_err(|e| fail(format!("withdraw: {e:#}")))?,
        _ => Phase::NotRun,
    };
    let peak_kib = proc_status(pid, "VmHWM:")?;
    Ok(Outcome::Ran {
        announce,
        withdraw,
        idle_kib,
        loaded_kib,
        announce_cpu,
        peak_kib,
    })
}

/// The CPU seconds (user + system) process `pid` has used
/// (`/proc/PID/stat` fields 14 and 15, in clock ticks).
fn proc_cpu(pid: u32) -> Result<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("DUT process {pid} is gone"))?;
    // Fields after the command name, which is in parentheses and may
    // hold spaces: state is field 3, utime 14, stime 15.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick =
        |i: usize| -> Result<f64> {
            Ok(f.get(i).and_then(|v| v.parse::<u64>().ok()).with_context(
                || format!("no field {} in /proc/{pid}/stat", i + 3),
            )? as f64)
        };
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    Ok((tick(11)? + tick(12)?) / hz)
}

/// The injector's sending side.
struct Injector {
    writer: Arc<Mutex<TcpStream>>,
    timeout: Duration,
}

/// Shuts the tester's connections down when a run ends.
struct Close(Vec<TcpStream>);

impl Drop for Close {
    fn drop(&mut self) {
        for s in &self.0 {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Writes `msgs` and waits until every monitor is full (`announce`) or
/// empty; the clock starts at the first byte written. On a timeout, the
/// progress shown is the least advanced monitor's.
fn phase(
    inj: &Injector,
    msgs: &[u8],
    rx: &mpsc::Receiver<Seen>,
    timeout: Duration,
    announce: bool,
    present: &[Arc<AtomicUsize>],
) -> Result<Phase> {
    use std::io::Write;
    let t0 = Instant::now();
    let deadline = t0 + timeout;
    let mut w = inj.writer.lock().unwrap_or_else(|e| e.into_inner());
    w.set_write_timeout(Some(inj.timeout))?;
    let written = w.write_all(msgs);
    drop(w);
    let progress = || {
        let counts = present.iter().map(|p| p.load(Ordering::Relaxed));
        if announce { counts.min() } else { counts.max() }.unwrap_or(0)
    };
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::WouldBlock
            || e.kind() == std::io::ErrorKind::TimedOut
        {
            return Ok(Phase::Timeout(progress()));
        }
        return Err(e).context("injector write");
    }
    let mut done = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Seen::Full(t)) if announce => {
                done += 1;
                if done == present.len() {
                    return Ok(Phase::Done(t - t0));
                }
            }
            Ok(Seen::Empty(t)) if !announce => {
                done += 1;
                if done == present.len() {
                    return Ok(Phase::Done(t - t0));
                }
            }
            Ok(Seen::Down(why)) => bail!("monitor session: {why}"),
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Ok(Phase::Timeout(progress()));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                bail!("monitor thread ended")
            }
        }
    }
}

/// A `/proc/PID/status` field in KiB.
fn proc_status(pid: u32, field: &str) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("DUT process {pid} is gone"))?;
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

fn secs(p: Phase) -> Option<f64> {
    match p {
        Phase::Done(d) => Some(d.as_secs_f64()),
        _ => None,
    }
}

fn cell(p: Phase, n: usize) -> String {
    match p {
        Phase::Done(d) => format!(
            "{:.3} s ({:.2}M/s)",
            d.as_secs_f64(),
            n as f64 / d.as_secs_f64() / 1e6
        ),
        Phase::Timeout(k) => format!("timeout ({k}/{n})"),
        Phase::NotRun => "-".into(),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    }
}

/// One (prefixes, attribute sets, monitors) run of every device.
type Runs = Vec<((usize, usize, usize), Vec<(Device, Outcome)>)>;

fn announce_secs(o: &Outcome) -> Option<f64> {
    match o {
        Outcome::Ran { announce, .. } => secs(*announce),
        _ => None,
    }
}

fn announce_cpu(o: &Outcome) -> Option<f64> {
    match o {
        Outcome::Ran {
            announce: Phase::Done(_),
            announce_cpu,
            ..
        } => Some(*announce_cpu),
        _ => None,
    }
}

/// Fan-out: per device, the announce time with M monitors against the
/// same device's with the fewest monitors run (M = 1 when given), and
/// against BIRD's with M monitors; then the DUT's own CPU time in the
/// announce phase, against the same device's with the fewest monitors.
fn print_fanout(runs: &Runs) {
    let mut keys: Vec<(usize, usize)> =
        runs.iter().map(|((n, k, _), _)| (*n, *k)).collect();
    keys.dedup();
    for (n, k) in keys {
        let of: Vec<&(_, Vec<(Device, Outcome)>)> = runs
            .iter()
            .filter(|((n2, k2, _), _)| (*n2, *k2) == (n, k))
            .collect();
        if of.len() < 2 {
            continue;
        }
        let m0 = of[0].0.2;
        println!(
            "\nfan-out, {n} prefixes, {k} attribute sets: announce time to all monitors (x same device at M={m0}; x BIRD at the same M)"
        );
        let devices: Vec<Device> = of[0].1.iter().map(|(d, _)| *d).collect();
        for d in devices {
            let t = |i: usize| {
                of[i]
                    .1
                    .iter()
                    .find(|(d2, _)| *d2 == d)
                    .and_then(|(_, o)| announce_secs(o))
            };
            let bird = |i: usize| {
                of[i]
                    .1
                    .iter()
                    .find(|(d2, _)| *d2 == Device::Bird)
                    .and_then(|(_, o)| announce_secs(o))
            };
            let cpu = |i: usize| {
                of[i]
                    .1
                    .iter()
                    .find(|(d2, _)| *d2 == d)
                    .and_then(|(_, o)| announce_cpu(o))
            };
            let cells: Vec<String> = (0..of.len())
                .map(|i| {
                    format!(
                        "M={}: {} (x{} ; /BIRD {})",
                        of[i].0.2,
                        t(i).map_or("-".into(), |s| format!("{s:.3} s")),
                        ratio(t(i), t(0)),
                        ratio(t(i), bird(i)),
                    )
                })
                .collect();
            println!("{:<8} {}", d.name(), cells.join("  "));
            let cells: Vec<String> = (0..of.len())
                .map(|i| {
                    format!(
                        "M={}: {} (x{})",
                        of[i].0.2,
                        cpu(i).map_or("-".into(), |s| format!("{s:.2} s")),
                        ratio(cpu(i), cpu(0)),
                    )
                })
                .collect();
            println!("{:<8} DUT CPU: {}", "", cells.join("  "));
        }
    }
}

fn print_table(n: usize, k: usize, m: usize, rows: &[(Device, Outcome)]) {
    let bird = rows.iter().find_map(|(d, o)| match o {
        Outcome::Ran {
            announce,
            withdraw,
            loaded_kib,
            ..
        } if *d == Device::Bird => {
            Some((secs(*announce), secs(*withdraw), *loaded_kib as f64))
        }
        _ => None,
    });
    println!(
        "\n{n} IPv4 /24 prefixes, {k} attribute sets, injector -> DUT -> {m} monitors"
    );
    println!(
        "{:<8} {:>22} {:>22} {:>9} {:>10} {:>9} | {:>8} {:>8} {:>8}",
        "device",
        "announce",
        "withdraw",
        "idle MiB",
        "loaded MiB",
        "peak MiB",
        "adv/BIRD",
        "wd/BIRD",
        "rss/BIRD"
    );
    for (d, o) in rows {
        match o {
            Outcome::Skipped(why) => {
                println!("{:<8} skipped: {why}", d.name())
            }
            Outcome::Failed(why) => println!(
                "{:<8} failed: {}",
                d.name(),
                why.lines().next().unwrap_or("")
            ),
            Outcome::Ran {
                announce,
                withdraw,
                idle_kib,
                loaded_kib,
                peak_kib,
                ..
            } => {
                let mib = |k: u64| k as f64 / 1024.0;
                let (ba, bw, bm) = match bird {
                    Some((a, w, m)) => (a, w, Some(m)),
                    None => (None, None, None),
                };
                println!(
                    "{:<8} {:>22} {:>22} {:>9.1} {:>10.1} {:>9.1} | {:>8} {:>8} {:>8}",
                    d.name(),
                    cell(*announce, n),
                    cell(*withdraw, n),
                    mib(*idle_kib),
                    mib(*loaded_kib),
                    mib(*peak_kib),
                    ratio(secs(*announce), ba),
                    ratio(secs(*withdraw), bw),
                    ratio(Some(*loaded_kib as f64), bm),
                );
            }
        }
    }
    println!("(ratios: device / BIRD; below 1 is faster or leaner than BIRD)");
}
