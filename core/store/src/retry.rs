//! How long to wait before retrying a failed job.

use rand::Rng;

/// Randomisation applied to each retry delay, so that jobs failing together (a NetSuite outage)
/// do not all come back in the same second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Exactly the exponential delay (tests, predictable schedules).
    None,
    /// Uniform in `0..=delay` ("full jitter").
    Full,
    /// Uniform in `delay ± percent%`.
    Proportional { percent: u32 },
}

/// Exponential back-off: `base_ms * factor^(attempt-1)`, capped at `max_ms`, then jittered (the
/// result never exceeds `max_ms`). The default gives 5 s, 10 s, 20 s, … up to one hour, ±20%.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base_ms: i64,
    pub max_ms: i64,
    pub factor: u32,
    pub jitter: Jitter,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base_ms: 5_000,
            max_ms: 3_600_000,
            factor: 2,
            jitter: Jitter::Proportional { percent: 20 },
        }
    }
}

impl RetryPolicy {
    /// The delay in milliseconds before the retry that follows failed attempt number `attempt`
    /// (1-based; 0 is treated as 1).
    pub fn delay<R: Rng + ?Sized>(&self, attempt: i32, rng: &mut R) -> i64 {
        let max = self.max_ms.max(0);
        let exp = u32::try_from(attempt.max(1) - 1).unwrap_or(0);
        let mult = i64::from(self.factor.max(1))
            .checked_pow(exp)
            .unwrap_or(i64::MAX);
        let raw = self.base_ms.max(0).saturating_mul(mult).min(max);
        let jittered = match self.jitter {
            Jitter::None => raw,
            Jitter::Full => rng.random_range(0..=raw),
            Jitter::Proportional { percent } => {
                let spread = raw.saturating_mul(i64::from(percent.min(100))) / 100;
                raw + rng.random_range(-spread..=spread)
            }
        };
        jittered.clamp(0, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule_doubles_from_five_seconds_and_caps_at_an_hour() {
        let p = RetryPolicy {
            jitter: Jitter::None,
            ..RetryPolicy::default()
        };
        let mut rng = rand::rng();
        let got: Vec<i64> = (1..=12).map(|a| p.delay(a, &mut rng)).collect();
        assert_eq!(
            got,
            vec![
                5_000, 10_000, 20_000, 40_000, 80_000, 160_000, 320_000, 640_000, 1_280_000,
                2_560_000, 3_600_000, 3_600_000
            ]
        );
        assert_eq!(p.delay(1_000, &mut rng), 3_600_000);
        assert_eq!(p.delay(0, &mut rng), 5_000);
    }

    #[test]
    fn jitter_stays_in_bounds() {
        let p = RetryPolicy::default();
        let mut rng = rand::rng();
        for _ in 0..1000 {
            let d = p.delay(2, &mut rng);
            assert!((8_000..=12_000).contains(&d), "{d}");
            let d = p.delay(30, &mut rng);
            assert!((2_880_000..=3_600_000).contains(&d), "{d}");
        }
        let full = RetryPolicy {
            jitter: Jitter::Full,
            ..RetryPolicy::default()
        };
        for _ in 0..1000 {
            let d = full.delay(3, &mut rng);
            assert!((0..=20_000).contains(&d), "{d}");
        }
    }
}
