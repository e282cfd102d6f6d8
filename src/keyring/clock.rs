//! Where the keyring gets "now" from. Rotation and deletion are scheduled in
//! days and years, so tests inject a clock they can move instead of waiting.

use std::sync::Mutex;

use time::{Duration, OffsetDateTime};

/// A source of the current time (UTC).
pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

/// The operating system's clock, truncated to whole seconds (what the keyring
/// records; sub-second precision says nothing useful about key history).
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        let now = OffsetDateTime::now_utc();
        now.replace_nanosecond(0).unwrap_or(now)
    }
}

/// A clock that stands still until a test moves it.
pub struct FixedClock(Mutex<OffsetDateTime>);

impl FixedClock {
    pub fn new(at: OffsetDateTime) -> FixedClock {
        FixedClock(Mutex::new(at))
    }

    pub fn set(&self, at: OffsetDateTime) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }

    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *t += by;
    }
}

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_clock_moves_only_when_told() {
        let t0 = time::macros::datetime!(2030-01-01 0:00 UTC);
        let c = FixedClock::new(t0);
        assert_eq!(c.now(), t0);
        c.advance(Duration::days(3));
        assert_eq!(c.now(), t0 + Duration::days(3));
        c.set(t0);
        assert_eq!(c.now(), t0);
        assert_eq!(SystemClock.now().nanosecond(), 0);
    }
}
