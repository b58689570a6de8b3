//! What an IPPool may not change once stored, as in Calico
//! (libcalico-go clientv3 `IPPools`): its `cidr` (compared as networks)
//! and its effective `blockSize` cannot be modified; and a pool cannot
//! be created over stored IPAMBlocks of another size. Either would leave
//! blocks outside every pool or of the wrong size.

use crate::error::ValidationError;
use crate::net::overlaps;
use crate::{AnyResource, IPAMBlock, IPPool};

/// Checks every new IPPool against the stored pool of the same name and
/// the stored IPAMBlocks.
pub(super) fn check_pools(
    resources: &[AnyResource],
    stored: &[AnyResource],
    errs: &mut Vec<ValidationError>,
) {
    let blocks: Vec<&IPAMBlock> = stored
        .iter()
        .filter_map(|r| match r {
            AnyResource::IPAMBlock(b) => Some(b),
            _ => None,
        })
        .collect();
    for r in resources {
        let AnyResource::IPPool(new) = r else {
            continue;
        };
        let old = stored.iter().find_map(|s| match s {
            AnyResource::IPPool(p) if s.name() == r.name() => Some(p),
            _ => None,
        });
        match old {
            Some(old) => check_update(old, new, errs),
            None => check_create(new, &blocks, errs),
        }
    }
}

/// `cidr` and `blockSize` as stored must stay.
fn check_update(old: &IPPool, new: &IPPool, errs: &mut Vec<ValidationError>) {
    const WHY: &str = "cannot be changed (as in Calico); create a new pool, \
                       disable this one and migrate its workloads";
    let name = new.metadata.name.as_deref().unwrap_or("");
    let (Ok(old_net), Ok(new_net)) = (old.spec.cidr_net(), new.spec.cidr_net())
    else {
        return;
    };
    if old_net != new_net {
        errs.push(
            ValidationError::string(
                "IPPool",
                "spec.cidr",
                &new.spec.cidr,
                format!("{WHY}: stored {old_net}"),
            )
            .named(name),
        );
    } else if old.spec.block_size() != new.spec.block_size() {
        errs.push(
            ValidationError::new(
                "IPPool",
                "spec.blockSize",
                new.spec.block_size(),
                format!("{WHY}: stored {}", old.spec.block_size()),
            )
            .named(name),
        );
    }
}

/// A new pool's block size must match stored blocks inside it.
fn check_create(
    new: &IPPool,
    blocks: &[&IPAMBlock],
    errs: &mut Vec<ValidationError>,
) {
    let Ok(net) = new.spec.cidr_net() else {
        return;
    };
    let size = new.spec.block_size();
    let clash = blocks.iter().find_map(|b| {
        let cidr = b.spec.cidr_net().ok()?;
        (overlaps(&cidr, &net) && cidr.prefix() != size).then_some(cidr)
    });
    if let Some(cidr) = clash {
        errs.push(
            ValidationError::new(
                "IPPool",
                "spec.blockSize",
                size,
                format!(
                    "conflicts with the stored IPAMBlock {cidr} of size {}; \
                     allowed {} while blocks of that size exist in the pool",
                    cidr.prefix(),
                    cidr.prefix()
                ),
            )
            .named(new.metadata.name.as_deref().unwrap_or("")),
        );
    }
}
