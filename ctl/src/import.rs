//! `import-calico`: converts Calico `projectcalico.org/v3` IPPool, BGPPeer,
//! BGPConfiguration, BGPFilter, Node, IPReservation and
//! IPAMConfiguration, and the `crd.projectcalico.org/v1` objects that
//! Calico's Kubernetes datastore stores (what `kubectl get ippools.crd...
//! -o yaml` prints: the same specs, except IPPool's legacy `nat-outgoing`
//! and `ipip` and the kind `IPAMConfig` for IPAMConfiguration; it has no
//! Node kind, Calico keeps node data on the Kubernetes Node), into
//! margay.io/v1 resources.
//!
//! margay's resources use Calico's field names and meanings, so most
//! fields carry over unchanged. Fields margay does not implement are
//! dropped and reported, as are fields kept whose meaning differs (e.g.
//! `CrossSubnet`); settings whose meaning margay cannot provide
//! (encapsulation, peering with pods) make the import fail, because
//! silently dropping them would change how traffic flows. The result is
//! checked by the same parser and validation as `apply`.

use serde_yaml::{Mapping, Value};

use crate::output::Format;

/// Calico API versions this importer reads.
const CALICO_V3: &str = "projectcalico.org/v3";
const CALICO_CRD_V1: &str = "crd.projectcalico.org/v1";

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("document {document}: invalid YAML: {message}")]
    Yaml { document: usize, message: String },
    #[error("document {document}: {message}")]
    Unsupported { document: usize, message: String },
    #[error("{kind} {name:?}: cannot convert {field}: {reason}")]
    Refused {
        kind: String,
        name: String,
        field: String,
        reason: String,
    },
    #[error(
        "the converted resources do not validate (a margay bug or an invalid input):\n{0}"
    )]
    Invalid(String),
    #[error("cannot render the result: {0}")]
    Render(String),
}

/// The converted resources and what was left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// margay.io/v1 YAML documents (or JSON), ready for `apply -f`.
    pub text: String,
    /// One line per dropped field, e.g. `BGPConfiguration default:
    /// dropped spec.programClusterRoutes (...)`.
    pub dropped: Vec<String>,
}

/// Spec fields margay implements, per kind (Calico spelling = margay's).
fn supported(kind: &str) -> &'static [&'static str] {
    match kind {
        "IPPool" => &[
            "cidr",
            "vxlanMode",
            "ipipMode",
            "natOutgoing",
            "disabled",
            "disableBGPExport",
            "blockSize",
            "nodeSelector",
            "allowedUses",
            "assignmentMode",
        ],
        "BGPPeer" => &[
            "node",
            "nodeSelector",
            "peerSelector",
            "peerIP",
            "asNumber",
            "localASNumber",
            "password",
            "sourceAddress",
            "maxRestartTime",
            "keepaliveTime",
            "ttlSecurity",
            "nextHopMode",
            "keepOriginalNextHop",
            "numAllowedLocalASNumbers",
            "filters",
            "reversePeering",
        ],
        "BGPConfiguration" => &[
            "logSeverityScreen",
            "nodeToNodeMeshEnabled",
            "asNumber",
            "listenPort",
            "nodeMeshPassword",
            "nodeMeshMaxRestartTime",
            "communities",
            "prefixAdvertisements",
            "bindMode",
            // Acted on with the kubernetes datastore (Services);
            // `margayctl apply` to etcd refuses them by name.
            "serviceClusterIPs",
            "serviceExternalIPs",
            "serviceLoadBalancerIPs",
            "serviceLoadBalancerAggregation",
        ],
        "BGPFilter" => &["exportV4", "importV4", "exportV6", "importV6"],
        "Node" => &["bgp", "addresses"],
        "IPReservation" => &["reservedCIDRs"],
        "IPAMConfig" => {
            &["strictAffinity", "maxBlocksPerHost", "autoAllocateBlocks"]
        }
        _ => &[],
    }
}

/// Fields of a Node's `spec.bgp` margay implements.
const NODE_BGP: [&str; 4] = [
    "asNumber",
    "ipv4Address",
    "ipv6Address",
    "routeReflectorClusterID",
];

/// The margay kind for a Calico kind (Calico's v3 API calls the IPAM
/// settings IPAMConfiguration, its v1 CRD IPAMConfig), if importable from
/// `api`.
fn margay_kind(api: &str, kind: &str) -> Option<&'static str> {
    let common = match kind {
        "IPPool" => "IPPool",
        "BGPPeer" => "BGPPeer",
        "BGPConfiguration" => "BGPConfiguration",
        "BGPFilter" => "BGPFilter",
        "IPReservation" => "IPReservation",
        _ => "",
    };
    match (api, kind) {
        (CALICO_V3 | CALICO_CRD_V1, _) if !common.is_empty() => Some(common),
        (CALICO_V3, "Node") => Some("Node"),
        (CALICO_V3, "IPAMConfiguration") => Some("IPAMConfig"),
        (CALICO_CRD_V1, "IPAMConfig") => Some("IPAMConfig"),
        _ => None,
    }
}

/// Why a known Calico field is dropped.
fn drop_reason(kind: &str, field: &str) -> Option<&'static str> {
    Some(match (kind, field) {
        ("BGPConfiguration", "programClusterRoutes") => {
            "felix-lite always programs the routes bgpd selects"
        }
        ("BGPConfiguration", "ipv4NormalRoutePriority")
        | ("BGPConfiguration", "ipv6NormalRoutePriority") => {
            "margay installs routes with the kernel's default priority"
        }
        ("BGPConfiguration", "localWorkloadPeeringIPV4")
        | ("BGPConfiguration", "localWorkloadPeeringIPV6") => {
            "margay does not peer with pods"
        }
        ("Node", "ipv4VXLANTunnelAddr" | "ipv6VXLANTunnelAddr")
        | ("Node", "vxlanTunnelMACAddr" | "vxlanTunnelMACAddrV6")
        | ("Node", "bgp.ipv4IPIPTunnelAddr") => {
            "margay never encapsulates, so it has no tunnel addresses"
        }
        ("Node", "orchRefs") => {
            "margay names a node after its Kubernetes Node, with no \
             orchestrator references"
        }
        ("Node", "wireguard") => "margay does not encrypt pod traffic",
        _ => return margay_crds::validate::unsupported::reason(kind, field),
    })
}

/// Metadata fields kept; the rest (uid, resourceVersion, ...) belong to the
/// source cluster.
const KEPT_METADATA: [&str; 3] = ["name", "labels", "annotations"];

/// Annotations that describe the source cluster's bookkeeping.
const DROPPED_ANNOTATIONS: [&str; 2] = [
    "projectcalico.org/metadata",
    "kubectl.kubernetes.io/last-applied-configuration",
];

/// Converts the Calico YAML in `input` and renders it as `format`
/// (YAML unless JSON is asked for).
pub fn import_calico(
    input: &str,
    format: Format,
) -> Result<Imported, ImportError> {
    let mut out_docs = Vec::new();
    let mut dropped = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(input).enumerate() {
        let document = i + 1;
        let value =
            <Value as serde::Deserialize>::deserialize(doc).map_err(|e| {
                ImportError::Yaml {
                    document,
                    message: e.to_string(),
                }
            })?;
        match value {
            Value::Null => continue,
            Value::Mapping(m) => {
                out_docs.extend(convert_doc(document, &m, &mut dropped)?)
            }
            _ => {
                return Err(ImportError::Unsupported {
                    document,
                    message: "expected a mapping (a resource or a List)".into(),
                });
            }
        }
    }
    let yaml = render_yaml(&out_docs)?;
    check_result(&yaml)?;
    let text = match format {
        Format::Json => {
            let json: Vec<serde_json::Value> = out_docs
                .iter()
                .map(|d| {
                    serde_json::to_value(d)
                        .map_err(|e| ImportError::Render(e.to_string()))
                })
                .collect::<Result<_, _>>()?;
            crate::output::to_json(&json)
                .map_err(|e| ImportError::Render(e.to_string()))?
        }
        _ => yaml,
    };
    Ok(Imported { text, dropped })
}

/// Converts one document: a resource, or a `List` (as `calicoctl get -o
/// yaml` prints) of resources.
fn convert_doc(
    document: usize,
    m: &Mapping,
    dropped: &mut Vec<String>,
) -> Result<Vec<Mapping>, ImportError> {
    let kind = str_field(m, "kind").unwrap_or_default();
    if kind.ends_with("List") {
        let items = match m.get("items") {
            Some(Value::Sequence(items)) => items.clone(),
            None | Some(Value::Null) => Vec::new(),
            Some(_) => {
                return Err(ImportError::Unsupported {
                    document,
                    message: format!("{kind}.items must be a list"),
                });
            }
        };
        let mut out = Vec::new();
        for item in items {
            let Value::Mapping(item) = item else {
                return Err(ImportError::Unsupported {
                    document,
                    message: format!("{kind}.items holds a non-mapping"),
                });
            };
            out.extend(convert_doc(document, &item, dropped)?);
        }
        return Ok(out);
    }
    let api = str_field(m, "apiVersion").unwrap_or_default();
    let Some(kind) = margay_kind(&api, &kind) else {
        return Err(ImportError::Unsupported {
            document,
            message: format!(
                "apiVersion {api:?} kind {kind:?} is not importable; allowed: \
                 {CALICO_V3} IPPool, BGPPeer, BGPConfiguration, BGPFilter, \
                 Node, IPReservation, IPAMConfiguration, and {CALICO_CRD_V1} \
                 IPPool, BGPPeer, BGPConfiguration, BGPFilter, IPReservation, \
                 IPAMConfig"
            ),
        });
    };
    let kind = kind.to_string();
    let meta = match m.get("metadata") {
        Some(Value::Mapping(meta)) => meta.clone(),
        _ => Mapping::new(),
    };
    let name = str_field(&meta, "name").unwrap_or_default();
    if name.is_empty() {
        return Err(ImportError::Unsupported {
            document,
            message: format!("{kind} without metadata.name"),
        });
    }
    let spec = match m.get("spec") {
        Some(Value::Mapping(s)) => s.clone(),
        None | Some(Value::Null) => Mapping::new(),
        Some(_) => {
            return Err(ImportError::Unsupported {
                document,
                message: format!("{kind} {name:?}: spec must be a mapping"),
            });
        }
    };
    let mut note =
        |what: String| dropped.push(format!("{kind} {name}: {what}"));
    if m.contains_key("status") {
        note("dropped status (the source cluster's state)".into());
    }
    let spec = convert_spec(&kind, &name, spec, &mut note)?;

    let mut out = Mapping::new();
    out.insert("apiVersion".into(), margay_crds::API_VERSION.into());
    out.insert("kind".into(), kind.clone().into());
    out.insert("metadata".into(), Value::Mapping(convert_meta(&meta)));
    out.insert("spec".into(), Value::Mapping(spec));
    Ok(vec![out])
}

/// name, labels and user annotations.
fn convert_meta(meta: &Mapping) -> Mapping {
    let mut out = Mapping::new();
    for key in KEPT_METADATA {
        let Some(v) = meta.get(key) else { continue };
        let v = match (key, v) {
            ("annotations", Value::Mapping(a)) => {
                let kept: Mapping = a
                    .iter()
                    .filter(|(k, _)| {
                        !k.as_str()
                            .is_some_and(|k| DROPPED_ANNOTATIONS.contains(&k))
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if kept.is_empty() {
                    continue;
                }
                Value::Mapping(kept)
            }
            (_, Value::Mapping(map)) if map.is_empty() => continue,
            _ => v.clone(),
        };
        out.insert(key.into(), v);
    }
    out
}

/// Keeps supported fields (in the input's order), refuses settings margay
/// cannot honour, and notes every dropped field.
fn convert_spec(
    kind: &str,
    name: &str,
    spec: Mapping,
    note: &mut dyn FnMut(String),
) -> Result<Mapping, ImportError> {
    let refuse = |field: &str, reason: String| ImportError::Refused {
        kind: kind.to_string(),
        name: name.to_string(),
        field: field.to_string(),
        reason,
    };
    let mut out = Mapping::new();
    // crd.projectcalico.org/v1 still carries the pre-v3 `nat-outgoing`.
    let legacy_nat = spec.get("nat-outgoing").and_then(Value::as_bool);
    for (k, v) in spec {
        let Some(field) = k.as_str().map(str::to_string) else {
            note("dropped a non-string spec key".into());
            continue;
        };
        match (kind, field.as_str()) {
            ("IPPool", "ipipMode" | "vxlanMode") => {
                let mode = v.as_str().unwrap_or_default();
                if mode == "CrossSubnet" {
                    // As apply: plain routing inside a subnet, and the
                    // fabric routes pod blocks between subnets.
                    note(format!(
                        "kept spec.{field}: CrossSubnet (margay never \
                         encapsulates: traffic between subnets relies on the \
                         fabric routing pod blocks learned over BGP)"
                    ));
                } else if mode != "Never" {
                    return Err(refuse(
                        &format!("spec.{field}: {mode}"),
                        format!(
                            "margay routes pod traffic natively, with no \
                             encapsulation (no IP-in-IP or VXLAN). Use this pool \
                             with margay only if the network underneath can route \
                             its CIDR (e.g. nodes peer with the ToR), and set \
                             {field}: Never first"
                        ),
                    ));
                }
            }
            ("IPPool", "ipip") => {
                let enabled =
                    v.get("enabled").and_then(Value::as_bool).unwrap_or(false);
                if enabled {
                    return Err(refuse(
                        "spec.ipip.enabled: true",
                        "margay routes pod traffic natively, with no \
                         encapsulation (no IP-in-IP); disable IP-in-IP first"
                            .into(),
                    ));
                }
                note(
                    "dropped spec.ipip (deprecated; IP-in-IP is disabled)"
                        .into(),
                );
                continue;
            }
            ("IPPool", "nat-outgoing") => {
                note("dropped spec.nat-outgoing (deprecated; carried over as natOutgoing)".into());
                continue;
            }
            ("BGPPeer", "localWorkloadSelector") => {
                return Err(refuse(
                    "spec.localWorkloadSelector",
                    "margay does not peer with pods; only nodes and external \
                     peers"
                        .into(),
                ));
            }
            ("IPPool", "namespaceSelector") => {
                // all() (or empty) selects every namespace: the default.
                let sel = v.as_str().unwrap_or_default().trim();
                if matches!(sel, "" | "all()") {
                    out.insert(Value::String(field), v);
                    continue;
                }
            }
            ("Node", "bgp") => {
                let Value::Mapping(bgp) = v else {
                    note("dropped spec.bgp (not a mapping)".into());
                    continue;
                };
                let mut kept = Mapping::new();
                for (bk, bv) in bgp {
                    let sub = bk.as_str().unwrap_or_default().to_string();
                    if NODE_BGP.contains(&sub.as_str()) {
                        kept.insert(bk, bv);
                    } else {
                        let path = format!("bgp.{sub}");
                        let why = drop_reason(kind, &path)
                            .unwrap_or("not implemented by margay");
                        note(format!("dropped spec.{path} ({why})"));
                    }
                }
                out.insert(Value::String(field), Value::Mapping(kept));
                continue;
            }
            _ => {}
        }
        if supported(kind).contains(&field.as_str()) {
            out.insert(Value::String(field), v);
        } else if let Some(reason) = drop_reason(kind, &field) {
            note(format!("dropped spec.{field} ({reason})"));
        } else {
            note(format!("dropped spec.{field} (not implemented by margay)"));
        }
    }
    if legacy_nat == Some(true) && !out.contains_key("natOutgoing") {
        out.insert("natOutgoing".into(), true.into());
    }
    Ok(out)
}

fn str_field(m: &Mapping, key: &str) -> Option<String> {
    m.get(key).and_then(Value::as_str).map(str::to_string)
}

fn render_yaml(docs: &[Mapping]) -> Result<String, ImportError> {
    crate::output::to_yaml_documents(docs)
        .map_err(|e| ImportError::Render(e.to_string()))
}

/// Parses the result as `apply` would and validates it, alone and as a
/// set (pool overlaps).
fn check_result(yaml: &str) -> Result<(), ImportError> {
    let resources = margay_crds::parse_documents(yaml)
        .map_err(|e| ImportError::Invalid(format!("  - {e}")))?;
    margay_crds::validate_set(&resources).map_err(|errors| {
        let lines: Vec<String> =
            errors.iter().map(|e| format!("  - {e}")).collect();
        ImportError::Invalid(lines.join("\n"))
    })
}

#[cfg(test)]
mod tests;
