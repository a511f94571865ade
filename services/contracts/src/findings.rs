//! The 14 CheXpert findings in canonical order: the one list the services, the simulator and
//! the model manifests agree on. Records carry findings as their names (strings in Avro), so a
//! schema never changes with this enum.

use std::fmt;
use std::str::FromStr;

/// One of the 14 CheXpert observations, in the label file's column order (the order of a
/// model's outputs, docs/model-manifest.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Finding {
    NoFinding,
    EnlargedCardiomediastinum,
    Cardiomegaly,
    LungOpacity,
    LungLesion,
    Edema,
    Consolidation,
    Pneumonia,
    Atelectasis,
    Pneumothorax,
    PleuralEffusion,
    PleuralOther,
    Fracture,
    SupportDevices,
}

impl Finding {
    pub const COUNT: usize = 14;

    /// All findings in canonical order.
    pub const ALL: [Finding; Finding::COUNT] = [
        Finding::NoFinding,
        Finding::EnlargedCardiomediastinum,
        Finding::Cardiomegaly,
        Finding::LungOpacity,
        Finding::LungLesion,
        Finding::Edema,
        Finding::Consolidation,
        Finding::Pneumonia,
        Finding::Atelectasis,
        Finding::Pneumothorax,
        Finding::PleuralEffusion,
        Finding::PleuralOther,
        Finding::Fracture,
        Finding::SupportDevices,
    ];

    /// The name on records and in CheXpert's label files (its column header).
    pub const fn name(self) -> &'static str {
        match self {
            Finding::NoFinding => "No Finding",
            Finding::EnlargedCardiomediastinum => "Enlarged Cardiomediastinum",
            Finding::Cardiomegaly => "Cardiomegaly",
            Finding::LungOpacity => "Lung Opacity",
            Finding::LungLesion => "Lung Lesion",
            Finding::Edema => "Edema",
            Finding::Consolidation => "Consolidation",
            Finding::Pneumonia => "Pneumonia",
            Finding::Atelectasis => "Atelectasis",
            Finding::Pneumothorax => "Pneumothorax",
            Finding::PleuralEffusion => "Pleural Effusion",
            Finding::PleuralOther => "Pleural Other",
            Finding::Fracture => "Fracture",
            Finding::SupportDevices => "Support Devices",
        }
    }

    /// Position in [`Finding::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of the 14 findings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown finding {0:?}")]
pub struct UnknownFinding(pub String);

impl FromStr for Finding {
    type Err = UnknownFinding;

    /// The finding with exactly this name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Finding::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| UnknownFinding(s.to_string()))
    }
}

impl serde::Serialize for Finding {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

const fn names<const N: usize>(findings: [Finding; N]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = findings[i].name();
        i += 1;
    }
    out
}

/// The names of [`Finding::ALL`], in order: what records and manifests carry.
pub const FINDINGS: [&str; Finding::COUNT] = names(Finding::ALL);

/// Whether `name` is one of the 14 findings.
pub fn is_known(name: &str) -> bool {
    name.parse::<Finding>().is_ok()
}

/// The findings of the CRITICAL tier by default: minutes matter. Pneumothorax is the one
/// CheXpert label in this class: it is category 1 ("immediate") of the ACR Actionable Reporting
/// Work Group (Larson et al., J Am Coll Radiol 2014;11:552–558; tension pneumothorax), and the
/// finding the first cleared chest X-ray triage devices flag (GE Critical Care Suite, 2019;
/// Lunit INSIGHT CXR Triage and qXR-PTX-PE, pneumothorax with pleural effusion; Annalise
/// Enterprise CXR Triage Trauma). The other category-1 chest findings (misplaced tubes,
/// pneumoperitoneum) have no CheXpert label. Sites change it with `cxrflow model calibrate
/// --critical`.
pub const CRITICAL_FINDINGS: [&str; 1] = names([Finding::Pneumothorax]);

/// The findings of the URGENT tier by default: hours matter. Pleural effusion is flagged by
/// cleared triage devices (Zebra HealthCXR, 2019; Lunit, qXR) but is seldom an emergency and is
/// positive in a large share of an inpatient population (CheXpert), so it cannot be CRITICAL
/// without flagging most studies; edema (acute heart failure), consolidation and pneumonia (a new
/// infection to treat) and an enlarged cardiomediastinum (a widened mediastinum may be aortic
/// injury) change the same day's care. A lung lesion is actionable in days (ACR category 3, a
/// follow-up, not a reading-order question); cardiomegaly, atelectasis, lung opacity, pleural
/// other, fracture (mostly old rib fractures) and support devices (present, not misplaced: the
/// label says nothing of position) raise no tier.
pub const URGENT_FINDINGS: [&str; 5] = names([
    Finding::PleuralEffusion,
    Finding::Edema,
    Finding::Consolidation,
    Finding::Pneumonia,
    Finding::EnlargedCardiomediastinum,
]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_in_canonical_order() {
        for (i, f) in Finding::ALL.into_iter().enumerate() {
            assert_eq!(f.index(), i);
            assert_eq!(FINDINGS[i], f.name());
            assert_eq!(f.name().parse::<Finding>(), Ok(f));
            assert_eq!(f.to_string(), f.name());
        }
        assert_eq!(FINDINGS[13], "Support Devices");
        assert!(!is_known("Hernia") && !is_known("pneumothorax"));
        assert_eq!(CRITICAL_FINDINGS, ["Pneumothorax"]);
        assert!(URGENT_FINDINGS.iter().all(|f| is_known(f)));
    }
}
