//! Durations taken from PodSpec fields (grace periods, probe timings, deadlines). They are
//! outside input of up to `i64::MAX` seconds, which overflows `Instant + Duration` and
//! timestamp arithmetic: every such field goes through [`spec_seconds`] first.

use std::time::Duration;

/// The longest duration a spec field is taken as: ten years. Upstream has no explicit cap (Go's
/// `time.Duration` wraps past ~292 years); any wait this long already means "never".
pub const MAX_SPEC_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A spec field's seconds as a duration: negative values are zero, huge ones are
/// [`MAX_SPEC_DURATION`], so adding it to any clock reading cannot overflow.
pub fn spec_seconds(seconds: i64) -> Duration {
    Duration::from_secs(seconds.clamp(0, MAX_SPEC_DURATION.as_secs() as i64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_seconds_clamps_both_ends() {
        assert_eq!(spec_seconds(-5), Duration::ZERO);
        assert_eq!(spec_seconds(30), Duration::from_secs(30));
        assert_eq!(spec_seconds(i64::MAX), MAX_SPEC_DURATION);
        // Adding the largest value to a clock reading does not overflow.
        let _ = std::time::Instant::now() + spec_seconds(i64::MAX);
        assert!(jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::try_from(spec_seconds(i64::MAX)).unwrap())
            .is_ok());
    }
}
