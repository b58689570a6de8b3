//! The CustomResourceDefinitions of all margay kinds, as the `crdgen`
//! binary prints them and `deploy/crds/margay.io.yaml` commits them.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::{
    BGPConfiguration, BGPFilter, BGPPeer, BlockAffinity, IPAMBlock, IPAMConfig,
    IPAMHandle, IPPool, IPReservation, Node,
};

/// Every CRD, in a fixed order.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    [
        IPPool::crd(),
        BGPPeer::crd(),
        BGPConfiguration::crd(),
        BGPFilter::crd(),
        Node::crd(),
        IPAMBlock::crd(),
        BlockAffinity::crd(),
        IPAMHandle::crd(),
        IPAMConfig::crd(),
        IPReservation::crd(),
    ]
    .into_iter()
    .map(without_uint_formats)
    .collect()
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
