//! Endpoint records: what ADD wired for an attachment, one JSON file per
//! attachment in `endpoint_dir` (default /var/run/margay/endpoints), for
//! felix-lite to re-create a pod's host route if it goes missing, and for
//! DEL to find the host veth, and for GC to find what an attachment no
//! longer live left behind. File name: `<containerID>-<ifname>.json`;
//! content: `{"containerID","ifname","hostIface","ips":["10.1.0.5/32"],
//! "network"}` (`network`, the CNI network name, is absent in records
//! written before it existed: GC leaves those alone).
//! Written atomically (temp file + rename) so readers never see half a
//! record.

use std::io;
use std::path::{Path, PathBuf};

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

/// One record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Endpoint {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
    pub host_iface: String,
    pub ips: Vec<IpNetwork>,
    /// The CNI network (config `name`) the attachment belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

/// The record's path.
pub fn path(dir: &Path, container_id: &str, ifname: &str) -> PathBuf {
    dir.join(format!("{container_id}-{ifname}.json"))
}

/// Writes (or replaces) the record.
pub fn write(dir: &Path, ep: &Endpoint) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let final_path = path(dir, &ep.container_id, &ep.ifname);
    let tmp = final_path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(ep).map_err(io::Error::other)?)?;
    std::fs::rename(&tmp, &final_path)
}

/// Reads the record, `None` when there is none (or it is unreadable,
/// which DEL treats the same: fall back to the derived name).
pub fn read(dir: &Path, container_id: &str, ifname: &str) -> Option<Endpoint> {
    let bytes = std::fs::read(path(dir, container_id, ifname)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Every readable record in `dir` (none when it does not exist).
pub fn list(dir: &Path) -> io::Result<Vec<Endpoint>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        match std::fs::read(&path).map(|b| serde_json::from_slice(&b)) {
            Ok(Ok(ep)) => out.push(ep),
            _ => tracing::warn!(path = %path.display(),
                "unreadable endpoint record skipped"),
        }
    }
    Ok(out)
}

/// Removes the record; a missing one is fine.
pub fn remove(dir: &Path, container_id: &str, ifname: &str) -> io::Result<()> {
    match std::fs::remove_file(path(dir, container_id, ifname)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_remove() {
        let dir = tempfile::tempdir().unwrap();
        let ep = Endpoint {
            container_id: "c1".into(),
            ifname: "eth0".into(),
            host_iface: "mg0123456789a".into(),
            ips: vec!["10.1.0.5/32".parse().unwrap()],
            network: None,
        };
        write(dir.path(), &ep).unwrap();
        let text =
            std::fs::read_to_string(dir.path().join("c1-eth0.json")).unwrap();
        assert_eq!(
            text,
            r#"{"containerID":"c1","ifname":"eth0","hostIface":"mg0123456789a","ips":["10.1.0.5/32"]}"#
        );
        assert_eq!(read(dir.path(), "c1", "eth0"), Some(ep));
        remove(dir.path(), "c1", "eth0").unwrap();
        remove(dir.path(), "c1", "eth0").unwrap();
        assert_eq!(read(dir.path(), "c1", "eth0"), None);
    }
}
