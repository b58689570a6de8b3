//! AS numbers as Calico accepts them: a plain number (`64512`) or, as a
//! string, asplain (`"64512"`) or asdot (`"1.10"` = 1 * 65536 + 10,
//! RFC 5396). They are always written back as plain numbers.
//!
//! Use on `Option<u32>` fields with
//! `#[serde(default, with = "crate::asn", skip_serializing_if = ...)]`
//! and `#[schemars(schema_with = "crate::asn::schema")]`. In YAML an
//! asdot value must be quoted (`"1.10"`), else YAML reads a float.

use schemars::{Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Parses asplain (`"65001"`) or asdot (`"1.10"`) text.
pub fn parse_asn(s: &str) -> Option<u32> {
    let digits =
        |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    match s.split_once('.') {
        None if digits(s) => s.parse().ok(),
        Some((hi, lo)) if digits(hi) && digits(lo) => {
            let hi: u16 = hi.parse().ok()?;
            let lo: u16 = lo.parse().ok()?;
            Some((u32::from(hi) << 16) | u32::from(lo))
        }
        _ => None,
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Int(u64),
    Str(String),
}

/// Serde deserializer for `Option<u32>` AS-number fields.
pub fn deserialize<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<u32>, D::Error> {
    deserialize_field(d, "asNumber")
}

/// The same for fields named otherwise (the name goes in the error,
/// since serde's path stops at the enclosing object).
pub(crate) fn deserialize_field<'de, D: Deserializer<'de>>(
    d: D,
    field: &str,
) -> Result<Option<u32>, D::Error> {
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(raw) => from_raw(raw, field).map(Some),
    }
}

/// One AS number from its YAML form; errors name `field`.
fn from_raw<E: serde::de::Error>(raw: Raw, field: &str) -> Result<u32, E> {
    let bad = |shown: String| {
        E::custom(format!(
            "{field}: invalid AS number {shown}: allowed 0-4294967295 as a number, \
             or a quoted asplain/asdot string such as \"64512\" or \"1.10\""
        ))
    };
    match raw {
        Raw::Int(n) => u32::try_from(n).map_err(|_| bad(n.to_string())),
        Raw::Str(s) => parse_asn(&s)
            .ok_or_else(|| bad(format!("{:?}", crate::error::excerpt(&s)))),
    }
}

/// Serde serializer: always a plain number.
pub fn serialize<S: Serializer>(
    v: &Option<u32>,
    s: S,
) -> Result<S::Ok, S::Error> {
    v.serialize(s)
}

/// BGPPeer `asNumber`: Calico's field is a plain number with
/// `omitempty`, so 0 means unset.
pub mod peer {
    use serde::{Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<u32>, D::Error> {
        Ok(super::deserialize_field(d, "asNumber")?.filter(|a| *a != 0))
    }

    pub fn serialize<S: Serializer>(
        v: &Option<u32>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        super::serialize(v, s)
    }
}

/// Lists of AS numbers (BGPFilter `asPathPrefix`, `prependASPath.prefix`):
/// each element a number or a quoted asplain/asdot string, as Calico's
/// `[]numorstring.ASNumber`. Use with `#[serde(default, with =
/// "crate::asn::list")]`.
pub mod list {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<u32>, D::Error> {
        Vec::<super::Raw>::deserialize(d)?
            .into_iter()
            .map(|r| super::from_raw(r, "AS path element"))
            .collect()
    }

    pub fn serialize<S: Serializer>(
        v: &[u32],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }
}

/// `localASNumber` fields.
pub mod local {
    use serde::{Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<u32>, D::Error> {
        super::deserialize_field(d, "localASNumber")
    }

    pub fn serialize<S: Serializer>(
        v: &Option<u32>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        super::serialize(v, s)
    }
}

/// OpenAPI schema: an integer or a string (`x-kubernetes-int-or-string`).
pub fn schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "x-kubernetes-int-or-string": true,
        "nullable": true,
    })
}

/// OpenAPI schema of an AS-number list: integers or strings.
pub fn list_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": { "x-kubernetes-int-or-string": true },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_asplain_and_asdot() {
        assert_eq!(parse_asn("64512"), Some(64512));
        assert_eq!(parse_asn("1.10"), Some(65546));
        assert_eq!(parse_asn("65535.65535"), Some(u32::MAX));
        assert_eq!(parse_asn("65536.0"), None);
        assert_eq!(parse_asn("1."), None);
        assert_eq!(parse_asn("-1"), None);
        assert_eq!(parse_asn("4294967296"), None);
    }
}
