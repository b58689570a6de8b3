//! BGP address autodetection with Calico's methods
//! (`IP_AUTODETECTION_METHOD` / `IP6_AUTODETECTION_METHOD`), plus
//! margay's historical default, `default-route`: the address of the
//! interface that holds the default route.
//!
//! The choice is sans-IO: [`select`] picks from the host's interface
//! addresses ([`IfaceAddr`], in kernel order) and the facts the driver
//! gathered ([`Facts`]: the default route's interface, the source address
//! towards a `can-reach` destination, the Kubernetes Node's InternalIPs).
//! [`detect`] gathers them in the calling thread's network namespace.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::str::FromStr;

use ipnetwork::IpNetwork;
use regex::Regex;

/// What `IP_AUTODETECTION_METHOD` accepts (for error messages).
pub const ALLOWED_METHODS: &str = "first-found, interface=REGEX[,REGEX..], \
    skip-interface=REGEX[,REGEX..], cidr=CIDR[,CIDR..], can-reach=DEST (an \
    address or host name), kubernetes-internal-ip, default-route";

/// Interfaces `first-found` and `skip-interface` never pick (Calico's
/// list, plus margay's pod veths `mg` + 11 hex digits).
const EXCLUDED_INTERFACES: &[&str] = &[
    "^docker.*",
    "^cbr.*",
    "^dummy.*",
    "^virbr.*",
    "^lxcbr.*",
    "^veth.*",
    "^lo$",
    "^cali.*",
    "^tunl.*",
    "^flannel.*",
    "^kube-ipvs.*",
    "^cni.*",
    "^vxlan.calico.*",
    "^vxlan-v6.calico.*",
    "^wireguard.cali$",
    "^wg-v6.cali$",
    "^nodelocaldns.*",
    "^podman.*",
    "^mg[0-9a-f]{11}$",
];

/// One autodetection method.
#[derive(Debug, Clone)]
pub enum Method {
    /// The interface of the lowest-metric default route (margay's default).
    DefaultRoute,
    /// The first valid address on the first interface not excluded.
    FirstFound,
    /// The first valid address on the first interface matching one of the
    /// regexes (unanchored, as Go's `MatchString`).
    Interface(Vec<Regex>),
    /// Like `FirstFound`, skipping interfaces matching one of the regexes.
    SkipInterface(Vec<Regex>),
    /// The first valid address inside one of the CIDRs.
    Cidr(Vec<IpNetwork>),
    /// The source address the kernel picks to reach this destination.
    CanReach(String),
    /// The Kubernetes Node's InternalIP of the family.
    KubernetesInternalIp,
}

/// A method string that is not one of [`ALLOWED_METHODS`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("autodetection method {value:?}: {reason}; allowed: {ALLOWED_METHODS}")]
pub struct MethodError {
    pub value: String,
    pub reason: String,
}

impl FromStr for Method {
    type Err = MethodError;

    fn from_str(s: &str) -> Result<Method, MethodError> {
        let bad = |reason: String| MethodError {
            value: s.to_string(),
            reason,
        };
        let list = |v: &str| -> Vec<String> {
            v.split(',').map(|p| p.trim().to_string()).collect()
        };
        let nonempty = |name: &str, v: &str| {
            if v.trim().is_empty() {
                Err(bad(format!("{name}= needs a value")))
            } else {
                Ok(())
            }
        };
        let regexes =
            |name: &str, v: &str| -> Result<Vec<Regex>, MethodError> {
                nonempty(name, v)?;
                list(v)
                    .iter()
                    .map(|r| {
                        Regex::new(r).map_err(|e| {
                            bad(format!(
                                "{name}: {r:?} is not a regular expression: {e}"
                            ))
                        })
                    })
                    .collect()
            };
        let (name, value) = match s.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v)),
            None => (s.trim(), None),
        };
        match (name, value) {
            ("first-found", None) => Ok(Method::FirstFound),
            ("default-route", None) => Ok(Method::DefaultRoute),
            ("kubernetes-internal-ip", None) => {
                Ok(Method::KubernetesInternalIp)
            }
            ("interface", Some(v)) => Ok(Method::Interface(regexes(name, v)?)),
            ("skip-interface", Some(v)) => {
                Ok(Method::SkipInterface(regexes(name, v)?))
            }
            ("cidr", Some(v)) => {
                nonempty(name, v)?;
                list(v)
                    .iter()
                    .map(|c| {
                        c.parse::<IpNetwork>().map_err(|e| {
                            bad(format!("cidr: {c:?} is not a CIDR: {e}"))
                        })
                    })
                    .collect::<Result<_, _>>()
                    .map(Method::Cidr)
            }
            ("can-reach", Some(v)) => {
                nonempty(name, v)?;
                Ok(Method::CanReach(v.trim().to_string()))
            }
            (
                "first-found" | "default-route" | "kubernetes-internal-ip",
                Some(_),
            ) => Err(bad(format!("{name} takes no value"))),
            ("interface" | "skip-interface" | "cidr" | "can-reach", None) => {
                Err(bad(format!("{name} needs a value ({name}=...)")))
            }
            _ => Err(bad("unknown method".into())),
        }
    }
}

/// One address of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfaceAddr {
    pub iface: String,
    pub net: IpNetwork,
}

/// What the driver found out for the methods that need more than the
/// interface list.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// `default-route`: the interface of the lowest-metric default route.
    pub default_iface: Option<String>,
    /// `can-reach`: the source address towards the destination.
    pub reach_source: Option<IpAddr>,
    /// `kubernetes-internal-ip`: the Node's InternalIPs (`None`: not on
    /// Kubernetes).
    pub internal_ips: Option<Vec<IpAddr>>,
}

/// Why no address could be detected.
#[derive(Debug, thiserror::Error)]
pub enum AutodetectError {
    #[error("reading {path}: {source}")]
    Read {
        path: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no IPv{family} default route: configure the node address with \
         --ipv{family}-address or choose another autodetection method"
    )]
    NoDefaultRoute { family: u8 },
    #[error(
        "interface {iface} holds the IPv{family} default route but has no \
         usable IPv{family} address"
    )]
    NoAddress { iface: String, family: u8 },
    #[error("listing interface addresses: {0}")]
    Ifaddrs(#[from] nix::Error),
    #[error("{method}: no usable IPv{family} address found")]
    NotFound { method: String, family: u8 },
    #[error("can-reach={dest}: {message}")]
    CanReach { dest: String, message: String },
    #[error(
        "kubernetes-internal-ip: {0} (it needs the kubernetes datastore and \
         the Node's status.addresses)"
    )]
    Kubernetes(String),
}

/// A usable node address: not loopback, link-local, multicast or
/// unspecified.
pub fn usable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_unspecified())
        }
        IpAddr::V6(v6) => {
            !(v6.is_loopback()
                || is_link_local_v6(v6)
                || v6.is_multicast()
                || v6.is_unspecified())
        }
    }
}

fn excluded(iface: &str) -> bool {
    thread_local! {
        static RES: Vec<Regex> = EXCLUDED_INTERFACES
            .iter()
            .map(|r| Regex::new(r).expect("a valid built-in regex"))
            .collect();
    }
    RES.with(|res| res.iter().any(|r| r.is_match(iface)))
}

/// The address `method` picks from `addrs` (kernel order) for the family
/// of `v6`, given `facts`. Pure.
pub fn select(
    method: &Method,
    addrs: &[IfaceAddr],
    v6: bool,
    facts: &Facts,
) -> Result<IpNetwork, AutodetectError> {
    let family = if v6 { 6 } else { 4 };
    let candidates = addrs
        .iter()
        .filter(|a| a.net.is_ipv6() == v6 && usable(a.net.ip()));
    let holding =
        |ip: IpAddr| addrs.iter().find(|a| a.net.ip() == ip).map(|a| a.net);
    let found = match method {
        Method::DefaultRoute => {
            let iface = facts
                .default_iface
                .clone()
                .ok_or(AutodetectError::NoDefaultRoute { family })?;
            return candidates
                .clone()
                .find(|a| a.iface == iface)
                .map(|a| a.net)
                .ok_or(AutodetectError::NoAddress { iface, family });
        }
        Method::FirstFound => candidates
            .clone()
            .find(|a| !excluded(&a.iface))
            .map(|a| a.net),
        Method::Interface(res) => candidates
            .clone()
            .find(|a| res.iter().any(|r| r.is_match(&a.iface)))
            .map(|a| a.net),
        Method::SkipInterface(res) => candidates
            .clone()
            .find(|a| {
                !excluded(&a.iface) && !res.iter().any(|r| r.is_match(&a.iface))
            })
            .map(|a| a.net),
        Method::Cidr(cidrs) => candidates
            .clone()
            .find(|a| cidrs.iter().any(|c| c.contains(a.net.ip())))
            .map(|a| a.net),
        Method::CanReach(dest) => {
            let src = facts.reach_source.ok_or_else(|| {
                AutodetectError::CanReach {
                    dest: dest.clone(),
                    message: format!("no IPv{family} route to it"),
                }
            })?;
            Some(holding(src).ok_or_else(|| AutodetectError::CanReach {
                dest: dest.clone(),
                message: format!("source address {src} is on no interface"),
            })?)
        }
        Method::KubernetesInternalIp => {
            let ips = facts.internal_ips.as_ref().ok_or_else(|| {
                AutodetectError::Kubernetes("not on Kubernetes".into())
            })?;
            let Some(ip) = ips.iter().find(|ip| ip.is_ipv6() == v6) else {
                return Err(AutodetectError::Kubernetes(format!(
                    "the Node has no IPv{family} InternalIP"
                )));
            };
            // The interface gives the prefix length.
            Some(holding(*ip).ok_or_else(|| {
                AutodetectError::Kubernetes(format!(
                    "InternalIP {ip} is on no interface of this host"
                ))
            })?)
        }
    };
    found.ok_or_else(|| AutodetectError::NotFound {
        method: method_name(method),
        family,
    })
}

fn method_name(m: &Method) -> String {
    let joined = |res: &[Regex]| {
        res.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",")
    };
    match m {
        Method::DefaultRoute => "default-route".into(),
        Method::FirstFound => "first-found".into(),
        Method::Interface(r) => format!("interface={}", joined(r)),
        Method::SkipInterface(r) => format!("skip-interface={}", joined(r)),
        Method::Cidr(c) => format!(
            "cidr={}",
            c.iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
        Method::CanReach(d) => format!("can-reach={d}"),
        Method::KubernetesInternalIp => "kubernetes-internal-ip".into(),
    }
}

/// The interface of the lowest-metric IPv4 default route in
/// /proc/net/route text.
pub fn default_iface_v4(proc_net_route: &str) -> Option<String> {
    proc_net_route
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
            if f.len() < 8 || f[1] != "00000000" || f[7] != "00000000" {
                return None;
            }
            let metric: u32 = f[6].parse().ok()?;
            Some((metric, f[0].to_string()))
        })
        .min()
        .map(|(_, iface)| iface)
}

/// The interface of the lowest-metric IPv6 default route in
/// /proc/net/ipv6_route text (the kernel's unreachable default on `lo` is
/// not a default route).
pub fn default_iface_v6(proc_net_ipv6_route: &str) -> Option<String> {
    proc_net_ipv6_route
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // dest plen src splen next_hop metric refcnt use flags iface
            if f.len() < 10 || f[1] != "00" || f[0].bytes().any(|b| b != b'0') {
                return None;
            }
            if f[9] == "lo" {
                return None;
            }
            let metric = u32::from_str_radix(f[5], 16).ok()?;
            Some((metric, f[9].to_string()))
        })
        .min()
        .map(|(_, iface)| iface)
}

/// Every address of every interface of this network namespace (the
/// calling thread's), in kernel order, with prefix lengths.
pub fn interfaces() -> Result<Vec<IfaceAddr>, AutodetectError> {
    let mut out = Vec::new();
    for ifa in nix::ifaddrs::getifaddrs()? {
        let (Some(addr), Some(mask)) = (ifa.address, ifa.netmask) else {
            continue;
        };
        let net = match (addr.as_sockaddr_in6(), mask.as_sockaddr_in6()) {
            (Some(a), Some(m)) => {
                let plen = u128::from(m.ip()).count_ones() as u8;
                IpNetwork::new(IpAddr::V6(a.ip()), plen).ok()
            }
            _ => match (addr.as_sockaddr_in(), mask.as_sockaddr_in()) {
                (Some(a), Some(m)) => {
                    let plen = u32::from(m.ip()).count_ones() as u8;
                    IpNetwork::new(IpAddr::V4(a.ip()), plen).ok()
                }
                _ => None,
            },
        };
        if let Some(net) = net {
            out.push(IfaceAddr {
                iface: ifa.interface_name,
                net,
            });
        }
    }
    Ok(out)
}

fn is_link_local_v6(ip: std::net::Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

/// The source address the kernel would use towards `dest` (an address or
/// a host name) in the family of `v6`: a UDP socket connected to it (no
/// packet is sent). `Ok(None)`: no route.
pub fn reach_source(
    dest: &str,
    v6: bool,
) -> Result<Option<IpAddr>, AutodetectError> {
    let err = |message: String| AutodetectError::CanReach {
        dest: dest.to_string(),
        message,
    };
    let target: Option<SocketAddr> = match dest.parse::<IpAddr>() {
        Ok(ip) => Some(SocketAddr::new(ip, 9)),
        Err(_) => (dest, 9)
            .to_socket_addrs()
            .map_err(|e| err(format!("cannot resolve it: {e}")))?
            .find(|a| a.is_ipv6() == v6),
    };
    let Some(target) = target else {
        return Err(err(format!(
            "it has no IPv{} address",
            if v6 { 6 } else { 4 }
        )));
    };
    if target.is_ipv6() != v6 {
        return Err(err(format!(
            "it is not an IPv{} address",
            if v6 { 6 } else { 4 }
        )));
    }
    let bind: SocketAddr = if v6 {
        "[::]:0".parse().expect("valid")
    } else {
        "0.0.0.0:0".parse().expect("valid")
    };
    let sock = UdpSocket::bind(bind).map_err(|e| err(e.to_string()))?;
    match sock.connect(target) {
        Ok(()) => Ok(Some(
            sock.local_addr().map_err(|e| err(e.to_string()))?.ip(),
        )),
        // ENETUNREACH: no route of the family.
        Err(e) if e.raw_os_error() == Some(nix::libc::ENETUNREACH) => Ok(None),
        Err(e) => Err(err(e.to_string())),
    }
}

/// Detects this node's address of one family with `method`, in the
/// calling thread's network namespace; `internal_ips` are the Kubernetes
/// Node's (for `kubernetes-internal-ip`).
pub fn detect(
    method: &Method,
    v6: bool,
    internal_ips: Option<Vec<IpAddr>>,
) -> Result<IpNetwork, AutodetectError> {
    let mut facts = Facts {
        internal_ips,
        ..Facts::default()
    };
    match method {
        Method::DefaultRoute => {
            // thread-self: the namespace of this thread, which need not be
            // the process's (/proc/net follows the main thread).
            let path = if v6 {
                "/proc/thread-self/net/ipv6_route"
            } else {
                "/proc/thread-self/net/route"
            };
            let text = std::fs::read_to_string(path)
                .map_err(|source| AutodetectError::Read { path, source })?;
            facts.default_iface = if v6 {
                default_iface_v6(&text)
            } else {
                default_iface_v4(&text)
            };
        }
        Method::CanReach(dest) => facts.reach_source = reach_source(dest, v6)?,
        _ => {}
    }
    select(method, &interfaces()?, v6, &facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_lowest_metric_ipv4_default() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth1\t00000000\t0100A8C0\t0003\t0\t0\t200\t00000000\t0\t0\t0\n\
            eth0\t00000000\t01004D0A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
            eth0\t00004D0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(default_iface_v4(text).as_deref(), Some("eth0"));
        assert_eq!(default_iface_v4("Iface\tDestination\n"), None);
    }

    #[test]
    fn ignores_unreachable_ipv6_default_on_lo() {
        let z = "00000000000000000000000000000000";
        let text = format!(
            "{z} 00 {z} 00 {z} ffffffff 00000001 00000000 00200200 lo\n\
             {z} 00 {z} 00 fd000000000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n\
             fd000000000000000000000000000000 40 {z} 00 {z} 00000100 00000001 00000000 00000001 eth0\n"
        );
        assert_eq!(default_iface_v6(&text).as_deref(), Some("eth0"));
        let only_lo = format!(
            "{z} 00 {z} 00 {z} ffffffff 00000001 00000000 00200200 lo\n"
        );
        assert_eq!(default_iface_v6(&only_lo), None);
    }

    #[test]
    fn loopback_is_listed_but_never_usable() {
        let all = interfaces().unwrap();
        let lo = all
            .iter()
            .find(|a| a.iface == "lo" && a.net.is_ipv4())
            .expect("lo has 127.0.0.1");
        assert_eq!(lo.net.to_string(), "127.0.0.1/8");
        assert!(!usable(lo.net.ip()));
    }

    fn a(iface: &str, net: &str) -> IfaceAddr {
        IfaceAddr {
            iface: iface.into(),
            net: net.parse().unwrap(),
        }
    }

    fn host() -> Vec<IfaceAddr> {
        vec![
            a("lo", "127.0.0.1/8"),
            a("docker0", "172.17.0.1/16"),
            a("eth0", "169.254.3.3/16"),
            a("eth0", "10.0.0.5/24"),
            a("eth1", "192.168.7.5/24"),
            a("mg0123456789a", "10.9.9.9/32"),
            a("lo", "::1/128"),
            a("eth0", "fe80::1/64"),
            a("eth0", "fd00::5/64"),
            a("eth1", "fd01::5/64"),
        ]
    }

    fn pick(m: &str, v6: bool, facts: &Facts) -> Result<String, String> {
        let m: Method = m.parse().map_err(|e: MethodError| e.to_string())?;
        select(&m, &host(), v6, facts)
            .map(|n| n.to_string())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn each_method_picks_as_calico_does() {
        let f = Facts::default();
        assert_eq!(pick("first-found", false, &f).unwrap(), "10.0.0.5/24");
        assert_eq!(pick("first-found", true, &f).unwrap(), "fd00::5/64");
        assert_eq!(
            pick("interface=eth1", false, &f).unwrap(),
            "192.168.7.5/24"
        );
        assert_eq!(
            pick("interface=nope,eth1", true, &f).unwrap(),
            "fd01::5/64"
        );
        assert_eq!(
            pick("skip-interface=eth0", false, &f).unwrap(),
            "192.168.7.5/24"
        );
        assert_eq!(
            pick("cidr=192.168.0.0/16", false, &f).unwrap(),
            "192.168.7.5/24"
        );
        assert_eq!(
            pick("cidr=10.1.0.0/16, fd01::/16", true, &f).unwrap(),
            "fd01::5/64"
        );
        // The pod veths and docker0 are never picked by first-found.
        assert!(
            pick("cidr=172.16.0.0/12", false, &f)
                .unwrap()
                .starts_with("172.17")
        );
        assert!(pick("skip-interface=eth.*", false, &f).is_err());
        let reach = Facts {
            reach_source: Some("192.168.7.5".parse().unwrap()),
            ..Facts::default()
        };
        assert_eq!(
            pick("can-reach=192.168.7.1", false, &reach).unwrap(),
            "192.168.7.5/24"
        );
        let kube = Facts {
            internal_ips: Some(vec![
                "fd01::5".parse().unwrap(),
                "192.168.7.5".parse().unwrap(),
            ]),
            ..Facts::default()
        };
        assert_eq!(
            pick("kubernetes-internal-ip", false, &kube).unwrap(),
            "192.168.7.5/24"
        );
        assert_eq!(
            pick("kubernetes-internal-ip", true, &kube).unwrap(),
            "fd01::5/64"
        );
        let route = Facts {
            default_iface: Some("eth1".into()),
            ..Facts::default()
        };
        assert_eq!(
            pick("default-route", false, &route).unwrap(),
            "192.168.7.5/24"
        );
    }

    #[test]
    fn nothing_found_is_an_error_naming_the_method() {
        let f = Facts::default();
        let e = pick("interface=wlan.*", false, &f).unwrap_err();
        assert!(e.contains("interface=wlan.*") && e.contains("IPv4"), "{e}");
        let e = pick("cidr=10.200.0.0/16", true, &f).unwrap_err();
        assert!(e.contains("IPv6"), "{e}");
        let e = pick("kubernetes-internal-ip", false, &f).unwrap_err();
        assert!(e.contains("not on Kubernetes"), "{e}");
        let e = pick("can-reach=10.0.0.1", false, &f).unwrap_err();
        assert!(e.contains("no IPv4 route"), "{e}");
        let e = pick("default-route", false, &f).unwrap_err();
        assert!(e.contains("no IPv4 default route"), "{e}");
    }

    #[test]
    fn bad_method_strings_name_the_value_and_the_allowed_forms() {
        for bad in [
            "first_found",
            "interface",
            "interface=",
            "interface=(",
            "cidr=10.0.0.0/33",
            "can-reach=",
            "first-found=eth0",
            "",
        ] {
            let e = bad.parse::<Method>().unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
            assert!(e.contains("allowed: first-found, interface=REGEX"), "{e}");
        }
    }

    #[test]
    fn can_reach_over_loopback_finds_lo() {
        let src = reach_source("127.0.0.1", false).unwrap().unwrap();
        assert_eq!(src.to_string(), "127.0.0.1");
        assert!(reach_source("::1", false).is_err());
    }
}
