//! One load run's outcome, the same for both designs: what was sent, what came back and when,
//! what failed or never came back, and the latencies of all, critical and routine studies.

use serde::Serialize;

use crate::stats::{steady_rate, Summary};

/// What happened to one study.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// When it was due to be sent (epoch ms): latency counts from here.
    pub sent_ms: f64,
    /// When its answer (triage decision, HTTP response) or its failure came (epoch ms);
    /// `None`: nothing came before the run gave up waiting.
    pub finished_ms: Option<f64>,
    /// Answered successfully.
    pub ok: bool,
    /// Failed by the client's deadline.
    pub timed_out: bool,
    pub critical: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadResult {
    pub design: String,
    pub phase: String,
    /// Offered load, studies per second (`null` for a flood or a closed loop).
    pub offered_per_s: Option<f64>,
    pub sending_s: f64,
    pub sent: usize,
    pub completed: usize,
    /// Failed with an answer (HTTP error, connection refused, publish error).
    pub errors: usize,
    /// Failed by the client deadline.
    pub timeouts: usize,
    /// Never answered while the run waited.
    pub lost: usize,
    /// Completions per second from the first send to the last completion.
    pub achieved_per_s: Option<f64>,
    /// Completions per second between the 10th and 90th percentile completion times.
    pub steady_per_s: Option<f64>,
    pub latency_ms: Summary,
    pub critical_latency_ms: Summary,
    pub routine_latency_ms: Summary,
    /// From the end of sending to the last answer or failure.
    pub drain_s: Option<f64>,
    /// Kept up: at least 99% answered, none failed or lost.
    pub sustained: bool,
}

impl LoadResult {
    pub fn from_outcomes(
        design: &str,
        phase: &str,
        offered_per_s: Option<f64>,
        outcomes: &[Outcome],
    ) -> LoadResult {
        let first_sent = outcomes
            .iter()
            .map(|o| o.sent_ms)
            .fold(f64::INFINITY, f64::min);
        let last_sent = outcomes
            .iter()
            .map(|o| o.sent_ms)
            .fold(f64::NEG_INFINITY, f64::max);
        let ok: Vec<&Outcome> = outcomes.iter().filter(|o| o.ok).collect();
        let done: Vec<f64> = ok.iter().filter_map(|o| o.finished_ms).collect();
        let last_done = done.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let last_finished = outcomes
            .iter()
            .filter_map(|o| o.finished_ms)
            .fold(f64::NEG_INFINITY, f64::max);
        let lat = |pick: &dyn Fn(&Outcome) -> bool| -> Summary {
            let v: Vec<f64> = ok
                .iter()
                .filter(|o| pick(o))
                .filter_map(|o| o.finished_ms.map(|f| f - o.sent_ms))
                .collect();
            Summary::of(&v)
        };
        let span_s = (last_done - first_sent) / 1e3;
        let mut r = LoadResult {
            design: design.into(),
            phase: phase.into(),
            offered_per_s,
            sending_s: ((last_sent - first_sent) / 1e3).max(0.0),
            sent: outcomes.len(),
            completed: ok.len(),
            errors: outcomes
                .iter()
                .filter(|o| !o.ok && !o.timed_out && o.finished_ms.is_some())
                .count(),
            timeouts: outcomes.iter().filter(|o| o.timed_out).count(),
            lost: outcomes.iter().filter(|o| o.finished_ms.is_none()).count(),
            achieved_per_s: (span_s > 0.0).then(|| ok.len() as f64 / span_s),
            steady_per_s: steady_rate(&done),
            latency_ms: lat(&|_| true),
            critical_latency_ms: lat(&|o| o.critical),
            routine_latency_ms: lat(&|o| !o.critical),
            drain_s: last_finished
                .is_finite()
                .then(|| ((last_finished - last_sent) / 1e3).max(0.0)),
            sustained: false,
        };
        r.sustained = r.errors + r.timeouts + r.lost == 0 && r.completed * 100 >= r.sent * 99;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_latencies() {
        let o = |sent: f64, fin: Option<f64>, ok: bool, timed_out: bool, critical: bool| Outcome {
            sent_ms: sent,
            finished_ms: fin,
            ok,
            timed_out,
            critical,
        };
        let r = LoadResult::from_outcomes(
            "x",
            "p",
            Some(2.0),
            &[
                o(0.0, Some(100.0), true, false, true),
                o(500.0, Some(800.0), true, false, false),
                o(1000.0, Some(3000.0), false, true, false),
                o(1500.0, None, false, false, false),
            ],
        );
        assert_eq!(
            (r.sent, r.completed, r.timeouts, r.lost, r.errors),
            (4, 2, 1, 1, 0)
        );
        assert_eq!(r.critical_latency_ms.p50, Some(100.0));
        assert_eq!(r.routine_latency_ms.p50, Some(300.0));
        assert_eq!(r.drain_s, Some(1.5));
        assert_eq!(r.sending_s, 1.5);
        assert!(!r.sustained);
    }
}
