//! Parsers for command-line values: `key=value`, durations, sizes, offset specs.

use std::time::Duration;

/// `key=value`, for `-c` and `--set`.
pub fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("expected key=value, got {s:?}")),
    }
}

/// A duration such as `500ms`, `5s`, `10m`, `6h`, `30d` (a bare number is milliseconds).
pub fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("expected a duration such as 500ms, 5s, 6h or 30d, got {s:?}"))?;
    let ms = match unit.trim() {
        "" | "ms" => n,
        "s" => n * 1000,
        "m" | "min" => n * 60_000,
        "h" => n * 3_600_000,
        "d" => n * 86_400_000,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} in {s:?}; use ms, s, m, h or d"
            ))
        }
    };
    Ok(Duration::from_millis(ms))
}

/// A byte size such as `16384`, `64KiB`, `1MiB`, `2GB`.
pub fn size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("expected a size such as 16384, 64KiB or 1MiB, got {s:?}"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "k" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {s:?}; use B, KiB, MiB, GiB, KB, MB or GB"
            ))
        }
    };
    n.checked_mul(mult)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| format!("the size {s:?} is too large"))
}

/// Where `consume` starts: `start`, `end`, an offset, or `@TIMESTAMP_MS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    Start,
    End,
    Offset(i64),
    Timestamp(i64),
}

pub fn offset_spec(s: &str) -> Result<OffsetSpec, String> {
    let bad = || format!("expected start, end, an offset or @TIMESTAMP_MS, got {s:?}");
    match s {
        "start" | "earliest" | "beginning" => Ok(OffsetSpec::Start),
        "end" | "latest" => Ok(OffsetSpec::End),
        _ => match s.strip_prefix('@') {
            Some(ts) => ts.parse().map(OffsetSpec::Timestamp).map_err(|_| bad()),
            None => match s.parse::<i64>() {
                Ok(n) if n >= 0 => Ok(OffsetSpec::Offset(n)),
                _ => Err(bad()),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations_sizes_and_offsets() {
        assert_eq!(duration("5ms").unwrap(), Duration::from_millis(5));
        assert_eq!(duration("30d").unwrap(), Duration::from_secs(30 * 86400));
        assert_eq!(duration("250").unwrap(), Duration::from_millis(250));
        assert!(duration("5 parsecs")
            .unwrap_err()
            .contains("unknown duration unit"));
        assert_eq!(size("1MiB").unwrap(), 1 << 20);
        assert_eq!(size("16384").unwrap(), 16384);
        assert!(size("-3").is_err());
        assert_eq!(offset_spec("start").unwrap(), OffsetSpec::Start);
        assert_eq!(offset_spec("42").unwrap(), OffsetSpec::Offset(42));
        assert_eq!(
            offset_spec("@1700000000000").unwrap(),
            OffsetSpec::Timestamp(1700000000000)
        );
        assert!(offset_spec("-1").is_err());
        assert!(offset_spec("@soon").is_err());
    }

    #[test]
    fn key_values_need_an_equals_sign() {
        assert_eq!(
            key_value("retention.ms=1000").unwrap(),
            ("retention.ms".into(), "1000".into())
        );
        assert!(key_value("retention.ms").unwrap_err().contains("key=value"));
        assert!(key_value("=5").is_err());
    }
}

/// A retention limit: a duration (`30d`, `6h`, `forever`) or a size (`500GiB`, `unlimited`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionValue {
    /// Milliseconds; -1 for forever.
    Time(i64),
    /// Bytes; -1 for unlimited.
    Size(i64),
}

pub fn retention_value(s: &str) -> Result<RetentionValue, String> {
    let s = s.trim();
    match s {
        "forever" => return Ok(RetentionValue::Time(-1)),
        "unlimited" => return Ok(RetentionValue::Size(-1)),
        _ => {}
    }
    let unit_at = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| {
        format!("{s:?} has no unit; give a duration (30d, 6h, 15m) or a size (500GiB, 10MB), or forever / unlimited")
    })?;
    if unit_at == 0 {
        return Err(format!("{s:?} is not a duration or a size; e.g. 30d, 6h, 500GiB (negative values are not allowed)"));
    }
    let unit = &s[unit_at..];
    if matches!(unit, "ms" | "s" | "m" | "min" | "h" | "d") {
        return duration(s).map(|d| RetentionValue::Time(d.as_millis() as i64));
    }
    size(s)
        .map(|b| RetentionValue::Size(b as i64))
        .map_err(|_| format!("{s:?} is not a duration or a size; units: ms, s, m, h, d or B, KiB, MiB, GiB, KB, MB, GB"))
}

#[cfg(test)]
mod retention_tests {
    use super::*;

    #[test]
    fn retention_values_need_units() {
        assert_eq!(
            retention_value("30d").unwrap(),
            RetentionValue::Time(30 * 86_400_000)
        );
        assert_eq!(
            retention_value("500GiB").unwrap(),
            RetentionValue::Size(500 << 30)
        );
        assert_eq!(
            retention_value("forever").unwrap(),
            RetentionValue::Time(-1)
        );
        assert_eq!(
            retention_value("unlimited").unwrap(),
            RetentionValue::Size(-1)
        );
        assert!(retention_value("1000").unwrap_err().contains("no unit"));
        assert!(retention_value("-5d").unwrap_err().contains("negative"));
        assert!(retention_value("5 weeks").is_err());
    }
}
