//! CHECK of the dataplane: compares what is in the kernel, in the
//! container and on the host, with what ADD reported, and names every
//! difference.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use ipnetwork::IpNetwork;

use crate::config::NetConf;
use crate::error::{CniError, Result};
use crate::netns;
use crate::nl::{self, RouteInfo};
use crate::result::CniResult;
use crate::spec::Env;
use crate::sysctl;
use crate::veth::{self, GATEWAY_V4, HOST_MAC};

/// What should exist.
#[derive(Debug, Clone)]
pub struct Expected {
    pub netns: PathBuf,
    pub ifname: String,
    pub host_ifname: String,
    pub ips: Vec<IpNetwork>,
    pub mtu: u32,
}

impl Expected {
    /// Reads the expectation from the ADD result: the interface named
    /// CNI_IFNAME with a sandbox, its addresses, and the host interface.
    pub fn from_result(
        prev: &CniResult,
        env: &Env,
        conf: &NetConf,
        identity: &str,
    ) -> Result<Expected> {
        let idx = prev
            .interfaces
            .iter()
            .position(|i| i.name == env.ifname() && i.sandbox.is_some())
            .ok_or_else(|| {
                CniError::config(
                    "prevResult",
                    format!(
                        "no interface {:?} with a sandbox in the ADD result",
                        env.ifname()
                    ),
                )
            })?;
        let ips = prev
            .ips
            .iter()
            .filter(|c| c.interface == Some(idx))
            .map(|c| c.address)
            .collect();
        let derived = veth::host_ifname(identity, env.ifname());
        let host_ifname = prev
            .interfaces
            .iter()
            .find(|i| i.sandbox.is_none() && i.name == derived)
            .map_or(derived, |i| i.name.clone());
        Ok(Expected {
            netns: env.netns_to_open().map(PathBuf::from).unwrap_or_default(),
            ifname: env.ifname().to_string(),
            host_ifname,
            ips,
            mtu: conf.mtu,
        })
    }
}

/// Every problem found, empty when all is well.
pub async fn dataplane(exp: &Expected) -> Vec<String> {
    let in_container = async {
        let ns = match netns::open(&exp.netns) {
            Ok(ns) => ns,
            Err(e) => return vec![e.to_string()],
        };
        let owned = exp.clone();
        match netns::run_in(&exp.netns, ns, move |h| async move {
            container(&h, &owned).await
        })
        .await
        {
            Ok(p) => p,
            Err(e) => vec![e.to_string()],
        }
    };
    let on_host = async {
        match netns::host_handle() {
            Ok(h) => host(&h, exp).await,
            Err(e) => vec![format!("host netlink: {e}")],
        }
    };
    let (mut a, b) = tokio::join!(in_container, on_host);
    a.extend(b);
    a
}

/// Common link checks: present, up, MTU.
async fn link(
    h: &rtnetlink::Handle,
    name: &str,
    place: &str,
    mtu: u32,
    out: &mut Vec<String>,
) -> Option<nl::LinkInfo> {
    match nl::link_by_name(h, name).await {
        Ok(Some(l)) => {
            if !l.up {
                out.push(format!("{place} interface {name} is down"));
            }
            if l.mtu != Some(mtu) {
                out.push(format!(
                    "{place} interface {name} has MTU {:?}, expected {mtu}",
                    l.mtu
                ));
            }
            Some(l)
        }
        Ok(None) => {
            out.push(format!("{place} interface {name} does not exist"));
            None
        }
        Err(e) => {
            out.push(format!("looking up {place} interface {name}: {e}"));
            None
        }
    }
}

fn has_route(
    routes: &[RouteInfo],
    dst: IpNetwork,
    gw: Option<IpAddr>,
    oif: u32,
    scope_link: bool,
) -> bool {
    routes.iter().any(|r| {
        r.dst == dst
            && r.gateway == gw
            && r.oif == Some(oif)
            && (!scope_link || r.scope_link)
    })
}

/// Inside the container: CNI_IFNAME with its addresses and routes.
async fn container(h: &rtnetlink::Handle, exp: &Expected) -> Vec<String> {
    let mut out = Vec::new();
    let Some(l) = link(h, &exp.ifname, "container", exp.mtu, &mut out).await
    else {
        return out;
    };
    match nl::addresses(h, l.index).await {
        Ok(have) => {
            for ip in &exp.ips {
                if !have.contains(ip) {
                    out.push(format!(
                        "container interface {} lacks address {ip}",
                        exp.ifname
                    ));
                }
            }
        }
        Err(e) => out.push(format!("listing addresses of {}: {e}", exp.ifname)),
    }
    if exp.ips.iter().any(IpNetwork::is_ipv4) {
        match nl::routes(h, false).await {
            Ok(r) => {
                let gw = IpNetwork::from(IpAddr::V4(GATEWAY_V4));
                if !has_route(&r, gw, None, l.index, true) {
                    out.push(format!("container route 169.254.1.1/32 dev {} scope link is missing", exp.ifname));
                }
                let default =
                    IpNetwork::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
                        .expect("valid");
                if !has_route(
                    &r,
                    default,
                    Some(IpAddr::V4(GATEWAY_V4)),
                    l.index,
                    false,
                ) {
                    out.push(format!("container default route via 169.254.1.1 dev {} is missing", exp.ifname));
                }
            }
            Err(e) => out.push(format!("listing container IPv4 routes: {e}")),
        }
    }
    if exp.ips.iter().any(IpNetwork::is_ipv6) {
        match nl::routes(h, true).await {
            Ok(r) => {
                let default = "::/0".parse().expect("valid");
                let gw = IpAddr::V6(veth::gateway_v6());
                if !has_route(&r, default, Some(gw), l.index, false) {
                    out.push(format!(
                        "container default route via {gw} dev {} is missing",
                        exp.ifname
                    ));
                }
            }
            Err(e) => out.push(format!("listing container IPv6 routes: {e}")),
        }
    }
    out
}

/// On the host: the veth end, its MAC and proxy ARP, and the /32 routes.
async fn host(h: &rtnetlink::Handle, exp: &Expected) -> Vec<String> {
    let mut out = Vec::new();
    let Some(l) = link(h, &exp.host_ifname, "host", exp.mtu, &mut out).await
    else {
        return out;
    };
    if l.mac != Some(HOST_MAC) {
        out.push(format!(
            "host interface {} has MAC {}, expected ee:ee:ee:ee:ee:ee",
            exp.host_ifname,
            l.mac.map(|m| nl::mac_string(&m)).unwrap_or_default()
        ));
    }
    match sysctl::get(&format!("ipv4/conf/{}/proxy_arp", exp.host_ifname)) {
        Ok(v) if v == "1" => {}
        Ok(v) => out.push(format!(
            "host interface {} has proxy_arp={v}, expected 1",
            exp.host_ifname
        )),
        Err(e) => out.push(e.to_string()),
    }
    for v6 in [false, true] {
        let want: Vec<_> =
            exp.ips.iter().filter(|n| n.is_ipv6() == v6).collect();
        if want.is_empty() {
            continue;
        }
        match nl::routes(h, v6).await {
            Ok(r) => {
                // IPv6 routes have no scope: the kernel reports every
                // one as universe, whatever ADD asked for.
                let scope = if v6 { "" } else { " scope link" };
                for ip in want {
                    if !has_route(
                        &r,
                        IpNetwork::from(ip.ip()),
                        None,
                        l.index,
                        !v6,
                    ) {
                        out.push(format!(
                            "host route {} dev {}{scope} is missing",
                            IpNetwork::from(ip.ip()),
                            exp.host_ifname
                        ));
                    }
                }
            }
            Err(e) => out.push(format!("listing host routes: {e}")),
        }
    }
    out
}
