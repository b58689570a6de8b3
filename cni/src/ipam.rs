//! The IPAM calls the plugin makes, behind one trait so that the verbs do
//! not care whether addresses come from margay's library in-process
//! ([`MargayIpam`]) or from another IPAM plugin exec'd from CNI_PATH
//! ([`crate::delegate::Delegate`]).

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnetwork::IpNetwork;
use margay_datastore::{Datastore, DatastoreSpec};
use margay_ipam::{
    AssignArgs, ContextCache, Family, Ipam, IpamError, IpamOptions,
};

use crate::config::{Attachment, MargayIpamConf, NetConf};
use crate::error::{CniError, Code, Result};

/// The attachment an IPAM call is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachCtx {
    pub container_id: String,
    pub ifname: String,
    /// `<network>.<containerID>`.
    pub handle: String,
    /// Recorded with the allocation (pod, namespace, ...).
    pub attrs: BTreeMap<String, String>,
}

/// What the verbs need from IPAM.
#[allow(async_fn_in_trait)]
pub trait IpamBackend {
    /// Allocates the attachment's addresses (host prefixes: /32, /128).
    async fn add(&self, a: &AttachCtx) -> Result<Vec<IpNetwork>>;
    /// Releases everything the attachment holds; nothing held is fine.
    async fn del(&self, a: &AttachCtx) -> Result<()>;
    /// Errors unless the attachment still holds every one of `ips`.
    async fn check(&self, a: &AttachCtx, ips: &[IpAddr]) -> Result<()>;
    /// Frees allocations of attachments not in `valid`.
    async fn gc(&self, valid: &[Attachment]) -> Result<()>;
    /// Errors (code 50) unless ADD could allocate.
    async fn status(&self) -> Result<()>;
    /// Whether ADD is known, before it answers, to assign IPv4 and no
    /// IPv6 (lets the container end come up while IPAM works).
    fn ipv4_only(&self) -> bool {
        false
    }
}

/// Maps an IPAM library error to the CNI code a runtime acts on.
pub fn cni_error(e: IpamError) -> CniError {
    let code = if e.is_transient() {
        Code::TryAgainLater
    } else {
        match &e {
            IpamError::PoolExhausted { .. }
            | IpamError::MaxBlocksPerHost { .. } => Code::PoolExhausted,
            IpamError::NoUsablePool { .. } | IpamError::BadRequest(_) => {
                Code::InvalidConfig
            }
            _ => Code::IpamFailed,
        }
    };
    CniError::new(code, e.to_string())
}

/// margay's block-affinity IPAM, in-process.
#[derive(Debug)]
pub struct MargayIpam {
    ipam: Ipam,
    network: String,
    conf: MargayIpamConf,
}

impl MargayIpam {
    /// Connects to the configured datastore for this node. etcd connects
    /// lazily, so an unreachable etcd surfaces (as code 11) on first use.
    #[tracing::instrument(level = "debug", name = "ipam_connect", skip_all)]
    pub async fn connect(
        conf: &NetConf,
        ipam_conf: &MargayIpamConf,
    ) -> Result<MargayIpam> {
        let ds = connect_datastore(&conf.datastore).await?;
        let node = conf.node_name()?;
        Ok(MargayIpam::with_datastore(ds, node, conf, ipam_conf))
    }

    /// The same on an already connected datastore (the node agent keeps
    /// one per datastore across invocations), acting for `node` (the
    /// config's, resolved by the caller: it may be read from a file).
    pub fn with_datastore(
        ds: Datastore,
        node: String,
        conf: &NetConf,
        ipam_conf: &MargayIpamConf,
    ) -> MargayIpam {
        let mut opts = IpamOptions::default();
        if let Some(lock) = &conf.ipam_lock_file {
            opts.lock_path = Some(lock.clone());
        }
        MargayIpam {
            ipam: Ipam::new(ds, node, opts),
            network: conf.name.clone(),
            conf: ipam_conf.clone(),
        }
    }

    /// The library instance (tests and the benchmark inspect it).
    pub fn inner(&self) -> &Ipam {
        &self.ipam
    }

    /// Addresses currently held by `handle`.
    async fn ips_of(&self, handle: &str) -> Result<BTreeSet<IpAddr>> {
        let snap = self.ipam.snapshot().await.map_err(cni_error)?;
        Ok(snap
            .blocks
            .iter()
            .flat_map(|b| b.ips_of_handle(handle))
            .collect())
    }
}

impl IpamBackend for MargayIpam {
    fn ipv4_only(&self) -> bool {
        self.conf.assign_ipv4 && !self.conf.assign_ipv6
    }

    async fn add(&self, a: &AttachCtx) -> Result<Vec<IpNetwork>> {
        let args = AssignArgs {
            handle: a.handle.clone(),
            num_v4: usize::from(self.conf.assign_ipv4),
            num_v6: usize::from(self.conf.assign_ipv6),
            v4_pools: self.conf.ipv4_pools.clone(),
            v6_pools: self.conf.ipv6_pools.clone(),
            attrs: a.attrs.clone(),
        };
        let got = self.ipam.auto_assign(&args).await.map_err(cni_error)?;
        Ok(got
            .ipv4
            .iter()
            .chain(&got.ipv6)
            .map(|x| IpNetwork::from(x.ip))
            .collect())
    }

    async fn del(&self, a: &AttachCtx) -> Result<()> {
        let freed = self
            .ipam
            .release_by_handle(&a.handle)
            .await
            .map_err(cni_error)?;
        tracing::info!(handle = %a.handle, ?freed, "released");
        Ok(())
    }

    async fn check(&self, a: &AttachCtx, ips: &[IpAddr]) -> Result<()> {
        let held = self.ips_of(&a.handle).await?;
        let missing: Vec<String> = ips
            .iter()
            .filter(|ip| !held.contains(ip))
            .map(ToString::to_string)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(CniError::new(
            Code::CheckFailed,
            format!(
                "IPAM: handle {} no longer holds {}",
                a.handle,
                missing.join(", ")
            ),
        ))
    }

    async fn gc(&self, valid: &[Attachment]) -> Result<()> {
        let live: BTreeSet<String> = valid
            .iter()
            .map(|v| format!("{}.{}", self.network, v.container_id))
            .collect();
        // The runtime never runs GC concurrently with ADD/DEL (SPEC.md
        // "GC"), so no grace period is needed.
        let prefix = format!("{}.", self.network);
        let stats = self
            .ipam
            .gc(&prefix, &live, Duration::ZERO)
            .await
            .map_err(cni_error)?;
        tracing::info!(?stats, "gc");
        Ok(())
    }

    /// Ready when, for each family the config assigns, some pool that an
    /// ADD on this node would use (enabled, selecting this node by its
    /// nodeSelector, for workloads, named or automatic) has free
    /// addresses.
    async fn status(&self) -> Result<()> {
        let unreachable = |e| {
            CniError::new(
                Code::NotAvailable,
                format!("datastore not reachable: {}", cni_error(e).msg),
            )
        };
        let mut usable = Vec::new();
        let mut problems = Vec::new();
        for (on, fam, list) in [
            (self.conf.assign_ipv4, Family::V4, &self.conf.ipv4_pools),
            (self.conf.assign_ipv6, Family::V6, &self.conf.ipv6_pools),
        ] {
            if !on {
                continue;
            }
            match self.ipam.usable_pools(fam, list).await {
                Ok(pools) => usable.push((fam, pools)),
                Err(e) if e.is_transient() => return Err(unreachable(e)),
                Err(e) => problems.push(e.to_string()),
            }
        }
        if !usable.is_empty() {
            // Only an outage is "not reachable": anything else the
            // datastore answered is reported as what it is.
            let usage = self.ipam.show().await.map_err(|e| {
                if e.is_transient() {
                    unreachable(e)
                } else {
                    CniError::new(
                        Code::NotAvailable,
                        format!("IPAM usage: {}", cni_error(e).msg),
                    )
                }
            })?;
            for (fam, pools) in usable {
                let free = usage.pools.iter().any(|p| {
                    p.allocated < p.size
                        && pools.iter().any(|u| u.name == p.name)
                });
                if !free {
                    problems.push(format!(
                        "every {fam} IP pool this node may use is full"
                    ));
                }
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        Err(CniError::new(Code::NotAvailable, problems.join("; ")))
    }
}

/// Connects to `spec`; an outage is code 11, a bad spec code 7.
pub async fn connect_datastore(spec: &DatastoreSpec) -> Result<Datastore> {
    Datastore::connect(spec).await.map_err(|e| {
        let code = if e.is_transient() {
            Code::TryAgainLater
        } else {
            Code::InvalidConfig
        };
        CniError::new(
            code,
            format!("cannot connect to the datastore {spec}: {e}"),
        )
    })
}

/// What the node agent keeps across invocations: a datastore connection
/// per datastore a config names (clients reconnect by themselves), and per
/// datastore and node the IPAM context ([`ContextCache`]), so that an ADD
/// is one datastore transaction.
#[derive(Debug, Default)]
pub struct DatastoreCache(tokio::sync::Mutex<HashMap<String, Kept>>);

#[derive(Debug)]
struct Kept {
    ds: Datastore,
    contexts: HashMap<String, Arc<ContextCache>>,
}

impl DatastoreCache {
    /// margay's IPAM for `conf` on the kept connection (made on first use)
    /// and context.
    pub async fn ipam(
        &self,
        conf: &NetConf,
        ipam_conf: &MargayIpamConf,
    ) -> Result<MargayIpam> {
        let spec = &conf.datastore;
        let node = conf.node_name()?;
        let (ds, ctx) = {
            let mut map = self.0.lock().await;
            let kept = match map.entry(spec.to_string()) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(Kept {
                    ds: connect_datastore(spec).await?,
                    contexts: HashMap::new(),
                }),
            };
            let ctx = kept
                .contexts
                .entry(node.clone())
                .or_insert_with(|| ContextCache::new(node.clone()))
                .clone();
            (kept.ds.clone(), ctx)
        };
        let mut ipam = MargayIpam::with_datastore(ds, node, conf, ipam_conf);
        ipam.ipam = ipam.ipam.with_context_cache(ctx);
        Ok(ipam)
    }
}

/// The lock file used when the config names none.
pub fn default_lock_path() -> PathBuf {
    PathBuf::from(margay_ipam::DEFAULT_LOCK_PATH)
}
