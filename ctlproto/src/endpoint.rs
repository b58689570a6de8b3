//! Endpoint records (the file format the CNI plugin writes and felix-lite
//! and margayctl read): what ADD wired for an attachment, one JSON file per
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

/// What a scan of the endpoint directory found.
#[derive(Debug, Default)]
pub struct Scan {
    /// The records that read.
    pub records: Vec<Endpoint>,
    /// Each `*.json` file that did not, with the reason. The plugin's GC
    /// skips them; a tool judging what is live must refuse to (such a
    /// file still names an attachment).
    pub unreadable: Vec<(PathBuf, String)>,
}

impl Scan {
    /// The records, or the first file that did not read, named with the
    /// reason: for a tool that must not judge around a record it cannot
    /// read.
    pub fn all(self) -> Result<Vec<Endpoint>, String> {
        match self.unreadable.into_iter().next() {
            Some((path, reason)) => {
                Err(format!("{}: {reason}", path.display()))
            }
            None => Ok(self.records),
        }
    }
}

/// Every record in `dir` (none when it does not exist). Only `*.json`
/// names are read, so a record being written (`*.json.tmp`) never is.
pub fn scan(dir: &Path) -> io::Result<Scan> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Scan::default());
        }
        Err(e) => return Err(e),
    };
    let mut out = Scan::default();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(ep) => out.records.push(ep),
            Err(reason) => out.unreadable.push((path, reason)),
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
        assert_eq!(read(dir.path(), "c1", "eth0"), Some(ep.clone()));
        std::fs::write(dir.path().join("bad-eth0.json"), "{").unwrap();
        let found = scan(dir.path()).unwrap();
        assert_eq!(found.records, vec![ep]);
        assert_eq!(found.unreadable.len(), 1, "{:?}", found.unreadable);
        assert!(found.unreadable[0].0.ends_with("bad-eth0.json"));
        std::fs::remove_file(dir.path().join("bad-eth0.json")).unwrap();
        remove(dir.path(), "c1", "eth0").unwrap();
        remove(dir.path(), "c1", "eth0").unwrap();
        assert_eq!(read(dir.path(), "c1", "eth0"), None);
    }
}
