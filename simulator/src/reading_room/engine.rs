//! The discrete-event reading room: one site's studies arrive on a simulated clock, go through
//! triage's own [`Worklist`] (prediction → decision → `apply`, escalations when a wait cap
//! passes), and idle readers on shift take the top of the site's list. A reader claims a study
//! when the read starts (the study leaves the open list then, as an opened study does in a real
//! worklist); its time to read ends when the read ends.

use std::collections::BTreeMap;

use cxrflow_contracts::{EpochMillis, OrderPriority, RadiologistReport};
use cxrflow_triage::policy::{PerTier, TriagePolicy};
use cxrflow_triage::worklist::{OrderingMode, ReportOutcome, Worklist};

use super::model::{prediction, study_uid, PoolStudy};
use super::profile::{Arrival, SiteProfile, CLOCK_ORIGIN, HOUR};

/// How the worklist is ordered.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RoomPolicy {
    /// Oldest first.
    Fifo,
    /// STAT, then URGENT, then the rest (triage's path for studies the AI does not rank), each
    /// by deadline.
    OrderPriority,
    /// Triage's tiers from the model's scores; `cap_scale` multiplies the triage defaults' wait
    /// caps (none: no anti-starvation escalation at all), of every tier or, `routine_only`, of
    /// ROUTINE and NOT_ASSESSABLE alone (CRITICAL and URGENT keep the defaults).
    AiTiers {
        cap_scale: Option<f64>,
        routine_only: bool,
    },
}

impl RoomPolicy {
    pub fn label(&self) -> String {
        match self {
            RoomPolicy::Fifo => "fifo".into(),
            RoomPolicy::OrderPriority => "order_priority".into(),
            RoomPolicy::AiTiers {
                cap_scale: None, ..
            } => "ai_tiers_no_caps".into(),
            RoomPolicy::AiTiers {
                cap_scale: Some(s),
                routine_only: false,
            } => format!("ai_tiers_caps_x{s}"),
            RoomPolicy::AiTiers {
                cap_scale: Some(s),
                routine_only: true,
            } => format!("ai_tiers_routine_caps_x{s}"),
        }
    }

    /// Triage's policy with this room policy's wait caps.
    pub fn triage_policy(&self) -> TriagePolicy {
        let mut p = TriagePolicy::default();
        let never = i64::MAX / 4;
        p.wait_cap_ms = match self {
            RoomPolicy::AiTiers {
                cap_scale: Some(s),
                routine_only,
            } => {
                let c = p.wait_cap_ms;
                let f = |v: i64| (v as f64 * s.max(0.0)) as i64;
                let g = |v: i64| if *routine_only { v } else { f(v) };
                PerTier {
                    critical: g(c.critical),
                    urgent: g(c.urgent),
                    routine: f(c.routine),
                    not_assessable: f(c.not_assessable),
                }
            }
            _ => PerTier {
                critical: never,
                urgent: never,
                routine: never,
                not_assessable: never,
            },
        };
        p
    }

    /// What the worklist is told about an arrival: FIFO hides order priority and AI (every
    /// study then has the same deadline offset, so deadline order is arrival order),
    /// order-priority hides the AI.
    fn presentation(&self, priority: OrderPriority) -> (bool, OrderPriority) {
        match self {
            RoomPolicy::Fifo => (false, OrderPriority::Routine),
            RoomPolicy::OrderPriority => (false, priority),
            RoomPolicy::AiTiers { .. } => (true, priority),
        }
    }
}

/// One read: who read which arrival, when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    pub arrival: usize,
    pub site: usize,
    pub reader: usize,
    pub started_at: EpochMillis,
    pub finished_at: EpochMillis,
    /// Escalations the study had when it was read.
    pub escalations: i32,
}

/// One site's run under one policy.
#[derive(Debug, Clone, Default)]
pub struct SiteRun {
    pub reads: Vec<Read>,
    /// Open (unclaimed) studies at each hour boundary of the horizon.
    pub queue_by_hour: Vec<usize>,
    /// Reader busy time within the horizon, and staffed reader time within it.
    pub busy_ms: i64,
    pub staffed_ms: i64,
    /// Arrivals not read when the drain limit passed (zero unless the room is overloaded).
    pub unread: usize,
}

/// How long after the horizon the room keeps reading to clear the backlog.
const DRAIN_LIMIT: i64 = 30 * 24 * HOUR;

fn hour_of_day(t: EpochMillis) -> u32 {
    ((t - CLOCK_ORIGIN).rem_euclid(24 * HOUR) / HOUR) as u32
}

/// Runs one site: `arrivals` are that site's, sorted by the time they reach the worklist;
/// `horizon_end` closes the measured window (queue samples, utilisation). The AI policies time a
/// study acquired longer than `late_arrival_limit_ms` before it arrived from its arrival
/// (triage's `--late-arrival-limit`); FIFO and order priority, as a worklist without AI, order
/// by acquisition.
pub fn run_site(
    site: &SiteProfile,
    arrivals: &[&Arrival],
    pool: &[PoolStudy],
    policy: &RoomPolicy,
    horizon_end: EpochMillis,
    late_arrival_limit_ms: i64,
) -> SiteRun {
    let mut triage = policy.triage_policy();
    triage.late_arrival_limit_ms = match policy {
        RoomPolicy::AiTiers { .. } => late_arrival_limit_ms,
        _ => i64::MAX / 4,
    };
    let mut wl = Worklist::new(triage);
    // Reader slots: (shift index), each with the time it is busy until.
    let readers: Vec<usize> = site
        .shifts
        .iter()
        .enumerate()
        .flat_map(|(i, s)| std::iter::repeat_n(i, s.readers as usize))
        .collect();
    let mut busy_until: Vec<EpochMillis> = vec![CLOCK_ORIGIN; readers.len()];
    let by_uid: BTreeMap<String, usize> = arrivals
        .iter()
        .enumerate()
        .map(|(i, a)| (study_uid(a), i))
        .collect();
    let mut run = SiteRun::default();
    let mut next = 0;
    let mut next_sample = CLOCK_ORIGIN;
    let mut t = CLOCK_ORIGIN;
    loop {
        while next < arrivals.len() && arrivals[next].arrives_at <= t {
            let a = arrivals[next];
            let (assessable, hint) = policy.presentation(a.priority);
            let p = prediction(a, &site.name, &pool[a.study], assessable, hint);
            if let Ok(d) = wl.on_prediction(&p, a.arrives_at) {
                wl.apply(d, Some(p.predicted_at));
            }
            next += 1;
        }
        while next_sample <= t && next_sample < horizon_end {
            run.queue_by_hour.push(wl.len());
            next_sample += HOUR;
        }
        // Escalations at every event, as triage's tick would (its 10 s are finer than the gaps
        // between events only when nothing happens, and then nobody looks at the list).
        for d in wl.escalations_due(t) {
            wl.apply(d, None);
        }
        let hour = hour_of_day(t);
        for (r, &shift) in readers.iter().enumerate() {
            if busy_until[r] > t || !site.shifts[shift].covers(hour) || wl.is_empty() {
                continue;
            }
            let Some(top) = wl.ordered(None, OrderingMode::Pooled).first().map(|e| {
                (
                    e.decision.study.study_instance_uid.clone(),
                    e.decision.escalations,
                )
            }) else {
                break;
            };
            let (uid, escalations) = top;
            let a = arrivals[by_uid[&uid]];
            let report = RadiologistReport {
                report_id: format!("r-{uid}"),
                study_instance_uid: uid.clone(),
                site_id: site.name.clone(),
                reader_ref: format!("reader-{r}"),
                read_started_at: t,
                read_ended_at: t + a.read_ms,
                labels: vec![],
                tier_at_read: None,
            };
            if let ReportOutcome::Close(d) = wl.on_report(&report, t) {
                wl.apply(*d, None);
            }
            // Read studies leave the list (their tombstone), so it holds open studies only.
            wl.remove(&uid, t);
            busy_until[r] = t + a.read_ms;
            run.busy_ms += (busy_until[r].min(horizon_end) - t.min(horizon_end)).max(0);
            run.reads.push(Read {
                arrival: a.id,
                site: a.site,
                reader: r,
                started_at: t,
                finished_at: busy_until[r],
                escalations,
            });
        }
        let done = next >= arrivals.len() && wl.is_empty();
        if done && t >= horizon_end {
            break;
        }
        if t > horizon_end + DRAIN_LIMIT {
            run.unread = wl.len() + (arrivals.len() - next);
            break;
        }
        // Next event: an arrival, a reader freed, or an hour boundary (shift changes, samples).
        let next_hour = CLOCK_ORIGIN + ((t - CLOCK_ORIGIN) / HOUR + 1) * HOUR;
        let mut nt = next_hour;
        if let Some(a) = arrivals.get(next) {
            nt = nt.min(a.arrives_at);
        }
        if let Some(&b) = busy_until.iter().filter(|&&b| b > t).min() {
            nt = nt.min(b);
        }
        t = nt;
    }
    let hours = (horizon_end - CLOCK_ORIGIN) / HOUR;
    run.staffed_ms = (0..hours)
        .map(|h| site.readers_at(hour_of_day(CLOCK_ORIGIN + h * HOUR)) as i64 * HOUR)
        .sum();
    run
}
