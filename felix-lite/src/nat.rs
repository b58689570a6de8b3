//! IPPool `natOutgoing`: masquerade what pods send beyond every pool.
//!
//! Calico's rule (Felix, `cali-nat-outgoing`): a packet whose source is in
//! a pool with `natOutgoing: true` and whose destination is in no pool at
//! all is masqueraded to the node's address on the way out. Pod-to-pod
//! traffic, across nodes and pools, keeps its source address.
//!
//! [`NatPools`] is the sans-IO core: pool events in, the desired nftables
//! ruleset out, as one text. [`render`] writes a complete `table inet
//! margay` that replaces the previous one in one `nft -f` transaction, so a
//! re-apply is idempotent and the rules are never half there. The table is
//! kept when felix-lite stops or restarts (like its routes, so pods keep
//! their outgoing connections), and `felix-lite --remove-nat` deletes it
//! on uninstall.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use ipnetwork::IpNetwork;
use margay_crds::ippool::IPPool;
use margay_datastore::{Datastore, ListWatchEvent, WatchEvent};

/// nftables family and name of margay's own table.
pub const TABLE: &str = "inet margay";

/// What one pool contributes to the NAT rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolNat {
    pub cidr: IpNetwork,
    pub nat_outgoing: bool,
}

/// A change in the IPPool collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolEvent {
    /// The complete list (initial list or relist).
    Snapshot(Vec<(String, PoolNat)>),
    Upsert(String, PoolNat),
    Delete(String),
}

/// The pools by name; yields the ruleset text when it changes.
#[derive(Debug, Default)]
pub struct NatPools {
    pools: BTreeMap<String, PoolNat>,
    /// Set after the first snapshot: no rules are written before felix-lite
    /// knows every pool (an empty "all pools" set would masquerade
    /// pod-to-pod traffic).
    synced: bool,
}

impl NatPools {
    /// Applies one event; returns the new ruleset when it changed (always
    /// after a snapshot).
    pub fn apply(&mut self, ev: PoolEvent) -> Option<String> {
        let before = self.synced.then(|| self.ruleset());
        match ev {
            PoolEvent::Snapshot(all) => {
                self.pools = all.into_iter().collect();
                self.synced = true;
                return Some(self.ruleset());
            }
            PoolEvent::Upsert(name, p) => {
                self.pools.insert(name, p);
            }
            PoolEvent::Delete(name) => {
                self.pools.remove(&name);
            }
        }
        if !self.synced {
            return None;
        }
        let after = self.ruleset();
        (before.as_ref() != Some(&after)).then_some(after)
    }

    /// The desired ruleset, or `None` before the first snapshot.
    pub fn current(&self) -> Option<String> {
        self.synced.then(|| self.ruleset())
    }

    fn ruleset(&self) -> String {
        render(self.pools.values())
    }
}

/// The complete nftables script for these pools: it creates the table if
/// missing, deletes it, and defines it again, all in one transaction.
pub fn render<'a>(pools: impl IntoIterator<Item = &'a PoolNat>) -> String {
    let pools: Vec<&PoolNat> = pools.into_iter().collect();
    let all = outermost(pools.iter().map(|p| p.cidr));
    let masq =
        outermost(pools.iter().filter(|p| p.nat_outgoing).map(|p| p.cidr));
    let mut s = String::new();
    s.push_str(&format!("table {TABLE}\ndelete table {TABLE}\n"));
    s.push_str(&format!("table {TABLE} {{\n"));
    for (set, nets) in [("pools", &all), ("masq-pools", &masq)] {
        for v6 in [false, true] {
            let fam = if v6 { "v6" } else { "v4" };
            let ty = if v6 { "ipv6_addr" } else { "ipv4_addr" };
            s.push_str(&format!(
                "\tset {set}-{fam} {{\n\t\ttype {ty}\n\t\tflags interval\n"
            ));
            let elems: Vec<String> = nets
                .iter()
                .filter(|n| n.is_ipv6() == v6)
                .map(|n| n.to_string())
                .collect();
            if !elems.is_empty() {
                s.push_str(&format!(
                    "\t\telements = {{ {} }}\n",
                    elems.join(", ")
                ));
            }
            s.push_str("\t}\n");
        }
    }
    s.push_str(
        "\tchain postrouting {\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr @masq-pools-v4 ip daddr != @pools-v4 masquerade\n\
         \t\tip6 saddr @masq-pools-v6 ip6 daddr != @pools-v6 masquerade\n\
         \t}\n}\n",
    );
    s
}

/// The networks not inside another one of the list, sorted: an interval
/// set refuses overlapping elements.
fn outermost(nets: impl Iterator<Item = IpNetwork>) -> BTreeSet<IpNetwork> {
    let nets: BTreeSet<IpNetwork> = nets.collect();
    nets.iter()
        .filter(|n| {
            !nets.iter().any(|o| {
                o != *n
                    && o.is_ipv4() == n.is_ipv4()
                    && o.prefix() < n.prefix()
                    && o.contains(n.network())
            })
        })
        .copied()
        .collect()
}

// ===== IO =====

/// Why `nft` could not apply the ruleset.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot run nft: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("nft failed ({status}): {stderr}")]
    Failed { status: String, stderr: String },
}

/// Runs `nft -f -` with `script` on stdin, inside the namespace at `netns`
/// when given.
pub fn nft_apply(netns: Option<&Path>, script: &str) -> Result<(), NftError> {
    let mut cmd = match netns {
        Some(p) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", p.display())).arg("nft");
            c
        }
        None => Command::new("nft"),
    };
    cmd.args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(NftError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(NftError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(NftError::Spawn)?;
    if out.status.success() {
        return Ok(());
    }
    Err(NftError::Failed {
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

/// Deletes margay's table (uninstall); absent is fine.
pub fn nft_remove(netns: Option<&Path>) -> Result<(), NftError> {
    nft_apply(netns, &format!("table {TABLE}\ndelete table {TABLE}\n"))
}

/// Keeps the NAT table equal to the IPPools until the datastore stream
/// ends: applied on every change and again every `resync` (which repairs
/// a table someone else deleted or edited).
pub async fn run(ds: Datastore, netns: Option<PathBuf>, resync: Duration) {
    let mut stream = ds.list_and_watch::<IPPool>();
    let mut pools = NatPools::default();
    let mut tick = tokio::time::interval(resync);
    let mut failing = false;
    loop {
        let script = tokio::select! {
            item = stream.next() => {
                let Some(item) = item else { return };
                let ev = match item {
                    Ok(ListWatchEvent::Listed(list)) => PoolEvent::Snapshot(
                        list.items.iter().filter_map(from_crd).collect(),
                    ),
                    Ok(ListWatchEvent::Event(WatchEvent::Deleted(p))) => {
                        PoolEvent::Delete(name_of(&p))
                    }
                    Ok(ListWatchEvent::Event(
                        WatchEvent::Added(p) | WatchEvent::Modified(p),
                    )) => match from_crd(&p) {
                        Some((name, nat)) => PoolEvent::Upsert(name, nat),
                        None => PoolEvent::Delete(name_of(&p)),
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "IPPool watch error");
                        continue;
                    }
                };
                pools.apply(ev)
            }
            _ = tick.tick() => pools.current(),
        };
        let Some(script) = script else { continue };
        let ns = netns.clone();
        let res = tokio::task::spawn_blocking(move || {
            nft_apply(ns.as_deref(), &script)
        })
        .await;
        match res {
            Ok(Ok(())) => {
                if failing {
                    tracing::info!("natOutgoing rules applied again");
                }
                failing = false;
            }
            Ok(Err(e)) => {
                failing = true;
                tracing::error!(error = %e, "natOutgoing rules not applied");
            }
            Err(e) => tracing::error!(error = %e, "nft task failed"),
        }
    }
}

fn name_of(p: &IPPool) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

/// The pool's NAT facts, or `None` (logged) when its cidr is invalid.
fn from_crd(p: &IPPool) -> Option<(String, PoolNat)> {
    match p.cidr_net() {
        Ok(cidr) => Some((
            name_of(p),
            PoolNat {
                cidr,
                nat_outgoing: p.spec.nat_outgoing,
            },
        )),
        Err(e) => {
            tracing::error!(error = %e, "IPPool skipped for natOutgoing");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(cidr: &str, nat: bool) -> PoolNat {
        PoolNat {
            cidr: cidr.parse().unwrap(),
            nat_outgoing: nat,
        }
    }

    const GOLDEN: &str = "\
table inet margay
delete table inet margay
table inet margay {
\tset pools-v4 {
\t\ttype ipv4_addr
\t\tflags interval
\t\telements = { 10.65.0.0/16, 10.66.0.0/16 }
\t}
\tset pools-v6 {
\t\ttype ipv6_addr
\t\tflags interval
\t\telements = { fd00:10::/48 }
\t}
\tset masq-pools-v4 {
\t\ttype ipv4_addr
\t\tflags interval
\t\telements = { 10.65.0.0/16 }
\t}
\tset masq-pools-v6 {
\t\ttype ipv6_addr
\t\tflags interval
\t}
\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tip saddr @masq-pools-v4 ip daddr != @pools-v4 masquerade
\t\tip6 saddr @masq-pools-v6 ip6 daddr != @pools-v6 masquerade
\t}
}
";

    #[test]
    fn ruleset_golden() {
        let pools = [
            pool("10.66.0.0/16", false),
            pool("fd00:10::/48", false),
            pool("10.65.0.0/16", true),
            // Inside another pool: left out of the interval set.
            pool("10.65.4.0/24", true),
        ];
        assert_eq!(render(&pools), GOLDEN);
    }

    #[test]
    fn nothing_before_the_snapshot_then_only_changes() {
        let mut t = NatPools::default();
        assert_eq!(
            t.apply(PoolEvent::Upsert("a".into(), pool("10.65.0.0/16", true))),
            None
        );
        assert_eq!(t.current(), None);
        let first = t
            .apply(PoolEvent::Snapshot(vec![(
                "a".into(),
                pool("10.65.0.0/16", false),
            )]))
            .unwrap();
        assert!(first.contains(
            "set masq-pools-v4 {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t}"
        ));
        // The same pool again: nothing to do.
        assert_eq!(
            t.apply(PoolEvent::Upsert("a".into(), pool("10.65.0.0/16", false))),
            None
        );
        // natOutgoing switched on: a new ruleset masquerading the pool.
        let on = t
            .apply(PoolEvent::Upsert("a".into(), pool("10.65.0.0/16", true)))
            .unwrap();
        assert!(on.contains(
            "set masq-pools-v4 {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = { 10.65.0.0/16 }"
        ));
        let off = t.apply(PoolEvent::Delete("a".into())).unwrap();
        assert!(!off.contains("elements"));
        assert_eq!(t.current(), Some(off));
    }
}
