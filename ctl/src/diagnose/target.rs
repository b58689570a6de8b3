//! FROM and TO: a pod (namespace/name, or a container ID on this node),
//! an IP, or a Service (refused until diagnose follows Services).

use std::net::IpAddr;
use std::path::Path;

use margay_ctlproto::endpoint;
use margay_datastore::Datastore;
use margay_ipam::block::{ATTR_NAMESPACE, ATTR_POD};

use super::{DiagnoseError, Options};

/// A pod attachment on this node, from the CNI plugin's endpoint record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub container_id: String,
    /// The interface inside the pod (eth0).
    pub ifname: String,
    /// The host end of its veth.
    pub host_iface: String,
    /// Its (first) address, the one diagnosed.
    pub ip: IpAddr,
}

/// A resolved FROM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Pod(Endpoint),
    /// An address that is no pod on this node.
    Ip(IpAddr),
}

impl Target {
    pub fn describe(&self) -> String {
        match self {
            Target::Pod(ep) => format!(
                "pod {} ({}, {} on this node)",
                ep.container_id, ep.ip, ep.host_iface
            ),
            Target::Ip(ip) => ip.to_string(),
        }
    }
}

/// How the user wrote a FROM or TO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    Ip(IpAddr),
    /// namespace/name.
    PodName {
        namespace: String,
        name: String,
    },
    ContainerId(String),
}

/// Parses FROM or TO (`what` names which, for errors).
pub fn parse_spec(what: &'static str, s: &str) -> Result<Spec, DiagnoseError> {
    if let Ok(ip) = s.parse() {
        return Ok(Spec::Ip(ip));
    }
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        ["svc" | "service" | "services", _, _] => {
            Err(DiagnoseError::ServiceNotYet {
                what,
                spec: s.to_string(),
            })
        }
        [ns, name] if !ns.is_empty() && !name.is_empty() => Ok(Spec::PodName {
            namespace: ns.to_string(),
            name: name.to_string(),
        }),
        [id] if !id.is_empty() => Ok(Spec::ContainerId(id.to_string())),
        _ => Err(DiagnoseError::BadTarget(format!(
            "{what} {s:?}: expected an IP address, NAMESPACE/POD, a \
             container ID on this node, or svc/NAMESPACE/NAME"
        ))),
    }
}

/// FROM: a pod on this node when it is one, else an address.
pub async fn resolve_source(
    ds: &Datastore,
    opts: &Options,
    from: &str,
) -> Result<Target, DiagnoseError> {
    let records = read_records(&opts.endpoints)?;
    let found = match parse_spec("FROM", from)? {
        Spec::Ip(ip) => {
            return Ok(match records.into_iter().find(|e| e.ip == ip) {
                Some(ep) => Target::Pod(ep),
                None => Target::Ip(ip),
            });
        }
        Spec::ContainerId(id) => {
            records.into_iter().find(|e| e.container_id == id)
        }
        Spec::PodName { namespace, name } => {
            let (ip, handle) = pod_address(ds, &namespace, &name).await?;
            let prefix = format!("{}.", opts.network);
            let on_this_node = records.into_iter().find(|e| {
                handle.as_deref().and_then(|h| h.strip_prefix(&prefix))
                    == Some(e.container_id.as_str())
                    || e.ip == ip
            });
            if on_this_node.is_none() {
                return Err(DiagnoseError::BadTarget(format!(
                    "FROM pod {namespace}/{name} ({ip}) has no endpoint \
                     record in {}: run diagnose on its node",
                    opts.endpoints.display()
                )));
            }
            on_this_node
        }
    };
    found.map(Target::Pod).ok_or_else(|| {
        DiagnoseError::BadTarget(format!(
            "FROM {from:?}: no endpoint record of that container in {}",
            opts.endpoints.display()
        ))
    })
}

/// TO: the address to reach.
pub async fn resolve_destination(
    ds: &Datastore,
    opts: &Options,
    to: &str,
) -> Result<IpAddr, DiagnoseError> {
    match parse_spec("TO", to)? {
        Spec::Ip(ip) => Ok(ip),
        Spec::PodName { namespace, name } => {
            Ok(pod_address(ds, &namespace, &name).await?.0)
        }
        Spec::ContainerId(id) => read_records(&opts.endpoints)?
            .into_iter()
            .find(|e| e.container_id == id)
            .map(|e| e.ip)
            .ok_or_else(|| {
                DiagnoseError::BadTarget(format!(
                    "TO {to:?}: no endpoint record of that container on this \
                     node; give the pod as NAMESPACE/POD or its IP"
                ))
            }),
    }
}

/// The address IPAM allocated to pod `namespace/name` (from the
/// allocation's pod and namespace attributes), and its handle.
async fn pod_address(
    ds: &Datastore,
    namespace: &str,
    name: &str,
) -> Result<(IpAddr, Option<String>), DiagnoseError> {
    let snap = crate::ipam::driver(ds.clone()).snapshot().await?;
    snap.blocks
        .iter()
        .flat_map(|b| b.allocations())
        .find(|a| {
            a.secondary.get(ATTR_NAMESPACE).map(String::as_str)
                == Some(namespace)
                && a.secondary.get(ATTR_POD).map(String::as_str) == Some(name)
        })
        .map(|a| (a.ip, a.handle_id))
        .ok_or_else(|| {
            DiagnoseError::BadTarget(format!(
                "pod {namespace}/{name}: IPAM holds no address for it (a pod \
                 whose address was released is found by its container ID \
                 or IP on its node)"
            ))
        })
}

/// The endpoint records in `dir` (a missing directory has none); a
/// record that does not read is an error naming it.
pub fn read_records(dir: &Path) -> Result<Vec<Endpoint>, DiagnoseError> {
    let records = endpoint::scan(dir)
        .map_err(|e| e.to_string())
        .and_then(endpoint::Scan::all)
        .map_err(|reason| DiagnoseError::Endpoints {
            dir: dir.to_path_buf(),
            reason,
        })?;
    Ok(records
        .into_iter()
        .filter_map(|r| {
            let net = r.ips.first()?;
            Some(Endpoint {
                ip: net.ip(),
                container_id: r.container_id,
                ifname: r.ifname,
                host_iface: r.host_iface,
            })
        })
        .collect())
}
