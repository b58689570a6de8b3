//! The verbs of the `margay` main plugin: ADD, DEL, CHECK, STATUS, GC.
//! Each takes the parsed environment and config and an IPAM backend and
//! returns what goes on stdout (or the CNI error).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use ipnetwork::IpNetwork;
use rtnetlink::Handle;

use crate::check;
use crate::config::{Attachment, NetConf};
use crate::endpoint::{self, Endpoint};
use crate::error::{CniError, Code, Result};
use crate::ipam::{AttachCtx, IpamBackend};
use crate::netns;
use crate::nl;
use crate::result::{CniResult, Interface, IpConfig, Route};
use crate::spec::Env;
use crate::veth::{self, GATEWAY_V4, HOST_MAC, Plan};

/// The identity the host veth name is derived from: the pod when the
/// runtime says which (kubelet passes K8S_POD_NAMESPACE/K8S_POD_NAME),
/// else the container ID.
pub fn identity(env: &Env) -> String {
    match (env.arg("K8S_POD_NAMESPACE"), env.arg("K8S_POD_NAME")) {
        (Some(ns), Some(pod)) if !ns.is_empty() && !pod.is_empty() => {
            format!("{ns}/{pod}")
        }
        _ => env.container_id().to_string(),
    }
}

/// The IPAM view of this invocation's attachment.
pub fn attach_ctx(env: &Env, conf: &NetConf) -> AttachCtx {
    let mut attrs = BTreeMap::new();
    for (arg, attr) in
        [("K8S_POD_NAMESPACE", "namespace"), ("K8S_POD_NAME", "pod")]
    {
        if let Some(v) = env.arg(arg).filter(|v| !v.is_empty()) {
            attrs.insert(attr.to_string(), v.to_string());
        }
    }
    attrs.insert("containerID".into(), env.container_id().into());
    AttachCtx {
        container_id: env.container_id().to_string(),
        ifname: env.ifname().to_string(),
        handle: conf.handle(env.container_id()),
        attrs,
    }
}

fn host_handle() -> Result<Handle> {
    netns::host_handle()
        .map_err(|e| CniError::dataplane("opening a netlink socket", e))
}

/// ADD: allocate, wire, record; undo everything on any failure.
#[tracing::instrument(level = "debug", name = "cni_add", skip_all)]
pub async fn add<I: IpamBackend>(
    env: &Env,
    conf: &NetConf,
    ipam: &I,
) -> Result<String> {
    let mut result = match &conf.prev_result {
        Some(prev) => CniResult::from_prev(prev)?,
        None => CniResult::default(),
    };
    let ctx = attach_ctx(env, conf);
    let netns_path = env.netns_to_open().unwrap_or(Path::new("")).to_owned();
    // Fail before allocating when the namespace is not there at all.
    netns::open(&netns_path).map_err(|e| CniError::env("CNI_NETNS", e))?;
    let mut plan = Plan {
        host_ifname: veth::host_ifname(&identity(env), env.ifname()),
        ifname: env.ifname().to_string(),
        netns: netns_path,
        ips: Vec::new(),
        mtu: conf.mtu,
        queues: conf.num_queues,
        allow_ip_forwarding: conf.allow_ip_forwarding,
        ipv4_only: ipam.ipv4_only(),
    };
    let host = host_handle()?;
    // A repeated ADD of this attachment (its first answer lost): IPAM
    // answers with the addresses it already holds and the wiring is made
    // again. veth::create replaces a host end of the same name; one of
    // another name (the pod identity changed) goes here, so nothing of
    // the first ADD is left beside the second.
    if let Some(old) =
        endpoint::read(&conf.endpoint_dir, &ctx.container_id, &ctx.ifname)
        && old.host_iface != plan.host_ifname
    {
        veth::teardown(&host, &old.host_iface).await?;
    }
    // The pair does not depend on the addresses: create it while IPAM
    // allocates (the two are most of ADD's time), then finish it.
    let (ips, pair) = tokio::join!(ipam.add(&ctx), veth::create(&host, &plan));
    let (ips, side) = match (ips, pair) {
        (Ok(ips), Ok(side)) => (ips, side),
        (Ok(ips), Err(e)) => {
            plan.ips = ips;
            return Err(rollback(Some(&host), &plan, conf, &ctx, ipam, e).await);
        }
        // A failed allocation released what it took (or, when the
        // datastore did not answer, left it to DEL and GC); only the
        // pair, if it was made, is left to remove here.
        (Err(cause), _) => {
            if let Err(e) = veth::teardown(&host, &plan.host_ifname).await {
                tracing::error!(error = %e, "rollback: removing the veth failed");
            }
            return Err(cause);
        }
    };
    plan.ips = ips.clone();
    let ep = Endpoint {
        container_id: ctx.container_id.clone(),
        ifname: plan.ifname.clone(),
        host_iface: plan.host_ifname.clone(),
        ips: ips.clone(),
        network: Some(conf.name.clone()),
    };
    // The record is written while the kernel and the container's thread
    // configure the addresses and routes (configure is polled first and
    // waits on them); a failure of either undoes both.
    let (created, recorded) =
        tokio::join!(veth::configure(&host, &plan, side), async {
            endpoint::write(&conf.endpoint_dir, &ep).map_err(|e| {
                CniError::new(
                    Code::Io,
                    format!(
                        "writing the endpoint record in {}: {e}",
                        conf.endpoint_dir.display()
                    ),
                )
            })
        });
    let created = match (created, recorded) {
        (Ok(c), Ok(())) => c,
        (Err(e), _) | (_, Err(e)) => {
            return Err(rollback(Some(&host), &plan, conf, &ctx, ipam, e).await);
        }
    };
    tracing::info!(container = %ctx.container_id, host_ifname = %plan.host_ifname, ?ips, "added");
    let sandbox = env.netns.as_deref().unwrap_or(Path::new(""));
    append_to_result(&mut result, &plan, conf, sandbox, created.container_mac);
    Ok(result.to_json(conf.cni_version))
}

/// Undoes a partial ADD (veth, routes, record, allocation) and returns the
/// error that caused it; cleanup failures are logged, not returned.
async fn rollback<I: IpamBackend>(
    host: Option<&Handle>,
    plan: &Plan,
    conf: &NetConf,
    ctx: &AttachCtx,
    ipam: &I,
    cause: CniError,
) -> CniError {
    tracing::warn!(error = %cause, "ADD failed; undoing it");
    if let Some(h) = host
        && let Err(e) = veth::teardown(h, &plan.host_ifname).await
    {
        tracing::error!(error = %e, "rollback: removing the veth failed");
    }
    if let Err(e) =
        endpoint::remove(&conf.endpoint_dir, &ctx.container_id, &ctx.ifname)
    {
        tracing::error!(error = %e, "rollback: removing the endpoint record failed");
    }
    if let Err(e) = ipam.del(ctx).await {
        tracing::error!(error = %e, "rollback: releasing the addresses failed");
    }
    cause
}

/// Adds the host and container interfaces, addresses and routes.
fn append_to_result(
    result: &mut CniResult,
    plan: &Plan,
    conf: &NetConf,
    sandbox: &Path,
    mac: [u8; 6],
) {
    let host_idx = result.interfaces.len();
    result.interfaces.push(Interface {
        name: plan.host_ifname.clone(),
        mac: Some(nl::mac_string(&HOST_MAC)),
        mtu: Some(conf.mtu),
        ..Default::default()
    });
    result.interfaces.push(Interface {
        name: plan.ifname.clone(),
        mac: Some(nl::mac_string(&mac)),
        mtu: Some(conf.mtu),
        sandbox: Some(sandbox.display().to_string()),
        ..Default::default()
    });
    for ip in &plan.ips {
        result.ips.push(IpConfig {
            address: *ip,
            gateway: Some(if ip.is_ipv4() {
                IpAddr::V4(GATEWAY_V4)
            } else {
                IpAddr::V6(veth::gateway_v6())
            }),
            interface: Some(host_idx + 1),
        });
    }
    let default_route = |dst: &str, gw: IpAddr| Route {
        dst: dst.parse().expect("a valid default prefix"),
        gw: Some(gw),
        mtu: None,
        advmss: None,
        priority: None,
        table: None,
        scope: None,
    };
    if plan.ips.iter().any(IpNetwork::is_ipv4) {
        result
            .routes
            .push(default_route("0.0.0.0/0", IpAddr::V4(GATEWAY_V4)));
    }
    if plan.ips.iter().any(IpNetwork::is_ipv6) {
        result
            .routes
            .push(default_route("::/0", IpAddr::V6(veth::gateway_v6())));
    }
    if !conf.dns.is_empty() {
        result.dns = conf.dns.clone();
    }
}

/// DEL: best effort and idempotent (SPEC.md "DEL": "plugins should
/// generally complete a DEL action without error even if some resources
/// are missing"). The veth goes first so that the address is not handed
/// out again while a route still points at the old pod; the allocation is
/// released even if that failed.
#[tracing::instrument(level = "debug", name = "cni_del", skip_all)]
pub async fn del<I: IpamBackend>(
    env: &Env,
    conf: &NetConf,
    ipam: &I,
    removal: veth::Removal,
) -> Result<String> {
    let ctx = attach_ctx(env, conf);
    let host_ifname =
        endpoint::read(&conf.endpoint_dir, &ctx.container_id, &ctx.ifname)
            .map(|ep| ep.host_iface)
            .unwrap_or_else(|| veth::host_ifname(&identity(env), env.ifname()));
    // The host end (and with it the pod's routes) goes before the
    // address is released. A removal blocks its netlink thread for an RCU
    // grace period: the agent answers once the link is down instead.
    let dataplane = match removal {
        veth::Removal::Wait => match netns::removal_handle().await {
            Ok(h) => veth::teardown(&h, &host_ifname).await.map(drop),
            Err(e) => Err(CniError::dataplane("opening a netlink socket", e)),
        },
        veth::Removal::Defer => match host_handle() {
            Ok(h) => veth::retire(&h, &host_ifname).await.map(drop),
            Err(e) => Err(e),
        },
    };
    let released = ipam.del(&ctx).await;
    let record =
        endpoint::remove(&conf.endpoint_dir, &ctx.container_id, &ctx.ifname)
            .map_err(|e| {
                CniError::new(
                    Code::Io,
                    format!("removing the endpoint record: {e}"),
                )
            });
    tracing::info!(container = %ctx.container_id, %host_ifname, "deleted");
    released?;
    dataplane?;
    record?;
    Ok(String::new())
}

/// CHECK: verifies the attachment described by prevResult, in the
/// container, on the host and in IPAM, and lists everything wrong.
pub async fn check<I: IpamBackend>(
    env: &Env,
    conf: &NetConf,
    ipam: &I,
) -> Result<String> {
    let prev = conf.prev_result.as_ref().ok_or_else(|| {
        CniError::config("prevResult", "CHECK needs the ADD result")
    })?;
    let prev = CniResult::from_prev(prev)?;
    let ctx = attach_ctx(env, conf);
    let expect =
        check::Expected::from_result(&prev, env, conf, &identity(env))?;
    let mut problems = check::dataplane(&expect).await;
    let ips: Vec<IpAddr> = expect.ips.iter().map(IpNetwork::ip).collect();
    if let Err(e) = ipam.check(&ctx, &ips).await {
        if e.code == Code::TryAgainLater {
            return Err(e);
        }
        problems.push(e.msg);
    }
    if problems.is_empty() {
        return Ok(String::new());
    }
    Err(CniError::new(
        Code::CheckFailed,
        format!("CHECK failed: {}", problems.join("; ")),
    ))
}

/// STATUS: ready when IPAM could allocate.
pub async fn status<I: IpamBackend>(ipam: &I) -> Result<String> {
    ipam.status().await.map_err(|mut e| {
        if e.code != Code::NotAvailable {
            e.code = Code::NotAvailable;
        }
        e
    })?;
    Ok(String::new())
}

/// GC: releases what attachments of this network on this node that are
/// not in `cni.dev/valid-attachments` left: their allocations (IPAM
/// frees only this node's), and with `endpoints` (the main plugin) their
/// host veth and endpoint record. SPEC.md "GC": "the plugin should
/// remove any resources related to attachments not in the list".
pub async fn gc<I: IpamBackend>(
    conf: &NetConf,
    ipam: &I,
    endpoints: bool,
) -> Result<String> {
    let valid = conf.valid_attachments.as_deref().ok_or_else(|| {
        CniError::config(
            "cni.dev/valid-attachments",
            "missing: GC needs the list of live attachments",
        )
    })?;
    // The dataplane first, as DEL does: no route may still point at a
    // pod when its address is handed out again.
    let dataplane = match endpoints {
        true => gc_endpoints(conf, valid).await,
        false => Ok(()),
    };
    ipam.gc(valid).await?;
    dataplane?;
    Ok(String::new())
}

/// Removes the host veth and the record of every endpoint of this
/// network whose attachment is not in `valid`. Records of other networks
/// and records without a network (written before records had one) stay.
async fn gc_endpoints(conf: &NetConf, valid: &[Attachment]) -> Result<()> {
    let scan = endpoint::scan(&conf.endpoint_dir).map_err(|e| {
        CniError::new(
            Code::Io,
            format!(
                "reading the endpoint records in {}: {e}",
                conf.endpoint_dir.display()
            ),
        )
    })?;
    for (path, reason) in &scan.unreadable {
        tracing::warn!(path = %path.display(), %reason,
            "unreadable endpoint record skipped");
    }
    let records = scan.records;
    let stale: Vec<Endpoint> = records
        .into_iter()
        .filter(|ep| ep.network.as_deref() == Some(conf.name.as_str()))
        .filter(|ep| {
            !valid.iter().any(|v| {
                v.container_id == ep.container_id && v.ifname == ep.ifname
            })
        })
        .collect();
    if stale.is_empty() {
        return Ok(());
    }
    let host = netns::removal_handle()
        .await
        .map_err(|e| CniError::dataplane("opening a netlink socket", e))?;
    for ep in stale {
        veth::teardown(&host, &ep.host_iface).await?;
        endpoint::remove(&conf.endpoint_dir, &ep.container_id, &ep.ifname)
            .map_err(|e| {
                CniError::new(
                    Code::Io,
                    format!("removing the endpoint record: {e}"),
                )
            })?;
        tracing::info!(container = %ep.container_id, ifname = %ep.ifname,
            host_iface = %ep.host_iface, "GC removed a stale endpoint");
    }
    Ok(())
}
