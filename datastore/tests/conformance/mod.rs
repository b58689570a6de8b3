//! The datastore contract, written once and run against every writable
//! backend (tests/etcd.rs, tests/kubernetes.rs). Each function takes a
//! fresh, empty datastore.

#![allow(dead_code)] // each backend's test binary uses a subset

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::CustomResource;
use margay_datastore::{Datastore, DatastoreError, WatchEvent};
use serde::{Deserialize, Serialize};

/// A small cluster-scoped test resource.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "test.margay.io",
    version = "v1",
    kind = "Widget",
    schema = "disabled",
    derive = "PartialEq"
)]
pub struct WidgetSpec {
    pub value: u64,
}

/// A second test resource, to check that types do not mix.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "test.margay.io",
    version = "v1",
    kind = "Gadget",
    schema = "disabled",
    derive = "PartialEq"
)]
pub struct GadgetSpec {
    pub label: String,
}

/// A widget named `name` holding `value`.
pub fn widget(name: &str, value: u64) -> Widget {
    Widget::new(name, WidgetSpec { value })
}

/// The resourceVersion of an object (panics when unset).
pub fn rv(w: &Widget) -> String {
    w.metadata
        .resource_version
        .clone()
        .expect("resourceVersion set")
}

/// Waits for the next `n` watch events, failing after 10 s.
pub async fn next_events<S>(watch: &mut S, n: usize) -> Vec<WatchEvent<Widget>>
where
    S: Stream<Item = margay_datastore::Result<WatchEvent<Widget>>> + Unpin,
{
    let mut out = Vec::new();
    while out.len() < n {
        let item = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .unwrap_or_else(|_| panic!("no watch event after {out:?}"))
            .expect("watch ended early");
        out.push(item.expect("watch error"));
    }
    out
}

/// Summarises events as (type, name, value) for comparisons.
pub fn summary(
    events: &[WatchEvent<Widget>],
) -> Vec<(&'static str, String, u64)> {
    events
        .iter()
        .map(|e| {
            let t = match e {
                WatchEvent::Added(_) => "Added",
                WatchEvent::Modified(_) => "Modified",
                WatchEvent::Deleted(_) => "Deleted",
            };
            (t, e.name().to_string(), e.object().spec.value)
        })
        .collect()
}

// ===== contract items =====

/// create stores the object and sets resourceVersion, uid and
/// creationTimestamp; get returns the same object.
pub async fn create_sets_metadata(ds: &Datastore) {
    let created = ds.create(&widget("a", 1)).await.unwrap();
    assert!(!rv(&created).is_empty());
    assert!(
        created
            .metadata
            .uid
            .as_deref()
            .is_some_and(|u| !u.is_empty())
    );
    assert!(created.metadata.creation_timestamp.is_some());
    let got = ds.get::<Widget>("a").await.unwrap().expect("stored");
    assert_eq!(got.spec.value, 1);
    assert_eq!(got.metadata.uid, created.metadata.uid);
    assert_eq!(rv(&got), rv(&created));
    assert_eq!(ds.get::<Widget>("nope").await.unwrap(), None);
}

/// A second create of the same name fails with AlreadyExists and leaves
/// the first object alone.
pub async fn create_existing_fails(ds: &Datastore) {
    ds.create(&widget("a", 1)).await.unwrap();
    let err = ds.create(&widget("a", 2)).await.unwrap_err();
    assert!(
        matches!(&err, DatastoreError::AlreadyExists { kind, name }
            if kind == "Widget" && name == "a"),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "Widget \"a\" already exists");
    let got = ds.get::<Widget>("a").await.unwrap().unwrap();
    assert_eq!(got.spec.value, 1);
}

/// update is compare-and-swap on resourceVersion.
pub async fn update_is_compare_and_swap(ds: &Datastore) {
    let v1 = ds.create(&widget("a", 1)).await.unwrap();
    let mut change = v1.clone();
    change.spec.value = 2;
    let v2 = ds.update(&change).await.unwrap();
    assert_ne!(rv(&v2), rv(&v1));
    assert_eq!(v2.metadata.uid, v1.metadata.uid, "uid kept on update");
    // A writer still holding v1 loses.
    let mut stale = v1.clone();
    stale.spec.value = 3;
    let err = ds.update(&stale).await.unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    assert!(!err.is_transient());
    let got = ds.get::<Widget>("a").await.unwrap().unwrap();
    assert_eq!((got.spec.value, rv(&got)), (2, rv(&v2)));
    // resourceVersion is required.
    let mut blind = got.clone();
    blind.metadata.resource_version = None;
    let err = ds.update(&blind).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("metadata.resourceVersion is required"),
        "{err}"
    );
    // Updating something that is gone.
    ds.delete::<Widget>("a", None).await.unwrap();
    let err = ds.update(&got).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

/// delete of a missing object is NotFound.
pub async fn delete_missing_fails(ds: &Datastore) {
    let err = ds.delete::<Widget>("ghost", None).await.unwrap_err();
    assert!(
        matches!(&err, DatastoreError::NotFound { kind, name }
            if kind == "Widget" && name == "ghost"),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "Widget \"ghost\" not found");
}

/// delete with a stale resourceVersion precondition is Conflict and
/// deletes nothing; with the current one it deletes.
pub async fn delete_with_stale_precondition_fails(ds: &Datastore) {
    let v1 = ds.create(&widget("a", 1)).await.unwrap();
    let mut change = v1.clone();
    change.spec.value = 2;
    let v2 = ds.update(&change).await.unwrap();
    let err = ds.delete::<Widget>("a", Some(&rv(&v1))).await.unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    assert!(ds.get::<Widget>("a").await.unwrap().is_some());
    ds.delete::<Widget>("a", Some(&rv(&v2))).await.unwrap();
    assert!(ds.get::<Widget>("a").await.unwrap().is_none());
    let err = ds.delete::<Widget>("a", Some(&rv(&v2))).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

/// After delete, get is None and list does not show it; the name can be
/// created again.
pub async fn get_after_delete(ds: &Datastore) {
    ds.create(&widget("a", 1)).await.unwrap();
    ds.create(&widget("b", 2)).await.unwrap();
    ds.delete::<Widget>("a", None).await.unwrap();
    assert_eq!(ds.get::<Widget>("a").await.unwrap(), None);
    let names: Vec<_> = ds
        .list::<Widget>()
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|w| w.metadata.name.unwrap())
        .collect();
    assert_eq!(names, vec!["b".to_string()]);
    let again = ds.create(&widget("a", 3)).await.unwrap();
    assert_eq!(again.spec.value, 3);
}

/// Watch yields every change after the list in write order, each carrying
/// its revision, and resumes from a mid-stream revision with exactly the
/// later changes.
pub async fn watch_orders_and_resumes(ds: &Datastore) {
    ds.create(&widget("before", 0)).await.unwrap();
    let list = ds.list::<Widget>().await.unwrap();
    let mut watch = ds.watch::<Widget>(&list.resource_version);
    let a = ds.create(&widget("a", 1)).await.unwrap();
    let b = ds.create(&widget("b", 2)).await.unwrap();
    let mut a2 = a.clone();
    a2.spec.value = 10;
    let a2 = ds.update(&a2).await.unwrap();
    ds.delete::<Widget>("b", None).await.unwrap();
    let mut a3 = a2.clone();
    a3.spec.value = 11;
    let a3 = ds.update(&a3).await.unwrap();
    let events = next_events(&mut watch, 5).await;
    assert_eq!(
        summary(&events),
        vec![
            ("Added", "a".into(), 1),
            ("Added", "b".into(), 2),
            ("Modified", "a".into(), 10),
            ("Deleted", "b".into(), 2),
            ("Modified", "a".into(), 11),
        ]
    );
    // Each event carries the revision its write returned.
    let rvs: Vec<_> = events.iter().map(|e| e.resource_version()).collect();
    assert_eq!(rvs[0], rv(&a));
    assert_eq!(rvs[1], rv(&b));
    assert_eq!(rvs[2], rv(&a2));
    assert_eq!(rvs[4], rv(&a3));
    // Resume from the middle: exactly the events after it.
    let mut resumed = ds.watch::<Widget>(events[1].resource_version());
    let again = next_events(&mut resumed, 3).await;
    assert_eq!(summary(&again), summary(&events[2..]));
    // Resume from the delete's revision: only the last update.
    let mut resumed = ds.watch::<Widget>(events[3].resource_version());
    let last = next_events(&mut resumed, 1).await;
    assert_eq!(summary(&last), summary(&events[4..]));
}

/// list returns everything after many writes, and a watch from its
/// version sees only later writes.
pub async fn list_after_many_writes(ds: &Datastore, n: u64) {
    for i in 0..n {
        ds.create(&widget(&format!("w{i:04}"), i)).await.unwrap();
    }
    let list = ds.list::<Widget>().await.unwrap();
    assert_eq!(list.items.len() as u64, n);
    let mut values: Vec<u64> =
        list.items.iter().map(|w| w.spec.value).collect();
    values.sort_unstable();
    assert_eq!(values, (0..n).collect::<Vec<_>>());
    assert!(!list.resource_version.is_empty());
    assert!(list.items.iter().all(|w| !rv(w).is_empty()));
}

/// Watch after a list of many sees only the later write.
pub async fn watch_after_list_sees_only_new(ds: &Datastore) {
    for i in 0..20 {
        ds.create(&widget(&format!("w{i}"), i)).await.unwrap();
    }
    let list = ds.list::<Widget>().await.unwrap();
    let mut watch = ds.watch::<Widget>(&list.resource_version);
    ds.create(&widget("new", 99)).await.unwrap();
    let ev = next_events(&mut watch, 1).await;
    assert_eq!(summary(&ev), vec![("Added", "new".into(), 99)]);
}

/// Labels and annotations survive create, get, list and update.
pub async fn labels_round_trip(ds: &Datastore) {
    let labels = BTreeMap::from([
        ("margay.io/role".to_string(), "route-reflector".to_string()),
        ("zone".to_string(), "a".to_string()),
    ]);
    let annotations =
        BTreeMap::from([("note".to_string(), "hello: world".to_string())]);
    let mut w = widget("a", 1);
    w.metadata.labels = Some(labels.clone());
    w.metadata.annotations = Some(annotations.clone());
    let created = ds.create(&w).await.unwrap();
    assert_eq!(created.metadata.labels.as_ref(), Some(&labels));
    let got = ds.get::<Widget>("a").await.unwrap().unwrap();
    assert_eq!(got.metadata.labels.as_ref(), Some(&labels));
    assert_eq!(got.metadata.annotations.as_ref(), Some(&annotations));
    let listed = ds.list::<Widget>().await.unwrap().items;
    assert_eq!(listed[0].metadata.labels.as_ref(), Some(&labels));
    let mut changed = got.clone();
    changed
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("zone".into(), "b".into());
    let updated = ds.update(&changed).await.unwrap();
    let got = ds.get::<Widget>("a").await.unwrap().unwrap();
    assert_eq!(got.metadata.labels, updated.metadata.labels);
    assert_eq!(got.metadata.labels.unwrap()["zone"], "b");
}

/// Requests that can never succeed are rejected up front.
pub async fn invalid_requests_are_rejected(ds: &Datastore) {
    let mut with_rv = widget("a", 1);
    with_rv.metadata.resource_version = Some("5".into());
    let err = ds.create(&with_rv).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("metadata.resourceVersion must not be set"),
        "{err}"
    );
    let err = ds.create(&widget("", 1)).await.unwrap_err();
    assert!(
        err.to_string().contains("metadata.name is required"),
        "{err}"
    );
    let err = ds.get::<Widget>("a/b").await.unwrap_err();
    assert!(err.to_string().contains("contain no '/'"), "{err}");
}

/// A read batch answers gets and name-prefix lists of several types, each
/// in its own slot.
pub async fn read_batch_answers_each_slot(ds: &Datastore) {
    for (name, value) in [("node1-a", 1), ("node1-b", 2), ("node10-a", 3)] {
        ds.create(&widget(name, value)).await.unwrap();
    }
    ds.create(&Gadget::new("g", GadgetSpec { label: "x".into() }))
        .await
        .unwrap();
    let mut batch = margay_datastore::ReadBatch::new();
    let one = batch.get::<Widget>("node1-b");
    let missing = batch.get::<Widget>("nope");
    let node1 = batch.list::<Widget>("node1-");
    let all = batch.list::<Widget>("");
    let gadgets = batch.list::<Gadget>("");
    let mut got = ds.read(&batch).await.unwrap();
    assert_eq!(got.take(one).map(|w| w.spec.value), Some(2));
    assert_eq!(got.take(missing), None);
    let names = |v: Vec<Widget>| -> Vec<String> {
        let mut n: Vec<String> =
            v.into_iter().filter_map(|w| w.metadata.name).collect();
        n.sort();
        n
    };
    assert_eq!(names(got.take(node1)), ["node1-a", "node1-b"]);
    assert_eq!(names(got.take(all)).len(), 3);
    let gadgets = got.take(gadgets);
    assert_eq!(gadgets.len(), 1);
    // Objects read in a batch carry their resourceVersion: updatable.
    let mut w = ds.get::<Widget>("node1-a").await.unwrap().unwrap();
    w.spec.value = 9;
    ds.update(&w).await.unwrap();
    // A backend that read the batch at one revision says which: a watch
    // from it sees the first change after the read, nothing before.
    if let Some(rev) = got.revision() {
        let mut watch = ds.watch::<Widget>(rev);
        let events = next_events(&mut watch, 1).await;
        assert_eq!(summary(&events), vec![("Modified", "node1-a".into(), 9)]);
    }
}

/// With a stored Widget "bad" whose spec.value is not a number (written
/// by the backend's test around every check), list and list reads of a
/// batch serve the good widgets and report "bad" by kind, name and field.
pub async fn invalid_object_is_reported(ds: &Datastore) {
    ds.create(&widget("a", 1)).await.unwrap();
    ds.create(&widget("c", 3)).await.unwrap();
    let list = ds
        .list::<Widget>()
        .await
        .expect("one bad object fails no list");
    let mut names: Vec<_> = list
        .items
        .iter()
        .filter_map(|w| w.metadata.name.clone())
        .collect();
    names.sort();
    assert_eq!(names, ["a", "c"]);
    assert_eq!(list.invalid.len(), 1, "{:?}", list.invalid);
    let bad = &list.invalid[0];
    assert_eq!((bad.kind.as_str(), bad.name.as_str()), ("Widget", "bad"));
    assert_eq!(bad.field, "spec.value");
    assert!(bad.to_string().contains("Widget \"bad\" field spec.value"));
    let mut batch = margay_datastore::ReadBatch::new();
    let all = batch.list::<Widget>("");
    let gadgets = batch.list::<Gadget>("");
    let mut got = ds
        .read(&batch)
        .await
        .expect("one bad object fails no batch");
    assert_eq!(got.take(all).len(), 2);
    assert!(got.take(gadgets).is_empty());
    assert_eq!(got.invalid(), list.invalid.as_slice());
    // A get of the bad object itself still says why it cannot be read.
    let err = ds.get::<Widget>("bad").await.unwrap_err();
    assert_eq!(err.invalid_object().as_ref(), Some(bad));
}
