//! What an encrypted file records about its source, so that
//! `--overwrite if-changed` can tell whether the source changed since:
//! its size and mtime, as two pairs of the message's encryption context
//! (stored in clear, authenticated by the header tag, so nobody without the
//! data key can alter them). Files have no other name for their source:
//! the context never holds a path (see README "Directories").

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

use crate::envelope::context::RESERVED_PREFIX;
use crate::envelope::EncryptionContext;

/// Encryption-context key of the source's size in bytes (decimal).
pub const SIZE_KEY: &str = "envarc-source-size";
/// Encryption-context key of the source's mtime: `SECONDS.NANOSECONDS`
/// (nine digits) since the Unix epoch, in UTC.
pub const MTIME_KEY: &str = "envarc-source-mtime";

/// A modification time to the nanosecond.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Time {
    pub sec: i64,
    pub nsec: u32,
}

/// The size and mtime of a file: what "changed" means here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub size: u64,
    pub mtime: Time,
}

impl Stamp {
    pub fn of(md: &Metadata) -> Stamp {
        Stamp {
            size: md.size(),
            mtime: Time {
                sec: md.mtime(),
                nsec: md.mtime_nsec().clamp(0, 999_999_999) as u32,
            },
        }
    }
}

fn format_time(t: Time) -> String {
    format!("{}.{:09}", t.sec, t.nsec)
}

fn parse_time(s: &str) -> Option<Time> {
    let (sec, nsec) = s.split_once('.')?;
    if nsec.len() != 9 || !nsec.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(Time {
        sec: sec.parse().ok()?,
        nsec: nsec.parse().ok()?,
    })
}

/// Adds the pairs that record `stamp` to a message's context.
pub fn add_stamp(ctx: &mut EncryptionContext, stamp: Stamp) {
    ctx.insert(SIZE_KEY.into(), stamp.size.to_string());
    ctx.insert(MTIME_KEY.into(), format_time(stamp.mtime));
}

/// The stamp a context records, if it records a well-formed one.
pub fn recorded(ctx: &EncryptionContext) -> Option<Stamp> {
    let size = ctx.get(SIZE_KEY)?;
    if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(Stamp {
        size: size.parse().ok()?,
        mtime: parse_time(ctx.get(MTIME_KEY)?)?,
    })
}

/// The pairs a user asked for with `-c`: the context without the recorded
/// stamp and without the SDK's reserved `aws-crypto-` pairs.
pub fn user_pairs(ctx: &EncryptionContext) -> EncryptionContext {
    ctx.iter()
        .filter(|(k, _)| {
            k.as_str() != SIZE_KEY && k.as_str() != MTIME_KEY && !k.starts_with(RESERVED_PREFIX)
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Refuses `-c` pairs that would clash with the recorded stamp.
pub fn check_user_context(ctx: &EncryptionContext) -> Result<(), String> {
    for k in [SIZE_KEY, MTIME_KEY] {
        if ctx.contains_key(k) {
            return Err(format!(
                "encryption context key '{k}' is set by envarc for every file of a tree; choose another key"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_survives_the_context() {
        let stamp = Stamp {
            size: 123,
            mtime: Time {
                sec: 1_700_000_000,
                nsec: 42,
            },
        };
        let mut ctx = EncryptionContext::new();
        ctx.insert("team".into(), "ops".into());
        add_stamp(&mut ctx, stamp);
        assert_eq!(ctx[MTIME_KEY], "1700000000.000000042");
        assert_eq!(recorded(&ctx), Some(stamp));
        let user = user_pairs(&ctx);
        assert_eq!(user.len(), 1);
        assert_eq!(user["team"], "ops");
        assert!(check_user_context(&user).is_ok());
        assert!(check_user_context(&ctx).is_err());
    }

    #[test]
    fn malformed_stamps_are_not_records() {
        for (size, mtime) in [
            ("", "1.000000000"),
            ("-1", "1.000000000"),
            ("1", "1.5"),
            ("1", "x.000000000"),
            ("1", "1"),
            ("+1", "1.000000000"),
        ] {
            let mut ctx = EncryptionContext::new();
            ctx.insert(SIZE_KEY.into(), size.into());
            ctx.insert(MTIME_KEY.into(), mtime.into());
            assert_eq!(recorded(&ctx), None, "{size} {mtime}");
        }
        assert_eq!(recorded(&EncryptionContext::new()), None);
        let mut ctx = EncryptionContext::new();
        ctx.insert(SIZE_KEY.into(), "1".into());
        ctx.insert(MTIME_KEY.into(), "-5.000000001".into());
        assert_eq!(recorded(&ctx).unwrap().mtime.sec, -5);
    }
}
