//! Path attributes (RFC 4271 4.3, 5) as one decoded set per UPDATE.
//!
//! [`PathAttrs`] holds every attribute this crate understands as a typed
//! field and keeps unrecognized optional ones raw. MP_REACH_NLRI and
//! MP_UNREACH_NLRI are not here but in [`crate::UpdateMsg`], so that the
//! set can be shared (e.g. behind an `Arc`) by every prefix it applies to.
//! Decoding is in `attribute/decode.rs`, encoding in `attribute/encode.rs`.

use std::net::{Ipv4Addr, Ipv6Addr};

use strum::FromRepr;

use crate::iana::{AS_TRANS, Family, attr_flags};
use crate::nlri::Nlri;

pub(crate) mod decode;
mod encode;

pub use decode::{AttrSection, decode_path_attrs};
pub(crate) use encode::{
    encode_attrs, encode_mp_reach, encode_mp_reach_parts, encode_mp_unreach,
    encode_mp_unreach_parts, mp_reach_header_len,
};

// ===== types =====

/// ORIGIN values (RFC 4271 5.1.1).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, FromRepr,
)]
#[repr(u8)]
pub enum Origin {
    Igp = 0,
    Egp = 1,
    Incomplete = 2,
}

/// AS_PATH segment types (RFC 4271 4.3, RFC 5065 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, FromRepr)]
#[repr(u8)]
pub enum SegmentType {
    Set = 1,
    Sequence = 2,
    ConfedSequence = 3,
    ConfedSet = 4,
}

/// One AS_PATH segment. AS numbers are always held as 4-octet values;
/// the 2- or 4-octet wire form comes from the decode/encode context.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AsSegment {
    pub kind: SegmentType,
    pub asns: Vec<u32>,
}

/// AS_PATH or AS4_PATH.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct AsPath {
    pub segments: Vec<AsSegment>,
}

/// AGGREGATOR or AS4_AGGREGATOR (RFC 4271 5.1.7, RFC 6793 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Aggregator {
    pub asn: u32,
    pub addr: Ipv4Addr,
}

/// An RFC 1997 community: high 16 bits AS, low 16 bits value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Community(pub u32);

/// An RFC 8092 large community.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LargeCommunity {
    pub global_admin: u32,
    pub local_data1: u32,
    pub local_data2: u32,
}

/// An attribute kept as raw octets: unrecognized optional attributes
/// (RFC 4271 5: transitive ones are passed on with Partial set) and
/// MP_REACH/MP_UNREACH of address families we do not decode.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RawAttr {
    /// Flags as received, without the Extended Length bit: that bit only
    /// says how the length was written, and encode recomputes it.
    pub flags: u8,
    pub type_code: u8,
    pub value: Vec<u8>,
}

/// The set of path attributes of one UPDATE (except MP_(UN)REACH_NLRI).
/// An absent attribute is `None` / `false` / an empty list.
///
/// The attributes most routes carry are fields; the rare ones are in
/// [`RareAttrs`] behind one pointer ([`PathAttrs::rare`]), so that a set
/// without them (nearly every set a speaker holds, a million routes may
/// mean hundreds of thousands of sets) is 80 octets instead of 200.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PathAttrs {
    pub origin: Option<Origin>,
    pub as_path: Option<AsPath>,
    pub next_hop: Option<Ipv4Addr>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    pub communities: Vec<Community>,
    /// AGGREGATOR, ORIGINATOR_ID, CLUSTER_LIST, AS4_*, large communities
    /// and unrecognized attributes. Read through `Deref`
    /// (`attrs.rare.cluster_list`), write through
    /// [`PathAttrs::rare_mut`].
    pub rare: Rare,
}

/// The attributes few routes carry; see [`PathAttrs::rare`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RareAttrs {
    pub aggregator: Option<Aggregator>,
    pub originator_id: Option<Ipv4Addr>,
    pub cluster_list: Vec<Ipv4Addr>,
    /// RFC 6793 AS4_PATH, only meaningful on a 2-octet session; see
    /// [`PathAttrs::merge_as4`].
    pub as4_path: Option<AsPath>,
    pub as4_aggregator: Option<Aggregator>,
    pub large_communities: Vec<LargeCommunity>,
    /// Unrecognized attributes, sorted by type code.
    pub unknown: Vec<RawAttr>,
}

/// [`RareAttrs`] allocated only when one of them is present.
///
/// No box and a box holding no attribute are the same value: equality
/// and hashing look through to the attributes (an empty set when there
/// is no box), so two equal attribute sets still intern to one however
/// they were built.
#[derive(Clone, Debug, Default)]
pub struct Rare(Option<Box<RareAttrs>>);

/// What a [`Rare`] without a box reads as.
static NO_RARE: RareAttrs = RareAttrs {
    aggregator: None,
    originator_id: None,
    cluster_list: Vec::new(),
    as4_path: None,
    as4_aggregator: None,
    large_communities: Vec::new(),
    unknown: Vec::new(),
};

/// Next hop carried in MP_REACH_NLRI (RFC 4760 3, RFC 2545 3, RFC 8950).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NextHop {
    V4(Ipv4Addr),
    /// IPv6 global address and optional link-local (32-octet form).
    V6 {
        global: Ipv6Addr,
        link_local: Option<Ipv6Addr>,
    },
}

/// MP_REACH_NLRI (RFC 4760 3) for the IPv4/IPv6 families we decode.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MpReach {
    pub family: Family,
    pub next_hop: NextHop,
    pub nlri: Vec<Nlri>,
}

/// MP_UNREACH_NLRI (RFC 4760 4).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MpUnreach {
    pub family: Family,
    pub withdrawn: Vec<Nlri>,
}

// ===== impl Community =====

impl Community {
    /// RFC 1997 NO_EXPORT.
    pub const NO_EXPORT: Community = Community(0xFFFF_FF01);
    /// RFC 1997 NO_ADVERTISE.
    pub const NO_ADVERTISE: Community = Community(0xFFFF_FF02);
    /// RFC 1997 NO_EXPORT_SUBCONFED.
    pub const NO_EXPORT_SUBCONFED: Community = Community(0xFFFF_FF03);
    /// RFC 3765 NOPEER.
    pub const NO_PEER: Community = Community(0xFFFF_FF04);
    /// RFC 8326 GRACEFUL_SHUTDOWN.
    pub const GRACEFUL_SHUTDOWN: Community = Community(0xFFFF_0000);
    /// RFC 7999 BLACKHOLE.
    pub const BLACKHOLE: Community = Community(0xFFFF_029A);
    /// RFC 9494 LLGR_STALE.
    pub const LLGR_STALE: Community = Community(0xFFFF_0006);
    /// RFC 9494 NO_LLGR.
    pub const NO_LLGR: Community = Community(0xFFFF_0007);

    /// Builds `asn:value`.
    pub const fn new(asn: u16, value: u16) -> Community {
        Community(((asn as u32) << 16) | value as u32)
    }

    /// The high 16 bits.
    pub const fn asn(self) -> u16 {
        (self.0 >> 16) as u16
    }

    /// The low 16 bits.
    pub const fn value(self) -> u16 {
        self.0 as u16
    }
}

impl std::fmt::Display for Community {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.asn(), self.value())
    }
}

// ===== impl AsPath =====

impl AsPath {
    /// A path of one AS_SEQUENCE (empty path for an empty slice).
    pub fn from_sequence(asns: &[u32]) -> AsPath {
        let mut p = AsPath::default();
        for a in asns.iter().rev() {
            p.prepend(*a);
        }
        p
    }

    /// Prepends `asn` as RFC 4271 5.1.2 describes: into the leading
    /// AS_SEQUENCE, or a new one if the path starts otherwise or the
    /// leading segment is full (255 ASes).
    pub fn prepend(&mut self, asn: u32) {
        match self.segments.first_mut() {
            Some(s)
                if s.kind == SegmentType::Sequence && s.asns.len() < 255 =>
            {
                s.asns.insert(0, asn)
            }
            _ => self.segments.insert(
                0,
                AsSegment {
                    kind: SegmentType::Sequence,
                    asns: vec![asn],
                },
            ),
        }
    }

    /// Whether any segment holds AS 0, which RFC 7607 2 forbids in
    /// AS_PATH and AS4_PATH.
    pub fn has_as_zero(&self) -> bool {
        self.segments.iter().any(|s| s.asns.contains(&0))
    }

    /// Path length for best-path selection (RFC 4271 9.1.2.2 a): an
    /// AS_SET counts 1, confederation segments count 0 (RFC 5065 5.3).
    pub fn route_len(&self) -> usize {
        self.segments
            .iter()
            .map(|s| match s.kind {
                SegmentType::Sequence => s.asns.len(),
                SegmentType::Set => 1,
                _ => 0,
            })
            .sum()
    }

    /// The neighbour AS: first AS of a leading AS_SEQUENCE.
    pub fn first_as(&self) -> Option<u32> {
        let s = self.segments.first()?;
        (s.kind == SegmentType::Sequence).then(|| s.asns.first().copied())?
    }

    /// The origin AS: last AS of a trailing AS_SEQUENCE.
    pub fn origin_as(&self) -> Option<u32> {
        let s = self.segments.last()?;
        (s.kind == SegmentType::Sequence).then(|| s.asns.last().copied())?
    }

    /// How many times `asn` occurs (for loop detection with an allowed
    /// count of local AS occurrences).
    pub fn count(&self, asn: u32) -> usize {
        self.segments
            .iter()
            .flat_map(|s| s.asns.iter())
            .filter(|a| **a == asn)
            .count()
    }

    /// Whether any AS needs 4 octets (i.e. would become AS_TRANS).
    pub fn has_4_octet(&self) -> bool {
        self.segments
            .iter()
            .flat_map(|s| s.asns.iter())
            .any(|a| *a > u32::from(u16::MAX))
    }

    /// Number of ASes counted the RFC 6793 4.2.3 way: an AS_SET counts 1,
    /// confederation segments count 0.
    fn rfc6793_len(&self) -> usize {
        self.route_len()
    }

    /// RFC 6793 4.2.3: rebuilds the full path from AS_PATH (`self`,
    /// received from a 2-octet speaker) and AS4_PATH. If AS_PATH is
    /// shorter than AS4_PATH, AS4_PATH is ignored; otherwise the leading
    /// ASes of AS_PATH that AS4_PATH does not cover are kept and AS4_PATH
    /// follows them.
    pub fn merge_as4(&self, as4: &AsPath) -> AsPath {
        let n = self.rfc6793_len();
        let m = as4.rfc6793_len();
        if n < m {
            return self.clone();
        }
        let mut keep = n - m;
        let mut out = AsPath::default();
        for seg in &self.segments {
            if keep == 0 {
                break;
            }
            match seg.kind {
                SegmentType::Sequence => {
                    let take = keep.min(seg.asns.len());
                    out.segments.push(AsSegment {
                        kind: seg.kind,
                        asns: seg.asns[..take].to_vec(),
                    });
                    keep -= take;
                }
                SegmentType::Set => {
                    out.segments.push(seg.clone());
                    keep -= 1;
                }
                // Confederation segments count zero and are kept whole.
                _ => out.segments.push(seg.clone()),
            }
        }
        let mut rest = as4.segments.iter().cloned();
        // Join the kept head and AS4_PATH into one AS_SEQUENCE where they
        // meet, as the path was before the 2-octet speaker split it.
        if let (Some(last), Some(first)) =
            (out.segments.last_mut(), as4.segments.first())
            && last.kind == SegmentType::Sequence
            && first.kind == SegmentType::Sequence
        {
            last.asns.extend_from_slice(&first.asns);
            rest.next();
        }
        out.segments.extend(rest);
        out
    }
}

// ===== impl Rare =====

impl Rare {
    /// Drops the box if it holds no attribute, so a set that lost its
    /// rare attributes (e.g. CLUSTER_LIST cleared on export) does not
    /// keep an empty allocation.
    pub fn shrink(&mut self) {
        if self.0.as_deref().is_some_and(|r| *r == NO_RARE) {
            self.0 = None;
        }
    }

    /// The attributes, if any box is allocated (for clearing fields
    /// without allocating one).
    pub fn get_mut(&mut self) -> Option<&mut RareAttrs> {
        self.0.as_deref_mut()
    }
}

impl From<RareAttrs> for Rare {
    fn from(r: RareAttrs) -> Rare {
        let mut rare = Rare(Some(Box::new(r)));
        rare.shrink();
        rare
    }
}

impl std::ops::Deref for Rare {
    type Target = RareAttrs;

    fn deref(&self) -> &RareAttrs {
        self.0.as_deref().unwrap_or(&NO_RARE)
    }
}

impl PartialEq for Rare {
    fn eq(&self, other: &Rare) -> bool {
        **self == **other
    }
}

impl Eq for Rare {}

impl std::hash::Hash for Rare {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (**self).hash(state)
    }
}

// ===== impl PathAttrs =====

impl PathAttrs {
    /// The rare attributes for writing, allocating their box if there is
    /// none yet. To clear one, use `rare.get_mut()` instead, which does
    /// not allocate.
    pub fn rare_mut(&mut self) -> &mut RareAttrs {
        self.rare.0.get_or_insert_with(Default::default)
    }

    /// RFC 6793 4.2.3, for a session without the 4-octet AS capability:
    /// replaces AS_PATH and AGGREGATOR by their reconstruction from
    /// AS4_PATH / AS4_AGGREGATOR and clears the AS4_* attributes.
    ///
    /// "If the AGGREGATOR attribute ... contains an AS number other than
    /// AS_TRANS, then ... the AS4_AGGREGATOR attribute and the AS4_PATH
    /// attribute SHALL be ignored"; otherwise AS4_AGGREGATOR replaces it.
    pub fn merge_as4(&mut self) {
        let Some(rare) = self.rare.get_mut() else {
            return;
        };
        let as4_path = rare.as4_path.take();
        let as4_agg = rare.as4_aggregator.take();
        let aggregator = rare.aggregator;
        self.rare.shrink();
        if let Some(agg) = aggregator {
            if agg.asn != u32::from(AS_TRANS) {
                return;
            }
            if let Some(a4) = as4_agg {
                self.rare_mut().aggregator = Some(a4);
            }
        }
        if let (Some(p), Some(p4)) = (&self.as_path, as4_path) {
            self.as_path = Some(p.merge_as4(&p4));
        }
    }

    /// RFC 4271 5: prepares unrecognized attributes for passing them on:
    /// non-transitive ones are dropped, transitive ones get the Partial
    /// bit ("If ... not recognized ... the Partial bit MUST be set to 1").
    pub fn pass_on_unknown(&mut self) {
        let Some(rare) = self.rare.get_mut() else {
            return;
        };
        rare.unknown
            .retain(|a| a.flags & attr_flags::TRANSITIVE != 0);
        for a in &mut rare.unknown {
            a.flags |= attr_flags::PARTIAL;
        }
        self.rare.shrink();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A speaker keeps one `PathAttrs` per distinct attribute set, and a
    /// full table means hundreds of thousands of them: the rare
    /// attributes stay behind `Rare`'s one pointer so a set is 80 octets
    /// (it was 200 with them inline).
    #[test]
    fn path_attrs_stay_within_80_octets() {
        assert!(
            std::mem::size_of::<PathAttrs>() <= 80,
            "{}",
            std::mem::size_of::<PathAttrs>()
        );
    }

    /// No box and an empty box are one value, so two equal sets intern
    /// to one however they were built.
    #[test]
    fn empty_rare_box_equals_none_and_hashes_alike() {
        use std::hash::BuildHasher;
        let plain = PathAttrs::default();
        let mut boxed = PathAttrs::default();
        boxed.rare_mut();
        assert!(boxed.rare.0.is_some());
        assert_eq!(plain, boxed);
        let h = std::collections::hash_map::RandomState::new();
        assert_eq!(h.hash_one(&plain), h.hash_one(&boxed));
        boxed.rare.shrink();
        assert!(boxed.rare.0.is_none());
        let mut with = PathAttrs::default();
        with.rare_mut().originator_id = Some(Ipv4Addr::LOCALHOST);
        assert_ne!(plain, with);
        with.rare_mut().originator_id = None;
        assert_eq!(plain, with);
    }
}
