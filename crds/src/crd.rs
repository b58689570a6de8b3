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
    vec![
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
