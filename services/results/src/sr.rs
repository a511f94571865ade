//! The DICOM output: a Comprehensive SR document (SOP Class 1.2.840.10008.5.1.4.1.1.88.33) in
//! the study of the image it is about, so the PACS files it beside the image and the viewer
//! shows it with the study.
//!
//! Content tree (root CONTAINER "Diagnostic imaging study", LOINC 18748-4, SEPARATE):
//! - HAS OBS CONTEXT: Observer Type = Device, Device Observer UID / Name / Manufacturer /
//!   Model Name (the model), Algorithm Name and Version;
//! - CONTAINS TEXT Comment: the triage-aid statement;
//! - CONTAINS CODE AI triage tier = CRITICAL | URGENT | ROUTINE | NOT_ASSESSABLE;
//! - per finding over its threshold: CONTAINS CODE Finding = the finding (SNOMED CT where one
//!   concept means exactly the label), with HAS PROPERTIES NUM AI probability and NUM operating
//!   threshold (unitless);
//! - NOT_ASSESSABLE: CONTAINS TEXT Not assessed by AI = the reason;
//! - CONTAINS TEXT AI triage reason, one per reason triage gave;
//! - CONTAINS IMAGE Source = the source image (SOP class from the modality, SOP instance UID).
//!
//! Patient and accession attributes are empty (type 2): only pseudonyms travel on the topics
//! (see the README, "Results back to the PACS and EHR", for how a site fills them).

use dicom_core::value::{DataSetSequence, PrimitiveValue};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

use crate::codes::{self, Code};
use crate::report::{ResultReport, TRIAGE_AID_STATEMENT};
use crate::uid;

pub const COMPREHENSIVE_SR: &str = "1.2.840.10008.5.1.4.1.1.88.33";
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
const CR_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.1";
const DX_FOR_PRESENTATION: &str = "1.2.840.10008.5.1.4.1.1.1.1";
/// cxrflow's implementation class UID (UUID-derived, fixed).
const IMPLEMENTATION_CLASS_UID: &str = "2.25.267430427262364452349153040373411337226";

#[derive(Debug, thiserror::Error)]
pub enum SrError {
    #[error("SR file meta: {0}")]
    Meta(String),
    #[error("SR encoding: {0}")]
    Write(String),
}

/// An SR document ready to send: its identifiers and the data set.
pub struct SrDocument {
    pub sop_instance_uid: String,
    pub dataset: InMemDicomObject,
}

impl SrDocument {
    /// The document as a DICOM Part-10 file (Explicit VR Little Endian).
    pub fn to_file_bytes(&self) -> Result<Vec<u8>, SrError> {
        let meta = FileMetaTableBuilder::new()
            .media_storage_sop_class_uid(COMPREHENSIVE_SR)
            .media_storage_sop_instance_uid(self.sop_instance_uid.as_str())
            .transfer_syntax(EXPLICIT_VR_LE)
            .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
            .implementation_version_name("CXRFLOW")
            .build()
            .map_err(|e| SrError::Meta(e.to_string()))?;
        let file = self.dataset.clone().with_exact_meta(meta);
        let mut out = Vec::new();
        file.write_all(&mut out)
            .map_err(|e| SrError::Write(e.to_string()))?;
        Ok(out)
    }
}

fn str_el(tag: Tag, vr: VR, v: impl Into<String>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, PrimitiveValue::from(v.into()))
}

fn empty(tag: Tag, vr: VR) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, PrimitiveValue::Empty)
}

fn seq(tag: Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

fn code_item(c: Code) -> InMemDicomObject {
    InMemDicomObject::from_element_iter([
        str_el(tags::CODE_VALUE, VR::SH, c.value),
        str_el(tags::CODING_SCHEME_DESIGNATOR, VR::SH, c.scheme),
        str_el(tags::CODE_MEANING, VR::LO, c.meaning),
    ])
}

/// A content item: relationship, value type, concept name, then its value elements.
fn item(
    relationship: &str,
    value_type: &str,
    concept: Code,
    value: Vec<DataElement<InMemDicomObject>>,
) -> InMemDicomObject {
    let mut o = InMemDicomObject::from_element_iter([
        str_el(tags::RELATIONSHIP_TYPE, VR::CS, relationship),
        str_el(tags::VALUE_TYPE, VR::CS, value_type),
        seq(tags::CONCEPT_NAME_CODE_SEQUENCE, vec![code_item(concept)]),
    ]);
    for e in value {
        o.put(e);
    }
    o
}

fn text(relationship: &str, concept: Code, value: &str) -> InMemDicomObject {
    item(
        relationship,
        "TEXT",
        concept,
        vec![str_el(tags::TEXT_VALUE, VR::UT, value)],
    )
}

fn coded(relationship: &str, concept: Code, value: Code) -> InMemDicomObject {
    item(
        relationship,
        "CODE",
        concept,
        vec![seq(tags::CONCEPT_CODE_SEQUENCE, vec![code_item(value)])],
    )
}

fn num(relationship: &str, concept: Code, value: f64) -> InMemDicomObject {
    let measured = InMemDicomObject::from_element_iter([
        // DS: at most 16 characters.
        str_el(tags::NUMERIC_VALUE, VR::DS, format!("{value:.4}")),
        seq(
            tags::MEASUREMENT_UNITS_CODE_SEQUENCE,
            vec![code_item(codes::UNITLESS)],
        ),
    ]);
    item(
        relationship,
        "NUM",
        concept,
        vec![seq(tags::MEASURED_VALUE_SEQUENCE, vec![measured])],
    )
}

/// The SOP class of the source image: the topics carry the modality, not the SOP class; the
/// gateway accepts CR and DX (for presentation or processing), DX presumed for presentation.
fn source_sop_class(modality: &str) -> &'static str {
    if modality.eq_ignore_ascii_case("DX") {
        DX_FOR_PRESENTATION
    } else {
        CR_IMAGE
    }
}

fn referenced_sop(report: &ResultReport) -> InMemDicomObject {
    InMemDicomObject::from_element_iter([
        str_el(
            tags::REFERENCED_SOP_CLASS_UID,
            VR::UI,
            source_sop_class(&report.modality),
        ),
        str_el(
            tags::REFERENCED_SOP_INSTANCE_UID,
            VR::UI,
            report.sop_instance_uid.as_str(),
        ),
    ])
}

fn da_tm(millis: i64) -> (String, String) {
    let t = chrono::DateTime::from_timestamp_millis(millis).unwrap_or_default();
    (
        t.format("%Y%m%d").to_string(),
        t.format("%H%M%S").to_string(),
    )
}

/// The content items under the root container.
fn content(report: &ResultReport) -> Vec<InMemDicomObject> {
    let model = report.model();
    let mut c = vec![
        coded("HAS OBS CONTEXT", codes::OBSERVER_TYPE, codes::DEVICE),
        item(
            "HAS OBS CONTEXT",
            "UIDREF",
            codes::DEVICE_OBSERVER_UID,
            vec![str_el(tags::UID, VR::UI, uid::device_uid(&model))],
        ),
        text("HAS OBS CONTEXT", codes::DEVICE_OBSERVER_NAME, "cxrflow"),
        text(
            "HAS OBS CONTEXT",
            codes::DEVICE_OBSERVER_MANUFACTURER,
            "cxrflow",
        ),
        text("HAS OBS CONTEXT", codes::DEVICE_OBSERVER_MODEL_NAME, &model),
    ];
    if let Some(name) = &report.model_name {
        c.push(text("HAS OBS CONTEXT", codes::ALGORITHM_NAME, name));
    }
    if let Some(version) = &report.model_version {
        c.push(text("HAS OBS CONTEXT", codes::ALGORITHM_VERSION, version));
    }
    c.push(text("CONTAINS", codes::COMMENT, TRIAGE_AID_STATEMENT));
    c.push(coded(
        "CONTAINS",
        codes::TRIAGE_TIER,
        codes::tier(report.tier),
    ));
    for f in &report.findings {
        let mut finding = coded("CONTAINS", codes::FINDING, codes::finding(&f.finding));
        finding.put(seq(
            tags::CONTENT_SEQUENCE,
            vec![
                num("HAS PROPERTIES", codes::PROBABILITY, f.probability),
                num("HAS PROPERTIES", codes::THRESHOLD, f.threshold),
            ],
        ));
        c.push(finding);
    }
    if let Some((_, reason)) = &report.not_assessed {
        c.push(text("CONTAINS", codes::NOT_ASSESSED, reason));
    }
    for r in &report.reasons {
        c.push(text("CONTAINS", codes::TRIAGE_REASON, r));
    }
    c.push(item(
        "CONTAINS",
        "IMAGE",
        codes::SOURCE_IMAGE,
        vec![seq(
            tags::REFERENCED_SOP_SEQUENCE,
            vec![referenced_sop(report)],
        )],
    ));
    c
}

/// The SR document of one decision version. Deterministic: the same report, the same bytes
/// (its dates are the decision's, not the clock's).
pub fn build(report: &ResultReport) -> SrDocument {
    let study = report.study_instance_uid.as_str();
    let sop_instance_uid = uid::sr_instance_uid(study, report.version);
    let (date, time) = da_tm(report.decided_at);
    let (study_date, study_time) = da_tm(report.acquired_at);
    let evidence = InMemDicomObject::from_element_iter([
        seq(
            tags::REFERENCED_SERIES_SEQUENCE,
            vec![InMemDicomObject::from_element_iter([
                seq(tags::REFERENCED_SOP_SEQUENCE, vec![referenced_sop(report)]),
                str_el(
                    tags::SERIES_INSTANCE_UID,
                    VR::UI,
                    report.series_instance_uid.as_str(),
                ),
            ])],
        ),
        str_el(tags::STUDY_INSTANCE_UID, VR::UI, study),
    ]);
    let local_scheme = InMemDicomObject::from_element_iter([
        str_el(tags::CODING_SCHEME_DESIGNATOR, VR::SH, codes::LOCAL_SCHEME),
        str_el(tags::CODING_SCHEME_NAME, VR::ST, codes::LOCAL_SCHEME_NAME),
        str_el(
            tags::CODING_SCHEME_RESPONSIBLE_ORGANIZATION,
            VR::ST,
            "cxrflow",
        ),
    ]);
    let dataset = InMemDicomObject::from_element_iter([
        // SOP Common
        str_el(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"),
        str_el(tags::INSTANCE_CREATION_DATE, VR::DA, date.clone()),
        str_el(tags::INSTANCE_CREATION_TIME, VR::TM, time.clone()),
        str_el(tags::SOP_CLASS_UID, VR::UI, COMPREHENSIVE_SR),
        str_el(tags::SOP_INSTANCE_UID, VR::UI, sop_instance_uid.as_str()),
        // General Study
        str_el(tags::STUDY_DATE, VR::DA, study_date),
        str_el(tags::STUDY_TIME, VR::TM, study_time),
        empty(tags::ACCESSION_NUMBER, VR::SH),
        str_el(tags::MODALITY, VR::CS, "SR"),
        str_el(tags::MANUFACTURER, VR::LO, "cxrflow"),
        empty(tags::REFERRING_PHYSICIAN_NAME, VR::PN),
        seq(
            tags::CODING_SCHEME_IDENTIFICATION_SEQUENCE,
            vec![local_scheme],
        ),
        str_el(tags::SERIES_DESCRIPTION, VR::LO, "AI triage results"),
        empty(tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE, VR::SQ),
        str_el(tags::MANUFACTURER_MODEL_NAME, VR::LO, report.model()),
        // Patient (type 2, empty: no PHI on the topics)
        empty(tags::PATIENT_NAME, VR::PN),
        empty(tags::PATIENT_ID, VR::LO),
        empty(tags::PATIENT_BIRTH_DATE, VR::DA),
        empty(tags::PATIENT_SEX, VR::CS),
        str_el(tags::SOFTWARE_VERSIONS, VR::LO, env!("CARGO_PKG_VERSION")),
        str_el(tags::STUDY_INSTANCE_UID, VR::UI, study),
        str_el(tags::SERIES_INSTANCE_UID, VR::UI, uid::sr_series_uid(study)),
        empty(tags::STUDY_ID, VR::SH),
        str_el(tags::SERIES_NUMBER, VR::IS, "9901"),
        str_el(tags::INSTANCE_NUMBER, VR::IS, report.version.to_string()),
        // SR Document General
        str_el(tags::VALUE_TYPE, VR::CS, "CONTAINER"),
        seq(
            tags::CONCEPT_NAME_CODE_SEQUENCE,
            vec![code_item(codes::DIAGNOSTIC_IMAGING_REPORT)],
        ),
        str_el(tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE"),
        str_el(tags::CONTENT_DATE, VR::DA, date),
        str_el(tags::CONTENT_TIME, VR::TM, time),
        str_el(tags::COMPLETION_FLAG, VR::CS, "COMPLETE"),
        // Nobody signs an AI result: it stays unverified.
        str_el(tags::VERIFICATION_FLAG, VR::CS, "UNVERIFIED"),
        seq(
            tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE,
            vec![evidence],
        ),
        empty(tags::PERFORMED_PROCEDURE_CODE_SEQUENCE, VR::SQ),
        seq(tags::CONTENT_SEQUENCE, content(report)),
    ]);
    SrDocument {
        sop_instance_uid,
        dataset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{plan, tests::decision};
    use cxrflow_contracts::TriageTier;

    #[test]
    fn the_same_decision_gives_the_same_file() {
        let r = plan(&decision(TriageTier::Critical), 1_700_000_002_000, 0).unwrap();
        let a = build(&r).to_file_bytes().unwrap();
        let b = build(&r).to_file_bytes().unwrap();
        assert_eq!(a, b);
        assert_eq!(&a[128..132], b"DICM");
        let back = dicom_object::FileDicomObject::from_reader(&a[..]).unwrap();
        assert_eq!(
            back.element(tags::SOP_CLASS_UID).unwrap().to_str().unwrap(),
            COMPREHENSIVE_SR
        );
    }
}
