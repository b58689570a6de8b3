//! Installs the CNI binaries and conflist, as Calico's install-cni init
//! container does. Every file is written to a temporary name and renamed,
//! so a runtime never executes a half-copied plugin or reads half a config.

use std::io;
use std::path::{Path, PathBuf};

use margay_datastore::DatastoreSpec;
use serde_json::{Value, json};

/// The binaries a node needs in its CNI bin dir.
pub const CNI_BINARIES: [&str; 2] = ["margay", "margay-ipam"];

/// The conflist file name: sorts before most others, as the runtime uses the
/// first one.
pub const CONFLIST_NAME: &str = "10-margay.conflist";

/// Where to install from and to.
#[derive(Debug, Clone)]
pub struct CniInstall {
    pub source_dir: PathBuf,
    pub bin_dir: PathBuf,
    pub conf_dir: PathBuf,
}

/// The network configuration list for this node: margay at the head,
/// chained with portmap as Calico's manifest does; `agent_socket` is where
/// this agent serves the invocations the plugin relays.
pub fn conflist(
    node: &str,
    datastore: &DatastoreSpec,
    mtu: u32,
    agent_socket: Option<&Path>,
) -> Value {
    let mut plugin = json!({
        "type": "margay",
        "nodename": node,
        "mtu": mtu,
        "log_level": "info",
        "ipam": { "type": "margay-ipam" },
    });
    let obj = plugin.as_object_mut().expect("plugin is an object");
    if let Some(socket) = agent_socket {
        obj.insert("agent_socket".into(), socket.display().to_string().into());
    }
    match datastore {
        DatastoreSpec::Etcd(etcd) => {
            obj.insert("datastore_type".into(), "etcdv3".into());
            obj.insert(
                "etcd_endpoints".into(),
                etcd.endpoints.join(",").into(),
            );
            let files = [
                ("etcd_ca_cert_file", &etcd.tls.ca_cert_file),
                ("etcd_cert_file", &etcd.tls.cert_file),
                ("etcd_key_file", &etcd.tls.key_file),
            ];
            for (key, path) in files {
                if let Some(path) = path {
                    obj.insert(key.into(), path.display().to_string().into());
                }
            }
        }
        DatastoreSpec::Kubernetes { kubeconfig } => {
            obj.insert("datastore_type".into(), "kubernetes".into());
            if let Some(path) = kubeconfig {
                obj.insert(
                    "kubernetes".into(),
                    json!({ "kubeconfig": path.display().to_string() }),
                );
            }
        }
        DatastoreSpec::File { path } => {
            obj.insert("datastore_type".into(), "file".into());
            obj.insert(
                "datastore_file".into(),
                path.display().to_string().into(),
            );
        }
    }
    json!({
        "name": "k8s-pod-network",
        "cniVersion": "1.0.0",
        "plugins": [
            plugin,
            { "type": "portmap", "snat": true, "capabilities": { "portMappings": true } },
        ],
    })
}

impl CniInstall {
    /// Copies the plugin binaries and writes the conflist.
    pub fn install(&self, conflist: &Value) -> io::Result<()> {
        std::fs::create_dir_all(&self.bin_dir)?;
        std::fs::create_dir_all(&self.conf_dir)?;
        for name in CNI_BINARIES {
            let src = self.source_dir.join(name);
            let bytes = std::fs::read(&src).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("reading CNI binary {}: {e}", src.display()),
                )
            })?;
            write_atomic(&self.bin_dir.join(name), &bytes, 0o755)?;
        }
        let text = serde_json::to_vec_pretty(conflist)
            .expect("a JSON value always serializes");
        write_atomic(&self.conf_dir.join(CONFLIST_NAME), &text, 0o644)
    }
}

fn write_atomic(dest: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = dest.with_extension("margay-tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_binaries_and_conflist_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        for b in CNI_BINARIES {
            std::fs::write(src.join(b), format!("#!{b}")).unwrap();
        }
        let inst = CniInstall {
            source_dir: src,
            bin_dir: dir.path().join("bin"),
            conf_dir: dir.path().join("net.d"),
        };
        let ds: DatastoreSpec = "etcd:http://10.0.0.1:2379".parse().unwrap();
        let cfg = conflist(
            "node-1",
            &ds,
            1450,
            Some(Path::new("/var/run/margay/cni.sock")),
        );
        inst.install(&cfg).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("bin/margay")).unwrap(),
            "#!margay"
        );
        let written: Value = serde_json::from_slice(
            &std::fs::read(dir.path().join("net.d").join(CONFLIST_NAME))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(written["plugins"][0]["nodename"], "node-1");
        assert_eq!(written["plugins"][0]["mtu"], 1450);
        assert_eq!(written["plugins"][0]["datastore_type"], "etcdv3");
        assert_eq!(
            written["plugins"][0]["etcd_endpoints"],
            "http://10.0.0.1:2379"
        );
        assert_eq!(
            written["plugins"][0]["agent_socket"],
            "/var/run/margay/cni.sock"
        );
        assert_eq!(written["plugins"][1]["type"], "portmap");
        let without = conflist("node-1", &ds, 1450, None);
        assert!(without["plugins"][0].get("agent_socket").is_none());
    }

    #[test]
    fn etcd_tls_files_reach_the_plugin_config() {
        let ds: DatastoreSpec =
            "etcd:https://10.0.0.1:2379?ca_cert_file=/ca.pem\
             &cert_file=/c.pem&key_file=/k.pem"
                .parse()
                .unwrap();
        let plugin = &conflist("node-1", &ds, 1450, None)["plugins"][0];
        assert_eq!(plugin["etcd_endpoints"], "https://10.0.0.1:2379");
        assert_eq!(plugin["etcd_ca_cert_file"], "/ca.pem");
        assert_eq!(plugin["etcd_cert_file"], "/c.pem");
        assert_eq!(plugin["etcd_key_file"], "/k.pem");
    }

    #[test]
    fn missing_binary_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let inst = CniInstall {
            source_dir: dir.path().join("nowhere"),
            bin_dir: dir.path().join("bin"),
            conf_dir: dir.path().join("net.d"),
        };
        let err = inst.install(&json!({})).unwrap_err();
        assert!(err.to_string().contains("nowhere/margay"), "{err}");
    }
}
