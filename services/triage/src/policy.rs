//! The triage policy: how a prediction becomes a score, a tier and a deadline, and when a
//! waiting study is escalated. Pure functions of their inputs (no clock, no I/O), so the
//! ordering can be property-tested.

use std::collections::BTreeMap;

use cxrflow_contracts::{
    EpochMillis, Finding, FindingScore, OrderPriority, Prediction, StudyContext, TriageDecision,
    TriageTier,
};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
/// A modality clock this far ahead of the gateway's is worth a reason on the worklist.
const NOTED_CLOCK_SKEW_MS: i64 = 5 * MINUTE;

/// The reason a scored study carries when no age reached the AI: preprocess's age rule
/// (`--preprocess-min-age-years`) had nothing to judge, and a site that refuses such images
/// (`--preprocess-unknown-age not-assessable`) never has them scored.
pub const AGE_UNKNOWN_REASON: &str = "patient age unknown (none in the image header or the scan \
event): the AI could not check it against the model's intended age range";

/// One value per tier (SLA deadlines, wait caps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerTier {
    pub critical: i64,
    pub urgent: i64,
    pub routine: i64,
    pub not_assessable: i64,
}

impl PerTier {
    pub fn get(&self, tier: TriageTier) -> i64 {
        match tier {
            TriageTier::Critical => self.critical,
            TriageTier::Urgent => self.urgent,
            // A study waiting for its AI result is a routine study until it has one.
            TriageTier::Routine | TriageTier::AiPending => self.routine,
            TriageTier::NotAssessable => self.not_assessable,
        }
    }

    /// Parses `CRITICAL=30m,URGENT=2h,...` (units ms, s, m, h; tiers not named keep `self`).
    pub fn parse_over(mut self, spec: &str) -> Result<Self, String> {
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (tier, dur) = part
                .split_once('=')
                .ok_or_else(|| format!("expected TIER=duration, got {part:?}"))?;
            let ms = parse_duration_ms(dur.trim())?;
            match tier.trim().to_ascii_uppercase().as_str() {
                "CRITICAL" => self.critical = ms,
                "URGENT" => self.urgent = ms,
                "ROUTINE" => self.routine = ms,
                "NOT_ASSESSABLE" => self.not_assessable = ms,
                other => return Err(format!("unknown tier {other:?}")),
            }
        }
        Ok(self)
    }
}

/// `90s`, `30m`, `2h`, `1500ms` or bare milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, MINUTE)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, HOUR)
    } else {
        (s, 1)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad duration {s:?}"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("bad duration {s:?}"));
    }
    Ok((v * mult as f64) as i64)
}

/// Everything that decides a study's place in the worklist.
#[derive(Debug, Clone, PartialEq)]
pub struct TriagePolicy {
    /// Weight of each finding in the score, 0..=1; findings not listed weigh `default_weight`.
    pub weights: BTreeMap<String, f64>,
    pub default_weight: f64,
    /// Reading deadline from the start of the study's wait (`wait_start`), per tier.
    pub sla_ms: PerTier,
    /// Longest a study may wait in its tier (since `wait_start` or its last escalation) before
    /// it is escalated (anti-starvation, Baltruschat et al. 2021); an escalated study's deadline
    /// becomes the moment it started waiting, so past its cap it is read by age.
    pub wait_cap_ms: PerTier,
    /// A study acquired longer than this before it arrived (its scan event's `published_at`)
    /// is timed from its arrival, not its acquisition: it is a prior, a migrated study or the
    /// work of a modality whose clock is wrong, not a backlog the reading room is behind on,
    /// and timed from its acquisition it would arrive past every cap, escalated at once and
    /// due since then, above every CRITICAL study acquired since. A backlog within the limit
    /// (an outage's) keeps its acquisition time and is read by age once past its cap: the
    /// reading room on an outage keeps the other studies' longest wait at FIFO's that way.
    pub late_arrival_limit_ms: i64,
    /// How many findings a decision lists.
    pub top_findings: usize,
}

/// The default finding weights: findings that need action within hours weigh most.
pub fn default_weights() -> BTreeMap<String, f64> {
    [
        (Finding::Pneumothorax, 1.0),
        (Finding::PleuralEffusion, 0.9),
        (Finding::Edema, 0.9),
        (Finding::Consolidation, 0.85),
        (Finding::Pneumonia, 0.85),
        (Finding::LungLesion, 0.8),
        (Finding::EnlargedCardiomediastinum, 0.8),
        (Finding::LungOpacity, 0.5),
        (Finding::Fracture, 0.5),
        (Finding::Cardiomegaly, 0.4),
        (Finding::Atelectasis, 0.3),
        (Finding::PleuralOther, 0.3),
        (Finding::SupportDevices, 0.1),
        (Finding::NoFinding, 0.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.name().to_string(), v))
    .collect()
}

impl Default for TriagePolicy {
    fn default() -> Self {
        TriagePolicy {
            weights: default_weights(),
            default_weight: 0.3,
            sla_ms: PerTier {
                critical: 30 * MINUTE,
                urgent: 2 * HOUR,
                routine: 8 * HOUR,
                not_assessable: 8 * HOUR,
            },
            // ROUTINE at 90 min: the reading-room simulation's choice (README, "Reading room"):
            // at 85% reader load it keeps the critical studies' gain over FIFO (~60%) while the
            // others' longest wait stays within a few % of FIFO's; 6 h let it grow 2.6-fold.
            wait_cap_ms: PerTier {
                critical: 30 * MINUTE,
                urgent: 2 * HOUR,
                routine: 90 * MINUTE,
                not_assessable: 90 * MINUTE,
            },
            // Longer than any outage a reading room works its backlog off after.
            late_arrival_limit_ms: 24 * HOUR,
            top_findings: 3,
        }
    }
}

/// What the policy makes of one prediction, before escalation.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    pub tier: TriageTier,
    pub score: f64,
    pub deadline: EpochMillis,
    pub top_findings: Vec<FindingScore>,
    pub reasons: Vec<String>,
    /// Why the AI does not rank it (code, words), when the tier is NOT_ASSESSABLE.
    pub unranked: Option<Unranked>,
}

/// Why the AI does not rank a study: a stable code and the words the worklist shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unranked {
    pub code: String,
    pub reason: String,
}

impl Unranked {
    pub fn new(code: impl Into<String>, reason: impl Into<String>) -> Self {
        Unranked {
            code: code.into(),
            reason: reason.into(),
        }
    }
}

/// Urgency rank: lower reads sooner. ROUTINE, NOT_ASSESSABLE and AI_PENDING share a rank.
pub fn rank(tier: TriageTier) -> u8 {
    match tier {
        TriageTier::Critical => 0,
        TriageTier::Urgent => 1,
        TriageTier::Routine | TriageTier::NotAssessable | TriageTier::AiPending => 2,
    }
}

/// Whether the AI ranks a study in this tier (AI_PENDING and NOT_ASSESSABLE it does not).
pub fn ai_ranked(tier: TriageTier) -> bool {
    !matches!(tier, TriageTier::AiPending | TriageTier::NotAssessable)
}

/// The tier an order priority alone implies: what a worklist without AI would go by.
pub fn order_tier(hint: OrderPriority) -> TriageTier {
    match hint {
        OrderPriority::Stat => TriageTier::Critical,
        OrderPriority::Urgent => TriageTier::Urgent,
        OrderPriority::Routine => TriageTier::Routine,
    }
}

/// The reason a study the AI does not rank is placed by its order ("STAT order"), if any.
pub fn order_reason(hint: OrderPriority) -> Option<String> {
    (hint != OrderPriority::Routine).then(|| format!("{hint:?} order").to_uppercase())
}

/// The rank a decision is read at: its tier's, except that a study the AI does not rank goes by
/// its order priority (a STAT order the model could not score is still read first).
pub fn reading_rank(d: &TriageDecision) -> u8 {
    if ai_ranked(d.tier) {
        rank(d.tier)
    } else {
        rank(d.tier).min(rank(order_tier(d.study.priority_hint)))
    }
}

/// The more urgent of two tiers (ties keep `a`).
pub fn more_urgent(a: TriageTier, b: TriageTier) -> TriageTier {
    if rank(b) < rank(a) {
        b
    } else {
        a
    }
}

/// The tier an escalation moves to: one step up, CRITICAL stays CRITICAL.
pub fn escalated(tier: TriageTier) -> TriageTier {
    match tier {
        TriageTier::Critical | TriageTier::Urgent => TriageTier::Critical,
        TriageTier::Routine | TriageTier::NotAssessable | TriageTier::AiPending => {
            TriageTier::Urgent
        }
    }
}

/// Maps `probability / threshold` to 0..1 (0.5 at the operating threshold), so a finding far
/// above its threshold outranks one barely over it, whatever the thresholds' scales.
fn exceedance(f: &FindingScore) -> f64 {
    let p = if f.probability.is_finite() {
        f.probability.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let t = if f.threshold.is_finite() && f.threshold > 0.0 {
        f.threshold
    } else {
        0.5
    };
    let r = p / t;
    r / (1.0 + r)
}

/// Whether a finding is over its operating threshold.
pub(crate) fn above(f: &FindingScore) -> bool {
    f.probability.is_finite() && f.threshold.is_finite() && f.probability >= f.threshold
}

impl TriagePolicy {
    pub fn weight(&self, finding: &str) -> f64 {
        self.weights
            .get(finding)
            .copied()
            .unwrap_or(self.default_weight)
            .clamp(0.0, 1.0)
    }

    fn contribution(&self, f: &FindingScore) -> f64 {
        self.weight(&f.finding) * exceedance(f)
    }

    /// Scores, tiers and dates one prediction.
    pub fn assess(&self, p: &Prediction) -> Assessment {
        let mut reasons = Vec::new();
        let score = p
            .findings
            .iter()
            .map(|f| self.contribution(f))
            .fold(0.0, f64::max);
        let critical_hits: Vec<&FindingScore> = p
            .findings
            .iter()
            .filter(|f| f.critical && above(f))
            .collect();
        let urgent_hits: Vec<&FindingScore> = p
            .findings
            .iter()
            .filter(|f| f.urgent && !f.critical && above(f))
            .collect();
        // Findings over their thresholds that raise no tier (cardiomegaly, support devices...):
        // said in the reasons, never a reason to read the study sooner.
        let other_hits: Vec<&str> = p
            .findings
            .iter()
            .filter(|f| !f.critical && !f.urgent && above(f) && f.finding != "No Finding")
            .map(|f| f.finding.as_str())
            .collect();
        let invalid_output =
            p.findings.is_empty() || p.findings.iter().any(|f| !f.probability.is_finite());
        let mut unranked = None;
        let by_findings = if !p.assessable {
            let why = Unranked::new(
                p.not_assessable_code
                    .clone()
                    .unwrap_or_else(|| "model.not_assessable".to_string()),
                not_assessable_reason(p),
            );
            reasons.push(format!("not assessable by the model: {}", why.reason));
            unranked = Some(why);
            TriageTier::NotAssessable
        } else if invalid_output {
            // A NaN is not a zero: never let a broken output rank a study as routine. The study
            // stays on the worklist, unranked by the model, for a person to read.
            let why = Unranked::new(
                "model.invalid_output",
                "model output invalid (missing or non-finite probabilities)",
            );
            reasons.push(why.reason.clone());
            unranked = Some(why);
            TriageTier::NotAssessable
        } else if !critical_hits.is_empty() {
            for f in &critical_hits {
                reasons.push(format!(
                    "critical finding {} {:.2} >= threshold {:.2}",
                    f.finding, f.probability, f.threshold
                ));
            }
            TriageTier::Critical
        } else if !urgent_hits.is_empty() {
            for f in &urgent_hits {
                reasons.push(format!(
                    "urgent finding {} {:.2} >= threshold {:.2}",
                    f.finding, f.probability, f.threshold
                ));
            }
            TriageTier::Urgent
        } else if !other_hits.is_empty() {
            reasons.push(format!(
                "no CRITICAL or URGENT finding above its threshold (also above: {})",
                other_hits.join(", ")
            ));
            TriageTier::Routine
        } else {
            reasons.push("no finding above its operating threshold".to_string());
            TriageTier::Routine
        };
        let tier = match p.study.priority_hint {
            // The AI does not rank it: the tier says so, and the order priority alone places it
            // (reading_rank, unranked_deadline), as a worklist without AI would.
            _ if !ai_ranked(by_findings) => {
                reasons.extend(order_reason(p.study.priority_hint));
                by_findings
            }
            OrderPriority::Stat => {
                if by_findings != TriageTier::Critical {
                    reasons.push("STAT order".to_string());
                }
                TriageTier::Critical
            }
            OrderPriority::Urgent if rank(by_findings) > rank(TriageTier::Urgent) => {
                reasons.push("URGENT order".to_string());
                TriageTier::Urgent
            }
            _ => by_findings,
        };
        let mut top: Vec<&FindingScore> = p
            .findings
            .iter()
            .filter(|f| self.weight(&f.finding) > 0.0)
            .collect();
        top.sort_by(|a, b| {
            self.contribution(b)
                .total_cmp(&self.contribution(a))
                .then_with(|| a.finding.cmp(&b.finding))
        });
        reasons.extend(self.late_arrival_reason(&p.study));
        if ai_ranked(tier) && p.study.patient_age_years.is_none() {
            reasons.push(AGE_UNKNOWN_REASON.to_string());
        }
        let deadline = if ai_ranked(tier) {
            self.wait_start(&p.study)
                .saturating_add(self.sla_ms.get(tier))
        } else {
            self.unranked_deadline(&p.study, tier)
        };
        Assessment {
            tier,
            // The score of a study the AI may not rank is kept out of the ordering entirely.
            score: if score.is_finite() && ai_ranked(tier) {
                score
            } else {
                0.0
            },
            deadline,
            top_findings: top.into_iter().take(self.top_findings).cloned().collect(),
            reasons,
            unranked,
        }
    }

    /// The wait cap of a tier.
    pub fn cap(&self, tier: TriageTier) -> i64 {
        self.wait_cap_ms.get(tier)
    }

    /// When `study` started waiting to be read: its acquisition, or its arrival
    /// (`published_at`) when it was acquired longer than `late_arrival_limit_ms` before it
    /// arrived, or after it arrived (a modality clock running ahead). Deadlines and wait caps
    /// count from here.
    pub fn wait_start(&self, study: &StudyContext) -> EpochMillis {
        let (acquired, arrived) = (study.acquired_at, study.published_at);
        if arrived.saturating_sub(acquired) > self.late_arrival_limit_ms.max(0) {
            arrived
        } else {
            acquired.min(arrived)
        }
    }

    /// Why a study's wait does not start at its acquisition, for the worklist's reasons;
    /// `None` for ordinary traffic and backlogs within the limit.
    pub fn late_arrival_reason(&self, study: &StudyContext) -> Option<String> {
        let start = self.wait_start(study);
        if start > study.acquired_at {
            Some(format!(
                "acquired {} before it arrived (a prior, a migrated study or a wrong modality \
                 clock; more than {}): deadline and wait cap count from its arrival",
                fmt_span(study.published_at.saturating_sub(study.acquired_at)),
                fmt_span(self.late_arrival_limit_ms)
            ))
        } else if start < study.acquired_at.saturating_sub(NOTED_CLOCK_SKEW_MS) {
            // Clocks a minute or two apart are timed from arrival too, without a word.
            Some(format!(
                "acquired {} after it arrived (a modality clock running ahead): deadline and \
                 wait cap count from its arrival",
                fmt_span(study.acquired_at.saturating_sub(study.published_at))
            ))
        } else {
            None
        }
    }

    /// The reading deadline of a study the AI does not rank (AI_PENDING, NOT_ASSESSABLE): its
    /// order priority's deadline for STAT and URGENT orders, its own tier's otherwise.
    pub fn unranked_deadline(&self, study: &StudyContext, tier: TriageTier) -> EpochMillis {
        let by = match study.priority_hint {
            OrderPriority::Routine => tier,
            hint => order_tier(hint),
        };
        self.wait_start(study).saturating_add(self.sla_ms.get(by))
    }
}

/// A span for a reason a person reads: `45 min`, `6 h 05 min`, `3 days`.
pub fn fmt_span(ms: i64) -> String {
    let m = ms.max(0) / MINUTE;
    match m {
        _ if m < 60 => format!("{m} min"),
        _ if m < 48 * 60 => format!("{} h {:02} min", m / 60, m % 60),
        _ => format!("{} days", m / (24 * 60)),
    }
}

/// Why a prediction is not assessable, in words (older records carry no reason).
pub fn not_assessable_reason(p: &Prediction) -> String {
    match &p.not_assessable_reason {
        Some(r) if !r.trim().is_empty() => r.clone(),
        _ => "lateral or unreadable image".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cxrflow_contracts::StudyContext;

    /// A prediction of study 1.2.3 (acquired and published at 1 s) scoring `findings` as
    /// (name, probability, critical); a non-critical finding is urgent where contracts says so.
    pub(crate) fn prediction(findings: &[(&str, f64, bool)], hint: OrderPriority) -> Prediction {
        use cxrflow_testkit::records::{prediction, score, study};
        Prediction {
            findings: findings
                .iter()
                .map(|(f, p, c)| FindingScore {
                    critical: *c,
                    urgent: !*c && cxrflow_contracts::URGENT_FINDINGS.contains(f),
                    ..score(f, *p)
                })
                .collect(),
            ..prediction(StudyContext {
                acquired_at: 1_000,
                published_at: 1_000,
                priority_hint: hint,
                ..study("1.2.3")
            })
        }
    }

    #[test]
    fn a_score_without_a_patient_age_carries_the_reason_and_an_unranked_study_does_not() {
        let pol = TriagePolicy::default();
        let mut p = prediction(&[("Pneumothorax", 0.9, true)], OrderPriority::Routine);
        assert!(!pol
            .assess(&p)
            .reasons
            .iter()
            .any(|r| r == AGE_UNKNOWN_REASON));
        p.study.patient_age_years = None;
        let a = pol.assess(&p);
        assert_eq!(a.tier, TriageTier::Critical, "the tier does not change");
        assert_eq!(
            a.reasons.last().map(String::as_str),
            Some(AGE_UNKNOWN_REASON)
        );
        p.assessable = false;
        let a = pol.assess(&p);
        assert_eq!(a.tier, TriageTier::NotAssessable);
        assert!(
            !a.reasons.iter().any(|r| r == AGE_UNKNOWN_REASON),
            "{:?}",
            a.reasons
        );
    }

    #[test]
    fn a_nan_output_is_not_assessable_never_routine() {
        let pol = TriagePolicy::default();
        let a = pol.assess(&prediction(
            &[("Pneumothorax", f64::NAN, true), ("Edema", 0.1, false)],
            OrderPriority::Routine,
        ));
        assert_eq!(a.tier, TriageTier::NotAssessable);
        assert!(a.reasons[0].contains("invalid"), "{:?}", a.reasons);
        assert!(a.score.is_finite());
        // A STAT order still places it first (by the order alone), and says why it is unranked.
        let stat = pol.assess(&prediction(
            &[("Pneumothorax", f64::INFINITY, true)],
            OrderPriority::Stat,
        ));
        assert_eq!(stat.tier, TriageTier::NotAssessable);
        assert_eq!(
            stat.deadline,
            1_000 + 30 * MINUTE,
            "the STAT order's deadline"
        );
        assert_eq!(stat.score, 0.0);
        assert_eq!(
            pol.assess(&prediction(&[], OrderPriority::Routine)).tier,
            TriageTier::NotAssessable
        );
    }

    #[test]
    fn tiers_follow_thresholds_and_hints() {
        let pol = TriagePolicy::default();
        let crit = pol.assess(&prediction(
            &[("Pneumothorax", 0.9, true)],
            OrderPriority::Routine,
        ));
        assert_eq!(crit.tier, TriageTier::Critical);
        assert_eq!(crit.deadline, 1_000 + 30 * MINUTE);
        let urgent = pol.assess(&prediction(
            &[("Edema", 0.7, false)],
            OrderPriority::Routine,
        ));
        assert_eq!(urgent.tier, TriageTier::Urgent);
        assert!(urgent.reasons[0].starts_with("urgent finding Edema"));
        // A finding of no tier over its threshold is said, and reads in arrival order.
        let other = pol.assess(&prediction(
            &[("Cardiomegaly", 0.7, false)],
            OrderPriority::Routine,
        ));
        assert_eq!(other.tier, TriageTier::Routine);
        assert!(
            other.reasons[0].contains("also above: Cardiomegaly"),
            "{:?}",
            other.reasons
        );
        let routine = pol.assess(&prediction(
            &[("Cardiomegaly", 0.2, false)],
            OrderPriority::Routine,
        ));
        assert_eq!(routine.tier, TriageTier::Routine);
        let stat = pol.assess(&prediction(
            &[("Cardiomegaly", 0.2, false)],
            OrderPriority::Stat,
        ));
        assert_eq!(stat.tier, TriageTier::Critical);
        let mut na = prediction(&[("Pneumothorax", 0.9, true)], OrderPriority::Routine);
        na.assessable = false;
        assert_eq!(pol.assess(&na).tier, TriageTier::NotAssessable);
        assert!(crit.score > routine.score);
    }

    #[test]
    fn ratio_to_threshold_matters() {
        let pol = TriagePolicy::default();
        let mut a = prediction(&[("Edema", 0.3, false)], OrderPriority::Routine);
        a.findings[0].threshold = 0.2;
        let mut b = prediction(&[("Edema", 0.5, false)], OrderPriority::Routine);
        b.findings[0].threshold = 0.8;
        assert!(pol.assess(&a).score > pol.assess(&b).score);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_ms("30m").unwrap(), 30 * MINUTE);
        assert_eq!(parse_duration_ms("1500ms").unwrap(), 1500);
        let t = TriagePolicy::default()
            .sla_ms
            .parse_over("critical=10m, ROUTINE=1h")
            .unwrap();
        assert_eq!(t.critical, 10 * MINUTE);
        assert_eq!(t.routine, HOUR);
        assert_eq!(t.urgent, 2 * HOUR);
        assert!(TriagePolicy::default().sla_ms.parse_over("X=1").is_err());
    }
}
