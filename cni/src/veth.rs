//! The pod's veth pair: naming, creation with each end directly in its
//! namespace, host-side and container-side configuration, removal.
//!
//! Layout of an attachment (Calico's, calico.md section 3):
//! ```text
//!  container netns                         host netns
//!  eth0 10.1.0.5/32 ─────── veth ─────── mg1234abcd567 (ee:ee:ee:ee:ee:ee,
//!   169.254.1.1/32 dev eth0 scope link       proxy_arp=1, no address)
//!   default via 169.254.1.1 dev eth0     10.1.0.5/32 dev mg1234abcd567 scope link
//! ```
//! The host end answers ARP for 169.254.1.1 by proxy ARP, so the pod's
//! traffic always goes to the host, which routes it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ipnetwork::IpNetwork;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::packet_route::link::{
    InfoData, InfoVeth, LinkAttribute, LinkInfo as NlLinkInfo,
};
use rtnetlink::packet_route::route::RouteScope;
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};
use sha2::{Digest, Sha256};
use tokio::sync::{RwLock, oneshot};
use tokio::task::JoinHandle;

use crate::error::{CniError, Result};
use crate::netns::{self, NetnsError};
use crate::nl;
use crate::sysctl;

/// The MAC of every host-side veth: the pod only ever talks to the host,
/// so one well-known address serves all (Calico does the same).
pub const HOST_MAC: [u8; 6] = [0xee; 6];
/// The pod's IPv4 next hop, answered by proxy ARP on the host end.
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// Host veth names start with this.
pub const HOST_PREFIX: &str = "mg";

/// The IPv6 link-local address the kernel derives (EUI-64) from
/// [`HOST_MAC`] on the host end: fe80::ecee:eeff:feee:eeee. It is the
/// pod's IPv6 gateway.
pub fn gateway_v6() -> Ipv6Addr {
    let m = HOST_MAC;
    Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([m[0] ^ 0x02, m[1]]),
        u16::from_be_bytes([m[2], 0xff]),
        u16::from_be_bytes([0xfe, m[3]]),
        u16::from_be_bytes([m[4], m[5]]),
    )
}

/// The host veth name for an attachment: "mg" + the first 11 hex digits
/// of sha256("<identity>.<ifname>"), 13 bytes (IFNAMSIZ allows 15). The
/// identity is "<namespace>/<pod>" when the runtime passes
/// K8S_POD_NAMESPACE/K8S_POD_NAME in CNI_ARGS (stable across container
/// ID changes, like Calico's), else the container ID; either way a retried
/// ADD finds, and replaces, its own leftovers.
pub fn host_ifname(identity: &str, ifname: &str) -> String {
    let digest = Sha256::digest(format!("{identity}.{ifname}").as_bytes());
    format!("{HOST_PREFIX}{}", &hex::encode(digest)[..11])
}

/// Everything ADD puts on the wire for one attachment.
#[derive(Debug, Clone)]
pub struct Plan {
    pub host_ifname: String,
    /// CNI_IFNAME.
    pub ifname: String,
    /// CNI_NETNS.
    pub netns: PathBuf,
    /// The pod's addresses as /32 or /128.
    pub ips: Vec<IpNetwork>,
    pub mtu: u32,
    /// TX and RX queues of each end (`num_queues`).
    pub queues: u32,
    pub allow_ip_forwarding: bool,
    /// IPAM will assign IPv4 and no IPv6 (known from its config before
    /// it answers): the container end can then come up, with its gateway
    /// routes, while IPAM allocates. With IPv6 it must stay down until
    /// its sysctls are set (DAD), so everything waits for the addresses.
    pub ipv4_only: bool,
}

impl Plan {
    fn has_v6(&self) -> bool {
        self.ips.iter().any(IpNetwork::is_ipv6)
    }
}

/// What ADD created, for the result.
#[derive(Debug, Clone)]
pub struct Created {
    pub container_mac: [u8; 6],
}

fn nl_err(step: String) -> impl FnOnce(rtnetlink::Error) -> CniError {
    move |e| CniError::dataplane(step, e)
}

fn io_err(step: String) -> impl FnOnce(std::io::Error) -> CniError {
    move |e| CniError::dataplane(step, e)
}

/// The container side of a pair being set up: a thread that has entered
/// CNI_NETNS and opened its netlink socket, waiting for the addresses.
/// Dropping it lets the thread go without configuring them (removing the
/// pair is the caller's).
#[derive(Debug)]
pub struct ContainerSide {
    plan: oneshot::Sender<Plan>,
    done: JoinHandle<std::result::Result<Result<Created>, NetnsError>>,
    /// The host end's ifindex.
    host_index: u32,
}

/// The part of the setup that needs no address, so that ADD runs it
/// while IPAM allocates: the pair, the host end's IPv4 sysctls, and the
/// container-side worker, which (with `plan.ipv4_only`) brings the
/// container end up with its gateway routes and then waits for
/// [`configure`]. `plan.ips` is not used. On error, whatever was created
/// is left for [`teardown`] (the caller always runs it on failure).
#[tracing::instrument(level = "debug", name = "veth_create", skip_all)]
pub async fn create(host: &Handle, plan: &Plan) -> Result<ContainerSide> {
    let enter =
        netns::open(&plan.netns).map_err(|e| CniError::env("CNI_NETNS", e))?;
    let (paired_tx, paired_rx) = oneshot::channel::<()>();
    let (tx, rx) = oneshot::channel::<Plan>();
    let path = plan.netns.clone();
    let ifname = plan.ifname.clone();
    let early = plan.ipv4_only;
    let cancelled =
        || CniError::dataplane("configuring the container", "cancelled");
    // Spawned now, so that the thread, its runtime and its socket are
    // set up while the pair is created.
    let done = tokio::spawn(async move {
        netns::run_in(&path.clone(), enter, move |h| async move {
            paired_rx.await.map_err(|_| cancelled())?;
            let prepared = prepare_container(&h, &ifname, early).await?;
            let plan = rx.await.map_err(|_| cancelled())?;
            configure_container(&h, &plan, prepared).await
        })
        .await
    });
    let ns =
        netns::open(&plan.netns).map_err(|e| CniError::env("CNI_NETNS", e))?;
    // Tried first, since a name clash is rare: a host end left by an
    // earlier, failed attempt with the same identity is removed and the
    // pair made again; otherwise the clash is in the container.
    if !create_pair(host, plan, &ns).await? {
        let stale = nl::delete_link(host, &plan.host_ifname)
            .await
            .map_err(nl_err(format!("deleting stale {}", plan.host_ifname)))?;
        if stale {
            tracing::info!(host_ifname = %plan.host_ifname, "deleted stale host veth");
        }
        // The container may still hold the peer of a host end retired by
        // a DEL of an earlier attachment in this namespace (a runtime that
        // reuses it): once the pending deletions are done, try again.
        let retried = stale || wait_for_retired().await;
        if !retried || !create_pair(host, plan, &ns).await? {
            return Err(CniError::dataplane(
                format!("creating {} in {}", plan.ifname, plan.netns.display()),
                "an interface with that name already exists in the container",
            ));
        }
    }
    // The worker may start on the container end (else, on an error
    // return, it sees the sender dropped and goes).
    let _ = paired_tx.send(());
    configure_host_sysctls(&plan.host_ifname, false)?;
    // The index by ioctl (SIOCGIFINDEX), not RTM_GETLINK: a GETLINK first
    // runs the link's pending link-watch event, which for an end that is
    // up without carrier (its peer is still down) deactivates its queues
    // and waits for an RCU grace period holding the RTNL lock. Left
    // alone, the event is run once the container end is up, with carrier,
    // and costs nothing.
    let host_index = nix::net::if_::if_nametoindex(plan.host_ifname.as_str())
        .map_err(|e| {
        CniError::dataplane(format!("looking up {}", plan.host_ifname), e)
    })?;
    Ok(ContainerSide {
        plan: tx,
        done,
        host_index,
    })
}

/// The rest, once the addresses are known: the host end's IPv6 sysctls,
/// then the container side (addresses; link up and routes unless done
/// early) and the host routes, in parallel.
#[tracing::instrument(level = "debug", name = "veth_configure", skip_all)]
pub async fn configure(
    host: &Handle,
    plan: &Plan,
    side: ContainerSide,
) -> Result<Created> {
    // The host end's sysctls go first: accept_dad=0 must be in place
    // before the container end comes up and gives the link carrier.
    if plan.has_v6() {
        configure_host_sysctls(&plan.host_ifname, true)?;
    }
    // A send fails only if the worker is gone; its result says why.
    let _ = side.plan.send(plan.clone());
    let (container, host_routes) =
        tokio::join!(side.done, add_host_routes(host, plan, side.host_index));
    let container = container
        .map_err(|e| CniError::dataplane("configuring the container", e))?
        .map_err(|e| CniError::dataplane("entering CNI_NETNS", e))??;
    host_routes?;
    Ok(container)
}

/// Creates the veth with the host end in the host namespace and the peer,
/// already named CNI_IFNAME, in the container's (no namespace move).
/// Ok(false) when a name is taken (the kernel does not say which end's).
#[tracing::instrument(level = "debug", skip_all)]
async fn create_pair(
    host: &Handle,
    plan: &Plan,
    ns: &std::fs::File,
) -> Result<bool> {
    // The queue counts are always given: without them the kernel makes
    // one queue per possible CPU and then cuts each end down to one
    // (veth_init_queues), and every cut waits for an RCU grace period
    // under the RTNL lock, the longest step of ADD on a busy node.
    let queues = [
        LinkAttribute::NumTxQueues(plan.queues),
        LinkAttribute::NumRxQueues(plan.queues),
    ];
    let mut peer = LinkUnspec::new_with_name(&plan.ifname)
        .mtu(plan.mtu)
        .setns_by_fd(ns.as_raw_fd())
        .build();
    peer.attributes.extend(queues.clone());
    let mut msg = LinkVeth::new(&plan.host_ifname, &plan.ifname)
        .mtu(plan.mtu)
        .address(HOST_MAC.to_vec())
        .up()
        .build();
    msg.attributes.extend(queues);
    // Swap the builder's plain peer for one carrying MTU and netns.
    for attr in &mut msg.attributes {
        if let LinkAttribute::LinkInfo(infos) = attr {
            for info in infos {
                if let NlLinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))) =
                    info
                {
                    *p = peer.clone();
                }
            }
        }
    }
    match host.link().add(msg).execute().await {
        Ok(()) => Ok(true),
        Err(e) if nl::errno(&e) == Some(nix::errno::Errno::EEXIST) => Ok(false),
        Err(e) => Err(CniError::dataplane(
            format!("creating veth {} <-> {}", plan.host_ifname, plan.ifname),
            e,
        )),
    }
}

/// proxy_arp, proxy_delay, forwarding on the host end (`v6`: the IPv6
/// equivalents).
#[tracing::instrument(level = "debug", skip_all)]
fn configure_host_sysctls(ifn: &str, v6: bool) -> Result<()> {
    let settings = if v6 {
        vec![
            (format!("ipv6/conf/{ifn}/accept_dad"), "0"),
            (format!("ipv6/conf/{ifn}/accept_ra"), "0"),
            (format!("ipv6/conf/{ifn}/proxy_ndp"), "1"),
            (format!("ipv6/conf/{ifn}/forwarding"), "1"),
        ]
    } else {
        vec![
            (format!("ipv4/conf/{ifn}/proxy_arp"), "1"),
            // Answer ARP at once instead of after a random 0-800 ms delay.
            (format!("ipv4/neigh/{ifn}/proxy_delay"), "0"),
            (format!("ipv4/conf/{ifn}/forwarding"), "1"),
        ]
    };
    for (path, value) in settings {
        sysctl::set(&path, value)
            .map_err(io_err(format!("configuring {ifn}")))?;
    }
    Ok(())
}

/// `podIP/32 dev <host veth> scope link` for every address. Replaces an
/// existing route for the same prefix: IPAM just gave this address to
/// this pod, so any other /32 for it is a stale leftover.
#[tracing::instrument(level = "debug", skip_all)]
async fn add_host_routes(
    host: &Handle,
    plan: &Plan,
    host_index: u32,
) -> Result<()> {
    for net in &plan.ips {
        let msg = match net.ip() {
            IpAddr::V4(ip) => RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(ip, 32)
                .output_interface(host_index)
                .scope(RouteScope::Link)
                .build(),
            IpAddr::V6(ip) => RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(ip, 128)
                .output_interface(host_index)
                .scope(RouteScope::Link)
                .build(),
        };
        host.route()
            .add(msg)
            .replace()
            .execute()
            .await
            .map_err(nl_err(format!(
                "adding host route {net} dev {}",
                plan.host_ifname
            )))?;
    }
    Ok(())
}

/// What the container side did before the addresses were known.
struct Prepared {
    link: nl::LinkInfo,
    /// The link is up and the IPv4 gateway routes are in place.
    ipv4_ready: bool,
}

/// Inside the container, once the pair exists: finds the container end
/// and, with `ipv4_only`, brings it up with the 169.254.1.1 and default
/// routes, none of which depends on the address.
#[tracing::instrument(level = "debug", skip_all)]
async fn prepare_container(
    h: &Handle,
    ifn: &str,
    ipv4_only: bool,
) -> Result<Prepared> {
    let link = nl::link_by_name(h, ifn)
        .await
        .map_err(nl_err(format!("looking up {ifn} in the container")))?
        .ok_or_else(|| {
            CniError::dataplane(
                ifn,
                "not found in the container after creation",
            )
        })?;
    if ipv4_only {
        link_up(h, ifn, link.index).await?;
        add_ipv4_gateway(h, link.index).await?;
    }
    Ok(Prepared {
        link,
        ipv4_ready: ipv4_only,
    })
}

/// Inside the container, with the addresses: the IPv6 sysctls, the
/// addresses, then (unless prepared) link up and the 169.254.1.1 and
/// default routes; returns the container end's MAC.
#[tracing::instrument(level = "debug", skip_all)]
async fn configure_container(
    h: &Handle,
    plan: &Plan,
    prepared: Prepared,
) -> Result<Created> {
    let ifn = &plan.ifname;
    let link = prepared.link;
    if plan.has_v6() {
        // The /128 is unique by IPAM, so DAD only delays the pod's start.
        for (p, v) in [
            (format!("ipv6/conf/{ifn}/disable_ipv6"), "0"),
            (format!("ipv6/conf/{ifn}/accept_dad"), "0"),
        ] {
            sysctl::set(&p, v).map_err(io_err(format!("configuring {ifn}")))?;
        }
    }
    if plan.allow_ip_forwarding {
        sysctl::set("ipv4/ip_forward", "1")
            .map_err(io_err("enabling ip_forward".into()))?;
    }
    for net in &plan.ips {
        let mut req = h.address().add(link.index, net.ip(), net.prefix());
        if net.is_ipv6() {
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        req.execute()
            .await
            .map_err(nl_err(format!("adding {net} to {ifn}")))?;
    }
    if !prepared.ipv4_ready {
        link_up(h, ifn, link.index).await?;
        if plan.ips.iter().any(IpNetwork::is_ipv4) {
            add_ipv4_gateway(h, link.index).await?;
        }
    }
    if plan.has_v6() {
        let default = RouteMessageBuilder::<Ipv6Addr>::new()
            .gateway(gateway_v6())
            .output_interface(link.index)
            .build();
        h.route()
            .add(default)
            .execute()
            .await
            .map_err(nl_err("adding route ::/0 in the container".into()))?;
    }
    Ok(Created {
        container_mac: link.mac.unwrap_or_default(),
    })
}

async fn link_up(h: &Handle, ifn: &str, index: u32) -> Result<()> {
    h.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(nl_err(format!("setting {ifn} up")))
}

/// `169.254.1.1 dev <if> scope link` and `default via 169.254.1.1`: the
/// host end answers ARP for every address (proxy_arp), so the pod needs
/// no subnet.
async fn add_ipv4_gateway(h: &Handle, index: u32) -> Result<()> {
    let step = |what: &str| format!("adding route {what} in the container");
    let gw = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(GATEWAY_V4, 32)
        .output_interface(index)
        .scope(RouteScope::Link)
        .build();
    h.route()
        .add(gw)
        .execute()
        .await
        .map_err(nl_err(step("169.254.1.1/32")))?;
    let default = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(GATEWAY_V4)
        .output_interface(index)
        .build();
    h.route()
        .add(default)
        .execute()
        .await
        .map_err(nl_err(step("default")))
}

/// Removes the pair (deleting the host end removes both ends and the host
/// routes through it). Ok(false) when it was already gone.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn teardown(host: &Handle, host_ifname: &str) -> Result<bool> {
    nl::delete_link(host, host_ifname)
        .await
        .map_err(nl_err(format!("deleting {host_ifname}")))
}

/// How DEL removes the host end of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Deleted before DEL answers (the plugin process, which exits).
    Wait,
    /// Taken down before DEL answers, deleted after (the node agent,
    /// which outlives the invocation); see [`retire`].
    Defer,
}

/// Held (shared) by every deletion [`retire`] has left pending.
fn retiring() -> Arc<RwLock<()>> {
    static LOCK: OnceLock<Arc<RwLock<()>>> = OnceLock::new();
    LOCK.get_or_init(Arc::default).clone()
}

/// Waits until the deletions pending now are done; true if there were any.
async fn wait_for_retired() -> bool {
    let lock = retiring();
    let pending = lock.try_write().is_err();
    if pending {
        drop(lock.write().await);
    }
    pending
}

/// Takes the host end down now and deletes it in the background; Ok(false)
/// when it was already gone.
///
/// Deleting a link makes the kernel wait for an RCU grace period (~15-25
/// ms, most of DEL) before `sendmsg` returns; taking it down costs ~0.2
/// ms (an expedited grace period under the RTNL lock) and is all DEL
/// needs before the address is released: the kernel drops every route
/// through a link that goes down and refuses new ones on it (ENETDOWN), so
/// no traffic for the address can reach the old pod once it is reused,
/// which is the order the missing `ipCooldownSeconds` relies on (README).
/// The deletion is by interface index, never by name: an ADD of the same
/// pod identity may have made a new host end of the same name meanwhile
/// (it replaces the old one itself). If the agent dies first, the runtime
/// deleting the pod's namespace destroys the pair with it.
pub async fn retire(host: &Handle, host_ifname: &str) -> Result<bool> {
    let Some(link) = nl::link_by_name(host, host_ifname)
        .await
        .map_err(nl_err(format!("looking up {host_ifname}")))?
    else {
        return Ok(false);
    };
    match host
        .link()
        .set(LinkUnspec::new_with_index(link.index).down().build())
        .execute()
        .await
    {
        Ok(()) => {}
        Err(e) if nl::errno(&e) == Some(nix::errno::Errno::ENODEV) => {
            return Ok(false);
        }
        Err(e) => {
            return Err(CniError::dataplane(
                format!("taking {host_ifname} down"),
                e,
            ));
        }
    }
    let (index, name) = (link.index, host_ifname.to_string());
    let pending = retiring().read_owned().await;
    tokio::spawn(async move {
        let _pending = pending;
        let deleted = match netns::removal_handle().await {
            Ok(h) => match h.link().del(index).execute().await {
                Ok(()) => Ok(()),
                Err(e) if nl::errno(&e) == Some(nix::errno::Errno::ENODEV) => {
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e.to_string()),
        };
        match deleted {
            Ok(()) => {
                tracing::debug!(host_ifname = %name, index, "retired host veth deleted")
            }
            Err(e) => tracing::warn!(host_ifname = %name, index, error = %e,
                "deleting a retired host veth failed; the pod's namespace removal deletes it"),
        }
    });
    Ok(true)
}

/// Deletes CNI_IFNAME inside the container when the host end is already
/// gone (a half-removed attachment); a missing netns or link is fine.
pub async fn teardown_container(netns_path: &Path, ifname: &str) -> Result<()> {
    let ns = match netns::open(netns_path) {
        Ok(ns) => ns,
        Err(e) if e.is_missing() => return Ok(()),
        Err(e) => return Err(CniError::dataplane("opening CNI_NETNS", e)),
    };
    let ifname = ifname.to_string();
    netns::run_in(netns_path, ns, move |h| async move {
        nl::delete_link(&h, &ifname).await.map(|_| ())
    })
    .await
    .map_err(|e| CniError::dataplane("entering CNI_NETNS", e))?
    .map_err(|e| CniError::dataplane("deleting the container interface", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ifname_is_stable_and_short() {
        let a = host_ifname("ns/pod", "eth0");
        assert_eq!(a, host_ifname("ns/pod", "eth0"));
        assert_ne!(a, host_ifname("ns/pod", "eth1"));
        assert_eq!(a.len(), 13);
        assert!(a.starts_with("mg"));
        // sha256("ns/pod.eth0") starts with these 11 hex digits.
        let d = hex::encode(Sha256::digest(b"ns/pod.eth0"));
        assert_eq!(&a[2..], &d[..11]);
    }

    /// An ADD that finds CNI_IFNAME taken in the container waits for the
    /// deletions [`retire`] left pending, and only then (never when none
    /// are pending) tries again.
    #[tokio::test]
    async fn a_clash_waits_for_pending_retirements() {
        assert!(!wait_for_retired().await, "nothing was pending");
        let pending = retiring().read_owned().await;
        let (tx, rx) = oneshot::channel();
        let waiter = tokio::spawn(async move {
            let waited = wait_for_retired().await;
            let _ = tx.send(());
            waited
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "returned with a deletion pending");
        drop(pending);
        rx.await.unwrap();
        assert!(waiter.await.unwrap(), "did not report the wait");
    }

    #[test]
    fn v6_gateway_is_the_eui64_of_the_host_mac() {
        assert_eq!(gateway_v6().to_string(), "fe80::ecee:eeff:feee:eeee");
    }
}
