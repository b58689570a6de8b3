//! Test harness shared by margay's integration tests.
//!
//! Everything here creates real things (network namespaces, veth pairs,
//! bridges, an etcd process, a kube-apiserver) and removes them on `Drop`, so a failing or
//! panicking test leaves nothing behind. Tests that need root are marked
//! `#[ignore = "needs root ..."]`, so a plain `cargo test` reports them as
//! ignored (never as passed); `scripts/test` runs them as root with
//! `--include-ignored`. They call [`require_root`] first, which fails them
//! with a clear message when they are included without root.

mod etcd;
pub mod fake_kube;
mod kube_apiserver;
mod netns;

use std::net::TcpListener;
use std::time::{Duration, Instant};

pub use etcd::{EtcdServer, EtcdTlsFiles};
pub use kube_apiserver::{
    KUBE_VERSION, KubeApiServer, deploy_dir, kube_apiserver_binary,
    kube_apiserver_path, kubectl_path,
};
pub use netns::{Netns, Segment, veth_between};

/// True when the effective uid is 0; otherwise fails `test`, which was
/// asked for (`--include-ignored`) without the root it needs.
pub fn require_root(test: &str) -> bool {
    assert_eq!(
        effective_uid(),
        Some(0),
        "{test} needs root for network namespaces: run it as root \
         (scripts/test does), or leave it ignored"
    );
    true
}

/// The effective uid, read from /proc so that no `unsafe` libc call is needed.
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    // "Uid: real effective saved fs"
    line.split_whitespace().nth(2)?.parse().ok()
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral loopback port")
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns
/// whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `program` is on PATH.
pub fn have_program(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|d| d.join(program).is_file())
    })
}
