//! Calico's Go types write optional strings as `string` with
//! `omitempty`, so an empty string and an absent field are the same
//! thing. margay reads them the same way, at decode time, so every user
//! of a field (bgpd, IPAM, validation, margayctl) sees `None` for `""`.

use serde::{Deserialize, Deserializer};

/// `Option<String>` where `""` decodes as `None`.
pub(crate) fn empty_is_none<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    let v: Option<String> = Option::deserialize(d)?;
    Ok(v.filter(|s| !s.is_empty()))
}
