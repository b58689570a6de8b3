//! Hops 1 and 2: the source pod's interface, address and default route
//! (inside its network namespace), then the host end: the veth, proxy ARP
//! and the pod's /32 host route.

use std::net::{IpAddr, Ipv4Addr};

use serde::Deserialize;

use super::sys::{ip_json, ip_link, netns_name};
use super::{DiagnoseError, Endpoint, Verdict};

/// The gateway every margay pod's IPv4 default route uses: nothing owns
/// it; the host veth answers ARP for it by proxy ARP.
pub const POD_GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// `ip -j link` / `ip -j addr`, as much as matters here.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Link {
    #[serde(default)]
    pub flags: Vec<String>,
    pub link_netnsid: Option<i64>,
    #[serde(default)]
    pub addr_info: Vec<AddrInfo>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AddrInfo {
    pub local: IpAddr,
}

impl Link {
    fn up(&self) -> bool {
        self.flags.iter().any(|f| f == "UP")
    }
}

/// `ip -j route`, as much as matters here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Route {
    pub dst: String,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub gateway: Option<IpAddr>,
    pub dev: Option<String>,
    pub protocol: Option<String>,
}

/// What hop 1 sees inside the pod.
#[derive(Debug, Clone, Default)]
pub struct PodFacts {
    /// The pod's namespace name, found from the host veth's peer.
    pub netns: Option<String>,
    /// The pod's interface (with its addresses).
    pub link: Option<Link>,
    /// Its default routes.
    pub defaults: Vec<Route>,
}

/// What hop 2 sees on the host.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    pub veth: Option<Link>,
    /// `/proc/sys/net/ipv4/conf/<veth>/proxy_arp`, when readable.
    pub proxy_arp: Option<String>,
    /// Routes for exactly the pod's /32 (/128).
    pub host_routes: Vec<Route>,
}

pub fn pod_facts(ep: &Endpoint) -> Result<PodFacts, DiagnoseError> {
    let veth: Option<Link> =
        ip_link(None, &["link", "show", "dev", &ep.host_iface])?;
    let Some(nsid) = veth.and_then(|v| v.link_netnsid) else {
        return Ok(PodFacts::default());
    };
    let Some(ns) = netns_name(nsid)? else {
        return Ok(PodFacts::default());
    };
    let link = ip_link(Some(&ns), &["addr", "show", "dev", &ep.ifname])?;
    let family = if ep.ip.is_ipv4() { "-4" } else { "-6" };
    let defaults = ip_json(Some(&ns), &[family, "route", "show", "default"])?;
    Ok(PodFacts {
        netns: Some(ns),
        link,
        defaults,
    })
}

pub fn host_facts(ep: &Endpoint) -> Result<HostFacts, DiagnoseError> {
    let veth = ip_link(None, &["link", "show", "dev", &ep.host_iface])?;
    let proxy_arp = std::fs::read_to_string(format!(
        "/proc/sys/net/ipv4/conf/{}/proxy_arp",
        ep.host_iface
    ))
    .ok()
    .map(|s| s.trim().to_string());
    let host = format!("{}/{}", ep.ip, if ep.ip.is_ipv4() { 32 } else { 128 });
    let family = if ep.ip.is_ipv4() { "-4" } else { "-6" };
    let host_routes =
        ip_json(None, &[family, "route", "show", "exact", &host])?;
    Ok(HostFacts {
        veth,
        proxy_arp,
        host_routes,
    })
}

/// Hop 1.
pub fn judge_pod(ep: &Endpoint, f: &PodFacts) -> Verdict {
    let Some(ns) = &f.netns else {
        return Verdict::not_checked(format!(
            "cannot look inside: the peer of {} is in no namespace named \
             under /run/netns",
            ep.host_iface
        ));
    };
    let inside = format!("{}/{}", ns, ep.ifname);
    let Some(link) = &f.link else {
        return Verdict::broken(
            format!("{inside} does not exist"),
            "the CNI ADD did not complete or the interface was removed: \
             delete the pod so the runtime re-runs ADD",
        );
    };
    if !link.up() {
        return Verdict::broken(
            format!("{inside} is down"),
            format!("ip -n {ns} link set {} up", ep.ifname),
        );
    }
    let addrs: Vec<IpAddr> = link.addr_info.iter().map(|a| a.local).collect();
    if !addrs.contains(&ep.ip) {
        return Verdict::broken(
            format!("{inside} lacks {} (has {addrs:?})", ep.ip),
            "the pod's address differs from its endpoint record: delete the \
             pod so the runtime re-runs ADD",
        );
    }
    if ep.ip.is_ipv4() {
        let gw = IpAddr::V4(POD_GATEWAY_V4);
        let ok = f.defaults.iter().any(|r| {
            r.gateway == Some(gw) && r.dev.as_deref() == Some(&ep.ifname)
        });
        if !ok {
            return Verdict::broken(
                format!("{inside}: no default route via {gw}"),
                format!(
                    "ip -n {ns} route replace {gw} dev {i} scope link && \
                     ip -n {ns} route replace default via {gw} dev {i}",
                    i = ep.ifname
                ),
            );
        }
        return Verdict::ok(format!(
            "{inside} up, {}, default via {gw}",
            ep.ip
        ));
    }
    if f.defaults.is_empty() {
        return Verdict::broken(
            format!("{inside}: no IPv6 default route"),
            "delete the pod so the runtime re-runs ADD",
        );
    }
    Verdict::ok(format!("{inside} up, {}, IPv6 default route", ep.ip))
}

/// Hop 2.
pub fn judge_host(ep: &Endpoint, f: &HostFacts) -> Verdict {
    let veth = &ep.host_iface;
    let Some(link) = &f.veth else {
        return Verdict::broken(
            format!("host veth {veth} does not exist"),
            "the pod's veth is gone: delete the pod so the runtime re-runs ADD",
        );
    };
    if !link.up() {
        return Verdict::broken(
            format!("host veth {veth} is down"),
            format!("ip link set {veth} up"),
        );
    }
    if ep.ip.is_ipv4() && f.proxy_arp.as_deref() != Some("1") {
        return Verdict::broken(
            format!(
                "proxy ARP is {} on {veth}: the pod's ARP for 169.254.1.1 \
                 goes unanswered",
                f.proxy_arp.as_deref().unwrap_or("unreadable")
            ),
            format!("sysctl -w net.ipv4.conf.{veth}.proxy_arp=1"),
        );
    }
    let plen = if ep.ip.is_ipv4() { 32 } else { 128 };
    let right = f.host_routes.iter().any(|r| {
        r.dev.as_deref() == Some(veth.as_str())
            && r.kind.as_deref().is_none_or(|k| k == "unicast")
    });
    if !right {
        let seen = if f.host_routes.is_empty() {
            "none".to_string()
        } else {
            f.host_routes
                .iter()
                .map(|r| {
                    format!("{} dev {}", r.dst, r.dev.as_deref().unwrap_or("-"))
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Verdict::broken(
            format!(
                "no host route {}/{plen} dev {veth} (routes: {seen})",
                ep.ip
            ),
            format!(
                "felix-lite re-creates it from the endpoint record: check that \
                 felix-lite runs on this node; by hand: ip route replace \
                 {}/{plen} dev {veth} scope link",
                ep.ip
            ),
        );
    }
    let arp = if ep.ip.is_ipv4() {
        ", proxy ARP on"
    } else {
        ""
    };
    Verdict::ok(format!("{veth} up{arp}, {}/{plen} dev {veth}", ep.ip))
}
