//! Small helpers that turn values into the text of messages and reports,
//! shared by the library (errors, report entries) and the CLI, which
//! re-exports them from `cli::fmt` (the library never depends on the CLI).

use std::time::Duration;

/// A raw-byte path or name for display (invalid UTF-8 shown as U+FFFD).
pub fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `1 file`, `2 files`.
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `1h`, `90s`: a duration as `cli::fmt::parse_duration` reads it.
pub fn fmt_duration(d: Duration) -> String {
    match d.as_secs() {
        0 => "0s".into(),
        s if s % 86400 == 0 => format!("{}d", s / 86400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}
