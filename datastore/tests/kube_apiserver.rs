//! The kubernetes backend against a real kube-apiserver (and its etcd),
//! the reference where tests/kubernetes.rs runs on a mock. Clients carry
//! real ServiceAccount tokens (TokenRequest API) and the server authorizes
//! them with RBAC from deploy/20-rbac.yaml.
//!
//! Each test starts its own etcd and kube-apiserver (margay_testkit::
//! KubeApiServer); without the binary (`scripts/deps` builds it) each
//! fails.

mod conformance;

use std::time::Duration;

use conformance::{Gadget, Widget, next_events, rv, summary, widget};
use futures::StreamExt;
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::ApiResource;
use margay_datastore::{
    Datastore, DatastoreError, KubeStore, ListWatchEvent, WatchEvent,
};
use margay_testkit::{KubeApiServer, kube_apiserver_binary};

const NS: &str = "margay-system";

/// A server with deploy/ and the conformance resources applied (fails
/// without the binary).
async fn server(test: &str, extra: &[&str]) -> Option<KubeApiServer> {
    kube_apiserver_binary(test)?;
    let server = KubeApiServer::start_with(extra)
        .await
        .expect("kube-apiserver starts");
    server.install_margay().await.expect("deploy/ applies");
    let test_crds =
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/kube/conformance.yaml");
    server
        .apply_file(test_crds.as_ref())
        .await
        .expect("test CRDs apply");
    server.wait_crds_established().await.unwrap();
    Some(server)
}

/// A datastore authenticated as ServiceAccount `margay-system/sa`.
async fn datastore_as(server: &KubeApiServer, sa: &str) -> Datastore {
    let client = server
        .service_account_client(NS, sa)
        .await
        .expect("TokenRequest");
    Datastore::Kubernetes(KubeStore::from_client(client))
}

/// Deletes every Widget and Gadget (admin) and waits until they are gone,
/// so each conformance item starts on an empty datastore.
async fn empty(server: &KubeApiServer) {
    let widgets: Api<Widget> = Api::all(server.admin());
    let gadgets: Api<Gadget> = Api::all(server.admin());
    let dp = DeleteParams::default();
    let lp = ListParams::default();
    widgets.delete_collection(&dp, &lp).await.unwrap();
    gadgets.delete_collection(&dp, &lp).await.unwrap();
    for _ in 0..100 {
        let w = widgets.list(&lp).await.unwrap().items.len();
        let g = gadgets.list(&lp).await.unwrap().items.len();
        if w + g == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("widgets and gadgets still present after delete_collection");
}

// ===== the conformance suite =====

/// Every contract item of tests/conformance, in turn on one server, as
/// margay-node's ServiceAccount (granted the test resources by
/// tests/kube/conformance.yaml). This includes what kube-fake-client
/// cannot check: update conflicts on a stale resourceVersion
/// (update_is_compare_and_swap), stale delete preconditions, and watch
/// ordering and resume from a resourceVersion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_as_margay_node() {
    let Some(server) = server("conformance_as_margay_node", &[]).await else {
        return;
    };
    let ds = datastore_as(&server, "margay-node").await;
    macro_rules! item {
        ($name:ident $(, $arg:expr)*) => {
            empty(&server).await;
            eprintln!("conformance::{}", stringify!($name));
            conformance::$name(&ds $(, $arg)*).await;
        };
    }
    item!(create_sets_metadata);
    item!(create_existing_fails);
    item!(update_is_compare_and_swap);
    item!(delete_missing_fails);
    item!(delete_with_stale_precondition_fails);
    item!(get_after_delete);
    item!(watch_orders_and_resumes);
    item!(list_after_many_writes, 200);
    item!(watch_after_list_sees_only_new);
    item!(labels_round_trip);
    item!(read_batch_answers_each_slot);
    item!(invalid_requests_are_rejected);
}

// ===== semantics a mock hides =====

/// Two writers holding the same resourceVersion: the apiserver lets the
/// first through and answers the second with 409, which the datastore
/// reports as Conflict; nothing of the loser is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_resource_version_conflicts() {
    let Some(server) = server("stale_resource_version_conflicts", &[]).await
    else {
        return;
    };
    let ds = datastore_as(&server, "margay-node").await;
    let v1 = ds.create(&widget("a", 1)).await.unwrap();
    let (mut first, mut second) = (v1.clone(), v1.clone());
    first.spec.value = 2;
    second.spec.value = 3;
    let won = ds.update(&first).await.unwrap();
    let err = ds.update(&second).await.unwrap_err();
    assert!(
        matches!(&err, DatastoreError::Conflict { kind, name }
            if kind == "Widget" && name == "a"),
        "{err:?}"
    );
    let got = ds.get::<Widget>("a").await.unwrap().unwrap();
    assert_eq!((got.spec.value, rv(&got)), (2, rv(&won)));
}

/// A watch resumed from a resourceVersion taken before an apiserver
/// restart sees exactly the changes made after it, including those made
/// while the apiserver was down (it reads them from etcd).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_from_resource_version_across_restart() {
    let Some(mut server) = server(
        "watch_resumes_from_resource_version_across_restart",
        // The watch cache starts at the current revision after a restart,
        // so only an uncached watch can serve an older one.
        &["--watch-cache=false"],
    )
    .await
    else {
        return;
    };
    let ds = datastore_as(&server, "margay-node").await;
    let a = ds.create(&widget("a", 1)).await.unwrap();
    ds.create(&widget("b", 2)).await.unwrap();
    server.restart().await.expect("restart");
    let mut changed = ds.get::<Widget>("a").await.unwrap().unwrap();
    changed.spec.value = 10;
    ds.update(&changed).await.unwrap();
    let mut watch = ds.watch::<Widget>(&rv(&a));
    let events = next_events(&mut watch, 2).await;
    assert_eq!(
        summary(&events),
        vec![("Added", "b".into(), 2), ("Modified", "a".into(), 10)]
    );
}

/// Compacts etcd's history up to the revision of `last`.
async fn compact_etcd(server: &KubeApiServer, last: &Widget) {
    let mut etcd =
        etcd_client::Client::connect([server.etcd().endpoint()], None)
            .await
            .unwrap();
    let rev: i64 = rv(last).parse().unwrap();
    let opts = etcd_client::CompactionOptions::new().with_physical();
    etcd.compact(rev, Some(opts)).await.unwrap();
}

/// A watch from a resourceVersion that etcd compacted away is answered
/// with 410 Gone, which the datastore reports as Compacted (list again),
/// naming the revision it asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_compacted_revision_is_gone() {
    let Some(server) = server(
        "watch_from_compacted_revision_is_gone",
        &["--watch-cache=false"],
    )
    .await
    else {
        return;
    };
    let ds = datastore_as(&server, "margay-node").await;
    let first = ds.create(&widget("a", 1)).await.unwrap();
    let mut last = first.clone();
    for v in 2..6 {
        last.spec.value = v;
        last = ds.update(&last).await.unwrap();
    }
    compact_etcd(&server, &last).await;
    let mut watch = ds.watch::<Widget>(&rv(&first));
    let item = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("an answer")
        .expect("an item");
    let err = item.unwrap_err();
    assert!(
        matches!(&err, DatastoreError::Compacted { kind, revision }
            if kind == "Widget" && *revision == rv(&first)),
        "{err:?}"
    );
    assert!(watch.next().await.is_none(), "stream ends after Compacted");
}

/// list_and_watch over an apiserver restart after which its revision is
/// gone (etcd moved on and compacted while the apiserver was down): the
/// informer's resumed watch gets 410 Gone, it lists again (a second
/// `Listed`) and then goes on with the changes after that list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn informer_relists_after_gone() {
    let Some(mut server) = server("informer_relists_after_gone", &[]).await
    else {
        return;
    };
    let ds = datastore_as(&server, "margay-node").await;
    ds.create(&widget("a", 1)).await.unwrap();
    let mut informer = ds.list_and_watch::<Widget>();
    let ListWatchEvent::Listed(first) = next_item(&mut informer).await else {
        panic!("lists first");
    };
    assert_eq!(names(&first.items), ["a"]);
    // The apiserver goes away; etcd moves past the informer's revision
    // (a key outside the apiserver's prefix) and compacts it.
    server.stop();
    let mut etcd =
        etcd_client::Client::connect([server.etcd().endpoint()], None)
            .await
            .unwrap();
    etcd.put("/margay-test/bump", "1", None).await.unwrap();
    let put = etcd.put("/margay-test/bump", "2", None).await.unwrap();
    let rev = put.header().expect("header").revision();
    etcd.compact(rev, None).await.unwrap();
    server.restart().await.expect("restart");
    let ListWatchEvent::Listed(again) = next_item(&mut informer).await else {
        panic!("a resumed watch from a compacted revision must list again");
    };
    assert_eq!(names(&again.items), ["a"]);
    ds.create(&widget("b", 2)).await.unwrap();
    let ListWatchEvent::Event(WatchEvent::Added(b)) =
        next_item(&mut informer).await
    else {
        panic!("the watch goes on after the new list");
    };
    assert_eq!(b.metadata.name.as_deref(), Some("b"));
}

/// The next item of an informer: no error item, within a minute (the
/// informer backs off up to 5 s while the apiserver restarts).
async fn next_item<S>(informer: &mut S) -> ListWatchEvent<Widget>
where
    S: futures::Stream<Item = margay_datastore::Result<ListWatchEvent<Widget>>>
        + Unpin,
{
    tokio::time::timeout(Duration::from_secs(60), informer.next())
        .await
        .expect("informer answers")
        .expect("informer goes on")
        .expect("no error item")
}

fn names(items: &[Widget]) -> Vec<String> {
    let mut names: Vec<String> = items
        .iter()
        .filter_map(|w| w.metadata.name.clone())
        .collect();
    names.sort();
    names
}

// ===== margay's CRDs and RBAC on the real server =====

/// margay's CRDs are structural and keep no unknown field: the apiserver
/// drops one (create without field validation) or refuses it (strict
/// validation, kubectl's default) naming it, and never stores it, so the
/// strict decoders of margay-crds read every stored object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crd_unknown_fields_are_pruned_or_refused() {
    let Some(server) =
        server("crd_unknown_fields_are_pruned_or_refused", &[]).await
    else {
        return;
    };
    let ar = ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
        "margay.io",
        "v1",
        "IPPool",
    ));
    let pools: Api<DynamicObject> = Api::all_with(server.admin(), &ar);
    let pool = |name: &str, extra: &str| -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "margay.io/v1",
            "kind": "IPPool",
            "metadata": {"name": name},
            "spec": {"cidr": "10.244.0.0/16", extra: true},
        }))
        .unwrap()
    };
    let created = pools
        .create(&PostParams::default(), &pool("pruned", "natOutgoin"))
        .await
        .expect("created with the unknown field dropped");
    assert!(
        created.data["spec"].get("natOutgoin").is_none(),
        "{created:?}"
    );
    let stored = pools.get("pruned").await.unwrap();
    assert!(
        stored.data["spec"].get("natOutgoin").is_none(),
        "{stored:?}"
    );
    let strict =
        kube::api::PatchParams::apply("margay-test").validation_strict();
    let err = pools
        .patch(
            "refused",
            &strict,
            &kube::api::Patch::Apply(pool("refused", "bogusField")),
        )
        .await
        .expect_err("strict field validation refuses an unknown field");
    assert!(err.to_string().contains("bogusField"), "{err}");
    // margay-node reads the pool through the strict margay-crds decoder.
    let ds = datastore_as(&server, "margay-node").await;
    let pools = ds.list::<margay_crds::IPPool>().await.unwrap();
    assert_eq!(pools.items.len(), 1);
    assert_eq!(pools.items[0].spec.cidr, "10.244.0.0/16");
}

/// The real authorizer applies deploy/20-rbac.yaml: each identity can do
/// what its role grants and is refused (403, named in the error) what it
/// does not: margay-cni cannot write BGPPeers, margay-node cannot update
/// or delete IPPools.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_refuses_what_roles_do_not_grant() {
    let Some(server) =
        server("rbac_refuses_what_roles_do_not_grant", &[]).await
    else {
        return;
    };
    let node = datastore_as(&server, "margay-node").await;
    let cni = datastore_as(&server, "margay-cni").await;
    let peer: margay_crds::BGPPeer = serde_yaml::from_str(
        "apiVersion: margay.io/v1\nkind: BGPPeer\nmetadata: {name: tor}\n\
         spec: {peerIP: 192.0.2.1, asNumber: 65001}\n",
    )
    .unwrap();
    let err = cni.create(&peer).await.unwrap_err();
    assert!(forbidden(&err, "margay-cni", "bgppeers"), "{err}");
    let err = cni.list::<margay_crds::BGPPeer>().await.unwrap_err();
    assert!(forbidden(&err, "margay-cni", "bgppeers"), "{err}");
    // What the roles grant works.
    assert!(
        node.list::<margay_crds::BGPPeer>()
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        cni.list::<margay_crds::IPPool>()
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let pool: margay_crds::IPPool = serde_yaml::from_str(
        "apiVersion: margay.io/v1\nkind: IPPool\nmetadata: {name: p}\n\
         spec: {cidr: 10.244.0.0/16}\n",
    )
    .unwrap();
    // margay-node creates the default IPPool at first install (create
    // only): it can never change or delete a pool.
    let created = node.create(&pool).await.unwrap();
    let err = node.update(&created).await.unwrap_err();
    assert!(forbidden(&err, "margay-node", "ippools"), "{err}");
    let err = node
        .delete::<margay_crds::IPPool>("p", None)
        .await
        .unwrap_err();
    assert!(forbidden(&err, "margay-node", "ippools"), "{err}");
}

/// Whether `err` is the apiserver's 403 for ServiceAccount `sa` on
/// `resource`.
fn forbidden(err: &DatastoreError, sa: &str, resource: &str) -> bool {
    let text = err.to_string();
    text.contains("forbidden")
        && text.contains(&format!("system:serviceaccount:{NS}:{sa}"))
        && text.contains(resource)
}

/// Opens a list_and_watch of `K` and waits for its first item: a `Listed`
/// when list and watch are granted. A refused list comes back as an error
/// item at once; a refused watch is retried and logged, never yielded, so
/// the watch is also opened alone and its first answer checked.
async fn can_list_and_watch<K: margay_datastore::Object>(ds: &Datastore) {
    let mut informer = ds.list_and_watch::<K>();
    let first = tokio::time::timeout(Duration::from_secs(10), informer.next())
        .await
        .expect("an answer")
        .expect("an item");
    let Ok(ListWatchEvent::Listed(list)) = first else {
        panic!("list of {} refused: {first:?}", std::any::type_name::<K>());
    };
    let mut watch = ds.watch::<K>(&list.resource_version);
    let answer =
        tokio::time::timeout(Duration::from_secs(2), watch.next()).await;
    assert!(
        !matches!(answer, Ok(Some(Err(_)))),
        "watch of {} refused: {answer:?}",
        std::any::type_name::<K>()
    );
}

/// margay-node, with only its deploy/20-rbac.yaml token, makes the calls
/// ctl/tests/deploy_manifests.rs lists for it: bgpd's list_and_watch of
/// every type it follows, the agent's get/create/update of its own Node
/// and its get of a BGP password Secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_grants_margay_node_its_calls() {
    use margay_crds::*;
    let Some(server) = server("rbac_grants_margay_node_its_calls", &[]).await
    else {
        return;
    };
    let ds = datastore_as(&server, "margay-node").await;
    can_list_and_watch::<Node>(&ds).await;
    can_list_and_watch::<BGPConfiguration>(&ds).await;
    can_list_and_watch::<BGPPeer>(&ds).await;
    can_list_and_watch::<BGPFilter>(&ds).await;
    can_list_and_watch::<IPPool>(&ds).await;
    can_list_and_watch::<IPAMBlock>(&ds).await;
    can_list_and_watch::<BlockAffinity>(&ds).await;
    // felix-lite's IPAM gauges: a get of each of this node's blocks.
    assert!(ds.get::<IPAMBlock>("10-0-0-0-26").await.unwrap().is_none());
    // node/src/register.rs: get, create, then CAS update of its Node.
    assert!(ds.get::<Node>("n1").await.unwrap().is_none());
    let created = ds
        .create(&Node::new("n1", NodeSpec::default()))
        .await
        .unwrap();
    let mut labeled = created.clone();
    labeled.metadata.labels = Some([("rack".into(), "r1".into())].into());
    ds.update(&labeled).await.unwrap();
    // It may not delete Nodes, nor write what it only reads.
    let err = ds.delete::<Node>("n1", None).await.unwrap_err();
    assert!(forbidden(&err, "margay-node", "nodes"), "{err}");
    // BGPPeer password secretKeyRef: get of a Secret in margay-system.
    let store = KubeStore::from_client(
        server
            .service_account_client(NS, "margay-node")
            .await
            .unwrap(),
    );
    assert_eq!(
        store.secret_key(NS, "absent", "password").await.unwrap(),
        None
    );
    let err = store
        .secret_key("default", "absent", "password")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("forbidden"), "{err}");
}

/// A watch from a resourceVersion older than the apiserver's watch cache
/// (which starts at the current revision when the apiserver starts) is
/// 410 Gone: the datastore says Compacted and names the revision asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_older_than_the_watch_cache_is_gone() {
    let Some(mut server) =
        server("watch_older_than_the_watch_cache_is_gone", &[]).await
    else {
        return;
    };
    let ds = datastore_as(&server, "margay-node").await;
    let first = ds.create(&widget("a", 1)).await.unwrap();
    let mut last = first.clone();
    for v in 2..4 {
        last.spec.value = v;
        last = ds.update(&last).await.unwrap();
    }
    server.restart().await.expect("restart");
    let mut watch = ds.watch::<Widget>(&rv(&first));
    let item = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("an answer")
        .expect("an item");
    let err = item.unwrap_err();
    assert!(
        matches!(&err, DatastoreError::Compacted { kind, revision }
            if kind == "Widget" && *revision == rv(&first)),
        "{err:?}"
    );
}

/// Every manifest in deploy/ is accepted by the real apiserver (server-side
/// apply validates each against the server's schema, including the
/// DaemonSet, which no kubelet runs here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_manifests_are_accepted() {
    let Some(server) = server("deploy_manifests_are_accepted", &[]).await
    else {
        return;
    };
    let deploy = margay_testkit::deploy_dir();
    for file in [
        "10-configmap.yaml",
        "30-daemonset.yaml",
        "40-controllers.yaml",
    ] {
        server.apply_file(&deploy.join(file)).await.unwrap();
    }
    let ar = ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
        "apps",
        "v1",
        "DaemonSet",
    ));
    let ds: Api<DynamicObject> = Api::namespaced_with(server.admin(), NS, &ar);
    assert!(ds.get_opt("margay-node").await.unwrap().is_some());
}

/// The CRDs' OpenAPI and CEL rules make the real apiserver refuse what
/// margay refuses, so `kubectl apply` cannot store it: host bits, a
/// link-local pool, a block size outside its family's range, a changed
/// cidr, a BGPFilter rule using `interface`. A valid pool is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crd_rules_refuse_what_margay_refuses() {
    let Some(server) =
        server("crd_rules_refuse_what_margay_refuses", &[]).await
    else {
        return;
    };
    let api = |kind: &str| -> Api<DynamicObject> {
        let ar = ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
            "margay.io",
            "v1",
            kind,
        ));
        Api::all_with(server.admin(), &ar)
    };
    let obj = |kind: &str, name: &str, spec: serde_json::Value| {
        serde_json::from_value::<DynamicObject>(serde_json::json!({
            "apiVersion": "margay.io/v1",
            "kind": kind,
            "metadata": {"name": name},
            "spec": spec,
        }))
        .unwrap()
    };
    let pools = api("IPPool");
    let refused = [
        (serde_json::json!({"cidr": "10.244.0.1/16"}), "host bits"),
        (serde_json::json!({"cidr": "169.254.0.0/16"}), "link-local"),
        (
            serde_json::json!({"cidr": "10.244.0.0/16", "blockSize": 33}),
            "blockSize",
        ),
    ];
    for (i, (spec, why)) in refused.into_iter().enumerate() {
        let err = pools
            .create(
                &PostParams::default(),
                &obj("IPPool", &format!("p{i}"), spec),
            )
            .await
            .expect_err(why);
        assert!(err.to_string().contains(why), "{why}: {err}");
    }
    let mut good = pools
        .create(
            &PostParams::default(),
            &obj(
                "IPPool",
                "good",
                serde_json::json!({"cidr": "10.244.0.0/16"}),
            ),
        )
        .await
        .expect("a valid pool is accepted");
    good.data["spec"]["cidr"] = "10.245.0.0/16".into();
    let err = pools
        .replace("good", &PostParams::default(), &good)
        .await
        .expect_err("cidr is immutable");
    assert!(err.to_string().contains("cannot be changed"), "{err}");
    let filters = api("BGPFilter");
    let rule = serde_json::json!({"exportV4": [
        {"action": "Accept", "interface": "eth0"}
    ]});
    let err = filters
        .create(&PostParams::default(), &obj("BGPFilter", "f", rule))
        .await
        .expect_err("interface is refused");
    assert!(err.to_string().contains("interface"), "{err}");
}

/// A list longer than one page (500) is read in pages through the
/// continue token, every object once, at the first page's snapshot, each
/// projected as it is decoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_in_pages_sees_every_object_once() {
    let Some(server) =
        server("list_in_pages_sees_every_object_once", &[]).await
    else {
        return;
    };
    let ds = datastore_as(&server, "margay-node").await;
    futures::stream::iter(0..1100u64)
        .for_each_concurrent(16, |i| {
            let ds = ds.clone();
            async move {
                ds.create(&widget(&format!("w{i:04}"), i)).await.unwrap();
            }
        })
        .await;
    let list = ds.list_with(&|w: Widget| w.spec.value).await.unwrap();
    let mut values = list.items.clone();
    values.sort();
    assert_eq!(values, (0..1100).collect::<Vec<_>>(), "each once");
    let whole = ds.list::<Widget>().await.unwrap();
    assert_eq!(whole.items.len(), 1100);
    assert!(!list.resource_version.is_empty());
}

/// The backend drops `metadata.managedFields` from what it reads (a cache
/// of thousands of objects would otherwise hold the apiserver's
/// field-ownership record once per object), and an update written from
/// such an object leaves the server's record in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_fields_are_not_held_and_survive_updates() {
    let Some(server) =
        server("managed_fields_are_not_held_and_survive_updates", &[]).await
    else {
        return;
    };
    let ds = datastore_as(&server, "margay-node").await;
    let created = ds.create(&widget("m", 1)).await.unwrap();
    let mut watch = ds.watch::<Widget>(&rv(&created));
    let mut got = ds.get::<Widget>("m").await.unwrap().unwrap();
    assert_eq!(got.metadata.managed_fields, None, "get");
    let listed = ds.list::<Widget>().await.unwrap();
    assert_eq!(listed.items[0].metadata.managed_fields, None, "list");
    got.spec.value = 2;
    ds.update(&got).await.unwrap();
    match watch.next().await.expect("an event").expect("decodes") {
        WatchEvent::Modified(w) => {
            assert_eq!(w.metadata.managed_fields, None, "watch")
        }
        other => panic!("expected Modified, got {other:?}"),
    }
    let raw: Api<Widget> = Api::all(server.admin());
    let kept = raw.get("m").await.unwrap();
    assert_eq!(kept.spec.value, 2);
    let managers = kept.metadata.managed_fields.unwrap_or_default();
    assert!(
        !managers.is_empty(),
        "the server's managedFields survive an update that omits them"
    );
}
