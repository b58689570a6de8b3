//! A real kube-apiserver (with its own etcd) on loopback for tests.
//!
//! The binary is built from the published k8s.io Go modules by
//! `scripts/deps` (see tools/kube-apiserver/) and found through
//! [`kube_apiserver_binary`]. Only etcd and kube-apiserver run: no
//! controller-manager, scheduler or kubelet. Authorization is RBAC, so a
//! client holding a ServiceAccount token may do exactly what
//! deploy/20-rbac.yaml grants it.
//!
//! ```text
//!   test --admin token--> kube-apiserver --> etcd (EtcdServer)
//!   test --SA token (TokenRequest)--^  TLS (CA made here), RBAC
//! ```

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use kube::{Client, Config};
use serde::Deserialize as _;

use crate::certs::openssl;
use crate::{EtcdServer, free_port};

/// The k8s.io/kubernetes release tools/kube-apiserver/go.mod pins.
pub const KUBE_VERSION: &str = "v1.37.2";
/// The static admin token: a test-only secret of a loopback server.
const ADMIN_TOKEN: &str = "margay-test-admin-token";
/// The user of the static admin token (group system:masters).
const ADMIN_USER: &str = "margay-test-admin";
/// Field manager of the server-side applies made here.
const FIELD_MANAGER: &str = "margay-testkit";
/// The ServiceAccount token issuer (`--service-account-issuer`).
const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// How long kube-apiserver may take to become ready on a busy 2-core box.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Where `scripts/deps` caches kube-apiserver: `$MARGAY_KUBE_APISERVER`, or
/// `${XDG_CACHE_HOME:-$HOME/.cache}/margay/kube-apiserver-<version>`.
pub fn kube_apiserver_path() -> PathBuf {
    if let Some(p) = std::env::var_os("MARGAY_KUBE_APISERVER") {
        return PathBuf::from(p);
    }
    cache_dir().join(format!("kube-apiserver-{KUBE_VERSION}"))
}

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
    // Dropped after the apiserver is killed (fields drop in order).
    etcd: EtcdServer,
    dir: tempfile::TempDir,
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
        // Test builds link both of rustls' providers (see Cargo.toml): pick
        // kube's, ring. An error only says one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let binary = kube_apiserver_path();
        let etcd = EtcdServer::start()?;
        let dir = tempfile::Builder::new()
            .prefix("margay-kube-apiserver-")
            .tempdir()?;
        make_credentials(dir.path())?;
        let mut last_err = None;
        // The port comes from bind-and-release: retry if it was taken.
        for _ in 0..3 {
            let port = free_port();
            let kubeconfig =
                write_kubeconfig(dir.path(), "admin", port, ADMIN_TOKEN)?;
            let admin = client_for(&kubeconfig).await?;
            let mut child = launch(&binary, dir.path(), &etcd, port, extra)?;
            match wait_ready(&mut child, &admin, dir.path()).await {
                Ok(()) => {
                    return Ok(KubeApiServer {
                        child: Some(child),
                        binary,
                        extra: extra.iter().map(|a| a.to_string()).collect(),
                        port,
                        admin,
                        etcd,
                        dir,
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
        format!("https://127.0.0.1:{}", self.port)
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
        self.dir.path().join("admin.kubeconfig")
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
        let api: Api<ServiceAccount> =
            Api::namespaced(self.admin.clone(), namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![],
                expiration_seconds: Some(3600),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let answer = api
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .map_err(|e| {
                other(format!("TokenRequest for {namespace}/{name}: {e}"))
            })?;
        let token = answer
            .status
            .map(|s| s.token)
            .ok_or_else(|| other("TokenRequest answered without a token"))?;
        write_kubeconfig(
            self.dir.path(),
            &format!("{namespace}-{name}"),
            self.port,
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
        log_tail(self.dir.path())
    }

    /// Waits until every CRD reports the Established condition.
    pub async fn wait_crds_established(&self) -> io::Result<()> {
        let api: Api<CustomResourceDefinition> = Api::all(self.admin.clone());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let crds = api.list(&Default::default()).await.map_err(other)?;
            let pending: Vec<String> = crds
                .items
                .iter()
                .filter(|c| !established(c))
                .filter_map(|c| c.metadata.name.clone())
                .collect();
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(other(format!(
                    "CRDs not Established: {pending:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills kube-apiserver (SIGKILL); etcd keeps running.
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts kube-apiserver again on the same port, etcd and credentials
    /// (a fresh watch cache), and waits until it is ready.
    pub async fn restart(&mut self) -> io::Result<()> {
        self.kill();
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        let mut child = launch(
            &self.binary,
            self.dir.path(),
            &self.etcd,
            self.port,
            &extra,
        )?;
        if let Err(e) =
            wait_ready(&mut child, &self.admin, self.dir.path()).await
        {
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

fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache"))
        })
        .unwrap_or_else(|| PathBuf::from("/root/.cache"));
    base.join("margay")
}

fn established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
}

/// Makes, with Debian's openssl: a CA and a serving certificate for
/// 127.0.0.1 signed by it, the ServiceAccount token signing key and the
/// static token file.
fn make_credentials(dir: &Path) -> io::Result<()> {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    openssl(
        dir,
        &[
            &["req", "-x509", "-nodes", "-days", "2"],
            &ec[..],
            &[
                "-subj",
                "/CN=margay-test-ca",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
            ],
        ],
    )?;
    openssl(
        dir,
        &[
            &["req", "-nodes"],
            &ec[..],
            &[
                "-subj",
                "/CN=kube-apiserver",
                "-keyout",
                "serving.key",
                "-out",
                "serving.csr",
            ],
        ],
    )?;
    std::fs::write(
        dir.join("serving.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
         basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n",
    )?;
    openssl(
        dir,
        &[&[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            "serving.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-extfile",
            "serving.ext",
            "-out",
            "serving.crt",
        ]],
    )?;
    openssl(
        dir,
        &[&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-out",
            "sa.key",
        ]],
    )?;
    openssl(
        dir,
        &[&["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"]],
    )?;
    // token,user,uid,"groups"
    std::fs::write(
        dir.join("tokens.csv"),
        format!(
            "{},{ADMIN_USER},{ADMIN_USER},\"system:masters\"\n",
            ADMIN_TOKEN
        ),
    )
}

/// Polls `/readyz` until it says `ok`, failing early if the process
/// exits.
async fn wait_ready(
    child: &mut Child,
    admin: &Client,
    dir: &Path,
) -> io::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            return Err(other(format!(
                "kube-apiserver exited ({status}): {}",
                log_tail(dir)
            )));
        }
        let req = http::Request::get("/readyz").body(Vec::new());
        if let Ok(body) = admin.request_text(req.map_err(other)?).await
            && body.trim() == "ok"
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(other(format!(
                "kube-apiserver not ready after {READY_TIMEOUT:?}: {}",
                log_tail(dir)
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn launch(
    binary: &Path,
    dir: &Path,
    etcd: &EtcdServer,
    port: u16,
    extra: &[&str],
) -> io::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("kube-apiserver.log"))?;
    let p = |f: &str| dir.join(f).display().to_string();
    Command::new(binary)
        .arg(format!("--etcd-servers={}", etcd.endpoint()))
        .arg("--bind-address=127.0.0.1")
        .arg("--advertise-address=127.0.0.1")
        .arg(format!("--secure-port={port}"))
        .arg(format!("--cert-dir={}", p("certs")))
        .arg(format!("--tls-cert-file={}", p("serving.crt")))
        .arg(format!("--tls-private-key-file={}", p("serving.key")))
        .arg(format!("--client-ca-file={}", p("ca.crt")))
        .arg(format!("--token-auth-file={}", p("tokens.csv")))
        .arg("--authorization-mode=RBAC")
        .arg(format!("--service-account-issuer={ISSUER}"))
        .arg(format!("--service-account-key-file={}", p("sa.pub")))
        .arg(format!(
            "--service-account-signing-key-file={}",
            p("sa.key")
        ))
        // No kubelet, no Service network: nothing reconciles the
        // `kubernetes` Service's endpoints to a loopback address.
        .arg("--endpoint-reconciler-type=none")
        .arg("--service-cluster-ip-range=10.96.0.0/24")
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

/// Writes `<name>.kubeconfig` in `dir` for `token` and returns its path.
fn write_kubeconfig(
    dir: &Path,
    name: &str,
    port: u16,
    token: &str,
) -> io::Result<PathBuf> {
    let path = dir.join(format!("{name}.kubeconfig"));
    let ca = dir.join("ca.crt");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: margay-test\n  \
               cluster:\n    \
                 server: https://127.0.0.1:{port}\n    \
                 certificate-authority: {ca}\n\
             users:\n\
             - name: {name}\n  \
               user:\n    \
                 token: {token}\n\
             contexts:\n\
             - name: {name}\n  \
               context:\n    \
                 cluster: margay-test\n    \
                 user: {name}\n\
             current-context: {name}\n",
            ca = ca.display(),
        ),
    )?;
    Ok(path)
}

/// A kube client for the kubeconfig at `path`.
async fn client_for(path: &Path) -> io::Result<Client> {
    let kc = Kubeconfig::read_from(path).map_err(other)?;
    let config =
        Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .map_err(other)?;
    Client::try_from(config).map_err(other)
}

fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("kube-apiserver.log"))
        .unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
