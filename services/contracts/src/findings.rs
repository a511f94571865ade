//! The 14 CheXpert findings in canonical order.

/// A CheXpert finding name, as it appears in the label file and on records.
pub type Finding = &'static str;

pub const FINDINGS: [Finding; 14] = [
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
];

/// Whether `name` is one of the 14 findings.
pub fn is_known(name: &str) -> bool {
    FINDINGS.contains(&name)
}

/// The findings of the CRITICAL tier by default: minutes matter. Pneumothorax is the one
/// CheXpert label in this class: it is category 1 ("immediate") of the ACR Actionable Reporting
/// Work Group (Larson et al., J Am Coll Radiol 2014;11:552–558; tension pneumothorax), and the
/// finding the first cleared chest X-ray triage devices flag (GE Critical Care Suite, 2019;
/// Lunit INSIGHT CXR Triage and qXR-PTX-PE, pneumothorax with pleural effusion; Annalise
/// Enterprise CXR Triage Trauma). The other category-1 chest findings (misplaced tubes,
/// pneumoperitoneum) have no CheXpert label. Sites change it with `cxrflow model calibrate
/// --critical`.
pub const CRITICAL_FINDINGS: [Finding; 1] = ["Pneumothorax"];

/// The findings of the URGENT tier by default: hours matter. Pleural effusion is flagged by
/// cleared triage devices (Zebra HealthCXR, 2019; Lunit, qXR) but is seldom an emergency and is
/// positive in a large share of an inpatient population (CheXpert), so it cannot be CRITICAL
/// without flagging most studies; edema (acute heart failure), consolidation and pneumonia (a new
/// infection to treat) and an enlarged cardiomediastinum (a widened mediastinum may be aortic
/// injury) change the same day's care. A lung lesion is actionable in days (ACR category 3, a
/// follow-up, not a reading-order question); cardiomegaly, atelectasis, lung opacity, pleural
/// other, fracture (mostly old rib fractures) and support devices (present, not misplaced: the
/// label says nothing of position) raise no tier.
pub const URGENT_FINDINGS: [Finding; 5] = [
    "Pleural Effusion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Enlarged Cardiomediastinum",
];
