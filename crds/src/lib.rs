//! margay.io/v1 API types (CRDs), the Calico selector language and
//! validation.
//!
//! Every resource follows Calico's `projectcalico.org/v3` field names,
//! defaults and meanings (IPAM objects follow Calico's
//! `crd.projectcalico.org/v1` JSON); margay-only extensions are marked as
//! such in their docs. Defaults are applied by accessor methods on the
//! spec types (e.g. [`IPPoolSpec::block_size`]), so a resource
//! round-trips exactly as the user wrote it.

pub mod any;
pub mod asn;
pub mod bgpconfig;
pub mod bgpfilter;
pub mod bgppeer;
pub mod blockaffinity;
pub mod community;
pub mod crd;
pub mod duration;
pub mod error;
pub mod ipamblock;
pub mod ipamconfig;
pub mod ipamhandle;
pub mod ippool;
pub mod ipreservation;
mod kinds;
pub mod names;
pub mod net;
pub mod node;
pub mod password;
pub mod selector;
mod unset;
pub mod validate;

pub use any::*;
pub use bgpconfig::*;
pub use bgpfilter::*;
pub use bgppeer::*;
pub use blockaffinity::*;
pub use community::*;
pub use duration::*;
pub use error::ValidationError;
pub use ipamblock::*;
pub use ipamconfig::*;
pub use ipamhandle::*;
pub use ippool::*;
pub use ipreservation::*;
pub use names::*;
pub use node::*;
pub use password::*;
pub use selector::{Expr, Selector, SelectorError};
pub use validate::*;

/// The API group of every margay resource.
pub const GROUP: &str = "margay.io";
/// The API version of every margay resource.
pub const VERSION: &str = "v1";
/// `apiVersion` as written in documents.
pub const API_VERSION: &str = "margay.io/v1";

/// `metadata.name`, or "" when unset.
pub(crate) fn resource_name(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> &str {
    meta.name.as_deref().unwrap_or("")
}
