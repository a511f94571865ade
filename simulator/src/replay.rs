//! Replay: publishes held-out CheXpert studies as a PACS gateway would (`cxr.scan.v1`).
//!
//! One image per study is sent (the first frontal view, else the first image, unless a drift
//! scenario says otherwise), so a study is one worklist entry; images travel inline when small,
//! else by `file://` reference. UIDs are derived from the dataset path (`2.25.<uuid-as-integer>`,
//! the DICOM UUID-derived form) and the patient becomes a keyed pseudonym, so nothing of the
//! source identifiers travels. A load test longer than the table cycles through it again: each
//! cycle after the first names its studies, series and images anew (the cycle number is part of
//! the derived name, [`study_uid`]), so every study is a new study downstream.
//!
//! [`arrival`] says when studies arrive, [`scenario`] which studies are drawn (and what changes
//! at the change point), [`pixels`] transforms images for the intensity scenario, and
//! [`publish_traffic`] paces and sends them.

pub mod arrival;
pub mod pixels;
mod population;
mod publish;
pub mod scenario;
mod sites;

use std::path::PathBuf;

use cxrflow_common::time::now_millis;
use cxrflow_contracts::{OrderPriority, ScanEvent, StudyContext};
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

pub use arrival::{Arrival, ArrivalConfig, ArrivalError, ArrivalProcess};
pub use population::PopulationMix;
pub use publish::{
    publish, publish_traffic, ChangePoint, Pace, Published, ReplayError, ReplayOutcome, TrafficPace,
};
pub use scenario::{DriftPlan, DriftScenario, StudyPool, INTENSITY_SHIFT};
pub use sites::SiteMix;

use crate::dataset::labels::{Finding, LabelState, Projection, Sex, ViewKind};
use crate::dataset::{ChexpertDataset, ChexpertRow};
use crate::synth::render::Drift;

/// Findings a reader must not wait for: ground truth for the CRITICAL tier
/// (`cxrflow_contracts::CRITICAL_FINDINGS`, where the choice is argued).
pub const CRITICAL: [Finding; 1] = [Finding::Pneumothorax];

/// Findings that change the same day's care: ground truth for the URGENT tier
/// (`cxrflow_contracts::URGENT_FINDINGS`).
pub const URGENT: [Finding; 5] = [
    Finding::PleuralEffusion,
    Finding::Edema,
    Finding::Consolidation,
    Finding::Pneumonia,
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
    /// Sent after the drift plan's change point.
    pub after_change: bool,
    /// Drawn from the scenario (its sub-population, or its pixel change).
    pub drifted: bool,
    /// The pixel change to apply before sending (intensity scenario).
    pub intensity: Option<Drift>,
    /// The pass through the table this study comes from (0: first); part of its UIDs.
    pub cycle: u32,
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

/// The name a UID of kind `kind` (`study`, `series`, `sop`) is derived from: the first cycle
/// keeps the names earlier runs used (label joins by `derived_uid("study/<patient>/<study>")`
/// keep working), later cycles add theirs so each one's UIDs are fresh and deterministic.
fn cycle_name(kind: &str, name: &str, cycle: u32) -> String {
    match cycle {
        0 => format!("{kind}/{name}"),
        n => format!("{kind}/{name}/cycle-{n}"),
    }
}

/// The Study Instance UID of `row`'s study in replay cycle `cycle`.
pub fn study_uid(row: &ChexpertRow, cycle: u32) -> String {
    derived_uid(&cycle_name(
        "study",
        &format!("{}/{}", row.patient.0, row.study),
        cycle,
    ))
}

/// The Series and SOP Instance UIDs of `s`'s image.
fn image_uids(s: &ReplayStudy) -> (String, String) {
    (
        derived_uid(&cycle_name("series", &s.row.path, s.cycle)),
        derived_uid(&cycle_name("sop", &s.row.path, s.cycle)),
    )
}

/// A keyed pseudonym (never the dataset's patient id).
pub fn pseudonym(secret: &str, id: &str) -> String {
    let d = Sha256::digest(format!("{secret}\u{0}{id}").as_bytes());
    format!("pt-{}", hex::encode(&d[..8]))
}

/// The rows of the dataset's `table` (e.g. `heldout.csv`), or all rows when there is none.
pub fn table_rows(ds: &ChexpertDataset, table: &str) -> Vec<ChexpertRow> {
    ds.tables
        .iter()
        .find(|(name, _)| name == table)
        .map(|(_, t)| t.rows.clone())
        .unwrap_or_else(|| ds.all_rows().rows)
}

/// Draws the studies the traffic is made of: the natural mix, and after the change point what
/// the [`DriftPlan`] says; each study at most once, deterministically for a seed (and the same
/// sequence of change decisions).
#[derive(Debug, Clone)]
pub struct StudySource {
    pool: StudyPool,
    sites: SiteMix,
    plan: DriftPlan,
    rng: rand::rngs::StdRng,
    parent: PathBuf,
    staging: PathBuf,
    /// Draws the scenario wanted but its sub-population had run out (natural ones sent).
    pub shortfall: usize,
}

impl StudySource {
    /// Studies of the dataset's `table`.
    pub fn new(
        ds: &ChexpertDataset,
        table: &str,
        seed: u64,
        sites: SiteMix,
        plan: DriftPlan,
    ) -> Self {
        Self::from_rows(table_rows(ds, table), ds.parent.clone(), seed, sites, plan)
    }

    /// Studies of `rows`, whose paths are relative to `parent`.
    pub fn from_rows(
        rows: Vec<ChexpertRow>,
        parent: PathBuf,
        seed: u64,
        sites: SiteMix,
        plan: DriftPlan,
    ) -> Self {
        StudySource {
            pool: StudyPool::new(rows, seed),
            sites,
            plan,
            rng: rand::rngs::StdRng::seed_from_u64(seed ^ 0x517e),
            staging: parent.join(".replay-staging"),
            parent,
            shortfall: 0,
        }
    }

    pub fn plan(&self) -> &DriftPlan {
        &self.plan
    }

    pub fn sites(&self) -> &SiteMix {
        &self.sites
    }

    /// Studies in the dataset table (drawn or not).
    pub fn available(&self) -> usize {
        self.pool.len()
    }

    /// The current pass through the table (0: the first).
    pub fn cycle(&self) -> u32 {
        self.pool.cycle()
    }

    /// The next study; `changed`: it comes after the change point. `None` when the natural
    /// mix is exhausted.
    pub fn next(&mut self, changed: bool) -> Option<ReplayStudy> {
        let site = self.sites.draw(&mut self.rng).to_string();
        let stat = self.rng.random_bool(0.03);
        let applies = match self.plan.scenario {
            DriftScenario::None => false,
            DriftScenario::SiteDemographics => site == self.sites.drifting_site(),
            _ => true,
        };
        let affected = changed && applies && self.rng.random::<f64>() < self.plan.fraction;
        let (row, drifted, intensity) = match (affected, self.plan.scenario) {
            (false, _) => (self.pool.next_natural()?, false, None),
            (true, DriftScenario::IntensityShift) => {
                (self.pool.next_natural()?, true, Some(self.plan.intensity))
            }
            (true, _) => match self.pool.next_drifted(&self.plan) {
                Some(r) => (r, true, None),
                None => {
                    let row = self.pool.next_natural()?;
                    self.shortfall += 1;
                    (row, false, None)
                }
            },
        };
        let cycle = self.pool.cycle();
        Some(ReplayStudy {
            uid: study_uid(&row, cycle),
            cycle,
            image: self.parent.join(&row.path).with_extension("png"),
            site,
            priority: if stat {
                OrderPriority::Stat
            } else {
                OrderPriority::Routine
            },
            staging: self.staging.clone(),
            after_change: changed,
            drifted,
            intensity,
            row,
        })
    }
}

/// Picks `n` studies of the natural mix from the dataset's `table`, deterministically, spread
/// round-robin over `sites`.
pub fn select_studies(
    ds: &ChexpertDataset,
    table: &str,
    n: usize,
    seed: u64,
    sites: &[String],
) -> Vec<ReplayStudy> {
    let mut source = StudySource::new(ds, table, seed, SiteMix::new(1, &[]), DriftPlan::default());
    (0..n)
        .map_while(|_| source.next(false))
        .enumerate()
        .map(|(i, mut s)| {
            if let Some(site) = sites.get(i % sites.len().max(1)) {
                s.site = site.clone();
            }
            s
        })
        .collect()
}

/// Where `s`'s image is staged: named after its (derived, pseudonymous) SOP instance UID; a
/// pixel-shifted image under its own name, so the dataset's file is never overwritten.
fn staged_path(s: &ReplayStudy) -> PathBuf {
    let (_, sop) = image_uids(s);
    match s.intensity {
        None => s.staging.join(format!("{sop}.png")),
        Some(_) => s.staging.join(format!("{sop}.shifted.png")),
    }
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

/// Exposes transformed image `bytes` of `s` in its staging folder (written aside and renamed,
/// so a reader never sees half a file) and returns that path.
pub fn stage_bytes(s: &ReplayStudy, bytes: &[u8]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(&s.staging)?;
    let staged = staged_path(s);
    let tmp = staged.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, &staged)?;
    Ok(staged)
}

/// The view position a gateway would put in the DICOM header.
pub fn view_position(row: &ChexpertRow) -> &'static str {
    match (row.view, row.projection) {
        (ViewKind::Lateral, _) => "LL",
        (_, Some(Projection::Ap)) => "AP",
        (_, Some(Projection::Pa)) => "PA",
        (_, Some(Projection::Ll)) => "LL",
        (_, Some(Projection::Rl)) => "RL",
        (ViewKind::Frontal, None) => "PA",
    }
}

/// The scan event a gateway would publish for `s`. A by-reference image must have been staged
/// ([`stage_image`]): the URI names the staged file, never the dataset path.
pub fn scan_event(s: &ReplayStudy, image: Option<Vec<u8>>, size: u64, secret: &str) -> ScanEvent {
    let now = now_millis();
    let sex = match s.row.sex {
        Sex::Male => Some("M".to_string()),
        Sex::Female => Some("F".to_string()),
        Sex::Unknown => None,
    };
    let inline = image.is_some();
    let (series, sop) = image_uids(s);
    ScanEvent {
        event_id: uuid::Uuid::new_v4().to_string(),
        study: StudyContext {
            site_id: s.site.clone(),
            study_instance_uid: s.uid.clone(),
            series_instance_uid: series,
            sop_instance_uid: sop,
            accession_number: None,
            patient_ref: pseudonym(secret, &s.row.patient.0),
            modality: "CR".into(),
            view_position: Some(view_position(&s.row).into()),
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

#[cfg(test)]
mod tests;
