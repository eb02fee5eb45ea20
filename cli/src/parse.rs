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
    Ok((n * mult) as usize)
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
