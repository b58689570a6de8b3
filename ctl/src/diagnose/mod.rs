//! `diagnose FROM TO`: walks the path a packet takes from a pod on this
//! node to a destination, hop by hop, and stops at the first broken hop,
//! naming it and saying what to do. One exception: when this node's FIB
//! (hop 4) lacks the route, bgpd (hop 5) is judged too, and a broken hop
//! 5 is named as the cause (no path, a route refused at import, a session down).
//!
//! Each hop is split in two: an IO function gathers its *facts* (the
//! `ip` command, `/proc/sys`, the datastore, bgpd's control socket) and
//! a pure `judge` function turns facts into a [`Verdict`]. The judges are
//! unit-tested without a host; the lab tests break each hop for real.
//!
//! Where it runs: on the source pod's node (in the lab, inside the node's
//! namespace: `ip netns exec mglab-node1 margayctl diagnose ...`). The
//! remote node is reached only when `--remote-netns` names its network
//! namespace (the lab's nodes are namespaces of one machine); elsewhere
//! hop 6 is reported as not checked, never as ok.

mod bgp;
mod fib;
mod ipam;
mod pod;
mod remote;
mod sys;
mod target;

use std::net::IpAddr;
use std::path::PathBuf;

use margay_datastore::Datastore;
use serde::Serialize;

use crate::output::{self, Format, OutputError, Table};

pub use target::{Endpoint, Target};

/// Why diagnose could not run at all (a broken hop is not an error: it is
/// the answer).
#[derive(Debug, thiserror::Error)]
pub enum DiagnoseError {
    #[error("{0}")]
    BadTarget(String),
    #[error(
        "{what} {spec:?} is a Service: diagnose does not follow Services \
         yet; give the address of one of its pods"
    )]
    ServiceNotYet { what: &'static str, spec: String },
    #[error("cannot run `{command}`: {reason}")]
    Command { command: String, reason: String },
    #[error("cannot read the endpoint records in {}: {reason}", dir.display())]
    Endpoints { dir: PathBuf, reason: String },
    #[error(transparent)]
    Ipam(#[from] margay_ipam::IpamError),
    #[error(transparent)]
    Output(#[from] OutputError),
}

/// Where this node's pieces are.
#[derive(Debug, Clone)]
pub struct Options {
    /// This node's name (block affinity `host:<node>`).
    pub node: String,
    /// The CNI network name (IPAM handles are `<network>.<containerID>`).
    pub network: String,
    /// The CNI plugin's endpoint records on this node.
    pub endpoints: PathBuf,
    pub bgpd_socket: PathBuf,
    /// felix-lite's route protocol number.
    pub fib_protocol: u8,
    /// The destination node's network namespace (lab), for hop 6.
    pub remote_netns: Option<String>,
}

/// The hops, in the order a packet crosses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hop {
    /// The source pod's interface, address and default route.
    Pod,
    /// The host veth, proxy ARP and the pod's /32 host route.
    Host,
    /// The pod's address in IPAM.
    Ipam,
    /// This node's FIB route to the destination.
    Fib,
    /// bgpd's best path and sessions.
    Bgp,
    /// The destination node: blackhole, /32 and veth.
    Remote,
}

impl Hop {
    pub fn number(self) -> u8 {
        self as u8 + 1
    }

    pub fn title(self) -> &'static str {
        match self {
            Hop::Pod => "source pod",
            Hop::Host => "host veth",
            Hop::Ipam => "IPAM",
            Hop::Fib => "node FIB",
            Hop::Bgp => "bgpd",
            Hop::Remote => "remote node",
        }
    }
}

/// A hop's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Broken,
    /// Not looked at: not applicable, not reachable from here, or after
    /// the first broken hop.
    NotChecked,
}

/// What a judge decided for one hop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub status: Status,
    /// What was seen.
    pub detail: String,
    /// What to do (broken hops).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
}

impl Verdict {
    pub fn ok(detail: impl Into<String>) -> Verdict {
        Verdict {
            status: Status::Ok,
            detail: detail.into(),
            advice: None,
        }
    }

    pub fn broken(
        detail: impl Into<String>,
        advice: impl Into<String>,
    ) -> Verdict {
        Verdict {
            status: Status::Broken,
            detail: detail.into(),
            advice: Some(advice.into()),
        }
    }

    pub fn not_checked(detail: impl Into<String>) -> Verdict {
        Verdict {
            status: Status::NotChecked,
            detail: detail.into(),
            advice: None,
        }
    }
}

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct HopReport {
    pub number: u8,
    pub hop: Hop,
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// The whole walk.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub from: String,
    pub to: IpAddr,
    pub hops: Vec<HopReport>,
    /// The broken hop named as the cause, if any: the first broken one,
    /// or hop 5 when it explains hop 4's missing route.
    pub broken: Option<Hop>,
}

impl Report {
    /// True when no hop is broken.
    pub fn whole(&self) -> bool {
        self.broken.is_none()
    }
}

/// Walks the hops from `from` to `to`, lazily: a hop's facts are gathered
/// only when every hop before it is whole.
pub async fn diagnose(
    ds: &Datastore,
    opts: &Options,
    from: &str,
    to: &str,
) -> Result<Report, DiagnoseError> {
    // Both refused up front (a Service TO) before any reading.
    target::parse_spec("FROM", from)?;
    target::parse_spec("TO", to)?;
    let src = target::resolve_source(ds, opts, from).await?;
    let dst = target::resolve_destination(ds, opts, to).await?;
    let mut walk = Walk::default();
    match &src {
        Target::Pod(ep) => {
            walk.push(Hop::Pod, || {
                Ok(pod::judge_pod(ep, &pod::pod_facts(ep)?))
            })?;
            walk.push(Hop::Host, || {
                Ok(pod::judge_host(ep, &pod::host_facts(ep)?))
            })?;
            // Read only when hops 1 and 2 are whole (push skips the judge
            // after a broken hop).
            let facts = match walk.stopped() {
                true => ipam::Facts::default(),
                false => ipam::facts(ds, ep.ip).await?,
            };
            walk.push(Hop::Ipam, || {
                Ok(ipam::judge(ep, &opts.node, &opts.network, &facts))
            })?;
        }
        Target::Ip(ip) => {
            for hop in [Hop::Pod, Hop::Host, Hop::Ipam] {
                walk.push(hop, || {
                    Ok(Verdict::not_checked(format!(
                        "{ip} is no pod on this node (no endpoint record)"
                    )))
                })?;
            }
        }
    }
    let mut route = None;
    // A missing route is hop 4's symptom, and its cause is usually in
    // bgpd: judge hop 5 too, and name the deepest broken hop.
    let mut bgp_early = None;
    walk.push(Hop::Fib, || {
        let f = fib::facts(dst, opts)?;
        let mut v = fib::judge(dst, opts.fib_protocol, &f);
        if f.lacks_route() {
            let b = bgp::judge(dst, &bgp::facts(&opts.bgpd_socket, dst)?);
            v = fib::missing_route_cause(v, &b);
            bgp_early = Some(b);
        }
        route = Some(f);
        Ok(v)
    })?;
    let local = route.as_ref().is_some_and(fib::Facts::is_local);
    match bgp_early {
        Some(b) => walk.push_cause(Hop::Bgp, b),
        None => walk.push(Hop::Bgp, || {
            if local {
                return Ok(Verdict::not_checked(
                    "the destination is on this node: no BGP hop",
                ));
            }
            Ok(bgp::judge(dst, &bgp::facts(&opts.bgpd_socket, dst)?))
        })?,
    }
    walk.push(Hop::Remote, || {
        if local {
            return Ok(Verdict::not_checked(
                "the destination is on this node (its /32 was checked in hop 4)",
            ));
        }
        let Some(ns) = &opts.remote_netns else {
            return Ok(Verdict::not_checked(
                "give --remote-netns (lab) or run diagnose on the destination's \
                 node to check its blackhole, /32 and veth",
            ));
        };
        Ok(remote::judge(dst, ns, opts.fib_protocol, &remote::facts(dst, ns)?))
    })?;
    Ok(Report {
        from: src.describe(),
        to: dst,
        broken: walk.broken,
        hops: walk.hops,
    })
}

/// The hops judged so far; after the first broken one the rest are not
/// checked.
#[derive(Default)]
struct Walk {
    hops: Vec<HopReport>,
    broken: Option<Hop>,
}

impl Walk {
    fn stopped(&self) -> bool {
        self.broken.is_some()
    }

    fn push(
        &mut self,
        hop: Hop,
        judge: impl FnOnce() -> Result<Verdict, DiagnoseError>,
    ) -> Result<(), DiagnoseError> {
        let verdict = match self.broken {
            Some(b) => Verdict::not_checked(format!(
                "not checked: hop {} is broken",
                b.number()
            )),
            None => judge()?,
        };
        self.push_cause(hop, verdict);
        Ok(())
    }

    /// Records `verdict` for `hop`; also used for a hop judged although
    /// an earlier hop is broken, because it is that hop's cause: broken,
    /// it becomes the hop the report names (the deepest real cause).
    fn push_cause(&mut self, hop: Hop, verdict: Verdict) {
        if verdict.status == Status::Broken {
            self.broken = Some(hop);
        }
        self.hops.push(HopReport {
            number: hop.number(),
            hop,
            verdict,
        });
    }
}

/// The report as a table (with the advice of the broken hop) or JSON/YAML.
pub fn render(
    report: &Report,
    format: Format,
) -> Result<String, DiagnoseError> {
    Ok(match format {
        Format::Json => output::to_json(&[report])?,
        Format::Yaml => output::to_yaml_documents(&[report])?,
        Format::Table | Format::Wide => {
            let mut t = Table::new(["#", "HOP", "STATUS", "DETAIL"]);
            for h in &report.hops {
                t.push([
                    h.number.to_string(),
                    h.hop.title().to_string(),
                    match h.verdict.status {
                        Status::Ok => "ok",
                        Status::Broken => "BROKEN",
                        Status::NotChecked => "-",
                    }
                    .to_string(),
                    h.verdict.detail.clone(),
                ]);
            }
            let mut out =
                format!("Path from {} to {}:\n", report.from, report.to);
            out.push_str(&t.render_plain());
            // The deepest cause when one hop's break is explained by a
            // later one (a missing route, by bgpd).
            match report
                .broken
                .and_then(|b| report.hops.iter().find(|h| h.hop == b))
            {
                Some(h) => out.push_str(&format!(
                    "\nBROKEN at hop {} ({}): {}\n",
                    h.number,
                    h.hop.title(),
                    h.verdict.advice.as_deref().unwrap_or("")
                )),
                None => out.push_str("\nThe path is whole.\n"),
            }
            out
        }
    })
}

#[cfg(test)]
mod tests;
