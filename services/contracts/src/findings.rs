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
