//! Per-session options of a peer beyond addresses and ASes: its TCP MD5
//! password (inline, file or Secret), margay's BGPPeer annotations, and
//! BFD.

use margay_crds as crds;
use margay_crds::{BGPPeer, PasswordSource};

use super::{ConfigError, name};
use crate::bfd::SessionCfg;
use crate::secrets::Secrets;

/// BGPPeer annotation enabling RFC 8950 on its IPv6 sessions.
pub const EXT_NH_ANNOTATION: &str = "margay.io/extended-next-hop";

/// Resolve a password: inline, from a file, or from a Secret `secrets`
/// holds (read beforehand with the kubernetes datastore; without Secrets
/// a secretKeyRef is an error). `None`: an optional Secret is absent.
pub(super) fn password(
    p: &crds::BGPPassword,
    secrets: Option<&Secrets>,
    (kind, owner): (&str, &str),
    field: &str,
) -> Result<Option<String>, ConfigError> {
    let key = match p.source(kind, field)? {
        PasswordSource::Value(v) => v.to_string(),
        PasswordSource::File(f) => std::fs::read_to_string(f)
            .map_err(|e| ConfigError::Peer {
                peer: field.into(),
                reason: format!("reading password file {f:?}: {e}"),
            })?
            .trim_end_matches(['\n', '\r'])
            .to_string(),
        PasswordSource::Secret(s) => {
            let Some(secrets) = secrets else {
                return Err(ConfigError::Peer {
                    peer: field.into(),
                    reason: format!(
                        "secretKeyRef {}/{} is only resolved with the kubernetes datastore; use file or value here",
                        s.name, s.key
                    ),
                });
            };
            let found = secrets.lookup(s).map_err(|allowed| {
                crds::ValidationError::string(
                    kind,
                    format!("{field}.secretKeyRef"),
                    &format!("{}/{}", s.name, s.key),
                    allowed,
                )
                .named(owner)
            })?;
            match found {
                Some(v) => v.to_string(),
                None => return Ok(None),
            }
        }
    };
    if key.len() > crate::sockopt::MD5_MAX_KEY_LEN {
        return Err(ConfigError::Peer {
            peer: field.into(),
            reason: format!(
                "TCP MD5 key of {} bytes; allowed at most 80 (RFC 2385, Linux)",
                key.len()
            ),
        });
    }
    Ok(Some(key))
}

/// margay extension: annotation `margay.io/max-prefixes` on a BGPPeer.
pub(super) fn max_prefix_annotation(bp: &BGPPeer) -> Option<u32> {
    bp.metadata
        .annotations
        .as_ref()?
        .get("margay.io/max-prefixes")?
        .parse()
        .ok()
}

/// margay extension beside `margay.io/max-prefixes`: how long a session
/// stays Idle after its max-prefix Cease before it restarts by itself
/// (FRR's `maximum-prefix N restart M`), e.g. "5m". Without it the
/// session stays Idle until `margayctl node reset`.
pub const MAX_PREFIX_RESTART_ANNOTATION: &str =
    "margay.io/max-prefixes-restart";

/// The `margay.io/max-prefixes-restart` annotation, validated.
pub(super) fn max_prefix_restart_annotation(
    bp: &BGPPeer,
) -> Result<Option<std::time::Duration>, ConfigError> {
    let Some(v) = bp
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(MAX_PREFIX_RESTART_ANNOTATION))
    else {
        return Ok(None);
    };
    let bad = |why: String| ConfigError::Peer {
        peer: name(&bp.metadata).into(),
        reason: format!(
            "annotation {MAX_PREFIX_RESTART_ANNOTATION}: {v:?}: {why}; {}",
            crds::duration::DURATION_ALLOWED
        ),
    };
    match crds::duration::parse_duration(v) {
        Ok(d) if d.is_zero() => Err(bad("must be more than zero".into())),
        Ok(d) => Ok(Some(d)),
        Err(e) => Err(bad(e.to_string())),
    }
}

/// margay extension: annotation `margay.io/extended-next-hop: "true"` on a
/// BGPPeer carries IPv4 unicast over its IPv6 sessions with IPv6 next
/// hops (RFC 8950); IPv4 sessions ignore it.
pub(super) fn extended_next_hop_annotation(
    bp: &BGPPeer,
) -> Result<bool, ConfigError> {
    let Some(v) = bp
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(EXT_NH_ANNOTATION))
    else {
        return Ok(false);
    };
    match v.as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(ConfigError::Peer {
            peer: name(&bp.metadata).into(),
            reason: format!(
                "annotation {EXT_NH_ANNOTATION}: {other:?}; allowed \"true\" \
                 or \"false\""
            ),
        }),
    }
}

/// The session settings of enabled BFD, validated (RFC 5880 6.8.1 and
/// 6.8.6 limits, see [`crds::BFDSettings::check`]).
pub(super) fn bfd_cfg(
    b: Option<&crds::BFDSettings>,
    kind: &str,
    at: &str,
) -> Result<Option<SessionCfg>, crds::ValidationError> {
    let Some(b) = b.filter(|b| b.enabled) else {
        return Ok(None);
    };
    if let Some(e) = b.check(kind, at).into_iter().next() {
        return Err(e);
    }
    Ok(Some(SessionCfg {
        min_interval: b.min_interval_of(kind, at)?,
        multiplier: b.multiplier(),
    }))
}
