//! The node agent side: serves relayed invocations on a unix socket.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{
    DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::{UnixListener, UnixStream};
use tracing::Instrument;

use super::{MAX_REQUEST, Reply, Request};
use crate::error::{CniError, Code};
use crate::ipam::DatastoreCache;
use crate::run;

/// Worker threads of the service's runtime. The kernel does netlink work
/// inside the calling thread's `sendmsg`: creating a veth takes ~1 ms
/// there, so with a few threads a burst of pod starts overlaps as it does
/// with one plugin process per pod. Removing one waits ~20 ms for an RCU
/// grace period, so DEL runs it on a thread of its own
/// (`netns::removal_handle`), as in-container work always is
/// (`netns::run_in`).
const WORKERS: usize = 4;

/// Connections refused because the peer was not root (see [`handle`]).
static REFUSED_PEERS: AtomicU64 = AtomicU64::new(0);

/// Connections being answered.
static IN_FLIGHT: AtomicU64 = AtomicU64::new(0);

/// How many connections are being answered now (a server that stops
/// waits for none).
pub fn in_flight() -> u64 {
    IN_FLIGHT.load(Ordering::Relaxed)
}

/// How many connections this process refused because the peer was not
/// root, since it started.
pub fn refused_peers() -> u64 {
    REFUSED_PEERS.load(Ordering::Relaxed)
}

/// This process's CNI server metrics as an OpenMetrics exposition
/// (`margay-node cni-server --metrics-addr`).
pub fn metrics() -> String {
    format!(
        "# HELP margay_cni_server_refused_peers Connections to the CNI socket refused because the peer was not root.\n\
         # TYPE margay_cni_server_refused_peers counter\n\
         margay_cni_server_refused_peers_total {}\n\
         # HELP margay_cni_server_in_flight CNI invocations being answered.\n\
         # TYPE margay_cni_server_in_flight gauge\n\
         margay_cni_server_in_flight {}\n\
         # EOF\n",
        refused_peers(),
        in_flight()
    )
}

/// Binds the agent's socket at `path`, replacing a stale one left by an
/// earlier agent. Only root may connect: the socket's directory is made
/// root's alone (mode 0700, created if missing), the socket is mode 0600,
/// and [`handle`] checks each peer's credentials as well. Fails if
/// another agent answers there.
pub fn bind(path: &Path) -> io::Result<std::os::unix::net::UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        private_dir(dir)?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("another agent serves {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = std::os::unix::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Creates `dir` (and its parents) mode 0700 if missing. An existing
/// directory must be the agent's and writable by nobody else: whoever may
/// write the socket's directory could replace the socket. (A directory
/// is never chmod-ed here: it may be shared, e.g. /run.)
fn private_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let meta = std::fs::metadata(dir)?;
    let me = nix::unistd::geteuid().as_raw();
    let mode = meta.permissions().mode() & 0o7777;
    if meta.uid() != me || mode & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} (uid {}, mode {mode:04o}) is not private to the agent's \
                 uid {me}: put the socket in a directory only it may write \
                 (one that does not exist yet is created with mode 0700)",
                dir.display(),
                meta.uid()
            ),
        ));
    }
    Ok(())
}

/// Serves `listener` on a runtime of its own (see [`WORKERS`]), on a
/// thread that runs for the life of the process.
pub fn spawn(
    listener: std::os::unix::net::UnixListener,
) -> io::Result<std::thread::JoinHandle<()>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .thread_name("cni-service")
        .enable_all()
        .build()?;
    let listener = {
        let _guard = rt.enter();
        UnixListener::from_std(listener)?
    };
    std::thread::Builder::new()
        .name("cni-service".into())
        .spawn(move || rt.block_on(serve(listener, Arc::default())))
}

/// Serves connections until the listener fails; each invocation runs in
/// its own task, so a slow ADD does not hold up others (the IPAM host
/// lock serialises what must be).
async fn serve(listener: UnixListener, datastores: Arc<DatastoreCache>) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of descriptors, most likely: give requests in
                // flight time to finish instead of spinning.
                tracing::warn!(error = %e, "CNI socket accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let ds = datastores.clone();
        IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            if let Err(e) = handle(stream, &ds).await {
                tracing::warn!(error = %e, "CNI request failed");
            }
            IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Answers one connection. Only root may use the socket (the runtime
/// runs the plugin as root): the directory and socket modes already keep
/// others out, and SO_PEERCRED checks it again, in case a mode was
/// loosened on the host.
async fn handle(mut stream: UnixStream, ds: &DatastoreCache) -> io::Result<()> {
    let cred = stream.peer_cred()?;
    let reply = if cred.uid() != 0 {
        REFUSED_PEERS.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            uid = cred.uid(),
            pid = ?cred.pid(),
            refused = refused_peers(),
            "CNI socket: refused a peer that is not root"
        );
        refused(
            Code::Io,
            format!(
                "permission denied: uid {} may not use the CNI socket (root only)",
                cred.uid()
            ),
        )
    } else {
        let (bytes, netns) = read_request(&stream).await?;
        tracing::debug!(
            bytes = bytes.len(),
            netns = netns.is_some(),
            "CNI request read"
        );
        match serde_json::from_slice::<Request>(&bytes) {
            Ok(req) => invoke(req, netns, ds).await,
            Err(e) => refused(Code::Decode, format!("malformed request: {e}")),
        }
    };
    let text = serde_json::to_vec(&reply).map_err(io::Error::other)?;
    stream.write_all(&text).await?;
    let done = stream.shutdown().await;
    tracing::debug!(exit = reply.exit, "CNI reply sent");
    done
}

/// A request the agent will not run, answered as the plugin answers any
/// error (no config to take a cniVersion from).
fn refused(code: Code, msg: String) -> Reply {
    let (exit, stdout) = run::render(Err(CniError::new(code, msg)), &[]);
    Reply { exit, stdout }
}

/// Runs one relayed invocation; the namespace handle stays open until it
/// is done.
async fn invoke(
    req: Request,
    netns: Option<PassedFd>,
    ds: &DatastoreCache,
) -> Reply {
    let handle = netns
        .as_ref()
        .map(|fd| PathBuf::from(format!("/proc/self/fd/{}", fd.0)));
    let span = tracing::info_span!(
        "cni",
        command = req.env.get("CNI_COMMAND").map(String::as_str).unwrap_or(""),
        container = req
            .env
            .get("CNI_CONTAINERID")
            .map(String::as_str)
            .unwrap_or("")
    );
    let stdin = req.stdin.into_bytes();
    let env = req.env;
    let outcome =
        run::execute_relayed(|k| env.get(k).cloned(), handle, &stdin, ds)
            .instrument(span)
            .await;
    drop(netns);
    let (exit, stdout) = run::render(outcome, &stdin);
    Reply { exit, stdout }
}

/// Reads the request to EOF, keeping the first descriptor passed along.
async fn read_request(
    stream: &UnixStream,
) -> io::Result<(Vec<u8>, Option<PassedFd>)> {
    let mut data = Vec::new();
    let mut netns = None;
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        stream.readable().await?;
        let got = stream.try_io(Interest::READABLE, || {
            recv_chunk(stream.as_raw_fd(), &mut chunk, &mut netns)
        });
        match got {
            Ok(0) => return Ok((data, netns)),
            Ok(n) => data.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
        if data.len() > MAX_REQUEST {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("request larger than {MAX_REQUEST} bytes"),
            ));
        }
    }
}

/// One recvmsg: the bytes read, and any descriptors (the first kept in
/// `netns`, the rest closed).
fn recv_chunk(
    fd: i32,
    buf: &mut [u8],
    netns: &mut Option<PassedFd>,
) -> io::Result<usize> {
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 2]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        fd,
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for raw in fds {
                let passed = PassedFd(raw);
                if netns.is_none() {
                    *netns = Some(passed);
                }
            }
        }
    }
    Ok(msg.bytes)
}

/// A descriptor received with SCM_RIGHTS: the kernel installed it in this
/// process for us, so it is ours to close.
#[derive(Debug)]
struct PassedFd(RawFd);

impl Drop for PassedFd {
    fn drop(&mut self) {
        let _ = nix::unistd::close(self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_replaces_a_stale_socket_and_refuses_a_live_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/cni.sock");
        let first = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = |p: &Path| {
            std::fs::metadata(p).unwrap().permissions().mode() & 0o777
        };
        assert_eq!(mode(&dir.path().join("run")), 0o700, "created 0700");
        let err = bind(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        drop(first);
        bind(&path).expect("a stale socket is replaced");
        // A directory others may write is refused, never chmod-ed.
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(
            &open,
            std::fs::Permissions::from_mode(0o1777),
        )
        .unwrap();
        let err = bind(&open.join("cni.sock")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
        assert!(err.to_string().contains("not private"), "{err}");
        assert_eq!(mode(&open), 0o777, "left as it was");
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = bind(&file).unwrap_err();
        assert!(err.to_string().contains("not a socket"), "{err}");
    }
}
