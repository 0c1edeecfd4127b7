//! Throughput and latency percentiles of a load run.

use std::time::Duration;

/// What a load run measured.
#[derive(Clone, Debug)]
pub struct Summary {
    /// Completed calls per second, all callers together.
    pub per_second: f64,
    /// Median latency of one call.
    pub p50: Duration,
    /// 99th-percentile latency of one call.
    pub p99: Duration,
    /// How many calls were measured.
    pub calls: usize,
}

impl Summary {
    /// Summarizes `latencies` (in any order) collected over `elapsed`.
    pub fn of(mut latencies: Vec<Duration>, elapsed: Duration) -> Self {
        latencies.sort_unstable();
        let at = |q: f64| {
            let index = ((latencies.len() as f64 - 1.0) * q).round() as usize;
            latencies.get(index).copied().unwrap_or_default()
        };
        Self {
            per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50: at(0.50),
            p99: at(0.99),
            calls: latencies.len(),
        }
    }
}

/// The median of `values` (NaN for none).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_rates() {
        let latencies: Vec<Duration> = (1..=100).rev().map(Duration::from_micros).collect();
        let summary = Summary::of(latencies, Duration::from_secs(2));
        assert_eq!(summary.calls, 100);
        assert_eq!(summary.per_second, 50.0);
        assert_eq!(summary.p50, Duration::from_micros(51));
        assert_eq!(summary.p99, Duration::from_micros(99));
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
