//! CNI spec versions margay speaks, and the VERSION command's output.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::error::{CniError, Code};

/// Versions accepted in `cniVersion`, oldest first. Results are written in
/// the version the configuration asks for.
pub const SUPPORTED: [&str; 4] = ["0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// A supported spec version. Ordered, so `v >= Version::V0_4_0` reads as
/// "has CHECK".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

impl Version {
    /// The newest version, used when the config did not say.
    pub const LATEST: Version = Version::V1_1_0;

    /// The dotted form, e.g. "1.1.0".
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V0_3_1 => "0.3.1",
            Version::V0_4_0 => "0.4.0",
            Version::V1_0_0 => "1.0.0",
            Version::V1_1_0 => "1.1.0",
        }
    }

    /// CHECK exists from 0.4.0 on (SPEC.md 0.4.0 changelog); libcni's skel
    /// refuses it for older configs.
    pub fn has_check(self) -> bool {
        self >= Version::V0_4_0
    }

    /// GC and STATUS exist from 1.1.0 on.
    pub fn has_gc_and_status(self) -> bool {
        self >= Version::V1_1_0
    }

    /// Results before 1.0.0 carry `ips[].version` ("4"/"6").
    pub fn has_ip_version_field(self) -> bool {
        self < Version::V1_0_0
    }

    /// `interfaces[].mtu/socketPath/pciID` and `routes[].mtu/advmss/
    /// priority/table/scope` are new in 1.1.0.
    pub fn has_1_1_fields(self) -> bool {
        self >= Version::V1_1_0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Version {
    type Err = CniError;

    /// Code 1 for anything not in [`SUPPORTED`].
    fn from_str(s: &str) -> Result<Version, CniError> {
        match s {
            "0.3.1" => Ok(Version::V0_3_1),
            "0.4.0" => Ok(Version::V0_4_0),
            "1.0.0" => Ok(Version::V1_0_0),
            "1.1.0" => Ok(Version::V1_1_0),
            _ => Err(CniError::new(
                Code::IncompatibleVersion,
                format!(
                    "incompatible CNI version: cniVersion {s:?} is not one of \
                     the supported versions {}",
                    SUPPORTED.join(", ")
                ),
            )),
        }
    }
}

/// The VERSION command's output (SPEC.md "VERSION").
pub fn version_json(config_version: &str) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Out<'a> {
        cni_version: &'a str,
        supported_versions: &'a [&'a str],
    }
    // Answer in the version the runtime asked with when we know it.
    let v = Version::from_str(config_version).unwrap_or(Version::LATEST);
    serde_json::to_string(&Out {
        cni_version: v.as_str(),
        supported_versions: &SUPPORTED,
    })
    .expect("strings serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_order() {
        for s in SUPPORTED {
            assert_eq!(s.parse::<Version>().unwrap().as_str(), s);
        }
        assert!(Version::V0_3_1 < Version::V1_1_0);
        assert!(!Version::V0_3_1.has_check());
        assert!(Version::V0_4_0.has_check());
        assert!(!Version::V1_0_0.has_gc_and_status());
    }

    #[test]
    fn unsupported_version_is_code_1() {
        let e = "0.2.0".parse::<Version>().unwrap_err();
        assert_eq!(e.code, Code::IncompatibleVersion);
        assert_eq!(
            e.msg,
            "incompatible CNI version: cniVersion \"0.2.0\" is not one of \
             the supported versions 0.3.1, 0.4.0, 1.0.0, 1.1.0"
        );
    }

    #[test]
    fn version_output_exact_text() {
        assert_eq!(
            version_json("1.0.0"),
            r#"{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0","1.1.0"]}"#
        );
        assert_eq!(
            version_json(""),
            r#"{"cniVersion":"1.1.0","supportedVersions":["0.3.1","0.4.0","1.0.0","1.1.0"]}"#
        );
    }
}
