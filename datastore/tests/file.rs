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

/// A bad document (failing validation, with an unknown field, overlapping
/// another pool, or not even YAML) is left out and reported naming its
/// kind, name and field; every other document of the file is served and
/// later changes to them still apply.
#[tokio::test]
async fn bad_document_is_left_out_and_the_rest_served() {
    let (_dir, path) = file_with(RESOURCES);
    let (store, ds) = open_fast(&path).await;
    let extra = |name: &str, cidr: &str, more: &str| {
        format!(
            "---\napiVersion: margay.io/v1\nkind: IPPool\nmetadata:\n  \
             name: {name}\nspec:\n  cidr: {cidr}\n{more}"
        )
    };
    let cases = [
        (
            extra("c", "10.3.0.0/16", "  blockSize: 33\n"),
            "c",
            "spec.blockSize",
        ),
        (extra("c", "10.3.0.0/16", "  colour: red\n"), "c", ""),
        (extra("c", "10.1.128.0/17", ""), "c", "spec.cidr"),
        ("---\n: : :\n".to_string(), "4 (line 24)", ""),
    ];
    for (more, bad, field) in cases {
        write(&path, &format!("{RESOURCES}{more}"));
        store.reload().await.expect("a bad document fails no load");
        assert_eq!(store.last_reload_error(), None);
        let pools = ds.list::<IPPool>().await.unwrap();
        let names: Vec<_> = pools
            .items
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        assert_eq!(names, ["a", "b"], "{more}");
        let reported: Vec<_> = store
            .invalid_documents()
            .into_iter()
            .map(|o| (o.name, o.field))
            .collect();
        assert!(
            reported.contains(&(bad.to_string(), field.to_string())),
            "{reported:?} for {more}"
        );
        if bad == "c" {
            assert_eq!(pools.invalid.len(), 1, "{:?}", pools.invalid);
        }
        // The BGPConfiguration of the same file is still served.
        assert!(
            ds.get::<BGPConfiguration>("default")
                .await
                .unwrap()
                .is_some()
        );
    }
    // A change to a good document next to a bad one still applies.
    let mut watch = ds
        .watch::<IPPool>(&ds.list::<IPPool>().await.unwrap().resource_version);
    write(
        &path,
        &format!(
            "{}{}",
            RESOURCES.replace("10.2.0.0/16", "10.9.0.0/16"),
            extra("c", "10.3.0.0/16", "  blockSize: 33\n")
        ),
    );
    let ev = pool_events(&mut watch, 1).await;
    assert_eq!(
        ev,
        vec![("Modified".into(), "b".into(), "10.9.0.0/16".into())]
    );
}

/// A file that cannot be used as a whole keeps the previous content.
#[tokio::test]
async fn unreadable_file_keeps_the_previous_content() {
    let (_dir, path) = file_with(RESOURCES);
    let (store, ds) = open_fast(&path).await;
    std::fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
    let err = store.reload().await.unwrap_err().to_string();
    assert!(err.contains("not UTF-8"), "{err}");
    assert_eq!(ds.list::<IPPool>().await.unwrap().items.len(), 2);
}

#[tokio::test]
async fn bad_files_do_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.yaml");
    let spec: DatastoreSpec =
        format!("file:{}", missing.display()).parse().unwrap();
    let err = Datastore::connect(&spec).await.unwrap_err();
    assert!(err.to_string().contains("cannot read the file"), "{err}");
    // Documents that are each bad open (nothing to serve), reporting each.
    let (_dir, dup) = file_with(&format!("{RESOURCES}---\n{RESOURCES}"));
    let store = FileStore::open(&dup).await.unwrap();
    let bad = store.invalid_documents();
    assert!(bad.iter().any(|o| o.error.contains("same name")), "{bad:?}");
    let (_dir, wrong) =
        file_with(&RESOURCES.replace("margay.io/v1", "projectcalico.org/v3"));
    let store = FileStore::open(&wrong).await.unwrap();
    let bad = store.invalid_documents();
    assert_eq!(bad[0].name, "1 (line 1)");
    assert!(bad[0].error.contains("projectcalico.org/v3"), "{bad:?}");
}
