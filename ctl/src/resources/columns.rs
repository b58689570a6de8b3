//! The table columns `get` prints for each kind (`-o wide` adds some).

use margay_crds::{
    BGPConfiguration, BGPFilter, BGPPeer, BlockAffinity, IPAMBlock, IPAMConfig,
    IPAMHandle, IPPool, IPReservation, Node,
};

/// Rendering of one kind as table rows.
pub trait Columns {
    /// Headers after NAME and before AGE.
    fn headers(wide: bool) -> Vec<&'static str>;
    /// Cells matching [`Columns::headers`].
    fn cells(&self, wide: bool) -> Vec<String>;
}

/// `-` for an absent value.
fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

/// A serde enum's wire spelling (e.g. `pendingDeletion`).
fn wire<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "?".into(),
    }
}

impl Columns for IPPool {
    fn headers(wide: bool) -> Vec<&'static str> {
        let mut h = vec!["CIDR", "BLOCK SIZE", "DISABLED"];
        if wide {
            h.extend(["NODE SELECTOR", "NAT OUTGOING", "BGP EXPORT", "USES"]);
        }
        h
    }
    fn cells(&self, wide: bool) -> Vec<String> {
        let s = &self.spec;
        let mut c = vec![
            s.cidr.clone(),
            s.block_size().to_string(),
            s.disabled.to_string(),
        ];
        if wide {
            let uses: Vec<String> = s.allowed_uses().iter().map(wire).collect();
            c.extend([
                s.node_selector().to_string(),
                s.nat_outgoing.to_string(),
                (!s.disable_bgp_export).to_string(),
                uses.join(","),
            ]);
        }
        c
    }
}

impl Columns for BGPPeer {
    fn headers(wide: bool) -> Vec<&'static str> {
        let mut h = vec!["PEER", "AS", "NODES"];
        if wide {
            h.extend(["FILTERS", "PASSWORD", "BFD"]);
        }
        h
    }
    fn cells(&self, wide: bool) -> Vec<String> {
        let s = &self.spec;
        let peer = match (&s.peer_ip, &s.peer_selector) {
            (Some(ip), _) => ip.clone(),
            (None, Some(sel)) => format!("selector {sel}"),
            (None, None) => "-".into(),
        };
        let nodes = match (&s.node, &s.node_selector) {
            (Some(n), _) => n.clone(),
            (None, Some(sel)) => format!("selector {sel}"),
            (None, None) => "(all)".into(),
        };
        let mut c = vec![peer, opt(s.as_number), nodes];
        if wide {
            let bfd = s.bfd.as_ref().is_some_and(|b| b.enabled);
            c.extend([
                list(&s.filters),
                if s.password.is_some() { "set" } else { "-" }.into(),
                if bfd { "on" } else { "off" }.into(),
            ]);
        }
        c
    }
}

impl Columns for BGPConfiguration {
    fn headers(wide: bool) -> Vec<&'static str> {
        let mut h = vec!["AS", "MESH", "LISTEN PORT"];
        if wide {
            h.extend(["LOG SEVERITY", "SERVICE CLUSTER IPS"]);
        }
        h
    }
    fn cells(&self, wide: bool) -> Vec<String> {
        let s = &self.spec;
        let mut c = vec![
            s.as_number().to_string(),
            s.mesh_enabled().to_string(),
            s.listen_port().to_string(),
        ];
        if wide {
            let cidrs: Vec<String> = s
                .service_cluster_ips
                .iter()
                .map(|c| c.cidr.clone())
                .collect();
            c.extend([s.log_severity_screen().to_string(), list(&cidrs)]);
        }
        c
    }
}

impl Columns for BGPFilter {
    fn headers(_wide: bool) -> Vec<&'static str> {
        vec!["EXPORT V4", "IMPORT V4", "EXPORT V6", "IMPORT V6"]
    }
    fn cells(&self, _wide: bool) -> Vec<String> {
        let s = &self.spec;
        [&s.export_v4, &s.import_v4, &s.export_v6, &s.import_v6]
            .map(|rules| format!("{} rules", rules.len()))
            .to_vec()
    }
}

impl Columns for Node {
    fn headers(wide: bool) -> Vec<&'static str> {
        let mut h = vec!["IPV4", "IPV6", "AS", "RR CLUSTER ID"];
        if wide {
            h.push("LABELS");
        }
        h
    }
    fn cells(&self, wide: bool) -> Vec<String> {
        let bgp = self.spec.bgp.as_ref();
        let mut c = vec![
            opt(bgp.and_then(|b| b.ipv4_address.clone())),
            opt(bgp.and_then(|b| b.ipv6_address.clone())),
            opt(bgp.and_then(|b| b.as_number)),
            opt(bgp.and_then(|b| b.route_reflector_cluster_id.clone())),
        ];
        if wide {
            let labels: Vec<String> = self
                .metadata
                .labels
                .iter()
                .flatten()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            c.push(list(&labels));
        }
        c
    }
}

impl Columns for IPAMBlock {
    fn headers(_wide: bool) -> Vec<&'static str> {
        vec!["CIDR", "AFFINITY", "IN USE", "DELETED"]
    }
    fn cells(&self, _wide: bool) -> Vec<String> {
        let s = &self.spec;
        let used = s.allocations.iter().filter(|a| a.is_some()).count();
        vec![
            s.cidr.clone(),
            opt(s.affinity.clone()),
            format!("{used}/{}", s.allocations.len()),
            s.deleted.to_string(),
        ]
    }
}

impl Columns for BlockAffinity {
    fn headers(_wide: bool) -> Vec<&'static str> {
        vec!["NODE", "CIDR", "STATE", "DELETED"]
    }
    fn cells(&self, _wide: bool) -> Vec<String> {
        let s = &self.spec;
        vec![
            s.node.clone(),
            s.cidr.clone(),
            wire(&s.state),
            s.deleted.to_string(),
        ]
    }
}

impl Columns for IPAMHandle {
    fn headers(_wide: bool) -> Vec<&'static str> {
        vec!["HANDLE ID", "ADDRESSES", "BLOCKS"]
    }
    fn cells(&self, _wide: bool) -> Vec<String> {
        let s = &self.spec;
        let blocks: Vec<String> = s.block.keys().cloned().collect();
        vec![
            s.handle_id.clone(),
            s.block.values().sum::<u32>().to_string(),
            list(&blocks),
        ]
    }
}

impl Columns for IPAMConfig {
    fn headers(_wide: bool) -> Vec<&'static str> {
        vec!["STRICT AFFINITY", "MAX BLOCKS PER HOST", "AUTO ALLOCATE"]
    }
    fn cells(&self, _wide: bool) -> Vec<String> {
        let s = &self.spec;
        vec![
            s.strict_affinity.to_string(),
            s.max_blocks_per_host().to_string(),
            s.auto_allocate_blocks.to_string(),
        ]
    }
}

impl Columns for IPReservation {
    fn headers(_wide: bool) -> Vec<&'static str> {
        vec!["RESERVED CIDRS"]
    }
    fn cells(&self, _wide: bool) -> Vec<String> {
        vec![list(&self.spec.reserved_cidrs)]
    }
}
