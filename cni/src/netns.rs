//! Running netlink work inside a container's network namespace.
//!
//! A netlink socket belongs to the namespace of the thread that creates
//! it, and `setns(2)` changes only the calling thread. So each piece of
//! in-container work gets a fresh OS thread that enters the namespace,
//! builds a single-threaded tokio runtime, opens its own rtnetlink
//! connection and exits afterwards; no tokio worker ever changes namespace
//! (the workaround of rtnetlink issue #68; see crates.md "netns
//! entering"). Host-side work runs on the caller's runtime, removals on
//! a connection thread of their own ([`removal_handle`]).

use std::fs::File;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};
use nix::sys::statfs::{NSFS_MAGIC, fstatfs};
use rtnetlink::Handle;
use tokio::sync::oneshot;

/// Why in-namespace work could not run.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("cannot open network namespace {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} is not a network namespace (a bind mount of /proc/PID/ns/net \
         or a /proc/PID/ns/net path is expected): {what}"
    )]
    NotNetns { path: PathBuf, what: String },
    #[error("cannot enter network namespace {path}: {source}")]
    Enter {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("cannot start netlink in network namespace {path}: {source}")]
    Netlink {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the worker thread for network namespace {path} died")]
    ThreadDied { path: PathBuf },
}

impl NetnsError {
    /// True when the namespace itself does not exist (any more).
    pub fn is_missing(&self) -> bool {
        matches!(self, NetnsError::Open { source, .. }
            if source.kind() == io::ErrorKind::NotFound)
    }
}

/// Opens a namespace file (e.g. /run/netns/x or /proc/PID/ns/net),
/// refusing anything else before it is used: setns(2) on a regular file
/// only fails later, with a bare EINVAL.
pub fn open(path: &Path) -> Result<File, NetnsError> {
    let file = File::open(path).map_err(|source| NetnsError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let not_netns = |what: String| NetnsError::NotNetns {
        path: path.to_path_buf(),
        what,
    };
    // Namespace files live on nsfs (since Linux 3.19; /proc/PID/ns/net
    // and a bind mount of it resolve to it).
    let fs = fstatfs(&file)
        .map_err(|e| not_netns(format!("statfs: {e}")))?
        .filesystem_type();
    if fs != NSFS_MAGIC {
        let kind = match file.metadata() {
            Ok(m) if m.is_dir() => "a directory".to_string(),
            Ok(m) if m.is_file() => "a regular file".to_string(),
            Ok(_) => "not a namespace file".to_string(),
            Err(e) => e.to_string(),
        };
        return Err(not_netns(kind));
    }
    Ok(file)
}

/// Runs `work` with a netlink handle bound to the namespace `ns` (opened
/// from `path`) on a dedicated thread, and awaits its result without
/// blocking the caller's runtime.
pub async fn run_in<F, Fut, T>(
    path: &Path,
    ns: File,
    work: F,
) -> Result<T, NetnsError>
where
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let owned = path.to_path_buf();
    std::thread::Builder::new()
        .name("netns".into())
        .spawn(move || {
            let _ = tx.send(enter_and_run(&owned, ns, work));
        })
        .map_err(|source| NetnsError::Netlink {
            path: path.to_path_buf(),
            source,
        })?;
    rx.await.map_err(|_| NetnsError::ThreadDied {
        path: path.to_path_buf(),
    })?
}

/// The body of the worker thread: setns, then a private runtime.
fn enter_and_run<F, Fut, T>(
    path: &Path,
    ns: File,
    work: F,
) -> Result<T, NetnsError>
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = T>,
{
    setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|source| {
        NetnsError::Enter {
            path: path.to_path_buf(),
            source,
        }
    })?;
    let nl_err = |source| NetnsError::Netlink {
        path: path.to_path_buf(),
        source,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(nl_err)?;
    rt.block_on(async move {
        // Created after setns, so the socket lives in the container.
        let (conn, handle, _) = rtnetlink::new_connection().map_err(nl_err)?;
        tokio::spawn(conn);
        Ok(work(handle).await)
    })
}

/// A netlink handle in the caller's (host) namespace, its connection
/// driven on the current runtime.
pub fn host_handle() -> io::Result<Handle> {
    let (conn, handle, _) = rtnetlink::new_connection()?;
    tokio::spawn(conn);
    Ok(handle)
}

/// A netlink handle in the host namespace for link removals, whose
/// connection runs on a thread of its own: the kernel removes a link
/// inside the `sendmsg` of the request and waits there for an RCU grace
/// period (~20 ms), which on the caller's runtime would stall every other
/// task on that thread (in the node agent: other invocations). A few
/// long-lived connections, each on its own thread and made on first use,
/// serve the whole process in turn: a thread per removal would be made
/// and torn down next to the next ADD, and one for all would queue a
/// burst of removals behind each other's grace periods.
pub async fn removal_handle() -> io::Result<Handle> {
    const SLOTS: usize = 4;
    static HANDLES: [tokio::sync::OnceCell<Handle>; SLOTS] =
        [const { tokio::sync::OnceCell::const_new() }; SLOTS];
    static NEXT: std::sync::atomic::AtomicUsize =
        std::sync::atomic::AtomicUsize::new(0);
    let slot = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % SLOTS;
    HANDLES[slot]
        .get_or_try_init(spawn_connection_thread)
        .await
        .cloned()
}

async fn spawn_connection_thread() -> io::Result<Handle> {
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("netlink".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                // Made here: the socket registers with this runtime.
                match rtnetlink::new_connection() {
                    Ok((conn, handle, _)) => {
                        let _ = tx.send(Ok(handle));
                        conn.await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        })?;
    rx.await
        .map_err(|_| io::Error::other("the netlink thread ended early"))?
}
