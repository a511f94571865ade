//! Record builders for this crate's tests (unit and integration). Not part of the service.

use cxrflow_contracts::*;

pub use cxrflow_testkit::records::{score, study};

/// A prediction scoring every finding `p` (threshold 0.5).
pub fn prediction(uid: &str, version: &str, role: ModelRole, p: f64) -> Prediction {
    Prediction {
        model_name: "chexnet".into(),
        model_version: version.into(),
        model_role: role,
        findings: FINDINGS
            .iter()
            .map(|f| FindingScore {
                critical: false,
                urgent: false,
                ..score(f, p)
            })
            .collect(),
        inference_ms: 3.0,
        predicted_at: 1_700_000_001_000,
        ..cxrflow_testkit::records::prediction(study(uid))
    }
}

/// A report labelling Edema `state`, Cardiomegaly present and Fracture absent.
pub fn report(
    uid: &str,
    report_id: &str,
    read_ended_at: EpochMillis,
    edema: LabelState,
) -> RadiologistReport {
    RadiologistReport {
        report_id: report_id.into(),
        study_instance_uid: uid.into(),
        site_id: "site-a".into(),
        reader_ref: "reader-7".into(),
        read_started_at: read_ended_at - 60_000,
        read_ended_at,
        labels: vec![
            FindingLabel {
                finding: "Edema".into(),
                state: edema,
            },
            FindingLabel {
                finding: "Cardiomegaly".into(),
                state: LabelState::Present,
            },
            FindingLabel {
                finding: "Fracture".into(),
                state: LabelState::Absent,
            },
        ],
        tier_at_read: Some("URGENT".into()),
    }
}

/// A labeled example scoring every finding `p` and labelling every finding `state`.
pub fn labeled(uid: &str, version: &str, p: f64, state: LabelState) -> LabeledExample {
    let pred = prediction(uid, version, ModelRole::Production, p);
    LabeledExample {
        study: pred.study,
        report_id: format!("r-{uid}"),
        reader_ref: "reader-7".into(),
        read_started_at: 1_700_000_100_000,
        read_ended_at: 1_700_000_160_000,
        model_name: pred.model_name,
        model_version: version.into(),
        model_role: ModelRole::Production,
        probabilities: pred.findings,
        labels: FINDINGS
            .iter()
            .map(|f| FindingLabel {
                finding: f.to_string(),
                state,
            })
            .collect(),
        blob_uri: pred.blob_uri,
        tier_at_read: Some("ROUTINE".into()),
        labeled_at: 1_700_000_200_000,
    }
}

/// `n` labeled examples of model v1 at two sites, with coarse (tie-heavy) scores loosely
/// related to random labels of all four states; deterministic for a seed.
pub fn rng_labeled(n: usize, seed: u64) -> Vec<LabeledExample> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|i| {
            let mut ex = labeled(&format!("1.2.{i}"), "v1", 0.0, LabelState::Absent);
            if i % 3 == 0 {
                ex.study.site_id = "site-b".into();
            }
            for (j, l) in ex.labels.iter_mut().enumerate() {
                l.state = match next() % 4 {
                    0 => LabelState::Present,
                    1 => LabelState::Absent,
                    2 => LabelState::Uncertain,
                    _ => LabelState::NotAssessed,
                };
                let signal = if matches!(l.state, LabelState::Present | LabelState::Uncertain) {
                    3
                } else {
                    0
                };
                ex.probabilities[j].probability = ((next() % 8) + signal) as f64 / 10.0;
            }
            ex
        })
        .collect()
}
