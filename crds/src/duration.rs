//! Kubernetes `metav1.Duration` strings (Go's `time.ParseDuration`
//! syntax): a sequence of decimal numbers, each with an optional fraction
//! and a unit, e.g. `120s`, `2m`, `1h30m`, `1.5s`, `300ms`.

use std::time::Duration;

use crate::error::ValidationError;

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("negative durations are not allowed")]
    Negative,
    #[error("expected a number at byte {0}")]
    ExpectedNumber(usize),
    #[error(
        "missing unit after the number at byte {0} (use ns, us, ms, s, m or h)"
    )]
    MissingUnit(usize),
    #[error("unknown unit {0:?} (use ns, us, ms, s, m or h)")]
    UnknownUnit(String),
    #[error("duration too large")]
    Overflow,
}

/// The phrase used in validation errors for durations.
pub const DURATION_ALLOWED: &str = "allowed a duration such as \"90s\", \"2m\" or \"1h30m\" (units ns, us, \
     ms, s, m, h)";

/// Parses a Go/Kubernetes duration string.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let s = s.trim();
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        Some(_) => (false, s),
        None => return Err(DurationError::Empty),
    };
    if body.is_empty() {
        return Err(DurationError::Empty);
    }
    let offset = s.len() - body.len();
    // Go accepts a bare "0" without a unit.
    if body == "0" {
        return Ok(Duration::ZERO);
    }
    let bytes = body.as_bytes();
    let mut pos = 0;
    let mut total_nanos: u128 = 0;
    while pos < bytes.len() {
        let start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        let int_part = &body[start..pos];
        let mut frac_part = "";
        if pos < bytes.len() && bytes[pos] == b'.' {
            pos += 1;
            let fstart = pos;
            while pos < bytes.len() && bytes[pos].is_ascii_digit() {
                pos += 1;
            }
            frac_part = &body[fstart..pos];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(DurationError::ExpectedNumber(offset + start));
        }
        let ustart = pos;
        while pos < bytes.len()
            && !bytes[pos].is_ascii_digit()
            && bytes[pos] != b'.'
        {
            pos += 1;
        }
        let unit = &body[ustart..pos];
        if unit.is_empty() {
            return Err(DurationError::MissingUnit(offset + ustart));
        }
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            other => return Err(DurationError::UnknownUnit(other.into())),
        };
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| DurationError::Overflow)?
        };
        let mut nanos =
            int.checked_mul(scale).ok_or(DurationError::Overflow)?;
        // Fractions are truncated to whole nanoseconds like Go does.
        let mut frac_scale = scale;
        for d in frac_part.bytes() {
            frac_scale /= 10;
            if frac_scale == 0 {
                break;
            }
            nanos += u128::from(d - b'0') * frac_scale;
        }
        total_nanos = total_nanos
            .checked_add(nanos)
            .ok_or(DurationError::Overflow)?;
    }
    if neg && total_nanos != 0 {
        return Err(DurationError::Negative);
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000)
        .map_err(|_| DurationError::Overflow)?;
    Ok(Duration::new(secs, (total_nanos % 1_000_000_000) as u32))
}

/// Parses an optional duration field of `kind`, applying a default.
pub(crate) fn duration_field(
    kind: &str,
    field: &str,
    value: Option<&str>,
    default: Duration,
) -> Result<Duration, ValidationError> {
    match value {
        None => Ok(default),
        Some(s) => parse_duration(s).map_err(|e| {
            ValidationError::string(
                kind,
                field,
                s,
                format!("{e}; {DURATION_ALLOWED}"),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_duration("120s"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration(".5m"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("10us"), Ok(Duration::from_micros(10)));
    }

    #[test]
    fn rejects_bad_durations() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(parse_duration("120"), Err(DurationError::MissingUnit(3)));
        assert_eq!(
            parse_duration("2 minutes"),
            Err(DurationError::UnknownUnit(" minutes".into()))
        );
        assert_eq!(parse_duration("-5s"), Err(DurationError::Negative));
        assert_eq!(parse_duration("s"), Err(DurationError::ExpectedNumber(0)));
        assert_eq!(
            parse_duration("99999999999999999999999h"),
            Err(DurationError::Overflow)
        );
    }
}
