//! The default loader: YAML text to validated margay.io/v1 resources,
//! through margay-crds (parsing with unknown-field checks, per-resource
//! validation, then checks across the set such as overlapping pools).

use serde_json::Value;

/// Parses and validates a multi-document YAML file of margay.io/v1
/// resources, returning each as apiserver JSON. The error text names the
/// document (parse errors) or the resource and field (validation).
pub fn load_resources(text: &str) -> Result<Vec<Value>, String> {
    let resources =
        margay_crds::parse_documents(text).map_err(|e| e.to_string())?;
    margay_crds::validate_set(&resources).map_err(|errs| {
        match errs.as_slice() {
            [one] => one.to_string(),
            many => {
                let lines: Vec<String> =
                    many.iter().map(|e| format!("  - {e}")).collect();
                format!("{} problems:\n{}", many.len(), lines.join("\n"))
            }
        }
    })?;
    resources
        .iter()
        .map(|r| {
            r.to_json().map_err(|e| {
                format!("{} {:?}: cannot serialize: {e}", r.kind(), r.name())
            })
        })
        .collect()
}
