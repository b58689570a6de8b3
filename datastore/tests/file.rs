//! The read-only file backend with the real margay.io/v1 types: load,
//! validation errors naming the document/field, reload with watch events,
//! bad content kept out, writes refused.

use std::path::Path;
use std::time::Duration;

use futures::{Stream, StreamExt};
use margay_crds::{BGPConfiguration, IPPool};
use margay_datastore::file::{FileStore, load_resources};
use margay_datastore::{
    Datastore, DatastoreError, DatastoreSpec, Result, WatchEvent,
};

/// Two pools and a BGPConfiguration, as a user would `kubectl apply`.
const RESOURCES: &str = "\
apiVersion: margay.io/v1
kind: IPPool
metadata:
  name: a
  labels: {zone: east}
spec:
  cidr: 10.1.0.0/16
  blockSize: 26
---
apiVersion: margay.io/v1
kind: IPPool
metadata:
  name: b
spec:
  cidr: 10.2.0.0/16
---
apiVersion: margay.io/v1
kind: BGPConfiguration
metadata:
  name: default
spec:
  asNumber: 64512
  nodeToNodeMeshEnabled: true
";

/// Opens `path` polling every 20 ms.
async fn open_fast(path: &Path) -> (FileStore, Datastore) {
    let store =
        FileStore::open_with(path, load_resources, Duration::from_millis(20))
            .await
            .unwrap();
    (store.clone(), Datastore::File(store))
}

/// Replaces the file content atomically (write + rename), so the poller
/// never sees a half-written file.
fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A temp dir holding `res.yaml` with `text`.
fn file_with(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("res.yaml");
    write(&path, text);
    (dir, path)
}

/// The next `n` pool events as (type, name, cidr), failing after 10 s.
async fn pool_events<S>(
    watch: &mut S,
    n: usize,
) -> Vec<(String, String, String)>
where
    S: Stream<Item = Result<WatchEvent<IPPool>>> + Unpin,
{
    let mut out = Vec::new();
    while out.len() < n {
        let ev = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .unwrap_or_else(|_| panic!("no event after {out:?}"))
            .expect("watch ended")
            .expect("watch error");
        let t = match &ev {
            WatchEvent::Added(_) => "Added",
            WatchEvent::Modified(_) => "Modified",
            WatchEvent::Deleted(_) => "Deleted",
        };
        assert!(!ev.resource_version().is_empty());
        out.push((
            t.to_string(),
            ev.name().to_string(),
            ev.object().spec.cidr.clone(),
        ));
    }
    out
}

#[tokio::test]
async fn loads_every_document_by_kind() {
    let (_dir, path) = file_with(RESOURCES);
    let (_, ds) = open_fast(&path).await;
    let pools = ds.list::<IPPool>().await.unwrap();
    assert_eq!(pools.resource_version, "1");
    let cidrs: Vec<_> =
        pools.items.iter().map(|p| p.spec.cidr.as_str()).collect();
    assert_eq!(cidrs, vec!["10.1.0.0/16", "10.2.0.0/16"]);
    let a = ds.get::<IPPool>("a").await.unwrap().unwrap();
    assert_eq!(a.metadata.labels.unwrap()["zone"], "east");
    assert_eq!(a.metadata.resource_version.as_deref(), Some("1"));
    assert_eq!(a.spec.block_size, Some(26));
    let cfg = ds
        .get::<BGPConfiguration>("default")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cfg.spec.as_number, Some(64512));
    assert!(ds.get::<IPPool>("default").await.unwrap().is_none());
}

#[tokio::test]
async fn writes_are_refused_naming_the_file() {
    let (_dir, path) = file_with(RESOURCES);
    let (_, ds) = open_fast(&path).await;
    assert!(ds.is_read_only());
    let a = ds.get::<IPPool>("a").await.unwrap().unwrap();
    let mut fresh = a.clone();
    fresh.metadata.resource_version = None;
    fresh.metadata.name = Some("c".into());
    let errs = [
        ds.create(&fresh).await.unwrap_err(),
        ds.update(&a).await.unwrap_err(),
        ds.delete::<IPPool>("a", None).await.unwrap_err(),
    ];
    for err in errs {
        assert!(matches!(err, DatastoreError::ReadOnly { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "the file datastore at {} is read-only; edit the file \
                 instead, or use --datastore etcd:URL or --datastore \
                 kubernetes to write",
                path.display()
            )
        );
    }
}

#[tokio::test]
async fn reload_emits_added_modified_deleted() {
    let (_dir, path) = file_with(RESOURCES);
    let (_, ds) = open_fast(&path).await;
    let list = ds.list::<IPPool>().await.unwrap();
    let mut watch = ds.watch::<IPPool>(&list.resource_version);
    let mut configs = ds.watch::<BGPConfiguration>(&list.resource_version);
    // a changes, b goes, c arrives; the BGPConfiguration stays as it was.
    write(
        &path,
        &RESOURCES
            .replace("10.1.0.0/16", "10.3.0.0/16")
            .replace("name: b", "name: c")
            .replace("10.2.0.0/16", "10.4.0.0/16"),
    );
    let mut got = pool_events(&mut watch, 3).await;
    got.sort();
    let want = |t: &str, n: &str, c: &str| (t.into(), n.into(), c.into());
    assert_eq!(
        got,
        vec![
            want("Added", "c", "10.4.0.0/16"),
            want("Deleted", "b", "10.2.0.0/16"),
            want("Modified", "a", "10.3.0.0/16"),
        ]
    );
    assert_eq!(ds.list::<IPPool>().await.unwrap().resource_version, "2");
    // Unchanged objects keep their version and produce no event.
    let cfg = ds
        .get::<BGPConfiguration>("default")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cfg.metadata.resource_version.as_deref(), Some("1"));
    let quiet =
        tokio::time::timeout(Duration::from_millis(300), configs.next()).await;
    assert!(quiet.is_err(), "no BGPConfiguration event: {quiet:?}");
    // Resuming from the first list replays the same three changes.
    let mut resumed = ds.watch::<IPPool>("1");
    let mut again = pool_events(&mut resumed, 3).await;
    again.sort();
    assert_eq!(again, got);
}

/// A new file that fails validation is reported (naming the resource,
/// field, value and what is allowed) and the previous content stays.
#[tokio::test]
async fn invalid_new_content_keeps_the_previous_content() {
    let (_dir, path) = file_with(RESOURCES);
    let (store, ds) = open_fast(&path).await;
    let prefix = format!("invalid file datastore {}: ", path.display());
    let cases = [
        (
            RESOURCES.replace("blockSize: 26", "blockSize: 33"),
            "IPPool \"a\": spec.blockSize = 33 is invalid",
        ),
        (
            RESOURCES
                .replace("  blockSize: 26", "  blockSize: 26\n  colour: red"),
            "colour",
        ),
        (RESOURCES.replace("10.2.0.0/16", "10.1.128.0/17"), "overlap"),
        (format!("{RESOURCES}---\n: : :\n"), "document 4"),
    ];
    for (text, want) in cases {
        write(&path, &text);
        let err = store.reload().await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with(&prefix), "{msg}");
        assert!(msg.contains(want), "want {want:?} in: {msg}");
        assert_eq!(
            store.last_reload_error().as_deref(),
            msg.strip_prefix(&prefix)
        );
        // Still the first content.
        let pools = ds.list::<IPPool>().await.unwrap();
        assert_eq!(pools.resource_version, "1");
        assert_eq!(pools.items.len(), 2);
    }
    // A fixed file is picked up by the poller and clears the error.
    let mut watch = ds.watch::<IPPool>("1");
    write(&path, &RESOURCES.replace("10.2.0.0/16", "10.9.0.0/16"));
    let ev = pool_events(&mut watch, 1).await;
    assert_eq!(
        ev,
        vec![("Modified".into(), "b".into(), "10.9.0.0/16".into())]
    );
    assert_eq!(store.last_reload_error(), None);
}

#[tokio::test]
async fn bad_files_do_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.yaml");
    let spec: DatastoreSpec =
        format!("file:{}", missing.display()).parse().unwrap();
    let err = Datastore::connect(&spec).await.unwrap_err();
    assert!(err.to_string().contains("cannot read the file"), "{err}");
    let (_dir, dup) = file_with(&format!("{RESOURCES}---\n{RESOURCES}"));
    let err = FileStore::open(&dup).await.unwrap_err().to_string();
    assert!(err.contains("same name"), "{err}");
    let (_dir, wrong) =
        file_with(&RESOURCES.replace("margay.io/v1", "projectcalico.org/v3"));
    let err = FileStore::open(&wrong).await.unwrap_err().to_string();
    assert!(err.contains("document 1"), "{err}");
    assert!(err.contains("projectcalico.org/v3"), "{err}");
}
