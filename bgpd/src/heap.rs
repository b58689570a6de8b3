//! Giving freed heap memory back to the system after a burst.
//!
//! A full table arriving is a burst of short-lived buffers (socket
//! reads, decoded UPDATEs, the export queues, encoded UPDATEs waiting
//! for the writers) allocated between the long-lived ones (RIB entries,
//! interned attribute sets). glibc's `free` returns memory to the system
//! only from the top of its heap, so once the burst is over the freed
//! buffers between live data stay resident: at a million prefixes,
//! trimming takes about 7 MiB off bgpd's loaded RSS with one attribute
//! set as with 200,000 (`bgpd/benches/bgperf`: 15 MiB less in all, of
//! which 8 MiB are the smaller prefix index).
//! `malloc_trim` hands the free pages anywhere in the heap back
//! (`madvise`), which costs a walk of the free lists. It runs when part
//! of bgpd goes idle (the main loop with no input queued, or a socket
//! writer with nothing left to write: the encoded UPDATEs are freed
//! only once written, after the main loop is done with a burst) and at
//! least [`TRIM_AFTER`] octets were read or written since the last
//! trim, so it stays a small fraction of the work that freed the
//! memory, and a quiet bgpd never runs it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Octets read and written after which an idle main loop trims.
pub const TRIM_AFTER: usize = 1 << 20;

/// Counts traffic and trims the heap when a task goes idle; shared by
/// the main loop and the socket writers (one thread: the atomics only
/// make it shareable).
#[derive(Debug, Default)]
pub struct Trimmer {
    since: AtomicUsize,
    trims: AtomicU64,
}

impl Trimmer {
    /// `octets` were read from or written to a socket.
    pub fn moved(&self, octets: usize) {
        self.since.fetch_add(octets, Ordering::Relaxed);
    }

    /// A task has nothing to do: trim if enough went through since the
    /// last time.
    pub fn idle(&self) {
        if self.since.load(Ordering::Relaxed) >= TRIM_AFTER {
            self.since.store(0, Ordering::Relaxed);
            self.trims.fetch_add(1, Ordering::Relaxed);
            trim();
        }
    }

    /// How many times the heap was trimmed.
    pub fn trims(&self) -> u64 {
        self.trims.load(Ordering::Relaxed)
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim takes no pointers; it walks glibc's own free
    // lists under the allocator's locks and releases whole free pages
    // (madvise), leaving every live allocation in place. One of the three
    // unsafe places of bgpd (see bgpd/Cargo.toml).
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators (musl's) give memory back by themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Idle moments trim only once enough traffic went through, and
    /// each trim starts the count again.
    #[test]
    fn trims_after_traffic_when_idle() {
        let t = Trimmer::default();
        t.idle();
        t.moved(TRIM_AFTER - 1);
        t.idle();
        assert_eq!(t.trims(), 0);
        t.moved(1);
        t.idle();
        assert_eq!(t.trims(), 1);
        t.idle();
        assert_eq!(t.trims(), 1, "no traffic since: no second trim");
        t.moved(TRIM_AFTER);
        t.moved(TRIM_AFTER);
        t.idle();
        t.idle();
        assert_eq!(t.trims(), 2);
    }
}
