//! A real kube-apiserver for the lab and the tests: one implementation of
//! its credentials, command line, kubeconfigs, readiness wait and
//! ServiceAccount tokens.
//!
//! The binary is built from the published k8s.io Go modules by
//! `scripts/deps --kube` (see tools/kube-apiserver/) and cached outside the
//! source tree ([`kube_apiserver_path`]). Only etcd and kube-apiserver run:
//! no controller-manager, scheduler or kubelet. Authorization is RBAC, so a
//! client holding a ServiceAccount token may do exactly what
//! deploy/20-rbac.yaml grants it.
//!
//! ```text
//!   setup --admin token--> kube-apiserver --> etcd
//!   margay --SA token (TokenRequest)--^  TLS (CA made here), RBAC
//! ```
//!
//! testkit's `KubeApiServer` runs it as a child of a test (loopback,
//! killed on `Drop`); the lab runs it detached on the fabric's host address
//! (`margayctl lab up --datastore kubernetes`, killed by `lab down`).

pub mod certs;

use crate::certs::openssl;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// The k8s.io/kubernetes release tools/kube-apiserver/go.mod pins.
pub const KUBE_VERSION: &str = "v1.37.2";
/// The static admin token: the secret of a throwaway local server.
const ADMIN_TOKEN: &str = "margay-test-admin-token";
/// The user of the static admin token (group system:masters).
const ADMIN_USER: &str = "margay-test-admin";
/// The ServiceAccount token issuer (`--service-account-issuer`).
const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The file kube-apiserver's output goes to, in its directory.
pub const LOG_FILE: &str = "kube-apiserver.log";

/// Where `scripts/deps` caches kube-apiserver: `$MARGAY_KUBE_APISERVER`, or
/// `${XDG_CACHE_HOME:-$HOME/.cache}/margay/kube-apiserver-<version>`.
pub fn kube_apiserver_path() -> PathBuf {
    cached("MARGAY_KUBE_APISERVER", "kube-apiserver")
}

/// The kubectl of the same release, which `scripts/deps --kube` builds
/// beside it: `$MARGAY_KUBECTL`, or `.../margay/kubectl-<version>`.
pub fn kubectl_path() -> PathBuf {
    cached("MARGAY_KUBECTL", "kubectl")
}

/// The files of one kube-apiserver: certificates, keys, the static token
/// file and kubeconfigs, all in `dir`.
#[derive(Debug, Clone)]
pub struct ApiServerFiles {
    pub dir: PathBuf,
}

impl ApiServerFiles {
    /// Makes, with Debian's openssl: a CA and a serving certificate signed
    /// by it for 127.0.0.1, localhost and `addrs`; the ServiceAccount
    /// token signing key; the static token file.
    pub fn create(dir: &Path, addrs: &[IpAddr]) -> io::Result<ApiServerFiles> {
        std::fs::create_dir_all(dir)?;
        make_credentials(dir, addrs)?;
        Ok(ApiServerFiles {
            dir: dir.to_path_buf(),
        })
    }

    /// kube-apiserver's arguments: etcd at `etcd`, serving on
    /// `bind:port`, RBAC, the static admin token and ServiceAccount tokens.
    pub fn args(&self, etcd: &str, bind: IpAddr, port: u16) -> Vec<String> {
        let p = |f: &str| self.dir.join(f).display().to_string();
        vec![
            format!("--etcd-servers={etcd}"),
            format!("--bind-address={bind}"),
            format!("--advertise-address={bind}"),
            format!("--secure-port={port}"),
            format!("--cert-dir={}", p("certs")),
            format!("--tls-cert-file={}", p("serving.crt")),
            format!("--tls-private-key-file={}", p("serving.key")),
            format!("--client-ca-file={}", p("ca.crt")),
            format!("--token-auth-file={}", p("tokens.csv")),
            "--authorization-mode=RBAC".into(),
            // As every cluster that runs a CNI (kubeadm sets it too): the
            // DaemonSet's margay-cni container is privileged, and without
            // this the apiserver refuses to store it.
            "--allow-privileged=true".into(),
            format!("--service-account-issuer={ISSUER}"),
            format!("--service-account-key-file={}", p("sa.pub")),
            format!("--service-account-signing-key-file={}", p("sa.key")),
            // No kubelet, no Service network: nothing reconciles the
            // `kubernetes` Service's endpoints to this address.
            "--endpoint-reconciler-type=none".into(),
            "--service-cluster-ip-range=10.96.0.0/24".into(),
        ]
    }

    /// Writes the admin kubeconfig (static token, system:masters) for the
    /// server at `server` (e.g. `https://127.0.0.1:6443`).
    pub fn write_admin_kubeconfig(&self, server: &str) -> io::Result<PathBuf> {
        self.write_kubeconfig("admin", server, ADMIN_TOKEN)
    }

    /// Writes `<name>.kubeconfig` carrying `token` and returns its path.
    pub fn write_kubeconfig(
        &self,
        name: &str,
        server: &str,
        token: &str,
    ) -> io::Result<PathBuf> {
        let path = self.dir.join(format!("{name}.kubeconfig"));
        let ca = self.dir.join("ca.crt");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\n\
                 kind: Config\n\
                 clusters:\n\
                 - name: margay\n  \
                   cluster:\n    \
                     server: {server}\n    \
                     certificate-authority: {ca}\n\
                 users:\n\
                 - name: {name}\n  \
                   user:\n    \
                     token: {token}\n\
                 contexts:\n\
                 - name: {name}\n  \
                   context:\n    \
                     cluster: margay\n    \
                     user: {name}\n\
                 current-context: {name}\n",
                ca = ca.display(),
            ),
        )?;
        Ok(path)
    }

    /// Where kube-apiserver's output goes.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(LOG_FILE)
    }

    /// The last 30 lines of kube-apiserver's log, for error messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// A kube client for the kubeconfig at `path`.
pub async fn client_for(path: &Path) -> io::Result<Client> {
    // Test builds link both of rustls' providers (see Cargo.toml): pick
    // kube's, ring. An error only says one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kc = Kubeconfig::read_from(path).map_err(other)?;
    let config =
        Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .map_err(other)?;
    Client::try_from(config).map_err(other)
}

/// Polls `/readyz` with `admin` until it says `ok`. `exited` says why the
/// server is gone (it exited), which fails the wait at once.
pub async fn wait_ready(
    admin: &Client,
    files: &ApiServerFiles,
    timeout: Duration,
    mut exited: impl FnMut() -> Option<String>,
) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(why) = exited() {
            return Err(other(format!(
                "kube-apiserver exited ({why}): {}",
                files.log_tail()
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
                "kube-apiserver not ready after {timeout:?}: {}",
                files.log_tail()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Mints a token for ServiceAccount `namespace/name` with the TokenRequest
/// API, valid for `seconds`. A token Secret would stay empty here: its
/// controller runs in kube-controller-manager, which does not run.
pub async fn request_token(
    admin: &Client,
    namespace: &str,
    name: &str,
    seconds: i64,
) -> io::Result<String> {
    let api: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(seconds),
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
    answer
        .status
        .map(|s| s.token)
        .ok_or_else(|| other("TokenRequest answered without a token"))
}

/// Waits until every CRD reports the Established condition.
pub async fn wait_crds_established(
    admin: &Client,
    timeout: Duration,
) -> io::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(admin.clone());
    let deadline = Instant::now() + timeout;
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
            return Err(other(format!("CRDs not Established: {pending:?}")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ===== helper functions =====

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

fn cached(env: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache"))
        })
        .unwrap_or_else(|| PathBuf::from("/root/.cache"));
    base.join("margay").join(format!("{name}-{KUBE_VERSION}"))
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

fn make_credentials(dir: &Path, addrs: &[IpAddr]) -> io::Result<()> {
    certs::make_ca(dir, "ca", "margay-test-ca")?;
    certs::make_cert(
        dir,
        "ca",
        "serving",
        "kube-apiserver",
        certs::Role::Server(addrs),
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
