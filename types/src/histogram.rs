//! A latency histogram that actors update from any thread and the node's metrics endpoint reads: fixed,
//! roughly exponential buckets from 1 ms to 60 s, each an atomic counter (Prometheus' cumulative `le` buckets
//! are derived when read). Quantiles come from the difference of two snapshots, so a reader can ask for the
//! p50 of the last second as well as of the whole run.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the buckets, in milliseconds; a last, unbounded bucket catches the rest.
pub const BUCKET_BOUNDS_MS: [u64; 22] =
    [1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 200, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 5000, 10_000, 60_000];

const BUCKETS: usize = BUCKET_BOUNDS_MS.len() + 1;

#[derive(Debug, Default)]
pub struct LatencyHistogram {
    counts: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

/// The counts of a histogram at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Per bucket (not cumulative), the last one unbounded.
    pub counts: [u64; BUCKETS],
    pub sum_us: u64,
}

impl LatencyHistogram {
    pub fn observe(&self, latency: Duration) {
        let us = latency.as_micros();
        let bucket = BUCKET_BOUNDS_MS.partition_point(|&bound| (bound as u128) * 1000 < us);
        self.counts[bucket].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us.min(u64::MAX as u128) as u64, Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: std::array::from_fn(|i| self.counts[i].load(Relaxed)),
            sum_us: self.sum_us.load(Relaxed),
        }
    }
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Rebuilds a snapshot from Prometheus' cumulative buckets (as [`Self::cumulative_seconds`] gives them,
    /// in any order) and the sum in seconds; `None` when the bounds are not this histogram's.
    pub fn from_cumulative(buckets: &[(f64, u64)], sum_seconds: f64) -> Option<HistogramSnapshot> {
        let mut buckets = buckets.to_vec();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        if buckets.len() != BUCKETS {
            return None;
        }
        let mut snapshot = HistogramSnapshot { counts: [0; BUCKETS], sum_us: (sum_seconds * 1e6) as u64 };
        let mut below = 0;
        for (i, &(bound, cumulative)) in buckets.iter().enumerate() {
            let expected = BUCKET_BOUNDS_MS.get(i).map_or(f64::INFINITY, |&ms| ms as f64 / 1e3);
            if (bound - expected).abs() > 1e-9 && bound != expected {
                return None;
            }
            snapshot.counts[i] = cumulative.checked_sub(below)?;
            below = cumulative;
        }
        Some(snapshot)
    }

    /// What was observed between `earlier` and this snapshot.
    pub fn since(&self, earlier: &HistogramSnapshot) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: std::array::from_fn(|i| self.counts[i].saturating_sub(earlier.counts[i])),
            sum_us: self.sum_us.saturating_sub(earlier.sum_us),
        }
    }

    /// Adds another histogram's counts (several nodes' latencies as one distribution).
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.sum_us += other.sum_us;
    }

    /// The `q`-quantile (0..=1), interpolated linearly inside its bucket; `None` when nothing was observed.
    /// Above the last bound it reports that bound (the histogram cannot say more).
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut seen = 0u64;
        for (i, &count) in self.counts.iter().enumerate() {
            if count > 0 && (seen + count) as f64 >= rank {
                let low = if i == 0 { 0 } else { BUCKET_BOUNDS_MS[i - 1] } as f64;
                let Some(&high) = BUCKET_BOUNDS_MS.get(i) else {
                    return Some(Duration::from_millis(low as u64));
                };
                let within = (rank - seen as f64) / count as f64;
                return Some(Duration::from_secs_f64((low + (high as f64 - low) * within) / 1e3));
            }
            seen += count;
        }
        None
    }

    /// The mean, `None` when nothing was observed.
    pub fn mean(&self) -> Option<Duration> {
        let count = self.count();
        (count > 0).then(|| Duration::from_micros(self.sum_us / count))
    }

    /// Prometheus' cumulative buckets: (upper bound in seconds, observations at or below it), the last bound
    /// infinite.
    pub fn cumulative_seconds(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        let mut buckets = Vec::with_capacity(BUCKETS);
        for (i, count) in self.counts.iter().enumerate() {
            total += count;
            let bound = BUCKET_BOUNDS_MS.get(i).map_or(f64::INFINITY, |&ms| ms as f64 / 1e3);
            buckets.push((bound, total));
        }
        buckets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_fall_in_the_right_bucket() {
        let h = LatencyHistogram::default();
        assert_eq!(h.snapshot().quantile(0.5), None);
        for ms in [3, 4, 4, 300, 310, 320, 330, 340, 350, 70_000] {
            h.observe(Duration::from_millis(ms));
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 10);
        let p50 = s.quantile(0.5).unwrap();
        assert!(p50 > Duration::from_millis(300) && p50 <= Duration::from_millis(400), "{p50:?}");
        assert!(s.quantile(0.1).unwrap() <= Duration::from_millis(5));
        assert_eq!(s.quantile(1.0), Some(Duration::from_secs(60)), "beyond the last bound: the bound");
        assert_eq!(s.cumulative_seconds().last(), Some(&(f64::INFINITY, 10)));
        let sum = s.sum_us as f64 / 1e6;
        assert_eq!(HistogramSnapshot::from_cumulative(&s.cumulative_seconds(), sum), Some(s.clone()));
        assert_eq!(HistogramSnapshot::from_cumulative(&s.cumulative_seconds()[1..], sum), None);
    }

    #[test]
    fn since_and_merge() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_millis(10));
        let first = h.snapshot();
        h.observe(Duration::from_millis(900));
        let delta = h.snapshot().since(&first);
        assert_eq!(delta.count(), 1);
        assert!(delta.quantile(0.5).unwrap() > Duration::from_millis(750));
        let mut all = first.clone();
        all.merge(&delta);
        assert_eq!(all, h.snapshot());
        assert_eq!(all.mean(), Some(Duration::from_millis(455)));
    }
}
