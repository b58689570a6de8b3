//! One stored IPAM object that does not decode (written raw into etcd,
//! past every check, as `kubectl apply` past a loose schema would) fails
//! nothing but itself: ADD still allocates, a garbage block is never
//! claimed nor allocated from, `check` names each bad object and `show`
//! works.

mod common;

use margay_ipam::AssignArgs;
use margay_ipam::check::Issue;

use common::{attrs, env};

#[tokio::test]
async fn undecodable_pools_blocks_affinities_and_handles_are_skipped() {
    let Some(e) = env("undecodable_objects").await else {
        return;
    };
    e.pool("good", "10.20.0.0/24", 28).await;
    e.node("n1").await;
    let mut raw = etcd_client::Client::connect([e.etcd_endpoint()], None)
        .await
        .unwrap();
    let mut put = async |key: &str, value: &str| {
        raw.put(format!("/margay/v1/{key}"), value, None)
            .await
            .unwrap();
    };
    put("ippools/empty", "{}").await;
    put("ippools/notjson", "{").await;
    put("ippools/wrong", r#"{"spec": {"cidr": 5}}"#).await;
    // Garbage at every block CIDR of the pool but the last one: the only
    // block n1 may claim is 10.20.0.240/28.
    for i in 0..15 {
        put(&format!("ipamblocks/10-20-0-{}-28", i * 16), "garbage").await;
    }
    put("blockaffinities/n1-10-20-0-0-28", "[]").await;
    put("ipamhandles/junk", r#"{"spec": {"block": 1}}"#).await;

    let ipam = e.ipam("n1");
    let args = AssignArgs {
        handle: "net.c1".into(),
        num_v4: 1,
        attrs: attrs("c1"),
        ..AssignArgs::default()
    };
    let got = ipam
        .auto_assign(&args)
        .await
        .expect("ADD despite bad objects");
    assert_eq!(got.ipv4.len(), 1);
    assert_eq!(got.ipv4[0].block.to_string(), "10.20.0.240/28");
    assert_eq!(got.ipv4[0].pool, "good");

    let report = ipam.check().await.expect("check despite bad objects");
    let bad: Vec<(String, String)> = report
        .issues
        .iter()
        .filter_map(|i| match i {
            Issue::InvalidObject { kind, name, .. } => {
                Some((kind.clone(), name.clone()))
            }
            _ => None,
        })
        .collect();
    for (kind, name) in [
        ("IPPool", "empty"),
        ("IPPool", "notjson"),
        ("IPPool", "wrong"),
        ("IPAMBlock", "10-20-0-0-28"),
        ("BlockAffinity", "n1-10-20-0-0-28"),
        ("IPAMHandle", "junk"),
    ] {
        assert!(
            bad.contains(&(kind.to_string(), name.to_string())),
            "{kind} {name} not reported: {report}"
        );
    }
    assert_eq!(bad.len(), 3 + 15 + 2, "{report}");
    let text = report.to_string();
    assert!(
        text.contains("IPPool \"wrong\" field spec.cidr does not decode"),
        "{text}"
    );
    let usage = ipam.show().await.expect("show despite bad objects");
    assert_eq!(usage.pools.len(), 1);
}
