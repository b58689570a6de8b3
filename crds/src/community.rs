//! BGP community values as written in the API: `aa:nn` (standard,
//! RFC 1997) or `aa:nn:mm` (large, RFC 8092).

use std::fmt;

/// A parsed community value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CommunityValue {
    /// RFC 1997: two 16-bit halves.
    Standard(u16, u16),
    /// RFC 8092: global administrator and two 32-bit local parts.
    Large(u32, u32, u32),
}

/// The phrase used in validation errors for community values.
pub const COMMUNITY_ALLOWED: &str = "allowed \"aa:nn\" with each part \
     0-65535 (standard community) or \"aa:nn:mm\" with each part \
     0-4294967295 (large community)";

impl CommunityValue {
    /// Parses `aa:nn` or `aa:nn:mm`.
    pub fn parse(s: &str) -> Option<Self> {
        let parts: Vec<&str> = s.split(':').collect();
        let num = |p: &str| -> Option<u64> {
            // Only plain decimal digits: no signs, spaces or empty parts.
            let digits = p.bytes().all(|b| b.is_ascii_digit());
            if p.is_empty() || p.len() > 10 || !digits {
                return None;
            }
            p.parse().ok()
        };
        match parts.as_slice() {
            [a, b] => {
                let a = u16::try_from(num(a)?).ok()?;
                let b = u16::try_from(num(b)?).ok()?;
                Some(CommunityValue::Standard(a, b))
            }
            [a, b, c] => {
                let a = u32::try_from(num(a)?).ok()?;
                let b = u32::try_from(num(b)?).ok()?;
                let c = u32::try_from(num(c)?).ok()?;
                Some(CommunityValue::Large(a, b, c))
            }
            _ => None,
        }
    }
}

impl fmt::Display for CommunityValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommunityValue::Standard(a, b) => write!(f, "{a}:{b}"),
            CommunityValue::Large(a, b, c) => write!(f, "{a}:{b}:{c}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_standard_and_large() {
        assert_eq!(
            CommunityValue::parse("65001:100"),
            Some(CommunityValue::Standard(65001, 100))
        );
        assert_eq!(
            CommunityValue::parse("4200000000:1:2"),
            Some(CommunityValue::Large(4_200_000_000, 1, 2))
        );
        assert_eq!(CommunityValue::parse("65536:1"), None);
        assert_eq!(CommunityValue::parse("1:2:3:4"), None);
        assert_eq!(CommunityValue::parse("a:b"), None);
        assert_eq!(CommunityValue::parse("1:"), None);
        assert_eq!(CommunityValue::parse("+1:2"), None);
        assert_eq!(CommunityValue::parse("4294967296:1:1"), None);
    }
}
