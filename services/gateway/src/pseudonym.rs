//! Keyed pseudonyms for the identifiers a scan event carries: the patient id becomes
//! `pt-<hex>` = HMAC-SHA256(key, patient id) and the accession number `acc-<hex>` (keyed too,
//! with its own domain so equal strings in the two fields never share a pseudonym). Without the
//! key nobody can confirm a guessed id; with it, the same patient always maps to the same
//! pseudonym, so downstream joins by patient still work.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Pseudonym of a patient without a Patient ID: shared by all such patients, and says so.
pub const UNKNOWN_PATIENT: &str = "pt-unknown";

#[derive(Clone)]
pub struct Pseudonymizer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer(****)")
    }
}

impl Pseudonymizer {
    pub fn new(key: Vec<u8>) -> Self {
        Pseudonymizer { key }
    }

    fn mac(&self, parts: &[&[u8]]) -> String {
        // HMAC accepts keys of any length, so this cannot fail; the fallback keeps it total.
        let Ok(mut mac) = HmacSha256::new_from_slice(&self.key) else {
            return "unavailable".to_string();
        };
        for p in parts {
            mac.update(p);
        }
        // 128 bits: collisions are out of reach for any hospital's patient count.
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// `pt-<hex>` = HMAC-SHA256(key, patient id), or [`UNKNOWN_PATIENT`] when there is none.
    pub fn patient(&self, patient_id: Option<&str>) -> String {
        match patient_id.map(str::trim).filter(|p| !p.is_empty()) {
            Some(id) => format!("pt-{}", self.mac(&[id.as_bytes()])),
            None => UNKNOWN_PATIENT.to_string(),
        }
    }

    /// `acc-<hex>`: the accession number, keyed in its own domain.
    pub fn accession(&self, accession: Option<&str>) -> Option<String> {
        accession
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| format!("acc-{}", self.mac(&[b"accession\0", a.as_bytes()])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_keyed_stable_and_hide_the_id() {
        let p = Pseudonymizer::new(b"0123456789abcdef".to_vec());
        let a = p.patient(Some("PAT-000123"));
        assert!(a.starts_with("pt-") && a.len() == 3 + 32, "{a}");
        assert!(!a.contains("000123"));
        assert_eq!(a, p.patient(Some(" PAT-000123 ")));
        assert_ne!(a, p.patient(Some("PAT-000124")));
        let other = Pseudonymizer::new(b"fedcba9876543210".to_vec());
        assert_ne!(a, other.patient(Some("PAT-000123")));
        assert_eq!(p.patient(None), UNKNOWN_PATIENT);
        assert_eq!(p.patient(Some("  ")), UNKNOWN_PATIENT);
        let acc = p.accession(Some("PAT-000123")).unwrap();
        assert!(acc.starts_with("acc-"));
        assert_ne!(&acc[4..], &a[3..], "accession and patient domains differ");
        assert_eq!(p.accession(Some("")), None);
        assert_eq!(format!("{p:?}"), "Pseudonymizer(****)");
    }

    #[test]
    fn matches_the_published_hmac_sha256_test_vector() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let p = Pseudonymizer::new(b"Jefe".to_vec());
        assert_eq!(
            p.patient(Some("what do ya want for nothing?")),
            "pt-5bdcc146bf60754e6a042426089575c7"
        );
    }
}
