//! A real etcd server on loopback for tests.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use margay_apiserver::certs::{Role, make_ca, make_cert};

use crate::{free_port, wait_until};

/// An `etcd` process (Debian's etcd-server) on free 127.0.0.1 ports with its
/// data in a temporary directory. Killed and removed on `Drop`.
pub struct EtcdServer {
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    /// Plain-http `/health` (and metrics) port when clients use TLS.
    metrics_port: u16,
    tls: Option<EtcdTlsFiles>,
    child: Option<Child>,
}

/// The PEM files of an etcd started with [`EtcdServer::start_tls`]: the
/// CA that signed the server and the good client, the good client's
/// certificate and key, and a client certificate and key from another CA
/// (which etcd must refuse).
#[derive(Debug, Clone)]
pub struct EtcdTlsFiles {
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub other_ca: PathBuf,
    pub other_client_cert: PathBuf,
    pub other_client_key: PathBuf,
}

impl EtcdServer {
    /// Starts etcd and waits until it answers `/health`.
    pub fn start() -> io::Result<EtcdServer> {
        Self::start_with(false)
    }

    /// Starts etcd serving clients over TLS with client certificate
    /// authentication (`--client-cert-auth`, `--trusted-ca-file`), with
    /// certificates made for the test ([`EtcdServer::tls_files`]).
    pub fn start_tls() -> io::Result<EtcdServer> {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> io::Result<EtcdServer> {
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
                metrics_port: free_port(),
                tls: None,
                child: None,
            };
            if tls {
                server.tls = Some(make_tls_files(server.dir.path())?);
            }
            match server.launch() {
                Ok(()) => return Ok(server),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.expect("at least one attempt"))
    }

    /// The client URL, e.g. `http://127.0.0.1:23791` (`https://` when
    /// started with [`EtcdServer::start_tls`]).
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// The certificates of a TLS server; None for plain http.
    pub fn tls_files(&self) -> Option<&EtcdTlsFiles> {
        self.tls.as_ref()
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
        let mut cmd = Command::new("etcd");
        if let Some(tls) = &self.tls {
            let dir = self.dir.path().join("tls");
            cmd.arg("--client-cert-auth")
                .arg(format!("--trusted-ca-file={}", tls.ca.display()))
                .arg(format!(
                    "--cert-file={}",
                    dir.join("server.crt").display()
                ))
                .arg(format!("--key-file={}", dir.join("server.key").display()))
                // /health over plain http for the readiness poll.
                .arg(format!(
                    "--listen-metrics-urls=http://127.0.0.1:{}",
                    self.metrics_port
                ));
        }
        let child = cmd
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
        let port = if self.tls.is_some() {
            self.metrics_port
        } else {
            self.client_port
        };
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

/// CA "ca" signing the server and client "client"; CA "other-ca" signing
/// "other-client".
fn make_tls_files(dir: &std::path::Path) -> io::Result<EtcdTlsFiles> {
    let dir = dir.join("tls");
    std::fs::create_dir_all(&dir)?;
    make_ca(&dir, "ca", "ca")?;
    make_cert(&dir, "ca", "server", "server", Role::Server(&[]))?;
    make_cert(&dir, "ca", "client", "client", Role::Client)?;
    make_ca(&dir, "other-ca", "other-ca")?;
    make_cert(
        &dir,
        "other-ca",
        "other-client",
        "other-client",
        Role::Client,
    )?;
    Ok(EtcdTlsFiles {
        ca: dir.join("ca.crt"),
        client_cert: dir.join("client.crt"),
        client_key: dir.join("client.key"),
        other_ca: dir.join("other-ca.crt"),
        other_client_cert: dir.join("other-client.crt"),
        other_client_key: dir.join("other-client.key"),
    })
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
