//! Hop 6: the destination's node: its blackhole for its own block, the
//! destination pod's /32 and its veth. Reached by running `ip` in that
//! node's network namespace (`--remote-netns`), which is what a lab node
//! is; on a real cluster, run diagnose on that node instead.

use std::net::IpAddr;

use super::fib::prefix_len;
use super::pod::{Link, Route};
use super::sys::{ip_link, routes_matching};
use super::{DiagnoseError, Verdict};

#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The remote FIB's routes covering the destination.
    pub routes: Vec<Route>,
    /// The device of the destination's /32 route, and its state.
    pub veth: Option<Link>,
}

pub fn facts(dst: IpAddr, netns: &str) -> Result<Facts, DiagnoseError> {
    let routes = routes_matching(Some(netns), dst)?;
    let dev = host_route(dst, &routes).and_then(|r| r.dev.clone());
    let veth = match dev {
        Some(d) => ip_link(Some(netns), &["link", "show", "dev", &d])?,
        None => None,
    };
    Ok(Facts { routes, veth })
}

fn host_route(dst: IpAddr, routes: &[Route]) -> Option<&Route> {
    let plen = if dst.is_ipv4() { 32 } else { 128 };
    routes.iter().find(|r| {
        prefix_len(&r.dst) == Some(plen)
            && r.dev.is_some()
            && r.gateway.is_none()
            && r.kind.as_deref().is_none_or(|k| k == "unicast")
    })
}

/// Hop 6.
pub fn judge(dst: IpAddr, netns: &str, proto: u8, f: &Facts) -> Verdict {
    let proto_s = proto.to_string();
    let plen = if dst.is_ipv4() { 32 } else { 128 };
    let blackhole = f.routes.iter().find(|r| {
        r.kind.as_deref() == Some("blackhole")
            && r.protocol.as_deref() == Some(proto_s.as_str())
    });
    // A borrowed address lives in another node's block: that node has the
    // blackhole; this one routes the block on, by margay's protocol.
    let borrowed = f.routes.iter().any(|r| {
        r.gateway.is_some()
            && r.dst != "default"
            && r.protocol.as_deref() == Some(proto_s.as_str())
    });
    let block = match (blackhole, borrowed) {
        (Some(b), _) => format!("blackhole {}", b.dst),
        (None, true) => "borrowed address (no own block)".to_string(),
        (None, false) => {
            return Verdict::broken(
                format!(
                    "{netns}: no blackhole (protocol {proto}) for the block of {dst}"
                ),
                format!(
                    "felix-lite on {netns} programs the blackhole for its \
                     blocks: check that it runs there (without it, traffic \
                     to free addresses of the block loops via the default route)"
                ),
            );
        }
    };
    let Some(host) = host_route(dst, &f.routes) else {
        return Verdict::broken(
            format!("{netns}: {block}, but no host route {dst}/{plen}"),
            format!(
                "the destination pod is gone from {netns} or its host route \
                 is: felix-lite there re-creates it from the endpoint record"
            ),
        );
    };
    let dev = host.dev.as_deref().unwrap_or("?");
    match &f.veth {
        None => Verdict::broken(
            format!(
                "{netns}: {dst}/{plen} dev {dev}, but {dev} does not exist"
            ),
            "the destination pod's veth is gone: delete the pod so the runtime \
             re-runs ADD",
        ),
        Some(l) if !l.flags.iter().any(|x| x == "UP") => Verdict::broken(
            format!("{netns}: veth {dev} of {dst} is down"),
            format!("ip -n {netns} link set {dev} up"),
        ),
        Some(_) => {
            Verdict::ok(format!("{netns}: {block}, {dst}/{plen} dev {dev} up"))
        }
    }
}
