//! [`Validate`] for BGPFilter: rule fields per address family,
//! community formats and operations.

use super::{Validate, check_asn, parse_network};
use crate::community::COMMUNITY_ALLOWED;
use crate::error::{Errors, ValidationError};
use crate::{
    BGPFilter, BGPFilterRule, CommunityValue, FilterAction, resource_name,
};

impl Validate for BGPFilter {
    fn validate(&self) -> Result<(), Vec<ValidationError>> {
        let s = &self.spec;
        let mut errs = Errors::default();
        for (rules, list, v4) in [
            (&s.export_v4, "exportV4", true),
            (&s.import_v4, "importV4", true),
            (&s.export_v6, "exportV6", false),
            (&s.import_v6, "importV6", false),
        ] {
            for (i, r) in rules.iter().enumerate() {
                check_rule(&mut errs, &format!("spec.{list}[{i}]"), r, v4);
            }
        }
        errs.finish(resource_name(&self.metadata))
    }
}

/// Why kernel-route fields are refused: bgpd matches BGP routes only and
/// felix-lite programs them with the default metric, so accepting them
/// would silently export or accept more than the author meant.
pub const KERNEL_UNSUPPORTED: &str = "not supported by margay: bgpd \
    matches BGP routes only and felix-lite programs them with the default \
    metric";

/// Checks one filter rule of a list for IPv4 (`v4`) or IPv6 routes.
fn check_rule(errs: &mut Errors, at: &str, r: &BGPFilterRule, v4: bool) {
    const K: &str = "BGPFilter";
    let (fam, max_len) = if v4 { ("IPv4", 32) } else { ("IPv6", 128) };
    let cidr = r.cidr.as_deref().filter(|c| !c.is_empty());
    if let Some(c) = cidr {
        match parse_network(K, &format!("{at}.cidr"), c) {
            Ok(n) if n.is_ipv4() != v4 => errs.push(ValidationError::string(
                K,
                format!("{at}.cidr"),
                c,
                format!("allowed an {fam} CIDR in this list"),
            )),
            Ok(_) => {}
            Err(e) => errs.push(e),
        }
    }
    if cidr.is_some() != r.match_operator.is_some() {
        let (field, value) = match cidr {
            Some(c) => ("matchOperator", format!("<unset> (cidr {c:?})")),
            None => ("cidr", "<unset>".to_string()),
        };
        errs.push(ValidationError::new(
            K,
            format!("{at}.{field}"),
            value,
            "cidr and matchOperator must both be set or both be empty",
        ));
    }
    if let Some(pl) = &r.prefix_length {
        if cidr.is_none() {
            errs.push(ValidationError::new(
                K,
                format!("{at}.prefixLength"),
                format!("{pl:?}"),
                "allowed only together with cidr",
            ));
        }
        for (name, v) in [("min", pl.min), ("max", pl.max)] {
            if let Some(v) = v.filter(|v| *v > max_len) {
                errs.push(ValidationError::new(
                    K,
                    format!("{at}.prefixLength.{name}"),
                    v,
                    format!("allowed 0-{max_len} for {fam} routes"),
                ));
            }
        }
        if let (Some(lo), Some(hi)) = (pl.min, pl.max)
            && lo > hi
        {
            errs.push(ValidationError::new(
                K,
                format!("{at}.prefixLength.min"),
                lo,
                format!("allowed at most prefixLength.max ({hi})"),
            ));
        }
        // Calico writes BIRD's `cidr{lo,hi}` with lo at least the CIDR's
        // length; BIRD refuses the configuration when hi is below it.
        if let (Some(max), Ok(Some(m))) = (pl.max, r.prefix_match())
            && max < m.cidr.prefix()
        {
            errs.push(ValidationError::new(
                K,
                format!("{at}.prefixLength.max"),
                max,
                format!(
                    "allowed at least the cidr's length ({}): shorter \
                     routes are never within {}",
                    m.cidr.prefix(),
                    m.cidr
                ),
            ));
        }
    }
    if let Some(ifname) = &r.interface {
        errs.push(ValidationError::string(
            K,
            format!("{at}.interface"),
            ifname,
            KERNEL_UNSUPPORTED,
        ));
    }
    if let Some(cm) = &r.communities {
        if cm.values.len() != 1 {
            errs.push(ValidationError::new(
                K,
                format!("{at}.communities.values"),
                format!("{:?}", cm.values),
                "allowed exactly one community value",
            ));
        }
        for (j, v) in cm.values.iter().enumerate() {
            check_community(errs, &format!("{at}.communities.values[{j}]"), v);
        }
    }
    for (j, asn) in r.as_path_prefix.iter().enumerate() {
        errs.check(check_asn(K, &format!("{at}.asPathPrefix[{j}]"), *asn));
    }
    if let Some(p) = r.priority {
        errs.push(ValidationError::new(
            K,
            format!("{at}.priority"),
            p,
            KERNEL_UNSUPPORTED,
        ));
    }
    if !r.operations.is_empty() && r.action != FilterAction::Accept {
        errs.push(ValidationError::new(
            K,
            format!("{at}.operations"),
            format!("<{} operations>", r.operations.len()),
            "allowed only with action Accept",
        ));
    }
    for (j, op) in r.operations.iter().enumerate() {
        let f = format!("{at}.operations[{j}]");
        let set = usize::from(op.add_community.is_some())
            + usize::from(op.prepend_as_path.is_some())
            + usize::from(op.set_priority.is_some());
        if set != 1 {
            errs.push(ValidationError::new(
                K,
                f.clone(),
                format!("<{set} operations set>"),
                "allowed exactly one of addCommunity, prependASPath, \
                 setPriority",
            ));
        }
        if let Some(ac) = &op.add_community {
            check_community(
                errs,
                &format!("{f}.addCommunity.value"),
                &ac.value,
            );
        }
        if let Some(pp) = &op.prepend_as_path {
            if pp.prefix.is_empty() {
                errs.push(ValidationError::new(
                    K,
                    format!("{f}.prependASPath.prefix"),
                    "[]",
                    "allowed a non-empty list of AS numbers",
                ));
            }
            for (k, asn) in pp.prefix.iter().enumerate() {
                let field = format!("{f}.prependASPath.prefix[{k}]");
                errs.check(check_asn(K, &field, *asn));
            }
        }
        if let Some(sp) = &op.set_priority {
            errs.push(ValidationError::new(
                K,
                format!("{f}.setPriority.value"),
                sp.value,
                KERNEL_UNSUPPORTED,
            ));
        }
    }
}

fn check_community(errs: &mut Errors, field: &str, v: &str) {
    if CommunityValue::parse(v).is_none() {
        errs.push(ValidationError::string(
            "BGPFilter",
            field,
            v,
            COMMUNITY_ALLOWED,
        ));
    }
}
