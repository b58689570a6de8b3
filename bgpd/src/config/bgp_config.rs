//! A BGPConfiguration whose settings do not resolve (a keepalive below
//! 1 s, a bad BFD setting, a mesh password that cannot be read ...) is
//! one bad object: it is left out, named and counted, and bgpd keeps the
//! last good copy of it, or Calico's built-in defaults when there never
//! was one. It never stops bgpd.

use std::collections::BTreeMap;

use margay_crds::BGPConfiguration;
use margay_datastore::InvalidObject;

use super::session_opts::{bfd_cfg, password};
use super::{ConfigError, Resources, name, to_invalid};
use crate::secrets::Secrets;

const KIND: &str = "BGPConfiguration";

/// The first problem of `c`, as the invalid object to report: every
/// setting `derive` resolves with a possible error is tried here.
pub(super) fn problem(
    c: &BGPConfiguration,
    secrets: Option<&Secrets>,
) -> Option<InvalidObject> {
    let s = &c.spec;
    let owner = name(&c.metadata);
    let bad = |field: &str, e: ConfigError| to_invalid(KIND, owner, field, e);
    let check = || -> Result<(), InvalidObject> {
        let field = "spec.nodeMeshMaxRestartTime";
        s.node_mesh_max_restart_time()
            .map_err(|e| bad(field, e.into()))?;
        let field = "spec.nodeMeshKeepaliveTime";
        s.node_mesh_keepalive_time()
            .map_err(|e| bad(field, e.into()))?;
        let field = "spec.nodeMeshBFD";
        bfd_cfg(s.node_mesh_bfd.as_ref(), KIND, field)
            .map_err(|e| bad(field, e.into()))?;
        if let Some(p) = &s.node_mesh_password {
            let field = "spec.nodeMeshPassword";
            password(p, secrets, (KIND, owner), field)
                .map_err(|e| bad(field, e))?;
        }
        Ok(())
    };
    check().err()
}

/// Replaces each bad BGPConfiguration of `res` by its last good copy
/// (dropping it when there is none, so that the built-in defaults apply)
/// and remembers the good ones in `last_good`. Returns the bad ones.
pub fn screen(
    res: &mut Resources,
    last_good: &mut BTreeMap<String, BGPConfiguration>,
) -> Vec<InvalidObject> {
    let mut invalid = Vec::new();
    let mut kept = Vec::with_capacity(res.bgp_configs.len());
    for c in std::mem::take(&mut res.bgp_configs) {
        let n = name(&c.metadata).to_string();
        match problem(&c, res.secrets.as_ref()) {
            None => {
                last_good.insert(n, c.clone());
                kept.push(c);
            }
            Some(bad) => {
                invalid.push(bad);
                if let Some(good) = last_good.get(&n) {
                    tracing::warn!(name = %n, "BGPConfiguration: keeping the last good version");
                    kept.push(good.clone());
                }
            }
        }
    }
    // A deleted configuration is not "last good" any more.
    last_good.retain(|n, _| kept.iter().any(|c| name(&c.metadata) == n));
    res.bgp_configs = kept;
    invalid
}
