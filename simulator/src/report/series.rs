//! The report's time series: everything on one time axis, seconds since the run's first
//! publication, in buckets sized so a run has at most about 60 of them.

use std::collections::BTreeMap;

use serde::Serialize;

use super::auroc::{auroc, ScoredStudy};
use super::summarize;
use crate::run::lag::LagPoint;

/// Studies published and given a first triage decision in one bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThroughputPoint {
    /// Bucket start, seconds.
    pub t_s: f64,
    pub published: usize,
    pub triaged: usize,
}

/// End-to-end latency of the studies first triaged in one bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyPoint {
    pub t_s: f64,
    pub n: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistogramBin {
    pub lo_ms: f64,
    pub hi_ms: f64,
    pub count: usize,
}

/// One service's consumer lag over time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LagSeries {
    pub service: String,
    /// (seconds, records not yet committed)
    pub points: Vec<(f64, i64)>,
}

/// AUROC over all studies read up to the end of a bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AurocPoint {
    /// Bucket end, seconds.
    pub t_s: f64,
    pub n: usize,
    pub critical: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Series {
    /// Epoch milliseconds of t = 0.
    pub start_ms: i64,
    pub bucket_s: f64,
    pub throughput: Vec<ThroughputPoint>,
    pub latency: Vec<LatencyPoint>,
    pub latency_histogram: Vec<HistogramBin>,
    pub consumer_lag: Vec<LagSeries>,
    pub auroc: Vec<AurocPoint>,
}

/// What the series are computed from.
pub struct SeriesInput<'a> {
    pub start_ms: i64,
    pub end_ms: i64,
    pub published_at: &'a [i64],
    /// (published at, first decided at) per triaged study.
    pub decisions: &'a [(i64, i64)],
    pub lag: &'a [LagPoint],
    pub scored: &'a [ScoredStudy],
}

/// A round bucket width giving at most `max_buckets` buckets over `span_s`.
pub fn bucket_width(span_s: f64, max_buckets: usize) -> f64 {
    const NICE: [f64; 14] = [
        0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
    ];
    let want = span_s.max(0.0) / max_buckets.max(1) as f64;
    NICE.into_iter()
        .find(|w| *w >= want)
        .unwrap_or_else(|| (want / 3600.0).ceil() * 3600.0)
}

pub fn build(input: &SeriesInput) -> Series {
    let span_s = ((input.end_ms - input.start_ms) as f64 / 1e3).max(0.0);
    let bucket_s = bucket_width(span_s, 60);
    let n_buckets = ((span_s / bucket_s).ceil() as usize).max(1);
    let idx = |at: i64| -> usize {
        let t = (at - input.start_ms) as f64 / 1e3;
        ((t / bucket_s).floor().max(0.0) as usize).min(n_buckets - 1)
    };
    let t_of = |i: usize| i as f64 * bucket_s;

    let mut published = vec![0usize; n_buckets];
    for at in input.published_at {
        published[idx(*at)] += 1;
    }
    let mut triaged = vec![0usize; n_buckets];
    let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); n_buckets];
    for (p, d) in input.decisions {
        triaged[idx(*d)] += 1;
        latencies[idx(*d)].push((d - p) as f64);
    }
    let throughput = (0..n_buckets)
        .map(|i| ThroughputPoint {
            t_s: t_of(i),
            published: published[i],
            triaged: triaged[i],
        })
        .collect();
    let latency = latencies
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| {
            let s = summarize(l);
            LatencyPoint {
                t_s: t_of(i),
                n: s.n,
                p50_ms: s.p50_ms,
                p95_ms: s.p95_ms,
                p99_ms: s.p99_ms,
            }
        })
        .collect();
    let all: Vec<f64> = input
        .decisions
        .iter()
        .map(|(p, d)| (d - p) as f64)
        .collect();

    let mut lag: BTreeMap<&str, Vec<(f64, i64)>> = BTreeMap::new();
    for p in input.lag {
        let t = (p.at_ms - input.start_ms) as f64 / 1e3;
        for (svc, l) in &p.lag {
            lag.entry(svc.as_str()).or_default().push((t, *l));
        }
    }
    let consumer_lag = lag
        .into_iter()
        .map(|(service, points)| LagSeries {
            service: service.to_string(),
            points,
        })
        .collect();

    let mut scored: Vec<&ScoredStudy> = input.scored.iter().collect();
    scored.sort_by_key(|s| s.at_ms);
    let mut auroc_series = Vec::new();
    let mut upto = 0;
    for i in 0..n_buckets {
        let end_ms = input.start_ms + ((i + 1) as f64 * bucket_s * 1e3) as i64;
        while upto < scored.len() && scored[upto].at_ms < end_ms {
            upto += 1;
        }
        if upto == 0 {
            continue;
        }
        let pairs: Vec<(f64, bool)> = scored[..upto]
            .iter()
            .map(|s| (s.critical.1, s.critical.0))
            .collect();
        auroc_series.push(AurocPoint {
            t_s: t_of(i + 1),
            n: upto,
            critical: auroc(&pairs),
        });
    }
    Series {
        start_ms: input.start_ms,
        bucket_s,
        throughput,
        latency,
        latency_histogram: histogram(&all, 20),
        consumer_lag,
        auroc: auroc_series,
    }
}

/// `bins` equal-width bins from 0 to the largest value.
pub fn histogram(xs: &[f64], bins: usize) -> Vec<HistogramBin> {
    let Some(max) = xs.iter().copied().reduce(f64::max) else {
        return Vec::new();
    };
    let bins = bins.max(1);
    let width = (max.max(1.0) / bins as f64).ceil().max(1.0);
    let mut counts = vec![0usize; bins];
    for x in xs {
        let i = ((x.max(0.0) / width) as usize).min(bins - 1);
        counts[i] += 1;
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(i, count)| HistogramBin {
            lo_ms: i as f64 * width,
            hi_ms: (i + 1) as f64 * width,
            count,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_round_and_few() {
        assert_eq!(bucket_width(10.0, 60), 0.5);
        assert_eq!(bucket_width(100.0, 60), 2.0);
        assert_eq!(bucket_width(3_000.0, 60), 60.0);
    }

    #[test]
    fn series_count_every_study_once() {
        let published: Vec<i64> = (0..100).map(|i| 1_000 + i * 100).collect();
        let decisions: Vec<(i64, i64)> = published.iter().map(|p| (*p, p + 250)).collect();
        let scored: Vec<ScoredStudy> = (0..100)
            .map(|i| ScoredStudy {
                at_ms: 2_000 + i * 100,
                critical: (i % 2 == 0, if i % 2 == 0 { 0.9 } else { 0.1 }),
                findings: vec![],
            })
            .collect();
        let s = build(&SeriesInput {
            start_ms: 1_000,
            end_ms: 13_000,
            published_at: &published,
            decisions: &decisions,
            lag: &[],
            scored: &scored,
        });
        let (p, t): (usize, usize) = s
            .throughput
            .iter()
            .fold((0, 0), |(p, t), x| (p + x.published, t + x.triaged));
        assert_eq!((p, t), (100, 100));
        assert!(s.latency.iter().all(|l| l.p50_ms == 250.0));
        assert_eq!(
            s.latency_histogram.iter().map(|b| b.count).sum::<usize>(),
            100
        );
        let last = s.auroc.last().unwrap();
        assert_eq!((last.n, last.critical), (100, Some(1.0)));
    }
}
