//! Patient-level splits: every image of a patient lands in exactly one split, so "held-out"
//! means what it says (no patient is both in the model's training data and in the replay).
//!
//! Assignment is a pure function of (seed, patient id), not of file order or of which other
//! patients exist, so a patient keeps its split when the source file grows or is filtered.

use crate::dataset::{ChexpertRow, PatientId, StudyKey};
use crate::rng::{stable_hash, unit};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;

/// Which part of the synthetic dataset a patient belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Split {
    /// Fitting the model.
    Train,
    /// Measuring the model (AUROC per finding).
    Valid,
    /// Replayed as live traffic; never seen by the model.
    Heldout,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Valid, Split::Heldout];

    /// Directory and csv stem (`train`, `valid`, `heldout`).
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Valid => "valid",
            Split::Heldout => "heldout",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SplitError {
    #[error("split fractions must be finite and non-negative with a positive sum, got {0:?}")]
    BadFractions(SplitFractions),
}

/// Share of patients per split; normalized by their sum.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SplitFractions {
    pub train: f64,
    pub valid: f64,
    pub heldout: f64,
}

impl Default for SplitFractions {
    fn default() -> Self {
        Self {
            train: 0.7,
            valid: 0.1,
            heldout: 0.2,
        }
    }
}

/// Deterministic patient → split assignment.
#[derive(Debug, Clone)]
pub struct PatientSplitter {
    seed: u64,
    /// Cumulative upper bounds for train and valid; the rest is held out.
    train_below: f64,
    valid_below: f64,
}

impl PatientSplitter {
    pub fn new(seed: u64, fractions: SplitFractions) -> Result<Self, SplitError> {
        let parts = [fractions.train, fractions.valid, fractions.heldout];
        let sum: f64 = parts.iter().sum();
        if parts.iter().any(|p| !p.is_finite() || *p < 0.0) || sum <= 0.0 || !sum.is_finite() {
            return Err(SplitError::BadFractions(fractions));
        }
        Ok(Self {
            seed,
            train_below: fractions.train / sum,
            valid_below: (fractions.train + fractions.valid) / sum,
        })
    }

    pub fn split_of(&self, patient: &PatientId) -> Split {
        let u = unit(stable_hash(self.seed, "patient-split", &patient.0));
        if u < self.train_below {
            Split::Train
        } else if u < self.valid_below {
            Split::Valid
        } else {
            Split::Heldout
        }
    }
}

/// All image rows of one study, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Study {
    pub key: StudyKey,
    /// Indices into the row slice the study was grouped from.
    pub rows: Vec<usize>,
}

/// Groups rows into studies, in order of each study's first row.
pub fn group_studies(rows: &[ChexpertRow]) -> Vec<Study> {
    let mut index: HashMap<StudyKey, usize> = HashMap::new();
    let mut studies: Vec<Study> = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let key = row.study_key();
        match index.get(&key) {
            Some(&s) => studies[s].rows.push(i),
            None => {
                index.insert(key.clone(), studies.len());
                studies.push(Study { key, rows: vec![i] });
            }
        }
    }
    studies
}

/// Picks up to `n` studies of `split`, seeded: a study's rank is a hash of (seed, study key), so
/// the pick does not depend on file order, and asking for more studies only adds to the pick.
/// The result is in the studies' original order.
pub fn pick_studies<'a>(
    studies: &'a [Study],
    splitter: &PatientSplitter,
    split: Split,
    n: usize,
    seed: u64,
) -> Vec<&'a Study> {
    let mut ranked: Vec<(u64, usize)> = studies
        .iter()
        .enumerate()
        .filter(|(_, s)| splitter.split_of(&s.key.patient) == split)
        .map(|(i, s)| {
            let key = format!("{}/study{}", s.key.patient.0, s.key.study);
            (stable_hash(seed, "study-pick", &key), i)
        })
        .collect();
    ranked.sort_unstable();
    let mut chosen: Vec<usize> = ranked.into_iter().take(n).map(|(_, i)| i).collect();
    chosen.sort_unstable();
    chosen.into_iter().map(|i| &studies[i]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::labels::{Labels, Sex, ViewKind};
    use std::collections::HashSet;

    fn rows(patients: usize) -> Vec<ChexpertRow> {
        let mut out = Vec::new();
        for p in 0..patients {
            for study in 1..=(1 + p % 3) as u32 {
                for view in 1..=(1 + p % 2) {
                    let patient = PatientId(format!("patient{p:05}"));
                    out.push(ChexpertRow {
                        path: format!("x/train/{}/study{study}/view{view}_frontal.jpg", patient.0),
                        patient,
                        study,
                        sex: Sex::Female,
                        age: Some(50),
                        view: ViewKind::Frontal,
                        projection: None,
                        labels: Labels::default(),
                    });
                }
            }
        }
        out
    }

    #[test]
    fn no_patient_in_two_splits_and_fractions_hold() {
        let rows = rows(3000);
        let studies = group_studies(&rows);
        let splitter = PatientSplitter::new(42, SplitFractions::default()).unwrap();
        let mut seen: HashMap<&PatientId, Split> = HashMap::new();
        let mut picked_patients: Vec<HashSet<&PatientId>> = Vec::new();
        for split in Split::ALL {
            let pick = pick_studies(&studies, &splitter, split, usize::MAX, 1);
            picked_patients.push(pick.iter().map(|s| &s.key.patient).collect());
            for s in pick {
                assert_eq!(*seen.entry(&s.key.patient).or_insert(split), split);
            }
        }
        let train = picked_patients[0].len() as f64 / 3000.0;
        assert!((train - 0.7).abs() < 0.04, "train share {train}");
        assert!(picked_patients[0].is_disjoint(&picked_patients[2]));
        assert!(picked_patients[1].is_disjoint(&picked_patients[2]));
    }

    #[test]
    fn split_and_pick_are_deterministic() {
        let rows = rows(500);
        let studies = group_studies(&rows);
        let a = PatientSplitter::new(7, SplitFractions::default()).unwrap();
        let b = PatientSplitter::new(7, SplitFractions::default()).unwrap();
        let pa = pick_studies(&studies, &a, Split::Heldout, 40, 3);
        let pb = pick_studies(&studies, &b, Split::Heldout, 40, 3);
        assert_eq!(pa.len(), 40);
        assert_eq!(pa, pb);
        // Another seed assigns patients differently.
        let c = PatientSplitter::new(8, SplitFractions::default()).unwrap();
        let differs = studies
            .iter()
            .any(|s| a.split_of(&s.key.patient) != c.split_of(&s.key.patient));
        assert!(differs);
        // Reversing the file changes nothing about which studies are chosen.
        let mut reversed = rows.clone();
        reversed.reverse();
        let rstudies = group_studies(&reversed);
        let keys = |p: Vec<&Study>| p.into_iter().map(|s| s.key.clone()).collect::<HashSet<_>>();
        assert_eq!(
            keys(pick_studies(&rstudies, &a, Split::Heldout, 40, 3)),
            keys(pa)
        );
    }

    #[test]
    fn studies_keep_all_their_images() {
        let rows = rows(10);
        let studies = group_studies(&rows);
        let total: usize = studies.iter().map(|s| s.rows.len()).sum();
        assert_eq!(total, rows.len());
        for s in &studies {
            assert!(s.rows.iter().all(|&i| rows[i].study_key() == s.key));
        }
    }

    #[test]
    fn bad_fractions_are_rejected() {
        let f = SplitFractions {
            train: -1.0,
            valid: 0.0,
            heldout: 1.0,
        };
        assert!(PatientSplitter::new(0, f).is_err());
        let zero = SplitFractions {
            train: 0.0,
            valid: 0.0,
            heldout: 0.0,
        };
        assert!(PatientSplitter::new(0, zero).is_err());
    }
}
