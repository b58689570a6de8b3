//! IPAMHandle: what one allocation owner (e.g. one pod interface) holds,
//! so that everything it owns can be released at once (Calico IPAMHandle).

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One handle.
#[derive(
    CustomResource,
    Serialize,
    Deserialize,
    Clone,
    Debug,
    Default,
    PartialEq,
    JsonSchema,
)]
#[kube(
    group = "margay.io",
    version = "v1",
    derive = "PartialEq",
    doc = "The addresses held by one allocation owner (Calico IPAMHandle).",
    kind = "IPAMHandle",
    plural = "ipamhandles",
    printcolumn = r#"{"name":"HandleID","type":"string","jsonPath":".spec.handleID"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IPAMHandleSpec {
    /// The handle ID (also recorded in block attributes).
    #[serde(rename = "handleID")]
    pub handle_id: String,
    /// Number of addresses held per block CIDR.
    #[serde(default)]
    pub block: BTreeMap<String, u32>,
    /// Soft-delete marker.
    #[serde(default)]
    pub deleted: bool,
}
