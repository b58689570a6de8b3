//! BGP session passwords (TCP MD5, RFC 2385) shared by BGPPeer and
//! BGPConfiguration.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

/// Longest TCP MD5 key Linux accepts (`TCP_MD5SIG_MAXKEYLEN`, 80 bytes).
pub const MAX_PASSWORD_LEN: usize = 80;

/// Where a BGP password comes from. Exactly one source must be set.
///
/// `secretKeyRef` is Calico's; `file` and `value` are margay extensions
/// for the etcd and file datastores, which have no Secrets.
#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPPassword {
    /// A key of a Secret in the namespace margay's node agent runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeySelector>,
    /// margay extension: path of a file holding the password (trailing
    /// newline ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// margay extension: the password itself, inline (at most 80 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Selects one key of a Kubernetes Secret.
#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeySelector {
    /// Name of the Secret.
    pub name: String,
    /// Key within the Secret's data.
    pub key: String,
    /// Whether the Secret or key may be absent (then no password is
    /// used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// The one configured source of a password.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PasswordSource<'a> {
    Secret(&'a SecretKeySelector),
    File(&'a str),
    Value(&'a str),
}

impl BGPPassword {
    /// The single configured source; errors when none or several are set
    /// or an inline value is too long. `field` is the password's path.
    pub fn source(
        &self,
        kind: &str,
        field: &str,
    ) -> Result<PasswordSource<'_>, ValidationError> {
        let mut set = Vec::new();
        if let Some(s) = &self.secret_key_ref {
            set.push(("secretKeyRef", PasswordSource::Secret(s)));
        }
        if let Some(f) = &self.file {
            set.push(("file", PasswordSource::File(f)));
        }
        if let Some(v) = &self.value {
            set.push(("value", PasswordSource::Value(v)));
        }
        let names: Vec<&str> = set.iter().map(|(n, _)| *n).collect();
        match set.as_slice() {
            [] => Err(ValidationError::new(
                kind,
                field,
                "{}",
                "allowed exactly one of secretKeyRef, file or value; none \
                 is set",
            )),
            [(_, PasswordSource::Value(v))] if v.len() > MAX_PASSWORD_LEN => {
                Err(ValidationError::new(
                    kind,
                    format!("{field}.value"),
                    format!("<{} bytes>", v.len()),
                    format!(
                        "allowed at most {MAX_PASSWORD_LEN} bytes (the TCP \
                         MD5 key limit, RFC 2385)"
                    ),
                ))
            }
            [(_, PasswordSource::Value(""))] => Err(ValidationError::new(
                kind,
                format!("{field}.value"),
                "\"\"",
                "allowed a non-empty password",
            )),
            [(_, one)] => Ok(*one),
            _ => Err(ValidationError::new(
                kind,
                field,
                format!("{{{}}}", names.join(", ")),
                "allowed exactly one of secretKeyRef, file or value",
            )),
        }
    }
}
