//! `--datastore` values: which backend to use and where it is. The CNI
//! plugin's `datastore_type`/`etcd_*` keys build the same
//! [`DatastoreSpec`] with the same checks ([`EtcdSpec::new`]).
//!
//! etcd with TLS takes the client files as query parameters after the
//! endpoints, named as Calico's CNI config names them without `etcd_`:
//! `etcd:https://10.0.0.1:2379?ca_cert_file=/etc/margay/etcd-ca.pem&cert_file=/etc/margay/etcd.pem&key_file=/etc/margay/etcd-key.pem`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// The forms accepted by [`DatastoreSpec::from_str`], for error messages.
pub const ALLOWED_FORMS: &str = "etcd:http://HOST:PORT[,http://HOST:PORT...], \
     etcd:https://HOST:PORT[,...]?ca_cert_file=PATH[&cert_file=PATH&key_file=PATH], \
     kubernetes, kubernetes:/path/to/kubeconfig, file:/path/to/resources.yaml";

/// Where the datastore is, as given on the command line, e.g.
/// `--datastore etcd:http://127.0.0.1:2379`.
///
/// Parses with `FromStr`, so clap takes it directly:
/// `#[arg(long, value_parser = clap::value_parser!(DatastoreSpec))]` or just
/// a field of type `DatastoreSpec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatastoreSpec {
    /// etcd v3.
    Etcd(EtcdSpec),
    /// Kubernetes CRDs; `None` = the usual kubeconfig search (KUBECONFIG,
    /// ~/.kube/config) falling back to in-cluster config.
    Kubernetes { kubeconfig: Option<PathBuf> },
    /// A read-only multi-document YAML file.
    File { path: PathBuf },
}

/// An etcd v3 cluster: one or more client URLs and, for https, the TLS
/// files. Built only through [`EtcdSpec::new`] (or
/// [`DatastoreSpec::etcd`] for plain http), so every instance is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSpec {
    /// `http(s)://HOST:PORT` client URLs, all of one scheme.
    pub endpoints: Vec<String>,
    pub tls: EtcdTls,
}

/// TLS client files for etcd (Calico's `etcd_ca_cert_file`,
/// `etcd_cert_file`, `etcd_key_file`). With https endpoints the CA is
/// required: margay trusts only the CA it is given, never the system
/// trust store. Certificate and key come together (mutual TLS, etcd's
/// `--client-cert-auth`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdTls {
    pub ca_cert_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl EtcdTls {
    /// No file given: plain http.
    pub fn is_empty(&self) -> bool {
        self.ca_cert_file.is_none()
            && self.cert_file.is_none()
            && self.key_file.is_none()
    }
}

/// An etcd setting an [`EtcdSpecError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcdField {
    Endpoints,
    Scheme,
    CaCertFile,
    CertFile,
    KeyFile,
}

/// How settings are named where the user wrote them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStyle {
    /// `--datastore etcd:URLS?ca_cert_file=...`.
    Query,
    /// The CNI network config (`etcd_endpoints`, `etcd_ca_cert_file`...).
    Cni,
}

impl EtcdField {
    /// The setting's name in `style`.
    pub fn name(self, style: KeyStyle) -> &'static str {
        match (self, style) {
            (EtcdField::Endpoints, KeyStyle::Query) => "endpoints",
            (EtcdField::Endpoints, KeyStyle::Cni) => "etcd_endpoints",
            (EtcdField::Scheme, KeyStyle::Query) => "scheme",
            (EtcdField::Scheme, KeyStyle::Cni) => "etcd_scheme",
            (EtcdField::CaCertFile, KeyStyle::Query) => "ca_cert_file",
            (EtcdField::CaCertFile, KeyStyle::Cni) => "etcd_ca_cert_file",
            (EtcdField::CertFile, KeyStyle::Query) => "cert_file",
            (EtcdField::CertFile, KeyStyle::Cni) => "etcd_cert_file",
            (EtcdField::KeyFile, KeyStyle::Query) => "key_file",
            (EtcdField::KeyFile, KeyStyle::Cni) => "etcd_key_file",
        }
    }
}

/// Bad etcd settings: which one and why (the reason names other
/// settings in the same [`KeyStyle`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {reason}")]
pub struct EtcdSpecError {
    pub field: EtcdField,
    /// The field's name as the user wrote it.
    pub name: &'static str,
    pub reason: String,
}

impl DatastoreSpec {
    /// etcd at `endpoints` over plain http (tests and tools; users'
    /// values go through [`EtcdSpec::new`]).
    pub fn etcd(endpoints: Vec<String>) -> Self {
        DatastoreSpec::Etcd(EtcdSpec {
            endpoints,
            tls: EtcdTls::default(),
        })
    }
}

impl EtcdSpec {
    /// Checks a comma-separated list of client URLs (each
    /// `http(s)://HOST:PORT`) with the TLS files: one scheme for all;
    /// https needs the CA; TLS files with http are refused rather than
    /// ignored; certificate and key come together. Errors name the
    /// setting in `style`.
    pub fn new(
        endpoints: &str,
        tls: EtcdTls,
        style: KeyStyle,
    ) -> Result<Self, EtcdSpecError> {
        let err = |field: EtcdField, reason: String| EtcdSpecError {
            field,
            name: field.name(style),
            reason,
        };
        let n = |field: EtcdField| field.name(style);
        let endpoints: Vec<String> =
            endpoints.split(',').map(|e| e.trim().to_string()).collect();
        for ep in &endpoints {
            check_etcd_endpoint(ep)
                .map_err(|r| err(EtcdField::Endpoints, r))?;
        }
        let https = endpoints.iter().filter(|e| is_https(e)).count();
        if https != 0 && https != endpoints.len() {
            return Err(err(
                EtcdField::Endpoints,
                format!(
                    "{:?} mixes http:// and https:// endpoints; use one scheme",
                    endpoints.join(",")
                ),
            ));
        }
        match (&tls.cert_file, &tls.key_file) {
            (Some(_), None) => {
                return Err(err(
                    EtcdField::KeyFile,
                    format!("required with {}", n(EtcdField::CertFile)),
                ));
            }
            (None, Some(_)) => {
                return Err(err(
                    EtcdField::CertFile,
                    format!("required with {}", n(EtcdField::KeyFile)),
                ));
            }
            _ => {}
        }
        if https == 0 && !tls.is_empty() {
            return Err(err(
                EtcdField::Endpoints,
                format!(
                    "{:?} is http:// but TLS files are given ({}, {}, {}): \
                     use https:// endpoints",
                    endpoints.join(","),
                    n(EtcdField::CaCertFile),
                    n(EtcdField::CertFile),
                    n(EtcdField::KeyFile)
                ),
            ));
        }
        if https != 0 && tls.ca_cert_file.is_none() {
            return Err(err(
                EtcdField::CaCertFile,
                "required with https:// endpoints: the PEM file of the CA \
                 that signed etcd's server certificate (margay does not use \
                 the system trust store)"
                    .into(),
            ));
        }
        Ok(EtcdSpec { endpoints, tls })
    }

    /// Calico's `etcd_scheme` ("http" or "https"): every endpoint must
    /// use it.
    pub fn check_scheme(
        &self,
        scheme: &str,
        style: KeyStyle,
    ) -> Result<(), EtcdSpecError> {
        let err = |reason: String| EtcdSpecError {
            field: EtcdField::Scheme,
            name: EtcdField::Scheme.name(style),
            reason,
        };
        let want_https = match scheme {
            "https" => true,
            "http" => false,
            other => {
                return Err(err(format!(
                    "{other:?} is not one of \"http\", \"https\""
                )));
            }
        };
        match self.endpoints.iter().find(|e| is_https(e) != want_https) {
            Some(ep) => Err(err(format!(
                "{scheme:?} but {} {ep:?} is not {scheme}://",
                EtcdField::Endpoints.name(style)
            ))),
            None => Ok(()),
        }
    }

    /// Parses `URLS[?key=value&...]` (the part after `etcd:`).
    fn parse_query_form(s: &str) -> Result<Self, String> {
        let (urls, query) = match s.split_once('?') {
            Some((u, q)) => (u, Some(q)),
            None => (s, None),
        };
        let mut tls = EtcdTls::default();
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match key {
                "ca_cert_file" => &mut tls.ca_cert_file,
                "cert_file" => &mut tls.cert_file,
                "key_file" => &mut tls.key_file,
                other => {
                    return Err(format!(
                        "unknown etcd option {other:?}; allowed: \
                         ca_cert_file, cert_file, key_file"
                    ));
                }
            };
            if value.is_empty() {
                return Err(format!("etcd option {key:?} needs a path"));
            }
            if slot.replace(PathBuf::from(value)).is_some() {
                return Err(format!("etcd option {key:?} given twice"));
            }
        }
        EtcdSpec::new(urls, tls, KeyStyle::Query).map_err(|e| e.to_string())
    }
}

fn is_https(endpoint: &str) -> bool {
    endpoint.starts_with("https://")
}

/// A `--datastore` value that is none of the [`ALLOWED_FORMS`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid datastore {value:?}: {reason}; allowed forms: {ALLOWED_FORMS}"
)]
pub struct DatastoreSpecError {
    /// The rejected value.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FromStr for DatastoreSpec {
    type Err = DatastoreSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| DatastoreSpecError {
            value: s.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = match s.split_once(':') {
            Some((scheme, rest)) => (scheme, Some(rest)),
            None => (s, None),
        };
        match (scheme, rest) {
            ("etcd", Some(rest)) => EtcdSpec::parse_query_form(rest)
                .map(DatastoreSpec::Etcd)
                .map_err(|r| err(&r)),
            ("etcd", None) => Err(err("etcd needs endpoints after \"etcd:\"")),
            ("kubernetes", None) => {
                Ok(DatastoreSpec::Kubernetes { kubeconfig: None })
            }
            ("kubernetes", Some("")) => {
                Err(err("empty kubeconfig path after \"kubernetes:\""))
            }
            ("kubernetes", Some(path)) => Ok(DatastoreSpec::Kubernetes {
                kubeconfig: Some(PathBuf::from(path)),
            }),
            ("file", Some("")) | ("file", None) => {
                Err(err("file needs a path after \"file:\""))
            }
            ("file", Some(path)) => Ok(DatastoreSpec::File {
                path: PathBuf::from(path),
            }),
            _ => Err(err(&format!("unknown datastore type {scheme:?}"))),
        }
    }
}

/// Checks one etcd client URL: `http(s)://host:port`.
fn check_etcd_endpoint(ep: &str) -> Result<(), String> {
    let Some(hostport) = ep
        .strip_prefix("http://")
        .or_else(|| ep.strip_prefix("https://"))
    else {
        return Err(format!(
            "etcd endpoint {ep:?} must start with http:// or https://"
        ));
    };
    let hostport = hostport.trim_end_matches('/');
    let Some((host, port)) = hostport.rsplit_once(':') else {
        return Err(format!("etcd endpoint {ep:?} needs a port (HOST:PORT)"));
    };
    if host.is_empty() || host.contains('/') {
        return Err(format!("etcd endpoint {ep:?} has an invalid host"));
    }
    if port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!(
            "etcd endpoint {ep:?} has an invalid port {port:?} (1-65535)"
        ));
    }
    Ok(())
}

impl fmt::Display for DatastoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatastoreSpec::Etcd(etcd) => write!(f, "etcd:{etcd}"),
            DatastoreSpec::Kubernetes { kubeconfig: None } => {
                f.write_str("kubernetes")
            }
            DatastoreSpec::Kubernetes {
                kubeconfig: Some(path),
            } => write!(f, "kubernetes:{}", path.display()),
            DatastoreSpec::File { path } => {
                write!(f, "file:{}", path.display())
            }
        }
    }
}

impl fmt::Display for EtcdSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.endpoints.join(","))?;
        let files = [
            ("ca_cert_file", &self.tls.ca_cert_file),
            ("cert_file", &self.tls.cert_file),
            ("key_file", &self.tls.key_file),
        ];
        let mut sep = '?';
        for (key, path) in files {
            if let Some(path) = path {
                write!(f, "{sep}{key}={}", path.display())?;
                sep = '&';
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_round_trips() {
        for text in [
            "etcd:http://127.0.0.1:2379",
            "etcd:https://10.0.0.1:2379,https://10.0.0.2:2379?ca_cert_file=/ca.pem",
            "etcd:https://10.0.0.1:2379?ca_cert_file=/ca.pem&cert_file=/c.pem&key_file=/k.pem",
            "kubernetes",
            "kubernetes:/etc/kube/admin.conf",
            "file:/etc/margay/resources.yaml",
            "file:relative.yaml",
        ] {
            let spec: DatastoreSpec = text.parse().unwrap();
            assert_eq!(spec.to_string(), text);
        }
        assert_eq!(
            "etcd:http://a:1,http://b:2"
                .parse::<DatastoreSpec>()
                .unwrap(),
            DatastoreSpec::etcd(vec!["http://a:1".into(), "http://b:2".into()])
        );
    }

    #[test]
    fn tls_files_and_scheme_name_the_setting_in_each_style() {
        let tls = EtcdTls {
            cert_file: Some("/c".into()),
            ..Default::default()
        };
        let e = EtcdSpec::new("https://a:1", tls, KeyStyle::Cni).unwrap_err();
        assert_eq!(
            e.to_string(),
            "etcd_key_file: required with etcd_cert_file"
        );
        assert_eq!(e.field, EtcdField::KeyFile);
        let spec = EtcdSpec::new(
            "https://a:1",
            EtcdTls {
                ca_cert_file: Some("/ca".into()),
                ..Default::default()
            },
            KeyStyle::Cni,
        )
        .unwrap();
        assert!(spec.check_scheme("https", KeyStyle::Cni).is_ok());
        assert_eq!(
            spec.check_scheme("http", KeyStyle::Cni)
                .unwrap_err()
                .to_string(),
            "etcd_scheme: \"http\" but etcd_endpoints \"https://a:1\" is not http://"
        );
        assert!(spec.check_scheme("ftp", KeyStyle::Cni).is_err());
    }

    #[test]
    fn rejects_bad_values_listing_allowed_forms() {
        let cases = [
            ("consul:foo", "unknown datastore type \"consul\""),
            ("etcd", "etcd needs endpoints"),
            ("etcd:127.0.0.1:2379", "must start with http://"),
            ("etcd:http://127.0.0.1", "needs a port"),
            ("etcd:http://127.0.0.1:99999", "invalid port \"99999\""),
            ("etcd:http://a:1,", "etcd endpoint \"\""),
            ("file:", "file needs a path"),
            ("kubernetes:", "empty kubeconfig path"),
            (
                "etcd:http://a:1,https://b:2?ca_cert_file=/ca",
                "mixes http:// and https://",
            ),
            ("etcd:https://a:1", "ca_cert_file: required with https://"),
            (
                "etcd:http://a:1?ca_cert_file=/ca",
                "endpoints: \"http://a:1\" is http:// but TLS files are given",
            ),
            (
                "etcd:https://a:1?ca_cert_file=/ca&cert_file=/c",
                "key_file: required with cert_file",
            ),
            (
                "etcd:https://a:1?ca_cert_file=/ca&key_file=/k",
                "cert_file: required with key_file",
            ),
            ("etcd:https://a:1?ca=/ca", "unknown etcd option \"ca\""),
            (
                "etcd:https://a:1?ca_cert_file=",
                "\"ca_cert_file\" needs a path",
            ),
            (
                "etcd:https://a:1?ca_cert_file=/a&ca_cert_file=/b",
                "given twice",
            ),
        ];
        for (text, want) in cases {
            let err = text.parse::<DatastoreSpec>().unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
            assert!(err.contains("allowed forms: etcd:http://"), "{err}");
            assert!(err.starts_with(&format!("invalid datastore {text:?}")));
        }
    }
}
