//! The default IPPools of a fresh install, as calico-node creates them at
//! start-up from `CALICO_IPV4POOL_CIDR` and friends.
//!
//! margay reads Calico's own variable names, so an operator's existing
//! Calico settings carry over: `CALICO_IPV{4,6}POOL_CIDR` (no variable,
//! no pool: margay has no built-in default CIDR), `_BLOCK_SIZE`,
//! `_NAT_OUTGOING`, `_NODE_SELECTOR`, `_DISABLE_BGP_EXPORT`, `_IPIP` and
//! `_VXLAN` (`Never` or `CrossSubnet` only: margay does not encapsulate),
//! and `NO_DEFAULT_POOLS=true` to create none. Any other
//! `CALICO_IPV{4,6}POOL_*` variable is refused by name, never ignored.
//!
//! A pool is created only when no IPPool of its family exists (an IPPool
//! that does not decode counts as existing, of both families: it is an
//! operator's), under Calico's fixed names `default-ipv4-ippool` /
//! `default-ipv6-ippool`, with a plain create: when every node starts at
//! once, one create wins and the others get AlreadyExists, which is
//! fine. Nothing is ever updated or overwritten.

use ipnetwork::IpNetwork;
use margay_crds::validate::Validate;
use margay_crds::{EncapMode, IPPool, IPPoolSpec};
use margay_datastore::{Datastore, DatastoreError};
use tracing::info;

/// The variables read, per family (`{}` = 4 or 6).
const SETTINGS: &[&str] = &[
    "CIDR",
    "BLOCK_SIZE",
    "NAT_OUTGOING",
    "NODE_SELECTOR",
    "DISABLE_BGP_EXPORT",
    "IPIP",
    "VXLAN",
];

/// A bad default-pool variable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{var}={value:?}: {message}")]
pub struct PoolEnvError {
    pub var: String,
    pub value: String,
    pub message: String,
}

/// What happened to one default pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ensured {
    /// Created by this call.
    Created(String),
    /// Another node created it first (AlreadyExists).
    Raced(String),
    /// A pool of the family exists already: nothing done.
    PoolsExist(String),
}

/// The default pools the variables ask for (read through `var`), checked
/// as an IPPool is; errors name the variable.
pub fn from_env(
    var: impl Fn(&str) -> Option<String>,
) -> Result<Vec<IPPool>, PoolEnvError> {
    let bad = |var: &str, value: &str, message: &str| PoolEnvError {
        var: var.to_string(),
        value: value.to_string(),
        message: message.to_string(),
    };
    if let Some(v) = var("NO_DEFAULT_POOLS") {
        match v.as_str() {
            "true" => return Ok(Vec::new()),
            "false" | "" => {}
            _ => {
                return Err(bad(
                    "NO_DEFAULT_POOLS",
                    &v,
                    "allowed: true or false",
                ));
            }
        }
    }
    let mut pools = Vec::new();
    for family in [4, 6] {
        let name = |s: &str| format!("CALICO_IPV{family}POOL_{s}");
        let Some(cidr) = var(&name("CIDR")).filter(|c| !c.is_empty()) else {
            continue;
        };
        let net: IpNetwork = cidr.parse().map_err(|_| {
            bad(&name("CIDR"), &cidr, "not a network in CIDR notation")
        })?;
        if net.is_ipv6() != (family == 6) {
            return Err(bad(
                &name("CIDR"),
                &cidr,
                &format!("not an IPv{family} network"),
            ));
        }
        let mut spec = IPPoolSpec {
            cidr,
            ..IPPoolSpec::default()
        };
        if let Some(v) = var(&name("BLOCK_SIZE")) {
            spec.block_size = Some(v.parse().map_err(|_| {
                bad(&name("BLOCK_SIZE"), &v, "not a prefix length")
            })?);
        }
        let boolean = |key: &str| -> Result<bool, PoolEnvError> {
            match var(&name(key)).as_deref() {
                None | Some("false") => Ok(false),
                Some("true") => Ok(true),
                Some(v) => Err(bad(&name(key), v, "allowed: true or false")),
            }
        };
        spec.nat_outgoing = boolean("NAT_OUTGOING")?;
        spec.disable_bgp_export = boolean("DISABLE_BGP_EXPORT")?;
        spec.node_selector =
            var(&name("NODE_SELECTOR")).filter(|s| !s.is_empty());
        for (key, slot) in [
            ("IPIP", &mut spec.ipip_mode),
            ("VXLAN", &mut spec.vxlan_mode),
        ] {
            *slot = match var(&name(key)).as_deref() {
                None | Some("") => None,
                Some("Never") => Some(EncapMode::Never),
                Some("CrossSubnet") => Some(EncapMode::CrossSubnet),
                Some(v) => {
                    return Err(bad(
                        &name(key),
                        v,
                        "allowed: Never or CrossSubnet (margay routes pod \
                         traffic without encapsulation)",
                    ));
                }
            };
        }
        let pool = IPPool::new(&format!("default-ipv{family}-ippool"), spec);
        if let Err(errs) = pool.validate() {
            let e = &errs[0];
            let key = match e.field.as_str() {
                "spec.blockSize" => "BLOCK_SIZE",
                "spec.nodeSelector" => "NODE_SELECTOR",
                _ => "CIDR",
            };
            return Err(bad(
                &name(key),
                &var(&name(key)).unwrap_or_default(),
                &e.to_string(),
            ));
        }
        pools.push(pool);
    }
    Ok(pools)
}

/// Refuses `CALICO_IPV{4,6}POOL_*` variables this module does not read.
pub fn unknown_vars(
    vars: impl Iterator<Item = String>,
) -> Result<(), PoolEnvError> {
    for v in vars {
        for family in [4, 6] {
            let prefix = format!("CALICO_IPV{family}POOL_");
            if let Some(rest) = v.strip_prefix(&prefix)
                && !SETTINGS.contains(&rest)
            {
                return Err(PoolEnvError {
                    var: v.clone(),
                    value: String::new(),
                    message: format!(
                        "not supported; margay reads {prefix}{{{}}}",
                        SETTINGS.join(",")
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Creates each of `pools` whose family has no IPPool yet (see the module
/// docs); idempotent and safe when every node runs it at once.
pub async fn ensure(
    ds: &Datastore,
    pools: &[IPPool],
) -> Result<Vec<Ensured>, DatastoreError> {
    if pools.is_empty() {
        return Ok(Vec::new());
    }
    let existing = ds.list::<IPPool>().await?;
    let mut out = Vec::new();
    for pool in pools {
        let name = pool.metadata.name.clone().unwrap_or_default();
        let v6 = pool.spec.cidr.contains(':');
        let family_exists = !existing.invalid.is_empty()
            || existing
                .items
                .iter()
                .any(|p| p.spec.cidr.contains(':') == v6);
        if family_exists {
            out.push(Ensured::PoolsExist(name));
            continue;
        }
        match ds.create(pool).await {
            Ok(_) => {
                info!(pool = %name, cidr = %pool.spec.cidr, "created the default IPPool");
                out.push(Ensured::Created(name));
            }
            Err(DatastoreError::AlreadyExists { .. }) => {
                out.push(Ensured::Raced(name))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn calico_variables_make_the_pools() {
        let pools = from_env(env(&[
            ("CALICO_IPV4POOL_CIDR", "10.244.0.0/16"),
            ("CALICO_IPV4POOL_BLOCK_SIZE", "24"),
            ("CALICO_IPV4POOL_NAT_OUTGOING", "true"),
            ("CALICO_IPV4POOL_IPIP", "Never"),
            ("CALICO_IPV6POOL_CIDR", "fd00:10:244::/48"),
            ("CALICO_IPV6POOL_NODE_SELECTOR", "rack == 'r1'"),
        ]))
        .unwrap();
        assert_eq!(pools.len(), 2);
        assert_eq!(
            pools[0].metadata.name.as_deref(),
            Some("default-ipv4-ippool")
        );
        assert_eq!(pools[0].spec.block_size, Some(24));
        assert!(pools[0].spec.nat_outgoing);
        assert_eq!(
            pools[1].spec.node_selector.as_deref(),
            Some("rack == 'r1'")
        );
        assert!(from_env(env(&[])).unwrap().is_empty());
        let off = env(&[
            ("NO_DEFAULT_POOLS", "true"),
            ("CALICO_IPV4POOL_CIDR", "10.0.0.0/8"),
        ]);
        assert!(from_env(off).unwrap().is_empty());
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (pairs, var) in [
            (
                vec![("CALICO_IPV4POOL_CIDR", "10.244.0.1/16")],
                "CALICO_IPV4POOL_CIDR",
            ),
            (
                vec![("CALICO_IPV4POOL_CIDR", "fd00::/48")],
                "CALICO_IPV4POOL_CIDR",
            ),
            (
                vec![("CALICO_IPV6POOL_CIDR", "nope")],
                "CALICO_IPV6POOL_CIDR",
            ),
            (
                vec![
                    ("CALICO_IPV4POOL_CIDR", "10.0.0.0/8"),
                    ("CALICO_IPV4POOL_BLOCK_SIZE", "12"),
                ],
                "CALICO_IPV4POOL_BLOCK_SIZE",
            ),
            (
                vec![
                    ("CALICO_IPV4POOL_CIDR", "10.0.0.0/8"),
                    ("CALICO_IPV4POOL_IPIP", "Always"),
                ],
                "CALICO_IPV4POOL_IPIP",
            ),
            (
                vec![
                    ("CALICO_IPV4POOL_CIDR", "10.0.0.0/8"),
                    ("CALICO_IPV4POOL_NAT_OUTGOING", "yes"),
                ],
                "CALICO_IPV4POOL_NAT_OUTGOING",
            ),
            (
                vec![
                    ("CALICO_IPV4POOL_CIDR", "10.0.0.0/8"),
                    ("CALICO_IPV4POOL_NODE_SELECTOR", "rack =="),
                ],
                "CALICO_IPV4POOL_NODE_SELECTOR",
            ),
            (vec![("NO_DEFAULT_POOLS", "1")], "NO_DEFAULT_POOLS"),
        ] {
            let e = from_env(env(&pairs)).unwrap_err();
            assert_eq!(e.var, var, "{e}");
            assert!(e.to_string().starts_with(var), "{e}");
        }
        let e = unknown_vars(
            ["CALICO_IPV4POOL_VXLAN_MODE".to_string()].into_iter(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("CALICO_IPV4POOL_VXLAN_MODE"), "{e}");
        unknown_vars(
            ["CALICO_IPV6POOL_CIDR".to_string(), "PATH".into()].into_iter(),
        )
        .unwrap();
    }
}
