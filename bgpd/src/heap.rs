//! Giving freed heap memory back to the system after a burst.
//!
//! A full table arriving is a burst of short-lived buffers (socket
//! reads, decoded UPDATEs, the export queues, encoded UPDATEs waiting
//! for the writers) allocated between the long-lived ones (RIB entries,
//! interned attribute sets). glibc's `free` returns memory to the system
//! only from the top of its heap, so once the burst is over the freed
//! buffers between live data stay resident: at a million prefixes,
//! trimming takes about 10 MiB off bgpd's loaded RSS with one attribute
//! set as with 200,000 (`bgpd/benches/bgperf`: 18 MiB less in all, of
//! which 8 MiB are the smaller prefix index).
//! `malloc_trim` hands the free pages anywhere in the heap back
//! (`madvise`), which costs a walk of the whole heap: at a million
//! prefixes, tens of milliseconds. So it runs once a burst is over, not
//! during it: after at least [`TRIM_AFTER`] octets were read or written,
//! once [`QUIET`] has passed with no socket traffic at all (the main
//! loop's reads and the writers' writes both count, since the encoded
//! UPDATEs are freed only once written). A quiet bgpd never runs it, and
//! a trim per burst stays a small fraction of the work that freed the
//! memory (a trim whenever a queue drained, tried first, ran dozens of
//! times per full table and slowed fan-out to ten monitors).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// Octets read and written after which a quiet bgpd trims.
pub const TRIM_AFTER: usize = 1 << 20;

/// How long the sockets must be quiet before a trim.
pub const QUIET: Duration = Duration::from_millis(250);

/// Counts socket traffic and trims the heap once it stops; shared by the
/// main loop and the socket writers (one thread: the atomics only make
/// it shareable).
#[derive(Debug, Default)]
pub struct Trimmer {
    since: AtomicUsize,
    trims: AtomicU64,
    armed: Notify,
}

impl Trimmer {
    /// `octets` were read from or written to a socket.
    pub fn moved(&self, octets: usize) {
        let before = self.since.fetch_add(octets, Ordering::Relaxed);
        if before < TRIM_AFTER && before + octets >= TRIM_AFTER {
            self.armed.notify_one();
        }
    }

    /// Trims once per burst: waits for [`TRIM_AFTER`] octets, then for a
    /// [`QUIET`] period without traffic. Runs until bgpd stops.
    pub async fn run(self: std::sync::Arc<Self>) {
        loop {
            self.armed.notified().await;
            let mut seen = self.since.load(Ordering::Relaxed);
            loop {
                tokio::time::sleep(QUIET).await;
                match self.settle(seen) {
                    Some(now) => seen = now,
                    None => break,
                }
            }
            trim();
        }
    }

    /// After a quiet period that began at count `seen`: `None` if nothing
    /// moved since (a trim is due, counted, and the count starts again),
    /// else the count to wait from.
    fn settle(&self, seen: usize) -> Option<usize> {
        let now = self.since.load(Ordering::Relaxed);
        if now != seen {
            return Some(now);
        }
        self.since.store(0, Ordering::Relaxed);
        self.trims.fetch_add(1, Ordering::Relaxed);
        None
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
    use std::sync::Arc;

    use super::*;

    /// A trim is due only after a whole quiet period, and the count
    /// starts again after it.
    #[test]
    fn a_trim_waits_for_a_quiet_period() {
        let t = Trimmer::default();
        t.moved(TRIM_AFTER);
        let seen = t.since.load(Ordering::Relaxed);
        t.moved(100);
        assert_eq!(t.settle(seen), Some(TRIM_AFTER + 100), "traffic: wait");
        assert_eq!(t.trims(), 0);
        assert_eq!(t.settle(TRIM_AFTER + 100), None, "quiet: trim");
        assert_eq!((t.trims(), t.since.load(Ordering::Relaxed)), (1, 0));
    }

    /// One trim per burst: a burst over the threshold trims once after
    /// it stops; traffic under the threshold afterwards trims nothing.
    #[tokio::test]
    async fn one_trim_per_burst() {
        let t = Arc::new(Trimmer::default());
        tokio::spawn(t.clone().run());
        for _ in 0..4 {
            t.moved(TRIM_AFTER / 2);
            tokio::time::sleep(QUIET / 5).await;
        }
        let waited = std::time::Instant::now();
        while t.trims() == 0 {
            assert!(waited.elapsed() < 20 * QUIET, "no trim after the burst");
            tokio::time::sleep(QUIET / 5).await;
        }
        t.moved(TRIM_AFTER / 2);
        tokio::time::sleep(3 * QUIET).await;
        assert_eq!(t.trims(), 1, "under the threshold: no second trim");
    }
}
