//! Parsing and formatting helpers the command handlers share (sizes,
//! durations, raw-byte paths), so each is written once.

use std::time::Duration;

use envarc::envelope::EncryptionContext;
use envarc::{Error, Result};

pub use envarc::text::{fmt_duration, lossy, plural};

/// Parses `30s`, `5m`, `2h`, `1d`, `2w`, `1y` (365 days), plain seconds,
/// or a sum of them (`1d12h`). `m` is minutes, as everywhere in envarc (not
/// restic's months: write `30d`).
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let t = s.trim();
    let bad = || format!("'{s}' is not a duration; write e.g. 30s, 5m, 2h, 7d, 2w, 1y or 1d12h");
    if t.is_empty() {
        return Err(bad());
    }
    let mut rest = t;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(split);
        let n: u64 = num.parse().map_err(|_| bad())?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let mult = match unit {
            // A bare number is seconds, and only on its own.
            "" if total == 0 && next.is_empty() => 1,
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86400,
            "w" => 7 * 86400,
            "y" => 365 * 86400,
            "" => return Err(bad()),
            _ => return Err(format!("unknown unit in '{s}'; use s, m, h, d, w or y")),
        };
        total = n
            .checked_mul(mult)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration '{s}' is out of range"))?;
        rest = next;
    }
    Ok(Duration::from_secs(total))
}

/// Parses `16MiB`, `512k`, `1G` or plain bytes (binary units).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size; write e.g. 16MiB, 512KiB or 1048576"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("unknown size unit in '{s}'; use KiB, MiB or GiB")),
    };
    n.checked_mul(mult)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("size '{s}' is out of range"))
}

/// Human-readable bytes (binary units).
pub fn fmt_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The encryption context of `-c KEY=VALUE` pairs; a key given twice is a
/// usage error (which value was meant is not ours to guess).
pub fn context_of(pairs: &[(String, String)]) -> Result<EncryptionContext> {
    let mut ctx = EncryptionContext::new();
    for (k, v) in pairs {
        if ctx.insert(k.clone(), v.clone()).is_some() {
            return Err(Error::Usage(format!(
                "encryption context key '{k}' given twice"
            )));
        }
    }
    Ok(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
        assert_eq!(fmt_bytes(1536), "1.5 KiB");
        assert_eq!(fmt_bytes(12), "12 B");
        assert_eq!(
            parse_duration("2h"),
            Ok(std::time::Duration::from_secs(7200))
        );
        assert_eq!(fmt_duration(std::time::Duration::from_secs(90)), "90s");
    }

    #[test]
    fn durations_take_weeks_years_and_sums() {
        let d = |s| parse_duration(s).map(|d| d.as_secs());
        assert_eq!(d("90"), Ok(90));
        assert_eq!(d("2w"), Ok(14 * 86400));
        assert_eq!(d("1y"), Ok(365 * 86400));
        assert_eq!(d("1d12h"), Ok(86400 + 12 * 3600));
        assert_eq!(d("1h30m15s"), Ok(3600 + 1800 + 15));
        assert!(d("").is_err());
        assert!(d("1d12").is_err(), "a bare number after a unit");
        assert!(d("5q").unwrap_err().contains("unknown unit"));
        assert!(d("h").is_err());
        assert!(d("99999999999999999y")
            .unwrap_err()
            .contains("out of range"));
    }
}
