//! Load generator for IPAM: acts as one node doing CNI-style ADD/DEL churn
//! against etcd, then prints what it still holds as JSON (one object
//! `{"node":..,"adds":..,"dels":..,"held":{"ip":"handle",..}}`) and exits
//! without releasing it, so that a parent can check, across many such
//! processes, that no address is held twice and nothing leaked.
//!
//! Usage: margay-ipam-churn ETCD_URL NODE OPS KEEP LOCK_FILE

use std::collections::BTreeMap;
use std::error::Error;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Instant;

use margay_datastore::{Datastore, DatastoreSpec};
use margay_ipam::{AssignArgs, Ipam, IpamOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, node, ops, keep, lock] = args.as_slice() else {
        return Err(
            "usage: margay-ipam-churn ETCD_URL NODE OPS KEEP LOCK_FILE".into(),
        );
    };
    let ops: usize = ops.parse()?;
    let keep: usize = keep.parse()?;
    let spec = DatastoreSpec::etcd(vec![url.clone()]);
    let ds = Datastore::connect(&spec).await?;
    let opts = IpamOptions {
        lock_path: Some(PathBuf::from(lock)),
        ..IpamOptions::default()
    };
    let ipam = Ipam::new(ds, node.clone(), opts);

    let start = Instant::now();
    let mut held: Vec<(String, Vec<IpAddr>)> = Vec::new();
    let (mut adds, mut dels) = (0usize, 0usize);
    for i in 0..ops {
        if held.len() >= keep {
            let (handle, _) = held.remove(0);
            ipam.release_by_handle(&handle).await?;
            dels += 1;
            continue;
        }
        let handle = format!("net.{node}-{i}");
        let args = AssignArgs {
            handle: handle.clone(),
            num_v4: 1,
            attrs: BTreeMap::from([("pod".to_string(), handle.clone())]),
            ..AssignArgs::default()
        };
        let got = ipam.auto_assign(&args).await?;
        held.push((handle, got.ipv4.iter().map(|a| a.ip).collect()));
        adds += 1;
    }
    let elapsed = start.elapsed();

    // Everything this process believes it holds must be recorded in the
    // datastore under its handle.
    let snap = ipam.snapshot().await?;
    let mut out = serde_json::Map::new();
    for (handle, ips) in &held {
        for ip in ips {
            let owner = snap
                .blocks
                .iter()
                .find_map(|b| b.allocation(*ip))
                .and_then(|a| a.handle_id);
            if owner.as_deref() != Some(handle.as_str()) {
                return Err(format!(
                    "{node}: {ip} should belong to {handle}, the datastore says {owner:?}"
                )
                .into());
            }
            out.insert(ip.to_string(), handle.clone().into());
        }
    }
    let report = serde_json::json!({
        "node": node,
        "adds": adds,
        "dels": dels,
        "millis": elapsed.as_millis() as u64,
        "held": out,
    });
    println!("{report}");
    Ok(())
}
