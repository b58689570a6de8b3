//! Reachability between every pair of pods: an ICMP echo and a TCP
//! exchange from each pod to every address of every other pod.
//!
//! A big lab runs some 150 daemons on a small machine, so a single lost or
//! late reply does not mean the fabric is broken. The checks run on a
//! bounded pool of workers (so the probes themselves do not overload the
//! machine), each with a generous timeout ([`probe::PROBE_TIMEOUT`]), and a
//! failed check is tried again after a pause, up to [`ATTEMPTS`] times. A
//! check that fails every attempt is a real failure and is reported with
//! its last error; checks that passed only on a retry are counted in the
//! report, not hidden.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::probe;
use crate::state::PodState;

/// From pod `a` to address `k` of pod `b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Target {
    pub a: usize,
    pub b: usize,
    pub k: usize,
}

/// The two checks of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Check {
    Icmp,
    Tcp,
}

impl Check {
    pub fn name(self) -> &'static str {
        match self {
            Check::Icmp => "ICMP",
            Check::Tcp => "TCP",
        }
    }
}

/// A check's final result, how many attempts it took and why the first
/// one failed (when it did): retries must not hide what went wrong.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub result: Result<(), String>,
    pub attempts: u32,
    pub first_error: Option<String>,
}

pub(crate) type Results = BTreeMap<(Target, Check), Outcome>;

/// Attempts per check before it counts as failed.
pub(crate) const ATTEMPTS: u32 = 3;
/// Checks in flight at once: enough to finish 2450 pairs in well under a
/// minute, few enough not to starve the daemons under test.
const WORKERS: usize = 8;
/// Between rounds of retries: lets a load spike pass.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Every pod to every address of every other pod.
pub(crate) fn targets(pods: &[PodState]) -> Vec<Target> {
    (0..pods.len())
        .flat_map(|a| {
            (0..pods.len()).filter(move |&b| b != a).flat_map(move |b| {
                (0..pods[b].ips.len()).map(move |k| Target { a, b, k })
            })
        })
        .collect()
}

/// The TCP port of target number `i`: distinct for every check that can
/// be in flight at once.
fn port_of(i: usize) -> u16 {
    20000 + (i % 40000) as u16
}

struct Job {
    target: Target,
    check: Check,
    port: u16,
}

fn run_check(pods: &[PodState], job: &Job) -> Result<(), String> {
    let t = job.target;
    let dst: IpAddr = pods[t.b].ips[t.k]
        .parse()
        .map_err(|e| format!("pod address {:?}: {e}", pods[t.b].ips[t.k]))?;
    match job.check {
        Check::Icmp => probe::ping(&pods[t.a].netns, dst),
        Check::Tcp => {
            probe::tcp(&pods[t.a].netns, &pods[t.b].netns, dst, job.port)
        }
    }
}

/// Runs `jobs` on [`WORKERS`] threads; results in the order of `jobs`.
fn run_pool(pods: &[PodState], jobs: &[Job]) -> Vec<Result<(), String>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<(), String>>>> =
        Mutex::new(vec![None; jobs.len()]);
    std::thread::scope(|s| {
        for _ in 0..WORKERS.min(jobs.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { return };
                    let r = run_check(pods, job);
                    results.lock().expect("no worker panics holding it")[i] =
                        Some(r);
                }
            });
        }
    });
    results
        .into_inner()
        .expect("workers done")
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("check did not run".into())))
        .collect()
}

/// Probes every target with both checks, retrying failed checks; blocks
/// (run it on a blocking thread).
pub(crate) fn probe_all(pods: &[PodState], targets: &[Target]) -> Results {
    let mut jobs: Vec<Job> = targets
        .iter()
        .enumerate()
        .flat_map(|(i, &target)| {
            [Check::Icmp, Check::Tcp].map(|check| Job {
                target,
                check,
                port: port_of(i),
            })
        })
        .collect();
    let mut results = Results::new();
    for attempt in 1..=ATTEMPTS {
        if attempt > 1 {
            println!(
                "    retrying {} failed checks (attempt {attempt}/{ATTEMPTS})",
                jobs.len()
            );
            std::thread::sleep(RETRY_PAUSE);
        }
        let outcomes = run_pool(pods, &jobs);
        let mut failed = Vec::new();
        for (job, result) in jobs.into_iter().zip(outcomes) {
            let ok = result.is_ok();
            let first_error = match results.get(&(job.target, job.check)) {
                Some(earlier) => earlier.first_error.clone(),
                None => result.as_ref().err().cloned(),
            };
            results.insert(
                (job.target, job.check),
                Outcome {
                    result,
                    attempts: attempt,
                    first_error,
                },
            );
            if !ok {
                failed.push(job);
            }
        }
        if failed.is_empty() {
            break;
        }
        jobs = failed;
    }
    results
}

/// Checks that passed, but not on their first attempt.
pub(crate) fn passed_on_retry(results: &Results) -> usize {
    results
        .values()
        .filter(|o| o.result.is_ok() && o.attempts > 1)
        .count()
}

/// Why checks failed at first, grouped: check, error with addresses and
/// ports blanked out, and how often; most frequent first.
pub(crate) fn first_failures(results: &Results) -> Vec<(Check, String, usize)> {
    let mut groups: BTreeMap<(Check, String), usize> = BTreeMap::new();
    for ((_, check), o) in results {
        if let Some(e) = &o.first_error {
            *groups.entry((*check, blank_addresses(e))).or_default() += 1;
        }
    }
    let mut out: Vec<(Check, String, usize)> =
        groups.into_iter().map(|((c, e), n)| (c, e, n)).collect();
    out.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.cmp(b)));
    out
}

/// `connect to 10.0.0.1:20001: timed out` -> `connect to ADDR: timed out`.
fn blank_addresses(error: &str) -> String {
    error
        .split(' ')
        .map(|word| {
            let bare = word.trim_end_matches([':', ',', ';']);
            let is_addr = bare.parse::<IpAddr>().is_ok()
                || bare.parse::<std::net::SocketAddr>().is_ok();
            if is_addr {
                word.replacen(bare, "ADDR", 1)
            } else {
                word.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ips: &[&str]) -> PodState {
        PodState {
            name: name.into(),
            node: "node1".into(),
            netns: format!("mglab-{name}"),
            container_id: name.into(),
            ips: ips.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn every_pod_targets_every_address_of_every_other_pod() {
        let pods = [
            pod("a", &["10.0.0.1"]),
            pod("b", &["10.0.0.2", "fd44::2"]),
            pod("c", &["10.0.0.3"]),
        ];
        let t = targets(&pods);
        // a: b twice, c; b: a, c; c: a, b twice.
        assert_eq!(t.len(), 3 + 2 + 3);
        assert!(t.iter().all(|t| t.a != t.b));
        assert!(t.contains(&Target { a: 0, b: 1, k: 1 }));
    }

    #[test]
    fn ports_of_concurrent_checks_differ() {
        let ports: std::collections::BTreeSet<u16> =
            (0..WORKERS * 4).map(port_of).collect();
        assert_eq!(ports.len(), WORKERS * 4);
        assert!((0..200_000).all(|i| port_of(i) >= 20000));
    }

    #[test]
    fn retried_passes_are_counted() {
        let t = Target { a: 0, b: 1, k: 0 };
        let mut r = Results::new();
        let u = Target { a: 1, b: 0, k: 0 };
        let timed_out = |ip: &str| format!("connect to {ip}:20001: timed out");
        r.insert(
            (t, Check::Icmp),
            Outcome {
                result: Ok(()),
                attempts: 2,
                first_error: Some("ping 10.0.0.2: no reply".into()),
            },
        );
        r.insert(
            (t, Check::Tcp),
            Outcome {
                result: Err(timed_out("10.0.0.2")),
                attempts: 3,
                first_error: Some(timed_out("10.0.0.2")),
            },
        );
        r.insert(
            (u, Check::Tcp),
            Outcome {
                result: Ok(()),
                attempts: 2,
                first_error: Some(timed_out("10.0.0.1")),
            },
        );
        r.insert(
            (u, Check::Icmp),
            Outcome {
                result: Ok(()),
                attempts: 1,
                first_error: None,
            },
        );
        assert_eq!(passed_on_retry(&r), 2);
        assert_eq!(
            first_failures(&r),
            vec![
                (Check::Tcp, "connect to ADDR: timed out".to_string(), 2),
                (Check::Icmp, "ping ADDR: no reply".to_string(), 1),
            ]
        );
    }
}
