//! After a run: read the pipeline's topics back (triage decisions, predictions, drift alerts,
//! dead letters) and join them with what the simulator sent and the readers saw.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use cxrflow_common::kafka::read::{snapshot, SnapshotRecord};
use cxrflow_common::KafkaArgs;
use cxrflow_contracts::{
    topics, Codec, DriftAlert, ModelRole, Prediction, TriageDecision, TriageTier,
};

use crate::dataset::labels::LabelState;
use crate::replay::{ArrivalConfig, DriftPlan, ReplayOutcome, ReplayStudy, CRITICAL};
use crate::report::auroc::ScoredStudy;
use crate::report::drift::AlertFact;
use crate::report::{self, Report};
use crate::run::lag::LagPoint;
use crate::run::readers::{ReadEvent, Traffic};

pub(super) struct RunInput {
    pub kafka: KafkaArgs,
    pub codec: Arc<Codec>,
    pub traffic: Traffic,
    pub outcome: ReplayOutcome,
    pub events: Vec<ReadEvent>,
    pub lag: Vec<LagPoint>,
    pub readers: usize,
    pub duration_s: f64,
    pub arrival: ArrivalConfig,
    pub plan: DriftPlan,
}

fn records(kafka: &KafkaArgs, topic: &str) -> Vec<SnapshotRecord> {
    snapshot(kafka, topic, Duration::from_secs(60)).unwrap_or_else(|e| {
        tracing::warn!(topic, error = %e, "report: could not read the topic back");
        Vec::new()
    })
}

/// The production model's first prediction per study, scored against the study's truth at
/// the time its read ended.
pub(super) fn score(
    predictions: &HashMap<String, Prediction>,
    studies: &HashMap<String, ReplayStudy>,
    events: &[ReadEvent],
) -> Vec<ScoredStudy> {
    let mut read_at: HashMap<&str, i64> = HashMap::new();
    for e in events {
        let t = read_at.entry(e.uid.as_str()).or_insert(e.read_ended_at);
        *t = (*t).min(e.read_ended_at);
    }
    let critical: Vec<&str> = CRITICAL.iter().map(|f| f.name()).collect();
    let mut out: Vec<ScoredStudy> = read_at
        .into_iter()
        .filter_map(|(uid, at_ms)| {
            let p = predictions.get(uid)?;
            let s = studies.get(uid)?;
            let prob = |name: &str| {
                p.findings
                    .iter()
                    .find(|f| f.finding == name)
                    .map(|f| f.probability)
            };
            let critical_score = critical
                .iter()
                .filter_map(|c| prob(c))
                .fold(0.0f64, f64::max);
            let findings = crate::dataset::labels::Finding::ALL
                .iter()
                .filter_map(|f| {
                    let truth = match s.row.label(*f) {
                        LabelState::Positive => true,
                        LabelState::Negative | LabelState::Blank => false,
                        LabelState::Uncertain => return None,
                    };
                    Some((f.name().to_string(), truth, prob(f.name())?))
                })
                .collect();
            Some(ScoredStudy {
                at_ms,
                critical: (s.critical_truth(), critical_score),
                findings,
            })
        })
        .collect();
    out.sort_by_key(|s| s.at_ms);
    out
}

pub(super) fn summarise(input: RunInput) -> Report {
    let RunInput {
        kafka,
        codec,
        traffic,
        outcome,
        events,
        lag,
        readers,
        duration_s,
        arrival,
        plan,
    } = input;
    let published_at: HashMap<&str, i64> = outcome
        .published
        .iter()
        .map(|p| (p.uid.as_str(), p.published_at))
        .collect();
    let mut first_decision: HashMap<String, i64> = HashMap::new();
    // Every study with any entry: a study is on the worklist from its scan (AI_PENDING).
    let mut listed: HashSet<String> = HashSet::new();
    for r in records(&kafka, topics::TRIAGE) {
        let Some(d) = r
            .payload
            .and_then(|p| codec.decode::<TriageDecision>(&p).ok())
        else {
            continue;
        };
        if published_at.contains_key(d.study.study_instance_uid.as_str()) {
            listed.insert(d.study.study_instance_uid.clone());
        }
        // End-to-end latency runs to the AI's decision; the AI_PENDING entry a scan event puts
        // on the worklist comes first and is not it (a study read before its AI result came
        // has no such decision, and no latency sample).
        if d.tier == TriageTier::AiPending {
            continue;
        }
        let e = first_decision
            .entry(d.study.study_instance_uid)
            .or_insert(d.decided_at);
        *e = (*e).min(d.decided_at);
    }
    let decisions: Vec<(i64, i64)> = first_decision
        .iter()
        .filter_map(|(uid, at)| published_at.get(uid.as_str()).map(|p| (*p, *at)))
        .collect();
    let latency: Vec<f64> = decisions.iter().map(|(p, d)| (d - p) as f64).collect();

    let mut predictions: HashMap<String, Prediction> = HashMap::new();
    for r in records(&kafka, topics::PREDICTIONS) {
        let Some(p) = r.payload.and_then(|b| codec.decode::<Prediction>(&b).ok()) else {
            continue;
        };
        if p.model_role != ModelRole::Production
            || !published_at.contains_key(p.study.study_instance_uid.as_str())
        {
            continue;
        }
        let keep = predictions
            .get(&p.study.study_instance_uid)
            .is_none_or(|old| p.predicted_at < old.predicted_at);
        if keep {
            predictions.insert(p.study.study_instance_uid.clone(), p);
        }
    }
    let scored = score(&predictions, &traffic.snapshot(), &events);

    let drift_records = records(&kafka, topics::DRIFT);
    let drift_alerts = drift_records.len();
    let alerts: Vec<AlertFact> = drift_records
        .into_iter()
        .filter_map(|r| {
            let a = codec.decode::<DriftAlert>(r.payload.as_deref()?).ok()?;
            Some(AlertFact {
                raised_at: a.raised_at,
                partition: r.partition,
                offset: r.offset,
                state: format!("{:?}", a.state),
                channel: a.channel,
                signal: a.signal,
                statistic: a.statistic,
                site_id: a.site_id,
                severity: format!("{:?}", a.severity),
            })
        })
        .collect();
    let dlq = records(&kafka, topics::DLQ).len();
    // Each study has one worklist entry by construction (compacted, keyed by study); a reader
    // reading the same study twice would be the visible duplicate.
    let mut seen = HashSet::new();
    let dup_reads = events
        .iter()
        .filter(|e| !seen.insert(e.uid.clone()))
        .count();
    report::build(&report::RunFacts {
        published: outcome.published.len(),
        on_worklist: listed.len(),
        duplicates: dup_reads,
        latency_ms: latency,
        events,
        readers,
        dead_letters: dlq,
        drift_alerts,
        duration_s,
        decisions,
        lag,
        scored,
        alerts,
        arrival: Some(arrival),
        drift_plan: plan,
        change: outcome.change,
        before_change: outcome.before,
        after_change: outcome.after,
        shortfall: outcome.shortfall,
        publications: outcome.published,
    })
}
