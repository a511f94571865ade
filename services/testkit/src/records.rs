//! Record builders the tests share: one study and one prediction with every field set, which a
//! test adjusts with struct update syntax (`StudyContext { view_position: None, ..study(uid) }`) instead of
//! spelling out all thirteen fields again.

use cxrflow_contracts::{
    FindingScore, ModelRole, OrderPriority, Prediction, StudyContext, CRITICAL_FINDINGS,
    URGENT_FINDINGS,
};

/// A routine PA chest radiograph (CR) of study `uid`: series `uid.1`, SOP instance `uid.1.1`,
/// site `site-a`, pseudonymous patient `p-1` (61, F), no accession number, acquired at
/// 2023-11-14T22:13:20Z and published half a second later.
pub fn study(uid: &str) -> StudyContext {
    StudyContext {
        site_id: "site-a".into(),
        study_instance_uid: uid.into(),
        series_instance_uid: format!("{uid}.1"),
        sop_instance_uid: format!("{uid}.1.1"),
        accession_number: None,
        patient_ref: "p-1".into(),
        modality: "CR".into(),
        view_position: Some("PA".into()),
        patient_age_years: Some(61),
        patient_sex: Some("F".into()),
        acquired_at: 1_700_000_000_000,
        published_at: 1_700_000_000_500,
        priority_hint: OrderPriority::Routine,
    }
}

/// An assessable production prediction for `study` with no findings scored: model `cxr-small`
/// version 1 on the CPU, batch 1, 1 ms, made one second after the study was published. A test
/// sets what it is about with struct update syntax
/// (`Prediction { findings: vec![score("Pneumothorax", 0.9)], ..prediction(study(uid)) }`).
pub fn prediction(study: StudyContext) -> Prediction {
    Prediction {
        predicted_at: study.published_at + 1_000,
        blob_uri: format!("file:///blobs/{}.png", study.study_instance_uid),
        study,
        model_name: "cxr-small".into(),
        model_version: "1".into(),
        model_role: ModelRole::Production,
        execution_provider: "cpu".into(),
        assessable: true,
        findings: vec![],
        batch_size: 1,
        inference_ms: 1.0,
        embedding: None,
        input_stats: None,
        not_assessable_reason: None,
        not_assessable_code: None,
        ood_distance: None,
    }
}

/// `finding` scored `probability` against a threshold of 0.5, of the tier contracts puts it in
/// (`CRITICAL_FINDINGS`, `URGENT_FINDINGS`).
pub fn score(finding: &str, probability: f64) -> FindingScore {
    FindingScore {
        finding: finding.into(),
        probability,
        threshold: 0.5,
        critical: CRITICAL_FINDINGS.contains(&finding),
        urgent: URGENT_FINDINGS.contains(&finding),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_take_their_tier_from_contracts() {
        let p = score("Pneumothorax", 0.9);
        assert!(p.critical && !p.urgent);
        let e = score("Pleural Effusion", 0.9);
        assert!(!e.critical && e.urgent, "{e:?}");
        let c = score("Cardiomegaly", 0.9);
        assert!(!c.critical && !c.urgent);
    }

    #[test]
    fn a_prediction_follows_its_study() {
        let p = prediction(study("1.2.3"));
        assert_eq!(p.study.study_instance_uid, "1.2.3");
        assert_eq!(p.predicted_at, p.study.published_at + 1_000);
        assert!(p.assessable && p.findings.is_empty());
    }
}
