//! Renders the outputs of one sample CRITICAL decision, as the README shows them:
//! `cargo run -p cxrflow-results --example render -- OUT_DIR` writes `sr.dcm` (read it with
//! DCMTK's `dsrdump`) and `bundle.json` (the FHIR R4 transaction Bundle).

use cxrflow_contracts::*;
use cxrflow_results::{fhir, report, sr, DEFAULT_IDENTIFIER_SYSTEM};

fn main() -> anyhow::Result<()> {
    let out = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    let t = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    let uid = "1.2.826.0.1.3680043.8.498.4242";
    let finding = |name: &str, p: f64, threshold: f64, critical: bool| FindingScore {
        finding: name.into(),
        probability: p,
        threshold,
        critical,
        urgent: false,
    };
    let d = TriageDecision {
        study: StudyContext {
            site_id: "site-a".into(),
            study_instance_uid: uid.into(),
            series_instance_uid: format!("{uid}.1"),
            sop_instance_uid: format!("{uid}.1.1"),
            accession_number: Some("acc-5f2c".into()),
            patient_ref: "pt-9a41".into(),
            modality: "CR".into(),
            view_position: Some("PA".into()),
            patient_age_years: None,
            patient_sex: None,
            acquired_at: t,
            published_at: t,
            priority_hint: OrderPriority::Routine,
        },
        version: 2,
        status: WorklistStatus::Open,
        tier: TriageTier::Critical,
        score: 0.93,
        deadline: t + 1_800_000,
        top_findings: vec![
            finding("Pneumothorax", 0.93, 0.42, true),
            finding("Cardiomegaly", 0.12, 0.5, false),
        ],
        model_name: Some("cxr-small".into()),
        model_version: Some("1.2.0".into()),
        reasons: vec!["critical finding Pneumothorax 0.93 >= threshold 0.42".into()],
        escalations: 0,
        blob_uri: "s3://cxr-images/blobs/x".into(),
        decided_at: t + 41_000,
        not_assessable_reason: None,
        not_assessable_code: None,
        read_at: None,
    };
    let r = report::plan(&d, t + 42_000, 0).map_err(|s| anyhow::anyhow!("skipped: {s:?}"))?;
    std::fs::write(out.join("sr.dcm"), sr::build(&r).to_file_bytes()?)?;
    let ids = fhir::Identifiers {
        system: DEFAULT_IDENTIFIER_SYSTEM.into(),
    };
    std::fs::write(
        out.join("bundle.json"),
        serde_json::to_vec_pretty(&fhir::bundle(&r, &ids))?,
    )?;
    println!("{}", out.display());
    Ok(())
}
