//! Validation of single resources ([`Validate`]) and of a set of
//! resources together ([`validate_set`]). Errors name the resource, the
//! field, the bad value and what is allowed.

mod filter;
mod immutable;
mod resources;
mod set;
pub mod unsupported;

use ipnetwork::IpNetwork;

pub use crate::error::ValidationError;
pub use filter::KERNEL_UNSUPPORTED;
pub use set::{validate_against, validate_set};

/// Checks one resource on its own.
pub trait Validate {
    /// All problems found, or `Ok(())`.
    fn validate(&self) -> Result<(), Vec<ValidationError>>;
}

/// Parses a network in CIDR notation whose host bits are zero.
pub fn parse_network(
    kind: &str,
    field: &str,
    raw: &str,
) -> Result<IpNetwork, ValidationError> {
    let net: IpNetwork = match raw.parse() {
        Ok(n) if raw.contains('/') => n,
        _ => {
            return Err(ValidationError::string(
                kind,
                field,
                raw,
                "allowed a network in CIDR notation such as \
                 \"10.244.0.0/16\" or \"fd00:10:244::/48\"",
            ));
        }
    };
    let canonical = IpNetwork::new(net.network(), net.prefix())
        .expect("prefix of a parsed network is valid");
    if canonical.ip() != net.ip() {
        return Err(ValidationError::string(
            kind,
            field,
            raw,
            format!("host bits are set; use \"{canonical}\""),
        ));
    }
    Ok(net)
}

/// The reserved AS numbers and why each is rejected.
pub fn asn_problem(asn: u32) -> Option<&'static str> {
    match asn {
        0 => Some("AS 0 is reserved and must not be used in BGP (RFC 7607)"),
        23456 => Some(
            "AS 23456 is AS_TRANS, the placeholder that stands in for \
             4-byte AS numbers in 2-byte fields (RFC 6793)",
        ),
        65535 | 4_294_967_295 => Some("this AS number is reserved (RFC 7300)"),
        _ => None,
    }
}

/// The phrase listing usable AS numbers.
const ASN_ALLOWED: &str = "allowed 1-4294967294 except 23456 and 65535";

/// Rejects reserved AS numbers.
pub fn check_asn(
    kind: &str,
    field: &str,
    asn: u32,
) -> Result<(), ValidationError> {
    match asn_problem(asn) {
        None => Ok(()),
        Some(why) => Err(ValidationError::new(
            kind,
            field,
            asn,
            format!("{why}; {ASN_ALLOWED}"),
        )),
    }
}

/// Checks selector syntax; the parse error is embedded in the message.
pub fn check_selector(
    kind: &str,
    field: &str,
    raw: &str,
) -> Result<crate::Selector, ValidationError> {
    crate::Selector::parse(raw)
        .map_err(|e| ValidationError::string(kind, field, raw, e.to_string()))
}

/// Parses an address that may carry a prefix length (`10.0.0.1` or
/// `10.0.0.1/24`).
pub fn parse_ip_or_cidr(
    kind: &str,
    field: &str,
    raw: &str,
) -> Result<IpNetwork, ValidationError> {
    raw.parse::<IpNetwork>().map_err(|_| {
        ValidationError::string(
            kind,
            field,
            raw,
            "allowed an IP address or CIDR such as \"10.0.0.1\" or \
             \"10.0.0.0/24\"",
        )
    })
}
