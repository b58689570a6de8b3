//! Delegated IPAM: any `ipam.type` other than margay's own is run as a
//! separate plugin found in CNI_PATH, with the same stdin and CNI_*
//! environment, as libcni's `invoke.DelegateAdd/Del/Check/GC/Status` do.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use ipnetwork::IpNetwork;
use serde::Deserialize;

use crate::config::Attachment;
use crate::error::{CniError, Code, Result};
use crate::ipam::{AttachCtx, IpamBackend};
use crate::result::CniResult;
use crate::spec::Env;

/// An IPAM plugin binary and the invocation to forward.
#[derive(Debug, Clone)]
pub struct Delegate {
    pub plugin: PathBuf,
    pub env: Env,
    pub stdin: Vec<u8>,
}

/// An error a plugin printed.
#[derive(Deserialize)]
struct PluginError {
    code: u32,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: String,
}

impl Delegate {
    /// Finds `plugin` in CNI_PATH.
    pub fn find(plugin: &str, env: &Env, stdin: &[u8]) -> Result<Delegate> {
        let path = env
            .path
            .iter()
            .map(|d| d.join(plugin))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                CniError::config(
                    "ipam.type",
                    format!(
                        "IPAM plugin {plugin:?} not found in CNI_PATH {:?}",
                        std::env::join_paths(&env.path)
                            .map(|p| p.to_string_lossy().into_owned())
                            .unwrap_or_default()
                    ),
                )
            })?;
        Ok(Delegate {
            plugin: path,
            env: env.clone(),
            stdin: stdin.to_vec(),
        })
    }

    /// Runs the plugin with CNI_COMMAND=`cmd`; returns its stdout.
    fn invoke(&self, cmd: &str) -> Result<Vec<u8>> {
        let mut c = Command::new(&self.plugin);
        c.env("CNI_COMMAND", cmd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let opt = |c: &mut Command, k: &str, v: Option<String>| {
            if let Some(v) = v {
                c.env(k, v);
            }
        };
        opt(&mut c, "CNI_CONTAINERID", self.env.container_id.clone());
        opt(&mut c, "CNI_IFNAME", self.env.ifname.clone());
        opt(
            &mut c,
            "CNI_NETNS",
            self.env.netns.as_ref().map(|p| p.display().to_string()),
        );
        let args: Vec<String> = self
            .env
            .args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !args.is_empty() {
            c.env("CNI_ARGS", args.join(";"));
        }
        if let Ok(p) = std::env::join_paths(&self.env.path) {
            c.env("CNI_PATH", p);
        }
        let what = format!("IPAM plugin {}", self.plugin.display());
        let mut child = c.spawn().map_err(|e| {
            CniError::new(Code::Io, format!("cannot run {what}: {e}"))
        })?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(&self.stdin).map_err(|e| {
                CniError::new(Code::Io, format!("writing to {what}: {e}"))
            })?;
        }
        let out = child.wait_with_output().map_err(|e| {
            CniError::new(Code::Io, format!("waiting for {what}: {e}"))
        })?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        // Pass the delegate's own error through (code included).
        match serde_json::from_slice::<PluginError>(&out.stdout) {
            Ok(pe) => Err(CniError::new(
                Code::Other(pe.code),
                format!("{what}: {}", pe.msg),
            )
            .with_details(pe.details)),
            Err(_) => Err(CniError::new(
                Code::IpamFailed,
                format!("{what} failed ({}) without a CNI error", out.status),
            )
            .with_details(String::from_utf8_lossy(&out.stdout).into_owned())),
        }
    }

    async fn invoke_async(&self, cmd: &'static str) -> Result<Vec<u8>> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.invoke(cmd))
            .await
            .map_err(|e| {
                CniError::new(
                    Code::IpamFailed,
                    format!("delegate task failed: {e}"),
                )
            })?
    }
}

impl IpamBackend for Delegate {
    async fn add(&self, _a: &AttachCtx) -> Result<Vec<IpNetwork>> {
        let out = self.invoke_async("ADD").await?;
        let v: serde_json::Value =
            serde_json::from_slice(&out).map_err(|e| {
                CniError::new(
                    Code::Decode,
                    format!("cannot decode the IPAM plugin's result: {e}"),
                )
            })?;
        let res = CniResult::from_prev(&v)?;
        // Narrow to host prefixes: the pod is reached by a /32 (/128) route,
        // not by sharing a subnet (what Calico does with calico-ipam's
        // block-sized answers too).
        Ok(res
            .ips
            .iter()
            .map(|c| IpNetwork::from(c.address.ip()))
            .collect())
    }

    async fn del(&self, _a: &AttachCtx) -> Result<()> {
        self.invoke_async("DEL").await.map(drop)
    }

    async fn check(&self, _a: &AttachCtx, _ips: &[IpAddr]) -> Result<()> {
        self.invoke_async("CHECK").await.map(drop)
    }

    async fn gc(&self, _valid: &[Attachment]) -> Result<()> {
        self.invoke_async("GC").await.map(drop)
    }

    async fn status(&self) -> Result<()> {
        self.invoke_async("STATUS").await.map(drop)
    }
}
