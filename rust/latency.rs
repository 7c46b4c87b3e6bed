//! Query durations in an HDR histogram of microseconds (1 us .. 1 h, 3
//! significant figures), as the Python twin's `hdrh` histogram.

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

/// (count, p50, p95, p99, max) in seconds.
pub type Summary = (u64, f64, f64, f64, f64);

impl Latency {
    pub fn new() -> Self {
        Latency {
            histogram: Histogram::new_with_bounds(LOWEST, HIGHEST, DIGITS)
                .expect("valid histogram bounds"),
        }
    }

    pub fn record(&mut self, seconds: f64) {
        // `as` truncates toward zero (and saturates), like Python's int().
        let micros = ((seconds * 1e6) as u64).clamp(LOWEST, HIGHEST);
        self.histogram.saturating_record(micros);
    }

    pub fn summary(&self) -> Summary {
        let h = &self.histogram;
        let count = h.len();
        if count == 0 {
            return (0, 0.0, 0.0, 0.0, 0.0);
        }
        (
            count,
            h.value_at_quantile(0.50) as f64 / 1e6,
            h.value_at_quantile(0.95) as f64 / 1e6,
            h.value_at_quantile(0.99) as f64 / 1e6,
            h.max() as f64 / 1e6,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_all_zero() {
        assert_eq!(Latency::new().summary(), (0, 0.0, 0.0, 0.0, 0.0));
    }

    #[test]
    fn clamps_and_reports_quantiles() {
        let mut latency = Latency::new();
        latency.record(-1.0);
        latency.record(1e9);
        for ms in 1..=100 {
            latency.record(ms as f64 / 1000.0);
        }
        let (count, p50, p95, p99, max) = latency.summary();
        assert_eq!(count, 102);
        // ceil(0.5 * 102) = 51st value: 50 ms, as its highest equivalent.
        assert!((0.05..0.0501).contains(&p50), "{p50}");
        assert!(p95 > 0.09 && p95 < 0.1, "{p95}");
        assert!((0.099..=0.1001).contains(&p99), "{p99}");
        assert!((3600.0..3604.0).contains(&max), "{max}");
    }
}
