//! Local pods, from the endpoint files the CNI plugin writes.
//!
//! Design: for every attachment it wires up, the CNI plugin writes
//! `<endpoint-dir>/<containerID>-<ifname>.json` (default dir
//! `/var/run/margay/endpoints`; see cni/src/endpoint.rs) holding
//!
//! ```json
//! {"containerID": "c1", "ifname": "eth0", "hostIface": "mg1a2b3c4d5e6",
//!  "ips": ["10.244.1.5/32", "fd00:244::5/128"]}
//! ```
//!
//! (written to a temporary name and renamed, so only `*.json` names are
//! read and a half-written file never is), and deletes it on DEL. felix-lite scans the directory: each
//! address becomes a desired `/32` (or `/128`) `dev hostIface` route while
//! that interface exists. Host routes on interfaces with the CNI prefix
//! that no file explains are removed. The file is the truth, not the kernel:
//! a route deleted by hand comes back, and nothing has to be inferred from
//! IPAM attributes or the datastore on the hot path of pod creation.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use ipnetwork::IpNetwork;
use serde::Deserialize;

/// Default endpoint directory.
pub const DEFAULT_ENDPOINT_DIR: &str = "/var/run/margay/endpoints";

/// One endpoint file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointFile {
    /// The attachment's container (informational here).
    #[serde(rename = "containerID", default)]
    pub container_id: Option<String>,
    /// The pod-side interface name (informational here).
    #[serde(default)]
    pub ifname: Option<String>,
    /// The pod's addresses (no prefix length: each is a host route).
    pub ips: Vec<IpNetwork>,
    /// The host-side veth.
    pub host_iface: String,
    /// The CNI network the attachment belongs to (for the plugin's GC).
    #[serde(default)]
    pub network: Option<String>,
}

/// A file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("cannot read endpoint directory {dir}: {source}")]
    Dir {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read endpoint file {file}: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "bad endpoint file {file}: {source} (expected \
         {{\"containerID\": ..., \"ifname\": ..., \"hostIface\": \"mg...\", \"ips\": [\"10.244.1.5/32\"]}})"
    )]
    Parse {
        file: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "endpoint file {file}: hostIface {iface:?} does not start with the \
         interface prefix {prefix:?}"
    )]
    Prefix {
        file: PathBuf,
        iface: String,
        prefix: String,
    },
}

/// The result of one scan: usable pods, and the files that were skipped.
#[derive(Debug, Default)]
pub struct Scan {
    pub pods: HashMap<IpNetwork, String>,
    pub errors: Vec<EndpointError>,
}

/// Reads every endpoint file in `dir`. A missing directory means no pods.
pub fn scan(dir: &Path, iface_prefix: &str) -> Scan {
    let mut out = Scan::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return out,
        Err(source) => {
            out.errors.push(EndpointError::Dir {
                dir: dir.to_path_buf(),
                source,
            });
            return out;
        }
    };
    for entry in entries.flatten() {
        let file = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(".json") || !file.is_file()
        {
            continue;
        }
        match read_one(&file, iface_prefix) {
            Ok(ep) => {
                for net in ep.ips {
                    // Each address is a host route, whatever length the
                    // record was written with.
                    let dst = IpNetwork::from(net.ip());
                    out.pods.insert(dst, ep.host_iface.clone());
                }
            }
            Err(e) => out.errors.push(e),
        }
    }
    out
}

fn read_one(file: &Path, prefix: &str) -> Result<EndpointFile, EndpointError> {
    let text = std::fs::read(file).map_err(|source| EndpointError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    let ep: EndpointFile = serde_json::from_slice(&text).map_err(|source| {
        EndpointError::Parse {
            file: file.to_path_buf(),
            source,
        }
    })?;
    // Routes on other interfaces would not be ours to repair or remove.
    if !ep.host_iface.starts_with(prefix) {
        return Err(EndpointError::Prefix {
            file: file.to_path_buf(),
            iface: ep.host_iface,
            prefix: prefix.to_string(),
        });
    }
    Ok(ep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_reads_good_files_and_reports_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let w = |name: &str, body: &str| {
            std::fs::write(dir.path().join(name), body).unwrap()
        };
        w(
            "c1-eth0.json",
            r#"{"containerID":"c1","ifname":"eth0","hostIface":"mgaaa","ips":["10.4.0.1/32","fd00::1/128"]}"#,
        );
        w("c2-eth0.json.tmp", "half a fi");
        w(".c2.json", "half a fi");
        w(
            "c3-eth0.json",
            r#"{"ips":["10.4.0.3"],"hostIface":"mgccc","extra":1}"#,
        );
        w("c4-eth0.json", r#"{"ips":["10.4.0.4"],"hostIface":"eth0"}"#);
        let scan = scan(dir.path(), "mg");
        assert_eq!(scan.pods.len(), 2);
        assert_eq!(scan.pods[&"10.4.0.1/32".parse().unwrap()], "mgaaa");
        assert_eq!(scan.pods[&"fd00::1/128".parse().unwrap()], "mgaaa");
        let errs: Vec<String> =
            scan.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs.iter().any(|e| e.contains("unknown field `extra`")),
            "{errs:?}"
        );
        assert!(errs.iter().any(|e| e.contains("\"eth0\"")), "{errs:?}");
    }

    #[test]
    fn missing_dir_is_no_pods() {
        let scan = scan(Path::new("/nonexistent/margay/endpoints"), "mg");
        assert!(scan.pods.is_empty() && scan.errors.is_empty());
    }
}
