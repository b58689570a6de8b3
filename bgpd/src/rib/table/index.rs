//! The hash index of the prefix table: open addressing with linear
//! probing over one array of 8-octet buckets, each holding the low 32
//! bits of its key's hash and a position in the table's value array.
//!
//! Why not hashbrown's `HashTable<u32>`: its control bytes and its
//! buckets are two arrays, so a lookup in a table of a million prefixes
//! pays two cache (and TLB) misses before it even compares a key, and
//! that was the largest item of a transit profile. Here the probe reads
//! one array, and neighbouring buckets share a cache line; the 32 hash
//! bits kept per bucket both find the home bucket again (growing never
//! re-hashes keys) and filter out other keys without touching them.
//! There is no single removal: the table removes in bulk and rebuilds
//! the index (`clear_for`, then `insert`), so there are no tombstones.

/// Buckets per entry at most 4/3: linear probing slows quickly above
/// three quarters full.
const LOAD_NUM: usize = 3;
const LOAD_DEN: usize = 4;
const MIN_BUCKETS: usize = 16;

/// A set of positions keyed by hash (equal hashes are told apart by the
/// caller's key comparison).
#[derive(Debug, Default)]
pub(crate) struct Index {
    /// `tag << 32 | (position + 1)`; 0 is an empty bucket. The length
    /// is zero or a power of two.
    buckets: Vec<u64>,
    len: usize,
}

fn tag(hash: u64) -> u32 {
    hash as u32
}

impl Index {
    fn mask(&self) -> usize {
        self.buckets.len() - 1
    }

    fn home(&self, tag: u32) -> usize {
        tag as usize & self.mask()
    }

    /// The bucket of the entry with `hash` for which `is(position)`
    /// holds.
    pub fn find(
        &self,
        hash: u64,
        mut is: impl FnMut(u32) -> bool,
    ) -> Option<usize> {
        if self.buckets.is_empty() {
            return None;
        }
        let t = tag(hash);
        let mut i = self.home(t);
        loop {
            let b = self.buckets[i];
            if b == 0 {
                return None;
            }
            if (b >> 32) as u32 == t && is(b as u32 - 1) {
                return Some(i);
            }
            i = (i + 1) & self.mask();
        }
    }

    /// Start loading the home bucket of `hash` into the cache, so that a
    /// `find` a few prefixes later does not wait for memory: lookups in a
    /// large table are cache misses, and issuing several at once overlaps
    /// them.
    pub fn prefetch(&self, hash: u64) {
        if self.buckets.is_empty() {
            return;
        }
        let b = &self.buckets[self.home(tag(hash))];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: PREFETCHT0 is a hint: it never faults and has no effect
        // on program state (SSE, always present on x86_64, is its only
        // requirement); the address is a live element anyway.
        // One of the two unsafe places of bgpd; bgpd/Cargo.toml has the
        // transit bench figures that keep it.
        #[allow(unsafe_code)]
        unsafe {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(b).cast());
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = b;
    }

    /// The position in bucket `i` (from `find`).
    pub fn position(&self, i: usize) -> u32 {
        self.buckets[i] as u32 - 1
    }

    /// Add `pos` under `hash` (not present yet).
    pub fn insert(&mut self, hash: u64, pos: u32) {
        if (self.len + 1) * LOAD_DEN > self.buckets.len() * LOAD_NUM {
            self.resize((self.buckets.len() * 2).max(MIN_BUCKETS));
        }
        self.place((u64::from(tag(hash)) << 32) | u64::from(pos + 1));
        self.len += 1;
    }

    fn place(&mut self, b: u64) {
        let mut i = self.home((b >> 32) as u32);
        while self.buckets[i] != 0 {
            i = (i + 1) & self.mask();
        }
        self.buckets[i] = b;
    }

    /// Drop everything, keeping room for `n` entries.
    pub fn clear_for(&mut self, n: usize) {
        self.buckets.clear();
        self.buckets.resize(self.wanted(n), 0);
        self.buckets.shrink_to_fit();
        self.len = 0;
    }

    fn wanted(&self, n: usize) -> usize {
        (n * LOAD_DEN / LOAD_NUM + 1)
            .next_power_of_two()
            .max(MIN_BUCKETS)
    }

    fn resize(&mut self, n: usize) {
        let old = std::mem::replace(&mut self.buckets, vec![0; n]);
        for b in old.into_iter().filter(|b| *b != 0) {
            self.place(b);
        }
    }

    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.buckets.len()
    }
}
