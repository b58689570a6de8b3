//! margay's cluster controllers, what Calico's kube-controllers does for
//! Calico's node and IPAM controllers: when a Kubernetes Node is deleted,
//! after a grace period, its margay Node, block affinities and
//! allocations are released (so mesh sessions to it stop); addresses
//! whose pod no longer exists are released ([`podgc`]). One replica
//! acts at a time, elected with a coordination.k8s.io Lease.
//!
//! The decision is sans-IO ([`departed::Departed`], [`lease::Elector`]);
//! [`run`] holds the thin IO tasks around it.

pub mod departed;
pub mod lease;
pub mod podgc;
pub mod run;
