//! How a study gets onto the worklist before, or without, an AI result: its scan event puts it
//! there as AI_PENDING, a dead letter that names it turns it NOT_ASSESSABLE with the reason, and
//! the overdue watchdog does the same when no AI result comes within a bound. The AI only
//! reorders; nothing here ever removes a study. Pure, like [`crate::worklist`]: the caller
//! passes the time in, publishes what is proposed, then commits it with `Worklist::apply`.

use cxrflow_contracts::{
    topics, DeadLetter, EpochMillis, ScanEvent, StudyContext, TriageDecision, TriageTier,
    WorklistStatus,
};

use crate::policy::{order_reason, reading_rank, Unranked};
use crate::worklist::{keep_escalation, Ignored, Worklist};

/// The code and words of an AI result that never came.
pub const OVERDUE_CODE: &str = "ai.overdue";

/// Input topics whose dead letters mean "the AI will not rank this study". Dead letters of
/// reports, labels or alerts say nothing about the image and leave the study as it is.
pub const STUDY_PATH: &[&str] = &[
    topics::SCAN,
    topics::INGESTED,
    topics::PREPROCESSED,
    topics::PREDICTIONS,
];

/// A study the AI will not rank, as a dead letter tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct Unrankable {
    pub study_uid: String,
    /// The study's context, when the dead letter's original record could be decoded.
    pub context: Option<StudyContext>,
    pub why: Unranked,
    pub failed_at: EpochMillis,
}

/// What a dead letter does to its study.
#[derive(Debug, Clone, PartialEq)]
pub enum DeadLetterOutcome {
    /// Publish this decision (the study becomes, or appears as, NOT_ASSESSABLE).
    Decide(Box<TriageDecision>),
    /// The study is not known yet and the dead letter carries no context: wait for its scan.
    Wait,
    /// Nothing to do, and why (a metric label).
    Ignored(&'static str),
}

/// The words a radiologist reads for a dead letter's reason. The stable code rides beside them
/// on the decision (`not_assessable_code`), so the words can improve without breaking alerts.
pub fn describe(reason: &str, error: &str) -> String {
    // Stages write "<where> (<media type>): <what>"; the part after the first "): " is the
    // decoder's own words, without the storage location.
    let detail = error
        .split_once("): ")
        .map(|(_, d)| d)
        .unwrap_or(error)
        .chars()
        .take(160)
        .collect::<String>();
    let (area, _) = reason.split_once('.').unwrap_or((reason, ""));
    match (area, reason) {
        (_, "ingest.modality_unsupported") => {
            format!("not a chest radiograph: {detail}")
        }
        (_, "decode.unsupported_transfer_syntax") => {
            "image could not be decoded: unsupported DICOM transfer syntax".to_string()
        }
        ("decode", _) => format!("image could not be decoded: {detail}"),
        ("blob", _) | (_, "ingest.fetch_not_found" | "ingest.image_missing") => {
            "image could not be retrieved".to_string()
        }
        ("ingest", _) => format!("scan event refused: {detail}"),
        ("inference", _) | ("model", _) => "model could not score the image".to_string(),
        ("codec", _) => "a record of this study could not be read".to_string(),
        _ => "the AI could not process this study".to_string(),
    }
}

impl Unrankable {
    /// The study a dead letter names, if it is one of the study path's and names a study.
    /// `logical_source` is the dead letter's source topic without the stack's prefix;
    /// `context` decodes the original record's study context, when it can.
    pub fn from_dead_letter(
        dl: &DeadLetter,
        logical_source: &str,
        context: impl FnOnce(&str, &[u8]) -> Option<StudyContext>,
    ) -> Option<Self> {
        if !STUDY_PATH.contains(&logical_source) {
            return None;
        }
        let uid = dl
            .study_instance_uid
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())?
            .to_string();
        let context = dl
            .payload
            .as_deref()
            .and_then(|p| context(logical_source, p))
            .filter(|c| c.study_instance_uid == uid);
        Some(Unrankable {
            study_uid: uid,
            context,
            why: Unranked::new(dl.reason.clone(), describe(&dl.reason, &dl.error)),
            failed_at: dl.failed_at,
        })
    }
}

/// A decision for a study the AI does not rank: ordered by its order priority and
/// the start of its wait (its acquisition, or its arrival for a prior or a wrong clock) alone.
pub(crate) fn unranked_decision(
    wl: &Worklist,
    study: StudyContext,
    tier: TriageTier,
    why: Option<&Unranked>,
    blob_uri: String,
    now: EpochMillis,
) -> TriageDecision {
    let deadline = wl.policy().unranked_deadline(&study, tier);
    let mut reasons = vec![match (tier, why) {
        (TriageTier::AiPending, _) => "AI result pending".to_string(),
        (_, Some(w)) => format!("not assessable: {}", w.reason),
        _ => "not assessable".to_string(),
    }];
    reasons.extend(order_reason(study.priority_hint));
    reasons.extend(wl.policy().late_arrival_reason(&study));
    TriageDecision {
        study,
        version: 1,
        status: WorklistStatus::Open,
        tier,
        score: 0.0,
        deadline,
        top_findings: vec![],
        model_name: None,
        model_version: None,
        reasons,
        escalations: 0,
        blob_uri,
        decided_at: now,
        not_assessable_reason: why.map(|w| w.reason.clone()),
        not_assessable_code: why.map(|w| w.code.clone()),
        read_at: None,
    }
}

/// `cur` turned NOT_ASSESSABLE for `why`, keeping what a person already saw (escalations, a
/// STAT order's place).
fn demoted(
    wl: &Worklist,
    cur: &TriageDecision,
    why: &Unranked,
    now: EpochMillis,
) -> TriageDecision {
    let mut d = unranked_decision(
        wl,
        cur.study.clone(),
        TriageTier::NotAssessable,
        Some(why),
        cur.blob_uri.clone(),
        now,
    );
    d.version = cur.version + 1;
    d.status = cur.status;
    d.read_at = cur.read_at;
    if cur.escalations > 0 {
        // An escalation is never undone: keep its tier, deadline and reasons.
        d.tier = if reading_rank(cur) < reading_rank(&d) {
            cur.tier
        } else {
            d.tier
        };
        keep_escalation(cur, &mut d);
    }
    d
}

impl Worklist {
    /// The AI_PENDING entry a scan event puts on the worklist, or why none (already known).
    /// A dead letter that came before the scan makes it NOT_ASSESSABLE at once.
    pub fn on_scan(&self, scan: &ScanEvent, now: EpochMillis) -> Result<TriageDecision, Ignored> {
        let uid = &scan.study.study_instance_uid;
        if self.closed.contains_key(uid) {
            return Err(Ignored::Closed);
        }
        if self.entries.contains_key(uid) {
            return Err(Ignored::Duplicate);
        }
        let early = self.pending_dead_letters.get(uid).map(|(u, _)| &u.why);
        let tier = if early.is_some() {
            TriageTier::NotAssessable
        } else {
            TriageTier::AiPending
        };
        Ok(unranked_decision(
            self,
            scan.study.clone(),
            tier,
            early,
            String::new(),
            now,
        ))
    }

    /// What a dead letter naming a study does: an AI_PENDING study becomes NOT_ASSESSABLE; an
    /// unknown one appears as NOT_ASSESSABLE (or waits for its scan when the dead letter has no
    /// context); a study the AI already ranked stays as it is, and so does one read, unless the
    /// failed image arrived after its report (then it is listed again, NOT_ASSESSABLE).
    pub fn on_dead_letter(&self, u: &Unrankable, now: EpochMillis) -> DeadLetterOutcome {
        let listed = |study: &StudyContext| {
            unranked_decision(
                self,
                study.clone(),
                TriageTier::NotAssessable,
                Some(&u.why),
                String::new(),
                now,
            )
        };
        if let Some((study, read)) = u
            .context
            .as_ref()
            .and_then(|s| Some((s, self.read_before(&u.study_uid, s)?)))
        {
            let mut d = listed(study);
            read.reopen(&mut d);
            return DeadLetterOutcome::Decide(Box::new(d));
        }
        if self.closed.contains_key(&u.study_uid) {
            return DeadLetterOutcome::Ignored("closed");
        }
        match self.entries.get(&u.study_uid) {
            Some(e) if !e.is_open() => DeadLetterOutcome::Ignored("already_read"),
            Some(e) if e.decision.tier == TriageTier::AiPending => {
                DeadLetterOutcome::Decide(Box::new(demoted(self, &e.decision, &u.why, now)))
            }
            // Already NOT_ASSESSABLE, or ranked by a prediction of another image of the study:
            // a prediction always outranks a failure, whatever order they arrive in.
            Some(_) => DeadLetterOutcome::Ignored("already_decided"),
            None => match &u.context {
                Some(study) => DeadLetterOutcome::Decide(Box::new(listed(study))),
                None => DeadLetterOutcome::Wait,
            },
        }
    }

    /// Keeps a dead letter for a study not seen yet (its scan event may still come).
    pub fn remember_dead_letter(&mut self, u: Unrankable, now: EpochMillis) {
        self.pending_dead_letters
            .insert(u.study_uid.clone(), (u, now));
    }

    /// Dead letters that waited `wait_ms` for their study's scan event in vain: their studies
    /// go on the worklist with what the dead letter knows, never silently dropped.
    pub fn orphaned_dead_letters(&self, now: EpochMillis, wait_ms: i64) -> Vec<TriageDecision> {
        let mut uids: Vec<&String> = self.pending_dead_letters.keys().collect();
        uids.sort();
        uids.into_iter()
            .filter_map(|uid| self.orphan_decision(uid, now, wait_ms))
            .collect()
    }

    /// The decision listing study `uid` from its dead letter alone, if that waited `wait_ms`
    /// for the study's scan event in vain.
    pub fn orphan_decision(
        &self,
        uid: &str,
        now: EpochMillis,
        wait_ms: i64,
    ) -> Option<TriageDecision> {
        let (u, at) = self.pending_dead_letters.get(uid)?;
        if now - *at < wait_ms || self.entries.contains_key(uid) || self.closed.contains_key(uid) {
            return None;
        }
        let study = StudyContext {
            site_id: "unknown".into(),
            study_instance_uid: u.study_uid.clone(),
            series_instance_uid: String::new(),
            sop_instance_uid: String::new(),
            accession_number: None,
            patient_ref: String::new(),
            modality: String::new(),
            view_position: None,
            patient_age_years: None,
            patient_sex: None,
            acquired_at: u.failed_at,
            published_at: u.failed_at,
            priority_hint: Default::default(),
        };
        let mut d = unranked_decision(
            self,
            study,
            TriageTier::NotAssessable,
            Some(&u.why),
            String::new(),
            now,
        );
        d.reasons
            .push("study known only from a dead letter (its scan event was unreadable)".into());
        Some(d)
    }

    /// Studies still AI_PENDING `bound_ms` after they were put on the worklist.
    pub fn overdue(&self, now: EpochMillis, bound_ms: i64) -> Vec<String> {
        let mut v: Vec<String> = self
            .entries
            .values()
            .filter(|e| e.is_open() && e.decision.tier == TriageTier::AiPending)
            .filter(|e| now - e.decision.decided_at >= bound_ms)
            .map(|e| e.decision.study.study_instance_uid.clone())
            .collect();
        v.sort();
        v
    }

    /// The NOT_ASSESSABLE decision for study `uid` if it is still AI_PENDING past `bound_ms`.
    pub fn overdue_decision(
        &self,
        uid: &str,
        now: EpochMillis,
        bound_ms: i64,
    ) -> Option<TriageDecision> {
        let e = self.entries.get(uid).filter(|e| e.is_open())?;
        if e.decision.tier != TriageTier::AiPending || now - e.decision.decided_at < bound_ms {
            return None;
        }
        let why = Unranked::new(
            OVERDUE_CODE,
            format!(
                "AI result overdue (none within {} s of the scan)",
                bound_ms / 1000
            ),
        );
        Some(demoted(self, &e.decision, &why, now))
    }
}
