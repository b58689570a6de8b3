//! margay's CNI 1.1 plugin (`margay`) and delegated IPAM plugin
//! (`margay-ipam`).

pub mod agent;
pub mod check;
pub mod config;
pub mod delegate;
pub use margay_ctlproto::endpoint;
pub mod error;
pub mod ipam;
pub mod ipam_plugin;
pub mod netns;
pub mod nl;
pub mod plugin;
pub mod result;
pub mod run;
pub mod spec;
pub mod sysctl;
pub mod version;
pub mod veth;
