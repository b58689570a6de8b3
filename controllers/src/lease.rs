//! Leader election with a coordination.k8s.io/v1 Lease, as client-go's
//! leaderelection does: the holder renews `spec.renewTime` every
//! `renew_every`; another candidate takes the Lease over once it has seen
//! no change of the record for `lease_duration`, measured on its own
//! clock (so clock skew between hosts does not matter). Every write is a
//! compare-and-swap on the resourceVersion, so two candidates never both
//! win the same round.
//!
//! [`Elector::decide`] is the sans-IO core; [`run`] does the IO and
//! publishes leadership on a watch channel.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tracing::{info, warn};

/// What to do with the Lease this round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// No Lease: create it, held by us.
    Create,
    /// We hold it: renew.
    Renew,
    /// Free or expired: take it over.
    Acquire,
    /// Someone else holds it and it is fresh.
    Follow { holder: String },
}

/// What identifies a renewal: (holderIdentity, renewTime).
type Record = (Option<String>, Option<String>);

/// The election state of one candidate.
#[derive(Debug)]
pub struct Elector {
    pub identity: String,
    pub lease_duration: Duration,
    /// The record last seen and when it was first seen.
    observed: Option<(Record, Instant)>,
}

impl Elector {
    pub fn new(identity: impl Into<String>, lease_duration: Duration) -> Self {
        Elector {
            identity: identity.into(),
            lease_duration,
            observed: None,
        }
    }

    /// Decides from the Lease as read now.
    pub fn decide(&mut self, lease: Option<&Lease>, now: Instant) -> Step {
        let Some(lease) = lease else {
            return Step::Create;
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let record = (
            holder.clone(),
            spec.renew_time.map(|t| format!("{:?}", t.0)),
        );
        let since = match &self.observed {
            Some((r, at)) if *r == record => *at,
            _ => {
                self.observed = Some((record, now));
                now
            }
        };
        match holder {
            Some(h) if h == self.identity => Step::Renew,
            None => Step::Acquire,
            Some(_) if now.duration_since(since) >= self.lease_duration => {
                Step::Acquire
            }
            Some(h) => Step::Follow { holder: h },
        }
    }
}

/// Where the Lease lives and how it is timed.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_every: Duration,
}

/// Runs the election for ever, sending `true` on `leader` while this
/// candidate holds the Lease. Any failed write (conflict, apiserver
/// unreachable) drops leadership at once: acting less is always safe.
pub async fn run(
    client: Client,
    cfg: LeaseConfig,
    leader: watch::Sender<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut elector = Elector::new(&cfg.identity, cfg.lease_duration);
    loop {
        let leading = match round(&api, &cfg, &mut elector).await {
            Ok(l) => l,
            Err(e) => {
                warn!(lease = %cfg.name, error = %e, "lease round failed");
                false
            }
        };
        if *leader.borrow() != leading {
            info!(identity = %cfg.identity, leading, "leadership changed");
            let _ = leader.send(leading);
        }
        tokio::time::sleep(cfg.renew_every).await;
    }
}

async fn round(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
    elector: &mut Elector,
) -> Result<bool, kube::Error> {
    let current = api.get_opt(&cfg.name).await?;
    let now = k8s_openapi::jiff::Timestamp::now();
    let step = elector.decide(current.as_ref(), Instant::now());
    let secs = i32::try_from(cfg.lease_duration.as_secs()).unwrap_or(i32::MAX);
    match (step, current) {
        (Step::Create, _) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(cfg.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            api.create(&PostParams::default(), &lease).await?;
            Ok(true)
        }
        (Step::Renew, Some(mut lease)) => {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.renew_time = Some(MicroTime(now));
            spec.lease_duration_seconds = Some(secs);
            api.replace(&cfg.name, &PostParams::default(), &lease)
                .await?;
            Ok(true)
        }
        (Step::Acquire, Some(mut lease)) => {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.holder_identity = Some(cfg.identity.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.renew_time = Some(MicroTime(now));
            spec.lease_duration_seconds = Some(secs);
            spec.lease_transitions =
                Some(spec.lease_transitions.unwrap_or(0) + 1);
            api.replace(&cfg.name, &PostParams::default(), &lease)
                .await?;
            info!(identity = %cfg.identity, "took the lease over");
            Ok(true)
        }
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed_s: i64) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: holder.map(String::from),
                renew_time: Some(MicroTime(
                    k8s_openapi::jiff::Timestamp::from_second(renewed_s)
                        .unwrap(),
                )),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    #[test]
    fn create_renew_follow_and_take_over_after_silence() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut e = Elector::new("me", s(15));
        assert_eq!(e.decide(None, t0), Step::Create);
        assert_eq!(e.decide(Some(&lease(Some("me"), 1)), t0), Step::Renew);
        assert_eq!(e.decide(Some(&lease(None, 1)), t0), Step::Acquire);
        let other = |r| lease(Some("other"), r);
        let follow = Step::Follow {
            holder: "other".into(),
        };
        assert_eq!(e.decide(Some(&other(1)), t0), follow);
        // It keeps renewing: never expires, however long.
        assert_eq!(e.decide(Some(&other(2)), t0 + s(10)), follow);
        assert_eq!(e.decide(Some(&other(3)), t0 + s(20)), follow);
        // Silence for the lease duration, on our clock: take over.
        assert_eq!(e.decide(Some(&other(3)), t0 + s(34)), follow);
        assert_eq!(e.decide(Some(&other(3)), t0 + s(35)), Step::Acquire);
    }
}
