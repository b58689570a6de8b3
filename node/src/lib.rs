//! margay's node agent.
//!
//! One process per node that does what calico-node's init and runit do:
//! registers the Node resource (with an autodetected BGP address), installs
//! the CNI plugin when asked, and supervises bgpd and felix-lite as separate
//! processes. They stay separate so that a crash or upgrade of bgpd never
//! empties the FIB: felix-lite keeps the routes while bgpd restarts.

pub mod autodetect;
pub mod cni_install;
pub mod health;
pub mod metrics;
pub mod register;
pub mod supervise;
