use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube_fake_client::ClientBuilder;

use super::*;
use crate::config::derive;

fn secret(ns: &str, name: &str, data: &[(&str, &str)]) -> Secret {
    let mut s = Secret::default();
    s.metadata.name = Some(name.into());
    s.metadata.namespace = Some(ns.into());
    s.data = Some(
        data.iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect::<BTreeMap<_, _>>(),
    );
    s
}

/// A node and BGPPeers whose passwords come from Secrets.
const PEERS: &str = r#"
apiVersion: margay.io/v1
kind: Node
metadata: {name: dut}
spec: {bgp: {ipv4Address: 10.0.0.1/24}}
---
apiVersion: margay.io/v1
kind: BGPConfiguration
metadata: {name: default}
spec: {asNumber: 65000, nodeToNodeMeshEnabled: false}
---
apiVersion: margay.io/v1
kind: BGPPeer
metadata: {name: tor}
spec:
  peerIP: 10.0.0.2
  asNumber: 65001
  password: {secretKeyRef: {name: bgp-secrets, key: tor}}
---
apiVersion: margay.io/v1
kind: BGPPeer
metadata: {name: spare}
spec:
  peerIP: 10.0.0.3
  asNumber: 65001
  password: {secretKeyRef: {name: bgp-secrets, key: spare, optional: true}}
"#;

fn res(extra: &str) -> Resources {
    let docs = margay_crds::parse_documents(&format!("{PEERS}{extra}"))
        .expect("valid YAML");
    Resources::from_documents(docs)
}

const STRICT_PEER: &str = r#"---
apiVersion: margay.io/v1
kind: BGPPeer
metadata: {name: strict}
spec:
  peerIP: 10.0.0.4
  asNumber: 65001
  password: {secretKeyRef: {name: bgp-secrets, key: strict}}
"#;

fn password_of(r: &Resources, peer: &str) -> Option<String> {
    let d = derive(r, "dut", None).expect("derives");
    d.peers
        .into_iter()
        .find(|p| p.name == peer)
        .unwrap()
        .password
}

#[tokio::test]
async fn secret_keys_become_passwords_and_rotation_applies_on_rederive() {
    let client = ClientBuilder::new()
        .with_object(secret(
            "margay-system",
            "bgp-secrets",
            &[("tor", "s3cret")],
        ))
        // Same name elsewhere: must not be read.
        .with_object(secret("other", "bgp-secrets", &[("spare", "wrong")]))
        .build()
        .await
        .expect("fake client");
    let store = KubeStore::from_client(client.clone());
    let mut r = res("");
    r.secrets = Some(resolve(&store, "margay-system", &r).await.unwrap());
    assert_eq!(
        password_of(&r, "Global_10.0.0.2").as_deref(),
        Some("s3cret")
    );
    // optional: true and absent: no password at all.
    assert_eq!(password_of(&r, "Global_10.0.0.3"), None);

    // The key is rotated; the next derivation reads the new one.
    let api: Api<Secret> = Api::namespaced(client, "margay-system");
    let mut s = api.get("bgp-secrets").await.unwrap();
    s.data = secret("margay-system", "bgp-secrets", &[("tor", "n3w")]).data;
    api.replace("bgp-secrets", &PostParams::default(), &s)
        .await
        .unwrap();
    r.secrets = Some(resolve(&store, "margay-system", &r).await.unwrap());
    assert_eq!(password_of(&r, "Global_10.0.0.2").as_deref(), Some("n3w"));
}

#[tokio::test]
async fn a_missing_required_secret_key_names_peer_field_and_namespace() {
    let client = ClientBuilder::new()
        .with_object(secret("margay-system", "bgp-secrets", &[("tor", "x")]))
        .build()
        .await
        .expect("fake client");
    let store = KubeStore::from_client(client);
    let mut r = res(STRICT_PEER);
    r.secrets = Some(resolve(&store, "margay-system", &r).await.unwrap());
    // The peer is left out (its session not configured) and reported.
    let e = left_out(&r);
    assert!(
        e.contains("BGPPeer \"strict\"")
            && e.contains("spec.password.secretKeyRef")
            && e.contains("margay-system/bgp-secrets")
            && e.contains("\"strict\"")
            && e.contains("optional: true"),
        "{e}"
    );
    // A Secret that does not exist at all reads as absent, not an error.
    let mut r = res("");
    let empty = KubeStore::from_client(
        ClientBuilder::new().build().await.expect("fake client"),
    );
    r.secrets = Some(resolve(&empty, "margay-system", &r).await.unwrap());
    let e = left_out(&r);
    assert!(e.contains("BGPPeer \"tor\""), "{e}");
}

/// What derive left out, one object per line (the other peers are
/// still configured).
fn left_out(r: &Resources) -> String {
    let d = derive(r, "dut", None).unwrap();
    let lines: Vec<String> = d.invalid.iter().map(|o| o.to_string()).collect();
    lines.join("\n")
}

#[test]
fn without_kubernetes_a_secret_ref_stays_a_clear_error() {
    let e = left_out(&res(""));
    assert!(
        e.contains("only resolved with the kubernetes datastore"),
        "{e}"
    );
}

#[test]
fn namespace_comes_from_env_then_service_account_then_default() {
    let dir = tempfile::tempdir().unwrap();
    let sa = dir.path().join("namespace");
    let none = dir.path().join("absent");
    assert_eq!(namespace(Some("kube-net".into()), &sa), "kube-net");
    assert_eq!(namespace(None, &none), DEFAULT_NAMESPACE);
    std::fs::write(&sa, "from-sa\n").unwrap();
    assert_eq!(namespace(None, &sa), "from-sa");
    // An empty POD_NAMESPACE does not count.
    assert_eq!(namespace(Some(String::new()), &sa), "from-sa");
    assert_eq!(namespace(Some("env".into()), &sa), "env");
}

#[tokio::test]
async fn the_mesh_password_comes_from_a_secret_too() {
    let yaml = r#"
apiVersion: margay.io/v1
kind: Node
metadata: {name: dut}
spec: {bgp: {ipv4Address: 10.0.0.1/24}}
---
apiVersion: margay.io/v1
kind: Node
metadata: {name: other}
spec: {bgp: {ipv4Address: 10.0.0.2/24}}
---
apiVersion: margay.io/v1
kind: BGPConfiguration
metadata: {name: default}
spec:
  asNumber: 65000
  nodeMeshPassword: {secretKeyRef: {name: mesh, key: password}}
"#;
    let client = ClientBuilder::new()
        .with_object(secret("kube-net", "mesh", &[("password", "m3sh")]))
        .build()
        .await
        .expect("fake client");
    let store = KubeStore::from_client(client);
    let mut r = Resources::from_documents(
        margay_crds::parse_documents(yaml).expect("valid YAML"),
    );
    r.secrets = Some(resolve(&store, "kube-net", &r).await.unwrap());
    assert_eq!(password_of(&r, "Mesh_10.0.0.2").as_deref(), Some("m3sh"));
}
