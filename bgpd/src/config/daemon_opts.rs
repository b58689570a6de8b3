//! Settings of the bgpd process itself (listen addresses, log level) and
//! the stored fields bgpd does not implement, from the BGPConfiguration
//! that applies to this node (`node.<name>` over `default`, as in Calico).
//! Pure: the binary applies them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use margay_crds as crds;
use margay_crds::BindMode;

use super::{Resources, name};

/// A stored object carrying a field margay does not implement.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UnsupportedField {
    pub kind: &'static str,
    pub name: String,
    /// Dotted path, e.g. `spec.serviceClusterIPs`.
    pub field: &'static str,
    pub why: &'static str,
}

/// What bgpd applies to itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DaemonOpts {
    /// `spec.bindMode`; unset keeps margay's default (the node's IPs).
    pub bind_mode: Option<BindMode>,
    /// `spec.logSeverityScreen` as a tracing level, when set.
    pub log_level: Option<&'static str>,
    /// Every stored BGPConfiguration and BGPPeer field that bgpd does not
    /// act on, sorted.
    pub unsupported: Vec<UnsupportedField>,
}

/// Derives [`DaemonOpts`] for `node`. Without a Service source
/// (`services` false: any datastore but kubernetes) the Service
/// advertisement fields are reported as not acted on.
pub fn daemon_opts(res: &Resources, node: &str, services: bool) -> DaemonOpts {
    let find = |n: &str| {
        res.bgp_configs
            .iter()
            .find(|c| name(&c.metadata) == n)
            .map(|c| &c.spec)
    };
    let global = find("default");
    let mine = find(&format!("node.{node}"));
    let pick = |f: &dyn Fn(&crds::BGPConfigurationSpec) -> bool| {
        mine.filter(|s| f(s)).or(global.filter(|s| f(s)))
    };
    let bind_mode = pick(&|s| s.bind_mode.is_some()).and_then(|s| s.bind_mode);
    let log_level = pick(&|s| s.log_severity_screen.is_some())
        .and_then(|s| s.log_severity_screen.as_deref())
        .and_then(tracing_level);
    let mut unsupported = Vec::new();
    for c in &res.bgp_configs {
        let mut found = crds::validate::unsupported::bgp_configuration(&c.spec);
        if services {
            found.extend(
                crds::validate::unsupported::services_outside_default(
                    name(&c.metadata),
                    &c.spec,
                ),
            );
        } else {
            found.extend(
                crds::validate::unsupported::services_without_kubernetes(
                    &c.spec,
                ),
            );
        }
        for u in found {
            unsupported.push(UnsupportedField {
                kind: "BGPConfiguration",
                name: name(&c.metadata).to_string(),
                field: u.field,
                why: u.why,
            });
        }
    }
    for p in &res.peers {
        for u in crds::validate::unsupported::bgp_peer(&p.spec) {
            unsupported.push(UnsupportedField {
                kind: "BGPPeer",
                name: name(&p.metadata).to_string(),
                field: u.field,
                why: u.why,
            });
        }
    }
    unsupported.sort();
    DaemonOpts {
        bind_mode,
        log_level,
        unsupported,
    }
}

/// Calico's severities (any case) as tracing levels; `None` for anything
/// else. Fatal and Panic have no tracing level: both mean "errors only".
pub fn tracing_level(severity: &str) -> Option<&'static str> {
    Some(match severity.to_ascii_lowercase().as_str() {
        "trace" => "trace",
        "debug" => "debug",
        "info" => "info",
        "warning" | "warn" => "warn",
        "error" | "fatal" | "panic" => "error",
        _ => return None,
    })
}

/// The addresses to listen on, each with whether it is an IPv6-only
/// socket. `flag` (`--listen-addr`) wins. `bindMode: None` listens on every
/// address: 0.0.0.0, and `::` (IPv6 only, so that IPv4 peers keep plain
/// IPv4 addresses) on a node with an IPv6 address. `NodeIP`, and margay's
/// default when unset, listen on the node's addresses only.
pub fn listen_ips(
    flag: Option<IpAddr>,
    bind_mode: Option<BindMode>,
    node_v4: Option<Ipv4Addr>,
    node_v6: Option<Ipv6Addr>,
) -> Vec<(IpAddr, bool)> {
    if let Some(ip) = flag {
        return vec![(ip, false)];
    }
    let any = || {
        let mut v = vec![(IpAddr::V4(Ipv4Addr::UNSPECIFIED), false)];
        if node_v6.is_some() {
            v.push((IpAddr::V6(Ipv6Addr::UNSPECIFIED), true));
        }
        v
    };
    if bind_mode == Some(BindMode::None) {
        return any();
    }
    let ips: Vec<(IpAddr, bool)> = node_v4
        .map(IpAddr::V4)
        .into_iter()
        .chain(node_v6.map(IpAddr::V6))
        .map(|ip| (ip, false))
        .collect();
    if ips.is_empty() { any() } else { ips }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(yaml: &str) -> Resources {
        Resources::from_documents(crds::parse_documents(yaml).unwrap())
    }

    const CFGS: &str = "\
apiVersion: margay.io/v1
kind: BGPConfiguration
metadata: {name: default}
spec:
  logSeverityScreen: Warning
  bindMode: None
  serviceClusterIPs: [{cidr: 10.96.0.0/12}]
---
apiVersion: margay.io/v1
kind: BGPConfiguration
metadata: {name: node.n1}
spec:
  logSeverityScreen: debug
  serviceExternalIPs: [{cidr: 192.0.2.0/24}]
---
apiVersion: margay.io/v1
kind: BGPPeer
metadata: {name: tor}
spec: {peerIP: 192.0.2.1, asNumber: 65001, reachableBy: 10.0.0.1}
";

    #[test]
    fn node_config_overrides_default_field_by_field() {
        let r = res(CFGS);
        let n1 = daemon_opts(&r, "n1", false);
        assert_eq!(n1.log_level, Some("debug"));
        assert_eq!(n1.bind_mode, Some(BindMode::None));
        let n2 = daemon_opts(&r, "n2", false);
        assert_eq!(n2.log_level, Some("warn"));
        assert_eq!(
            daemon_opts(&Resources::default(), "n1", false),
            DaemonOpts::default()
        );
    }

    #[test]
    fn stored_unsupported_fields_are_listed() {
        // With the kubernetes datastore the Service fields are acted on,
        // in `default` only.
        let k = daemon_opts(&res(CFGS), "n1", true).unsupported;
        let got: Vec<(&str, &str)> =
            k.iter().map(|u| (u.name.as_str(), u.field)).collect();
        assert_eq!(
            got,
            [
                ("node.n1", "spec.serviceExternalIPs"),
                ("tor", "spec.reachableBy")
            ]
        );
        let u = daemon_opts(&res(CFGS), "n1", false).unsupported;
        let got: Vec<(&str, &str, &str)> = u
            .iter()
            .map(|u| (u.kind, u.name.as_str(), u.field))
            .collect();
        assert_eq!(
            got,
            [
                ("BGPConfiguration", "default", "spec.serviceClusterIPs"),
                ("BGPConfiguration", "node.n1", "spec.serviceExternalIPs"),
                ("BGPPeer", "tor", "spec.reachableBy"),
            ]
        );
    }

    #[test]
    fn bind_mode_chooses_the_listeners() {
        let v4: Ipv4Addr = "192.0.2.10".parse().unwrap();
        let v6: Ipv6Addr = "fd00::10".parse().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // NodeIP and unset: the node's addresses.
        for mode in [None, Some(BindMode::NodeIP)] {
            assert_eq!(
                listen_ips(None, mode, Some(v4), Some(v6)),
                [(ip("192.0.2.10"), false), (ip("fd00::10"), false)]
            );
        }
        // None: every address, IPv6 on its own socket.
        assert_eq!(
            listen_ips(None, Some(BindMode::None), Some(v4), Some(v6)),
            [(ip("0.0.0.0"), false), (ip("::"), true)]
        );
        assert_eq!(
            listen_ips(None, Some(BindMode::None), Some(v4), None),
            [(ip("0.0.0.0"), false)]
        );
        // The flag wins.
        assert_eq!(
            listen_ips(
                Some(ip("10.1.1.1")),
                Some(BindMode::None),
                Some(v4),
                None
            ),
            [(ip("10.1.1.1"), false)]
        );
    }

    #[test]
    fn calico_severities_map_to_tracing_levels() {
        assert_eq!(tracing_level("Info"), Some("info"));
        assert_eq!(tracing_level("Warning"), Some("warn"));
        assert_eq!(tracing_level("Fatal"), Some("error"));
        assert_eq!(tracing_level("TRACE"), Some("trace"));
        assert_eq!(tracing_level("loud"), None);
    }
}
