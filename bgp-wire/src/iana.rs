//! IANA registry values used on the wire: AFI/SAFI, message types, path
//! attribute type codes, capability codes and optional parameter types.

use std::fmt;

use strum::FromRepr;

// ===== address families =====

/// Address Family Identifier (IANA "Address Family Numbers").
///
/// Values we do not implement are kept in `Other` so that capabilities and
/// ROUTE-REFRESH messages for them survive a decode/encode round trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Afi {
    Ipv4,
    Ipv6,
    Other(u16),
}

/// Subsequent Address Family Identifier (RFC 4760 section 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Safi {
    Unicast,
    Multicast,
    Other(u8),
}

/// An AFI/SAFI pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Family {
    pub afi: Afi,
    pub safi: Safi,
}

impl From<u16> for Afi {
    fn from(v: u16) -> Afi {
        match v {
            1 => Afi::Ipv4,
            2 => Afi::Ipv6,
            v => Afi::Other(v),
        }
    }
}

impl From<Afi> for u16 {
    fn from(a: Afi) -> u16 {
        match a {
            Afi::Ipv4 => 1,
            Afi::Ipv6 => 2,
            Afi::Other(v) => v,
        }
    }
}

impl From<u8> for Safi {
    fn from(v: u8) -> Safi {
        match v {
            1 => Safi::Unicast,
            2 => Safi::Multicast,
            v => Safi::Other(v),
        }
    }
}

impl From<Safi> for u8 {
    fn from(s: Safi) -> u8 {
        match s {
            Safi::Unicast => 1,
            Safi::Multicast => 2,
            Safi::Other(v) => v,
        }
    }
}

impl Family {
    pub const IPV4_UNICAST: Family = Family::new(Afi::Ipv4, Safi::Unicast);
    pub const IPV6_UNICAST: Family = Family::new(Afi::Ipv6, Safi::Unicast);
    pub const IPV4_MULTICAST: Family = Family::new(Afi::Ipv4, Safi::Multicast);
    pub const IPV6_MULTICAST: Family = Family::new(Afi::Ipv6, Safi::Multicast);

    /// Builds a family from its two halves.
    pub const fn new(afi: Afi, safi: Safi) -> Family {
        Family { afi, safi }
    }

    /// Bit index in [`FamilySet`], for the four families this crate
    /// decodes NLRI for.
    const fn bit(self) -> Option<u8> {
        match (self.afi, self.safi) {
            (Afi::Ipv4, Safi::Unicast) => Some(0),
            (Afi::Ipv6, Safi::Unicast) => Some(1),
            (Afi::Ipv4, Safi::Multicast) => Some(2),
            (Afi::Ipv6, Safi::Multicast) => Some(3),
            _ => None,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "afi {} safi {}",
            u16::from(self.afi),
            u8::from(self.safi)
        )
    }
}

/// A small set of the families whose NLRI this crate decodes (IPv4/IPv6
/// unicast and multicast); used in [`crate::DecodeCxt`] for per-family
/// negotiated options (ADD-PATH, extended next hop).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FamilySet(u8);

impl FamilySet {
    /// The empty set.
    pub const EMPTY: FamilySet = FamilySet(0);

    /// Adds `f`; families without NLRI support are ignored (returns false).
    pub fn insert(&mut self, f: Family) -> bool {
        match f.bit() {
            Some(b) => {
                self.0 |= 1 << b;
                true
            }
            None => false,
        }
    }

    /// Whether `f` is in the set.
    pub fn contains(&self, f: Family) -> bool {
        f.bit().is_some_and(|b| self.0 & (1 << b) != 0)
    }

    /// Builds a set from a list of families.
    pub fn of(fams: &[Family]) -> FamilySet {
        let mut s = FamilySet::EMPTY;
        for f in fams {
            s.insert(*f);
        }
        s
    }
}

// ===== message types (RFC 4271 4.1, RFC 2918 3) =====

/// BGP message type codes; `MessageType::from_repr` maps a wire code
/// (`None` for unknown types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, FromRepr)]
#[repr(u8)]
pub enum MessageType {
    Open = 1,
    Update = 2,
    Notification = 3,
    Keepalive = 4,
    RouteRefresh = 5,
}

// ===== path attribute type codes =====

/// Path attribute type codes (IANA "BGP Path Attributes").
pub mod attr_type {
    pub const ORIGIN: u8 = 1;
    pub const AS_PATH: u8 = 2;
    pub const NEXT_HOP: u8 = 3;
    pub const MULTI_EXIT_DISC: u8 = 4;
    pub const LOCAL_PREF: u8 = 5;
    pub const ATOMIC_AGGREGATE: u8 = 6;
    pub const AGGREGATOR: u8 = 7;
    pub const COMMUNITIES: u8 = 8;
    pub const ORIGINATOR_ID: u8 = 9;
    pub const CLUSTER_LIST: u8 = 10;
    pub const MP_REACH_NLRI: u8 = 14;
    pub const MP_UNREACH_NLRI: u8 = 15;
    pub const AS4_PATH: u8 = 17;
    pub const AS4_AGGREGATOR: u8 = 18;
    pub const LARGE_COMMUNITY: u8 = 32;
}

/// Path attribute flag bits (RFC 4271 4.3).
pub mod attr_flags {
    pub const OPTIONAL: u8 = 0x80;
    pub const TRANSITIVE: u8 = 0x40;
    pub const PARTIAL: u8 = 0x20;
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

// ===== OPEN optional parameters and capabilities =====

/// Optional parameter type for capabilities (RFC 5492 4).
pub const OPT_PARAM_CAPABILITIES: u8 = 2;
/// RFC 9072 2: a Non-Ext OP Type of 255 marks the extended encoding.
pub const OPT_PARAM_EXTENDED: u8 = 255;

/// Capability codes (IANA "Capability Codes").
pub mod cap_code {
    pub const MULTIPROTOCOL: u8 = 1;
    pub const ROUTE_REFRESH: u8 = 2;
    pub const EXTENDED_NEXT_HOP: u8 = 5;
    pub const EXTENDED_MESSAGE: u8 = 6;
    pub const GRACEFUL_RESTART: u8 = 64;
    pub const FOUR_OCTET_AS: u8 = 65;
    pub const ADD_PATH: u8 = 69;
    pub const ENHANCED_ROUTE_REFRESH: u8 = 70;
    pub const FQDN: u8 = 73;
}

/// AS_TRANS, the 2-octet stand-in for a 4-octet AS (RFC 6793 9).
pub const AS_TRANS: u16 = 23456;
/// BGP version implemented (RFC 4271 4.2).
pub const BGP_VERSION: u8 = 4;
