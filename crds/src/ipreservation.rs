//! IPReservation: addresses IPAM must never hand out (Calico
//! IPReservation).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Reserved addresses.
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
    doc = "Addresses IPAM never hands out (Calico IPReservation).",
    kind = "IPReservation",
    plural = "ipreservations",
    printcolumn = r#"{"name":"ReservedCIDRs","type":"string","jsonPath":".spec.reservedCIDRs"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IPReservationSpec {
    /// Addresses or CIDRs to keep out of allocation.
    #[serde(rename = "reservedCIDRs", default)]
    pub reserved_cidrs: Vec<String>,
}
