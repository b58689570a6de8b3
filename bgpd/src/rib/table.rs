//! The prefix table behind [`Rib`](super::Rib): a dense `Vec` of values
//! that carry their prefix, found through a hash index of positions in
//! that `Vec` (`table/index.rs`).
//!
//! Why not `HashMap<IpNetwork, Entry>`: hashbrown keeps at most 7/8 of its
//! buckets in use and doubles, so a million prefixes live in 2^21 buckets
//! of 72 octets each (150 MB, half of it empty), and hashing the
//! `IpNetwork` enum through `Hash` costs several hasher rounds per lookup,
//! which dominated a transit profile. Here an empty bucket costs 8 octets,
//! the values are packed without holes, and a prefix hashes with two
//! folded multiplies. A million prefixes cost 8 MiB of index (4-octet
//! buckets, at most twice as many as needed) and 56 octets each of
//! values. Values are only ever removed in bulk (`retain`), so
//! a position stays valid until then.

mod index;

use index::Index;
use ipnetwork::IpNetwork;

/// Folded multiply: the high and low halves of the 128-bit product,
/// xor-ed; every input bit reaches both halves of the result.
fn fold(a: u64, b: u64) -> u64 {
    let m = u128::from(a) * u128::from(b);
    (m as u64) ^ ((m >> 64) as u64)
}

/// Odd constants (from the digits of pi) for the multiplies.
const K1: u64 = 0x243f_6a88_85a3_08d3;
const K2: u64 = 0x1319_8a2e_0370_7344;

/// A value that knows its own prefix (storing the prefix inside the
/// value lets it use the value's padding).
pub(crate) trait Keyed {
    fn key(&self) -> &IpNetwork;
}

/// A map from prefixes to `V`.
#[derive(Debug)]
pub(crate) struct Table<V> {
    /// Positions in `slots`, keyed by the hash of the prefix there.
    index: Index,
    slots: Vec<V>,
    /// Per-table random seed, so that peers cannot aim prefixes at one
    /// bucket.
    seed: u64,
}

impl<V> Default for Table<V> {
    fn default() -> Self {
        use std::hash::BuildHasher;
        let seed = foldhash::fast::RandomState::default().hash_one(K1);
        Table {
            index: Index::default(),
            slots: Vec::new(),
            seed,
        }
    }
}

fn hash(seed: u64, p: &IpNetwork) -> u64 {
    match p {
        IpNetwork::V4(n) => {
            let k = (u64::from(u32::from(n.ip())) << 8) | u64::from(n.prefix());
            fold(fold(k ^ seed, K1), K2)
        }
        IpNetwork::V6(n) => {
            let a = u128::from(n.ip());
            let lo = fold((a as u64) ^ seed, K1);
            let hi = fold(((a >> 64) as u64) ^ u64::from(n.prefix()), K2);
            // The 1 << 63 keeps ::/0 and 0.0.0.0/0 apart (not needed for
            // correctness, only for spread).
            fold(lo ^ hi ^ (1 << 63), K1)
        }
    }
}

impl<V: Keyed> Table<V> {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Where `p` is; valid until the next `retain`.
    pub fn position(&self, p: &IpNetwork) -> Option<usize> {
        let slots = &self.slots;
        self.index
            .find(hash(self.seed, p), |i| slots[i as usize].key() == p)
            .map(|b| self.index.position(b) as usize)
    }

    /// Warm the cache for a coming lookup of `p`.
    pub fn prefetch(&self, p: &IpNetwork) {
        self.index.prefetch(hash(self.seed, p));
    }

    pub fn at_mut(&mut self, i: usize) -> &mut V {
        &mut self.slots[i]
    }

    pub fn get(&self, p: &IpNetwork) -> Option<&V> {
        self.position(p).map(|i| &self.slots[i])
    }

    pub fn get_mut(&mut self, p: &IpNetwork) -> Option<&mut V> {
        self.position(p).map(|i| &mut self.slots[i])
    }

    /// The position of `p`, inserted with `make(p)` when absent.
    pub fn position_or_insert_with(
        &mut self,
        p: IpNetwork,
        make: impl FnOnce(IpNetwork) -> V,
    ) -> usize {
        let h = hash(self.seed, &p);
        let slots = &self.slots;
        match self.index.find(h, |i| *slots[i as usize].key() == p) {
            Some(b) => self.index.position(b) as usize,
            None => {
                let i = self.slots.len();
                // Positions are u32 (and +1 in the index): 4 billion
                // prefixes would need far more memory than any host
                // running bgpd has.
                let pos = u32::try_from(i)
                    .ok()
                    .filter(|i| *i < u32::MAX)
                    .expect("fewer than 2^32 - 1 prefixes");
                self.slots.push(make(p));
                if self.index.has_room() {
                    self.index.insert(h, pos);
                } else {
                    // Growing re-hashes every key (the index keeps only a
                    // tag of each hash, see `index.rs`).
                    self.reindex();
                }
                i
            }
        }
    }

    /// Keeps the values for which `keep` holds, in order, and rebuilds
    /// the index (one pass: cheaper than removing values one by one when
    /// many go at once, which is how the RIB uses it).
    pub fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) {
        let before = self.slots.len();
        self.slots.retain(|v| keep(v));
        if self.slots.len() != before {
            self.reindex();
        }
    }

    /// Rebuilds the index for the values in `slots` (after a compaction,
    /// or to grow it), giving memory back when the table shrank to a
    /// quarter.
    fn reindex(&mut self) {
        let cap = self.slots.capacity();
        if cap > 1024 && self.slots.len() < cap / 4 {
            self.slots.shrink_to(self.slots.len() * 2);
        }
        self.index.clear_for(self.slots.len());
        for (i, v) in self.slots.iter().enumerate() {
            self.index.insert(hash(self.seed, v.key()), i as u32);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&IpNetwork, &V)> {
        self.slots.iter().map(|v| (v.key(), v))
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.slots.iter()
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.slots.iter_mut()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    impl<V> Keyed for (IpNetwork, V) {
        fn key(&self) -> &IpNetwork {
            &self.0
        }
    }

    /// A /24 (or, every third, an IPv6 /64) from a number.
    fn prefix(k: u32) -> IpNetwork {
        if k.is_multiple_of(3) {
            format!("2001:db8:{:x}:{:x}::/64", k >> 16, k & 0xffff)
                .parse()
                .unwrap()
        } else {
            let a = std::net::Ipv4Addr::from(0x0B00_0000 + (k << 8));
            IpNetwork::V4(ipnetwork::Ipv4Network::new(a, 24).unwrap())
        }
    }

    /// Random inserts and bulk removals, checked against a HashMap after
    /// every step: lookups, length and the set of pairs.
    #[test]
    fn behaves_like_a_hashmap() {
        let mut t: Table<(IpNetwork, u32)> = Table::default();
        let mut model: HashMap<IpNetwork, u32> = HashMap::new();
        let mut x: u64 = 0x9e37_79b9;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for step in 0..20_000u32 {
            let r = next();
            let k = (r % 3000) as u32;
            let p = prefix(k);
            if (r >> 32) % 20 == 0 {
                let m = (r >> 40) % 7 + 2;
                let gone = |p: &IpNetwork, v: u32| {
                    (u64::from(v) + u64::from(p.prefix())).is_multiple_of(m)
                };
                t.retain(|(p, v)| !gone(p, *v));
                model.retain(|p, v| !gone(p, *v));
            } else {
                let i = t.position_or_insert_with(p, |p| (p, 0));
                t.at_mut(i).1 += step;
                *model.entry(p).or_insert(0) += step;
            }
            assert_eq!(t.len(), model.len(), "step {step}");
            assert_eq!(t.get(&p).map(|e| &e.1), model.get(&p), "step {step}");
            let absent = prefix(3000 + k);
            assert!(t.get(&absent).is_none());
        }
        let mut got: Vec<_> = t.iter().map(|(p, v)| (*p, v.1)).collect();
        let mut want: Vec<_> = model.into_iter().collect();
        got.sort();
        want.sort();
        assert_eq!(got, want);
        for (p, v) in &want {
            assert_eq!(t.get(p).map(|e| e.1), Some(*v));
        }
    }

    /// The index costs at most 16 octets per prefix: 4-octet buckets, at
    /// most 8/3 of them per prefix (3/4 full at most, doubled). With the
    /// 8-octet buckets it had before, 100,000 prefixes took 21 octets
    /// each; at a full table that is 8 MiB more RSS.
    #[test]
    fn index_is_compact() {
        let mut t: Table<(IpNetwork, u64)> = Table::default();
        for k in 0..100_000 {
            t.position_or_insert_with(prefix(k), |p| (p, 1));
        }
        assert!(
            t.index.bytes() <= 16 * t.len(),
            "{} octets for {} prefixes",
            t.index.bytes(),
            t.len()
        );
        for k in (0..100_000).step_by(997) {
            assert_eq!(t.get(&prefix(k)).map(|e| e.0), Some(prefix(k)));
        }
    }

    /// Emptying a large table gives its memory back.
    #[test]
    fn shrinks_when_emptied() {
        let mut t: Table<(IpNetwork, u64)> = Table::default();
        for k in 0..100_000 {
            t.position_or_insert_with(prefix(k), |p| (p, 1));
        }
        let big = t.slots.capacity();
        t.retain(|(p, _)| *p == prefix(7));
        assert_eq!(t.len(), 1);
        assert_eq!(t.get(&prefix(7)).map(|e| e.1), Some(1));
        assert!(
            t.slots.capacity() <= 2048,
            "{} of {big}",
            t.slots.capacity()
        );
        assert!(t.index.capacity() <= 4096, "{}", t.index.capacity());
    }
}
