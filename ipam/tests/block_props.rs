//! Property tests of the pure block model against a reference model:
//! no address twice, every address inside its block and pool, release
//! frees exactly what was allocated, and the free queue is FIFO.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use margay_ipam::block::{ATTR_NODE, Block, ReleaseCheck, Released};
use margay_ipam::search;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Allocate { block: usize, n: usize, handle: u8 },
    Release { block: usize, ordinal: usize },
    ReleaseHandle { handle: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize, 1..6usize, 0..5u8)
            .prop_map(|(block, n, handle)| Op::Allocate { block, n, handle }),
        (0..3usize, 0..16usize)
            .prop_map(|(block, ordinal)| Op::Release { block, ordinal }),
        (0..5u8).prop_map(|handle| Op::ReleaseHandle { handle }),
    ]
}

/// Reference state of one block: owner per ordinal and the free queue.
struct Model {
    owner: BTreeMap<usize, String>,
    free: VecDeque<usize>,
}

fn attrs() -> BTreeMap<String, String> {
    BTreeMap::from([(ATTR_NODE.to_string(), "n1".to_string())])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn block_matches_reference_model(
        ops in proptest::collection::vec(op(), 1..60),
        pool_v6 in any::<bool>(),
        reserve_first in any::<bool>(),
    ) {
        let pool: IpNetwork = if pool_v6 {
            "fd00:10::/120".parse().unwrap()
        } else {
            "10.20.0.0/24".parse().unwrap()
        };
        let prefix = if pool_v6 { 124 } else { 28 };
        let cidrs: Vec<IpNetwork> =
            search::block_walk(&pool, prefix, 42).take(3).collect();
        let reserved: Vec<IpNetwork> = if reserve_first {
            vec![IpNetwork::new(cidrs[0].network(), prefix + 2).unwrap()]
        } else {
            vec![]
        };
        let mut blocks: Vec<Block> = cidrs
            .iter()
            .map(|c| Block::new(*c, Some("n1"), 100))
            .collect();
        let mut models: Vec<Model> = blocks
            .iter()
            .map(|b| Model { owner: BTreeMap::new(), free: (0..b.size()).collect() })
            .collect();

        for op in ops {
            match op {
                Op::Allocate { block, n, handle } => {
                    let h = format!("net.{handle}");
                    let b = &mut blocks[block];
                    let m = &mut models[block];
                    // Reference: first n non-reserved free ordinals in
                    // queue order.
                    let want: Vec<usize> = m.free.iter().copied()
                        .filter(|&o| !reserved.iter().any(|r| r.contains(b.ip_at(o))))
                        .take(n)
                        .collect();
                    let got = b.allocate(n, &h, &attrs(), &reserved);
                    let got_ords: Vec<usize> =
                        got.iter().map(|ip| b.ordinal_of(*ip).unwrap()).collect();
                    prop_assert_eq!(&got_ords, &want);
                    for o in want {
                        m.free.retain(|&f| f != o);
                        prop_assert!(m.owner.insert(o, h.clone()).is_none());
                    }
                }
                Op::Release { block, ordinal } => {
                    let b = &mut blocks[block];
                    let m = &mut models[block];
                    let ordinal = ordinal % b.size();
                    let ip = b.ip_at(ordinal);
                    let r = b.release(ip, &ReleaseCheck::default()).unwrap();
                    match m.owner.remove(&ordinal) {
                        Some(h) => {
                            prop_assert_eq!(r, Released::Freed { handle: Some(h) });
                            m.free.push_back(ordinal);
                        }
                        None => prop_assert_eq!(r, Released::AlreadyFree),
                    }
                }
                Op::ReleaseHandle { handle } => {
                    let h = format!("net.{handle}");
                    for (b, m) in blocks.iter_mut().zip(models.iter_mut()) {
                        let freed: BTreeSet<IpAddr> =
                            b.release_handle(&h).into_iter().collect();
                        let want: Vec<usize> = m.owner.iter()
                            .filter(|(_, o)| **o == h)
                            .map(|(k, _)| *k)
                            .collect();
                        let want_ips: BTreeSet<IpAddr> =
                            want.iter().map(|o| b.ip_at(*o)).collect();
                        prop_assert_eq!(freed, want_ips);
                        for o in want {
                            m.owner.remove(&o);
                            m.free.push_back(o);
                        }
                    }
                }
            }
            check_invariants(&blocks, &models, &pool, &reserved)?;
        }
    }
}

fn check_invariants(
    blocks: &[Block],
    models: &[Model],
    pool: &IpNetwork,
    reserved: &[IpNetwork],
) -> Result<(), TestCaseError> {
    let mut seen = BTreeSet::new();
    for (b, m) in blocks.iter().zip(models) {
        prop_assert!(margay_crds::net::contains(pool, &b.cidr));
        let allocs = b.allocations();
        prop_assert_eq!(allocs.len() + b.unallocated.len(), b.size());
        let free: BTreeSet<usize> = b.unallocated.iter().copied().collect();
        prop_assert_eq!(free.len(), b.unallocated.len(), "duplicate free");
        for a in &allocs {
            prop_assert!(seen.insert(a.ip), "{} allocated twice", a.ip);
            prop_assert!(b.cidr.contains(a.ip));
            prop_assert!(!free.contains(&a.ordinal));
            prop_assert!(!reserved.iter().any(|r| r.contains(a.ip)));
            prop_assert_eq!(
                m.owner.get(&a.ordinal).map(String::as_str),
                a.handle_id.as_deref()
            );
            prop_assert!(a.sequence.is_some());
            prop_assert!(a.sequence.unwrap() < b.sequence_number);
        }
        prop_assert_eq!(allocs.len(), m.owner.len());
        // FIFO: the free queue is exactly the reference queue.
        let want: Vec<usize> = m.free.iter().copied().collect();
        prop_assert_eq!(&b.unallocated, &want);
        // Attributes are compacted: each one is referenced.
        let used: BTreeSet<usize> =
            b.allocations.iter().flatten().copied().collect();
        prop_assert_eq!(used.len(), b.attributes.len());
    }
    Ok(())
}
