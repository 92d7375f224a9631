//! The rate pacer: decides how many flows may go out now, handed `now`.
//!
//! The pacer reads no clock. Its caller passes a monotonic time in nanoseconds
//! (from any origin) to every call, which makes it exact to test with simulated
//! time. Credit accrues continuously at the target rate, so a caller that asks
//! whenever [`Pacer::ready_at_ns`] says sends small groups every 2.5 ms (or
//! single flows, below 400 flows/s) rather than a second's worth at once. Credit the caller could
//! not use (the source had nothing to send, or the caller woke late) is capped
//! at a few milliseconds' worth so that a stall is never repaid by a burst;
//! what is cut off is counted as shortfall, the sign that the source cannot
//! keep up.

const NS_PER_S: u128 = 1_000_000_000;

/// One flow's worth of credit: credit is kept in flow-nanoseconds per second so
/// that integer arithmetic holds any rate exactly.
const UNITS_PER_FLOW: u128 = NS_PER_S;

/// How fast flows may go out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PaceSettings {
    /// Target rate in flows per second; 0 sends as fast as the source delivers.
    pub rate_flows_per_s: u64,
    /// Flows released together, back to back; 0 (the default) spreads them
    /// evenly, in groups of 2.5 ms worth.
    pub burst_flows: u64,
}

impl PaceSettings {
    /// A smooth pace at `rate_flows_per_s` (0 = unlimited).
    pub fn rate(rate_flows_per_s: u64) -> PaceSettings {
        PaceSettings {
            rate_flows_per_s,
            burst_flows: 0,
        }
    }
}

/// A credit-based rate limiter (a token bucket with a small bucket).
#[derive(Clone, Debug)]
pub struct Pacer {
    settings: PaceSettings,
    /// Credit in flow units (`UNITS_PER_FLOW` per flow).
    credit_units: u128,
    /// Most credit that may be held; more is shortfall.
    cap_units: u128,
    /// Smallest grant worth waking up for, flows.
    min_grant_flows: u64,
    last_ns: u64,
    shortfall_units: u128,
    granted_flows: u64,
}

impl Pacer {
    /// A pacer starting at `now_ns` with one group's worth of credit, so the first
    /// flows go out at once.
    pub fn new(settings: PaceSettings, now_ns: u64) -> Pacer {
        let mut pacer = Pacer {
            settings,
            credit_units: 0,
            cap_units: 0,
            min_grant_flows: 1,
            last_ns: now_ns,
            shortfall_units: 0,
            granted_flows: 0,
        };
        pacer.configure(settings);
        pacer.credit_units = u128::from(pacer.min_grant_flows) * UNITS_PER_FLOW;
        pacer
    }

    /// The settings in force.
    pub fn settings(&self) -> PaceSettings {
        self.settings
    }

    /// Whether the pacer lets everything through (rate 0).
    pub fn is_unlimited(&self) -> bool {
        self.settings.rate_flows_per_s == 0
    }

    /// Changes the rate (and burst) from `now_ns` on; credit earned so far at the
    /// old rate is kept up to the new cap.
    pub fn set_settings(&mut self, settings: PaceSettings, now_ns: u64) {
        self.accrue(now_ns);
        self.configure(settings);
        self.credit_units = self.credit_units.min(self.cap_units);
    }

    /// How many of `wanted` flows may be sent at `now_ns`; the caller sends
    /// exactly that many (or returns the unused part with nothing: it is lost).
    pub fn grant(&mut self, now_ns: u64, wanted: u64) -> u64 {
        if self.is_unlimited() {
            self.granted_flows += wanted;
            return wanted;
        }
        self.accrue(now_ns);
        let available = u64::try_from(self.credit_units / UNITS_PER_FLOW).unwrap_or(u64::MAX);
        if available < self.min_grant_flows.min(wanted) {
            return 0;
        }
        let granted = available.min(wanted);
        self.credit_units -= u128::from(granted) * UNITS_PER_FLOW;
        self.granted_flows += granted;
        granted
    }

    /// The earliest time (not before `now_ns`) at which a call to [`Pacer::grant`]
    /// for `wanted` flows returns something; sleep until then.
    pub fn ready_at_ns(&self, now_ns: u64, wanted: u64) -> u64 {
        let now_ns = now_ns.max(self.last_ns);
        if self.is_unlimited() || wanted == 0 {
            return now_ns;
        }
        let needed_units = u128::from(self.min_grant_flows.min(wanted)) * UNITS_PER_FLOW;
        let elapsed_ns = u128::from(now_ns - self.last_ns);
        let rate = u128::from(self.settings.rate_flows_per_s);
        let credit_then = self.credit_units + rate * elapsed_ns;
        if credit_then >= needed_units {
            return now_ns;
        }
        let wait_ns = (needed_units - credit_then).div_ceil(rate);
        now_ns.saturating_add(u64::try_from(wait_ns).unwrap_or(u64::MAX))
    }

    /// Flows that could have gone out but did not because the caller had none
    /// ready (or asked too late): the source is not keeping up.
    pub fn shortfall_flows(&self) -> u64 {
        u64::try_from(self.shortfall_units / UNITS_PER_FLOW).unwrap_or(u64::MAX)
    }

    /// Flows granted since the pacer was made.
    pub fn granted_flows(&self) -> u64 {
        self.granted_flows
    }

    /// The smallest group the pacer releases (the burst size, or 2.5 ms worth
    /// when smooth).
    pub fn min_grant_flows(&self) -> u64 {
        self.min_grant_flows
    }

    fn configure(&mut self, settings: PaceSettings) {
        self.settings = settings;
        let rate = settings.rate_flows_per_s;
        // Smooth: 2.5 ms worth at a time, so that messages carry several
        // records even at low rates while a one-second window stays within
        // 0.25 % of the rate.
        self.min_grant_flows = if settings.burst_flows > 0 {
            settings.burst_flows
        } else {
            (rate / 400).max(1)
        };
        // Up to 5 ms of unused credit may be caught up (scheduler jitter); more
        // would break the 1 % one-second window, so it is written off instead.
        let cap_flows = (rate / 200).max(2 * self.min_grant_flows);
        self.cap_units = u128::from(cap_flows) * UNITS_PER_FLOW;
    }

    fn accrue(&mut self, now_ns: u64) {
        if now_ns <= self.last_ns {
            return;
        }
        let elapsed_ns = u128::from(now_ns - self.last_ns);
        self.last_ns = now_ns;
        self.credit_units += u128::from(self.settings.rate_flows_per_s) * elapsed_ns;
        if self.credit_units > self.cap_units {
            self.shortfall_units += self.credit_units - self.cap_units;
            self.credit_units = self.cap_units;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;

    /// A caller with an endless supply that sleeps until the pacer is ready and
    /// wakes up to `max_jitter_ns` late; returns (time, flows) of every grant.
    fn simulate(settings: PaceSettings, run_ns: u64, max_jitter_ns: u64) -> Vec<(u64, u64)> {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut pacer = Pacer::new(settings, 0);
        let mut now = 0;
        let mut grants = Vec::new();
        while now < run_ns {
            let granted = pacer.grant(now, u64::MAX);
            if granted > 0 {
                grants.push((now, granted));
            }
            now = pacer.ready_at_ns(now, u64::MAX) + rng.random_range(0..=max_jitter_ns);
        }
        grants
    }

    /// The fewest and most flows granted in any window of `window_ns` that lies
    /// inside `[from_ns, to_ns]`: windows starting at each grant and ending at each grant.
    fn window_extremes(
        grants: &[(u64, u64)],
        window_ns: u64,
        from_ns: u64,
        to_ns: u64,
    ) -> (u64, u64) {
        let mut prefix = vec![0u64];
        for &(_, n) in grants {
            prefix.push(prefix.last().copied().unwrap_or(0) + n);
        }
        let count_in = |start: u64, end: u64| {
            let lo = grants.partition_point(|&(t, _)| t < start);
            let hi = grants.partition_point(|&(t, _)| t < end);
            prefix[hi] - prefix[lo]
        };
        let mut low = u64::MAX;
        let mut high = 0;
        for &(t, _) in grants {
            for start in [t, t + 1, t.saturating_sub(window_ns) + 1] {
                if start >= from_ns && start + window_ns <= to_ns {
                    let c = count_in(start, start + window_ns);
                    low = low.min(c);
                    high = high.max(c);
                }
            }
        }
        (low, high)
    }

    fn assert_one_second_windows_within_one_percent(rate: u64) {
        let grants = simulate(PaceSettings::rate(rate), 4 * S, 300_000);
        let (low, high) = window_extremes(&grants, S, 0, 4 * S);
        let tolerance = rate / 100;
        assert!(
            low + tolerance >= rate && high <= rate + tolerance,
            "rate {rate}: one-second windows held {low}..{high} flows"
        );
    }

    #[test]
    fn one_second_windows_hold_within_one_percent_at_1k() {
        assert_one_second_windows_within_one_percent(1_000);
    }

    #[test]
    fn one_second_windows_hold_within_one_percent_at_100k() {
        assert_one_second_windows_within_one_percent(100_000);
    }

    #[test]
    fn one_second_windows_hold_within_one_percent_at_1m() {
        assert_one_second_windows_within_one_percent(1_000_000);
    }

    #[test]
    fn odd_rates_hold_too() {
        for rate in [1_337, 33_333, 999_999, 2_500_000] {
            assert_one_second_windows_within_one_percent(rate);
        }
    }

    #[test]
    fn smooth_pace_has_no_bursts() {
        let rate = 100_000;
        let grants = simulate(PaceSettings::rate(rate), 2 * S, 100_000);
        let biggest = grants.iter().map(|&(_, n)| n).max().unwrap_or(0);
        assert!(
            biggest <= rate / 200,
            "a grant of {biggest} flows at {rate}/s"
        );

        // Every 10 ms window carries about 1 % of a second's flows: four groups
        // of 250, give or take one.
        let (low, high) = window_extremes(&grants, 10 * MS, 0, 2 * S);
        assert!(
            low >= 700 && high <= 1_300,
            "10 ms windows held {low}..{high} flows"
        );
    }

    #[test]
    fn burst_size_groups_flows() {
        let settings = PaceSettings {
            rate_flows_per_s: 10_000,
            burst_flows: 500,
        };
        let grants = simulate(settings, 2 * S, 0);
        assert!(grants.iter().all(|&(_, n)| n == 500), "{:?}", &grants[..5]);
        let gaps: Vec<u64> = grants.windows(2).map(|w| w[1].0 - w[0].0).collect();
        assert!(gaps.iter().all(|&g| g == 50 * MS), "gaps {:?}", &gaps[..5]);
    }

    #[test]
    fn unlimited_grants_everything() {
        let mut pacer = Pacer::new(PaceSettings::rate(0), 0);
        assert_eq!(pacer.grant(0, 1_000_000), 1_000_000);
        assert_eq!(pacer.ready_at_ns(5, 10), 5);
        assert_eq!(pacer.shortfall_flows(), 0);
    }

    #[test]
    fn a_slow_source_is_reported_and_not_repaid_by_a_burst() {
        let rate = 10_000;
        let mut pacer = Pacer::new(PaceSettings::rate(rate), 0);
        // The source delivers one flow every millisecond: a tenth of the rate.
        let mut now = 0;
        while now < S {
            now += MS;
            assert!(pacer.grant(now, 1) <= 1);
        }
        let shortfall = pacer.shortfall_flows();
        assert!(
            (8_900..=9_000).contains(&shortfall),
            "shortfall {shortfall}"
        );

        // Once the source recovers, no more than the capped credit goes at once.
        let burst = pacer.grant(now, u64::MAX);
        assert!(burst <= rate / 200, "caught up {burst} flows at once");
    }

    #[test]
    fn a_source_that_keeps_up_has_no_shortfall() {
        let grants = simulate(PaceSettings::rate(50_000), S, 200_000);
        let total: u64 = grants.iter().map(|&(_, n)| n).sum();
        assert!(
            (49_900..=50_100).contains(&total),
            "{total} flows in one second"
        );
        let mut pacer = Pacer::new(PaceSettings::rate(50_000), 0);
        let mut now = 0;
        while now < S {
            pacer.grant(now, u64::MAX);
            now = pacer.ready_at_ns(now, u64::MAX);
        }
        assert_eq!(pacer.shortfall_flows(), 0);
    }

    #[test]
    fn rate_changes_apply_from_now() {
        let mut pacer = Pacer::new(PaceSettings::rate(1_000), 0);
        let mut now = 0;
        let mut sent_first = 0;
        while now < S {
            sent_first += pacer.grant(now, u64::MAX);
            now = pacer.ready_at_ns(now, u64::MAX);
        }
        pacer.set_settings(PaceSettings::rate(10_000), now);
        let mut sent_second = 0;
        while now < 2 * S {
            sent_second += pacer.grant(now, u64::MAX);
            now = pacer.ready_at_ns(now, u64::MAX);
        }
        assert!((995..=1_005).contains(&sent_first), "{sent_first}");
        assert!((9_950..=10_050).contains(&sent_second), "{sent_second}");
    }

    #[test]
    fn time_going_backwards_grants_nothing_extra() {
        let mut pacer = Pacer::new(PaceSettings::rate(1_000), 10 * S);
        let first = pacer.grant(10 * S, u64::MAX);
        assert_eq!(pacer.grant(5 * S, u64::MAX), 0);
        assert_eq!(first, pacer.min_grant_flows());
        assert!(pacer.ready_at_ns(5 * S, 1) >= 10 * S);
    }
}
