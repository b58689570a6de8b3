//! CNI error results (SPEC.md "Error" and "Well-known Error Codes").
//!
//! A failing plugin prints `{cniVersion, code, msg, details}` and exits
//! non-zero. The reference skel (pkg/skel/skel.go `PluginMainFuncs`) prints
//! it on **stdout** with exit status 1, and runtimes read it from there, so
//! margay does the same; stderr carries only logs.

use std::fmt;

use serde::Serialize;

/// The error codes margay emits. 0-99 are reserved by the spec, 100+ are
/// plugin-specific (SPEC.md "Error").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 1: incompatible CNI version.
    IncompatibleVersion,
    /// 2: unsupported field in network configuration; the message MUST
    /// contain the key and value.
    UnsupportedField,
    /// 3: container unknown or does not exist.
    UnknownContainer,
    /// 4: invalid necessary environment variables; the message MUST name
    /// them.
    InvalidEnv,
    /// 5: I/O failure (reading stdin, writing files).
    Io,
    /// 6: failed to decode content (stdin JSON, prevResult).
    Decode,
    /// 7: invalid network configuration.
    InvalidConfig,
    /// 11: try again later (datastore unreachable, lock busy).
    TryAgainLater,
    /// 50: STATUS: the plugin is not available for ADD.
    NotAvailable,
    /// 100: every usable IP pool is exhausted.
    PoolExhausted,
    /// 101: IPAM refused or failed for a non-transient reason.
    IpamFailed,
    /// 102: creating or removing interfaces, addresses, routes or sysctls
    /// failed.
    Dataplane,
    /// 103: CHECK found the attachment broken; the message lists what.
    CheckFailed,
    /// Any code returned by a delegated plugin, passed through unchanged.
    Other(u32),
}

impl Code {
    /// The numeric value printed in the error JSON.
    pub fn value(self) -> u32 {
        match self {
            Code::IncompatibleVersion => 1,
            Code::UnsupportedField => 2,
            Code::UnknownContainer => 3,
            Code::InvalidEnv => 4,
            Code::Io => 5,
            Code::Decode => 6,
            Code::InvalidConfig => 7,
            Code::TryAgainLater => 11,
            Code::NotAvailable => 50,
            Code::PoolExhausted => 100,
            Code::IpamFailed => 101,
            Code::Dataplane => 102,
            Code::CheckFailed => 103,
            Code::Other(n) => n,
        }
    }
}

/// A CNI error: what the runtime gets on stdout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct CniError {
    pub code: Code,
    /// Short human-readable message.
    pub msg: String,
    /// Longer explanation (may be empty).
    pub details: String,
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.msg, self.code.value())?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

/// `Result` with [`CniError`] as the default error.
pub type Result<T, E = CniError> = std::result::Result<T, E>;

impl CniError {
    /// An error with an empty `details`.
    pub fn new(code: Code, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// The same error with `details` set.
    pub fn with_details(mut self, details: impl Into<String>) -> CniError {
        self.details = details.into();
        self
    }

    /// Code 4, naming the variable.
    pub fn env(var: &str, problem: impl fmt::Display) -> CniError {
        CniError::new(Code::InvalidEnv, format!("{var}: {problem}"))
    }

    /// Code 7, naming the field.
    pub fn config(field: &str, problem: impl fmt::Display) -> CniError {
        CniError::new(
            Code::InvalidConfig,
            format!("invalid network config field \"{field}\": {problem}"),
        )
    }

    /// Code 102 for a dataplane step that failed.
    pub fn dataplane(
        step: impl fmt::Display,
        err: impl fmt::Display,
    ) -> CniError {
        CniError::new(Code::Dataplane, format!("{step}: {err}"))
    }

    /// The JSON text printed on stdout, fields in the spec's order.
    /// `details` is omitted when empty, as libcni's `types.Error` does
    /// (`json:"details,omitempty"`).
    pub fn to_json(&self, cni_version: &str) -> String {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Out<'a> {
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        let out = Out {
            cni_version,
            code: self.code.value(),
            msg: &self.msg,
            details: &self.details,
        };
        serde_json::to_string(&out).expect("strings and integers serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_exact_text() {
        let e = CniError::env("CNI_IFNAME", "not set");
        assert_eq!(
            e.to_json("1.1.0"),
            r#"{"cniVersion":"1.1.0","code":4,"msg":"CNI_IFNAME: not set"}"#
        );
        let e = CniError::new(Code::TryAgainLater, "etcd down")
            .with_details("connect refused");
        assert_eq!(
            e.to_json("1.0.0"),
            r#"{"cniVersion":"1.0.0","code":11,"msg":"etcd down","details":"connect refused"}"#
        );
    }

    #[test]
    fn codes_match_the_spec_table() {
        let codes = [
            (Code::IncompatibleVersion, 1),
            (Code::UnsupportedField, 2),
            (Code::UnknownContainer, 3),
            (Code::InvalidEnv, 4),
            (Code::Io, 5),
            (Code::Decode, 6),
            (Code::InvalidConfig, 7),
            (Code::TryAgainLater, 11),
            (Code::NotAvailable, 50),
            (Code::Other(42), 42),
        ];
        for (c, n) in codes {
            assert_eq!(c.value(), n, "{c:?}");
        }
    }
}
