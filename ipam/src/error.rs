//! The one error type of the IPAM library.

use std::net::IpAddr;

use margay_datastore::DatastoreError;

use crate::addr::Family;
use crate::block::BlockError;
pub use crate::convert::InvalidBlock;
use crate::lock::LockError;

/// `Result` with [`IpamError`] as the default error.
pub type Result<T, E = IpamError> = std::result::Result<T, E>;

/// Why an IPAM operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// Every usable pool is full (and borrowing found nothing either).
    #[error(
        "no free {family} address for node {node}: pool(s) {pools} exhausted"
    )]
    PoolExhausted {
        family: Family,
        node: String,
        /// "name (cidr)" of each pool tried, comma-separated.
        pools: String,
    },

    /// No pool may be used by this node; `reasons` says why for each pool.
    #[error("no usable {family} IP pool for node {node}: {reasons}")]
    NoUsablePool {
        family: Family,
        node: String,
        reasons: String,
    },

    /// The node holds `max` blocks already and strict affinity forbids
    /// borrowing.
    #[error(
        "node {node} already has the maximum of {max} {family} blocks \
         (IPAMConfig maxBlocksPerHost) and strictAffinity forbids borrowing"
    )]
    MaxBlocksPerHost {
        family: Family,
        node: String,
        max: u32,
    },

    /// The datastore could not be reached; retry later.
    #[error("IPAM datastore unavailable: {0}")]
    Unavailable(#[source] DatastoreError),

    /// Compare-and-swap lost every one of its retries.
    #[error("gave up on {what} after {attempts} conflicting concurrent writes")]
    CasRetriesExhausted { what: String, attempts: u32 },

    /// The request itself is wrong (bad pool name, IP outside every pool,
    /// malformed handle, ...).
    #[error("bad IPAM request: {0}")]
    BadRequest(String),
    /// The handle an allocation took to be new holds addresses already (a
    /// repeated request): internal to `auto_assign`, which answers with
    /// them instead.
    #[error("IPAM handle {handle} already holds addresses")]
    HandleHolds { handle: String },

    /// A specific address requested with `assign_ip` is taken.
    #[error("{ip} is already allocated to handle {handle}")]
    AlreadyAllocated { ip: IpAddr, handle: String },

    /// A block refused an operation (e.g. a stale release).
    #[error(transparent)]
    Block(#[from] BlockError),

    /// The host lock could not be taken.
    #[error(transparent)]
    Lock(#[from] LockError),

    /// A stored block that breaks a block invariant (see
    /// [`InvalidBlock`]).
    #[error(transparent)]
    InvalidBlock(#[from] InvalidBlock),

    /// Stored IPAM data that is internally inconsistent.
    #[error("invalid {what}: {message}")]
    Invalid { what: String, message: String },

    /// Any other datastore failure (decode errors, invalid objects).
    #[error("IPAM datastore error: {0}")]
    Datastore(#[source] DatastoreError),
}

impl IpamError {
    /// True when retrying the same request later may succeed: the
    /// datastore was down, writers kept conflicting, or the host lock was
    /// busy. CNI maps these to error code 11 ("try again later").
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            IpamError::Unavailable(_)
                | IpamError::CasRetriesExhausted { .. }
                | IpamError::Lock(LockError::Timeout { .. })
        )
    }
}

impl From<DatastoreError> for IpamError {
    fn from(e: DatastoreError) -> Self {
        if e.is_transient() {
            IpamError::Unavailable(e)
        } else {
            IpamError::Datastore(e)
        }
    }
}
