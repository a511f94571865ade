//! Replay: publishes held-out CheXpert studies as a PACS gateway would (`cxr.scan.v1`).
//!
//! One image per study is sent (the first frontal view, else the first image), so a study is
//! one worklist entry; images travel inline when small, else by `file://` reference. UIDs are
//! derived from the dataset path (`2.25.<uuid-as-integer>`, the DICOM UUID-derived form) and
//! the patient becomes a keyed pseudonym, so nothing of the source identifiers travels.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cxrflow_common::kafka::Producer;
use cxrflow_common::time::now_millis;
use cxrflow_contracts::{Codec, OrderPriority, ScanEvent, StudyContext};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp};
use sha2::{Digest, Sha256};

use crate::dataset::{ChexpertDataset, ChexpertRow};
use crate::labels::{Finding, LabelState, Projection, Sex, ViewKind};

/// Findings a reader must not wait for (the triage defaults' critical set).
pub const CRITICAL: [Finding; 7] = [
    Finding::Pneumothorax,
    Finding::PleuralEffusion,
    Finding::Edema,
    Finding::Consolidation,
    Finding::Pneumonia,
    Finding::LungLesion,
    Finding::EnlargedCardiomediastinum,
];

/// A study selected for replay.
#[derive(Debug, Clone)]
pub struct ReplayStudy {
    pub uid: String,
    pub row: ChexpertRow,
    pub image: PathBuf,
    pub site: String,
    pub priority: OrderPriority,
    /// Where a by-reference image is exposed under a pseudonymous name (a PACS export folder),
    /// so the URI on the topic carries no dataset path with its patient id.
    pub staging: PathBuf,
}

impl ReplayStudy {
    /// Ground truth: any critical finding positive.
    pub fn critical_truth(&self) -> bool {
        CRITICAL
            .iter()
            .any(|f| self.row.label(*f) == LabelState::Positive)
    }
}

/// A DICOM UID derived from a name (`2.25.` + 128-bit hash as a decimal integer).
pub fn derived_uid(name: &str) -> String {
    let d = Sha256::digest(name.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    format!("2.25.{}", u128::from_be_bytes(b))
}

/// A keyed pseudonym (never the dataset's patient id).
pub fn pseudonym(secret: &str, id: &str) -> String {
    let d = Sha256::digest(format!("{secret}\u{0}{id}").as_bytes());
    format!("pt-{}", hex::encode(&d[..8]))
}

/// Picks `n` studies from the dataset's `table` (e.g. `heldout.csv`), deterministically.
pub fn select_studies(
    ds: &ChexpertDataset,
    table: &str,
    n: usize,
    seed: u64,
    sites: &[String],
) -> Vec<ReplayStudy> {
    let rows = ds
        .tables
        .iter()
        .find(|(name, _)| name == table)
        .map(|(_, t)| t.rows.clone())
        .unwrap_or_else(|| ds.all_rows().rows);
    let mut by_study: BTreeMap<_, Vec<ChexpertRow>> = BTreeMap::new();
    for r in rows {
        by_study.entry(r.study_key()).or_default().push(r);
    }
    let mut studies: Vec<ChexpertRow> = by_study
        .into_values()
        .filter_map(|rows| {
            rows.iter()
                .find(|r| r.view == ViewKind::Frontal)
                .or(rows.first())
                .cloned()
        })
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Fisher–Yates via rand's shuffle keeps the choice reproducible for a seed.
    rand::seq::SliceRandom::shuffle(studies.as_mut_slice(), &mut rng);
    studies
        .into_iter()
        .take(n)
        .enumerate()
        .map(|(i, row)| {
            let stat = rng.random_bool(0.03);
            ReplayStudy {
                uid: derived_uid(&format!("study/{}/{}", row.patient.0, row.study)),
                image: ds.parent.join(&row.path).with_extension("png"),
                site: sites[i % sites.len().max(1)].clone(),
                priority: if stat {
                    OrderPriority::Stat
                } else {
                    OrderPriority::Routine
                },
                staging: ds.parent.join(".replay-staging"),
                row,
            }
        })
        .collect()
}

/// Where `s`'s image is staged: named after its (derived, pseudonymous) SOP instance UID.
fn staged_path(s: &ReplayStudy) -> PathBuf {
    s.staging.join(format!(
        "{}.png",
        derived_uid(&format!("sop/{}", s.row.path))
    ))
}

/// Exposes `s`'s image in its staging folder under the SOP-derived name (hard link, or a copy
/// across file systems) and returns that path.
pub fn stage_image(s: &ReplayStudy) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(&s.staging)?;
    let staged = staged_path(s);
    if !staged.exists() && std::fs::hard_link(&s.image, &staged).is_err() {
        std::fs::copy(&s.image, &staged)?;
    }
    Ok(staged)
}

/// The scan event a gateway would publish for `s`. A by-reference image must have been staged
/// ([`stage_image`]): the URI names the staged file, never the dataset path.
pub fn scan_event(s: &ReplayStudy, image: Option<Vec<u8>>, size: u64, secret: &str) -> ScanEvent {
    let now = now_millis();
    let view = match (s.row.view, s.row.projection) {
        (ViewKind::Lateral, _) => "LL",
        (_, Some(Projection::Ap)) => "AP",
        (_, Some(Projection::Pa)) => "PA",
        (_, Some(Projection::Ll)) => "LL",
        (_, Some(Projection::Rl)) => "RL",
        (ViewKind::Frontal, None) => "PA",
    };
    let sex = match s.row.sex {
        Sex::Male => Some("M".to_string()),
        Sex::Female => Some("F".to_string()),
        Sex::Unknown => None,
    };
    let inline = image.is_some();
    ScanEvent {
        event_id: uuid::Uuid::new_v4().to_string(),
        study: StudyContext {
            site_id: s.site.clone(),
            study_instance_uid: s.uid.clone(),
            series_instance_uid: derived_uid(&format!("series/{}", s.row.path)),
            sop_instance_uid: derived_uid(&format!("sop/{}", s.row.path)),
            accession_number: None,
            patient_ref: pseudonym(secret, &s.row.patient.0),
            modality: "CR".into(),
            view_position: Some(view.into()),
            patient_age_years: s.row.age.map(|a| a as i32),
            patient_sex: sex,
            acquired_at: now,
            published_at: now,
            priority_hint: s.priority,
        },
        media_type: "image/png".into(),
        image_inline: image,
        image_uri: (!inline).then(|| format!("file://{}", staged_path(s).display())),
        image_sha256: None,
        image_size_bytes: Some(size as i64),
    }
}

/// How studies arrive.
#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum)]
pub enum Arrival {
    /// Evenly spaced at the rate.
    Constant,
    /// A Poisson process at the rate (exponential gaps).
    Poisson,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("reading {path}: {source}")]
    Image {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Produce(#[from] cxrflow_common::kafka::ProduceError),
}

/// One published study.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Published {
    pub uid: String,
    pub published_at: i64,
}

/// How a replay paces and sends its studies.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub arrival: Arrival,
    /// Studies per second.
    pub rate: f64,
    /// Images up to this many bytes ride inline; larger ones by `file://` reference.
    pub inline_max: u64,
    pub seed: u64,
}

/// Publishes `studies` as `pace` says.
pub async fn publish(
    producer: &Producer,
    codec: &Codec,
    studies: &[ReplayStudy],
    pace: Pace,
    mut progress: impl FnMut(usize),
) -> Result<Vec<Published>, ReplayError> {
    let Pace {
        arrival,
        rate,
        inline_max,
        seed,
    } = pace;
    let secret = format!("sim-{seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed);
    let gap = Exp::new(rate.max(1e-6)).expect("positive rate");
    let start = Instant::now();
    let mut due = 0.0f64;
    let mut out = Vec::with_capacity(studies.len());
    for (i, s) in studies.iter().enumerate() {
        let wait = Duration::from_secs_f64(due).saturating_sub(start.elapsed());
        tokio::time::sleep(wait).await;
        let meta = std::fs::metadata(&s.image).map_err(|e| ReplayError::Image {
            path: s.image.clone(),
            source: e,
        })?;
        let inline = if meta.len() <= inline_max {
            Some(std::fs::read(&s.image).map_err(|e| ReplayError::Image {
                path: s.image.clone(),
                source: e,
            })?)
        } else {
            stage_image(s).map_err(|e| ReplayError::Image {
                path: s.image.clone(),
                source: e,
            })?;
            None
        };
        let ev = scan_event(s, inline, meta.len(), &secret);
        producer.send(codec, &ev, &BTreeMap::new()).await?;
        out.push(Published {
            uid: s.uid.clone(),
            published_at: ev.study.published_at,
        });
        progress(i + 1);
        due += match arrival {
            Arrival::Constant => 1.0 / rate.max(1e-6),
            Arrival::Poisson => gap.sample(&mut rng),
        };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_uids_follow_the_dicom_grammar() {
        let u = derived_uid("study/patient00001/1");
        assert!(u.len() <= 64);
        assert!(u.starts_with("2.25."));
        assert!(u[5..].bytes().all(|b| b.is_ascii_digit()));
        assert!(!u[5..].starts_with('0') || u.len() == 6);
        assert_ne!(u, derived_uid("study/patient00001/2"));
    }

    #[test]
    fn pseudonym_hides_the_patient_id() {
        let p = pseudonym("s", "patient00001");
        assert!(!p.contains("00001"));
        assert_eq!(p, pseudonym("s", "patient00001"));
        assert_ne!(p, pseudonym("other", "patient00001"));
    }
}
