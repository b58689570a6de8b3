//! The network configuration on stdin (SPEC.md section 3), with Calico's
//! field names where the thing is the same (calico cni-plugin
//! pkg/types/types.go `NetConf`).
//!
//! Parsing is two steps so that errors name what is wrong: first every key
//! is checked against the known ones (unknown -> code 2 with key and
//! value), then the values are decoded with their JSON path (bad type or
//! value -> code 7 naming the field).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use margay_datastore::{DatastoreSpec, EtcdSpec, EtcdTls, KeyStyle};

use crate::error::{CniError, Code, Result};
use crate::version::Version;

/// The IPAM `type` served in-process by margay's IPAM library.
pub const MARGAY_IPAM: &str = "margay-ipam";
/// Where endpoint records go unless `endpoint_dir` says otherwise.
pub const DEFAULT_ENDPOINT_DIR: &str = "/var/run/margay/endpoints";
/// Calico's default pod MTU when none is configured.
pub const DEFAULT_MTU: u32 = 1500;
/// The most TX/RX queues the kernel gives a device (`rtnl_create_link`).
pub const MAX_QUEUES: u32 = 4096;
/// Where Calico (and margay) read the node name from if not configured.
pub const DEFAULT_NODENAME_FILE: &str = "/var/lib/margay/nodename";

/// Keys allowed at the top level of the margay plugin's configuration.
/// Besides margay's own, the runtime-inserted and well-known ones of
/// SPEC.md section 3 (`runtimeConfig`, `args`, `prevResult`, `dns`,
/// `ipMasq`, `cni.dev/valid-attachments`; `capabilities` appears in
/// conflists).
const TOP_KEYS: &[&str] = &[
    "cniVersion",
    "name",
    "type",
    "nodename",
    "nodename_file",
    "datastore_type",
    "etcd_endpoints",
    "etcd_scheme",
    "etcd_key_file",
    "etcd_cert_file",
    "etcd_ca_cert_file",
    "datastore_file",
    "kubernetes",
    "mtu",
    "num_queues",
    "log_level",
    "log_file_path",
    "ipam",
    "ipam_lock_file",
    "container_settings",
    "endpoint_dir",
    "agent_socket",
    "dns",
    "ipMasq",
    "capabilities",
    "runtimeConfig",
    "args",
    "prevResult",
    "cni.dev/valid-attachments",
    "policy",
];
const KUBERNETES_KEYS: &[&str] = &["kubeconfig"];
const CONTAINER_SETTINGS_KEYS: &[&str] = &["allow_ip_forwarding"];
const IPAM_KEYS: &[&str] = &[
    "type",
    "assign_ipv4",
    "assign_ipv6",
    "ipv4_pools",
    "ipv6_pools",
];

/// The `ipam` section.
#[derive(Debug, Clone, PartialEq)]
pub enum IpamConf {
    /// `type: "margay-ipam"`: allocation in-process.
    Margay(MargayIpamConf),
    /// Any other type: exec'd from CNI_PATH with the same stdin, as libcni
    /// does for delegated IPAM.
    Delegated { plugin: String },
}

/// Options of margay's own IPAM (Calico's calico-ipam names).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MargayIpamConf {
    #[serde(default = "yes", deserialize_with = "bool_or_string")]
    pub assign_ipv4: bool,
    #[serde(default, deserialize_with = "bool_or_string")]
    pub assign_ipv6: bool,
    /// Pool names or CIDRs to allocate IPv4 from; empty = every usable
    /// pool.
    #[serde(default)]
    pub ipv4_pools: Vec<String>,
    #[serde(default)]
    pub ipv6_pools: Vec<String>,
}

/// `dns` (SPEC.md section 3 well-known key), copied into the ADD result.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize,
)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// One entry of `cni.dev/valid-attachments` (GC).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// Log verbosity (`log_level`; Calico uses logrus names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    None,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub cni_version: Version,
    /// The network name; IPAM handles are `<name>.<containerID>`.
    pub name: String,
    pub plugin_type: String,
    pub nodename: Option<String>,
    pub nodename_file: Option<PathBuf>,
    /// Which datastore, from `datastore_type` and its companion fields:
    /// the same type (and checks) as the daemons' `--datastore`.
    pub datastore: DatastoreSpec,
    pub mtu: u32,
    /// `num_queues`: TX and RX queues of both veth ends (Calico's field;
    /// default 1).
    pub num_queues: u32,
    pub log_level: LogLevel,
    pub log_file_path: Option<PathBuf>,
    pub ipam: IpamConf,
    pub ipam_lock_file: Option<PathBuf>,
    pub allow_ip_forwarding: bool,
    pub endpoint_dir: PathBuf,
    /// The node agent's CNI socket: when it answers, the plugin hands the
    /// invocation to the agent (warm datastore and netlink connections)
    /// instead of doing the work itself.
    pub agent_socket: Option<PathBuf>,
    pub dns: Dns,
    /// The previous plugin's result (raw; decoded by `result`).
    pub prev_result: Option<Value>,
    /// GC's `cni.dev/valid-attachments`.
    pub valid_attachments: Option<Vec<Attachment>>,
    /// Fields accepted but not acted on, each a sentence for the log
    /// (e.g. Calico's `policy`).
    pub warnings: Vec<String>,
}

/// The typed view of the top-level keys, before semantic checks.
#[derive(Deserialize)]
struct RawConf {
    #[serde(rename = "cniVersion", default)]
    cni_version: String,
    #[serde(default)]
    name: String,
    #[serde(rename = "type", default)]
    plugin_type: String,
    nodename: Option<String>,
    nodename_file: Option<PathBuf>,
    datastore_type: Option<String>,
    etcd_endpoints: Option<String>,
    etcd_scheme: Option<String>,
    etcd_key_file: Option<PathBuf>,
    etcd_cert_file: Option<PathBuf>,
    etcd_ca_cert_file: Option<PathBuf>,
    datastore_file: Option<PathBuf>,
    kubernetes: Option<RawKubernetes>,
    mtu: Option<u32>,
    num_queues: Option<u32>,
    log_level: Option<String>,
    log_file_path: Option<PathBuf>,
    ipam: Option<Map<String, Value>>,
    ipam_lock_file: Option<PathBuf>,
    container_settings: Option<RawContainerSettings>,
    endpoint_dir: Option<PathBuf>,
    agent_socket: Option<PathBuf>,
    dns: Option<Dns>,
    #[serde(rename = "ipMasq", default)]
    ip_masq: bool,
    #[serde(rename = "prevResult")]
    prev_result: Option<Value>,
    #[serde(rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Vec<Attachment>>,
}

#[derive(Deserialize)]
struct RawKubernetes {
    kubeconfig: Option<PathBuf>,
}

#[derive(Deserialize)]
struct RawContainerSettings {
    #[serde(default)]
    allow_ip_forwarding: bool,
}

/// How strictly unknown keys are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strictness {
    /// The margay main plugin: the whole config is margay's.
    Strict,
    /// margay-ipam as a delegated IPAM plugin: the top level belongs to
    /// another main plugin, only `ipam` is margay's.
    IpamOnly,
}

/// The `cniVersion` of a config, best-effort, for error output before
/// the config is validated.
pub fn peek_version(stdin: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(stdin).ok()?;
    Some(v.get("cniVersion")?.as_str()?.to_string())
}

/// Parses and validates a configuration.
pub fn parse(stdin: &[u8], strictness: Strictness) -> Result<NetConf> {
    let value: Value = serde_json::from_slice(stdin).map_err(|e| {
        CniError::new(
            Code::Decode,
            format!("cannot decode network config: {e}"),
        )
    })?;
    let Value::Object(top) = &value else {
        return Err(CniError::new(
            Code::Decode,
            "cannot decode network config: not a JSON object",
        ));
    };
    if strictness == Strictness::Strict {
        check_keys("", top, TOP_KEYS)?;
        for (key, allowed) in [
            ("kubernetes", KUBERNETES_KEYS),
            ("container_settings", CONTAINER_SETTINGS_KEYS),
        ] {
            if let Some(Value::Object(m)) = top.get(key) {
                check_keys(key, m, allowed)?;
            }
        }
    }
    let raw: RawConf = serde_path_to_error::deserialize(&value)
        .map_err(|e| CniError::config(&e.path().to_string(), e.inner()))?;
    let cni_version: Version = raw.cni_version.parse()?;
    if raw.name.is_empty() {
        return Err(CniError::config("name", "missing or empty"));
    }
    if raw.ip_masq {
        return Err(CniError::new(
            Code::UnsupportedField,
            "unsupported field \"ipMasq\" = true: margay routes pod \
             addresses without NAT",
        ));
    }
    let datastore = datastore_conf(&raw)?;
    let mtu = raw.mtu.unwrap_or(DEFAULT_MTU);
    if !(1280..=65535).contains(&mtu) {
        return Err(CniError::config(
            "mtu",
            format!("{mtu} is out of range (1280-65535)"),
        ));
    }
    let num_queues = raw.num_queues.unwrap_or(1);
    if !(1..=MAX_QUEUES).contains(&num_queues) {
        return Err(CniError::config(
            "num_queues",
            format!("{num_queues} is out of range (1-{MAX_QUEUES})"),
        ));
    }
    let log_level = match raw.log_level.as_deref() {
        None => LogLevel::Info,
        Some(l) => parse_log_level(l)?,
    };
    let ipam = ipam_conf(raw.ipam.as_ref(), strictness)?;
    let mut warnings = Vec::new();
    // Calico's conflist carries `"policy": {"type": "k8s"}` for its
    // NetworkPolicy agent. margay enforces no policy; accepting the key
    // lets a Calico conflist work unchanged, and the warning says it
    // has no effect rather than pretending to honour it.
    if let Some(policy) = top.get("policy") {
        warnings.push(format!(
            "field \"policy\" = {} is ignored: margay does not enforce \
             NetworkPolicy",
            excerpt(&policy.to_string())
        ));
    }
    Ok(NetConf {
        cni_version,
        name: raw.name,
        plugin_type: raw.plugin_type,
        nodename: raw.nodename.filter(|n| !n.is_empty()),
        nodename_file: raw.nodename_file,
        datastore,
        mtu,
        num_queues,
        log_level,
        log_file_path: raw.log_file_path,
        ipam,
        ipam_lock_file: raw.ipam_lock_file,
        allow_ip_forwarding: raw
            .container_settings
            .is_some_and(|c| c.allow_ip_forwarding),
        endpoint_dir: raw
            .endpoint_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ENDPOINT_DIR)),
        agent_socket: raw.agent_socket.filter(|p| !p.as_os_str().is_empty()),
        dns: raw.dns.unwrap_or_default(),
        prev_result: raw.prev_result.filter(|v| !v.is_null()),
        valid_attachments: raw.valid_attachments,
        warnings,
    })
}

impl NetConf {
    /// The IPAM handle of an attachment: `<network name>.<containerID>`
    /// (Calico's handle format).
    pub fn handle(&self, container_id: &str) -> String {
        format!("{}.{}", self.name, container_id)
    }

    /// The node name: `nodename`, else the content of `nodename_file`
    /// (default /var/lib/margay/nodename) if it exists, else the host
    /// name, as Calico resolves it.
    pub fn node_name(&self) -> Result<String> {
        if let Some(n) = &self.nodename {
            return Ok(n.clone());
        }
        let file = self
            .nodename_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_NODENAME_FILE));
        match std::fs::read_to_string(&file) {
            Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if self.nodename_file.is_some() {
                    return Err(CniError::config(
                        "nodename_file",
                        format!("{} does not exist", file.display()),
                    ));
                }
            }
            Err(e) => {
                return Err(CniError::new(
                    Code::Io,
                    format!("cannot read {}: {e}", file.display()),
                ));
            }
        }
        hostname(Path::new("/proc/sys/kernel/hostname"))
    }
}

/// The host name as the kernel has it.
fn hostname(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| {
            CniError::new(Code::Io, format!("cannot read the host name: {e}"))
        })
}

/// Code 2 for the first key of `map` not in `allowed`; the message holds
/// the key and its value (SPEC.md error code 2).
fn check_keys(
    prefix: &str,
    map: &Map<String, Value>,
    allowed: &[&str],
) -> Result<()> {
    for (key, value) in map {
        if !allowed.contains(&key.as_str()) {
            let full = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            return Err(CniError::new(
                Code::UnsupportedField,
                format!(
                    "unsupported field \"{}\" = {}",
                    excerpt(&full),
                    excerpt(&value.to_string())
                ),
            )
            .with_details(format!("allowed here: {}", allowed.join(", "))));
        }
    }
    Ok(())
}

/// A value as an error quotes it: at most a short excerpt, so a huge
/// value is never echoed back on stdout.
fn excerpt(text: &str) -> std::borrow::Cow<'_, str> {
    margay_crds::error::excerpt(text)
}

/// `datastore_type` and the fields it needs.
fn datastore_conf(raw: &RawConf) -> Result<DatastoreSpec> {
    // Calico's manifests template these keys and leave them "" when
    // unused: empty means unset.
    let path =
        |p: &Option<PathBuf>| p.clone().filter(|p| !p.as_os_str().is_empty());
    let tls = EtcdTls {
        ca_cert_file: path(&raw.etcd_ca_cert_file),
        cert_file: path(&raw.etcd_cert_file),
        key_file: path(&raw.etcd_key_file),
    };
    let scheme = raw.etcd_scheme.as_deref().filter(|s| !s.is_empty());
    let datastore_type = raw.datastore_type.as_deref().unwrap_or("etcdv3");
    if datastore_type != "etcdv3" {
        let set = [
            ("etcd_scheme", scheme.is_some()),
            ("etcd_ca_cert_file", tls.ca_cert_file.is_some()),
            ("etcd_cert_file", tls.cert_file.is_some()),
            ("etcd_key_file", tls.key_file.is_some()),
        ];
        if let Some((key, _)) = set.iter().find(|(_, set)| *set) {
            return Err(CniError::config(
                key,
                format!(
                    "only used with datastore_type \"etcdv3\", not \
                     {datastore_type:?}"
                ),
            ));
        }
    }
    match datastore_type {
        "etcdv3" => {
            let eps = raw.etcd_endpoints.as_deref().unwrap_or_default();
            if eps.trim().is_empty() {
                return Err(CniError::config(
                    "etcd_endpoints",
                    "required when datastore_type is \"etcdv3\" \
                     (comma-separated http(s)://HOST:PORT URLs)",
                ));
            }
            let etcd = EtcdSpec::new(eps, tls, KeyStyle::Cni)
                .map_err(|e| CniError::config(e.name, e.reason))?;
            if let Some(scheme) = scheme {
                etcd.check_scheme(scheme, KeyStyle::Cni)
                    .map_err(|e| CniError::config(e.name, e.reason))?;
            }
            Ok(DatastoreSpec::Etcd(etcd))
        }
        "kubernetes" => Ok(DatastoreSpec::Kubernetes {
            kubeconfig: raw
                .kubernetes
                .as_ref()
                .and_then(|k| k.kubeconfig.clone()),
        }),
        "file" => match &raw.datastore_file {
            Some(path) => Ok(DatastoreSpec::File { path: path.clone() }),
            None => Err(CniError::config(
                "datastore_file",
                "required when datastore_type is \"file\"",
            )),
        },
        other => Err(CniError::config(
            "datastore_type",
            format!(
                "{other:?} is not one of \"etcdv3\", \"kubernetes\", \"file\""
            ),
        )),
    }
}

/// The `ipam` section: strict for margay's own type, opaque otherwise.
fn ipam_conf(
    ipam: Option<&Map<String, Value>>,
    strictness: Strictness,
) -> Result<IpamConf> {
    let Some(ipam) = ipam else {
        return Err(CniError::config(
            "ipam",
            "missing (e.g. {\"type\": \"margay-ipam\"})",
        ));
    };
    let plugin = match ipam.get("type") {
        Some(Value::String(t)) if !t.is_empty() => t.clone(),
        Some(other) => {
            return Err(CniError::config(
                "ipam.type",
                format!("{other} is not a plugin name"),
            ));
        }
        None => return Err(CniError::config("ipam.type", "missing")),
    };
    if plugin != MARGAY_IPAM {
        if strictness == Strictness::IpamOnly {
            return Err(CniError::config(
                "ipam.type",
                format!(
                    "{plugin:?}: the margay-ipam plugin only serves type \"{MARGAY_IPAM}\""
                ),
            ));
        }
        return Ok(IpamConf::Delegated { plugin });
    }
    check_keys("ipam", ipam, IPAM_KEYS)?;
    let conf: MargayIpamConf =
        serde_path_to_error::deserialize(&Value::Object(ipam.clone()))
            .map_err(|e| {
                CniError::config(&format!("ipam.{}", e.path()), e.inner())
            })?;
    if !conf.assign_ipv4 && !conf.assign_ipv6 {
        return Err(CniError::config(
            "ipam.assign_ipv4",
            "assign_ipv4 and assign_ipv6 are both false: nothing to assign",
        ));
    }
    Ok(IpamConf::Margay(conf))
}

fn parse_log_level(s: &str) -> Result<LogLevel> {
    match s.to_ascii_lowercase().as_str() {
        "debug" | "trace" => Ok(LogLevel::Debug),
        "info" => Ok(LogLevel::Info),
        "warn" | "warning" => Ok(LogLevel::Warn),
        "error" | "fatal" | "panic" => Ok(LogLevel::Error),
        "none" | "off" => Ok(LogLevel::None),
        _ => Err(CniError::config(
            "log_level",
            format!("{s:?} is not one of debug, info, warning, error, none"),
        )),
    }
}

fn yes() -> bool {
    true
}

/// Calico writes `assign_ipv4: "true"` (a string); accept that and real
/// booleans.
fn bool_or_string<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<bool, D::Error> {
    match Value::deserialize(d)? {
        Value::Bool(b) => Ok(b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        other => Err(serde::de::Error::custom(format!(
            "expected true or false (boolean or string), got {other}"
        ))),
    }
}

#[cfg(test)]
mod tests;
