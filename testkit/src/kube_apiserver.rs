//! A real kube-apiserver (with its own etcd) on loopback for tests.
//!
//! margay-apiserver holds the one implementation of its credentials,
//! command line, kubeconfigs and tokens (the lab uses it too); this runs it
//! as a child of the test, on a free loopback port, and kills it on `Drop`.
//!
//! ```text
//!   test --admin token--> kube-apiserver --> etcd (EtcdServer)
//!   test --SA token (TokenRequest)--^  TLS (CA made here), RBAC
//! ```

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use margay_apiserver::{ApiServerFiles, client_for};
pub use margay_apiserver::{KUBE_VERSION, kube_apiserver_path, kubectl_path};
use serde::Deserialize as _;

use crate::{EtcdServer, free_port};

/// Field manager of the server-side applies made here.
const FIELD_MANAGER: &str = "margay-testkit";
/// How long kube-apiserver may take to become ready on a busy 2-core box.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Lifetime of the ServiceAccount tokens minted here.
const TOKEN_SECONDS: i64 = 3600;

/// The kube-apiserver binary; fails `test` when it is missing (never a
/// silent pass): `scripts/deps` builds it. `Option` for the callers' `?`.
pub fn kube_apiserver_binary(test: &str) -> Option<PathBuf> {
    let path = kube_apiserver_path();
    if path.is_file() {
        return Some(path);
    }
    panic!(
        "{test}: no kube-apiserver at {} (scripts/deps --kube builds it)",
        path.display()
    );
}

/// The repository's deploy/ directory.
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// etcd and kube-apiserver on free 127.0.0.1 ports, with certificates,
/// keys and kubeconfigs in a temporary directory. Both processes are
/// killed and the directory removed on `Drop`.
pub struct KubeApiServer {
    child: Option<Child>,
    binary: PathBuf,
    extra: Vec<String>,
    port: u16,
    admin: Client,
    files: ApiServerFiles,
    // Dropped after the apiserver is killed (fields drop in order).
    etcd: EtcdServer,
    _dir: tempfile::TempDir,
}

impl KubeApiServer {
    /// Starts etcd and kube-apiserver with the defaults (watch cache on)
    /// and waits until `/readyz` answers `ok`.
    pub async fn start() -> io::Result<KubeApiServer> {
        Self::start_with(&[]).await
    }

    /// Like [`start`](Self::start), with extra kube-apiserver flags (e.g.
    /// `--watch-cache=false`).
    pub async fn start_with(extra: &[&str]) -> io::Result<KubeApiServer> {
        let binary = kube_apiserver_path();
        let etcd = EtcdServer::start()?;
        let dir = tempfile::Builder::new()
            .prefix("margay-kube-apiserver-")
            .tempdir()?;
        let files = ApiServerFiles::create(dir.path(), &[])?;
        let extra: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        let mut last_err = None;
        // The port comes from bind-and-release: retry if it was taken.
        for _ in 0..3 {
            let port = free_port();
            let kubeconfig = files.write_admin_kubeconfig(&server_url(port))?;
            let admin = client_for(&kubeconfig).await?;
            let mut child = launch(&binary, &files, &etcd, port, &extra)?;
            match wait_ready(&mut child, &admin, &files).await {
                Ok(()) => {
                    return Ok(KubeApiServer {
                        child: Some(child),
                        binary,
                        extra,
                        port,
                        admin,
                        files,
                        etcd,
                        _dir: dir,
                    });
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.expect("at least one attempt"))
    }

    /// The apiserver URL, e.g. `https://127.0.0.1:6443`.
    pub fn url(&self) -> String {
        server_url(self.port)
    }

    /// The etcd behind the apiserver (e.g. to compact its history).
    pub fn etcd(&self) -> &EtcdServer {
        &self.etcd
    }

    /// A client authenticated with the static admin token (system:masters).
    pub fn admin(&self) -> Client {
        self.admin.clone()
    }

    /// The admin kubeconfig's path.
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.files.dir.join("admin.kubeconfig")
    }

    /// Applies `deploy/` as an operator would: the namespace, the CRDs
    /// (waiting until each is Established) and the RBAC.
    pub async fn install_margay(&self) -> io::Result<()> {
        let deploy = deploy_dir();
        self.apply_file(&deploy.join("00-namespace.yaml")).await?;
        self.apply_file(&deploy.join("crds/margay.io.yaml")).await?;
        self.wait_crds_established().await?;
        self.apply_file(&deploy.join("20-rbac.yaml")).await
    }

    /// Server-side applies every document of the YAML file at `path` with
    /// the admin token and strict field validation, as
    /// `kubectl apply --server-side` does.
    pub async fn apply_file(&self, path: &Path) -> io::Result<()> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            io::Error::new(e.kind(), format!("{}: {e}", path.display()))
        })?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc)
                .map_err(|e| other(format!("{}: {e}", path.display())))?;
            if value.is_null() {
                continue;
            }
            self.apply_value(value)
                .await
                .map_err(|e| other(format!("{}: {e}", path.display())))?;
        }
        Ok(())
    }

    /// Server-side applies one object of any kind the server knows.
    pub async fn apply_value(
        &self,
        value: serde_yaml::Value,
    ) -> io::Result<()> {
        let obj: DynamicObject = serde_yaml::from_value(value)
            .map_err(|e| other(format!("not an object: {e}")))?;
        let types = obj
            .types
            .clone()
            .ok_or_else(|| other("object without apiVersion/kind"))?;
        let gvk = GroupVersionKind::try_from(&types).map_err(other)?;
        let (ar, caps) = discovery::pinned_kind(&self.admin, &gvk)
            .await
            .map_err(|e| other(format!("discovery of {gvk:?}: {e}")))?;
        let name = obj.metadata.name.clone().unwrap_or_default();
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => Api::namespaced_with(
                self.admin.clone(),
                obj.metadata.namespace.as_deref().unwrap_or("default"),
                &ar,
            ),
            Scope::Cluster => Api::all_with(self.admin.clone(), &ar),
        };
        // Strict: an unknown or duplicate field is an error, as with
        // kubectl's default --validate=strict.
        let pp = PatchParams::apply(FIELD_MANAGER)
            .force()
            .validation_strict();
        api.patch(&name, &pp, &Patch::Apply(&obj))
            .await
            .map_err(|e| other(format!("apply {} {name}: {e}", types.kind)))?;
        Ok(())
    }

    /// Mints a token for ServiceAccount `namespace/name` with the
    /// TokenRequest API and writes a kubeconfig carrying it; returns the
    /// kubeconfig's path.
    pub async fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
    ) -> io::Result<PathBuf> {
        let token = margay_apiserver::request_token(
            &self.admin,
            namespace,
            name,
            TOKEN_SECONDS,
        )
        .await?;
        self.files.write_kubeconfig(
            &format!("{namespace}-{name}"),
            &self.url(),
            &token,
        )
    }

    /// A client for ServiceAccount `namespace/name` (TokenRequest token).
    pub async fn service_account_client(
        &self,
        namespace: &str,
        name: &str,
    ) -> io::Result<Client> {
        client_for(&self.service_account_kubeconfig(namespace, name).await?)
            .await
    }

    /// The tail of kube-apiserver's log, for failure messages.
    pub fn log_tail(&self) -> String {
        self.files.log_tail()
    }

    /// Waits until every CRD reports the Established condition.
    pub async fn wait_crds_established(&self) -> io::Result<()> {
        margay_apiserver::wait_crds_established(
            &self.admin,
            Duration::from_secs(30),
        )
        .await
    }

    /// Kills kube-apiserver (SIGKILL); etcd keeps running.
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts kube-apiserver again on the same port, etcd and credentials
    /// (a fresh watch cache), and waits until it is ready.
    pub async fn restart(&mut self) -> io::Result<()> {
        self.kill();
        let mut child = launch(
            &self.binary,
            &self.files,
            &self.etcd,
            self.port,
            &self.extra,
        )?;
        if let Err(e) = wait_ready(&mut child, &self.admin, &self.files).await {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        self.child = Some(child);
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for KubeApiServer {
    fn drop(&mut self) {
        self.kill();
    }
}

// ===== helper functions =====

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

fn server_url(port: u16) -> String {
    format!("https://127.0.0.1:{port}")
}

/// Waits for `/readyz`, failing early if the child exits.
async fn wait_ready(
    child: &mut Child,
    admin: &Client,
    files: &ApiServerFiles,
) -> io::Result<()> {
    margay_apiserver::wait_ready(admin, files, READY_TIMEOUT, || {
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        }
    })
    .await
}

fn launch(
    binary: &Path,
    files: &ApiServerFiles,
    etcd: &EtcdServer,
    port: u16,
    extra: &[String],
) -> io::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(files.log_path())?;
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    Command::new(binary)
        .args(files.args(&etcd.endpoint(), loopback, port))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot run {} (scripts/deps --kube builds it): {e}",
                    binary.display()
                ),
            )
        })
}
