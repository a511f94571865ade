//! The eligibility gate: the model was trained on frontal chest radiographs (CR/DX) of adults, so
//! a DICOM object that says, in its own header, that it is something else — an MR or CT slice, a
//! secondary capture, a colour or multi-frame object, a derived image, another body part, a
//! child's radiograph — is never scored as if it were one. It flows on as not assessable with
//! the reason, and triage lists it for a person without a score. The header wins over what the
//! scan event claims; a disagreement is counted. PNG/JPEG have no header and pass to the next
//! gate (out of distribution, in inference).

use std::fmt;

/// The attributes of a DICOM header that decide eligibility.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DicomHeader {
    /// Modality (0008,0060).
    pub modality: Option<String>,
    /// SOP Class UID (0008,0016), else the file meta's Media Storage SOP Class UID.
    pub sop_class_uid: Option<String>,
    /// Body Part Examined (0018,0015).
    pub body_part: Option<String>,
    /// The first item of Anatomic Region Sequence (0008,2218), required in DX where Body Part
    /// Examined is optional: its Code Meaning, else its Code Value.
    pub anatomic_region: Option<String>,
    /// Image Type (0008,0008) values.
    pub image_type: Vec<String>,
    /// Number of Frames (0028,0008), 1 when absent.
    pub frames: u32,
    /// Samples per Pixel (0028,0002).
    pub samples_per_pixel: u16,
    /// Photometric Interpretation (0028,0004).
    pub photometric: Option<String>,
    /// View Position (0018,5101).
    pub view_position: Option<String>,
    /// Presentation Intent Type (0008,0068): FOR PRESENTATION or FOR PROCESSING (DX).
    pub presentation_intent: Option<String>,
    /// The patient's age in whole years at the examination: Patient's Age (0010,1010), else
    /// from Patient's Birth Date (0010,0030) to the examination's date.
    pub patient_age_years: Option<i32>,
}

/// Radiograph SOP classes: CR, and DX for presentation and for processing.
pub const RADIOGRAPH_SOP_CLASSES: &[(&str, &str)] = &[
    (
        "1.2.840.10008.5.1.4.1.1.1",
        "Computed Radiography Image Storage",
    ),
    (
        "1.2.840.10008.5.1.4.1.1.1.1",
        "Digital X-Ray Image Storage - For Presentation",
    ),
    (
        "1.2.840.10008.5.1.4.1.1.1.1.1",
        "Digital X-Ray Image Storage - For Processing",
    ),
];

/// Names of SOP classes a refusal may mention (a few common ones; others print as UIDs).
const KNOWN_SOP_CLASSES: &[(&str, &str)] = &[
    ("1.2.840.10008.5.1.4.1.1.2", "CT Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.4", "MR Image Storage"),
    (
        "1.2.840.10008.5.1.4.1.1.7",
        "Secondary Capture Image Storage",
    ),
    ("1.2.840.10008.5.1.4.1.1.6.1", "Ultrasound Image Storage"),
    (
        "1.2.840.10008.5.1.4.1.1.1.2",
        "Digital Mammography X-Ray Image Storage - For Presentation",
    ),
    (
        "1.2.840.10008.5.1.4.1.1.12.1",
        "X-Ray Angiographic Image Storage",
    ),
];

/// Body parts that mean a chest radiograph (DICOM PS3.16 CID 4031 uses CHEST; some modalities
/// write THORAX).
const CHEST: &[&str] = &["CHEST", "THORAX"];

/// Anatomic Region Sequence codes for the chest where an item carries no meaning: SNOMED-RT's
/// T-D3000 (Chest) and SNOMED CT's 43799004 (Chest) and 51185008 (Thoracic structure).
const CHEST_CODES: &[&str] = &["T-D3000", "43799004", "51185008"];

/// Whether an Anatomic Region Sequence item's meaning (or code) names the chest; the thoracic
/// spine is another examination.
fn is_chest_region(region: &str) -> bool {
    let r = region.trim().to_ascii_lowercase();
    let spine = r.contains("spine") || r.contains("vertebr");
    ((r.contains("chest") || r.contains("thora")) && !spine)
        || CHEST_CODES.iter().any(|c| c.eq_ignore_ascii_case(&r))
}

/// DX For Processing's SOP class: the detector's raw data, for CAD and post-processing.
pub const DX_FOR_PROCESSING: &str = "1.2.840.10008.5.1.4.1.1.1.1.1";

/// What the gate accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EligibilityRules {
    /// Accepted modalities (upper case).
    pub modalities: Vec<String>,
    /// Whether DX "For Processing" images (raw detector data, before the vendor's processing
    /// for presentation) may be scored: only by a model validated on them.
    pub for_processing: bool,
    /// The youngest patient whose radiograph may be scored, in years (0: any age). A child's
    /// chest is not a small adult's: heart, thymus and lung proportions differ, and a model
    /// trained on adults reads them with the adults' thresholds.
    pub min_age_years: u32,
    /// What happens to an image whose patient age is known neither from its header nor from
    /// its scan event, while `min_age_years` is above 0.
    pub unknown_age: UnknownAge,
}

/// What the age rule does with an image whose age nobody gave (a PNG/JPEG scan event without
/// `patient_age_years`, a DICOM header without Patient's Age or a birth date to count from).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum UnknownAge {
    /// Scored, counted (`cxrflow_preprocess_age_unknown_images_total`) and marked "age
    /// unknown" on the worklist: for a feed that carries ages, where a missing one is rare.
    #[default]
    Score,
    /// Not assessable (`eligibility.age_unknown`): listed for a person without a score. For a
    /// site whose router strips ages and which also images children, or any site that wants
    /// eligibility proven rather than presumed.
    NotAssessable,
}

impl UnknownAge {
    pub fn label(self) -> &'static str {
        match self {
            UnknownAge::Score => "score",
            UnknownAge::NotAssessable => "not-assessable",
        }
    }
}

/// The youngest age in CheXpert's 223,414 training rows (the label file shipped with
/// torchxrayvision; three rows say 0, which is no age at all): the models cxrflow is built and
/// validated with have seen no child.
pub const ADULT_AGE_YEARS: u32 = 18;

impl Default for EligibilityRules {
    fn default() -> Self {
        EligibilityRules {
            modalities: vec!["CR".into(), "DX".into()],
            for_processing: false,
            min_age_years: ADULT_AGE_YEARS,
            unknown_age: UnknownAge::Score,
        }
    }
}

/// Why an image may not be scored: a stable code and the words a radiologist reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ineligible {
    pub code: &'static str,
    pub reason: String,
}

impl fmt::Display for Ineligible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.code)
    }
}

fn ineligible(code: &'static str, reason: String) -> Result<(), Ineligible> {
    Err(Ineligible { code, reason })
}

fn sop_class_name(uid: &str) -> String {
    RADIOGRAPH_SOP_CLASSES
        .iter()
        .chain(KNOWN_SOP_CLASSES)
        .find(|(u, _)| *u == uid)
        .map(|(_, n)| n.to_string())
        .unwrap_or_else(|| uid.to_string())
}

impl EligibilityRules {
    /// Checks a header; the first rule it fails is the reason.
    pub fn check(&self, h: &DicomHeader) -> Result<(), Ineligible> {
        match h.modality.as_deref().map(str::to_ascii_uppercase) {
            None => {
                return ineligible(
                    "eligibility.modality",
                    "not a chest radiograph: the DICOM header has no Modality".into(),
                )
            }
            Some(m) if !self.modalities.contains(&m) => {
                return ineligible(
                    "eligibility.modality",
                    format!("not a chest radiograph: Modality {m}"),
                )
            }
            Some(_) => {}
        }
        if let Some(uid) = h.sop_class_uid.as_deref() {
            if !RADIOGRAPH_SOP_CLASSES.iter().any(|(u, _)| *u == uid) {
                return ineligible(
                    "eligibility.sop_class",
                    format!("not a radiograph: SOP class {}", sop_class_name(uid)),
                );
            }
        }
        if let Some(part) = h
            .body_part
            .as_deref()
            .map(|p| p.trim().to_ascii_uppercase())
            .filter(|p| !p.is_empty())
        {
            if !CHEST.contains(&part.as_str()) {
                return ineligible(
                    "eligibility.body_part",
                    format!("not a chest radiograph: Body Part Examined {part}"),
                );
            }
        }
        if let Some(region) = h
            .anatomic_region
            .as_deref()
            .filter(|r| !r.trim().is_empty())
        {
            if !is_chest_region(region) {
                return ineligible(
                    "eligibility.body_part",
                    format!(
                        "not a chest radiograph: Anatomic Region Sequence (0008,2218) {}",
                        region.trim()
                    ),
                );
            }
        }
        if h.frames > 1 {
            return ineligible(
                "eligibility.multiframe",
                format!(
                    "multi-frame object ({} frames), not a single radiograph",
                    h.frames
                ),
            );
        }
        let photometric = h.photometric.as_deref().unwrap_or("").trim();
        if h.samples_per_pixel == 1 && photometric.is_empty() {
            return ineligible(
                "eligibility.photometric_missing",
                "no Photometric Interpretation (0028,0004): a radiograph states MONOCHROME1 or \
                 MONOCHROME2, and without it which way up its grey scale is shown is unknown"
                    .to_string(),
            );
        }
        if h.samples_per_pixel != 1 || !photometric.starts_with("MONOCHROME") {
            return ineligible(
                "eligibility.colour",
                format!(
                    "colour image ({} samples per pixel, {}), not a radiograph",
                    h.samples_per_pixel,
                    if photometric.is_empty() {
                        "no photometric interpretation"
                    } else {
                        photometric
                    }
                ),
            );
        }
        let value = |i: usize| {
            h.image_type
                .get(i)
                .map(|v| v.trim().to_ascii_uppercase())
                .unwrap_or_default()
        };
        let intent = h.presentation_intent.as_deref().map(str::trim);
        let raw = h.sop_class_uid.as_deref() == Some(DX_FOR_PROCESSING)
            || intent.is_some_and(|i| i.eq_ignore_ascii_case("FOR PROCESSING"));
        if raw && !self.for_processing {
            return ineligible(
                "eligibility.for_processing",
                "raw detector data (DX For Processing): the model reads images processed for \
                 presentation, like those it was trained on"
                    .into(),
            );
        }
        if value(0) == "DERIVED" || value(1) == "SECONDARY" {
            return ineligible(
                "eligibility.derived",
                format!(
                    "derived or secondary image (Image Type {}), not an original radiograph",
                    h.image_type.join("\\")
                ),
            );
        }
        // A header without an age leaves the decision to the scan event's (`check_age`).
        match h.patient_age_years {
            Some(_) => self.check_age(h.patient_age_years),
            None => Ok(()),
        }
    }

    /// The age rule alone, for an age from the header or, when the image has none (PNG/JPEG, a
    /// header without age or birth date), from the scan event. An unknown age passes unless
    /// `unknown_age` says otherwise: the header gates above and the out-of-distribution gate
    /// still apply.
    pub fn check_age(&self, age: Option<i32>) -> Result<(), Ineligible> {
        match age {
            Some(years) if i64::from(years) < i64::from(self.min_age_years) => ineligible(
                "eligibility.age",
                format!(
                    "patient aged {years}: the model was trained and validated on patients {} \
                     and over",
                    self.min_age_years
                ),
            ),
            None if self.min_age_years > 0 && self.unknown_age == UnknownAge::NotAssessable => {
                ineligible(
                    "eligibility.age_unknown",
                    format!(
                        "no patient age in the image header (Patient's Age, or a birth date) or \
                         the scan event: the model was trained and validated on patients {} and \
                         over, and this site does not score an age it cannot check",
                        self.min_age_years
                    ),
                )
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chest_cr() -> DicomHeader {
        DicomHeader {
            modality: Some("CR".into()),
            sop_class_uid: Some("1.2.840.10008.5.1.4.1.1.1".into()),
            body_part: Some("CHEST".into()),
            anatomic_region: None,
            image_type: vec!["ORIGINAL".into(), "PRIMARY".into()],
            frames: 1,
            samples_per_pixel: 1,
            photometric: Some("MONOCHROME1".into()),
            view_position: Some("PA".into()),
            presentation_intent: None,
            patient_age_years: Some(61),
        }
    }

    #[test]
    fn an_anatomic_region_other_than_the_chest_is_refused_whatever_body_part_says() {
        let mut dx = chest_cr();
        dx.body_part = None;
        for chest in [
            "Chest",
            "Thoracic structure",
            "T-D3000",
            "43799004",
            "Chest and Abdomen",
        ] {
            dx.anatomic_region = Some(chest.into());
            assert_eq!(code(&dx), None, "{chest}");
        }
        dx.anatomic_region = Some("Thoracic spine".into());
        assert_eq!(code(&dx), Some("eligibility.body_part"), "a spine film");
        dx.anatomic_region = Some("Knee".into());
        let e = EligibilityRules::default().check(&dx).unwrap_err();
        assert_eq!(e.code, "eligibility.body_part");
        assert_eq!(
            e.reason,
            "not a chest radiograph: Anatomic Region Sequence (0008,2218) Knee"
        );
        // A header that contradicts itself is not scored either.
        dx.body_part = Some("CHEST".into());
        assert_eq!(code(&dx), Some("eligibility.body_part"));
    }

    #[test]
    fn a_child_is_not_scored_by_a_model_of_adults() {
        let rules = EligibilityRules::default();
        let mut child = chest_cr();
        child.patient_age_years = Some(4);
        let e = rules.check(&child).unwrap_err();
        assert_eq!(e.code, "eligibility.age");
        assert_eq!(
            e.reason,
            "patient aged 4: the model was trained and validated on patients 18 and over"
        );
        child.patient_age_years = Some(18);
        assert_eq!(code(&child), None, "18 is an adult");
        child.patient_age_years = None;
        assert_eq!(code(&child), None, "an unknown age passes");
        // Another rule's reason comes first: a child's knee is not a chest radiograph.
        child.patient_age_years = Some(4);
        child.body_part = Some("KNEE".into());
        assert_eq!(code(&child), Some("eligibility.body_part"));
        // A site whose model is validated on children scores every age.
        let any_age = EligibilityRules {
            min_age_years: 0,
            ..EligibilityRules::default()
        };
        assert_eq!(any_age.check_age(Some(0)), Ok(()));
        assert!(rules.check_age(Some(17)).is_err());
    }

    #[test]
    fn a_site_may_refuse_an_age_nobody_gave() {
        let strict = EligibilityRules {
            unknown_age: UnknownAge::NotAssessable,
            ..EligibilityRules::default()
        };
        let e = strict.check_age(None).unwrap_err();
        assert_eq!(e.code, "eligibility.age_unknown");
        assert_eq!(
            e.reason,
            "no patient age in the image header (Patient's Age, or a birth date) or the scan \
             event: the model was trained and validated on patients 18 and over, and this site \
             does not score an age it cannot check"
        );
        assert_eq!(strict.check_age(Some(40)), Ok(()));
        assert_eq!(
            strict.check_age(Some(9)).unwrap_err().code,
            "eligibility.age",
            "a known child is refused for its age"
        );
        // A header without an age is not judged by the header alone: the scan event may
        // still give one (`pipeline::with_event_age`).
        let mut no_age = chest_cr();
        no_age.patient_age_years = None;
        assert_eq!(strict.check(&no_age), Ok(()));
        // Nothing to check against when every age is scored.
        let any_age = EligibilityRules {
            min_age_years: 0,
            ..strict
        };
        assert_eq!(any_age.check_age(None), Ok(()));
        assert_eq!(EligibilityRules::default().check_age(None), Ok(()));
    }

    fn code(h: &DicomHeader) -> Option<&'static str> {
        EligibilityRules::default().check(h).err().map(|e| e.code)
    }

    #[test]
    fn a_chest_cr_or_dx_passes() {
        assert_eq!(code(&chest_cr()), None);
        let mut dx = chest_cr();
        dx.modality = Some("dx".into());
        dx.sop_class_uid = Some("1.2.840.10008.5.1.4.1.1.1.1".into());
        dx.body_part = None;
        dx.image_type = vec![];
        assert_eq!(code(&dx), None, "body part and image type are optional");
    }

    #[test]
    fn each_rule_names_its_reason() {
        let mut mr = chest_cr();
        mr.modality = Some("MR".into());
        let e = EligibilityRules::default().check(&mr).unwrap_err();
        assert_eq!(e.code, "eligibility.modality");
        assert_eq!(e.reason, "not a chest radiograph: Modality MR");

        let mut sc = chest_cr();
        sc.sop_class_uid = Some("1.2.840.10008.5.1.4.1.1.7".into());
        let e = EligibilityRules::default().check(&sc).unwrap_err();
        assert_eq!(e.code, "eligibility.sop_class");
        assert!(e.reason.contains("Secondary Capture"), "{e}");

        let mut abdomen = chest_cr();
        abdomen.body_part = Some("ABDOMEN".into());
        assert_eq!(code(&abdomen), Some("eligibility.body_part"));

        let mut multi = chest_cr();
        multi.frames = 3;
        assert_eq!(code(&multi), Some("eligibility.multiframe"));

        let mut rgb = chest_cr();
        rgb.samples_per_pixel = 3;
        rgb.photometric = Some("RGB".into());
        assert_eq!(code(&rgb), Some("eligibility.colour"));
        let mut unstated = chest_cr();
        unstated.photometric = None;
        assert_eq!(code(&unstated), Some("eligibility.photometric_missing"));

        let mut derived = chest_cr();
        derived.image_type = vec!["DERIVED".into(), "PRIMARY".into()];
        assert_eq!(code(&derived), Some("eligibility.derived"));
        derived.image_type = vec!["ORIGINAL".into(), "SECONDARY".into()];
        assert_eq!(code(&derived), Some("eligibility.derived"));

        let mut none = chest_cr();
        none.modality = None;
        assert_eq!(code(&none), Some("eligibility.modality"));
    }

    #[test]
    fn raw_detector_data_is_scored_only_where_the_site_says_its_model_reads_it() {
        let mut raw = chest_cr();
        raw.modality = Some("DX".into());
        raw.sop_class_uid = Some(DX_FOR_PROCESSING.into());
        raw.presentation_intent = Some("FOR PROCESSING".into());
        let e = EligibilityRules::default().check(&raw).unwrap_err();
        assert_eq!(e.code, "eligibility.for_processing");
        assert!(e.reason.starts_with("raw detector data"), "{e}");
        // Either sign is enough: the SOP class, or the intent in a For Presentation class.
        raw.presentation_intent = None;
        assert_eq!(code(&raw), Some("eligibility.for_processing"));
        let mut intent = chest_cr();
        intent.presentation_intent = Some("for processing ".into());
        assert_eq!(code(&intent), Some("eligibility.for_processing"));
        intent.presentation_intent = Some("FOR PRESENTATION".into());
        assert_eq!(code(&intent), None);
        let site = EligibilityRules {
            for_processing: true,
            ..EligibilityRules::default()
        };
        assert_eq!(site.check(&raw), Ok(()));
    }

    #[test]
    fn a_configured_modality_list_is_honoured() {
        let rules = EligibilityRules {
            modalities: vec!["DX".into()],
            ..EligibilityRules::default()
        };
        assert!(rules.check(&chest_cr()).is_err(), "CR not in the list");
    }
}
