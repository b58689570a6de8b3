//! The conformance suite and etcd-specific behaviour against a real etcd
//! (Debian's etcd-server, started by margay-testkit on loopback).

mod conformance;

use std::time::{Duration, Instant};

use conformance::{
    Gadget, GadgetSpec, Widget, next_events, rv, summary, widget,
};
use futures::StreamExt;
use margay_datastore::{
    Datastore, DatastoreError, DatastoreSpec, ListWatchEvent,
};
use margay_testkit::EtcdServer;

/// A fresh etcd and a datastore on it (fails when the etcd binary is
/// missing: scripts/deps installs it).
async fn etcd() -> Option<(EtcdServer, Datastore)> {
    let server = match EtcdServer::start() {
        Ok(s) => s,
        Err(e) => {
            panic!("cannot start etcd ({e}): scripts/deps installs it");
        }
    };
    let spec: DatastoreSpec =
        format!("etcd:{}", server.endpoint()).parse().unwrap();
    let ds = Datastore::connect(&spec).await.unwrap();
    Some((server, ds))
}

macro_rules! conformance_test {
    ($name:ident $(, $arg:expr)*) => {
        #[tokio::test]
        async fn $name() {
            let Some((_server, ds)) = etcd().await else { return };
            conformance::$name(&ds $(, $arg)*).await;
        }
    };
}

conformance_test!(create_sets_metadata);
conformance_test!(create_existing_fails);
conformance_test!(update_is_compare_and_swap);
conformance_test!(delete_missing_fails);
conformance_test!(delete_with_stale_precondition_fails);
conformance_test!(get_after_delete);
conformance_test!(watch_orders_and_resumes);
conformance_test!(list_after_many_writes, 500);
conformance_test!(watch_after_list_sees_only_new);
conformance_test!(labels_round_trip);
conformance_test!(invalid_requests_are_rejected);
conformance_test!(read_batch_answers_each_slot);

/// A write batch is all or nothing, and its error names the first write
/// whose condition failed.
#[tokio::test]
async fn write_batch_is_atomic() {
    let Some((_server, ds)) = etcd().await else {
        return;
    };
    assert!(ds.has_transactions());
    let a = ds.create(&widget("a", 1)).await.unwrap();
    let mut batch = margay_datastore::WriteBatch::new();
    let mut a2 = a.clone();
    a2.spec.value = 2;
    batch.update(&a2).unwrap();
    batch.create(&widget("b", 1)).unwrap();
    let rev = ds.commit(&batch).await.unwrap();
    let got_a = ds.get::<Widget>("a").await.unwrap().unwrap();
    let got_b = ds.get::<Widget>("b").await.unwrap().unwrap();
    assert_eq!((got_a.spec.value, rv(&got_a)), (2, rev.clone()));
    assert_eq!(rv(&got_b), rev);
    assert_eq!(got_a.metadata.uid, a.metadata.uid, "uid kept");
    assert!(
        got_b.metadata.uid.is_some()
            && got_b.metadata.creation_timestamp.is_some()
    );

    // A stale update fails the whole batch: the create does not happen.
    let mut batch = margay_datastore::WriteBatch::new();
    batch.create(&widget("c", 1)).unwrap();
    batch.update(&a2).unwrap();
    let err = ds.commit(&batch).await.unwrap_err();
    assert!(
        matches!(&err, DatastoreError::Conflict { name, .. } if name == "a"),
        "{err:?}"
    );
    assert_eq!(ds.get::<Widget>("c").await.unwrap(), None);

    // A taken name and a vanished object are named as such.
    let mut batch = margay_datastore::WriteBatch::new();
    batch.create(&widget("b", 5)).unwrap();
    let err = ds.commit(&batch).await.unwrap_err();
    assert!(
        matches!(&err, DatastoreError::AlreadyExists { name, .. } if name == "b"),
        "{err:?}"
    );
    let mut batch = margay_datastore::WriteBatch::new();
    batch.update(&got_a).unwrap();
    batch.delete(&got_b).unwrap();
    ds.commit(&batch).await.unwrap();
    assert_eq!(ds.get::<Widget>("b").await.unwrap(), None);
    let mut batch = margay_datastore::WriteBatch::new();
    batch.delete(&got_b).unwrap();
    let err = ds.commit(&batch).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

/// An update through a client that never read the object (no cached
/// server metadata) still keeps uid and creationTimestamp, and a stale
/// one is still a conflict.
#[tokio::test]
async fn update_from_another_client_keeps_server_metadata() {
    let Some((server, ds)) = etcd().await else {
        return;
    };
    let v1 = ds.create(&widget("a", 1)).await.unwrap();
    let spec: DatastoreSpec =
        format!("etcd:{}", server.endpoint()).parse().unwrap();
    let other = Datastore::connect(&spec).await.unwrap();
    let mut change = v1.clone();
    change.spec.value = 2;
    change.metadata.uid = Some("forged".into());
    let v2 = other.update(&change).await.unwrap();
    assert_eq!(v2.metadata.uid, v1.metadata.uid);
    let got = ds.get::<Widget>("a").await.unwrap().unwrap();
    assert_eq!(got.metadata.uid, v1.metadata.uid);
    assert_eq!(
        got.metadata.creation_timestamp,
        v1.metadata.creation_timestamp
    );
    let mut batch = margay_datastore::WriteBatch::new();
    batch.update(&change).unwrap();
    let err = other.commit(&batch).await.unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    let fresh = Datastore::connect(&spec).await.unwrap();
    let mut batch = margay_datastore::WriteBatch::new();
    let mut v3 = got.clone();
    v3.metadata.uid = Some("forged".into());
    batch.update(&v3).unwrap();
    fresh.commit(&batch).await.unwrap();
    let got = ds.get::<Widget>("a").await.unwrap().unwrap();
    assert_eq!(got.metadata.uid, v1.metadata.uid);
}

/// Objects are stored as apiserver JSON at /margay/v1/<plural>/<name>,
/// without resourceVersion (that is the key's mod revision).
#[tokio::test]
async fn stores_apiserver_json_at_margay_keys() {
    let Some((server, ds)) = etcd().await else {
        return;
    };
    let created = ds.create(&widget("a", 7)).await.unwrap();
    let mut client = etcd_client::Client::connect([server.endpoint()], None)
        .await
        .unwrap();
    let resp = client.get("/margay/v1/widgets/a", None).await.unwrap();
    let kv = &resp.kvs()[0];
    assert_eq!(kv.mod_revision().to_string(), rv(&created));
    let json: serde_json::Value = serde_json::from_slice(kv.value()).unwrap();
    assert_eq!(json["apiVersion"], "test.margay.io/v1");
    assert_eq!(json["kind"], "Widget");
    assert_eq!(json["metadata"]["name"], "a");
    assert_eq!(
        json["metadata"]["uid"].as_str(),
        created.metadata.uid.as_deref()
    );
    assert!(json["metadata"]["creationTimestamp"].is_string());
    assert!(json["metadata"].get("resourceVersion").is_none());
    assert_eq!(json["spec"]["value"], 7);
}

/// A watch from before a compaction fails with Compacted, not silently.
#[tokio::test]
async fn watch_from_compacted_revision_is_compacted() {
    let Some((server, ds)) = etcd().await else {
        return;
    };
    let first = ds.create(&widget("a", 1)).await.unwrap();
    let mut last = first.clone();
    for v in 2..6 {
        last.spec.value = v;
        last = ds.update(&last).await.unwrap();
    }
    let mut client = etcd_client::Client::connect([server.endpoint()], None)
        .await
        .unwrap();
    let rev: i64 = rv(&last).parse().unwrap();
    client.compact(rev, None).await.unwrap();
    let mut watch = ds.watch::<Widget>(&rv(&first));
    let item = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("answer")
        .expect("an item");
    let err = item.unwrap_err();
    assert!(
        matches!(&err, DatastoreError::Compacted { kind, revision }
            if kind == "Widget" && *revision == rv(&first)),
        "{err:?}"
    );
    assert!(err.to_string().contains("list again"), "{err}");
    assert!(watch.next().await.is_none(), "stream ends after Compacted");
}

/// With etcd down, requests fail with a transient Unavailable within the
/// request timeout instead of hanging.
#[tokio::test]
async fn dead_etcd_is_unavailable_quickly() {
    let Some((mut server, ds)) = etcd().await else {
        return;
    };
    ds.create(&widget("a", 1)).await.unwrap();
    server.stop();
    let start = Instant::now();
    let err = ds.get::<Widget>("a").await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(err.to_string().contains("etcd datastore is unavailable"));
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    let err = ds.create(&widget("b", 1)).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}

/// list_and_watch lists, streams changes, and rides out an etcd restart
/// without losing the writes made while it reconnects.
#[tokio::test]
async fn list_and_watch_survives_etcd_restart() {
    let Some((mut server, ds)) = etcd().await else {
        return;
    };
    ds.create(&widget("a", 1)).await.unwrap();
    let mut informer = ds.list_and_watch::<Widget>();
    match next_item(&mut informer).await {
        ListWatchEvent::Listed(list) => {
            assert_eq!(list.items.len(), 1);
            assert_eq!(list.items[0].spec.value, 1);
        }
        other => panic!("expected Listed first, got {other:?}"),
    }
    ds.create(&widget("b", 2)).await.unwrap();
    match next_item(&mut informer).await {
        ListWatchEvent::Event(ev) => {
            assert_eq!(summary(&[ev]), vec![("Added", "b".into(), 2)]);
        }
        other => panic!("expected an event, got {other:?}"),
    }
    server.restart().unwrap();
    // The store may still be reconnecting: retry the write until it lands.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match ds.create(&widget("c", 3)).await {
            Ok(_) => break,
            Err(e) if e.is_transient() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("create after restart: {e}"),
        }
    }
    match next_item(&mut informer).await {
        ListWatchEvent::Event(ev) => {
            assert_eq!(summary(&[ev]), vec![("Added", "c".into(), 3)]);
        }
        other => panic!("expected the write made during reconnect: {other:?}"),
    }
}

/// The next informer item, failing after 30 s.
async fn next_item<S>(s: &mut S) -> ListWatchEvent<Widget>
where
    S: futures::Stream<Item = margay_datastore::Result<ListWatchEvent<Widget>>>
        + Unpin,
{
    tokio::time::timeout(Duration::from_secs(30), s.next())
        .await
        .expect("informer answered")
        .expect("informer still running")
        .expect("no error item")
}

/// Types are separate: same names do not collide, and a watch or list of
/// one type shows nothing of another.
#[tokio::test]
async fn types_do_not_mix() {
    let Some((_server, ds)) = etcd().await else {
        return;
    };
    let list = ds.list::<Widget>().await.unwrap();
    let mut watch = ds.watch::<Widget>(&list.resource_version);
    let gadget = Gadget::new("x", GadgetSpec { label: "g".into() });
    ds.create(&gadget).await.unwrap();
    assert!(ds.list::<Widget>().await.unwrap().items.is_empty());
    assert!(ds.get::<Widget>("x").await.unwrap().is_none());
    ds.create(&widget("x", 1)).await.unwrap();
    assert_eq!(ds.list::<Gadget>().await.unwrap().items.len(), 1);
    let ev = next_events(&mut watch, 1).await;
    assert_eq!(summary(&ev), vec![("Added", "x".into(), 1)]);
}

/// A real margay type round-trips through etcd at its CRD plural.
#[tokio::test]
async fn ippool_round_trips_at_its_plural_key() {
    let Some((server, ds)) = etcd().await else {
        return;
    };
    let pool = margay_crds::IPPool::new(
        "pool-a",
        margay_crds::IPPoolSpec {
            cidr: "10.244.0.0/16".into(),
            block_size: Some(26),
            ..Default::default()
        },
    );
    let created = ds.create(&pool).await.unwrap();
    let got = ds.get::<margay_crds::IPPool>("pool-a").await.unwrap();
    assert_eq!(got.as_ref(), Some(&created));
    let mut client = etcd_client::Client::connect([server.endpoint()], None)
        .await
        .unwrap();
    let resp = client.get("/margay/v1/ippools/pool-a", None).await.unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(resp.kvs()[0].value()).unwrap();
    assert_eq!(json["apiVersion"], "margay.io/v1");
    assert_eq!(json["kind"], "IPPool");
    assert_eq!(json["spec"]["cidr"], "10.244.0.0/16");
    assert_eq!(json["spec"]["blockSize"], 26);
}

/// An object written raw into etcd (bypassing every check) that does not
/// decode is reported by list, batch and watch; it fails none of them.
#[tokio::test]
async fn undecodable_object_is_reported_and_skipped() {
    let Some((server, ds)) = etcd().await else {
        return;
    };
    let mut client = etcd_client::Client::connect([server.endpoint()], None)
        .await
        .unwrap();
    let bad = serde_json::json!({
        "apiVersion": "test.margay.io/v1", "kind": "Widget",
        "metadata": {"name": "bad"}, "spec": {"value": "seven"},
    });
    client
        .put("/margay/v1/widgets/bad", bad.to_string(), None)
        .await
        .unwrap();
    conformance::invalid_object_is_reported(&ds).await;
    // Not even JSON: reported without a field.
    client
        .put("/margay/v1/widgets/junk", "{", None)
        .await
        .unwrap();
    let list = ds.list::<Widget>().await.unwrap();
    assert_eq!(list.items.len(), 2);
    let junk = list.invalid.iter().find(|o| o.name == "junk").unwrap();
    assert_eq!(junk.field, "");
    // The watch reports a bad change as an error item and goes on.
    let mut watch = ds.watch::<Widget>(&list.resource_version);
    client
        .put("/margay/v1/widgets/bad2", bad.to_string(), None)
        .await
        .unwrap();
    ds.create(&widget("d", 4)).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .unwrap()
        .unwrap();
    let err = first.expect_err("bad2 does not decode");
    let bad2 = err.invalid_object().expect("a decode error");
    assert_eq!(
        (bad2.name.as_str(), bad2.field.as_str()),
        ("bad2", "spec.value")
    );
    let ev = next_events(&mut watch, 1).await;
    assert_eq!(summary(&ev), vec![("Added", "d".into(), 4)]);
}

/// Deleting an object that does not decode is a delete, not another
/// decode error: a cache that reported it bad can forget it.
#[tokio::test]
async fn deleting_an_undecodable_object_says_it_is_gone() {
    let Some((server, ds)) = etcd().await else {
        return;
    };
    let mut client = etcd_client::Client::connect([server.endpoint()], None)
        .await
        .unwrap();
    client
        .put("/margay/v1/widgets/bad", "{", None)
        .await
        .unwrap();
    let mut cache = margay_datastore::Cache::<Widget>::new();
    let mut informer = ds.list_and_watch_with(cache.projection());
    let first = informer.next().await.unwrap();
    cache.apply(first).unwrap();
    assert_eq!(cache.invalid().count(), 1);
    client.delete("/margay/v1/widgets/bad", None).await.unwrap();
    let item = tokio::time::timeout(Duration::from_secs(10), informer.next())
        .await
        .unwrap()
        .unwrap();
    let err = item.as_ref().expect_err("the delete of a bad object");
    assert_eq!(err.deleted_undecodable(), Some("bad"));
    cache.apply(item).unwrap();
    assert_eq!(cache.invalid().count(), 0, "forgotten once deleted");
}

/// A kind bigger than one gRPC message (the client takes at most 4 MiB,
/// 20,000 IPAMBlocks are 18 MB) is listed in pages, at one revision.
#[tokio::test]
async fn list_larger_than_one_message() {
    let Some((server, ds)) = etcd().await else {
        return;
    };
    let mut client = etcd_client::Client::connect([server.endpoint()], None)
        .await
        .unwrap();
    let label = "x".repeat(20_000);
    for i in 0..300 {
        let g = Gadget::new(
            &format!("g{i:03}"),
            GadgetSpec {
                label: label.clone(),
            },
        );
        client
            .put(
                format!("/margay/v1/gadgets/g{i:03}"),
                serde_json::to_string(&g).unwrap(),
                None,
            )
            .await
            .unwrap();
    }
    let list = ds.list::<Gadget>().await.expect("6 MB listed");
    assert_eq!(list.items.len(), 300);
    assert!(list.invalid.is_empty());
    let names: Vec<_> = list
        .items
        .iter()
        .map(|g| g.metadata.name.clone().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names, sorted, "each once, in key order");
    // Every later change is seen from the list's version.
    let mut watch = ds.watch::<Gadget>(&list.resource_version);
    ds.create(&Gadget::new("late", GadgetSpec { label: "l".into() }))
        .await
        .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ev.name(), "late");
}

/// A projected list keeps what the projection makes of each object, in
/// pages, at one revision; an object that does not decode is reported,
/// not projected.
#[tokio::test]
async fn list_with_keeps_the_projection_of_each_object() {
    let Some((server, ds)) = etcd().await else {
        return;
    };
    let mut client = etcd_client::Client::connect([server.endpoint()], None)
        .await
        .unwrap();
    for i in 0..300 {
        let g = Gadget::new(
            &format!("g{i:03}"),
            GadgetSpec {
                label: "x".repeat(i),
            },
        );
        client
            .put(
                format!("/margay/v1/gadgets/g{i:03}"),
                serde_json::to_string(&g).unwrap(),
                None,
            )
            .await
            .unwrap();
    }
    client
        .put("/margay/v1/gadgets/bad", "{", None)
        .await
        .unwrap();
    let list = ds
        .list_with(&|g: Gadget| g.spec.label.len())
        .await
        .expect("listed");
    assert_eq!(list.items, (0..300).collect::<Vec<_>>());
    assert_eq!(list.invalid.len(), 1);
    assert_eq!(list.invalid[0].name, "bad");
    let whole = ds.list::<Gadget>().await.unwrap();
    assert_eq!(list.resource_version, whole.resource_version);
}
