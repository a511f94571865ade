//! The automatic rollback rules of a candidate version, as pure state machines fed with
//! outcomes and timestamps (no I/O, no clock of their own, so each is tested on its own):
//!
//! - [`CanaryGuard`]: the share of a canary's records that failed (NaN/Inf output or a failed
//!   model call) over a sliding window;
//! - [`LatencyRule`]: a candidate's p99 latency over a sliding window (an HDR histogram per
//!   version) above a bound for a sustained period;
//! - [`DriftRule`]: a drift/performance alert on `cxr.drift.v1` naming a candidate version with
//!   a severity or recommended action at or above the configured level.
//!
//! [`crate::auto_rollback`] turns a tripped rule into a decision on `cxr.models.v1`.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use cxrflow_contracts::{AlertState, DriftAlert, ModelRole, RecommendedAction, Severity};
use hdrhistogram::Histogram;

/// The bad-rate rule of a canary: over a sliding window, the share of the canary's records that
/// failed (NaN output or error) must stay at or below `max_bad_rate` once at least
/// `min_samples` records were seen.
#[derive(Debug)]
pub struct CanaryGuard {
    pub window: Duration,
    pub max_bad_rate: f64,
    pub min_samples: usize,
    version: String,
    events: VecDeque<(Instant, bool)>,
    tripped: bool,
}

impl CanaryGuard {
    pub fn new(window: Duration, max_bad_rate: f64, min_samples: usize) -> Self {
        CanaryGuard {
            window,
            max_bad_rate,
            min_samples,
            version: String::new(),
            events: VecDeque::new(),
            tripped: false,
        }
    }

    /// Records one canary outcome; returns the bad share once (per version) when the rule trips.
    pub fn record(&mut self, version: &str, bad: bool, now: Instant) -> Option<f64> {
        if self.version != version {
            self.version = version.to_string();
            self.events.clear();
            self.tripped = false;
        }
        self.events.push_back((now, bad));
        while self
            .events
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > self.window)
        {
            self.events.pop_front();
        }
        let n = self.events.len();
        let rate = self.events.iter().filter(|(_, b)| *b).count() as f64 / n as f64;
        if !self.tripped && n >= self.min_samples && rate > self.max_bad_rate {
            self.tripped = true;
            return Some(rate);
        }
        None
    }
}

/// Sub-windows per sliding window: the window's edge is exact to one slice.
const SLICES: u32 = 10;
/// Latencies are recorded in microseconds, 1 µs to 10 minutes, two significant digits.
const MAX_MICROS: u64 = 600_000_000;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 2).expect("static histogram bounds are valid")
}

/// One version's latencies over the sliding window: a histogram per slice plus their sum, so
/// the p99 is read without merging on every record.
struct VersionLatency {
    slices: VecDeque<(Instant, Histogram<u64>)>,
    total: Histogram<u64>,
    above_since: Option<Instant>,
    tripped: bool,
}

/// The latency rule of a candidate: trips once per version when its p99 over `window` (with at
/// least `min_samples` records in it) has stayed above `bound` for `sustain`.
pub struct LatencyRule {
    pub bound: Duration,
    pub window: Duration,
    pub sustain: Duration,
    pub min_samples: u64,
    versions: HashMap<String, VersionLatency>,
}

/// Why the latency rule tripped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyBreach {
    pub p99: Duration,
    pub above_for: Duration,
    pub samples: u64,
}

impl LatencyRule {
    /// A `bound` of zero disables the rule.
    pub fn new(bound: Duration, window: Duration, sustain: Duration, min_samples: u64) -> Self {
        LatencyRule {
            bound,
            window: window.max(Duration::from_millis(SLICES as u64)),
            sustain,
            min_samples: min_samples.max(1),
            versions: HashMap::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.bound.is_zero()
    }

    /// Records one latency of `version`; returns the breach once when the rule trips.
    pub fn record(
        &mut self,
        version: &str,
        latency: Duration,
        now: Instant,
    ) -> Option<LatencyBreach> {
        if !self.enabled() {
            return None;
        }
        let (window, slice) = (self.window, self.window / SLICES);
        let v = self
            .versions
            .entry(version.to_string())
            .or_insert_with(|| VersionLatency {
                slices: VecDeque::new(),
                total: histogram(),
                above_since: None,
                tripped: false,
            });
        while let Some((start, h)) = v.slices.front() {
            if now.saturating_duration_since(*start) < window + slice {
                break;
            }
            // Never fails: every slice's counts are part of the total.
            let _ = v.total.subtract(h);
            v.slices.pop_front();
        }
        if v.slices
            .back()
            .is_none_or(|(start, _)| now.saturating_duration_since(*start) >= slice)
        {
            v.slices.push_back((now, histogram()));
        }
        let micros = (latency.as_micros() as u64).clamp(1, MAX_MICROS);
        if let Some((_, h)) = v.slices.back_mut() {
            h.saturating_record(micros);
        }
        v.total.saturating_record(micros);
        let samples = v.total.len();
        let p99 = Duration::from_micros(v.total.value_at_quantile(0.99));
        if samples < self.min_samples || p99 <= self.bound {
            v.above_since = None;
            return None;
        }
        let since = *v.above_since.get_or_insert(now);
        let above_for = now.saturating_duration_since(since);
        if v.tripped || above_for < self.sustain {
            return None;
        }
        v.tripped = true;
        Some(LatencyBreach {
            p99,
            above_for,
            samples,
        })
    }

    /// The p99 of `version` over the window, if it has records.
    pub fn p99(&self, version: &str) -> Option<Duration> {
        self.versions
            .get(version)
            .filter(|v| !v.total.is_empty())
            .map(|v| Duration::from_micros(v.total.value_at_quantile(0.99)))
    }

    /// Forgets every version not in `serving` (withdrawn or promoted ones).
    pub fn retain(&mut self, serving: &[&str]) {
        self.versions.retain(|v, _| serving.contains(&v.as_str()));
    }
}

/// The lowest alert severity that withdraws a candidate (`off`: severity alone never does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DriftSeverityLevel {
    Off,
    Info,
    Warning,
    Critical,
}

impl DriftSeverityLevel {
    fn admits(self, s: Severity) -> bool {
        match self {
            DriftSeverityLevel::Off => false,
            DriftSeverityLevel::Info => true,
            DriftSeverityLevel::Warning => s >= Severity::Warning,
            DriftSeverityLevel::Critical => s == Severity::Critical,
        }
    }
}

/// A serving candidate as the drift rule sees it: version, role and when (epoch millis) the
/// rollout decision that staged it was taken.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub version: String,
    pub role: ModelRole,
    pub staged_at: i64,
}

/// The drift rule: a RAISED or UPDATED alert for this model naming a serving candidate's
/// version, raised after that candidate was staged, whose severity reaches `min_severity` or
/// whose recommended action is RETRAIN (with `on_retrain`), withdraws that candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriftRule {
    pub min_severity: DriftSeverityLevel,
    pub on_retrain: bool,
}

impl DriftRule {
    pub fn enabled(&self) -> bool {
        self.min_severity != DriftSeverityLevel::Off || self.on_retrain
    }

    /// The candidate `alert` withdraws, with the reason for the audit trail.
    pub fn target<'a>(
        &self,
        alert: &DriftAlert,
        model: &str,
        candidates: &'a [Candidate],
    ) -> Option<(&'a Candidate, String)> {
        if alert.state == AlertState::Resolved || alert.model_name != model {
            return None;
        }
        let meets = self.min_severity.admits(alert.severity)
            || (self.on_retrain && alert.action == RecommendedAction::Retrain);
        if !meets {
            return None;
        }
        // An alert older than the decision that staged the candidate is not evidence about
        // this staging (the version may have been withdrawn and staged again since).
        let c = candidates
            .iter()
            .find(|c| c.version == alert.model_version && alert.raised_at >= c.staged_at)?;
        let reason = format!(
            "drift alert {} on {} {:?}: {} {} = {:.4} (threshold {:.4}), severity {:?}, action {:?}",
            alert.alert_id,
            c.version,
            c.role,
            alert.channel,
            alert.signal,
            alert.value,
            alert.threshold,
            alert.severity,
            alert.action
        );
        Some((c, reason))
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
