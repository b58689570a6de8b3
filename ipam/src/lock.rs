//! The host-wide IPAM lock: an exclusive `flock(2)` on a file, held around
//! every allocation and release on one node so that concurrent CNI ADDs
//! there take turns instead of fighting over the node's blocks with CAS
//! retries (Calico takes the same lock on /var/run/calico/ipam.lock).
//! Cross-node safety never depends on it: that comes from CAS alone.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The default lock file.
pub const DEFAULT_LOCK_PATH: &str = "/var/run/margay/ipam.lock";

/// A held host lock; released when dropped (or when the process dies, which
/// is why it is a flock and not a lock file that could go stale).
#[derive(Debug)]
pub struct HostLock {
    _flock: Flock<File>,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot open the IPAM host lock file {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("timed out after {waited:?} waiting for the IPAM host lock {path}")]
    Timeout { path: PathBuf, waited: Duration },
    #[error("flock on {path} failed: {source}")]
    Flock {
        path: PathBuf,
        #[source]
        source: Errno,
    },
}

impl HostLock {
    /// Takes the lock at `path` if it is free, without waiting (Ok(None)
    /// when another holder has it): no thread needed for the common,
    /// uncontended case.
    pub fn try_acquire(path: &Path) -> Result<Option<Self>, LockError> {
        let file = open(path)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(flock) => Ok(Some(HostLock { _flock: flock })),
            Err((_, Errno::EWOULDBLOCK | Errno::EINTR)) => Ok(None),
            Err((_, errno)) => Err(LockError::Flock {
                path: path.to_path_buf(),
                source: errno,
            }),
        }
    }

    /// Takes the lock at `path` (creating the file and its directory),
    /// waiting at most `timeout`. A contended lock is waited for with a
    /// blocking flock on a helper thread: the kernel wakes it the moment
    /// the holder lets go, where polling added up to one poll interval
    /// per waiter and lost races to newcomers (the 16-concurrent-ADD tail).
    pub fn acquire(path: &Path, timeout: Duration) -> Result<Self, LockError> {
        let open_err = |source| LockError::Open {
            path: path.to_path_buf(),
            source,
        };
        let file = open(path)?;
        let flock_err = |source| LockError::Flock {
            path: path.to_path_buf(),
            source,
        };
        let file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(flock) => return Ok(HostLock { _flock: flock }),
            Err((f, Errno::EWOULDBLOCK | Errno::EINTR)) => f,
            Err((_, errno)) => return Err(flock_err(errno)),
        };
        let start = Instant::now();
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("ipam-lock".into())
            .spawn(move || {
                let mut file = file;
                let res = loop {
                    match Flock::lock(file, FlockArg::LockExclusive) {
                        Err((f, Errno::EINTR)) => file = f,
                        other => break other.map_err(|(_, e)| e),
                    }
                };
                // After a timeout nobody receives: the lock, if taken, is
                // dropped (released) right here.
                let _ = tx.send(res);
            })
            .map_err(open_err)?;
        match rx.recv_timeout(timeout) {
            Ok(Ok(flock)) => Ok(HostLock { _flock: flock }),
            Ok(Err(errno)) => Err(flock_err(errno)),
            Err(_) => Err(LockError::Timeout {
                path: path.to_path_buf(),
                waited: start.elapsed(),
            }),
        }
    }
}

/// Opens (creating it and its directory) the lock file.
fn open(path: &Path) -> Result<File, LockError> {
    let open_err = |source| LockError::Open {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(open_err)?;
    }
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(open_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_waits_until_the_first_drops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/ipam.lock");
        let first = HostLock::acquire(&path, Duration::from_secs(1)).unwrap();
        let err =
            HostLock::acquire(&path, Duration::from_millis(30)).unwrap_err();
        assert!(matches!(err, LockError::Timeout { .. }), "{err}");
        assert!(HostLock::try_acquire(&path).unwrap().is_none());
        drop(first);
        HostLock::acquire(&path, Duration::from_secs(5)).unwrap();
    }

    #[test]
    fn blocked_waiter_gets_the_lock_when_the_holder_drops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipam.lock");
        let first = HostLock::acquire(&path, Duration::from_secs(1)).unwrap();
        let p = path.clone();
        let waiter = std::thread::spawn(move || {
            HostLock::acquire(&p, Duration::from_secs(30)).map(drop)
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "got the lock while it was held");
        drop(first);
        waiter.join().unwrap().unwrap();
    }
}
