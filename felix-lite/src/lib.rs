//! felix-lite: keeps the kernel FIB equal to what bgpd decided, plus the
//! blackholes of this node's blocks and the routes of its local pods.
//!
//! ```text
//!   bgpd RIB stream ──> stream task ─┐
//!   datastore (BlockAffinity) ───────┤  DaemonInput   ┌────────────┐
//!   endpoint dir scan (timer) ───────┼──────────────> │ main loop  │
//!   netlink monitor + acks ──────────┘                │ Reconciler │
//!                     ^                               └─────┬──────┘
//!                     │   results, dumps, notifications     │ Vec<RouteOp>
//!               netlink task (one, owns the sockets) <──────┘
//! ```
//!
//! Beside it, [`nat`] keeps `table inet margay` (IPPool `natOutgoing`)
//! equal to the IPPools, from its own datastore watch.

pub mod blocks;
pub mod daemon;
pub mod endpoints;
pub mod ipam_usage;
pub mod metrics;
pub mod nat;
pub mod netlink;
pub mod reconcile;
pub mod route;
pub mod stream;
