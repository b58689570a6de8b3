//! Supervision of bgpd and felix-lite: restart with backoff, stop on
//! shutdown.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::Command;
use tokio::sync::watch;
use tracing::{info, warn};

/// Restart delay policy: doubles after each quick crash, resets once a child
/// has run for `healthy_after`.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    healthy_after: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration, healthy_after: Duration) -> Self {
        Backoff {
            min,
            max,
            healthy_after,
            current: min,
        }
    }

    /// The delay before the next start, given how long the last run lasted.
    pub fn next_delay(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= self.healthy_after {
            self.current = self.min;
        }
        let delay = self.current;
        self.current = (self.current * 2).min(self.max);
        delay
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(
            Duration::from_millis(200),
            Duration::from_secs(30),
            Duration::from_secs(60),
        )
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    pub name: &'static str,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Appended to `args` when the child is started again after it
    /// exited (bgpd then restarts gracefully: felix-lite kept the FIB).
    pub restart_args: Vec<String>,
    /// The signal that stops the child for a planned restart
    /// ([`Stop::Restart`]); a shutdown always sends SIGTERM. bgpd: SIGUSR1
    /// (close the sessions keeping graceful restart, not Cease).
    pub restart_signal: Signal,
}

/// Whether and how the supervised children stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Keep them running.
    No,
    /// For good (uninstall, node shutdown): SIGTERM; bgpd sends its
    /// peers Cease / Administrative Shutdown.
    Shutdown,
    /// The agent restarts: each child gets its `restart_signal`.
    Restart,
}

/// Live facts about a supervised child, read by the health endpoint.
#[derive(Debug, Default)]
pub struct ChildState {
    pub running: AtomicBool,
    pub restarts: AtomicU32,
    pub pid: AtomicU32,
}

/// The file in the run directory that tells the next agent that this one
/// stopped for a planned restart, so bgpd's first start is a graceful
/// restart (RFC 4724: the peers and felix-lite kept our routes).
pub const RESTART_MARKER: &str = "bgpd.restarting";

/// Leave the marker (before stopping the children for a restart).
pub fn write_restart_marker(run_dir: &Path) -> std::io::Result<()> {
    std::fs::write(run_dir.join(RESTART_MARKER), b"")
}

/// Take (remove) the marker; true when one was left less than `max_age`
/// ago. An older one is stale: the peers no longer keep our routes
/// (their restart time ran out), so a graceful restart would only delay
/// our advertisements.
pub fn take_restart_marker(run_dir: &Path, max_age: Duration) -> bool {
    let path = run_dir.join(RESTART_MARKER);
    let fresh = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|age| age < max_age));
    let _ = std::fs::remove_file(&path);
    fresh
}

/// Runs `spec` until `shutdown` leaves [`Stop::No`], restarting it whenever
/// it exits. Then the child gets SIGTERM (or its restart signal), and
/// SIGKILL after `grace`.
pub async fn supervise(
    spec: ChildSpec,
    state: Arc<ChildState>,
    mut shutdown: watch::Receiver<Stop>,
    grace: Duration,
) {
    let mut backoff = Backoff::default();
    let mut again = false;
    while *shutdown.borrow() == Stop::No {
        let started = tokio::time::Instant::now();
        let extra = if again { &spec.restart_args[..] } else { &[] };
        again = true;
        let mut child = match Command::new(&spec.program)
            .args(&spec.args)
            .args(extra)
            .kill_on_drop(true)
            .spawn()
        {
            Ok(child) => child,
            Err(e) => {
                warn!(child = spec.name, program = %spec.program.display(),
                      error = %e, "cannot start");
                let delay = backoff.next_delay(Duration::ZERO);
                if wait_or_shutdown(&mut shutdown, delay).await {
                    break;
                }
                continue;
            }
        };
        let pid = child.id().unwrap_or(0);
        state.pid.store(pid, Ordering::Relaxed);
        state.running.store(true, Ordering::Relaxed);
        info!(child = spec.name, pid, "started");
        tokio::select! {
            status = child.wait() => {
                state.running.store(false, Ordering::Relaxed);
                state.restarts.fetch_add(1, Ordering::Relaxed);
                let ran_for = started.elapsed();
                let delay = backoff.next_delay(ran_for);
                warn!(child = spec.name, pid, ?status,
                      ran_for_ms = ran_for.as_millis() as u64,
                      restart_in_ms = delay.as_millis() as u64, "exited");
                if wait_or_shutdown(&mut shutdown, delay).await {
                    break;
                }
            }
            _ = shutdown.changed() => {
                let how = *shutdown.borrow();
                stop_child(&spec, &mut child, grace, how).await;
                state.running.store(false, Ordering::Relaxed);
                break;
            }
        }
    }
}

/// Sleeps for `delay`; true when shutdown was requested meanwhile.
async fn wait_or_shutdown(
    shutdown: &mut watch::Receiver<Stop>,
    delay: Duration,
) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => *shutdown.borrow() != Stop::No,
        _ = shutdown.changed() => true,
    }
}

async fn stop_child(
    spec: &ChildSpec,
    child: &mut tokio::process::Child,
    grace: Duration,
    how: Stop,
) {
    let sig = match how {
        Stop::Restart => spec.restart_signal,
        Stop::No | Stop::Shutdown => Signal::SIGTERM,
    };
    if let Some(pid) = child.id() {
        let _ = kill(Pid::from_raw(pid as i32), sig);
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        warn!(child = spec.name, "did not stop in time; killing");
        let _ = child.kill().await;
    }
    info!(child = spec.name, "stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A planned restart stops the child with its restart signal, a
    /// shutdown with SIGTERM: the child (a shell trapping both) says which.
    #[tokio::test]
    async fn restart_and_shutdown_send_different_signals() {
        for (how, want) in [(Stop::Restart, "usr1"), (Stop::Shutdown, "term")] {
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("got");
            let ready = dir.path().join("ready");
            let script = format!(
                "trap 'echo usr1 > {o}; exit 0' USR1; \
                 trap 'echo term > {o}; exit 0' TERM; \
                 touch {r}; while :; do sleep 0.05; done",
                o = out.display(),
                r = ready.display()
            );
            let spec = ChildSpec {
                name: "trapper",
                program: "/bin/sh".into(),
                args: vec!["-c".into(), script],
                restart_args: Vec::new(),
                restart_signal: Signal::SIGUSR1,
            };
            let (tx, rx) = watch::channel(Stop::No);
            let task = tokio::spawn(supervise(
                spec,
                Arc::new(ChildState::default()),
                rx,
                Duration::from_secs(5),
            ));
            for _ in 0..100 {
                if ready.exists() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tx.send(how).unwrap();
            task.await.unwrap();
            let got = std::fs::read_to_string(&out).unwrap_or_default();
            assert_eq!(got.trim(), want, "{how:?}");
        }
    }

    #[test]
    fn restart_marker_is_taken_once_and_only_when_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let long = Duration::from_secs(120);
        assert!(!take_restart_marker(dir.path(), long));
        write_restart_marker(dir.path()).unwrap();
        assert!(take_restart_marker(dir.path(), long));
        assert!(!take_restart_marker(dir.path(), long), "taken");
        write_restart_marker(dir.path()).unwrap();
        assert!(!take_restart_marker(dir.path(), Duration::ZERO), "stale");
        assert!(!dir.path().join(RESTART_MARKER).exists());
    }

    #[test]
    fn backoff_doubles_and_resets_after_a_healthy_run() {
        let s = Duration::from_secs;
        let mut b = Backoff::new(s(1), s(8), s(60));
        let quick = Duration::ZERO;
        let delays: Vec<_> = (0..5).map(|_| b.next_delay(quick)).collect();
        assert_eq!(delays, vec![s(1), s(2), s(4), s(8), s(8)]);
        assert_eq!(b.next_delay(s(61)), s(1));
    }

    #[tokio::test]
    async fn restarts_a_crashing_child_and_stops_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("starts");
        let spec = ChildSpec {
            name: "test",
            program: "/bin/sh".into(),
            // `sh -c SCRIPT sh [again]`: $1 is the restart argument.
            args: vec![
                "-c".into(),
                format!("echo \"start $1\" >> {}; exit 1", marker.display()),
                "sh".into(),
            ],
            restart_args: vec!["again".into()],
            restart_signal: Signal::SIGTERM,
        };
        let state = Arc::new(ChildState::default());
        let (tx, rx) = watch::channel(Stop::No);
        let task = tokio::spawn(supervise(
            spec,
            state.clone(),
            rx,
            Duration::from_secs(1),
        ));
        // 200 ms + 400 ms backoff: at least three starts in ~1 s.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        tx.send(Stop::Shutdown).unwrap();
        task.await.unwrap();
        let starts = std::fs::read_to_string(&marker).unwrap();
        let starts: Vec<&str> = starts.lines().collect();
        assert!(starts.len() >= 3, "only {starts:?}");
        // Only restarts get the restart arguments.
        assert_eq!(starts[0], "start ");
        assert!(
            starts[1..].iter().all(|l| *l == "start again"),
            "{starts:?}"
        );
        assert!(state.restarts.load(Ordering::Relaxed) >= 3);
    }

    #[tokio::test]
    async fn shutdown_terminates_a_long_running_child() {
        let spec = ChildSpec {
            name: "sleeper",
            program: "/bin/sleep".into(),
            args: vec!["600".into()],
            restart_args: Vec::new(),
            restart_signal: Signal::SIGTERM,
        };
        let state = Arc::new(ChildState::default());
        let (tx, rx) = watch::channel(Stop::No);
        let task = tokio::spawn(supervise(
            spec,
            state.clone(),
            rx,
            Duration::from_secs(2),
        ));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(state.running.load(Ordering::Relaxed));
        let pid = state.pid.load(Ordering::Relaxed);
        tx.send(Stop::Shutdown).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("supervisor stops")
            .unwrap();
        assert!(!state.running.load(Ordering::Relaxed));
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| s.contains(") Z "))
                    .unwrap_or(true)
        );
    }
}
