//! Supervision of bgpd and felix-lite: restart with backoff, stop on
//! shutdown.

use std::path::PathBuf;
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
}

/// Live facts about a supervised child, read by the health endpoint.
#[derive(Debug, Default)]
pub struct ChildState {
    pub running: AtomicBool,
    pub restarts: AtomicU32,
    pub pid: AtomicU32,
}

/// Runs `spec` until `shutdown` turns true, restarting it whenever it exits.
/// On shutdown the child gets SIGTERM, then SIGKILL after `grace`.
pub async fn supervise(
    spec: ChildSpec,
    state: Arc<ChildState>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut backoff = Backoff::default();
    let mut again = false;
    while !*shutdown.borrow() {
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
                stop_child(&spec, &mut child, grace).await;
                state.running.store(false, Ordering::Relaxed);
                break;
            }
        }
    }
}

/// Sleeps for `delay`; true when shutdown was requested meanwhile.
async fn wait_or_shutdown(
    shutdown: &mut watch::Receiver<bool>,
    delay: Duration,
) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}

async fn stop_child(
    spec: &ChildSpec,
    child: &mut tokio::process::Child,
    grace: Duration,
) {
    if let Some(pid) = child.id() {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
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
        };
        let state = Arc::new(ChildState::default());
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(supervise(
            spec,
            state.clone(),
            rx,
            Duration::from_secs(1),
        ));
        // 200 ms + 400 ms backoff: at least three starts in ~1 s.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        tx.send(true).unwrap();
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
        };
        let state = Arc::new(ChildState::default());
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(supervise(
            spec,
            state.clone(),
            rx,
            Duration::from_secs(2),
        ));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(state.running.load(Ordering::Relaxed));
        let pid = state.pid.load(Ordering::Relaxed);
        tx.send(true).unwrap();
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
