//! The ADD result (SPEC.md section 5 "Success") and its encodings for the
//! older versions a config may ask for.
//!
//! One internal form holds every 1.1.0 field; [`CniResult::to_json`]
//! writes the shape of the requested version: 1.1.0 adds
//! `interfaces[].mtu/socketPath/pciID` and `routes[].mtu/advmss/priority/
//! table/scope`; before 1.0.0 each `ips[]` entry carries `version`.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Dns;
use crate::error::{CniError, Code, Result};
use crate::version::Version;

/// `interfaces[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The netns path for interfaces inside the container; absent for
    /// host interfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_path: Option<String>,
    #[serde(
        default,
        rename = "pciID",
        skip_serializing_if = "Option::is_none"
    )]
    pub pci_id: Option<String>,
}

/// `ips[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    pub address: IpNetwork,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`; absent in IPAM results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// `routes[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    pub dst: IpNetwork,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u8>,
}

/// A result in its 1.1.0 form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

impl CniResult {
    /// Decodes a `prevResult` of any supported version. Unknown fields are
    /// ignored here: results are written by other plugins, not users.
    pub fn from_prev(v: &Value) -> Result<CniResult> {
        let version = v.get("cniVersion").and_then(Value::as_str).unwrap_or("");
        if !version.is_empty() {
            version.parse::<Version>()?;
        }
        let mut v = v.clone();
        if let Value::Object(m) = &mut v {
            m.remove("cniVersion");
            // `ips[].version` (pre-1.0) is implied by the address.
            if let Some(Value::Array(ips)) = m.get_mut("ips") {
                for ip in ips {
                    if let Value::Object(ip) = ip {
                        ip.remove("version");
                    }
                }
            }
            // Other plugins may write fields this decoder does not model;
            // keep only the ones it does so decoding never trips on them.
            if let Some(Value::Object(dns)) = m.get_mut("dns") {
                dns.retain(|k, _| {
                    ["nameservers", "domain", "search", "options"]
                        .contains(&k.as_str())
                });
            }
        }
        serde_json::from_value(v).map_err(|e| {
            CniError::new(
                Code::Decode,
                format!("cannot decode prevResult: {e}"),
            )
        })
    }

    /// The JSON text of this result in version `v`.
    pub fn to_json(&self, v: Version) -> String {
        let mut out = serde_json::to_value(self).expect("result serializes");
        let m = out.as_object_mut().expect("a struct is an object");
        if !v.has_1_1_fields() {
            strip(m.get_mut("interfaces"), &["mtu", "socketPath", "pciID"]);
            strip(
                m.get_mut("routes"),
                &["mtu", "advmss", "priority", "table", "scope"],
            );
        }
        if v.has_ip_version_field()
            && let Some(Value::Array(ips)) = m.get_mut("ips")
        {
            for ip in ips.iter_mut().filter_map(Value::as_object_mut) {
                let is_v6 = ip
                    .get("address")
                    .and_then(Value::as_str)
                    .is_some_and(|a| a.contains(':'));
                let fam = if is_v6 { "6" } else { "4" };
                ip.insert("version".into(), Value::String(fam.into()));
            }
        }
        m.insert("cniVersion".into(), Value::String(v.as_str().into()));
        serde_json::to_string(&out).expect("a Value serializes")
    }
}

/// Removes `keys` from every object of the array at `arr`.
fn strip(arr: Option<&mut Value>, keys: &[&str]) {
    if let Some(Value::Array(items)) = arr {
        for item in items.iter_mut().filter_map(Value::as_object_mut) {
            for k in keys {
                item.remove(*k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "mg0123456789a".into(),
                    mac: Some("ee:ee:ee:ee:ee:ee".into()),
                    mtu: Some(1450),
                    ..Default::default()
                },
                Interface {
                    name: "eth0".into(),
                    mac: Some("02:00:00:00:00:01".into()),
                    mtu: Some(1450),
                    sandbox: Some("/run/netns/x".into()),
                    ..Default::default()
                },
            ],
            ips: vec![IpConfig {
                address: "10.1.0.5/32".parse().unwrap(),
                gateway: None,
                interface: Some(1),
            }],
            routes: vec![Route {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: Some("169.254.1.1".parse().unwrap()),
                mtu: None,
                advmss: None,
                priority: None,
                table: None,
                scope: None,
            }],
            dns: Dns::default(),
        }
    }

    #[test]
    fn result_1_1_0_exact_text() {
        let want = r#"{"cniVersion":"1.1.0","interfaces":[{"mac":"ee:ee:ee:ee:ee:ee","mtu":1450,"name":"mg0123456789a"},{"mac":"02:00:00:00:00:01","mtu":1450,"name":"eth0","sandbox":"/run/netns/x"}],"ips":[{"address":"10.1.0.5/32","interface":1}],"routes":[{"dst":"0.0.0.0/0","gw":"169.254.1.1"}]}"#;
        let got: Value =
            serde_json::from_str(&sample().to_json(Version::V1_1_0)).unwrap();
        assert_eq!(got, serde_json::from_str::<Value>(want).unwrap());
    }

    #[test]
    fn older_versions_drop_new_fields_and_add_ip_version() {
        let got: Value =
            serde_json::from_str(&sample().to_json(Version::V0_3_1)).unwrap();
        assert_eq!(got["cniVersion"], "0.3.1");
        assert_eq!(got["ips"][0]["version"], "4");
        assert!(got["interfaces"][0].get("mtu").is_none());
        let got: Value =
            serde_json::from_str(&sample().to_json(Version::V1_0_0)).unwrap();
        assert!(got["ips"][0].get("version").is_none());
        assert!(got["interfaces"][1].get("mtu").is_none());
        assert_eq!(got["interfaces"][1]["sandbox"], "/run/netns/x");
    }

    #[test]
    fn prev_result_round_trips_from_every_version() {
        for v in [
            Version::V0_3_1,
            Version::V0_4_0,
            Version::V1_0_0,
            Version::V1_1_0,
        ] {
            let text = sample().to_json(v);
            let back =
                CniResult::from_prev(&serde_json::from_str(&text).unwrap())
                    .unwrap();
            assert_eq!(back.ips, sample().ips, "{v}");
            assert_eq!(back.interfaces.len(), 2);
        }
    }

    #[test]
    fn bad_prev_result_is_code_6() {
        let e = CniResult::from_prev(
            &json!({"cniVersion": "1.0.0", "ips": [{"address": "nope"}]}),
        )
        .unwrap_err();
        assert_eq!(e.code, Code::Decode);
        assert!(e.msg.starts_with("cannot decode prevResult"), "{}", e.msg);
        let e =
            CniResult::from_prev(&json!({"cniVersion": "9.9.9"})).unwrap_err();
        assert_eq!(e.code, Code::IncompatibleVersion);
    }
}
