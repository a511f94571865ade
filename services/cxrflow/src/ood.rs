//! `cxrflow model calibrate-ood` and `cxrflow model ood-eval`: the out-of-distribution gate's
//! reference, fitted on a dataset split's frontal images with the same decoder, eligibility
//! gate, preprocessing and model session the services run, and its lateral reference, fitted
//! on the split's laterals, written into the model manifest; and their measurement on a corpus
//! of images the model has no business scoring (each sub-directory one kind: photographs,
//! other modalities, corrupted chest images) and on the held-out split's laterals given without
//! a view, against the held-out split's frontal films.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use cxrflow_inference::embedding;
use cxrflow_inference::manifest::ModelDir;
use cxrflow_inference::ood::{
    features, judge, OodError, OodReference, CODE, LATERAL_CODE, UNJUDGED_CODE,
};
use cxrflow_inference::session::{ModelSession, SessionOptions};
use cxrflow_preprocess::decode::DecodeLimits;
use cxrflow_preprocess::eligibility::EligibilityRules;
use cxrflow_preprocess::pipeline::{prepare_gated, Gated};
use cxrflow_preprocess::Profile;
use cxrflow_sim::dataset::labels::ViewKind;
use cxrflow_sim::dataset::{open_dataset, ChexpertRow};
use serde::Serialize;

/// What a calibration command reads: a model version and a labelled dataset split.
#[derive(Debug, clap::Args)]
pub struct CalibrationInput {
    /// The model version directory (`<models-dir>/<name>/<version>`); its manifest gains what
    /// the calibration chose.
    #[arg(long)]
    pub model_dir: PathBuf,
    /// A CheXpert-format dataset (the directory holding `CheXpert-v1.0-small/`, or it).
    #[arg(long)]
    pub dataset: PathBuf,
    /// The label file's split to calibrate on (never the held-out split the replay plays).
    #[arg(long, default_value = "valid")]
    pub split: String,
}

/// Rewrites `<model_dir>/manifest.json` with `edit` (atomically: a temporary file renamed over
/// it) and checks that the result still loads.
pub(crate) fn rewrite_manifest(
    model_dir: &Path,
    edit: impl FnOnce(&mut serde_json::Value) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let path = model_dir.join("manifest.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut manifest: serde_json::Value = serde_json::from_str(&text)?;
    edit(&mut manifest)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&manifest)? + "\n")?;
    std::fs::rename(&tmp, &path)?;
    ModelDir::load(model_dir).context("the calibrated manifest must load")?;
    eprintln!("written into {}", path.display());
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct CalibrateArgs {
    #[command(flatten)]
    pub input: CalibrationInput,
    /// The percentile of the calibration images' own distances the threshold is set at.
    #[arg(long, default_value_t = 99.5)]
    pub percentile: f64,
    /// The lateral reference's limit: the percentile of the frontal calibration images' ratios
    /// (distance to the laterals over distance to the frontals) below which a film with no view
    /// position is refused as lateral-looking; about this share of such frontal films is refused.
    #[arg(long, default_value_t = 0.5)]
    pub lateral_percentile: f64,
    /// Print the reference instead of writing it into the manifest.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The model version directory, with an `ood` reference in its manifest.
    #[arg(long)]
    pub model_dir: PathBuf,
    /// The dataset whose held-out split must pass.
    #[arg(long)]
    pub dataset: PathBuf,
    #[arg(long, default_value = "heldout")]
    pub split: String,
    /// A directory of images the model must refuse, one sub-directory per kind.
    #[arg(long)]
    pub corpus: PathBuf,
    /// Where to write the JSON report.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// What the gates make of one file.
#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    /// Refused before scoring (eligibility or decoding), with the code.
    Refused(String),
    /// Scored; the features for the OOD gate.
    Features(Vec<f64>),
}

pub(crate) struct Judge {
    session: ModelSession,
    embedder: embedding::Embedder,
    profile: Profile,
    rules: EligibilityRules,
    limits: DecodeLimits,
}

impl Judge {
    pub(crate) fn open(model_dir: &Path) -> anyhow::Result<Judge> {
        let model = ModelDir::load(model_dir)?;
        let id = &model.manifest.preprocessing.profile_id;
        let profile: Profile = id.parse().map_err(|e| {
            anyhow::anyhow!("preprocessing profile {id:?} unknown to this build: {e}")
        })?;
        let opts = SessionOptions {
            intra_op_threads: 1,
            ..SessionOptions::default()
        };
        Ok(Judge {
            session: ModelSession::load(model, &opts, None)?,
            embedder: embedding::Embedder::default(),
            profile,
            rules: EligibilityRules::default(),
            limits: DecodeLimits::default(),
        })
    }

    /// The model's probabilities for an image, in the manifest's finding order, or the code the
    /// gates refuse it with (as the services would dead-letter or refuse it).
    pub(crate) fn probabilities(&self, bytes: &[u8]) -> anyhow::Result<Result<Vec<f64>, String>> {
        let prepared = match prepare_gated(bytes, &self.limits, self.profile, &self.rules) {
            Ok(Gated::Prepared(p)) => p,
            Ok(Gated::Ineligible { why, .. }) => return Ok(Err(why.code.into())),
            Err(e) => return Ok(Err(e.reason().into())),
        };
        let out = self.session.run(&[prepared.tensor.as_slice()])?;
        let p: Vec<f64> = out.probabilities[0].iter().map(|&p| f64::from(p)).collect();
        if p.iter().any(|p| !p.is_finite()) {
            return Ok(Err("model.invalid_output".into()));
        }
        Ok(Ok(p))
    }

    pub(crate) fn manifest(&self) -> &cxrflow_inference::manifest::Manifest {
        &self.session.model.manifest
    }

    fn judge(&self, bytes: &[u8]) -> anyhow::Result<Verdict> {
        let prepared = match prepare_gated(bytes, &self.limits, self.profile, &self.rules) {
            Ok(Gated::Prepared(p)) => p,
            Ok(Gated::Ineligible { why, .. }) => return Ok(Verdict::Refused(why.code.into())),
            Err(e) => return Ok(Verdict::Refused(e.reason().into())),
        };
        let out = self.session.run(&[prepared.tensor.as_slice()])?;
        if out.probabilities[0].iter().any(|p| !p.is_finite()) {
            return Ok(Verdict::Refused("model.invalid_output".into()));
        }
        let embedding = out.features.map(|(d, f)| self.embedder.embed(&f[..d]));
        Ok(match features(&prepared.stats, embedding.as_deref()) {
            Some(x) => Verdict::Features(x),
            None => Verdict::Refused(UNJUDGED_CODE.into()),
        })
    }

    fn embedding_dims(&self) -> usize {
        if self.session.model.manifest.outputs.features.is_some() {
            embedding::EMBEDDING_DIMS
        } else {
            0
        }
    }
}

/// The frontal images of a split (`valid` → `valid.csv`) with their label rows.
pub(crate) fn frontal_rows(
    dataset: &Path,
    split: &str,
) -> anyhow::Result<Vec<(PathBuf, ChexpertRow)>> {
    view_rows(dataset, split, ViewKind::Frontal)
}

/// The images of a split of one view, with their label rows.
fn view_rows(
    dataset: &Path,
    split: &str,
    view: ViewKind,
) -> anyhow::Result<Vec<(PathBuf, ChexpertRow)>> {
    let ds = open_dataset(dataset)?;
    let file = format!("{split}.csv");
    let Some((_, table)) = ds.tables.iter().find(|(n, _)| *n == file) else {
        bail!("{} has no {file}", ds.dir.display());
    };
    Ok(table
        .rows
        .iter()
        .filter(|r| r.view == view)
        .map(|r| (r.image_path(&ds.parent), r.clone()))
        .collect())
}

fn images(dataset: &Path, split: &str, view: ViewKind) -> anyhow::Result<Vec<PathBuf>> {
    Ok(view_rows(dataset, split, view)?
        .into_iter()
        .map(|(p, _)| p)
        .collect())
}

/// Images refused before the OOD gate, by code.
type RefusedBy = BTreeMap<String, usize>;

/// The features of each image the gates before the OOD gate let through, and how many each
/// code refused.
fn judge_all(judge: &Judge, paths: &[PathBuf]) -> anyhow::Result<(Vec<Vec<f64>>, RefusedBy)> {
    let mut samples = Vec::new();
    let mut refused = RefusedBy::new();
    for path in paths {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        match judge.judge(&bytes)? {
            Verdict::Features(x) => samples.push(x),
            Verdict::Refused(code) => *refused.entry(code).or_default() += 1,
        }
    }
    Ok((samples, refused))
}

pub fn calibrate(args: &CalibrateArgs) -> anyhow::Result<()> {
    let a = &args.input;
    let judge = Judge::open(&a.model_dir)?;
    let images = images(&a.dataset, &a.split, ViewKind::Frontal)?;
    let (samples, refused) = judge_all(&judge, &images)?;
    let mut reference = OodReference::fit(
        &samples,
        judge.embedding_dims(),
        args.percentile,
        &format!("{} split of {}", a.split, a.dataset.display()),
    )?;
    eprintln!(
        "OOD reference: {} {} images ({} refused before scoring: {refused:?}), threshold {:.3} at the {}th percentile",
        samples.len(),
        a.split,
        images.len() - samples.len(),
        reference.threshold,
        args.percentile
    );
    let laterals = self::images(&a.dataset, &a.split, ViewKind::Lateral)?;
    let (lateral, _) = judge_all(&judge, &laterals)?;
    match reference.fit_lateral(&lateral, &samples, args.lateral_percentile) {
        Ok(()) => eprintln!(
            "lateral reference: {} {} laterals, limit {:.3} at the {}th percentile of the frontal images' ratios",
            lateral.len(),
            a.split,
            reference.lateral.as_ref().map_or(f64::NAN, |l| l.limit),
            args.lateral_percentile
        ),
        // A split without enough laterals still calibrates the frontal reference, said plainly.
        Err(OodError::TooFew { need, got }) => eprintln!(
            "no lateral reference: {got} scorable laterals in the {} split, {need} needed; a film with no view position will be scored as frontal",
            a.split
        ),
        Err(e) => return Err(e.into()),
    }
    if args.dry_run {
        println!("{}", serde_json::to_string_pretty(&reference)?);
        return Ok(());
    }
    rewrite_manifest(&a.model_dir, |manifest| {
        manifest["ood"] = serde_json::to_value(&reference)?;
        Ok(())
    })
}

#[derive(Debug, Default, Serialize)]
struct KindReport {
    images: usize,
    refused: usize,
    /// How each was refused (code → count); `passed` for those that were not.
    by: BTreeMap<String, usize>,
    /// The files of a corpus kind that passed every gate (each one the model would score).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    passed: Vec<String>,
}

impl KindReport {
    /// Counts what the gates make of an image; `unnamed`: nothing names its view, so the
    /// lateral reference is asked too (as inference asks it).
    fn add(&mut self, verdict: &Verdict, reference: &OodReference, unnamed: bool) -> Option<f64> {
        self.images += 1;
        let (code, rel) = match verdict {
            Verdict::Refused(code) => (code.clone(), None),
            Verdict::Features(x) => {
                let j = judge(reference, Some(x), !unnamed);
                let code = j.refusal().map_or("passed", |(code, _)| code);
                (code.to_string(), j.relative())
            }
        };
        if code != "passed" {
            self.refused += 1;
        }
        *self.by.entry(code).or_default() += 1;
        rel
    }

    fn fraction(&self) -> f64 {
        if self.images == 0 {
            0.0
        } else {
            self.refused as f64 / self.images as f64
        }
    }
}

#[derive(Debug, Serialize)]
struct EvalReport {
    model: String,
    threshold: f64,
    calibrated_on: String,
    heldout: KindReport,
    heldout_wrongly_refused: f64,
    /// The lateral reference's limit (`null`: none in the manifest).
    lateral_limit: Option<f64>,
    /// The held-out frontal films again, as if nothing named their view.
    heldout_frontal_without_view: KindReport,
    /// The held-out laterals given without a view: each must be refused.
    heldout_lateral_without_view: KindReport,
    corpus: BTreeMap<String, KindReport>,
    corpus_refused: f64,
    /// Refused by the OOD gate alone (images with no header to judge them by): by distance,
    /// or, with no view named, as lateral-looking.
    corpus_refused_by_ood: usize,
}

fn files_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.is_dir() {
            v.extend(files_under(&p)?);
        } else if p.is_file() {
            v.push(p);
        }
    }
    v.sort();
    Ok(v)
}

pub fn evaluate(a: &EvalArgs) -> anyhow::Result<()> {
    let judge = Judge::open(&a.model_dir)?;
    let manifest = &judge.session.model.manifest;
    let Some(reference) = manifest.ood.clone() else {
        bail!(
            "{} has no OOD reference: run `cxrflow model calibrate-ood` first",
            a.model_dir.display()
        );
    };
    let mut heldout = KindReport::default();
    let mut frontal_unnamed = KindReport::default();
    for path in images(&a.dataset, &a.split, ViewKind::Frontal)? {
        let verdict = judge.judge(&std::fs::read(&path)?)?;
        heldout.add(&verdict, &reference, false);
        frontal_unnamed.add(&verdict, &reference, true);
    }
    let mut lateral_unnamed = KindReport::default();
    for path in images(&a.dataset, &a.split, ViewKind::Lateral)? {
        lateral_unnamed.add(&judge.judge(&std::fs::read(&path)?)?, &reference, true);
    }
    let mut corpus: BTreeMap<String, KindReport> = BTreeMap::new();
    for kind in std::fs::read_dir(&a.corpus)? {
        let kind = kind?.path();
        if !kind.is_dir() {
            continue;
        }
        let name = kind
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let report = corpus.entry(name).or_default();
        for f in files_under(&kind)? {
            report.add(&judge.judge(&std::fs::read(&f)?)?, &reference, true);
            if report.by.get("passed").copied().unwrap_or(0) > report.passed.len() {
                let name = f.strip_prefix(&kind).unwrap_or(&f);
                report.passed.push(name.display().to_string());
            }
        }
    }
    let (images, refused) = corpus
        .values()
        .fold((0, 0), |(i, r), k| (i + k.images, r + k.refused));
    let report = EvalReport {
        model: format!("{}/{}", manifest.name, manifest.version),
        threshold: reference.threshold,
        calibrated_on: reference.calibrated_on.clone(),
        heldout_wrongly_refused: heldout.fraction(),
        heldout,
        lateral_limit: reference.lateral.as_ref().map(|l| l.limit),
        heldout_frontal_without_view: frontal_unnamed,
        heldout_lateral_without_view: lateral_unnamed,
        corpus_refused: if images == 0 {
            0.0
        } else {
            refused as f64 / images as f64
        },
        corpus_refused_by_ood: corpus
            .values()
            .map(|k| {
                [CODE, LATERAL_CODE]
                    .iter()
                    .map(|c| k.by.get(*c).copied().unwrap_or(0))
                    .sum::<usize>()
            })
            .sum(),
        corpus,
    };
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(out) = &a.out {
        std::fs::write(out, &json)?;
    }
    println!("{json}");
    eprintln!(
        "non-chest/corrupted images refused: {refused} of {images} ({:.1} %); held-out chest studies wrongly refused: {} of {} ({:.2} %)",
        100.0 * report.corpus_refused,
        report.heldout.refused,
        report.heldout.images,
        100.0 * report.heldout_wrongly_refused
    );
    eprintln!(
        "without a view: held-out laterals refused {} of {}; held-out frontal films refused {} of {}",
        report.heldout_lateral_without_view.refused,
        report.heldout_lateral_without_view.images,
        report.heldout_frontal_without_view.refused,
        report.heldout_frontal_without_view.images
    );
    Ok(())
}
