//! The CustomResourceDefinitions of all margay kinds, as the `crdgen`
//! binary prints them and `deploy/crds/margay.io.yaml` commits them.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Every CRD, in the kind list's order ([`crate::for_each_kind`]), each
/// with its shortName from there.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    macro_rules! crds {
        (
            ()
            $($T:ident { names: [$($n:literal),* $(,)?], short: $s:literal, },)*
        ) => {
            vec![$(with_short_name(crate::$T::crd(), $s)),*]
        };
    }
    crate::for_each_kind!(crds!)
        .into_iter()
        .map(without_uint_formats)
        .collect()
}

fn with_short_name(
    mut crd: CustomResourceDefinition,
    short: &str,
) -> CustomResourceDefinition {
    crd.spec.names.short_names = Some(vec![short.to_string()]);
    crd
}

/// schemars marks unsigned integers `format: uint8` (uint16, uint32,
/// uint64, uint), formats OpenAPI does not define: apiservers from 1.34
/// warn about each on every apply. The bound the format stood for becomes
/// a `maximum` (schemars already sets `minimum: 0`).
fn without_uint_formats(
    crd: CustomResourceDefinition,
) -> CustomResourceDefinition {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                let max = match map.get("format").and_then(|f| f.as_str()) {
                    Some("uint8") => Some(u64::from(u8::MAX)),
                    Some("uint16") => Some(u64::from(u16::MAX)),
                    Some("uint32") => Some(u64::from(u32::MAX)),
                    Some("uint64" | "uint") => None,
                    _ => return map.values_mut().for_each(walk),
                };
                map.remove("format");
                if let Some(max) = max {
                    map.entry("maximum").or_insert(max.into());
                }
                map.values_mut().for_each(walk);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(&crd).expect("a CRD serializes");
    walk(&mut v);
    serde_json::from_value(v).expect("the same CRD, less formats")
}

/// All CRDs as one multi-document YAML string.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in all_crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}
