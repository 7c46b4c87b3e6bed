//! Query durations in an HDR histogram of microseconds (1 us .. 1 h, 3
//! significant figures), as the Python twin's `hdrh` histogram.

use crate::types::LatencySummary;
use hdrhistogram::Histogram;

const LOWEST: u64 = 1;
const HIGHEST: u64 = 3_600_000_000;
const DIGITS: u8 = 3;

pub struct Latency {
    histogram: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    /// # Panics
    /// Never: the bounds are valid constants.
    #[must_use]
    pub fn new() -> Self {
        Latency {
            histogram: Histogram::new_with_bounds(LOWEST, HIGHEST, DIGITS)
                .expect("valid histogram bounds"),
        }
    }

    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "`as` truncates toward zero and saturates, like Python's int() then the clamp"
    )]
    pub fn record(&mut self, seconds: f64) {
        let micros = ((seconds * 1e6) as u64).clamp(LOWEST, HIGHEST);
        self.histogram.saturating_record(micros);
    }

    /// Count, nearest-rank quantiles and maximum, in seconds.
    #[must_use]
    pub fn summary(&self) -> LatencySummary {
        #[allow(
            clippy::cast_precision_loss,
            reason = "values are at most HIGHEST (3.6e9 us), exact in an f64"
        )]
        fn seconds(micros: u64) -> f64 {
            micros as f64 / 1e6
        }
        let h = &self.histogram;
        let samples = h.len();
        if samples == 0 {
            return LatencySummary::default();
        }
        LatencySummary {
            samples,
            p50: seconds(h.value_at_quantile(0.50)),
            p95: seconds(h.value_at_quantile(0.95)),
            p99: seconds(h.value_at_quantile(0.99)),
            max: seconds(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_all_zero() {
        assert_eq!(Latency::new().summary(), LatencySummary::default());
    }

    #[test]
    fn clamps_and_reports_quantiles() {
        let mut latency = Latency::new();
        latency.record(-1.0);
        latency.record(1e9);
        for ms in 1..=100 {
            latency.record(f64::from(ms) / 1000.0);
        }
        let LatencySummary {
            samples,
            p50,
            p95,
            p99,
            max,
        } = latency.summary();
        assert_eq!(samples, 102);
        // ceil(0.5 * 102) = 51st value: 50 ms, as its highest equivalent.
        assert!((0.05..0.0501).contains(&p50), "{p50}");
        assert!(p95 > 0.09 && p95 < 0.1, "{p95}");
        assert!((0.099..=0.1001).contains(&p99), "{p99}");
        assert!((3600.0..3604.0).contains(&max), "{max}");
    }
}
