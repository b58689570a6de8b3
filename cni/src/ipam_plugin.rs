//! The verbs of `margay-ipam`, margay's IPAM as a delegated plugin for
//! other main plugins (bridge, ptp, ...): ADD returns addresses (an IPAM
//! result: no interfaces, no `ips[].interface`), DEL releases, CHECK
//! confirms the handle still holds what prevResult lists.

use std::net::IpAddr;

use crate::config::NetConf;
use crate::error::{CniError, Result};
use crate::ipam::IpamBackend;
use crate::plugin::attach_ctx;
use crate::result::{CniResult, IpConfig};
use crate::spec::Env;

pub async fn add<I: IpamBackend>(
    env: &Env,
    conf: &NetConf,
    ipam: &I,
) -> Result<String> {
    let ips = ipam.add(&attach_ctx(env, conf)).await?;
    let result = CniResult {
        ips: ips
            .into_iter()
            .map(|address| IpConfig {
                address,
                gateway: None,
                interface: None,
            })
            .collect(),
        dns: conf.dns.clone(),
        ..Default::default()
    };
    Ok(result.to_json(conf.cni_version))
}

pub async fn del<I: IpamBackend>(
    env: &Env,
    conf: &NetConf,
    ipam: &I,
) -> Result<String> {
    ipam.del(&attach_ctx(env, conf)).await?;
    Ok(String::new())
}

pub async fn check<I: IpamBackend>(
    env: &Env,
    conf: &NetConf,
    ipam: &I,
) -> Result<String> {
    let prev = conf.prev_result.as_ref().ok_or_else(|| {
        CniError::config("prevResult", "CHECK needs the ADD result")
    })?;
    let prev = CniResult::from_prev(prev)?;
    let ips: Vec<IpAddr> = prev.ips.iter().map(|c| c.address.ip()).collect();
    ipam.check(&attach_ctx(env, conf), &ips).await?;
    Ok(String::new())
}
