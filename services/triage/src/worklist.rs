//! The worklist: every open (and recently read) study with its latest decision, in reading
//! order. Pure state: the caller passes the time in, proposes decisions with `on_*`, publishes
//! them, and only then commits them with [`Worklist::apply`] — the one mutator of entries, also
//! used when the worklist is rebuilt from `cxr.triage.v1`, so a rebuilt worklist equals the live
//! one by construction.

use std::cmp::Ordering;
use std::collections::HashMap;

use cxrflow_contracts::{
    EpochMillis, FindingScore, ModelRole, Prediction, RadiologistReport, StudyContext,
    TriageDecision, TriageTier, WorklistStatus,
};

use crate::intake::Unrankable;
use crate::policy::{above, escalated, more_urgent, order_tier, rank, reading_rank, TriagePolicy};

/// How studies of several sites are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OrderingMode {
    /// One list per site (the full list is grouped by site).
    PerSite,
    /// One list across sites (teleradiology).
    Pooled,
}

/// One study on the worklist.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub decision: TriageDecision,
    /// When the study was last escalated (its wait cap counts from here).
    pub escalated_at: Option<EpochMillis>,
    /// `predicted_at` of the prediction the decision rests on; unknown after a rebuild.
    pub basis_predicted_at: Option<EpochMillis>,
}

impl Entry {
    pub fn is_open(&self) -> bool {
        self.decision.status != WorklistStatus::Read
    }

    /// Where the wait cap is counted from: the last escalation, else the start of the study's
    /// wait (`TriagePolicy::wait_start`).
    pub fn wait_since(&self, policy: &TriagePolicy) -> EpochMillis {
        self.escalated_at
            .unwrap_or_else(|| policy.wait_start(&self.decision.study))
    }
}

/// Why a prediction produced no decision (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    Shadow,
    Duplicate,
    Stale,
    AlreadyRead,
    Closed,
    /// Another image of the study ranks it higher (a lateral after its PA, a routine film after
    /// a critical one): the study is ranked by its most urgent image.
    LessUrgentImage,
}

impl Ignored {
    pub fn label(self) -> &'static str {
        match self {
            Ignored::Shadow => "shadow",
            Ignored::Duplicate => "duplicate",
            Ignored::Stale => "stale",
            Ignored::AlreadyRead => "already_read",
            Ignored::Closed => "closed",
            Ignored::LessUrgentImage => "less_urgent_image",
        }
    }
}

/// What a radiologist's report does.
#[derive(Debug, Clone, PartialEq)]
pub enum ReportOutcome {
    Close(Box<TriageDecision>),
    AlreadyRead,
    UnknownStudy,
}

const ESCALATION: &str = "escalation ";

/// The escalation time recorded in a decision's last escalation reason (`… [at <ms>]`).
fn escalated_at(d: &TriageDecision) -> Option<EpochMillis> {
    d.reasons
        .iter()
        .rev()
        .filter(|r| r.starts_with(ESCALATION))
        .find_map(|r| {
            let start = r.rfind("[at ")? + 4;
            r[start..].strip_suffix(']')?.parse().ok()
        })
}

/// Carries `cur`'s escalations into its successor `d`: the count, the earlier deadline, the
/// ESCALATED status and the escalation reasons (the tier is the caller's to choose).
pub(crate) fn keep_escalation(cur: &TriageDecision, d: &mut TriageDecision) {
    d.deadline = d.deadline.min(cur.deadline);
    d.escalations = cur.escalations;
    d.status = WorklistStatus::Escalated;
    d.reasons.extend(
        cur.reasons
            .iter()
            .filter(|r| r.starts_with(ESCALATION))
            .cloned(),
    );
}

/// Whether a prediction ranked the study (not AI_PENDING, not a dead letter's, not a
/// not-assessable prediction's decision; an escalation does not change it).
fn ranked_by_model(d: &TriageDecision) -> bool {
    d.model_name.is_some() && d.not_assessable_code.is_none()
}

/// Whether image decision `new` should decide a study that another image's decision `cur`
/// decides now. A scored image outranks a not-assessable one; of two scored, the more urgent
/// tier, then the higher score; of two not assessable, a reason other than the lateral view
/// (which says nothing about the patient) replaces that one, otherwise the first stays. So
/// the study's decision does not depend on the order its images' predictions arrive in.
fn outranks(new: &TriageDecision, cur: &TriageDecision) -> bool {
    match (ranked_by_model(new), ranked_by_model(cur)) {
        (true, false) => true,
        (false, true) => false,
        (true, true) => match own_rank(new).cmp(&own_rank(cur)) {
            Ordering::Less => true,
            Ordering::Greater => false,
            Ordering::Equal => new.score > cur.score,
        },
        (false, false) => lateral_view(cur) && !lateral_view(new),
    }
}

/// The rank a decision's own image gives it: its tier's, unless an escalation raised the tier
/// (then its findings over their thresholds and its order priority, as the policy ranks them),
/// so a waiting study escalated to CRITICAL does not hide another image's critical finding.
fn own_rank(d: &TriageDecision) -> u8 {
    if d.escalations == 0 {
        return rank(d.tier);
    }
    let hit = |of: fn(&FindingScore) -> bool| d.top_findings.iter().any(|f| of(f) && above(f));
    let by_findings = if hit(|f| f.critical) {
        TriageTier::Critical
    } else if hit(|f| f.urgent) {
        TriageTier::Urgent
    } else {
        TriageTier::Routine
    };
    rank(by_findings).min(rank(order_tier(d.study.priority_hint)))
}

/// Whether a decision is a lateral's "lateral view".
fn lateral_view(d: &TriageDecision) -> bool {
    d.not_assessable_code.as_deref() == Some("view.lateral")
}

fn fmt_minutes(ms: i64) -> String {
    let m = ms / 60_000;
    format!("{}h{:02}m", m / 60, m % 60)
}

/// Reading order: ROUTINE/NOT_ASSESSABLE after every CRITICAL/URGENT study (so a STAT order is
/// never below a routine one, whatever the clock; anti-starvation escalation is what lifts a
/// routine study out), then earliest deadline, then higher score, then study UID. The UID makes
/// it a total order. Per-site ordering groups by site first.
pub fn reading_order(a: &TriageDecision, b: &TriageDecision, mode: OrderingMode) -> Ordering {
    let site = match mode {
        OrderingMode::PerSite => a.study.site_id.cmp(&b.study.site_id),
        OrderingMode::Pooled => Ordering::Equal,
    };
    let class = |d: &TriageDecision| u8::from(reading_rank(d) >= 2);
    site.then_with(|| class(a).cmp(&class(b)))
        .then_with(|| a.deadline.cmp(&b.deadline))
        .then_with(|| b.score.total_cmp(&a.score))
        .then_with(|| a.study.study_instance_uid.cmp(&b.study.study_instance_uid))
}

/// A study removed from the worklist (tombstoned after its read retention).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClosedStudy {
    /// When it was removed.
    pub at: EpochMillis,
    /// When it was last read, if its decision was known when it was removed.
    pub read_at: Option<EpochMillis>,
    /// Its last decision's version (0 when unknown): a study opened again goes on from it.
    pub version: i64,
}

/// When decision `d` says its study was last read: `read_at`, or for a READ decision written
/// before schema version 4 when it was decided (nothing changes a READ decision afterwards).
pub fn read_time(d: &TriageDecision) -> Option<EpochMillis> {
    d.read_at
        .or((d.status == WorklistStatus::Read).then_some(d.decided_at))
}

/// A study read before one of its images reached the gateway (images added after the report:
/// a repeat or extra film, an image the modality sent late). The radiologist did not see that
/// image, so the study goes back on the worklist, ranked by it: triage only reorders work, and
/// never lets a reading hide an image taken or received after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reading {
    read_at: EpochMillis,
    /// The version of the study's last decision.
    version: i64,
    /// When the new image reached the gateway.
    arrived_at: EpochMillis,
}

impl Reading {
    /// Makes `d`, a decision from the new image alone, the study's next version, open again.
    pub(crate) fn reopen(&self, d: &mut TriageDecision) {
        d.version = self.version + 1;
        d.status = WorklistStatus::Open;
        d.read_at = Some(self.read_at);
        d.reasons.push(format!(
            "{REOPENED}an image of it arrived {} after its report",
            fmt_minutes(self.arrived_at - self.read_at)
        ));
    }
}

/// The start of the reason a study read before one of its images arrived carries.
pub const REOPENED: &str = "open again: ";

#[derive(Debug, Clone)]
pub struct Worklist {
    policy: TriagePolicy,
    pub(crate) entries: HashMap<String, Entry>,
    /// Reports that arrived before their study's prediction, with when they arrived.
    pending_reports: HashMap<String, (RadiologistReport, EpochMillis)>,
    /// Dead letters naming a study whose scan event has not come yet (and that carried no
    /// context of their own), with when they arrived.
    pub(crate) pending_dead_letters: HashMap<String, (Unrankable, EpochMillis)>,
    /// Studies removed (tombstoned): a late re-delivery must not bring them back, an image
    /// arriving after their reading must.
    pub(crate) closed: HashMap<String, ClosedStudy>,
}

impl Worklist {
    pub fn new(policy: TriagePolicy) -> Self {
        Worklist {
            policy,
            entries: HashMap::new(),
            pending_reports: HashMap::new(),
            pending_dead_letters: HashMap::new(),
            closed: HashMap::new(),
        }
    }

    pub fn policy(&self) -> &TriagePolicy {
        &self.policy
    }

    pub fn get(&self, uid: &str) -> Option<&Entry> {
        self.entries.get(uid)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// The decision a prediction leads to, or why none.
    pub fn on_prediction(
        &self,
        p: &Prediction,
        now: EpochMillis,
    ) -> Result<TriageDecision, Ignored> {
        let uid = &p.study.study_instance_uid;
        if p.model_role == ModelRole::Shadow {
            return Err(Ignored::Shadow);
        }
        let reopens = self.read_before(uid, &p.study);
        if reopens.is_none() && self.closed.contains_key(uid) {
            return Err(Ignored::Closed);
        }
        let a = self.policy.assess(p);
        let mut d = TriageDecision {
            study: p.study.clone(),
            version: 1,
            status: WorklistStatus::Open,
            tier: a.tier,
            score: a.score,
            deadline: a.deadline,
            top_findings: a.top_findings,
            model_name: Some(p.model_name.clone()),
            model_version: Some(p.model_version.clone()),
            reasons: a.reasons,
            escalations: 0,
            blob_uri: p.blob_uri.clone(),
            decided_at: now,
            not_assessable_reason: a.unranked.as_ref().map(|u| u.reason.clone()),
            not_assessable_code: a.unranked.map(|u| u.code),
            read_at: None,
        };
        if let Some(read) = reopens {
            // The study's earlier images were read; this one alone decides it now.
            read.reopen(&mut d);
            return Ok(d);
        }
        if let Some(e) = self.entries.get(uid) {
            let cur = &e.decision;
            // Read, or opened again by a later image while this one had been read with it.
            if cur.status == WorklistStatus::Read
                || cur.read_at.is_some_and(|t| p.study.published_at <= t)
            {
                return Err(Ignored::AlreadyRead);
            }
            d.read_at = cur.read_at;
            // A failure of the study (a dead letter, an overdue AI result) says more than a
            // lateral's "lateral view": that prediction leaves it as it is.
            let failed = cur.model_name.is_none() && cur.not_assessable_code.is_some();
            if failed && lateral_view(&d) {
                return Err(Ignored::LessUrgentImage);
            }
            // A study of several images (PA and lateral, a repeat film) is ranked by its most
            // urgent image. The decision names the image it rests on (its SOP instance), so this
            // holds on a worklist rebuilt from the topic too.
            let other_image =
                cur.model_name.is_some() && cur.study.sop_instance_uid != p.study.sop_instance_uid;
            if other_image {
                if !outranks(&d, cur) {
                    return Err(Ignored::LessUrgentImage);
                }
                d.reasons.push(format!(
                    "ranked by its most urgent image: another image of the study was {}",
                    match cur.not_assessable_code.as_deref() {
                        Some(code) => format!("not assessable ({code})"),
                        None => format!("{:?} at score {:.2}", cur.tier, cur.score),
                    }
                ));
            }
            // Of one image, older (or same-instant) predictions lose: the newest one decides,
            // whatever order re-deliveries come in.
            if !other_image && e.basis_predicted_at.is_some_and(|at| p.predicted_at <= at) {
                return Err(Ignored::Stale);
            }
            let same = cur.model_name == d.model_name
                && cur.model_version == d.model_version
                && cur.score.to_bits() == d.score.to_bits()
                && cur.top_findings == d.top_findings;
            // A newer prediction saying the same thing still becomes the basis (a new version
            // with the same content), or an older, different prediction delivered after it
            // would win. Without a basis to compare with (a worklist rebuilt from the topic)
            // the same content is a duplicate.
            if same && e.basis_predicted_at.is_none() {
                return Err(Ignored::Duplicate);
            }
            d.version = cur.version + 1;
            if cur.escalations > 0 {
                // An escalation is never undone by a new prediction.
                d.tier = more_urgent(cur.tier, d.tier);
                keep_escalation(cur, &mut d);
            }
            if cur.model_name.is_some() && !other_image {
                d.reasons.push(format!(
                    "updated by model {}@{}",
                    p.model_name, p.model_version
                ));
            }
        }
        if let Some((r, at)) = self.pending_reports.get(uid) {
            d.status = WorklistStatus::Read;
            d.read_at = Some(*at);
            d.reasons.push(format!("read: report {}", r.report_id));
        }
        Ok(d)
    }

    /// What a radiologist's report does to its study.
    pub fn on_report(&self, r: &RadiologistReport, now: EpochMillis) -> ReportOutcome {
        match self.entries.get(&r.study_instance_uid) {
            None => ReportOutcome::UnknownStudy,
            Some(e) if !e.is_open() => ReportOutcome::AlreadyRead,
            Some(e) => {
                let mut d = e.decision.clone();
                d.version += 1;
                d.status = WorklistStatus::Read;
                d.read_at = Some(now);
                d.reasons.push(format!("read: report {}", r.report_id));
                d.decided_at = now;
                ReportOutcome::Close(Box::new(d))
            }
        }
    }

    /// Keeps a report for a study not seen yet (its prediction may still come).
    pub fn remember_report(&mut self, r: RadiologistReport, now: EpochMillis) {
        self.pending_reports
            .insert(r.study_instance_uid.clone(), (r, now));
    }

    /// Commits a decision (published, or read back from the topic). Lower or equal versions
    /// are ignored, so the latest version wins whatever order records arrive in.
    pub fn apply(&mut self, d: TriageDecision, basis_predicted_at: Option<EpochMillis>) -> bool {
        let uid = d.study.study_instance_uid.clone();
        let basis = match self.entries.get(&uid) {
            Some(e) if e.decision.version >= d.version => return false,
            Some(e) => basis_predicted_at.or(e.basis_predicted_at),
            None => basis_predicted_at,
        };
        self.pending_reports.remove(&uid);
        self.pending_dead_letters.remove(&uid);
        self.closed.remove(&uid);
        let entry = Entry {
            escalated_at: escalated_at(&d),
            decision: d,
            basis_predicted_at: basis,
        };
        self.entries.insert(uid, entry);
        true
    }

    /// Removes a study (its tombstone was published or read back), remembering when it was
    /// read so that an image arriving after its reading still opens it again.
    pub fn remove(&mut self, uid: &str, now: EpochMillis) {
        let (read_at, version) = self
            .entries
            .remove(uid)
            .map_or((None, 0), |e| (read_time(&e.decision), e.decision.version));
        self.closed.insert(
            uid.to_string(),
            ClosedStudy {
                at: now,
                read_at,
                version,
            },
        );
    }

    /// How study `uid` was read before the image of `study` reached the gateway, if it was:
    /// that image was not read with it and opens it again. `None` for a study not read (or
    /// open again), for an image that reached the gateway before the reading (read with it,
    /// or a re-delivery), and for a study removed without its reading known.
    pub(crate) fn read_before(&self, uid: &str, study: &StudyContext) -> Option<Reading> {
        let (read_at, version) = match self.entries.get(uid) {
            Some(e) if e.is_open() => return None,
            Some(e) => (read_time(&e.decision)?, e.decision.version),
            None => {
                let c = self.closed.get(uid)?;
                (c.read_at?, c.version)
            }
        };
        (study.published_at > read_at).then_some(Reading {
            read_at,
            version,
            arrived_at: study.published_at,
        })
    }

    /// The escalation of study `uid` due at `now`, if it waited past its tier's cap.
    pub fn escalation_due(&self, uid: &str, now: EpochMillis) -> Option<TriageDecision> {
        let e = self.entries.get(uid).filter(|e| e.is_open())?;
        let cur = &e.decision;
        let waited = now - e.wait_since(&self.policy);
        let cap = self.policy.cap(cur.tier);
        if waited <= cap {
            return None;
        }
        let mut d = cur.clone();
        d.version += 1;
        d.escalations += 1;
        d.status = WorklistStatus::Escalated;
        d.tier = escalated(cur.tier);
        // Due since it started waiting: among everything open, a study past its cap is ordered
        // by how long it has waited (oldest first, as in arrival order), so no stream of newer
        // CRITICAL or URGENT studies can keep it waiting much past the FIFO worst case.
        d.deadline = cur.deadline.min(e.wait_since(&self.policy));
        d.decided_at = now;
        d.reasons.push(format!(
            "{ESCALATION}{}: waited {} in {:?} past its cap of {}, now {:?} [at {now}]",
            d.escalations,
            fmt_minutes(waited),
            cur.tier,
            fmt_minutes(cap),
            d.tier
        ));
        Some(d)
    }

    /// Escalations due at `now`: every open study that waited past its tier's cap.
    pub fn escalations_due(&self, now: EpochMillis) -> Vec<TriageDecision> {
        let mut uids: Vec<&String> = self.entries.keys().collect();
        uids.sort();
        uids.into_iter()
            .filter_map(|u| self.escalation_due(u, now))
            .collect()
    }

    /// Read studies whose retention has passed: their tombstones are due.
    pub fn tombstones_due(&self, now: EpochMillis, retention_ms: i64) -> Vec<String> {
        let mut due: Vec<String> = self
            .entries
            .values()
            .filter(|e| !e.is_open() && now - e.decision.decided_at >= retention_ms)
            .map(|e| e.decision.study.study_instance_uid.clone())
            .collect();
        due.sort();
        due
    }

    /// Forgets reports whose prediction never came and tombstoned studies past `closed_ttl_ms`.
    /// Returns how many reports were forgotten unmatched.
    pub fn expire(&mut self, now: EpochMillis, pending_ttl_ms: i64, closed_ttl_ms: i64) -> usize {
        let before = self.pending_reports.len();
        self.pending_reports
            .retain(|_, (_, at)| now - *at < pending_ttl_ms);
        // Published by then as orphans (Worklist::orphaned_dead_letters), unless closed.
        self.pending_dead_letters
            .retain(|_, (_, at)| now - *at < closed_ttl_ms);
        self.closed.retain(|_, c| now - c.at < closed_ttl_ms);
        before - self.pending_reports.len()
    }

    /// Open studies in reading order, optionally of one site.
    pub fn ordered(&self, site: Option<&str>, mode: OrderingMode) -> Vec<&Entry> {
        let mut v: Vec<&Entry> = self
            .entries
            .values()
            .filter(|e| e.is_open())
            .filter(|e| site.is_none_or(|s| e.decision.study.site_id == s))
            .collect();
        v.sort_by(|a, b| reading_order(&a.decision, &b.decision, mode));
        v
    }

    /// Open studies per tier (ROUTINE, URGENT, … with zero counts included).
    pub fn open_by_tier(&self) -> [(TriageTier, i64); 5] {
        let mut c = [
            (TriageTier::Critical, 0),
            (TriageTier::Urgent, 0),
            (TriageTier::Routine, 0),
            (TriageTier::NotAssessable, 0),
            (TriageTier::AiPending, 0),
        ];
        for e in self.entries.values().filter(|e| e.is_open()) {
            if let Some(slot) = c.iter_mut().find(|(t, _)| *t == e.decision.tier) {
                slot.1 += 1;
            }
        }
        c
    }
}
