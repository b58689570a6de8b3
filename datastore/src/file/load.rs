//! The default loader: YAML text to validated margay.io/v1 resources,
//! through margay-crds (parsing with unknown-field checks, per-resource
//! validation, then checks across the set such as overlapping pools).
//! Each document stands on its own: a bad one is reported and left out,
//! the good ones are served.

use std::collections::BTreeSet;

use margay_crds::{AnyResource, DocumentError, Validate};
use serde_json::Value;

use crate::object::InvalidObject;

/// Parses and validates a multi-document YAML file of margay.io/v1
/// resources: each good resource as apiserver JSON, and each bad one
/// (naming its kind, name and field). A document whose kind or name
/// cannot be read is reported with the kind "document" and its number
/// and line as name. Never fails as a whole: the caller checks UTF-8.
pub fn load_resources(
    text: &str,
) -> Result<(Vec<Value>, Vec<InvalidObject>), String> {
    let mut invalid = Vec::new();
    let mut good: Vec<AnyResource> = Vec::new();
    for doc in margay_crds::parse_each(text) {
        match doc {
            Ok(r) => match r.validate() {
                Ok(()) => good.push(r),
                Err(errs) => invalid.extend(errs.iter().map(|e| {
                    let mut bad = from_validation(e);
                    bad.name = r.name().to_string();
                    bad
                })),
            },
            Err(e) => invalid.push(from_document(e)),
        }
    }
    // Checks across the set (duplicate names, overlapping pools, BGPPeers
    // naming absent BGPFilters): leave out every resource named by an
    // error, until the rest is consistent (leaving one out can only break
    // a reference to it, so this ends).
    while let Err(errs) = margay_crds::validate_set(&good) {
        let bad: BTreeSet<(String, String)> = errs
            .iter()
            .map(|e| (e.kind.clone(), e.name.clone()))
            .collect();
        invalid.extend(errs.iter().map(from_validation));
        let before = good.len();
        good.retain(|r| {
            !bad.contains(&(r.kind().to_string(), r.name().to_string()))
        });
        if good.len() == before {
            return Err(errs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "));
        }
    }
    let docs = good
        .iter()
        .map(|r| {
            r.to_json().map_err(|e| {
                format!("{} {:?}: cannot serialize: {e}", r.kind(), r.name())
            })
        })
        .collect::<Result<_, _>>()?;
    Ok((docs, invalid))
}

fn from_validation(e: &margay_crds::ValidationError) -> InvalidObject {
    InvalidObject {
        kind: e.kind.clone(),
        name: e.name.clone(),
        field: e.field.clone(),
        error: format!("{} is invalid: {}", e.value, e.allowed),
    }
}

fn from_document(e: DocumentError) -> InvalidObject {
    match e {
        DocumentError::Invalid {
            document,
            line,
            kind,
            name,
            message,
        } => InvalidObject {
            kind,
            name,
            field: String::new(),
            error: format!("document {document} (line {line}): {message}"),
        },
        other => {
            let (document, line) = match &other {
                DocumentError::Yaml { document, line, .. }
                | DocumentError::NotAMapping { document, line }
                | DocumentError::Missing { document, line, .. }
                | DocumentError::ApiVersion { document, line, .. }
                | DocumentError::UnknownKind { document, line, .. }
                | DocumentError::Invalid { document, line, .. } => {
                    (*document, *line)
                }
            };
            InvalidObject {
                kind: "document".into(),
                name: format!("{document} (line {line})"),
                field: String::new(),
                error: other.to_string(),
            }
        }
    }
}
