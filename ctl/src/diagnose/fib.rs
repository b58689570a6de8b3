//! Hop 4: this node's FIB route to the destination: the longest match,
//! via which node, and whether felix-lite installed it (its route
//! protocol number).

use std::net::IpAddr;

use super::pod::Route;
use super::sys::routes_matching;
use super::{DiagnoseError, Options, Status, Verdict};

/// This node's longest-match route to the destination, and the BGP peers
/// (address, name) to say which node a gateway is.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub route: Option<Route>,
    pub peers: Vec<(IpAddr, String)>,
}

impl Facts {
    /// The destination is a pod on this node: a host route out of a
    /// device with no gateway.
    pub fn is_local(&self) -> bool {
        self.route.as_ref().is_some_and(|r| {
            r.gateway.is_none()
                && r.dev.is_some()
                && r.kind.as_deref().is_none_or(|k| k == "unicast")
                && prefix_len(&r.dst).is_some_and(|l| l == 32 || l == 128)
        })
    }
}

impl Facts {
    /// No route to the destination but the default one: margay's route
    /// for its block is missing, and bgpd (hop 5) says why.
    pub fn lacks_route(&self) -> bool {
        self.route.as_ref().is_none_or(|r| r.dst == "default")
    }
}

pub fn facts(dst: IpAddr, opts: &Options) -> Result<Facts, DiagnoseError> {
    let routes = routes_matching(None, dst)?;
    let route = routes
        .into_iter()
        .filter_map(|r| prefix_len(&r.dst).map(|l| (l, r)))
        .max_by_key(|(l, _)| *l)
        .map(|(_, r)| r);
    // Names only: a bgpd that does not answer is hop 5's business.
    let peers = margay_ctlproto::client::peers(&opts.bgpd_socket)
        .map(|ps| ps.into_iter().map(|p| (p.address, p.name)).collect())
        .unwrap_or_default();
    Ok(Facts { route, peers })
}

/// `ip` prints host routes without a length and `default` for /0.
pub fn prefix_len(dst: &str) -> Option<u8> {
    if dst == "default" {
        return Some(0);
    }
    match dst.split_once('/') {
        Some((_, l)) => l.parse().ok(),
        None => dst
            .parse::<IpAddr>()
            .ok()
            .map(|ip| if ip.is_ipv4() { 32 } else { 128 }),
    }
}

/// Hop 4.
pub fn judge(dst: IpAddr, proto: u8, f: &Facts) -> Verdict {
    let bgp_advice = "margay routes other nodes' blocks from bgpd's best \
                      paths: see `margayctl routes` and `margayctl node status`";
    let route = match &f.route {
        Some(r) if r.dst != "default" => r,
        _ => {
            return Verdict::broken(
                format!("no route to {dst} (only the default route)"),
                format!(
                    "felix-lite installed no route (protocol {proto}) for \
                     {dst}'s block; {bgp_advice}"
                ),
            );
        }
    };
    let margays = route.protocol.as_deref() == Some(&proto.to_string());
    let who = if margays {
        format!("protocol {proto} (margay)")
    } else {
        format!(
            "protocol {} (not margay's {proto})",
            route.protocol.as_deref().unwrap_or("boot")
        )
    };
    match route.kind.as_deref() {
        None | Some("unicast") => {}
        Some("blackhole") if margays => {
            return Verdict::broken(
                format!(
                    "{dst} is in this node's own block {} (blackholed): no \
                     pod here has it",
                    route.dst
                ),
                "the destination pod is gone, or its /32 host route is: \
                 check the pod and felix-lite on this node",
            );
        }
        Some(kind) => {
            return Verdict::broken(
                format!("{} is a {kind} route, {who}", route.dst),
                format!("remove it: ip route del {kind} {}", route.dst),
            );
        }
    }
    let Some(gw) = route.gateway else {
        let dev = route.dev.as_deref().unwrap_or("?");
        if f.is_local() {
            return Verdict::ok(format!(
                "{dst} is a pod on this node: {} dev {dev}",
                route.dst
            ));
        }
        return Verdict::broken(
            format!("{} dev {dev}, {who}: no next-hop node", route.dst),
            "an interface route captures the destination: remove it if \
             margay should route it",
        );
    };
    let node = f
        .peers
        .iter()
        .find(|(a, _)| *a == gw)
        .map_or(String::new(), |(_, n)| format!(" ({n})"));
    if !margays {
        return Verdict::broken(
            format!("{} via {gw}{node}, {who}", route.dst),
            format!(
                "a route not installed by felix-lite shadows margay's: \
                 remove it (ip route del {}) if margay should route {dst}",
                route.dst
            ),
        );
    }
    Verdict::ok(format!("{} via {gw}{node}, {who}", route.dst))
}

/// Hop 4's verdict on a missing route once bgpd's (hop 5) is known:
/// with no BGP path the cause is there, so hop 4 points at it; with one,
/// bgpd has the route and felix-lite did not install it.
pub fn missing_route_cause(fib: Verdict, bgp: &Verdict) -> Verdict {
    let advice = match bgp.status {
        Status::Broken => {
            "bgpd has no path to the destination: see hop 5".to_string()
        }
        Status::Ok => "bgpd has a best path (hop 5) that is not in the \
                      FIB: felix-lite did not install it; check felix-lite \
                      on this node (its log, `margayctl node status`)"
            .to_string(),
        Status::NotChecked => return fib,
    };
    Verdict {
        advice: Some(advice),
        ..fib
    }
}
