//! The node agent side: serves relayed invocations on a unix socket.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// Binds the agent's socket at `path`, replacing a stale one left by an
/// earlier agent; only root may connect (mode 0600). Fails if another
/// agent answers there.
pub fn bind(path: &Path) -> io::Result<std::os::unix::net::UnixListener> {
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
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let listener = std::os::unix::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
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
        tokio::spawn(async move {
            if let Err(e) = handle(stream, &ds).await {
                tracing::warn!(error = %e, "CNI request failed");
            }
        });
    }
}

async fn handle(mut stream: UnixStream, ds: &DatastoreCache) -> io::Result<()> {
    let cred = stream.peer_cred()?;
    let reply = if cred.uid() != nix::unistd::geteuid().as_raw() {
        refused(
            Code::Io,
            format!(
                "permission denied: uid {} may not use the CNI socket",
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
        let err = bind(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        drop(first);
        bind(&path).expect("a stale socket is replaced");
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = bind(&file).unwrap_err();
        assert!(err.to_string().contains("not a socket"), "{err}");
    }
}
