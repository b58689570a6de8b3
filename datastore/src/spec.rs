//! `--datastore` values: which backend to use and where it is. The CNI
//! plugin's `datastore_type`/`etcd_endpoints` build the same
//! [`DatastoreSpec`] with the same checks ([`EtcdSpec::parse_endpoints`]).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// The forms accepted by [`DatastoreSpec::from_str`], for error messages.
pub const ALLOWED_FORMS: &str = "etcd:http://HOST:PORT[,http://HOST:PORT...], \
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

/// An etcd v3 cluster: one or more client URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSpec {
    /// `http(s)://HOST:PORT` client URLs, each checked by
    /// [`EtcdSpec::parse_endpoints`].
    pub endpoints: Vec<String>,
}

impl DatastoreSpec {
    /// etcd at `endpoints`, without TLS client options.
    pub fn etcd(endpoints: Vec<String>) -> Self {
        DatastoreSpec::Etcd(EtcdSpec { endpoints })
    }
}

impl EtcdSpec {
    /// A comma-separated list of etcd client URLs (`--datastore etcd:LIST`
    /// and the CNI config's `etcd_endpoints`), each `http(s)://HOST:PORT`.
    /// The error says which endpoint is wrong and why.
    pub fn parse_endpoints(list: &str) -> Result<Vec<String>, String> {
        let endpoints: Vec<String> =
            list.split(',').map(|e| e.trim().to_string()).collect();
        for ep in &endpoints {
            check_etcd_endpoint(ep)?;
        }
        Ok(endpoints)
    }
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
            ("etcd", Some(rest)) => EtcdSpec::parse_endpoints(rest)
                .map(DatastoreSpec::etcd)
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
        f.write_str(&self.endpoints.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_round_trips() {
        for text in [
            "etcd:http://127.0.0.1:2379",
            "etcd:http://10.0.0.1:2379,https://10.0.0.2:2379",
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
        ];
        for (text, want) in cases {
            let err = text.parse::<DatastoreSpec>().unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
            assert!(err.contains("allowed forms: etcd:http://"), "{err}");
            assert!(err.starts_with(&format!("invalid datastore {text:?}")));
        }
    }
}
