//! The hash index of the prefix table: open addressing with linear
//! probing over one array of 4-octet buckets, each holding a position in
//! the table's value array and, in the bits the positions leave free,
//! a tag of its key's hash.
//!
//! Why not hashbrown's `HashTable<u32>`: its control bytes and its
//! buckets are two arrays, so a lookup in a table of a million prefixes
//! pays two cache (and TLB) misses before it even compares a key, and
//! that was the largest item of a transit profile. Here the probe reads
//! one array, and neighbouring buckets share a cache line; the tag bits
//! filter out other keys without touching them (a million prefixes
//! need 21 position bits, which leaves 11 tag bits: one foreign key in
//! 2048 is compared in vain). Four octets a bucket, not eight: at a
//! million prefixes the index is 8 MiB instead of 16. The price is that
//! a bucket does not hold the whole hash, so growing re-hashes the keys
//! (the table does it, `Table::reindex`: one pass over its values in
//! order, amortised like any doubling). There is no single removal: the
//! table removes in bulk and rebuilds the index (`clear_for`, then
//! `insert`), so there are no tombstones.

/// Buckets per entry at most 4/3: linear probing slows quickly above
/// three quarters full.
const LOAD_NUM: usize = 3;
const LOAD_DEN: usize = 4;
const MIN_BUCKETS: usize = 16;

/// A set of positions keyed by hash (equal hashes are told apart by the
/// caller's key comparison).
#[derive(Debug, Default)]
pub(crate) struct Index {
    /// `tag | (position + 1)`, the position in the low `pos_bits` bits
    /// and the tag above; 0 is an empty bucket. The length is zero or a
    /// power of two.
    buckets: Vec<u32>,
    len: usize,
    /// Mask of the position bits: `buckets.len() - 1`, as every
    /// position + 1 is at most `len`, below `buckets.len()`.
    pos_mask: u32,
}

impl Index {
    fn mask(&self) -> usize {
        self.buckets.len() - 1
    }

    fn home(&self, hash: u64) -> usize {
        hash as usize & self.mask()
    }

    /// The tag of `hash`: its high bits, where the positions leave room.
    fn tag(&self, hash: u64) -> u32 {
        ((hash >> 32) as u32) & !self.pos_mask
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
        let t = self.tag(hash);
        let mut i = self.home(hash);
        loop {
            let b = self.buckets[i];
            if b == 0 {
                return None;
            }
            if b & !self.pos_mask == t && is((b & self.pos_mask) - 1) {
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
        let b = &self.buckets[self.home(hash)];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: PREFETCHT0 is a hint: it never faults and has no effect
        // on program state (SSE, always present on x86_64, is its only
        // requirement); the address is a live element anyway.
        // One of the three unsafe places of bgpd; bgpd/Cargo.toml has the
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
        (self.buckets[i] & self.pos_mask) - 1
    }

    /// Whether one more entry fits; when not, the caller rebuilds the
    /// index bigger (`clear_for`), since only it has the keys.
    pub fn has_room(&self) -> bool {
        (self.len + 1) * LOAD_DEN <= self.buckets.len() * LOAD_NUM
    }

    /// Add `pos` under `hash` (not present yet; `has_room` must hold).
    pub fn insert(&mut self, hash: u64, pos: u32) {
        assert!(self.has_room(), "index full");
        let mut i = self.home(hash);
        while self.buckets[i] != 0 {
            i = (i + 1) & self.mask();
        }
        debug_assert!(pos < self.pos_mask);
        self.buckets[i] = self.tag(hash) | (pos + 1);
        self.len += 1;
    }

    /// Drop everything, keeping room for `n` entries.
    pub fn clear_for(&mut self, n: usize) {
        let want = (n * LOAD_DEN / LOAD_NUM + 1)
            .next_power_of_two()
            .max(MIN_BUCKETS);
        self.buckets.clear();
        self.buckets.resize(want, 0);
        self.buckets.shrink_to_fit();
        // Positions are u32 (+1 here): the table refuses more than
        // 2^32 - 2 of them, so `want - 1` fits.
        self.pos_mask = u32::try_from(want - 1).unwrap_or(u32::MAX);
        self.len = 0;
    }

    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.buckets.len()
    }

    /// Octets held by the buckets.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<u32>()
    }
}
