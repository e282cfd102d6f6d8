//! The automatic rotation schedule, as AWS KMS does it, plus a stable per-key
//! offset so that many keys created together do not all rotate on one day.
//!
//! Schedule: when rotation is enabled (at creation with `--enable-rotation`, or
//! by `enable-rotation`), the *anchor* is set to that moment. Rotation `k`
//! (k = 1, 2, …) is due at `anchor + k × period + offset`, where
//! - `period` is 90..=2560 days (default 365, as in KMS);
//! - `offset` is 0..=14 whole days, fixed for a key: the first 8 bytes of
//!   HKDF-SHA-256(salt = "envarc rotation offset", IKM = the key's 16 UUID
//!   bytes, info = "v1"), read as a big-endian u64, modulo 15.
//!
//! A due rotation is carried out by the first command that opens the keyring
//! for writing after the date (or by `envarc key rotate-due`). It adds one
//! backing key and moves the anchor to the newest grid point in the past, so a
//! late rotation does not shift later ones, and rotations missed while the
//! keyring was not opened are not replayed: one new backing key catches up.
//! Changing the period keeps the anchor; disabling and re-enabling restarts it.
//! Only `Enabled` keys rotate; a disabled key that was due rotates at the first
//! write after it is enabled again. On-demand rotations do not move the schedule.

use hkdf::Hkdf;
use sha2::Sha256;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::cmk::RotationSchedule;
use crate::{Error, Result};

pub const MIN_PERIOD_DAYS: u32 = 90;
pub const MAX_PERIOD_DAYS: u32 = 2560;
pub const DEFAULT_PERIOD_DAYS: u32 = 365;
/// The per-key offset lies in `0..=MAX_OFFSET_DAYS` days.
pub const MAX_OFFSET_DAYS: u32 = 14;
/// On-demand rotations allowed per key over its lifetime (the AWS KMS quota).
pub const ON_DEMAND_LIMIT: u32 = 10;

/// The stable per-key offset in days (see the module documentation).
pub fn offset_days(key_id: &Uuid) -> u32 {
    let hk = Hkdf::<Sha256>::new(Some(b"envarc rotation offset"), key_id.as_bytes());
    let mut okm = [0u8; 8];
    hk.expand(b"v1", &mut okm)
        .expect("8 bytes is a valid HKDF-SHA-256 output length");
    (u64::from_be_bytes(okm) % (MAX_OFFSET_DAYS as u64 + 1)) as u32
}

/// Checks a rotation period given by the user.
pub fn check_period(days: u32) -> Result<u32> {
    if (MIN_PERIOD_DAYS..=MAX_PERIOD_DAYS).contains(&days) {
        Ok(days)
    } else {
        Err(Error::Usage(format!(
            "rotation period {days} days is out of range: it must be {MIN_PERIOD_DAYS} to \
             {MAX_PERIOD_DAYS} days (the default is {DEFAULT_PERIOD_DAYS})"
        )))
    }
}

/// When the next automatic rotation of `key_id` is due.
pub fn next_rotation(s: &RotationSchedule, key_id: &Uuid) -> OffsetDateTime {
    s.anchor + Duration::days(s.period_days as i64 + offset_days(key_id) as i64)
}

/// If a rotation is due at `now`, the anchor the schedule moves to: the newest
/// grid point `anchor + k × period` with `anchor + k × period + offset <= now`.
pub fn due(s: &RotationSchedule, key_id: &Uuid, now: OffsetDateTime) -> Option<OffsetDateTime> {
    if now < next_rotation(s, key_id) {
        return None;
    }
    let period = Duration::days(s.period_days as i64);
    let since = now - s.anchor - Duration::days(offset_days(key_id) as i64);
    let k = (since.whole_seconds() / period.whole_seconds()).max(1);
    Some(s.anchor + period * (k as i32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn offset_is_stable_and_spread() {
        let id = Uuid::parse_str("8c3f8f3e-2d7b-4f1e-9a51-6a0f5e3b9d11").unwrap();
        assert_eq!(offset_days(&id), offset_days(&id));
        let mut seen = [false; MAX_OFFSET_DAYS as usize + 1];
        for _ in 0..2000 {
            seen[offset_days(&Uuid::new_v4()) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s), "every offset occurs: {seen:?}");
    }

    #[test]
    fn period_bounds() {
        assert!(check_period(89).is_err());
        assert!(check_period(2561).is_err());
        assert_eq!(check_period(90).unwrap(), 90);
        assert_eq!(check_period(2560).unwrap(), 2560);
    }

    #[test]
    fn due_moves_anchor_by_whole_periods() {
        let id = Uuid::new_v4();
        let off = Duration::days(offset_days(&id) as i64);
        let a = datetime!(2030-01-01 0:00 UTC);
        let s = RotationSchedule {
            period_days: 100,
            anchor: a,
        };
        assert_eq!(next_rotation(&s, &id), a + Duration::days(100) + off);
        assert_eq!(
            due(
                &s,
                &id,
                a + Duration::days(100) + off - Duration::seconds(1)
            ),
            None
        );
        assert_eq!(
            due(&s, &id, a + Duration::days(100) + off),
            Some(a + Duration::days(100))
        );
        // Three periods late: one rotation, anchored on the newest grid point.
        assert_eq!(
            due(&s, &id, a + Duration::days(350) + off),
            Some(a + Duration::days(300))
        );
    }
}
