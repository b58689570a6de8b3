//! Calico-style block-affinity IPAM on the margay datastore.
//!
//! Addresses come from IPPools carved into blocks (`blockSize`); each node
//! claims blocks (two-phase BlockAffinity claim) and allocates from them,
//! borrowing from other nodes' blocks when it may not claim more. Every
//! write is a compare-and-swap with bounded retries; a host lock
//! serialises allocations on one node. See calico.md section 2.
//!
//! Layout: the decisions are pure ([`block`], [`search`], [`pools`],
//! [`gc`], [`check`], [`show`]); [`Ipam`] (in `ipam`, `assign`, `claim`,
//! `handle`, `release`) reads and writes the datastore around them;
//! [`ContextCache`] keeps what allocation reads across allocations in a
//! long-lived process (the node agent).
//!
//! ```text
//!  CNI ADD ──> Ipam::auto_assign ──> host lock ──> load pools/config
//!                 │   affine blocks ─> claim new block ─> borrow
//!                 └── per block: read ─> Block::allocate ─> handle += n ─> CAS write
//!  CNI DEL ──> Ipam::release_by_handle ──> blocks named by the handle ─> delete handle
//! ```

pub mod addr;
mod assign;
mod assign_ip;
pub mod block;
pub mod check;
mod claim;
mod convert;
mod ctx_cache;
mod ctx_view;
mod departed;
pub mod error;
mod existing;
pub mod gc;
mod handle;
mod hint;
mod ipam;
pub mod lock;
pub mod model;
pub mod pools;
mod release;
pub mod search;
pub mod show;
mod store;

pub use crate::addr::Family;
pub use crate::assign::{AssignArgs, Assigned, AssignedIp};
pub use crate::check::{Issue, Report};
pub use crate::convert::{InvalidBlock, block_from_obj};
pub use crate::ctx_cache::{CacheStats, ContextCache};
pub use crate::departed::DepartedRelease;
pub use crate::error::{IpamError, Result};
pub use crate::handle::cni_handle;
pub use crate::ipam::{Ipam, IpamOptions};
pub use crate::lock::DEFAULT_LOCK_PATH;
pub use crate::release::{GcStats, ReleaseOutcome, ReleaseRequest};
pub use crate::show::Usage;
