//! Latency histograms with Envoy's default buckets, one writer (a worker)
//! and any number of readers (the admin API), without locks.

use zerohop_dataplane::Counter;

/// Envoy's default histogram bucket bounds, in µs (0.5 ms … 1 h).
pub const BOUNDS_US: [u64; 19] = [
    500,
    1_000,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
    300_000_000,
    600_000_000,
    1_800_000_000,
    3_600_000_000,
];

/// Samples per bucket (not cumulative; the last bucket is above every
/// bound) and their sum.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [Counter; BOUNDS_US.len() + 1],
    sum_us: Counter,
}

impl Histogram {
    /// Record one sample of `us` microseconds (the owning worker only).
    #[inline]
    pub fn record(&self, us: u64) {
        let i = BOUNDS_US.partition_point(|b| *b < us);
        if let Some(c) = self.counts.get(i) {
            c.add(1);
        }
        self.sum_us.add(us);
    }

    /// Samples per bucket: `counts[i]` are above `BOUNDS_US[i - 1]` and at
    /// most `BOUNDS_US[i]`; the last entry is above every bound.
    pub fn counts(&self) -> Vec<u64> {
        self.counts.iter().map(Counter::get).collect()
    }

    /// The sum of the samples, µs.
    pub fn sum_us(&self) -> u64 {
        self.sum_us.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_land_in_envoys_buckets() {
        let h = Histogram::default();
        for us in [0, 500, 501, 1_000, 4_000_000_000] {
            h.record(us);
        }
        let c = h.counts();
        assert_eq!(c.len(), 20);
        assert_eq!(c[0], 2, "0 and 500 µs are within 0.5 ms");
        assert_eq!(c[1], 2, "501 µs and 1 ms are within 1 ms");
        assert_eq!(c[19], 1, "above an hour");
        assert_eq!(h.sum_us(), 4_000_002_001);
    }
}
