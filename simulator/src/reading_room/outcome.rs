//! What a run measures per policy: time to read (acquisition → read finished) for studies with
//! a critical finding (ground truth) and the rest, the share of critical studies read within 30
//! and 60 minutes, reader utilisation, the queue per hour; and, across the cap sweep, the
//! Pareto frontier of critical mean gain over FIFO against the non-critical maximum wait.

use serde::Serialize;

use super::engine::{Read, RoomPolicy};
use super::profile::{Arrival, MINUTE};

/// Time to read of a group of studies, in minutes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct WaitSummary {
    pub studies: usize,
    pub mean_min: f64,
    pub p90_min: f64,
    pub max_min: f64,
}

impl WaitSummary {
    pub fn of(mut minutes: Vec<f64>) -> Self {
        if minutes.is_empty() {
            return WaitSummary::default();
        }
        minutes.sort_by(f64::total_cmp);
        let n = minutes.len();
        let p90 = minutes[((n as f64 * 0.9).ceil() as usize).clamp(1, n) - 1];
        WaitSummary {
            studies: n,
            mean_min: minutes.iter().sum::<f64>() / n as f64,
            p90_min: p90,
            max_min: minutes[n - 1],
        }
    }
}

/// One policy's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyOutcome {
    pub policy: String,
    pub room_policy: RoomPolicy,
    pub critical: WaitSummary,
    pub non_critical: WaitSummary,
    pub critical_within_30_min: f64,
    pub critical_within_60_min: f64,
    /// Reader busy time / staffed reader time within the horizon.
    pub utilisation: f64,
    /// Studies read after at least one escalation.
    pub escalated_reads: usize,
    /// 1 − critical mean / FIFO's critical mean.
    pub critical_mean_gain_vs_fifo: f64,
    /// Non-critical max wait / FIFO's non-critical max wait.
    pub non_critical_max_vs_fifo: f64,
    /// Open studies at each hour of the horizon, all sites together.
    pub queue_by_hour: Vec<usize>,
    /// With an outage: the studies acquired from its start to `OUTAGE_TAIL` after its end.
    pub outage_window: Option<WindowOutcome>,
    pub unread: usize,
}

/// Minutes from acquisition to read finished of the studies `keep` takes, those with a
/// critical finding and the rest.
fn waits(
    arrivals: &[Arrival],
    critical: &dyn Fn(&Arrival) -> bool,
    reads: &[Read],
    keep: impl Fn(&Arrival) -> bool,
) -> (Vec<f64>, Vec<f64>) {
    let (mut crit, mut rest) = (Vec::new(), Vec::new());
    for r in reads {
        let a = &arrivals[r.arrival];
        if keep(a) {
            let minutes = (r.finished_at - a.at) as f64 / MINUTE as f64;
            if critical(a) { &mut crit } else { &mut rest }.push(minutes);
        }
    }
    (crit, rest)
}

/// Summarises one policy's reads (`reads` holds every site's).
#[allow(clippy::too_many_arguments)]
pub fn outcome(
    policy: &RoomPolicy,
    arrivals: &[Arrival],
    critical: &dyn Fn(&Arrival) -> bool,
    reads: &[Read],
    utilisation: f64,
    queue_by_hour: Vec<usize>,
    unread: usize,
) -> PolicyOutcome {
    let (crit, rest) = waits(arrivals, critical, reads, |_| true);
    let within = |m: f64| {
        if crit.is_empty() {
            0.0
        } else {
            crit.iter().filter(|&&x| x <= m).count() as f64 / crit.len() as f64
        }
    };
    PolicyOutcome {
        policy: policy.label(),
        room_policy: *policy,
        critical_within_30_min: within(30.0),
        critical_within_60_min: within(60.0),
        critical: WaitSummary::of(crit),
        non_critical: WaitSummary::of(rest),
        utilisation,
        escalated_reads: reads.iter().filter(|r| r.escalations > 0).count(),
        critical_mean_gain_vs_fifo: 0.0,
        non_critical_max_vs_fifo: 1.0,
        queue_by_hour,
        unread,
        outage_window: None,
    }
}

/// Time to read of the studies acquired within a window of the run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WindowOutcome {
    pub from: i64,
    pub to: i64,
    pub critical: WaitSummary,
    pub non_critical: WaitSummary,
}

/// The waits of the studies acquired in `from..to` (`reads` holds every site's).
pub fn window(
    arrivals: &[Arrival],
    critical: &dyn Fn(&Arrival) -> bool,
    reads: &[Read],
    from: i64,
    to: i64,
) -> WindowOutcome {
    let (crit, rest) = waits(arrivals, critical, reads, |a| (from..to).contains(&a.at));
    WindowOutcome {
        from,
        to,
        critical: WaitSummary::of(crit),
        non_critical: WaitSummary::of(rest),
    }
}

/// Fills the comparisons with FIFO in every outcome.
pub fn compare_with(fifo: &PolicyOutcome, outcomes: &mut [PolicyOutcome]) {
    for o in outcomes {
        if fifo.critical.mean_min > 0.0 {
            o.critical_mean_gain_vs_fifo = 1.0 - o.critical.mean_min / fifo.critical.mean_min;
        }
        if fifo.non_critical.max_min > 0.0 {
            o.non_critical_max_vs_fifo = o.non_critical.max_min / fifo.non_critical.max_min;
        }
    }
}

/// One cap setting on the frontier.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ParetoPoint {
    pub cap_scale: f64,
    pub critical_mean_gain_vs_fifo: f64,
    pub non_critical_max_min: f64,
}

/// The cap settings no other setting beats on both gain (higher) and non-critical max wait
/// (lower), by increasing max wait.
pub fn pareto_frontier(outcomes: &[PolicyOutcome]) -> Vec<ParetoPoint> {
    let points: Vec<ParetoPoint> = outcomes
        .iter()
        .filter_map(|o| match o.room_policy {
            RoomPolicy::AiTiers {
                cap_scale: Some(s), ..
            } => Some(ParetoPoint {
                cap_scale: s,
                critical_mean_gain_vs_fifo: o.critical_mean_gain_vs_fifo,
                non_critical_max_min: o.non_critical.max_min,
            }),
            _ => None,
        })
        .collect();
    let mut front: Vec<ParetoPoint> = points
        .iter()
        .filter(|p| {
            !points.iter().any(|q| {
                q.critical_mean_gain_vs_fifo >= p.critical_mean_gain_vs_fifo
                    && q.non_critical_max_min <= p.non_critical_max_min
                    && (q.critical_mean_gain_vs_fifo > p.critical_mean_gain_vs_fifo
                        || q.non_critical_max_min < p.non_critical_max_min)
            })
        })
        .copied()
        .collect();
    front.sort_by(|a, b| a.non_critical_max_min.total_cmp(&b.non_critical_max_min));
    front.dedup();
    front
}

/// The goal: critical mean time to read at least `min_gain` below FIFO and the
/// non-critical max wait within `max_wait_tolerance` of FIFO's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GoalCheck {
    pub min_gain: f64,
    pub max_wait_tolerance: f64,
    /// Policies that meet it.
    pub met_by: Vec<String>,
    /// Of those, the one with the largest gain.
    pub best: Option<String>,
}

pub fn goal_check(outcomes: &[PolicyOutcome], min_gain: f64, tolerance: f64) -> GoalCheck {
    let meets: Vec<&PolicyOutcome> = outcomes
        .iter()
        .filter(|o| matches!(o.room_policy, RoomPolicy::AiTiers { .. }))
        .filter(|o| {
            o.critical_mean_gain_vs_fifo >= min_gain
                && o.non_critical_max_vs_fifo <= 1.0 + tolerance
        })
        .collect();
    GoalCheck {
        min_gain,
        max_wait_tolerance: tolerance,
        met_by: meets.iter().map(|o| o.policy.clone()).collect(),
        best: meets
            .iter()
            .max_by(|a, b| {
                a.critical_mean_gain_vs_fifo
                    .total_cmp(&b.critical_mean_gain_vs_fifo)
            })
            .map(|o| o.policy.clone()),
    }
}

/// The plain-text table of a run's outcomes.
pub fn table(outcomes: &[PolicyOutcome]) -> String {
    let mut s = format!(
        "{:<28} {:>6} {:>8} {:>8} {:>8} {:>6} {:>6} {:>8} {:>8} {:>8} {:>7} {:>7}\n",
        "policy",
        "util",
        "crit_mn",
        "crit_p90",
        "crit_max",
        "<=30m",
        "<=60m",
        "rest_mn",
        "rest_p90",
        "rest_max",
        "gain",
        "max/ff"
    );
    for o in outcomes {
        s.push_str(&format!(
            "{:<28} {:>6.3} {:>8.1} {:>8.1} {:>8.1} {:>6.3} {:>6.3} {:>8.1} {:>8.1} {:>8.1} {:>7.3} {:>7.3}\n",
            o.policy,
            o.utilisation,
            o.critical.mean_min,
            o.critical.p90_min,
            o.critical.max_min,
            o.critical_within_30_min,
            o.critical_within_60_min,
            o.non_critical.mean_min,
            o.non_critical.p90_min,
            o.non_critical.max_min,
            o.critical_mean_gain_vs_fifo,
            o.non_critical_max_vs_fifo,
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_percentiles() {
        let s = WaitSummary::of((1..=10).map(f64::from).collect());
        assert_eq!(s.studies, 10);
        assert_eq!(s.mean_min, 5.5);
        assert_eq!(s.p90_min, 9.0);
        assert_eq!(s.max_min, 10.0);
        assert_eq!(WaitSummary::of(vec![]), WaitSummary::default());
    }
}
