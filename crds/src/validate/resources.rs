//! [`Validate`] for each resource kind on its own.

use ipnetwork::IpNetwork;

use super::{
    Validate, check_asn, check_selector, parse_ip_or_cidr, parse_network,
};
use crate::error::{Errors, ValidationError};
use crate::{
    AllowedUse, AnyResource, BGPConfiguration, BGPPeer, BlockAffinity,
    CommunityValue, EncapMode, IPAM_CONFIG_NAME, IPAMBlock, IPAMConfig,
    IPAMHandle, IPPool, IPReservation, LOG_SEVERITIES, Node,
    community::COMMUNITY_ALLOWED, resource_name,
};

// ===== IPPool =====

impl Validate for IPPool {
    fn validate(&self) -> Result<(), Vec<ValidationError>> {
        const K: &str = "IPPool";
        let s = &self.spec;
        let mut errs = Errors::default();
        match s.cidr_net() {
            Ok(net) => {
                errs.check(check_block_size(net, s.block_size()));
                errs.check(check_not_link_local(net));
            }
            Err(e) => errs.push(e),
        }
        for (field, mode) in [
            ("spec.vxlanMode", s.vxlan_mode),
            ("spec.ipipMode", s.ipip_mode),
        ] {
            // CrossSubnet means "no encapsulation inside a subnet" in
            // Calico; across subnets margay relies on the fabric routing
            // pod blocks (learned over BGP from the nodes), so Calico's
            // CrossSubnet pools work unchanged. Always cannot be honoured.
            if let Some(m) = mode.filter(|m| *m == EncapMode::Always) {
                errs.push(ValidationError::string(
                    K,
                    field,
                    &format!("{m:?}"),
                    "allowed \"Never\" or \"CrossSubnet\": margay routes pod \
                     traffic without encapsulation",
                ));
            }
        }
        if let Some(sel) = &s.node_selector {
            errs.check(check_selector(K, "spec.nodeSelector", sel));
        }
        if let Some(sel) = &s.namespace_selector {
            errs.check(check_selector(K, "spec.namespaceSelector", sel));
        }
        for u in super::unsupported::ip_pool(s) {
            errs.push(u.to_error(K));
        }
        // Calico: LoadBalancer addresses come from dedicated pools.
        if s.allowed_uses.contains(&AllowedUse::LoadBalancer)
            && s.allowed_uses.len() > 1
        {
            errs.push(ValidationError::new(
                K,
                "spec.allowedUses",
                format!("{:?}", s.allowed_uses),
                "LoadBalancer cannot be combined with other uses; allowed \
                 [LoadBalancer] alone or any of Workload, Tunnel",
            ));
        }
        errs.finish(resource_name(&self.metadata))
    }
}

/// Block size within the family's range and not shorter than the pool.
fn check_block_size(pool: IpNetwork, size: u8) -> Result<(), ValidationError> {
    let (lo, hi, fam) = if pool.is_ipv4() {
        (20, 32, "IPv4")
    } else {
        (116, 128, "IPv6")
    };
    let err = |allowed: String| {
        ValidationError::new("IPPool", "spec.blockSize", size, allowed)
    };
    if !(lo..=hi).contains(&size) {
        return Err(err(format!("allowed {lo}-{hi} for an {fam} pool")));
    }
    if size < pool.prefix() {
        return Err(err(format!(
            "allowed {}-{hi} for pool {pool}: a block cannot be larger \
             than its pool",
            pool.prefix().max(lo)
        )));
    }
    Ok(())
}

/// Calico refuses pools in the link-local ranges: those addresses are
/// never routed, and 169.254.1.1 is every pod's gateway.
fn check_not_link_local(pool: IpNetwork) -> Result<(), ValidationError> {
    let link_local = if pool.is_ipv4() {
        "169.254.0.0/16"
    } else {
        "fe80::/10"
    };
    let ll: IpNetwork = link_local.parse().expect("constant network");
    if !crate::net::overlaps(&pool, &ll) {
        return Ok(());
    }
    Err(ValidationError::string(
        "IPPool",
        "spec.cidr",
        &pool.to_string(),
        format!(
            "overlaps the link-local range {link_local}; allowed a \
             routable network"
        ),
    ))
}

// ===== BGPPeer =====

impl Validate for BGPPeer {
    fn validate(&self) -> Result<(), Vec<ValidationError>> {
        const K: &str = "BGPPeer";
        let s = &self.spec;
        let mut errs = Errors::default();
        if let Some(sel) = &s.node_selector {
            errs.check(check_selector(K, "spec.nodeSelector", sel));
            if s.node.is_some() {
                errs.push(ValidationError::string(
                    K,
                    "spec.nodeSelector",
                    sel,
                    "allowed only when spec.node is not set (use one of \
                     node or nodeSelector)",
                ));
            }
        }
        if let Some(sel) = &s.peer_selector {
            errs.check(check_selector(K, "spec.peerSelector", sel));
            if let Some(ip) = &s.peer_ip {
                errs.push(ValidationError::string(
                    K,
                    "spec.peerIP",
                    ip,
                    "allowed only when spec.peerSelector is not set",
                ));
            }
            if let Some(asn) = s.as_number {
                errs.push(ValidationError::new(
                    K,
                    "spec.asNumber",
                    asn,
                    "allowed only when spec.peerSelector is not set (the \
                     selected nodes' AS numbers are used)",
                ));
            }
        } else {
            match &s.peer_ip {
                None => errs.push(ValidationError::new(
                    K,
                    "spec.peerIP",
                    "<unset>",
                    "required unless spec.peerSelector is set",
                )),
                Some(_) => errs.check(s.peer_addr()),
            }
            if s.as_number.is_none() {
                errs.push(ValidationError::new(
                    K,
                    "spec.asNumber",
                    "<unset>",
                    "required with spec.peerIP (0 means unset)",
                ));
            }
        }
        if let Some(asn) = s.as_number {
            errs.check(check_asn(K, "spec.asNumber", asn));
        }
        if let Some(asn) = s.local_as_number {
            errs.check(check_asn(K, "spec.localASNumber", asn));
        }
        if let Some(pw) = &s.password {
            errs.check(pw.source(K, "spec.password"));
        }
        errs.check(s.max_restart_time());
        errs.check(s.keepalive_time());
        if s.keep_original_next_hop && s.next_hop_mode.is_some() {
            errs.push(ValidationError::new(
                K,
                "spec.keepOriginalNextHop",
                true,
                "allowed only when spec.nextHopMode is not set \
                 (keepOriginalNextHop is deprecated; use nextHopMode: Keep)",
            ));
        }
        if let Some(gw) = &s.reachable_by
            && s.peer_ip.is_none()
        {
            errs.push(ValidationError::string(
                K,
                "spec.reachableBy",
                gw,
                "allowed only together with spec.peerIP",
            ));
        }
        if let Some(gw) = &s.reachable_by
            && gw.parse::<std::net::IpAddr>().is_err()
        {
            errs.push(ValidationError::string(
                K,
                "spec.reachableBy",
                gw,
                "allowed an IP address (the gateway to the peer)",
            ));
        }
        for (i, f) in s.filters.iter().enumerate() {
            if f.trim().is_empty() {
                errs.push(ValidationError::string(
                    K,
                    format!("spec.filters[{i}]"),
                    f,
                    "allowed the name of a BGPFilter",
                ));
            }
        }
        if let Some(bfd) = &s.bfd {
            for e in bfd.check(K, "spec.bfd") {
                errs.push(e);
            }
        }
        for u in super::unsupported::bgp_peer(s) {
            errs.push(u.to_error(K));
        }
        errs.finish(resource_name(&self.metadata))
    }
}

// ===== BGPConfiguration =====

impl Validate for BGPConfiguration {
    fn validate(&self) -> Result<(), Vec<ValidationError>> {
        const K: &str = "BGPConfiguration";
        let s = &self.spec;
        let mut errs = Errors::default();
        if let Some(l) = &s.log_severity_screen
            && !l.is_empty()
            && !LOG_SEVERITIES.iter().any(|s| s.eq_ignore_ascii_case(l))
        {
            errs.push(ValidationError::string(
                K,
                "spec.logSeverityScreen",
                l,
                format!("allowed {} (in any case)", LOG_SEVERITIES.join(", ")),
            ));
        }
        if let Some(asn) = s.as_number {
            errs.check(check_asn(K, "spec.asNumber", asn));
        }
        if s.listen_port == Some(0) {
            errs.push(ValidationError::new(
                K,
                "spec.listenPort",
                0,
                "allowed 1-65535",
            ));
        }
        if let Some(pw) = &s.node_mesh_password {
            errs.check(pw.source(K, "spec.nodeMeshPassword"));
        }
        errs.check(s.node_mesh_max_restart_time());
        errs.check(s.node_mesh_keepalive_time());
        if let Some(bfd) = &s.node_mesh_bfd {
            for e in bfd.check(K, "spec.nodeMeshBFD") {
                errs.push(e);
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, c) in s.communities.iter().enumerate() {
            if c.name.is_empty() || !names.insert(c.name.as_str()) {
                errs.push(ValidationError::string(
                    K,
                    format!("spec.communities[{i}].name"),
                    &c.name,
                    "allowed a non-empty name not used by another community",
                ));
            }
            if CommunityValue::parse(&c.value).is_none() {
                errs.push(ValidationError::string(
                    K,
                    format!("spec.communities[{i}].value"),
                    &c.value,
                    COMMUNITY_ALLOWED,
                ));
            }
        }
        for (i, pa) in s.prefix_advertisements.iter().enumerate() {
            let field = format!("spec.prefixAdvertisements[{i}]");
            errs.check(parse_network(K, &format!("{field}.cidr"), &pa.cidr));
            for (j, c) in pa.communities.iter().enumerate() {
                if s.resolve_community(c).is_none() {
                    let known: Vec<&str> = names.iter().copied().collect();
                    errs.push(ValidationError::string(
                        K,
                        format!("{field}.communities[{j}]"),
                        c,
                        format!(
                            "allowed a name from spec.communities ({}) or \
                             a literal value: {COMMUNITY_ALLOWED}",
                            if known.is_empty() {
                                "none defined".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    ));
                }
            }
        }
        for (list, field) in [
            (&s.service_cluster_ips, "serviceClusterIPs"),
            (&s.service_external_ips, "serviceExternalIPs"),
            (&s.service_load_balancer_ips, "serviceLoadBalancerIPs"),
        ] {
            for (i, c) in list.iter().enumerate() {
                let f = format!("spec.{field}[{i}].cidr");
                errs.check(parse_network(K, &f, &c.cidr));
            }
        }
        for u in super::unsupported::bgp_configuration(s) {
            errs.push(u.to_error(K));
        }
        let name = self.metadata.name.as_deref().unwrap_or("");
        for u in super::unsupported::services_outside_default(name, s) {
            errs.push(u.to_error(K));
        }
        errs.finish(resource_name(&self.metadata))
    }
}

// ===== Node =====

impl Validate for Node {
    fn validate(&self) -> Result<(), Vec<ValidationError>> {
        const K: &str = "Node";
        let mut errs = Errors::default();
        if let Some(bgp) = &self.spec.bgp {
            let v4 = bgp.ipv4_net();
            let v6 = bgp.ipv6_net();
            if matches!((&v4, &v6), (Ok(None), Ok(None))) {
                errs.push(ValidationError::new(
                    K,
                    "spec.bgp",
                    "{}",
                    "allowed at least one of ipv4Address or ipv6Address",
                ));
            }
            errs.check(v4);
            errs.check(v6);
            if let Some(asn) = bgp.as_number {
                errs.check(check_asn(K, "spec.bgp.asNumber", asn));
            }
            errs.check(bgp.rr_cluster_id());
        }
        for (i, a) in self.spec.addresses.iter().enumerate() {
            let f = format!("spec.addresses[{i}].address");
            errs.check(parse_ip_or_cidr(K, &f, &a.address));
        }
        errs.finish(resource_name(&self.metadata))
    }
}

// ===== IPAM resources =====

impl Validate for IPAMBlock {
    fn validate(&self) -> Result<(), Vec<ValidationError>> {
        const K: &str = "IPAMBlock";
        let s = &self.spec;
        let mut errs = Errors::default();
        match s.cidr_net() {
            Ok(net) => {
                let bits = if net.is_ipv4() { 32 } else { 128 };
                let size = 1u128 << (bits - u32::from(net.prefix())).min(127);
                if !s.allocations.is_empty()
                    && s.allocations.len() as u128 != size
                {
                    errs.push(ValidationError::new(
                        K,
                        "spec.allocations",
                        format!("<{} entries>", s.allocations.len()),
                        format!("allowed exactly {size} entries for {net}"),
                    ));
                }
            }
            Err(e) => errs.push(e),
        }
        for (i, a) in s.allocations.iter().enumerate() {
            if let Some(idx) = a.filter(|idx| *idx >= s.attributes.len()) {
                errs.push(ValidationError::new(
                    K,
                    format!("spec.allocations[{i}]"),
                    idx,
                    format!(
                        "allowed an index into spec.attributes (0-{})",
                        s.attributes.len().saturating_sub(1)
                    ),
                ));
            }
        }
        for (i, ord) in s.unallocated.iter().enumerate() {
            if s.allocations.get(*ord) != Some(&None) {
                errs.push(ValidationError::new(
                    K,
                    format!("spec.unallocated[{i}]"),
                    ord,
                    "allowed only ordinals whose allocation is null",
                ));
            }
        }
        if let Some(a) = &s.affinity
            && !(a.starts_with("host:") || a.starts_with("virtual:"))
        {
            errs.push(ValidationError::string(
                K,
                "spec.affinity",
                a,
                "allowed \"host:<node>\" or \"virtual:<name>\"",
            ));
        }
        errs.finish(resource_name(&self.metadata))
    }
}

impl Validate for BlockAffinity {
    fn validate(&self) -> Result<(), Vec<ValidationError>> {
        const K: &str = "BlockAffinity";
        let s = &self.spec;
        let mut errs = Errors::default();
        errs.check(parse_network(K, "spec.cidr", &s.cidr));
        if s.node.is_empty() {
            errs.push(ValidationError::string(
                K,
                "spec.node",
                "",
                "allowed a node name",
            ));
        }
        if s.type_ != "host" && s.type_ != "virtual" {
            errs.push(ValidationError::string(
                K,
                "spec.type",
                &s.type_,
                "allowed \"host\" or \"virtual\"",
            ));
        }
        errs.finish(resource_name(&self.metadata))
    }
}

impl Validate for IPAMHandle {
    fn validate(&self) -> Result<(), Vec<ValidationError>> {
        const K: &str = "IPAMHandle";
        let mut errs = Errors::default();
        if self.spec.handle_id.is_empty() {
            errs.push(ValidationError::string(
                K,
                "spec.handleID",
                "",
                "allowed a non-empty handle ID",
            ));
        }
        for cidr in self.spec.block.keys() {
            let f = format!("spec.block[{cidr:?}]");
            errs.check(parse_network(K, &f, cidr));
        }
        errs.finish(resource_name(&self.metadata))
    }
}

impl Validate for IPAMConfig {
    fn validate(&self) -> Result<(), Vec<ValidationError>> {
        let name = resource_name(&self.metadata);
        let s = &self.spec;
        let mut errs = Errors::default();
        // Calico (libcalico-go ipam SetIPAMConfig): the block cap acts
        // before borrowing, so it is only allowed where borrowing is off.
        if s.max_blocks_per_host > 0 && !s.strict_affinity {
            errs.push(ValidationError::new(
                "IPAMConfig",
                "spec.maxBlocksPerHost",
                s.max_blocks_per_host,
                "allowed only with spec.strictAffinity: true (or 0)",
            ));
        }
        if !s.strict_affinity && !s.auto_allocate_blocks {
            errs.push(ValidationError::new(
                "IPAMConfig",
                "spec.autoAllocateBlocks",
                false,
                "allowed false only with spec.strictAffinity: true; with \
                 both off a node could neither claim nor borrow addresses",
            ));
        }
        if name != IPAM_CONFIG_NAME {
            errs.push(ValidationError::string(
                "IPAMConfig",
                "metadata.name",
                name,
                "allowed only \"default\" (IPAMConfig is a singleton)",
            ));
        }
        errs.finish(name)
    }
}

impl Validate for IPReservation {
    fn validate(&self) -> Result<(), Vec<ValidationError>> {
        let mut errs = Errors::default();
        for (i, c) in self.spec.reserved_cidrs.iter().enumerate() {
            let f = format!("spec.reservedCIDRs[{i}]");
            errs.check(parse_ip_or_cidr("IPReservation", &f, c));
        }
        errs.finish(resource_name(&self.metadata))
    }
}

impl Validate for AnyResource {
    fn validate(&self) -> Result<(), Vec<ValidationError>> {
        crate::with_any_resource!(self, r => r.validate())
    }
}
