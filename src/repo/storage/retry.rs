//! How remote stores retry: every request that fails in a way that may pass
//! (HTTP 5xx, 429, a reset or refused connection, a timeout, a dead ssh
//! session) is tried again after an exponential, jittered pause, up to a
//! bounded number of attempts; then the last error is returned, never
//! swallowed. An error that will not pass (not found, permission denied, a
//! name that exists) is returned at once.

use std::io;
use std::time::{Duration, Instant};

/// The retry bound of one request.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: usize,
    /// Pause before the second attempt; it doubles each time up to `max_delay`.
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 8 attempts, pauses of 0.25, 0.5, 1, 2, 4, 8, 8 s (each jittered
    /// down by up to half): at most 24 s of waiting between attempts, plus
    /// the attempts themselves (each bounded by the request timeout).
    fn default() -> Self {
        RetryPolicy {
            attempts: 8,
            first_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// The pause after failed attempt `n` (1-based), jittered to between
    /// half and all of the nominal pause.
    pub fn delay(&self, n: usize) -> Duration {
        let nominal = self
            .first_delay
            .saturating_mul(1u32 << (n.saturating_sub(1)).min(16))
            .min(self.max_delay);
        let jitter = rand::random::<f64>() * 0.5;
        nominal.mul_f64(1.0 - jitter)
    }

    /// Longest total pause between attempts (for documentation and tests).
    pub fn max_total_delay(&self) -> Duration {
        (1..self.attempts)
            .map(|n| {
                self.first_delay
                    .saturating_mul(1u32 << (n - 1).min(16))
                    .min(self.max_delay)
            })
            .sum()
    }
}

/// What one failed attempt means.
pub enum Failure {
    /// May pass: try again (after the pause).
    Transient(io::Error),
    /// Will not pass: return it now.
    Final(io::Error),
}

/// Runs `attempt` (given the attempt number, from 1) until it succeeds, fails
/// finally, or the attempts run out; the error then says how many were made.
pub fn retry<T>(
    policy: &RetryPolicy,
    what: &str,
    mut attempt: impl FnMut(usize) -> Result<T, Failure>,
) -> io::Result<T> {
    let start = Instant::now();
    let mut n = 1;
    loop {
        match attempt(n) {
            Ok(v) => return Ok(v),
            Err(Failure::Final(e)) => return Err(e),
            Err(Failure::Transient(e)) if n >= policy.attempts => {
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "{what}: {e} (gave up after {n} attempts in {:.1} s)",
                        start.elapsed().as_secs_f64()
                    ),
                ))
            }
            Err(Failure::Transient(_)) => {
                std::thread::sleep(policy.delay(n));
                n += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_and_stay_bounded() {
        let p = RetryPolicy::default();
        assert_eq!(p.max_total_delay(), Duration::from_millis(23_750));
        for n in 1..20 {
            let d = p.delay(n);
            assert!(d <= p.max_delay && d >= p.first_delay / 2, "{n}: {d:?}");
        }
    }

    #[test]
    fn transient_failures_are_retried_then_returned() {
        let p = RetryPolicy {
            attempts: 3,
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        };
        let mut calls = 0;
        let r: io::Result<()> = retry(&p, "reading x", |_| {
            calls += 1;
            Err(Failure::Transient(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "reset",
            )))
        });
        let e = r.unwrap_err();
        assert_eq!(calls, 3);
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        assert!(e.to_string().contains("after 3 attempts"), "{e}");
        let mut calls = 0;
        let r = retry(&p, "x", |n| {
            calls += 1;
            if n < 2 {
                Err(Failure::Transient(io::Error::other("503")))
            } else {
                Ok(n)
            }
        });
        assert_eq!((r.unwrap(), calls), (2, 2));
        let r: io::Result<()> = retry(&p, "x", |_| {
            Err(Failure::Final(io::Error::from(io::ErrorKind::NotFound)))
        });
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::NotFound);
    }
}
