//! `get`, `apply` and `delete` of margay resources, kubectl-style.

mod columns;

use std::fmt;

use margay_crds::{
    AnyResource, BGPConfiguration, BGPFilter, BGPPeer, BlockAffinity,
    DocumentError, IPAMBlock, IPAMConfig, IPAMHandle, IPPool, IPReservation,
    Node, ValidationError,
};
use margay_datastore::{Datastore, DatastoreError, Object};
use serde_json::Value;

pub use self::columns::Columns;
use crate::output::{self, Format, OutputError, Table};

/// How many times `apply` re-reads and retries after losing a
/// compare-and-swap race before giving up.
const CAS_RETRIES: usize = 10;

/// Why a resource command failed.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    #[error("unknown resource kind {given:?}; allowed: {}", Kind::allowed())]
    UnknownKind { given: String },
    #[error("{kind} {name:?} not found")]
    NotFound { kind: Kind, name: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Document {
        path: String,
        #[source]
        source: DocumentError,
    },
    #[error("{path}: invalid resources:\n{}", join_errors(errors))]
    Invalid {
        path: String,
        errors: Vec<ValidationError>,
    },
    #[error(
        "{kind} {name:?} kept changing under us ({CAS_RETRIES} \
         compare-and-swap conflicts); try again"
    )]
    TooManyConflicts { kind: Kind, name: String },
    #[error(transparent)]
    Datastore(#[from] DatastoreError),
    #[error(transparent)]
    Output(#[from] OutputError),
}

fn join_errors(errors: &[ValidationError]) -> String {
    errors
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Generates [`Kind`], its names and the `with_kind!` macro from the kind
/// list ([`margay_crds::for_each_kind`]).
macro_rules! kinds {
    (
        ($d:tt)
        $($T:ident { names: [$($n:literal),* $(,)?], short: $s:literal, },)*
    ) => {
        /// A margay resource kind.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        pub enum Kind {
            $($T,)*
        }

        impl Kind {
            /// Every kind, in the order `get` help lists them.
            pub const ALL: [Kind; [$(stringify!($T)),*].len()] =
                [$(Kind::$T),*];

            /// The kind as written in YAML, e.g. `IPPool`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Kind::$T => stringify!($T),)*
                }
            }

            /// The command-line names: singular first (used in
            /// `kind/name` output), then plural and short forms, the CRD's
            /// shortName among them (kubectl's: `ipp`, `bgpp`, ...).
            pub fn names(self) -> &'static [&'static str] {
                match self {
                    $(Kind::$T => &[$($n),*],)*
                }
            }
        }

        /// Runs `$body` with `$K` bound to the Rust type of `$kind`.
        macro_rules! with_kind {
            ($d kind:expr, $d K:ident => $d body:expr) => {
                match $d kind {
                    $(Kind::$T => {
                        type $d K = $T;
                        $d body
                    })*
                }
            };
        }
    };
}
margay_crds::for_each_kind!(kinds! $);

impl Kind {
    /// Parses a command-line kind name, case-insensitively; the YAML kind
    /// (e.g. `IPPool`) is accepted too.
    pub fn parse(given: &str) -> Result<Kind, ResourceError> {
        let lower = given.to_ascii_lowercase();
        Kind::ALL
            .into_iter()
            .find(|k| {
                k.names().contains(&lower.as_str())
                    || k.as_str().eq_ignore_ascii_case(given)
            })
            .ok_or_else(|| ResourceError::UnknownKind {
                given: given.to_string(),
            })
    }

    fn allowed() -> String {
        Kind::ALL
            .iter()
            .map(|k| k.names()[..2].join("/"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The singular command-line name, e.g. `ippool`.
    pub fn cli_name(self) -> &'static str {
        self.names()[0]
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ===== get =====

/// `get KIND [NAME]`: a table, or the objects as YAML/JSON.
pub async fn get(
    ds: &Datastore,
    kind: Kind,
    name: Option<&str>,
    format: Format,
    now_unix: i64,
) -> Result<String, ResourceError> {
    with_kind!(kind, K => get_typed::<K>(ds, kind, name, format, now_unix).await)
}

async fn get_typed<K: Object + Columns>(
    ds: &Datastore,
    kind: Kind,
    name: Option<&str>,
    format: Format,
    now_unix: i64,
) -> Result<String, ResourceError> {
    let items: Vec<K> = match name {
        Some(name) => match ds.get::<K>(name).await? {
            Some(obj) => vec![obj],
            None => {
                return Err(ResourceError::NotFound {
                    kind,
                    name: name.to_string(),
                });
            }
        },
        None => {
            let mut items = ds.list::<K>().await?.items;
            items.sort_by(|a, b| a.meta().name.cmp(&b.meta().name));
            items
        }
    };
    Ok(match format {
        Format::Yaml => output::to_yaml_documents(&items)?,
        Format::Json => output::to_json(&items)?,
        Format::Table | Format::Wide => {
            if items.is_empty() {
                return Ok(format!(
                    "No {} resources found.\n",
                    kind.cli_name()
                ));
            }
            render_table(&items, format == Format::Wide, now_unix)
        }
    })
}

/// NAME, the kind's columns, AGE.
pub fn render_table<K: Object + Columns>(
    items: &[K],
    wide: bool,
    now_unix: i64,
) -> String {
    let mut headers = vec!["NAME"];
    headers.extend(K::headers(wide));
    headers.push("AGE");
    let mut t = Table::new(headers);
    for item in items {
        let meta = item.meta();
        let age = meta.creation_timestamp.as_ref().map_or("-".into(), |ts| {
            let secs = now_unix.saturating_sub(ts.0.as_second());
            output::age(u64::try_from(secs).unwrap_or(0))
        });
        let mut row = vec![meta.name.clone().unwrap_or_default()];
        row.extend(item.cells(wide));
        row.push(age);
        t.push(row);
    }
    t.render_plain()
}

// ===== apply =====

/// What `apply` did to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Configured,
    Unchanged,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
        })
    }
}

/// Reads YAML from `path` ("-" = stdin).
pub fn read_input(path: &str) -> Result<String, ResourceError> {
    let read = if path == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    };
    read.map_err(|source| ResourceError::Read {
        path: path.to_string(),
        source,
    })
}

/// Parses `yaml` (from `path`, for messages) into resources.
pub fn parse(
    path: &str,
    yaml: &str,
) -> Result<Vec<AnyResource>, ResourceError> {
    margay_crds::parse_documents(yaml).map_err(|source| {
        ResourceError::Document {
            path: path.to_string(),
            source,
        }
    })
}

/// `apply -f`: validates every resource, then the set together with the
/// stored IP pools (overlaps), then creates or updates each one. Returns
/// kubectl-style lines such as `ippool/default created`.
pub async fn apply(
    ds: &Datastore,
    path: &str,
    yaml: &str,
) -> Result<String, ResourceError> {
    let resources = parse(path, yaml)?;
    validate(ds, path, &resources).await?;
    let mut out = String::new();
    for r in resources {
        let kind =
            Kind::parse(r.kind()).expect("every AnyResource kind is known");
        let name = r.name().to_string();
        let outcome = margay_crds::with_any_resource!(r, obj => apply_one(ds, kind, obj).await?);
        out.push_str(&format!("{}/{name} {outcome}\n", kind.cli_name()));
    }
    Ok(out)
}

/// `validate_against` what is stored: each resource alone, then the
/// cross-resource rules with the stored objects they refer to or must
/// agree with: IPPools (overlaps, immutable `cidr`/`blockSize`),
/// BGPFilters (named by BGPPeers) and, when pools are applied,
/// IPAMBlocks (block size of a new pool).
async fn validate(
    ds: &Datastore,
    path: &str,
    resources: &[AnyResource],
) -> Result<(), ResourceError> {
    let mut stored: Vec<AnyResource> = Vec::new();
    let has = |f: fn(&AnyResource) -> bool| resources.iter().any(f);
    if has(|r| matches!(r, AnyResource::IPPool(_))) {
        stored.extend(
            ds.list::<IPPool>().await?.items.into_iter().map(Into::into),
        );
        stored.extend(
            ds.list::<IPAMBlock>()
                .await?
                .items
                .into_iter()
                .map(Into::into),
        );
    }
    if has(|r| matches!(r, AnyResource::BGPPeer(_))) {
        stored.extend(
            ds.list::<BGPFilter>()
                .await?
                .items
                .into_iter()
                .map(Into::into),
        );
    }
    let mut errors = margay_crds::validate_against(resources, &stored)
        .err()
        .unwrap_or_default();
    // Service advertisement needs Services: only the kubernetes datastore
    // has them, so elsewhere the fields are refused by name.
    if !matches!(ds, Datastore::Kubernetes(_)) {
        for r in resources {
            if let AnyResource::BGPConfiguration(c) = r {
                let name = c.metadata.name.as_deref().unwrap_or("");
                for u in margay_crds::validate::unsupported::services_without_kubernetes(&c.spec) {
                    errors.push(u.to_error("BGPConfiguration").named(name));
                }
            }
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    Err(ResourceError::Invalid {
        path: path.to_string(),
        errors,
    })
}

/// Create-or-update with compare-and-swap: a lost race re-reads and
/// tries again.
async fn apply_one<K: Object>(
    ds: &Datastore,
    kind: Kind,
    desired: K,
) -> Result<Outcome, ResourceError> {
    let name = desired.meta().name.clone().unwrap_or_default();
    for _ in 0..CAS_RETRIES {
        let Some(existing) = ds.get::<K>(&name).await? else {
            let mut obj = desired.clone();
            obj.meta_mut().resource_version = None;
            match ds.create(&obj).await {
                Ok(_) => return Ok(Outcome::Created),
                Err(e) if e.is_already_exists() => continue,
                Err(e) => return Err(e.into()),
            }
        };
        if same_content(&existing, &desired)? {
            return Ok(Outcome::Unchanged);
        }
        let mut obj = desired.clone();
        let (old, new) = (existing.meta(), obj.meta_mut());
        new.resource_version = old.resource_version.clone();
        new.uid = old.uid.clone();
        new.creation_timestamp = old.creation_timestamp.clone();
        match ds.update(&obj).await {
            Ok(_) => return Ok(Outcome::Configured),
            Err(e) if e.is_conflict() || e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ResourceError::TooManyConflicts { kind, name })
}

/// Whether `a` and `b` have the same spec, labels and annotations (what a
/// user can set; the rest is the datastore's).
fn same_content<K: Object>(a: &K, b: &K) -> Result<bool, ResourceError> {
    let view = |obj: &K| -> Result<Value, ResourceError> {
        let v = serde_json::to_value(obj).map_err(OutputError::from)?;
        let meta = v.get("metadata");
        let field = |f: &str| meta.and_then(|m| m.get(f)).cloned();
        Ok(serde_json::json!({
            "spec": v.get("spec").cloned(),
            "labels": field("labels").filter(non_empty),
            "annotations": field("annotations").filter(non_empty),
        }))
    };
    Ok(view(a)? == view(b)?)
}

fn non_empty(v: &Value) -> bool {
    v.as_object().is_some_and(|m| !m.is_empty())
}

// ===== delete =====

/// `delete KIND NAME`.
pub async fn delete(
    ds: &Datastore,
    kind: Kind,
    name: &str,
) -> Result<String, ResourceError> {
    let result = with_kind!(kind, K => ds.delete::<K>(name, None).await);
    match result {
        Ok(()) => Ok(format!("{}/{name} deleted\n", kind.cli_name())),
        Err(e) if e.is_not_found() => Err(ResourceError::NotFound {
            kind,
            name: name.to_string(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// `delete -f FILE`: deletes every resource the file names. Missing ones
/// are reported and skipped; the second value is false if any was
/// missing.
pub async fn delete_file(
    ds: &Datastore,
    path: &str,
    yaml: &str,
) -> Result<(String, bool), ResourceError> {
    let mut out = String::new();
    let mut all_found = true;
    for r in parse(path, yaml)? {
        let kind =
            Kind::parse(r.kind()).expect("every AnyResource kind is known");
        match delete(ds, kind, r.name()).await {
            Ok(line) => out.push_str(&line),
            Err(ResourceError::NotFound { kind, name }) => {
                all_found = false;
                out.push_str(&format!(
                    "{}/{name} not found\n",
                    kind.cli_name()
                ));
            }
            Err(e) => return Err(e),
        }
    }
    Ok((out, all_found))
}

#[cfg(test)]
mod tests;
