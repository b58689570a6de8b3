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
//! Removal shifts the following buckets back (no tombstones), so probe
//! sequences stay as short as the load allows.

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

    /// The position in bucket `i` (from `find`).
    pub fn position(&self, i: usize) -> u32 {
        self.buckets[i] as u32 - 1
    }

    /// Point bucket `i` at another position.
    pub fn set_position(&mut self, i: usize, pos: u32) {
        self.buckets[i] = (self.buckets[i] & !0xffff_ffff) | u64::from(pos + 1);
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

    /// Empty bucket `i`, moving back the entries after it that may
    /// move (those whose home is not between the hole and them).
    pub fn remove(&mut self, mut i: usize) {
        let mask = self.mask();
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let b = self.buckets[j];
            if b == 0 {
                break;
            }
            let home = self.home((b >> 32) as u32);
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(i) & mask) {
                self.buckets[i] = b;
                i = j;
            }
        }
        self.buckets[i] = 0;
        self.len -= 1;
        if self.buckets.len() > 1024 && self.len * 8 < self.buckets.len() {
            self.resize(self.wanted(self.len));
        }
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
