//! The IO under the hops: `ip -j` (optionally in a named network
//! namespace) and `/proc/sys`.

use std::process::Command;

use serde::de::DeserializeOwned;

use super::DiagnoseError;

/// Runs `ip [-n NS] -j ARGS` and decodes its JSON (empty output: `[]`).
pub fn ip_json<T: DeserializeOwned>(
    netns: Option<&str>,
    args: &[&str],
) -> Result<Vec<T>, DiagnoseError> {
    let mut all: Vec<&str> = Vec::new();
    if let Some(ns) = netns {
        all.extend(["-n", ns]);
    }
    all.push("-j");
    all.extend(args);
    let command = format!("ip {}", all.join(" "));
    let out = Command::new("ip").args(&all).output().map_err(|e| {
        DiagnoseError::Command {
            command: command.clone(),
            reason: format!("{e} (install iproute2)"),
        }
    })?;
    if !out.status.success() {
        return Err(DiagnoseError::Command {
            command,
            reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(&text).map_err(|e| DiagnoseError::Command {
        command,
        reason: format!("unexpected output: {e}"),
    })
}

/// Like [`ip_json`], but a missing device is `None` rather than an error.
pub fn ip_link<T: DeserializeOwned>(
    netns: Option<&str>,
    args: &[&str],
) -> Result<Option<T>, DiagnoseError> {
    match ip_json::<T>(netns, args) {
        Ok(mut v) if !v.is_empty() => Ok(Some(v.remove(0))),
        Ok(_) => Ok(None),
        Err(DiagnoseError::Command { reason, .. })
            if reason.contains("does not exist") =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// `ip netns list-id`: the name of the namespace this namespace knows as
/// `nsid` (`None` when it has no name under /run/netns).
pub fn netns_name(nsid: i64) -> Result<Option<String>, DiagnoseError> {
    #[derive(serde::Deserialize)]
    struct Id {
        nsid: i64,
        name: Option<String>,
    }
    let ids: Vec<Id> = ip_json(None, &["netns", "list-id"])?;
    Ok(ids
        .into_iter()
        .find(|i| i.nsid == nsid)
        .and_then(|i| i.name))
}

/// `ip route show table main match DST` (in `netns`, or here): the main
/// table's routes covering `dst`, longest prefix not yet chosen.
pub fn routes_matching(
    netns: Option<&str>,
    dst: std::net::IpAddr,
) -> Result<Vec<super::pod::Route>, DiagnoseError> {
    let family = if dst.is_ipv4() { "-4" } else { "-6" };
    ip_json(
        netns,
        &[
            family,
            "route",
            "show",
            "table",
            "main",
            "match",
            &dst.to_string(),
        ],
    )
}
