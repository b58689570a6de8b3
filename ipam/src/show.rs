//! `show`: pool and block utilisation for margayctl (`ipam show`). Pure.

use std::fmt;

use ipnetwork::IpNetwork;

use crate::addr;
use crate::model::Snapshot;

/// Utilisation of one pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUsage {
    pub name: String,
    pub cidr: IpNetwork,
    pub disabled: bool,
    /// Addresses in the pool.
    pub size: u128,
    /// Addresses allocated from the pool's blocks.
    pub allocated: u128,
    /// Blocks carved from the pool.
    pub blocks: usize,
}

/// Utilisation of one block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockUsage {
    pub cidr: IpNetwork,
    /// Owner node, if affine.
    pub host: Option<String>,
    pub size: usize,
    pub allocated: usize,
    /// Addresses allocated to nodes other than the owner.
    pub borrowed: usize,
}

/// What `show` prints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub pools: Vec<PoolUsage>,
    pub blocks: Vec<BlockUsage>,
}

/// Computes utilisation from a snapshot.
pub fn usage(snap: &Snapshot) -> Usage {
    let mut blocks: Vec<BlockUsage> = snap
        .blocks
        .iter()
        .map(|b| BlockUsage {
            cidr: b.cidr,
            host: b.host().map(str::to_string),
            size: b.size(),
            allocated: b.allocated_count(),
            borrowed: b.borrowed().len(),
        })
        .collect();
    blocks.sort_by_key(|b| b.cidr);
    let pools = snap
        .pools
        .iter()
        .map(|p| {
            let mine = blocks
                .iter()
                .filter(|b| margay_crds::net::contains(&p.cidr, &b.cidr));
            let (n, allocated) = mine
                .fold((0, 0u128), |(n, a), b| (n + 1, a + b.allocated as u128));
            PoolUsage {
                name: p.name.clone(),
                cidr: p.cidr,
                disabled: p.disabled,
                size: addr::size(&p.cidr),
                allocated,
                blocks: n,
            }
        })
        .collect();
    Usage { pools, blocks }
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<20} {:<24} {:>12} {:>10} {:>7} {:>7}",
            "POOL", "CIDR", "SIZE", "IN USE", "USE %", "BLOCKS"
        )?;
        for p in &self.pools {
            let pct = if p.size == 0 {
                0.0
            } else {
                p.allocated as f64 * 100.0 / p.size as f64
            };
            let name = if p.disabled {
                format!("{} (disabled)", p.name)
            } else {
                p.name.clone()
            };
            writeln!(
                f,
                "{:<20} {:<24} {:>12} {:>10} {:>6.1}% {:>7}",
                name,
                p.cidr.to_string(),
                p.size,
                p.allocated,
                pct,
                p.blocks
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "{:<28} {:<20} {:>6} {:>8} {:>9}",
            "BLOCK", "NODE", "SIZE", "IN USE", "BORROWED"
        )?;
        for b in &self.blocks {
            writeln!(
                f,
                "{:<28} {:<20} {:>6} {:>8} {:>9}",
                b.cidr.to_string(),
                b.host.as_deref().unwrap_or("-"),
                b.size,
                b.allocated,
                b.borrowed
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::block::{ATTR_NODE, Block};
    use crate::model::PoolView;

    #[test]
    fn counts_allocations_per_pool_and_borrowed_per_block() {
        let mut b = Block::new("10.0.0.0/26".parse().unwrap(), Some("n1"), 1);
        let n1 = BTreeMap::from([(ATTR_NODE.to_string(), "n1".to_string())]);
        let n2 = BTreeMap::from([(ATTR_NODE.to_string(), "n2".to_string())]);
        b.allocate(3, "h1", &n1, &[]);
        b.allocate(1, "h2", &n2, &[]);
        let snap = Snapshot {
            pools: vec![
                PoolView {
                    name: "default".into(),
                    cidr: "10.0.0.0/24".parse().unwrap(),
                    block_size: 26,
                    disabled: false,
                },
                PoolView {
                    name: "other".into(),
                    cidr: "10.1.0.0/24".parse().unwrap(),
                    block_size: 26,
                    disabled: true,
                },
            ],
            blocks: vec![b],
            ..Snapshot::default()
        };
        let u = usage(&snap);
        assert_eq!(u.pools[0].allocated, 4);
        assert_eq!(u.pools[0].size, 256);
        assert_eq!(u.pools[0].blocks, 1);
        assert_eq!(u.pools[1].allocated, 0);
        assert_eq!(u.blocks[0].borrowed, 1);
        let text = u.to_string();
        assert!(text.contains("other (disabled)"), "{text}");
        assert!(text.contains("1.6%"), "{text}");
    }
}
