//! `routes`: bgpd's RIB (every candidate path and why the best one won)
//! next to what felix-lite installed in the kernel FIB under its own route
//! protocol number, with a verdict per prefix.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use ipnetwork::IpNetwork;
use margay_ctlproto::{RejectedRoute, RibEntry, RibPath};
use serde::{Deserialize, Serialize};

use crate::output::{self, Format, OutputError, Table};
use margay_ctlproto::client::{self as socket, SocketError};

/// The route protocol number felix-lite tags its kernel routes with.
pub use margay_ctlproto::DEFAULT_FIB_PROTOCOL;

/// Why `routes` failed.
#[derive(Debug, thiserror::Error)]
pub enum RoutesError {
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error("cannot run `ip` to read the FIB (install iproute2): {0}")]
    Spawn(#[source] std::io::Error),
    #[error("`{command}` failed: {stderr}")]
    IpFailed { command: String, stderr: String },
    #[error("cannot parse the output of `{command}`: {message}")]
    Parse { command: String, message: String },
    #[error(transparent)]
    Output(#[from] OutputError),
}

/// What the kernel does with a prefix felix-lite installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum FibAction {
    /// Drop (felix-lite's route for the node's own blocks).
    Blackhole,
    /// Any other non-forwarding type (unreachable, prohibit).
    Reject { kind: String },
    /// Forward via these gateways (more than one: ECMP).
    Forward { hops: Vec<FibHop> },
}

/// One next hop of a forwarding route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FibHop {
    pub gateway: Option<IpAddr>,
    pub dev: Option<String>,
}

/// One kernel route with felix-lite's protocol number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FibRoute {
    pub prefix: IpNetwork,
    pub action: FibAction,
}

/// How the FIB compares with the RIB's best path for a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The FIB forwards via exactly the best (and multipath) next hops, or
    /// blackholes a locally originated block.
    Ok,
    /// A local route that felix-lite does not program (e.g. a borrowed
    /// address's /32, routed by the CNI plugin's veth route).
    Local,
    /// A remote best path with no FIB route.
    Missing,
    /// The FIB route uses other next hops than the best path.
    Differs,
    /// A FIB route with no best path in the RIB (stale, or bgpd restarting).
    NotInRib,
}

impl Verdict {
    fn word(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Local => "local",
            Verdict::Missing => "MISSING",
            Verdict::Differs => "DIFFERS",
            Verdict::NotInRib => "NOT IN RIB",
        }
    }
}

/// The RIB and the FIB for one prefix.
#[derive(Debug, Clone, Serialize)]
pub struct PrefixView {
    pub prefix: IpNetwork,
    pub paths: Vec<RibPath>,
    pub fib: Option<FibRoute>,
    pub verdict: Verdict,
}

/// Reads the FIB routes with protocol `proto` (IPv4 and IPv6), inside the
/// network namespace `netns` when given.
pub fn read_fib(
    proto: u8,
    netns: Option<&str>,
) -> Result<Vec<FibRoute>, RoutesError> {
    let mut routes = Vec::new();
    for family in ["-4", "-6"] {
        let mut args: Vec<String> = Vec::new();
        if let Some(ns) = netns {
            args.extend(["-n".into(), ns.into()]);
        }
        args.extend(
            ["-j", family, "route", "show", "table", "main", "proto"]
                .map(String::from),
        );
        args.push(proto.to_string());
        let command = format!("ip {}", args.join(" "));
        let out = Command::new("ip")
            .args(&args)
            .output()
            .map_err(RoutesError::Spawn)?;
        if !out.status.success() {
            return Err(RoutesError::IpFailed {
                command,
                stderr: String::from_utf8_lossy(&out.stderr).trim().into(),
            });
        }
        let text = String::from_utf8_lossy(&out.stdout);
        routes.extend(
            parse_ip_json(&text)
                .map_err(|message| RoutesError::Parse { command, message })?,
        );
    }
    Ok(routes)
}

/// `ip -j route` output, as much of it as matters here.
#[derive(Deserialize)]
struct IpRoute {
    dst: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    gateway: Option<IpAddr>,
    dev: Option<String>,
    #[serde(default)]
    nexthops: Vec<IpNextHop>,
}

#[derive(Deserialize)]
struct IpNextHop {
    gateway: Option<IpAddr>,
    dev: Option<String>,
}

/// Parses `ip -j route show` output (an empty output means no routes).
pub fn parse_ip_json(text: &str) -> Result<Vec<FibRoute>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let raw: Vec<IpRoute> =
        serde_json::from_str(text).map_err(|e| e.to_string())?;
    raw.into_iter()
        .map(|r| {
            let prefix = parse_dst(&r.dst)?;
            let action = match r.kind.as_deref() {
                None | Some("unicast") => {
                    let hops = if r.nexthops.is_empty() {
                        vec![FibHop {
                            gateway: r.gateway,
                            dev: r.dev,
                        }]
                    } else {
                        r.nexthops
                            .into_iter()
                            .map(|h| FibHop {
                                gateway: h.gateway,
                                dev: h.dev,
                            })
                            .collect()
                    };
                    FibAction::Forward { hops }
                }
                Some("blackhole") => FibAction::Blackhole,
                Some(other) => FibAction::Reject {
                    kind: other.to_string(),
                },
            };
            Ok(FibRoute { prefix, action })
        })
        .collect()
}

/// `ip` prints host routes without their length and `default` for /0.
fn parse_dst(dst: &str) -> Result<IpNetwork, String> {
    if dst == "default" {
        return Err("a default route carries felix-lite's protocol; \
                    margay never installs one"
            .into());
    }
    if dst.contains('/') {
        return dst.parse().map_err(|e| format!("dst {dst:?}: {e}"));
    }
    let ip: IpAddr = dst.parse().map_err(|e| format!("dst {dst:?}: {e}"))?;
    Ok(IpNetwork::from(ip))
}

/// Joins the RIB and the FIB by prefix and judges each one.
pub fn compare(rib: Vec<RibEntry>, fib: Vec<FibRoute>) -> Vec<PrefixView> {
    let mut fib: BTreeMap<IpNetwork, FibRoute> =
        fib.into_iter().map(|r| (r.prefix, r)).collect();
    let mut views: Vec<PrefixView> = rib
        .into_iter()
        .map(|e| {
            let fib = fib.remove(&e.prefix);
            let verdict = judge(&e.paths, fib.as_ref());
            PrefixView {
                prefix: e.prefix,
                paths: e.paths,
                fib,
                verdict,
            }
        })
        .collect();
    views.extend(fib.into_values().map(|f| PrefixView {
        prefix: f.prefix,
        paths: Vec::new(),
        fib: Some(f),
        verdict: Verdict::NotInRib,
    }));
    views.sort_by_key(|v| v.prefix);
    views
}

/// The verdict for one prefix.
fn judge(paths: &[RibPath], fib: Option<&FibRoute>) -> Verdict {
    let Some(best) = paths.iter().find(|p| p.best) else {
        return match fib {
            Some(_) => Verdict::NotInRib,
            None => Verdict::Ok,
        };
    };
    if best.peer.is_none() {
        return match fib.map(|f| &f.action) {
            Some(FibAction::Blackhole) => Verdict::Ok,
            None => Verdict::Local,
            Some(_) => Verdict::Differs,
        };
    }
    let want: BTreeSet<IpAddr> = paths
        .iter()
        .filter(|p| p.best || p.multipath)
        .filter_map(|p| p.next_hop)
        .collect();
    match fib.map(|f| &f.action) {
        None => Verdict::Missing,
        Some(FibAction::Forward { hops }) => {
            let have: BTreeSet<IpAddr> =
                hops.iter().filter_map(|h| h.gateway).collect();
            if have == want {
                Verdict::Ok
            } else {
                Verdict::Differs
            }
        }
        Some(_) => Verdict::Differs,
    }
}

/// Reads both sides and renders them in `format`.
pub fn show(
    socket_path: &Path,
    proto: u8,
    netns: Option<&str>,
    format: Format,
) -> Result<String, RoutesError> {
    let rib = socket::rib(socket_path)?;
    let fib = read_fib(proto, netns)?;
    let views = compare(rib, fib);
    Ok(match format {
        Format::Yaml => output::to_yaml_documents(&[&views])?,
        Format::Json => output::to_json(&[&views])?,
        Format::Table | Format::Wide => {
            render(&views, proto, format == Format::Wide)
        }
    })
}

/// The routes peers sent that bgpd's import refused, with the reason
/// (BIRD's `show route filtered`), in `format`.
pub fn show_rejected(
    socket_path: &Path,
    format: Format,
) -> Result<String, RoutesError> {
    let routes = socket::rejected(socket_path, None)?;
    Ok(match format {
        Format::Yaml => output::to_yaml_documents(&[&routes])?,
        Format::Json => output::to_json(&[&routes])?,
        Format::Table | Format::Wide => render_rejected(&routes),
    })
}

pub fn render_rejected(routes: &[RejectedRoute]) -> String {
    let mut t = Table::new(vec!["PREFIX", "FROM", "PEER", "REASON"]);
    for r in routes {
        t.push([
            r.prefix.to_string(),
            r.address.to_string(),
            r.peer.clone(),
            r.reason.clone(),
        ]);
    }
    let mut out = t.render_plain();
    out.push_str(&format!(
        "\n{} routes refused at import (they are in no RIB and no FIB)\n",
        routes.len()
    ));
    out
}

/// One row per candidate path; the FIB and verdict on the prefix's row.
pub fn render(views: &[PrefixView], proto: u8, wide: bool) -> String {
    let mut headers = vec![
        "PREFIX",
        "BEST",
        "NEXT HOP",
        "FROM",
        "AS PATH",
        "LOCAL PREF",
        "REASON",
        "FIB",
        "SYNC",
    ];
    if wide {
        headers.extend(["ORIGIN", "MED", "COMMUNITIES"]);
    }
    let mut t = Table::new(headers);
    for v in views {
        let fib = v.fib.as_ref().map_or("-".into(), |f| fib_text(&f.action));
        if v.paths.is_empty() {
            t.push([
                v.prefix.to_string(),
                String::new(),
                "-".into(),
                "-".into(),
                String::new(),
                String::new(),
                "no path in RIB".into(),
                fib,
                v.verdict.word().into(),
            ]);
            continue;
        }
        // The best path first, then the others in bgpd's order.
        let mut paths: Vec<&RibPath> = v.paths.iter().collect();
        paths.sort_by_key(|p| (!p.best, !p.multipath));
        for (i, p) in paths.into_iter().enumerate() {
            let first = i == 0;
            let mut row = vec![
                if first {
                    v.prefix.to_string()
                } else {
                    String::new()
                },
                marker(p),
                p.next_hop.map_or("-".into(), |h| h.to_string()),
                p.peer.map_or("local".into(), |h| h.to_string()),
                as_path(&p.as_path),
                p.local_pref.map_or("-".into(), |l| l.to_string()),
                p.reason.clone(),
                if first { fib.clone() } else { String::new() },
                if first {
                    v.verdict.word().into()
                } else {
                    String::new()
                },
            ];
            if wide {
                row.extend([
                    p.origin.clone(),
                    p.med.map_or("-".into(), |m| m.to_string()),
                    p.communities.join(" "),
                ]);
            }
            t.push(row);
        }
    }
    let bad = views.iter().filter(|v| {
        matches!(
            v.verdict,
            Verdict::Missing | Verdict::Differs | Verdict::NotInRib
        )
    });
    let mut out = t.render_plain();
    out.push_str(&format!(
        "\n{} prefixes; FIB = kernel routes with protocol {proto}; {} out of \
         sync\n",
        views.len(),
        bad.count()
    ));
    out
}

// ===== helper functions =====

/// `*` best, `=` equal-cost multipath member, `S` stale (peer restarting).
fn marker(p: &RibPath) -> String {
    let mut m = String::new();
    if p.best {
        m.push('*');
    } else if p.multipath {
        m.push('=');
    }
    if p.stale {
        m.push('S');
    }
    m
}

fn as_path(path: &[u32]) -> String {
    if path.is_empty() {
        return "(empty)".into();
    }
    path.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

fn fib_text(action: &FibAction) -> String {
    match action {
        FibAction::Blackhole => "blackhole".into(),
        FibAction::Reject { kind } => kind.clone(),
        FibAction::Forward { hops } => hops
            .iter()
            .map(|h| match (&h.gateway, &h.dev) {
                (Some(g), Some(d)) => format!("via {g} dev {d}"),
                (Some(g), None) => format!("via {g}"),
                (None, Some(d)) => format!("dev {d}"),
                (None, None) => "?".into(),
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

#[cfg(test)]
mod tests;
