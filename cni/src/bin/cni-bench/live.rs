//! `cni-bench live [ROUNDS]`: ADD/DEL latency on a live lab node. Brings
//! up a 2-node lab (etcd, bgpd, felix-lite and the agent running on each
//! node), then, from inside node1's namespace, times margay through the
//! agent's socket (the lab's own CNI config), the margay plugin alone and
//! ptp + host-local, taking turns round by round in the same run,
//! sequential and 16 concurrent, and reports each as a ratio to ptp.
//! The harness (spawning a process and waiting for it) is timed too, with
//! `/bin/true`, so that figures "excluding the harness" can be read off.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::lab::{Lab, enter_netns};
use crate::{CONCURRENCY, Namespaces, invoke, pct, run};

/// Where the bench's lab keeps its state: the lab's default, so that a
/// plain `margayctl lab down` cleans up after a killed bench.
pub const STATE_DIR: &str = "/var/run/margay-lab";

/// CPU time (user+system, all threads) of each process, in clock ticks.
fn cpu_ticks(pids: &[String]) -> Vec<u64> {
    pids.iter()
        .map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat"))
                .unwrap_or_default();
            // Fields after the command (which may hold spaces): utime is
            // field 14, stime 15 (proc(5)).
            let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
        })
        .collect()
}

pub fn main(rounds: usize, trace: bool) -> anyhow::Result<()> {
    println!("load before: {}", crate::loadavg());
    let lab = Lab::up(Path::new(STATE_DIR), 2, 1)?;
    let node = lab.node("node1")?;
    let netns = node["netns"].as_str().unwrap_or_default().to_string();
    println!(
        "node1 ({netns}) runs: {}",
        crate::describe_pids(&lab.node_pids("node1")?)
    );
    let agent_conf = lab.cni_config("node1")?;
    // The node's processes and etcd, whose CPU time each phase reports.
    let mut watched = lab.node_pids("node1")?;
    if let Some(etcd) = lab.state["etcd_pid"].as_u64() {
        watched.push(etcd.to_string());
    }
    let watched = (crate::describe_pids(&watched), watched);
    // Everything below runs on a thread inside node1's namespace (the
    // plugin processes and their threads inherit it); `lab down` (the
    // guard's drop) runs from this thread, in the host's.
    std::thread::scope(|s| {
        s.spawn(|| {
            enter_netns(&netns)?;
            if trace {
                return trace_in_node(&agent_conf);
            }
            bench(rounds, &agent_conf, &watched)
        })
        .join()
        .expect("no panic")
    })?;
    println!("load after: {}", crate::loadavg());
    drop(lab);
    Ok(())
}

/// Three ADD/DEL rounds of the plugin alone at log level debug (every
/// IPAM phase, datastore request and netlink step with its duration),
/// then three through the agent, whose log the lab keeps.
fn trace_in_node(agent_conf: &Value) -> anyhow::Result<()> {
    let nss = Namespaces::create("mglab-bench", 1)?;
    let margay = crate::plugin()?;
    let mut conf = agent_conf.clone();
    conf.as_object_mut().expect("object").remove("agent_socket");
    conf["log_level"] = "debug".into();
    for (how, conf) in [("alone", &conf), ("agent", agent_conf)] {
        for r in 0..3 {
            let id = format!("trace-{how}-{r}");
            crate::invoke_logged(&margay, "ADD", &id, &nss.0[0], conf, true)?;
            crate::invoke_logged(&margay, "DEL", &id, &nss.0[0], conf, true)?;
        }
    }
    Ok(())
}

fn bench(
    rounds: usize,
    agent_conf: &Value,
    (names_watched, watched): &(String, Vec<String>),
) -> anyhow::Result<()> {
    let dir = std::env::temp_dir()
        .join(format!("cni-bench-live-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // Named like the lab's, so that `lab down` removes them if the bench
    // is killed.
    let nss = Namespaces::create("mglab-bench-harness", 1)?;
    let margay = crate::plugin()?;
    // The plugin on its own: a node name of its own, so that its
    // allocations do not make the agent's copy of node1's block stale at
    // every turn (on a node, one of the two serves every ADD).
    let mut alone_conf = agent_conf.clone();
    alone_conf
        .as_object_mut()
        .expect("object")
        .remove("agent_socket");
    alone_conf["nodename"] = "node1-alone".into();
    alone_conf["ipam_lock_file"] =
        dir.join("ipam-alone.lock").display().to_string().into();
    let ptp = PathBuf::from("/usr/lib/cni/ptp");
    let ptp_conf = json!({
        "cniVersion": "1.0.0", "name": "bench-ptp", "type": "ptp", "mtu": 1500,
        "ipam": {"type": "host-local", "subnet": "10.241.0.0/16",
                 "dataDir": dir.join("host-local"), "routes": [{"dst": "0.0.0.0/0"}]},
    });
    let truth = PathBuf::from("/bin/true");
    let mut harness: Vec<Duration> = (0..rounds.max(20))
        .map(|i| {
            invoke(&truth, "VERSION", &format!("h{i}"), &nss.0[0], &json!({}))
        })
        .collect::<anyhow::Result<_>>()?;
    let harness_p50 = pct(&mut harness, 0.5);
    println!(
        "rounds per case: {rounds}; harness (spawn+wait of /bin/true) p50 {harness_p50:.2}ms"
    );
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>9}",
        "case", "ADD p50", "ADD p99", "DEL p50", "DEL p99"
    );
    let names = ["margay via agent", "margay alone", "ptp+host-local"];
    let cases: [(&Path, &Value, &str); 3] = [
        (&margay, agent_conf, "a"),
        (&margay, &alone_conf, "m"),
        (&ptp, &ptp_conf, "p"),
    ];
    for (par, label) in [(1, "seq"), (CONCURRENCY, "16 conc")] {
        let samples = run(&cases, "mglab-bench", rounds, par)?;
        let mut rows = Vec::new();
        for (name, mut s) in names.into_iter().zip(samples) {
            let max = s.adds.iter().max().copied().unwrap_or_default();
            let q = [
                pct(&mut s.adds, 0.5),
                pct(&mut s.adds, 0.99),
                pct(&mut s.dels, 0.5),
                pct(&mut s.dels, 0.99),
            ];
            println!(
                "{:<34} {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>7.2}ms  (ADD max {:.2}ms = {:.1}x p50)",
                format!("{name} {label}"),
                q[0],
                q[1],
                q[2],
                q[3],
                max.as_secs_f64() * 1e3,
                max.as_secs_f64() * 1e3 / q[0],
            );
            rows.push((name, q));
        }
        let ptp_q = rows[2].1;
        for (name, q) in &rows[..2] {
            println!(
                "{:<34} {:>8.2}x {:>8.2}x {:>8.2}x {:>8.2}x  (ADD p50 - harness {:.2}ms)",
                format!("{name}/ptp {label}"),
                q[0] / ptp_q[0],
                q[1] / ptp_q[1],
                q[2] / ptp_q[2],
                q[3] / ptp_q[3],
                q[0] - harness_p50,
            );
        }
    }
    cpu_per_case(&cases, &names, rounds, watched, names_watched)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// CPU time per sequential ADD+DEL of each case alone, of the node's
/// processes and etcd and of the plugin processes (with what they exec),
/// against the same processes' CPU over an idle interval as long.
fn cpu_per_case(
    cases: &[(&Path, &Value, &str)],
    names: &[&str],
    rounds: usize,
    watched: &[String],
    names_watched: &str,
) -> anyhow::Result<()> {
    let tick_ms = 1e3
        / nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .unwrap_or(100) as f64;
    // cutime + cstime of this process: its reaped children (proc(5)).
    let children = || {
        let stat =
            std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        (f.get(13).copied().unwrap_or(0) + f.get(14).copied().unwrap_or(0))
            as f64
            * tick_ms
    };
    println!(
        "CPU per ADD+DEL, each case alone ({rounds} rounds), of {names_watched}, and this bench's children (plugins, their IPAM, ip netns add/del):"
    );
    let mut walls = Vec::new();
    for (case, name) in cases.iter().zip(names) {
        let before = cpu_ticks(watched);
        let before_children = children();
        let t0 = std::time::Instant::now();
        run(std::slice::from_ref(case), "mglab-bench", rounds, 1)?;
        walls.push(t0.elapsed());
        let per: Vec<String> = cpu_ticks(watched)
            .iter()
            .zip(&before)
            .map(|(a, b)| {
                format!("{:.2}", (a - b) as f64 * tick_ms / rounds as f64)
            })
            .collect();
        println!(
            "  {name:<18} {} | children {:.2} (ms; wall {:.2}ms per ADD+DEL)",
            per.join(" "),
            (children() - before_children) / rounds as f64,
            t0.elapsed().as_secs_f64() * 1e3 / rounds as f64,
        );
    }
    let idle = walls.iter().sum::<std::time::Duration>() / walls.len() as u32;
    let before = cpu_ticks(watched);
    std::thread::sleep(idle);
    let per: Vec<String> = cpu_ticks(watched)
        .iter()
        .zip(&before)
        .map(|(a, b)| {
            format!("{:.2}", (a - b) as f64 * tick_ms / rounds as f64)
        })
        .collect();
    println!(
        "  {:<18} {} (idle for as long, per round)",
        "idle",
        per.join(" ")
    );
    Ok(())
}
