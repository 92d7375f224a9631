//! The target rate over the day: flat, or the bundle's learned time-of-day
//! distribution scaled to the configured mean.
//!
//! The profile's times of day are those of the training data's timestamps as
//! read (CIDDS-001 records the capture site's local time); the daemon applies
//! them in the host's local time, so that busy hours stay busy hours.

use super::config::RateProfile;

/// Relative flow counts in equal slots of the day (24 hours, 96 quarter hours,
/// ...; slot 0 starts at midnight), as a bundle records them; any positive scale.
pub type DayProfile = Vec<f64>;

/// Why a diurnal schedule cannot be built.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScheduleError {
    /// The profile is `diurnal` but the bundle has no time-of-day distribution.
    #[error("rate.profile = \"diurnal\" needs a model bundle with a time-of-day profile, and this one has none; use profile = \"flat\"")]
    NoProfile,
    /// The bundle's weights are missing, negative, not finite or all zero.
    #[error(
        "the bundle's time-of-day profile is unusable (weights must be finite, >= 0, not all 0)"
    )]
    BadWeights,
}

/// Flows per second as a function of the local time of day.
#[derive(Clone, Debug, PartialEq)]
pub struct RateSchedule {
    mean_flows_per_s: f64,
    /// Multipliers with mean 1, one per slot of the day; `None` for a flat rate.
    factor: Option<Vec<f64>>,
}

impl RateSchedule {
    /// A schedule for `profile` with daily mean `mean_flows_per_s` (0: unlimited).
    pub fn new(
        mean_flows_per_s: f64,
        profile: RateProfile,
        weights: Option<&[f64]>,
    ) -> Result<RateSchedule, ScheduleError> {
        let factor = match profile {
            RateProfile::Flat => None,
            RateProfile::Diurnal => {
                let weights = weights.ok_or(ScheduleError::NoProfile)?;
                Some(normalise(weights)?)
            }
        };
        Ok(RateSchedule {
            mean_flows_per_s,
            factor,
        })
    }

    /// Whether the rate is unlimited (as fast as the generator allows).
    pub fn unlimited(&self) -> bool {
        self.mean_flows_per_s == 0.0
    }

    /// The target at `seconds_of_day` (0 to 86400, local time), flows per second.
    ///
    /// Between slot midpoints the factor is interpolated linearly (and cyclically
    /// across midnight), so the rate never jumps at a slot boundary and the day's
    /// mean equals the configured mean exactly.
    pub fn flows_per_s_at(&self, seconds_of_day: f64) -> f64 {
        let Some(factor) = &self.factor else {
            return self.mean_flows_per_s;
        };
        let slots = factor.len();
        let position = (seconds_of_day / 86_400.0 * slots as f64 - 0.5).rem_euclid(slots as f64);
        let below = position.floor() as usize % slots;
        let above = (below + 1) % slots;
        let t = position - position.floor();
        self.mean_flows_per_s * (factor[below] * (1.0 - t) + factor[above] * t)
    }
}

/// Scales `weights` to mean 1.
fn normalise(weights: &[f64]) -> Result<Vec<f64>, ScheduleError> {
    if weights.is_empty() || weights.iter().any(|w| !w.is_finite() || *w < 0.0) {
        return Err(ScheduleError::BadWeights);
    }
    let mean = weights.iter().sum::<f64>() / weights.len() as f64;
    if mean <= 0.0 {
        return Err(ScheduleError::BadWeights);
    }
    Ok(weights.iter().map(|w| w / mean).collect())
}

/// Seconds since local midnight for a wall-clock time.
pub fn local_seconds_of_day(now: chrono::DateTime<chrono::Local>) -> f64 {
    use chrono::Timelike;
    f64::from(now.num_seconds_from_midnight()) + f64::from(now.nanosecond() % 1_000_000_000) / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day_mean(schedule: &RateSchedule) -> f64 {
        let steps = 86_400;
        (0..steps)
            .map(|s| schedule.flows_per_s_at(s as f64 + 0.5))
            .sum::<f64>()
            / steps as f64
    }

    #[test]
    fn flat_is_constant() {
        let s = RateSchedule::new(2000.0, RateProfile::Flat, None).unwrap();
        assert_eq!(s.flows_per_s_at(0.0), 2000.0);
        assert_eq!(s.flows_per_s_at(50_000.0), 2000.0);
    }

    #[test]
    fn diurnal_follows_the_weights_and_keeps_the_mean() {
        let mut weights = [1.0; 24];
        weights[14] = 5.0;
        weights[3] = 0.0;
        let s = RateSchedule::new(1000.0, RateProfile::Diurnal, Some(&weights[..])).unwrap();
        let scale = 1000.0 / (27.0 / 24.0);
        assert!((s.flows_per_s_at(14.5 * 3600.0) - 5.0 * scale).abs() < 1e-6);
        assert!(s.flows_per_s_at(3.5 * 3600.0).abs() < 1e-6);
        assert!((day_mean(&s) - 1000.0).abs() < 0.01, "{}", day_mean(&s));
    }

    #[test]
    fn diurnal_is_continuous_across_midnight() {
        let mut weights = [1.0; 24];
        weights[23] = 3.0;
        weights[0] = 1.0;
        let s = RateSchedule::new(100.0, RateProfile::Diurnal, Some(&weights[..])).unwrap();
        let before = s.flows_per_s_at(86_399.999);
        let after = s.flows_per_s_at(0.0);
        assert!((before - after).abs() < 0.01, "{before} vs {after}");
    }

    #[test]
    fn quarter_hour_profiles_work_too() {
        let mut weights = vec![1.0; 96];
        weights[40] = 9.0; // 10:00 to 10:15
        let s = RateSchedule::new(100.0, RateProfile::Diurnal, Some(&weights)).unwrap();
        let scale = 100.0 / (104.0 / 96.0);
        assert!((s.flows_per_s_at(10.125 * 3600.0) - 9.0 * scale).abs() < 1e-6);
        assert!((day_mean(&s) - 100.0).abs() < 0.01);
    }

    #[test]
    fn diurnal_needs_usable_weights() {
        let err = RateSchedule::new(1.0, RateProfile::Diurnal, None).unwrap_err();
        assert_eq!(err, ScheduleError::NoProfile);
        let err = RateSchedule::new(1.0, RateProfile::Diurnal, Some(&[0.0; 24][..])).unwrap_err();
        assert_eq!(err, ScheduleError::BadWeights);
        let mut nan = [1.0; 24];
        nan[5] = f64::NAN;
        assert!(RateSchedule::new(1.0, RateProfile::Diurnal, Some(&nan[..])).is_err());
    }
}
