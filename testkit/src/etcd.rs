//! A real etcd server on loopback for tests.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, wait_until};

/// An `etcd` process (Debian's etcd-server) on free 127.0.0.1 ports with its
/// data in a temporary directory. Killed and removed on `Drop`.
pub struct EtcdServer {
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

impl EtcdServer {
    /// Starts etcd and waits until it answers `/health`.
    pub fn start() -> io::Result<EtcdServer> {
        let mut last_err = None;
        // Ports come from bind-and-release, so another process may grab one
        // in between: try a few times.
        for _ in 0..3 {
            let mut server = EtcdServer {
                dir: tempfile::Builder::new()
                    .prefix("margay-etcd-")
                    .tempdir()?,
                client_port: free_port(),
                peer_port: free_port(),
                child: None,
            };
            match server.launch() {
                Ok(()) => return Ok(server),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.expect("at least one attempt"))
    }

    /// The client URL, e.g. `http://127.0.0.1:23791`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Kills the server (SIGKILL, like a crash); the data directory stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same ports and data.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        self.launch()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn launch(&mut self) -> io::Result<()> {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("etcd.log"))?;
        let child = Command::new("etcd")
            .arg("--name=margay-test")
            .arg(format!("--data-dir={}", self.data_dir().display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=margay-test={peer}"))
            .arg("--log-level=error")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot run etcd (install Debian's etcd-server): {e}"
                    ),
                )
            })?;
        self.child = Some(child);
        let port = self.client_port;
        if wait_until(Duration::from_secs(20), || healthy(port)) {
            return Ok(());
        }
        let log = std::fs::read_to_string(self.dir.path().join("etcd.log"))
            .unwrap_or_default();
        self.stop();
        Err(io::Error::other(format!(
            "etcd did not become healthy on port {port}: {log}"
        )))
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One plain HTTP GET of /health.
fn healthy(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}
