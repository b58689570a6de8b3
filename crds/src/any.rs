//! [`AnyResource`]: one of the margay kinds, and [`parse_documents`],
//! which reads the multi-document YAML a user would `kubectl apply`.

use serde::de::DeserializeOwned;
use serde_yaml::Value;

use crate::{
    API_VERSION, BGPConfiguration, BGPFilter, BGPPeer, BlockAffinity,
    IPAMBlock, IPAMConfig, IPAMHandle, IPPool, IPReservation, Node,
};

/// Generates [`AnyResource`], [`KINDS`], their accessors and the
/// parser's dispatch from the kind list ([`crate::for_each_kind`]).
macro_rules! any_resource {
    (
        ()
        $($T:ident { names: [$($n:literal),* $(,)?], short: $s:literal, },)*
    ) => {
        /// Any margay resource.
        #[derive(Clone, Debug, PartialEq)]
        pub enum AnyResource {
            $($T($T),)*
        }

        /// Every kind [`parse_documents`] accepts.
        pub const KINDS: &[&str] = &[$(stringify!($T)),*];

        impl AnyResource {
            /// The resource's kind, e.g. `IPPool`.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(AnyResource::$T(_) => stringify!($T),)*
                }
            }
        }

        $(
            impl From<$T> for AnyResource {
                fn from(r: $T) -> Self {
                    AnyResource::$T(r)
                }
            }
        )*

        /// Deserialises `text` as `kind`, one of [`KINDS`].
        fn typed_any(
            kind: &str,
            text: &str,
        ) -> Option<Result<AnyResource, serde_yaml::Error>> {
            match kind {
                $(stringify!($T) => {
                    Some(typed::<$T>(text).map(AnyResource::$T))
                })*
                _ => None,
            }
        }
    };
}
crate::for_each_kind!(any_resource!);

/// Top-level keys of a document.
const TOP_LEVEL: [&str; 4] = ["apiVersion", "kind", "metadata", "spec"];

/// Keys of Kubernetes `ObjectMeta`.
const METADATA_FIELDS: [&str; 15] = [
    "annotations",
    "creationTimestamp",
    "deletionGracePeriodSeconds",
    "deletionTimestamp",
    "finalizers",
    "generateName",
    "generation",
    "labels",
    "managedFields",
    "name",
    "namespace",
    "ownerReferences",
    "resourceVersion",
    "selfLink",
    "uid",
];

/// Why a document could not be read. `document` counts from 1 and
/// `line` is the line of the document's `---` marker (1 for a first
/// document without one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("document {document} (line {line}): invalid YAML: {message}")]
    Yaml {
        document: usize,
        line: usize,
        message: String,
    },
    #[error(
        "document {document} (line {line}): expected a mapping with \
         apiVersion, kind, metadata and spec"
    )]
    NotAMapping { document: usize, line: usize },
    #[error(
        "document {document} (line {line}): missing {field} (allowed {})",
        allowed_for(field)
    )]
    Missing {
        document: usize,
        line: usize,
        field: &'static str,
    },
    #[error(
        "document {document} (line {line}): apiVersion {found:?} is not \
         supported; allowed \"margay.io/v1\""
    )]
    ApiVersion {
        document: usize,
        line: usize,
        found: String,
    },
    #[error(
        "document {document} (line {line}): kind {found:?} is not \
         supported; allowed {}", KINDS.join(", ")
    )]
    UnknownKind {
        document: usize,
        line: usize,
        found: String,
    },
    #[error("document {document} (line {line}): {kind} {name:?}: {message}")]
    Invalid {
        document: usize,
        line: usize,
        kind: String,
        name: String,
        message: String,
    },
}

/// What a missing top-level field may be set to.
fn allowed_for(field: &str) -> String {
    match field {
        "kind" => KINDS.join(", "),
        _ => format!("{API_VERSION:?}"),
    }
}

// ===== impl AnyResource =====

impl AnyResource {
    /// The resource's `metadata.name` ("" when unset).
    pub fn name(&self) -> &str {
        crate::with_any_resource!(self, r => crate::resource_name(&r.metadata))
    }

    /// The resource as the JSON an apiserver would return.
    pub fn to_json(&self) -> serde_json::Result<serde_json::Value> {
        crate::with_any_resource!(self, r => serde_json::to_value(r))
    }
}

// ===== global functions =====

/// Parses multi-document YAML into resources. Every document must have
/// `apiVersion: margay.io/v1`, a known `kind` and a `metadata.name`;
/// unknown fields anywhere are errors; empty documents are skipped.
pub fn parse_documents(yaml: &str) -> Result<Vec<AnyResource>, DocumentError> {
    let mut out = Vec::new();
    for (idx, (line, text)) in split_documents(yaml).into_iter().enumerate() {
        if let Some(r) = parse_one(idx + 1, line, &text)? {
            out.push(r);
        }
    }
    Ok(out)
}

/// Like [`parse_documents`], but each document on its own: one bad
/// document does not hide the others (a file datastore serves every good
/// one and reports the bad ones).
pub fn parse_each(yaml: &str) -> Vec<Result<AnyResource, DocumentError>> {
    split_documents(yaml)
        .into_iter()
        .enumerate()
        .filter_map(|(idx, (line, text))| {
            parse_one(idx + 1, line, &text).transpose()
        })
        .collect()
}

// ===== helper functions =====

/// Splits YAML text at `---` document markers, returning each document's
/// first line number (1-based) and its text. A marker is `---` at the
/// start of a line followed by whitespace or the end of the line; any
/// content after it on the same line belongs to the new document.
fn split_documents(yaml: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut cur = String::new();
    let mut start = 1;
    for (i, l) in yaml.lines().enumerate() {
        let rest = l.strip_prefix("---").filter(|r| {
            r.is_empty() || r.starts_with(' ') || r.starts_with('\t')
        });
        if let Some(rest) = rest {
            docs.push((start, std::mem::take(&mut cur)));
            start = i + 1;
            cur.push_str(rest);
            cur.push('\n');
        } else if l == "..." {
            // End-of-document marker: the next document starts after it.
            docs.push((start, std::mem::take(&mut cur)));
            start = i + 2;
        } else {
            cur.push_str(l);
            cur.push('\n');
        }
    }
    docs.push((start, cur));
    docs
}

/// Parses one document; `Ok(None)` for an empty one.
fn parse_one(
    document: usize,
    line: usize,
    text: &str,
) -> Result<Option<AnyResource>, DocumentError> {
    let yaml_err = |e: serde_yaml::Error| DocumentError::Yaml {
        document,
        line,
        message: relocate(&e, line),
    };
    let value: Value = serde_yaml::from_str(text).map_err(yaml_err)?;
    let map = match value {
        Value::Null => return Ok(None),
        Value::Mapping(m) => m,
        _ => return Err(DocumentError::NotAMapping { document, line }),
    };
    let get_str = |field: &'static str| match map.get(field) {
        Some(Value::String(s)) => Ok(crate::error::excerpt(s).into_owned()),
        Some(other) => Ok(crate::error::excerpt(
            serde_yaml::to_string(other).unwrap_or_default().trim(),
        )
        .into_owned()),
        None => Err(DocumentError::Missing {
            document,
            line,
            field,
        }),
    };
    let api_version = get_str("apiVersion")?;
    if api_version != API_VERSION {
        return Err(DocumentError::ApiVersion {
            document,
            line,
            found: api_version,
        });
    }
    let kind = get_str("kind")?;
    if !KINDS.contains(&kind.as_str()) {
        return Err(DocumentError::UnknownKind {
            document,
            line,
            found: kind,
        });
    }
    let name = map
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .map_or(String::new(), |n| crate::error::excerpt(n).into_owned());
    let invalid = |message: String| DocumentError::Invalid {
        document,
        line,
        kind: kind.clone(),
        name: name.clone(),
        message,
    };
    check_keys(&map, &TOP_LEVEL, "").map_err(&invalid)?;
    if let Some(Value::Mapping(meta)) = map.get("metadata") {
        check_keys(meta, &METADATA_FIELDS, "metadata.").map_err(&invalid)?;
    }
    if name.is_empty() {
        return Err(invalid(
            "metadata.name is missing: allowed a name such \
                            as \"default\""
                .into(),
        ));
    }
    // Deserialise from the text (not the Value) so that serde_yaml's
    // error carries the field path, e.g. `spec.password: unknown field`.
    let parsed = typed_any(&kind, text).expect("kind is one of KINDS");
    parsed.map(Some).map_err(|e| invalid(relocate(&e, line)))
}

fn typed<T: DeserializeOwned>(text: &str) -> Result<T, serde_yaml::Error> {
    serde_yaml::from_str(text)
}

/// Rejects keys of `map` outside `allowed`.
fn check_keys(
    map: &serde_yaml::Mapping,
    allowed: &[&str],
    prefix: &str,
) -> Result<(), String> {
    for key in map.keys() {
        let k = key.as_str().unwrap_or("<non-string key>");
        if !allowed.contains(&k) {
            return Err(format!(
                "unknown field `{prefix}{}`, expected one of {}",
                crate::error::excerpt(k),
                allowed
                    .iter()
                    .map(|a| format!("`{a}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    Ok(())
}

/// serde_yaml's message with its document-relative location replaced
/// by the line in the whole input.
fn relocate(e: &serde_yaml::Error, first_line: usize) -> String {
    let msg = crate::error::shorten_quoted(&e.to_string());
    match e.location() {
        Some(loc) => {
            let suffix =
                format!(" at line {} column {}", loc.line(), loc.column());
            let base = msg.strip_suffix(&suffix).unwrap_or(&msg);
            format!(
                "{base} at line {} column {}",
                first_line + loc.line() - 1,
                loc.column()
            )
        }
        None => msg,
    }
}
