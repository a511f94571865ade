//! Record builders the tests share: one study with every field set, which a test adjusts with
//! struct update syntax (`StudyContext { view_position: None, ..study(uid) }`) instead of
//! spelling out all thirteen fields again.

use cxrflow_contracts::{OrderPriority, StudyContext};

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
