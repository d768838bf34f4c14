//! Retry delays for events whose processing failed.
//!
//! Exponential backoff with "equal jitter": the delay for attempt `n` (1-based) is
//! `d = min(max, base * 2^(n-1))`, then a uniformly random point in `[d/2, d]`. Half the delay is
//! kept so retries never collapse to zero, and the random half spreads out events that failed
//! together (for example after a database blip) so they do not retry in lockstep.
//! See <https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/>.

use std::time::Duration;

/// Delay before retry number `attempt` (1 = the first retry, after the first failure).
///
/// `jitter` is a random sample in `[0, 1)` supplied by the caller (this crate does no I/O and owns
/// no random source); values outside are clamped. `attempt` 0 is treated as 1.
pub fn retry_delay(attempt: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(63);
    let uncapped = base.saturating_mul(2u32.saturating_pow(exponent.min(31)));
    let delay = uncapped.min(max);
    let half = delay / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(3600);

    #[test]
    fn doubles_per_attempt_within_jitter_bounds() {
        for attempt in 1..=8 {
            let full = BASE * 2u32.pow(attempt - 1);
            assert_eq!(retry_delay(attempt, BASE, MAX, 0.0), full / 2);
            assert_eq!(retry_delay(attempt, BASE, MAX, 1.0), full);
            let mid = retry_delay(attempt, BASE, MAX, 0.5);
            assert!(mid > full / 2 && mid < full);
        }
    }

    #[test]
    fn is_capped_and_never_overflows() {
        assert_eq!(retry_delay(40, BASE, MAX, 1.0), MAX);
        assert_eq!(retry_delay(u32::MAX, BASE, MAX, 1.0), MAX);
        assert_eq!(retry_delay(0, BASE, MAX, 1.0), BASE);
        assert_eq!(retry_delay(3, BASE, MAX, 7.0), BASE * 4);
    }
}
