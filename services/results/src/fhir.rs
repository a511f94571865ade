//! The FHIR R4 output: one transaction Bundle per decision version holding the model as a
//! `Device`, one `Observation` per finding over its threshold and the `DiagnosticReport`
//! (status preliminary, category radiology, LOINC 18748-4) that references them and the
//! `ImagingStudy` by its Study Instance UID.
//!
//! Idempotent: every entry is a conditional create (`request.ifNoneExist`, a transaction's form
//! of the `If-None-Exist` header) on an identifier derived from the study UID and the decision
//! version, so a re-delivery creates nothing new. No `subject`: only a pseudonymous patient
//! reference travels on the topics (see the README for how a site links the patient).

use serde_json::{json, Value};

use crate::codes::{self, Code};
use crate::report::{ResultReport, TRIAGE_AID_STATEMENT};
use crate::uid::name_uuid;

pub const LOINC: &str = "http://loinc.org";
pub const SNOMED: &str = "http://snomed.info/sct";
pub const UCUM: &str = "http://unitsofmeasure.org";
pub const DICOM_UID_SYSTEM: &str = "urn:dicom:uid";

fn system(scheme: &str) -> &'static str {
    match scheme {
        "LN" => LOINC,
        "SCT" => SNOMED,
        "UCUM" => UCUM,
        "DCM" => "http://dicom.nema.org/resources/ontology/DCM",
        _ => codes::LOCAL_SYSTEM,
    }
}

fn coding(c: Code) -> Value {
    json!({"system": system(c.scheme), "code": c.value, "display": c.meaning})
}

fn instant(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

fn imaging_study(report: &ResultReport) -> Value {
    json!({
        "type": "ImagingStudy",
        "identifier": {
            "system": DICOM_UID_SYSTEM,
            "value": format!("urn:oid:{}", report.study_instance_uid)
        }
    })
}

/// What the bundle identifies its resources by.
#[derive(Debug, Clone)]
pub struct Identifiers {
    /// `Identifier.system` of the report and its observations.
    pub system: String,
}

impl Identifiers {
    /// `<study>-v<version>`, plus `/<finding code>` for an observation.
    pub fn value(&self, report: &ResultReport, part: Option<&str>) -> String {
        let base = format!("{}-v{}", report.study_instance_uid, report.version);
        match part {
            Some(p) => format!("{base}/{p}"),
            None => base,
        }
    }

    /// The conditional-create query for an identifier value.
    pub fn if_none_exist(&self, value: &str) -> String {
        format!("identifier={}|{}", self.system, value)
    }
}

fn entry(ids: &Identifiers, kind: &str, full_url: String, value: &str, resource: Value) -> Value {
    json!({
        "fullUrl": full_url,
        "resource": resource,
        "request": {"method": "POST", "url": kind, "ifNoneExist": ids.if_none_exist(value)}
    })
}

/// The transaction Bundle of one decision version.
pub fn bundle(report: &ResultReport, ids: &Identifiers) -> Value {
    let key = report.key();
    let model = report.model();
    let effective = instant(report.acquired_at);
    let issued = instant(report.decided_at);
    let mut entries = Vec::new();

    let device_value = format!("device/{model}");
    let device_url = format!("urn:uuid:{}", name_uuid(&["fhir-device", &model]));
    let mut device = json!({
        "resourceType": "Device",
        "identifier": [{"system": ids.system, "value": device_value}],
        "manufacturer": "cxrflow",
        "deviceName": [{"name": report.model_name.clone().unwrap_or_else(|| model.clone()), "type": "model-name"}],
        "note": [{"text": TRIAGE_AID_STATEMENT}]
    });
    if let Some(v) = &report.model_version {
        device["version"] = json!([{"value": v}]);
    }
    entries.push(entry(
        ids,
        "Device",
        device_url.clone(),
        &device_value,
        device,
    ));

    let mut results = Vec::new();
    for f in &report.findings {
        let code = codes::finding(&f.finding);
        let value = ids.value(report, Some(code.value));
        let url = format!(
            "urn:uuid:{}",
            name_uuid(&["fhir-observation", &key, code.value])
        );
        let observation = json!({
            "resourceType": "Observation",
            "identifier": [{"system": ids.system, "value": value}],
            "status": "preliminary",
            "category": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "imaging", "display": "Imaging"}]}],
            "code": {"coding": [coding(code)], "text": f.finding},
            "effectiveDateTime": effective,
            "issued": issued,
            "valueQuantity": {"value": round4(f.probability), "unit": "probability", "system": UCUM, "code": "1"},
            "interpretation": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                "code": "POS", "display": "Positive"}],
                "text": format!("over the operating threshold {:.2}", f.threshold)}],
            "note": [{"text": format!("AI probability {:.2}, operating threshold {:.2}. {TRIAGE_AID_STATEMENT}", f.probability, f.threshold)}],
            "device": {"reference": device_url, "display": model},
            "derivedFrom": [imaging_study(report)]
        });
        results.push(json!({"reference": url, "display": f.finding}));
        entries.push(entry(ids, "Observation", url, &value, observation));
    }

    let value = ids.value(report, None);
    let mut conclusion_codes =
        vec![json!({"coding": [coding(codes::tier(report.tier))], "text": report.tier_words()})];
    conclusion_codes.extend(
        report
            .findings
            .iter()
            .map(|f| json!({"coding": [coding(codes::finding(&f.finding))], "text": f.finding})),
    );
    let mut diagnostic = json!({
        "resourceType": "DiagnosticReport",
        "identifier": [{"system": ids.system, "value": value}],
        "status": "preliminary",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
            "code": "RAD", "display": "Radiology"}], "text": "Imaging"}],
        "code": {"coding": [coding(codes::DIAGNOSTIC_IMAGING_REPORT), coding(codes::XR_CHEST_TRIAGE)],
                 "text": "XR chest: AI triage"},
        "effectiveDateTime": effective,
        "issued": issued,
        "imagingStudy": [imaging_study(report)],
        "conclusion": format!("{} (model {model}). {TRIAGE_AID_STATEMENT}", report.summary()),
        "conclusionCode": conclusion_codes
    });
    if !results.is_empty() {
        diagnostic["result"] = Value::Array(results);
    }
    let url = format!("urn:uuid:{}", name_uuid(&["fhir-report", &key]));
    entries.push(entry(ids, "DiagnosticReport", url, &value, diagnostic));
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{plan, tests::decision};
    use cxrflow_contracts::TriageTier;

    fn ids() -> Identifiers {
        Identifiers {
            system: "urn:cxrflow:triage-result".into(),
        }
    }

    #[test]
    fn one_observation_per_finding_and_every_entry_conditional() {
        let r = plan(&decision(TriageTier::Critical), 1_700_000_002_000, 0).unwrap();
        let b = bundle(&r, &ids());
        let entries = b["entry"].as_array().unwrap();
        let kinds: Vec<&str> = entries
            .iter()
            .map(|e| e["resource"]["resourceType"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["Device", "Observation", "DiagnosticReport"]);
        for e in entries {
            assert!(e["request"]["ifNoneExist"]
                .as_str()
                .unwrap()
                .starts_with("identifier=urn:cxrflow:triage-result|"));
        }
        let dr = &entries[2]["resource"];
        assert_eq!(dr["status"], "preliminary");
        assert_eq!(dr["result"][0]["reference"], entries[1]["fullUrl"]);
        assert_eq!(bundle(&r, &ids()), b, "deterministic");
    }
}
