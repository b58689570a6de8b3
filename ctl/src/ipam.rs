//! `ipam show|check|release`, through margay-ipam's driver (the same code
//! the CNI plugin allocates with), rendered as tables.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use margay_ctlproto::endpoint;
use margay_datastore::Datastore;
use margay_ipam::block::Released;
use margay_ipam::show::Usage;
use margay_ipam::{Ipam, IpamError, IpamOptions, ReleaseRequest, Report};

use crate::output::Table;

/// Why an `ipam` command failed.
#[derive(Debug, thiserror::Error)]
pub enum IpamCmdError {
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error("cannot release {ip}: {reason}")]
    Refused { ip: IpAddr, reason: String },
    #[error("cannot read the endpoint records in {}: {reason}", dir.display())]
    Endpoints { dir: PathBuf, reason: String },
}

/// An IPAM driver for reading and for administrative releases. margayctl
/// allocates nothing, so it takes no host lock (releases are CAS writes
/// and safe without it) and acts as no node.
pub fn driver(ds: Datastore) -> Ipam {
    let opts = IpamOptions {
        lock_path: None,
        ..IpamOptions::default()
    };
    Ipam::new(ds, "margayctl", opts)
}

/// `ipam show [--show-blocks]`.
pub async fn show(
    ds: &Datastore,
    show_blocks: bool,
) -> Result<String, IpamCmdError> {
    Ok(render_usage(&driver(ds.clone()).show().await?, show_blocks))
}

/// Pool utilisation, then (optionally) one row per block.
pub fn render_usage(u: &Usage, show_blocks: bool) -> String {
    let mut pools = Table::new([
        "POOL", "CIDR", "SIZE", "IN USE", "USE %", "BLOCKS", "DISABLED",
    ]);
    for p in &u.pools {
        pools.push([
            p.name.clone(),
            p.cidr.to_string(),
            p.size.to_string(),
            p.allocated.to_string(),
            percent(p.allocated, p.size),
            p.blocks.to_string(),
            p.disabled.to_string(),
        ]);
    }
    let mut out = if pools.is_empty() {
        "No IP pools.\n".to_string()
    } else {
        pools.render_plain()
    };
    if show_blocks {
        out.push('\n');
        let mut blocks = Table::new([
            "BLOCK", "AFFINITY", "SIZE", "IN USE", "USE %", "BORROWED",
        ]);
        for b in &u.blocks {
            blocks.push([
                b.cidr.to_string(),
                b.host.as_ref().map_or("-".into(), |h| format!("host:{h}")),
                b.size.to_string(),
                b.allocated.to_string(),
                percent(b.allocated as u128, b.size as u128),
                b.borrowed.to_string(),
            ]);
        }
        if blocks.is_empty() {
            out.push_str("No IPAM blocks.\n");
        } else {
            out.push_str(&blocks.render_plain());
        }
    }
    out
}

fn percent(part: u128, whole: u128) -> String {
    if whole == 0 {
        return "-".into();
    }
    format!("{:.1}%", part as f64 * 100.0 / whole as f64)
}

/// `ipam check`: the report, and whether it is clean.
pub async fn check(ds: &Datastore) -> Result<Report, IpamCmdError> {
    Ok(driver(ds.clone()).check().await?)
}

/// `ipam check --node N --network NET --endpoints DIR`: also `N`'s
/// allocations in network `NET` with no endpoint record in `dir` (a
/// missing directory has none).
pub async fn check_node(
    ds: &Datastore,
    node: &str,
    network: &str,
    dir: &Path,
) -> Result<Report, IpamCmdError> {
    let live = endpoint_handles(dir, network)?;
    let prefix = format!("{network}.");
    Ok(driver(ds.clone())
        .check_endpoints(node, &prefix, &live)
        .await?)
}

/// The handles (`<network>.<containerID>`) of the endpoint records in
/// `dir` (the CNI plugin's `<containerID>-<ifname>.json` files).
fn endpoint_handles(
    dir: &Path,
    network: &str,
) -> Result<BTreeSet<String>, IpamCmdError> {
    // A record this tool cannot read still names a live attachment for
    // the plugin: refuse to judge rather than call it an orphan.
    let records = endpoint::scan(dir)
        .map_err(|e| e.to_string())
        .and_then(endpoint::Scan::all)
        .map_err(|reason| IpamCmdError::Endpoints {
            dir: dir.to_path_buf(),
            reason,
        })?;
    Ok(records
        .into_iter()
        .map(|r| format!("{network}.{}", r.container_id))
        .collect())
}

/// `ipam release --ip IP`.
pub async fn release_ip(
    ds: &Datastore,
    ip: IpAddr,
) -> Result<String, IpamCmdError> {
    let req = ReleaseRequest {
        ip,
        handle: None,
        sequence: None,
    };
    let outcomes = driver(ds.clone()).release_ips(&[req]).await?;
    let Some(o) = outcomes.into_iter().find(|o| o.ip == ip) else {
        return Err(IpamCmdError::Refused {
            ip,
            reason: "it is in no IPAM block".into(),
        });
    };
    match o.result {
        Ok(Released::Freed { handle: Some(h) }) => {
            Ok(format!("released {ip} (handle {h})\n"))
        }
        Ok(Released::Freed { handle: None }) => Ok(format!("released {ip}\n")),
        Ok(Released::AlreadyFree) => Ok(format!("{ip} was not allocated\n")),
        Err(e) => Err(IpamCmdError::Refused {
            ip,
            reason: e.to_string(),
        }),
    }
}

/// `ipam release --handle H`.
pub async fn release_handle(
    ds: &Datastore,
    handle: &str,
) -> Result<String, IpamCmdError> {
    let freed = driver(ds.clone()).release_by_handle(handle).await?;
    if freed.is_empty() {
        return Ok(format!("handle {handle} held no address\n"));
    }
    let ips: Vec<String> = freed.iter().map(IpAddr::to_string).collect();
    Ok(format!("released {} (handle {handle})\n", ips.join(", ")))
}

#[cfg(test)]
mod tests {
    use margay_ipam::show::{BlockUsage, PoolUsage};

    use super::*;

    #[test]
    fn usage_tables() {
        let u = Usage {
            pools: vec![PoolUsage {
                name: "default".into(),
                cidr: "10.244.0.0/24".parse().unwrap(),
                disabled: false,
                size: 256,
                allocated: 4,
                blocks: 1,
            }],
            blocks: vec![BlockUsage {
                cidr: "10.244.0.0/26".parse().unwrap(),
                host: Some("n1".into()),
                size: 64,
                allocated: 4,
                borrowed: 1,
            }],
        };
        assert_eq!(
            render_usage(&u, false),
            "POOL      CIDR            SIZE   IN USE   USE %   BLOCKS   DISABLED\n\
             default   10.244.0.0/24   256    4        1.6%    1        false\n"
        );
        let with_blocks = render_usage(&u, true);
        assert!(
            with_blocks.ends_with(
                "BLOCK           AFFINITY   SIZE   IN USE   USE %   BORROWED\n\
             10.244.0.0/26   host:n1    64     4        6.2%    1\n"
            ),
            "{with_blocks}"
        );
        assert_eq!(
            render_usage(&Usage::default(), true),
            "No IP pools.\n\nNo IPAM blocks.\n"
        );
    }
}
