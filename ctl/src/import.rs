//! `import-calico`: converts Calico `projectcalico.org/v3` IPPool, BGPPeer,
//! BGPConfiguration and BGPFilter (and `crd.projectcalico.org/v1` IPPool,
//! as stored by Calico's Kubernetes datastore) into margay.io/v1
//! resources.
//!
//! margay's resources use Calico's field names and meanings, so most
//! fields carry over unchanged. Fields margay does not implement are
//! dropped and reported; settings whose meaning margay cannot provide
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
            "namespaceSelector",
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
            "reachableBy",
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
            "serviceClusterIPs",
            "serviceExternalIPs",
            "serviceLoadBalancerIPs",
            "serviceLoadBalancerAggregation",
            "ignoredInterfaces",
        ],
        "BGPFilter" => &["exportV4", "importV4", "exportV6", "importV6"],
        _ => &[],
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
        _ => return None,
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
    let known_kind = matches!(
        kind.as_str(),
        "IPPool" | "BGPPeer" | "BGPConfiguration" | "BGPFilter"
    );
    let ok = match api.as_str() {
        CALICO_V3 => known_kind,
        CALICO_CRD_V1 => kind == "IPPool",
        _ => false,
    };
    if !ok {
        return Err(ImportError::Unsupported {
            document,
            message: format!(
                "apiVersion {api:?} kind {kind:?} is not importable; allowed: \
                 {CALICO_V3} IPPool, BGPPeer, BGPConfiguration, BGPFilter, and \
                 {CALICO_CRD_V1} IPPool"
            ),
        });
    }
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
        |what: String| dropped.push(format!("{kind} {name}: dropped {what}"));
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
            note("a non-string spec key".into());
            continue;
        };
        match (kind, field.as_str()) {
            ("IPPool", "ipipMode" | "vxlanMode") => {
                let mode = v.as_str().unwrap_or_default();
                if mode != "Never" {
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
                note("spec.ipip (deprecated; IP-in-IP is disabled)".into());
                continue;
            }
            ("IPPool", "nat-outgoing") => {
                note("spec.nat-outgoing (deprecated; carried over as natOutgoing)".into());
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
            _ => {}
        }
        if supported(kind).contains(&field.as_str()) {
            out.insert(Value::String(field), v);
        } else if let Some(reason) = drop_reason(kind, &field) {
            note(format!("spec.{field} ({reason})"));
        } else {
            note(format!("spec.{field} (not implemented by margay)"));
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
