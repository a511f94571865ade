//! The coded concepts the outputs use. Standard codes only where their meaning is exactly ours:
//! DICOM (DCM), LOINC (LN) and SNOMED CT (SCT); everything cxrflow-specific (the tier, the
//! probability, CheXpert labels with no single SNOMED concept) is in the local coding scheme
//! `99CXRFLOW` (the `99` prefix marks a private scheme in DICOM and HL7), declared in the SR's
//! Coding Scheme Identification Sequence.

/// A coded concept: value, scheme designator, meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    pub value: &'static str,
    pub scheme: &'static str,
    pub meaning: &'static str,
}

const fn code(value: &'static str, scheme: &'static str, meaning: &'static str) -> Code {
    Code {
        value,
        scheme,
        meaning,
    }
}

pub const LOCAL_SCHEME: &str = "99CXRFLOW";
pub const LOCAL_SCHEME_NAME: &str = "cxrflow local codes";
/// The FHIR system URI of the local scheme.
pub const LOCAL_SYSTEM: &str = "https://example.invalid/cxrflow/codes";

/// SR document title (CID 7000) and the FHIR DiagnosticReport.code.
pub const DIAGNOSTIC_IMAGING_REPORT: Code = code("18748-4", "LN", "Diagnostic imaging study");
/// The procedure beside the LOINC report code (a site maps it to its own procedure code).
pub const XR_CHEST_TRIAGE: Code = code("xr-chest-triage", LOCAL_SCHEME, "XR chest: AI triage");
pub const COMMENT: Code = code("121106", "DCM", "Comment");
pub const FINDING: Code = code("121071", "DCM", "Finding");
pub const OBSERVER_TYPE: Code = code("121005", "DCM", "Observer Type");
pub const DEVICE: Code = code("121007", "DCM", "Device");
pub const DEVICE_OBSERVER_UID: Code = code("121012", "DCM", "Device Observer UID");
pub const DEVICE_OBSERVER_NAME: Code = code("121013", "DCM", "Device Observer Name");
pub const DEVICE_OBSERVER_MANUFACTURER: Code =
    code("121014", "DCM", "Device Observer Manufacturer");
pub const DEVICE_OBSERVER_MODEL_NAME: Code = code("121015", "DCM", "Device Observer Model Name");
pub const ALGORITHM_NAME: Code = code("111001", "DCM", "Algorithm Name");
pub const ALGORITHM_VERSION: Code = code("111003", "DCM", "Algorithm Version");
pub const SOURCE_IMAGE: Code = code("260753009", "SCT", "Source");
pub const UNITLESS: Code = code("1", "UCUM", "no units");

pub const TRIAGE_TIER: Code = code("triage-tier", LOCAL_SCHEME, "AI triage tier");
pub const PROBABILITY: Code = code("probability", LOCAL_SCHEME, "AI probability");
pub const THRESHOLD: Code = code("threshold", LOCAL_SCHEME, "Operating threshold");
pub const NOT_ASSESSED: Code = code("not-assessed", LOCAL_SCHEME, "Not assessed by AI");
pub const TRIAGE_REASON: Code = code("triage-reason", LOCAL_SCHEME, "AI triage reason");

/// The tier as a coded value.
pub fn tier(t: cxrflow_contracts::TriageTier) -> Code {
    use cxrflow_contracts::TriageTier::*;
    match t {
        Critical => code("CRITICAL", LOCAL_SCHEME, "Critical"),
        Urgent => code("URGENT", LOCAL_SCHEME, "Urgent"),
        Routine => code("ROUTINE", LOCAL_SCHEME, "Routine"),
        NotAssessable => code("NOT_ASSESSABLE", LOCAL_SCHEME, "Not assessable by AI"),
        AiPending => code("AI_PENDING", LOCAL_SCHEME, "AI result pending"),
    }
}

/// A CheXpert finding as a code: SNOMED CT where one concept means exactly the label, the local
/// scheme otherwise (the label itself as the value).
pub fn finding(name: &str) -> Code {
    match name {
        "Pneumothorax" => code("36118008", "SCT", "Pneumothorax"),
        "Pleural Effusion" => code("60046008", "SCT", "Pleural effusion"),
        "Cardiomegaly" => code("8186001", "SCT", "Cardiomegaly"),
        "Pneumonia" => code("233604007", "SCT", "Pneumonia"),
        "Atelectasis" => code("46621007", "SCT", "Atelectasis"),
        "Edema" => code("19242006", "SCT", "Pulmonary edema"),
        "Fracture" => code("125605004", "SCT", "Fracture of bone"),
        _ => local_finding(name),
    }
}

fn local_finding(name: &str) -> Code {
    // The labels are a fixed set (contracts' FINDINGS); an unknown one still gets a code.
    // Code values are at most 16 characters (VR SH): `chexpert-<index>`.
    const VALUES: [&str; 14] = [
        "chexpert-00",
        "chexpert-01",
        "chexpert-02",
        "chexpert-03",
        "chexpert-04",
        "chexpert-05",
        "chexpert-06",
        "chexpert-07",
        "chexpert-08",
        "chexpert-09",
        "chexpert-10",
        "chexpert-11",
        "chexpert-12",
        "chexpert-13",
    ];
    match cxrflow_contracts::FINDINGS.iter().position(|f| *f == name) {
        Some(i) => code(VALUES[i], LOCAL_SCHEME, cxrflow_contracts::FINDINGS[i]),
        None => code("other-finding", LOCAL_SCHEME, "Other finding"),
    }
}
