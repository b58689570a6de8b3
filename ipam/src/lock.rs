//! The host-wide IPAM lock: an exclusive `flock(2)` on a file, held around
//! every allocation and release on one node so that concurrent CNI ADDs
//! there take turns instead of fighting over the node's blocks with CAS
//! retries (Calico takes the same lock on /var/run/calico/ipam.lock).
//! Cross-node safety never depends on it: that comes from CAS alone.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The default lock file.
pub const DEFAULT_LOCK_PATH: &str = "/var/run/margay/ipam.lock";

/// How often a waiter polls for the lock.
const POLL: Duration = Duration::from_millis(2);

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
    /// Takes the lock at `path` (creating the file and its directory),
    /// waiting at most `timeout`. Polls with a non-blocking flock so that
    /// the wait is bounded without signals or helper threads.
    pub fn acquire(path: &Path, timeout: Duration) -> Result<Self, LockError> {
        let open_err = |source| LockError::Open {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(open_err)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(open_err)?;
        let start = Instant::now();
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(flock) => return Ok(HostLock { _flock: flock }),
                Err((f, Errno::EWOULDBLOCK | Errno::EINTR)) => {
                    if start.elapsed() >= timeout {
                        return Err(LockError::Timeout {
                            path: path.to_path_buf(),
                            waited: start.elapsed(),
                        });
                    }
                    file = f;
                    std::thread::sleep(POLL);
                }
                Err((_, errno)) => {
                    return Err(LockError::Flock {
                        path: path.to_path_buf(),
                        source: errno,
                    });
                }
            }
        }
    }
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
        drop(first);
        HostLock::acquire(&path, Duration::from_millis(100)).unwrap();
    }
}
