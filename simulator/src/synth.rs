//! `synthesize`: builds a CheXpert-format synthetic dataset from real label rows.
//!
//! Output, under `out_dir`:
//! ```text
//! CheXpert-v1.0-small/            (CheXpert-v1.0/ for 16-bit full-size images)
//!   train.csv valid.csv heldout.csv
//!   train/patient00001/study1/view1_frontal.png
//!   valid/…  heldout/…
//! ```
//! Csv paths are relative to `out_dir`, as in CheXpert. Images are written before the csv
//! files, so a csv only ever lists images that exist. Files from an earlier run with other
//! settings are overwritten where the paths agree and otherwise left alone.

//!
//! The renderer and its painters live beside it: [`render`] composes an image from [`layers`]
//! that [`anatomy`] / `thorax` (the body), [`findings`] and `devices` paint into, on the
//! [`canvas`] primitives, with lung outlines from [`masks`] or `lungs`.

pub(crate) mod anatomy;
pub(crate) mod canvas;
mod devices;
pub mod findings;
pub(crate) mod layers;
mod lungs;
pub mod masks;
pub mod render;
mod thorax;

use crate::dataset::labels::{Finding, LabelState, ViewKind};
use crate::dataset::split::{
    group_studies, pick_studies, PatientSplitter, Split, SplitError, SplitFractions,
};
use crate::dataset::{read_label_source, write_label_file, ChexpertRow, DatasetError};
use crate::synth::masks::{LungMaskLibrary, MaskError};
use crate::synth::render::{Drift, ImageSpec, PixelFormat, Renderer};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Studies wanted per split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SplitCounts {
    pub train: usize,
    pub valid: usize,
    pub heldout: usize,
}

impl SplitCounts {
    pub fn get(&self, split: Split) -> usize {
        match split {
            Split::Train => self.train,
            Split::Valid => self.valid,
            Split::Heldout => self.heldout,
        }
    }
}

impl Default for SplitCounts {
    fn default() -> Self {
        Self {
            train: 2000,
            valid: 300,
            heldout: 500,
        }
    }
}

/// Everything `cxrflow sim synth` can be told.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SynthConfig {
    /// A CheXpert label file (`train.csv`, or torchxrayvision's `chexpert_train.csv.gz`) or a
    /// dataset directory (all its label files are read).
    pub labels: PathBuf,
    /// torchxrayvision's `semantic_masks_v7labs_lungs.zip`; parametric lungs when absent.
    pub masks: Option<PathBuf>,
    pub out_dir: PathBuf,
    pub seed: u64,
    pub studies: SplitCounts,
    pub fractions: SplitFractions,
    pub image: ImageSpec,
    pub drift: Drift,
    /// Worker threads; `None` uses one per core.
    pub threads: Option<usize>,
}

impl SynthConfig {
    /// Defaults: seed 0, 2000 / 300 / 500 studies, 70 / 10 / 20 % of patients, 320 px 8-bit.
    pub fn new(labels: impl Into<PathBuf>, out_dir: impl Into<PathBuf>) -> Self {
        Self {
            labels: labels.into(),
            masks: None,
            out_dir: out_dir.into(),
            seed: 0,
            studies: SplitCounts::default(),
            fractions: SplitFractions::default(),
            image: ImageSpec::SMALL,
            drift: Drift::NONE,
            threads: None,
        }
    }

    /// `CheXpert-v1.0-small` for 8-bit images, `CheXpert-v1.0` for 16-bit full-size ones.
    pub fn dataset_dir_name(&self) -> &'static str {
        match self.image.format {
            PixelFormat::Gray8 => "CheXpert-v1.0-small",
            PixelFormat::Gray16 => "CheXpert-v1.0",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error(transparent)]
    Masks(#[from] MaskError),
    #[error(transparent)]
    Split(#[from] SplitError),
    #[error("invalid synth configuration: {0}")]
    Config(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot encode {path}: {source}")]
    Encode {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
}

/// What one split received.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitSummary {
    pub split: Split,
    pub csv: PathBuf,
    /// Studies of this split's patients in the source.
    pub studies_available: usize,
    pub studies: usize,
    pub patients: usize,
    pub images: usize,
    pub frontal: usize,
    pub lateral: usize,
    /// Positive and uncertain label counts by finding column name.
    pub positive: BTreeMap<&'static str, usize>,
    pub uncertain: BTreeMap<&'static str, usize>,
}

/// What [`synthesize`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SynthSummary {
    pub dataset_dir: PathBuf,
    pub source: String,
    pub source_rows: usize,
    pub skipped_rows: usize,
    /// The first reasons rows were skipped, with line numbers.
    pub row_errors: Vec<String>,
    /// Real masks in use (`None`: parametric lungs).
    pub masks_used: Option<usize>,
    pub masks_rejected: usize,
    pub splits: Vec<SplitSummary>,
    pub images_written: usize,
    pub bytes_written: u64,
    pub seconds: f64,
    pub images_per_second: f64,
}

/// One image to write: the output row and the source row it renders.
struct Job<'a> {
    out: ChexpertRow,
    source: &'a ChexpertRow,
}

/// Builds the dataset described by `cfg`.
pub fn synthesize(cfg: &SynthConfig) -> Result<SynthSummary, SimError> {
    let started = Instant::now();
    if !(64..=8192).contains(&cfg.image.short_side) {
        return Err(SimError::Config(format!(
            "image short side {} is outside 64..=8192",
            cfg.image.short_side
        )));
    }
    let splitter = PatientSplitter::new(cfg.seed, cfg.fractions)?;
    let table = read_label_source(&cfg.labels)?;
    let masks = cfg
        .masks
        .as_deref()
        .map(LungMaskLibrary::load_zip)
        .transpose()?
        .map(Arc::new);
    let renderer = Renderer::new(cfg.seed, masks.clone(), cfg.image, cfg.drift);

    let ds_name = cfg.dataset_dir_name();
    let dataset_dir = cfg.out_dir.join(ds_name);
    let studies = group_studies(&table.rows);
    let mut jobs: Vec<Vec<Job>> = Vec::new();
    let mut available = Vec::new();
    for split in Split::ALL {
        let all = pick_studies(&studies, &splitter, split, usize::MAX, cfg.seed);
        available.push(all.len());
        let picked = pick_studies(&studies, &splitter, split, cfg.studies.get(split), cfg.seed);
        let split_jobs = picked
            .iter()
            .flat_map(|study| study.rows.iter())
            .enumerate()
            .map(|(n, &i)| {
                let source = &table.rows[i];
                let mut out = source.clone();
                out.path = format!(
                    "{ds_name}/{split}/{}/study{}/{}",
                    source.patient.0,
                    source.study,
                    png_name(&source.path, n)
                );
                Job { out, source }
            })
            .collect();
        jobs.push(split_jobs);
    }

    let all_jobs: Vec<&Job> = jobs.iter().flatten().collect();
    let write_all = || {
        all_jobs
            .par_iter()
            .map(|job| write_image(&renderer, job, &cfg.out_dir))
            .collect::<Result<Vec<u64>, SimError>>()
    };
    let sizes = match cfg.threads {
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build()
            .map_err(|e| SimError::Config(format!("cannot start {n} threads: {e}")))?
            .install(write_all)?,
        None => write_all()?,
    };

    std::fs::create_dir_all(&dataset_dir).map_err(|source| SimError::Write {
        path: dataset_dir.clone(),
        source,
    })?;
    let mut splits = Vec::new();
    for ((split, split_jobs), studies_available) in Split::ALL.into_iter().zip(&jobs).zip(available)
    {
        let csv = dataset_dir.join(format!("{}.csv", split.name()));
        write_label_file(&csv, split_jobs.iter().map(|j| &j.out))?;
        splits.push(split_summary(split, csv, split_jobs, studies_available));
    }

    let seconds = started.elapsed().as_secs_f64();
    Ok(SynthSummary {
        dataset_dir,
        source: table.source.clone(),
        source_rows: table.rows.len(),
        skipped_rows: table.skipped,
        row_errors: table
            .errors
            .iter()
            .take(10)
            .map(|e| e.to_string())
            .collect(),
        masks_used: masks.as_ref().map(|m| m.len()),
        masks_rejected: masks.as_ref().map_or(0, |m| m.rejected.len()),
        splits,
        images_written: sizes.len(),
        bytes_written: sizes.iter().sum(),
        seconds,
        images_per_second: sizes.len() as f64 / seconds.max(1e-9),
    })
}

/// The source file name with a `.png` extension, reduced to safe characters (the name comes
/// from outside and becomes part of a path).
fn png_name(source_path: &str, n: usize) -> String {
    let file = source_path.rsplit(['/', '\\']).next().unwrap_or_default();
    let stem = file.rsplit_once('.').map_or(file, |(s, _)| s);
    let safe: String = stem
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        .collect();
    if safe.is_empty() {
        format!("view{n}.png")
    } else {
        format!("{safe}.png")
    }
}

fn write_image(renderer: &Renderer, job: &Job, out_dir: &Path) -> Result<u64, SimError> {
    let path = out_dir.join(&job.out.path);
    let png = renderer
        .render(job.source)
        .encode_png()
        .map_err(|source| SimError::Encode {
            path: path.clone(),
            source,
        })?;
    let write_err = |source| SimError::Write {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(write_err)?;
    }
    std::fs::write(&path, &png).map_err(write_err)?;
    Ok(png.len() as u64)
}

fn split_summary(
    split: Split,
    csv: PathBuf,
    jobs: &[Job],
    studies_available: usize,
) -> SplitSummary {
    let count = |state: LabelState| {
        Finding::ALL
            .iter()
            .map(|f| {
                let n = jobs.iter().filter(|j| j.out.label(*f) == state).count();
                (f.name(), n)
            })
            .collect::<BTreeMap<_, _>>()
    };
    let studies: BTreeSet<_> = jobs.iter().map(|j| j.out.study_key()).collect();
    let patients: BTreeSet<_> = jobs.iter().map(|j| &j.out.patient).collect();
    let frontal = jobs
        .iter()
        .filter(|j| j.out.view == ViewKind::Frontal)
        .count();
    SplitSummary {
        split,
        csv,
        studies_available,
        studies: studies.len(),
        patients: patients.len(),
        images: jobs.len(),
        frontal,
        lateral: jobs.len() - frontal,
        positive: count(LabelState::Positive),
        uncertain: count(LabelState::Uncertain),
    }
}

#[cfg(test)]
mod tests;
