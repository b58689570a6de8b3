//! The validation error shared by every resource: it names the resource,
//! the field, the rejected value and what would have been accepted.

use std::fmt;

/// One rejected field of one resource.
///
/// Rendered as `IPPool "pool-a": spec.blockSize = 33 is invalid: allowed
/// 20-32 for an IPv4 pool`. `allowed` is a phrase that completes "is
/// invalid:", either the accepted range or the reason and a correction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    /// Resource kind, e.g. `IPPool`.
    pub kind: String,
    /// `metadata.name` of the resource (empty when not known yet).
    pub name: String,
    /// Dotted JSON path of the field, e.g. `spec.blockSize`.
    pub field: String,
    /// The rejected value as the user wrote it (strings are quoted).
    pub value: String,
    /// What is allowed, or why the value is rejected.
    pub allowed: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() {
            write!(f, "{}: ", self.kind)?;
        } else {
            write!(f, "{} {:?}: ", self.kind, self.name)?;
        }
        write!(
            f,
            "{} = {} is invalid: {}",
            self.field, self.value, self.allowed
        )
    }
}

impl ValidationError {
    /// An error whose value is shown verbatim (numbers, lists).
    pub fn new(
        kind: &str,
        field: impl Into<String>,
        value: impl fmt::Display,
        allowed: impl Into<String>,
    ) -> Self {
        ValidationError {
            kind: kind.to_string(),
            name: String::new(),
            field: field.into(),
            value: excerpt(&value.to_string()).into_owned(),
            allowed: allowed.into(),
        }
    }

    /// An error whose value is a string, shown quoted.
    pub fn string(
        kind: &str,
        field: impl Into<String>,
        value: &str,
        allowed: impl Into<String>,
    ) -> Self {
        ValidationError {
            value: format!("{:?}", excerpt(value)),
            ..Self::new(kind, field, "", allowed)
        }
    }

    /// Sets the resource name (builder style).
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// Prefixes the field path, e.g. `bgp.ipv4Address` -> `spec.bgp...`.
    pub fn under(mut self, prefix: &str) -> Self {
        self.field = format!("{prefix}.{}", self.field);
        self
    }
}

/// Longest user value an error message quotes in full.
pub const EXCERPT_CHARS: usize = 64;

/// `value`, or its first [`EXCERPT_CHARS`] characters and its size when
/// longer: an error names a bad value, it never echoes megabytes back.
pub fn excerpt(value: &str) -> std::borrow::Cow<'_, str> {
    match value.char_indices().nth(EXCERPT_CHARS) {
        None => value.into(),
        Some((cut, _)) => {
            format!("{}... ({} bytes)", &value[..cut], value.len()).into()
        }
    }
}

/// A parser message with every `` `quoted` `` part shortened by
/// [`excerpt`] (serde quotes unknown fields and variants this way).
pub fn shorten_quoted(message: &str) -> String {
    message
        .split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 {
                excerpt(part)
            } else {
                part.into()
            }
        })
        .collect::<Vec<_>>()
        .join("`")
}

/// Collects errors from several checks of one resource.
#[derive(Debug, Default)]
pub(crate) struct Errors(pub(crate) Vec<ValidationError>);

impl Errors {
    /// Records the error of a failed check, if any.
    pub(crate) fn check<T>(&mut self, r: Result<T, ValidationError>) {
        if let Err(e) = r {
            self.0.push(e);
        }
    }

    pub(crate) fn push(&mut self, e: ValidationError) {
        self.0.push(e);
    }

    /// Names every error after the resource and returns them, if any.
    pub(crate) fn finish(self, name: &str) -> Result<(), Vec<ValidationError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0.into_iter().map(|e| e.named(name)).collect())
        }
    }
}
