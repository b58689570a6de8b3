//! Small rtnetlink helpers: find, delete and describe links, addresses and
//! routes, with "not found" as a value instead of an error.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use ipnetwork::IpNetwork;
use nix::errno::Errno;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteScope,
};
use rtnetlink::{Handle, RouteMessageBuilder};

/// The errno of a netlink NACK, if that is what `e` is (the kernel sends
/// it negated in `nlmsgerr.error`).
pub fn errno(e: &rtnetlink::Error) -> Option<Errno> {
    match e {
        rtnetlink::Error::NetlinkError(m) => {
            Some(Errno::from_raw(m.raw_code().abs()))
        }
        _ => None,
    }
}

/// What CNI and CHECK need to know about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    pub mac: Option<[u8; 6]>,
    pub mtu: Option<u32>,
    pub up: bool,
}

impl LinkInfo {
    fn from_msg(m: &LinkMessage) -> LinkInfo {
        let mut info = LinkInfo {
            index: m.header.index,
            name: String::new(),
            mac: None,
            mtu: None,
            up: m.header.flags.contains(LinkFlags::Up),
        };
        for a in &m.attributes {
            match a {
                LinkAttribute::IfName(n) => info.name = n.clone(),
                LinkAttribute::Mtu(v) => info.mtu = Some(*v),
                LinkAttribute::Address(a) if a.len() == 6 => {
                    let mut mac = [0u8; 6];
                    mac.copy_from_slice(a);
                    info.mac = Some(mac);
                }
                _ => {}
            }
        }
        info
    }
}

/// Formats a MAC as "aa:bb:cc:dd:ee:ff".
pub fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The link called `name`, or `None` when there is none.
pub async fn link_by_name(
    h: &Handle,
    name: &str,
) -> Result<Option<LinkInfo>, rtnetlink::Error> {
    let mut s = h.link().get().match_name(name.to_string()).execute();
    match s.try_next().await {
        Ok(Some(m)) => Ok(Some(LinkInfo::from_msg(&m))),
        Ok(None) => Ok(None),
        Err(e) if errno(&e) == Some(Errno::ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Deletes the link `name`; `Ok(false)` when it did not exist.
pub async fn delete_link(
    h: &Handle,
    name: &str,
) -> Result<bool, rtnetlink::Error> {
    let Some(link) = link_by_name(h, name).await? else {
        return Ok(false);
    };
    match h.link().del(link.index).execute().await {
        Ok(()) => Ok(true),
        // Gone in between (e.g. its netns was deleted concurrently).
        Err(e) if errno(&e) == Some(Errno::ENODEV) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The addresses on link `index`, as prefixes.
pub async fn addresses(
    h: &Handle,
    index: u32,
) -> Result<Vec<IpNetwork>, rtnetlink::Error> {
    let msgs: Vec<_> = h
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await?;
    let mut out = Vec::new();
    for m in msgs.iter().filter(|m| m.header.index == index) {
        let addr = m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(ip) => Some(*ip),
            _ => None,
        });
        let addr = addr.or_else(|| {
            m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })
        });
        if let Some(ip) = addr
            && let Ok(net) = IpNetwork::new(ip, m.header.prefix_len)
        {
            out.push(net);
        }
    }
    Ok(out)
}

/// One route of the main table, as CHECK compares them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    pub dst: IpNetwork,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    pub scope_link: bool,
}

impl std::fmt::Display for RouteInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.dst)?;
        if let Some(gw) = self.gateway {
            write!(f, " via {gw}")?;
        }
        if let Some(oif) = self.oif {
            write!(f, " oif {oif}")?;
        }
        if self.scope_link {
            f.write_str(" scope link")?;
        }
        Ok(())
    }
}

/// The main-table unicast routes of one family.
pub async fn routes(
    h: &Handle,
    v6: bool,
) -> Result<Vec<RouteInfo>, rtnetlink::Error> {
    let filter = if v6 {
        RouteMessageBuilder::<Ipv6Addr>::new().build()
    } else {
        RouteMessageBuilder::<Ipv4Addr>::new().build()
    };
    let msgs: Vec<RouteMessage> =
        h.route().get(filter).execute().try_collect().await?;
    Ok(msgs
        .iter()
        .filter(|m| route_table(m) == u32::from(RouteHeader::RT_TABLE_MAIN))
        .filter_map(route_info)
        .collect())
}

fn route_table(m: &RouteMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(m.header.table))
}

fn route_info(m: &RouteMessage) -> Option<RouteInfo> {
    let mut dst: Option<IpAddr> = None;
    let mut info = RouteInfo {
        dst: IpNetwork::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0).ok()?,
        gateway: None,
        oif: None,
        scope_link: m.header.scope == RouteScope::Link,
    };
    let v6 = m.header.address_family
        == rtnetlink::packet_route::AddressFamily::Inet6;
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(d) => dst = route_addr(d),
            RouteAttribute::Gateway(g) => info.gateway = route_addr(g),
            RouteAttribute::Oif(i) => info.oif = Some(*i),
            _ => {}
        }
    }
    let dst = dst.unwrap_or(if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    });
    info.dst = IpNetwork::new(dst, m.header.destination_prefix_length).ok()?;
    Some(info)
}

fn route_addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

#[cfg(test)]
mod errno_tests {
    use super::*;
    use rtnetlink::packet_core::ErrorMessage;

    /// A NACK carries the errno negated (-19 is ENODEV in Linux's
    /// asm-generic/errno-base.h); `errno` gives it back as an `Errno`.
    #[test]
    fn a_nack_gives_its_errno() {
        let mut nack = ErrorMessage::default();
        nack.code = std::num::NonZeroI32::new(-19);
        let e = rtnetlink::Error::NetlinkError(nack);
        assert_eq!(errno(&e), Some(Errno::ENODEV));
        assert_eq!(errno(&rtnetlink::Error::RequestFailed), None);
    }
}
