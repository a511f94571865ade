//! Deterministic identifiers: the same decision version always yields the same SR SOP Instance
//! UID and the same FHIR identifiers, so a re-delivery is a duplicate the receiver recognises
//! (a PACS keeps one instance per SOP Instance UID; the FHIR server's conditional create finds
//! the identifier) rather than a second result.
//!
//! UIDs are `2.25.<decimal of a name-based UUID>` (DICOM PS3.5 §B.2: UUID-derived UIDs need no
//! registered root), the UUID a version-5 (SHA-1) hash of a name under cxrflow's namespace.

use uuid::Uuid;

/// cxrflow's namespace for name-based UUIDs (itself the version-5 UUID of its URL).
fn namespace() -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        b"https://example.invalid/cxrflow/results",
    )
}

/// The name-based UUID of `parts` joined by `/`.
pub fn name_uuid(parts: &[&str]) -> Uuid {
    Uuid::new_v5(&namespace(), parts.join("/").as_bytes())
}

/// A DICOM UID derived from `parts`: at most 44 characters, always the same for the same parts.
pub fn dicom_uid(parts: &[&str]) -> String {
    format!("2.25.{}", name_uuid(parts).as_u128())
}

/// The SR document's series in a study: one "AI triage results" series per study.
pub fn sr_series_uid(study_uid: &str) -> String {
    dicom_uid(&["sr-series", study_uid])
}

/// The SR document of one decision version.
pub fn sr_instance_uid(study_uid: &str, version: i64) -> String {
    dicom_uid(&["sr-instance", study_uid, &version.to_string()])
}

/// The device (model name and version) as a DICOM UID, for the SR's Device Observer UID.
pub fn device_uid(model: &str) -> String {
    dicom_uid(&["device", model])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_deterministic_distinct_and_valid() {
        let a = sr_instance_uid("1.2.3", 1);
        assert_eq!(a, sr_instance_uid("1.2.3", 1));
        assert_ne!(a, sr_instance_uid("1.2.3", 2));
        assert_ne!(a, sr_instance_uid("1.2.4", 1));
        for u in [a, sr_series_uid("1.2.3"), device_uid("m@1")] {
            assert!(u.len() <= 64, "{u}");
            assert!(u.starts_with("2.25."));
            // No leading zero in a component (PS3.5 §9.1).
            assert!(u.split('.').all(|c| c == "0" || !c.starts_with('0')), "{u}");
        }
    }
}
