//! The CNI_* environment (SPEC.md section 2 "Parameters"): parsing, and
//! which variables each command requires.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{CniError, Result};

/// CNI_COMMAND.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
            Command::Version => "VERSION",
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Command {
    type Err = CniError;

    fn from_str(s: &str) -> Result<Command> {
        match s {
            "ADD" => Ok(Command::Add),
            "DEL" => Ok(Command::Del),
            "CHECK" => Ok(Command::Check),
            "STATUS" => Ok(Command::Status),
            "GC" => Ok(Command::Gc),
            "VERSION" => Ok(Command::Version),
            _ => Err(CniError::env(
                "CNI_COMMAND",
                format!(
                    "unknown command {s:?}; allowed: ADD, DEL, CHECK, STATUS, \
                     GC, VERSION"
                ),
            )),
        }
    }
}

/// The parsed environment of one invocation. Optional fields are `None`
/// only for commands that do not require them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    pub command: Command,
    pub container_id: Option<String>,
    pub netns: Option<PathBuf>,
    /// Where the namespace is opened from when that is not CNI_NETNS
    /// itself: in the node agent, `/proc/self/fd/N` of the namespace the
    /// plugin handed over (its path may not exist in the agent's mount
    /// namespace). Results and errors still name CNI_NETNS.
    pub netns_handle: Option<PathBuf>,
    pub ifname: Option<String>,
    /// CNI_ARGS as ordered key/value pairs.
    pub args: Vec<(String, String)>,
    /// CNI_PATH split on ':'.
    pub path: Vec<PathBuf>,
}

/// Which variables a command needs (SPEC.md section 2, per-operation
/// lists): ADD and CHECK need CONTAINERID, NETNS and IFNAME; DEL needs
/// CONTAINERID and IFNAME ("CNI_NETNS is optional" for DEL); GC needs
/// CNI_PATH; STATUS and VERSION need nothing else.
fn required(cmd: Command) -> &'static [&'static str] {
    match cmd {
        Command::Add | Command::Check => {
            &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"]
        }
        Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME"],
        Command::Gc => &["CNI_PATH"],
        Command::Status | Command::Version => &[],
    }
}

impl Env {
    /// The path to open the container's network namespace from.
    pub fn netns_to_open(&self) -> Option<&Path> {
        self.netns_handle.as_deref().or(self.netns.as_deref())
    }

    /// Reads the process environment.
    pub fn from_process() -> Result<Env> {
        Env::from_lookup(|k| std::env::var(k).ok())
    }

    /// Parses and validates through `get` (testable without touching the
    /// process environment). Errors are code 4 naming the variable.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Env> {
        let nonempty = |k: &str| get(k).filter(|v| !v.is_empty());
        let command: Command = nonempty("CNI_COMMAND")
            .ok_or_else(|| CniError::env("CNI_COMMAND", "not set"))?
            .parse()?;
        for var in required(command) {
            if nonempty(var).is_none() {
                return Err(CniError::env(
                    var,
                    format!("not set (required for {command})"),
                ));
            }
        }
        let container_id = nonempty("CNI_CONTAINERID");
        if let Some(id) = &container_id {
            validate_container_id(id)?;
        }
        let ifname = nonempty("CNI_IFNAME");
        if let Some(name) = &ifname {
            validate_ifname(name)?;
        }
        let netns = nonempty("CNI_NETNS").map(PathBuf::from);
        let args = match nonempty("CNI_ARGS") {
            Some(a) => parse_args(&a)?,
            None => Vec::new(),
        };
        let path = nonempty("CNI_PATH")
            .map(|p| {
                p.split(':')
                    .filter(|d| !d.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Env {
            command,
            container_id,
            netns,
            netns_handle: None,
            ifname,
            args,
            path,
        })
    }

    /// The value of one CNI_ARGS key.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// CNI_CONTAINERID; only call for commands that require it.
    pub fn container_id(&self) -> &str {
        self.container_id.as_deref().unwrap_or_default()
    }

    /// CNI_IFNAME; only call for commands that require it.
    pub fn ifname(&self) -> &str {
        self.ifname.as_deref().unwrap_or_default()
    }
}

/// SPEC.md: the container ID "must not be empty, must start with an
/// alphanumeric character, optionally followed by any combination of one
/// or more alphanumeric characters, underscore, dot or hyphen".
pub fn validate_container_id(id: &str) -> Result<()> {
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(CniError::env(
            "CNI_CONTAINERID",
            format!(
                "invalid container ID {id:?}: must start with a letter or \
                 digit followed by letters, digits, '_', '.' or '-'"
            ),
        ))
    }
}

/// Linux interface-name rules (dev_valid_name): 1-15 bytes, not "." or
/// "..", no '/', ':' or whitespace. The spec says a plugin that cannot use
/// the name must return an error.
pub fn validate_ifname(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    if bad {
        return Err(CniError::env(
            "CNI_IFNAME",
            format!(
                "invalid interface name {name:?}: 1-15 bytes, not \".\" or \
                 \"..\", without '/', ':' or whitespace"
            ),
        ));
    }
    Ok(())
}

/// CNI_ARGS: "FOO=BAR;ABC=123" (SPEC.md section 2).
fn parse_args(s: &str) -> Result<Vec<(String, String)>> {
    s.split(';')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(CniError::env(
                "CNI_ARGS",
                format!("{kv:?} is not KEY=VALUE (pairs separated by ';')"),
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::error::Code;

    fn env(pairs: &[(&str, &str)]) -> Result<Env> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn add_full_env() {
        let e = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc_1.2-3"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            (
                "CNI_ARGS",
                "K8S_POD_NAME=p;K8S_POD_NAMESPACE=ns;IgnoreUnknown=1",
            ),
            ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
        ])
        .unwrap();
        assert_eq!(e.command, Command::Add);
        assert_eq!(e.arg("K8S_POD_NAME"), Some("p"));
        assert_eq!(e.arg("missing"), None);
        assert_eq!(e.path.len(), 2);
    }

    #[test]
    fn missing_vars_are_named() {
        let e = env(&[]).unwrap_err();
        assert_eq!(e.code, Code::InvalidEnv);
        assert_eq!(e.msg, "CNI_COMMAND: not set");
        let e = env(&[("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "a")])
            .unwrap_err();
        assert_eq!(e.msg, "CNI_NETNS: not set (required for ADD)");
        let e = env(&[("CNI_COMMAND", "GC")]).unwrap_err();
        assert_eq!(e.msg, "CNI_PATH: not set (required for GC)");
    }

    #[test]
    fn del_without_netns_is_fine() {
        let e = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "a"),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap();
        assert_eq!(e.netns, None);
        assert!(env(&[("CNI_COMMAND", "VERSION")]).is_ok());
        assert!(env(&[("CNI_COMMAND", "STATUS")]).is_ok());
    }

    #[test]
    fn invalid_values() {
        let base = |k: &'static str, v: &'static str| {
            let mut p = vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "a"),
                ("CNI_NETNS", "/n"),
                ("CNI_IFNAME", "eth0"),
            ];
            p.retain(|(pk, _)| *pk != k);
            p.push((k, v));
            env(&p).unwrap_err()
        };
        assert_eq!(
            base("CNI_COMMAND", "add").msg,
            "CNI_COMMAND: unknown command \"add\"; allowed: ADD, DEL, CHECK, \
             STATUS, GC, VERSION"
        );
        assert!(
            base("CNI_CONTAINERID", "-x")
                .msg
                .starts_with("CNI_CONTAINERID:")
        );
        assert!(base("CNI_CONTAINERID", "a/b").msg.contains("\"a/b\""));
        assert!(
            base("CNI_IFNAME", "a-very-long-ifname")
                .msg
                .starts_with("CNI_IFNAME:")
        );
        assert!(base("CNI_IFNAME", "et/0").msg.starts_with("CNI_IFNAME:"));
        assert_eq!(
            base("CNI_ARGS", "A=1;broken").msg,
            "CNI_ARGS: \"broken\" is not KEY=VALUE (pairs separated by ';')"
        );
    }
}
