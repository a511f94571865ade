//! `cxrflow-bench reduced-decode`: does decoding at a reduced resolution level (JPEG 2000
//! `reduce`, JPEG IDCT scaling; preprocess's `decode/reduced.rs`), or the box reduction every
//! other syntax's full-resolution decode gets (`decode/display.rs`), change what the model says?
//!
//! For a fixed sample of the held-out split (its first N frontal images, in file order) the
//! simulator renders each study again at detector size (about 2500×3000, 12 bits: the same
//! seed and lung masks as the dataset, so the same patient and findings), Python wraps it as
//! DICOM in JPEG 2000, JPEG baseline, 12-bit JPEG extended or any other syntax the script knows
//! (`bench/python/full_size_dicom.py`; DCMTK for the lossless codecs and 12-bit JPEG), and each
//! file is
//! prepared twice, full-resolution decode and reduced decode, and scored by the real model (the
//! fitted cxr-small). Reported per transfer syntax: |Δprobability| max, p99 and mean per finding
//! and over all, the findings whose threshold flag flips, the studies whose tier (the
//! highest tier of a finding over its threshold, from the manifest) changes, and, when the model
//! has an out-of-distribution reference, how far each path's OOD distance moves and the studies
//! whose verdict (assessable or not, which decides whether triage ranks the score at all)
//! changes. The statistics are each path's own, at the model's scale as preprocess takes them
//! (`stats::image_stats`): the full decode's box-averaged to the reduced plane's size, the
//! reduced plane's as it is (equal for the box reduction, the codecs' low-pass filters apart).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Parser;
use cxrflow_inference::embedding::Embedder;
use cxrflow_inference::manifest::{resolve, FindingTier, Manifest};
use cxrflow_inference::session::{ModelSession, SessionOptions};
use cxrflow_preprocess::decode::{decode, decode_reduced};
use cxrflow_preprocess::stats::image_stats;
use cxrflow_preprocess::{prepare, DecodeLimits, Profile};
use serde::Serialize;

use crate::full_size::{render_heldout, tools_python, wrap_as_dicom, ImageSpec};

/// Reduced-resolution decoding against full-resolution decoding, through the real model.
#[derive(Debug, Clone, Parser)]
#[command(name = "cxrflow-bench reduced-decode")]
pub struct ReducedArgs {
    /// Dataset root (holds `CheXpert-v1.0-small/heldout.csv`).
    #[arg(long, env = "CXRFLOW_DATASET_ROOT")]
    pub dataset: PathBuf,
    /// Model directories root.
    #[arg(long, env = "CXRFLOW_MODELS_DIR")]
    pub models_dir: PathBuf,
    #[arg(long, default_value = "cxr-small")]
    pub model: String,
    /// Held-out frontal images, the first N in file order.
    #[arg(long, default_value_t = 100)]
    pub images: usize,
    /// The dataset's seed (scripts/make-test-data.sh: CXRFLOW_SEED, 7).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// The dataset's lung masks (scripts/make-test-data.sh); default
    /// `$CXRFLOW_DATA/chexpert-labels/semantic_masks_v7labs_lungs.zip` when it exists.
    #[arg(long)]
    pub masks: Option<PathBuf>,
    /// Transfer syntaxes: j2k (lossless), j2k-lossy (10:1), jpeg (baseline 8-bit, q 95),
    /// jpeg12 (extended 12-bit, DCMTK's dcmcjpeg +ee), native (explicit VR little endian; its
    /// samples are every lossless codec's decode, so its box reduction stands for theirs), and
    /// the other names `bench/python/full_size_dicom.py` knows.
    #[arg(long, value_delimiter = ',', default_value = "j2k,jpeg")]
    pub syntaxes: Vec<String>,
    /// Python with pydicom and Pillow (the tools venv, scripts/python-env.sh).
    #[arg(long, env = "CXRFLOW_BENCH_TOOLS_PYTHON")]
    pub python: Option<PathBuf>,
    #[arg(long, default_value = "target/bench/reduced-decode.json")]
    pub out: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct Delta {
    pub max: f64,
    pub p99: f64,
    pub mean: f64,
}

impl Delta {
    fn of(mut v: Vec<f64>) -> Delta {
        v.sort_by(f64::total_cmp);
        let n = v.len().max(1);
        Delta {
            max: v.last().copied().unwrap_or(0.0),
            p99: v
                .get((v.len().saturating_sub(1)) * 99 / 100)
                .copied()
                .unwrap_or(0.0),
            mean: v.iter().sum::<f64>() / n as f64,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SyntaxResult {
    pub syntax: String,
    pub images: usize,
    /// The plane the reduced decode produced, for the first image (the full one is the stored size).
    pub reduced_plane: (u32, u32),
    pub stored: (u32, u32),
    /// |Δ| on the 8-bit model input (0..=255).
    pub tensor_delta: Delta,
    /// |Δprobability| over every finding and image.
    pub probability_delta: Delta,
    pub probability_delta_by_finding: BTreeMap<String, Delta>,
    /// (image, finding) pairs whose flag (probability ≥ threshold) differs.
    pub flag_changes: Vec<String>,
    /// Images whose tier differs.
    pub tier_changes: Vec<String>,
    /// The out-of-distribution gate's distance (in units of its calibrated limit, from the
    /// image statistics and the embedding, as inference computes it), full vs reduced: |Δ|,
    /// the largest distance seen, and the images whose verdict (assessable or not) differs.
    /// `None` when the model has no OOD reference.
    pub ood: Option<OodResult>,
    pub full_decode_ms_mean: f64,
    pub reduced_decode_ms_mean: f64,
}

#[derive(Debug, Serialize)]
pub struct OodResult {
    pub relative_delta: Delta,
    pub relative_max_full: f64,
    pub verdict_changes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ReducedReport {
    pub model: String,
    pub sample: String,
    pub images: usize,
    pub results: Vec<SyntaxResult>,
    pub render_s: f64,
    pub encode_s: f64,
    pub score_s: f64,
}

fn tier_name(t: FindingTier) -> &'static str {
    match t {
        FindingTier::Critical => "critical",
        FindingTier::Urgent => "urgent",
        FindingTier::None => "routine",
    }
}

/// The study's tier: the highest tier of a finding at or over its threshold.
fn tier(m: &Manifest, p: &[f32; 14]) -> FindingTier {
    let over = |t: FindingTier| {
        m.findings
            .iter()
            .zip(p)
            .any(|(f, &v)| f.tier() == t && f64::from(v) >= f.threshold)
    };
    if over(FindingTier::Critical) {
        FindingTier::Critical
    } else if over(FindingTier::Urgent) {
        FindingTier::Urgent
    } else {
        FindingTier::None
    }
}

pub fn measure(args: &ReducedArgs) -> anyhow::Result<ReducedReport> {
    let model = resolve(&args.models_dir, &args.model)
        .with_context(|| format!("model {} (scripts/make-test-data.sh makes it)", args.model))?;
    let manifest = model.manifest.clone();
    let profile = Profile::Gray224V1;
    if manifest.preprocessing.profile_id != "gray224-v1" {
        bail!(
            "{} expects {}",
            args.model,
            manifest.preprocessing.profile_id
        );
    }
    let session = ModelSession::load(model, &SessionOptions::default(), None)?;
    let embedder = Embedder::default();
    let work = tempfile::tempdir()?;

    let t = Instant::now();
    let paths = render_heldout(
        &args.dataset,
        args.seed,
        args.masks.as_deref(),
        args.images,
        work.path(),
    )?;
    let render_s = t.elapsed().as_secs_f64();
    eprintln!(
        "rendered {} full-size images in {render_s:.0} s",
        paths.len()
    );

    let t = Instant::now();
    let python = args.python.clone().unwrap_or_else(|| tools_python("venv"));
    wrap_as_dicom(&python, work.path(), &args.syntaxes)?;
    let encode_s = t.elapsed().as_secs_f64();
    eprintln!(
        "encoded as DICOM ({}) in {encode_s:.0} s",
        args.syntaxes.join(", ")
    );

    let t = Instant::now();
    let limits = DecodeLimits::default();
    let names: Vec<&str> = manifest.findings.iter().map(|f| f.name.as_str()).collect();
    let mut results = Vec::new();
    for syntax in &args.syntaxes {
        let mut tensor = Vec::new();
        let mut all = Vec::new();
        let mut by_finding: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
        let (mut flag_changes, mut tier_changes) = (Vec::new(), Vec::new());
        let (mut ood_delta, mut ood_max, mut ood_changes) = (Vec::new(), 0.0f64, Vec::new());
        let (mut full_ms, mut reduced_ms) = (0.0, 0.0);
        let (mut plane, mut stored) = ((0, 0), (0, 0));
        for (i, study) in paths.iter().enumerate() {
            let file = work.path().join(format!("{i:04}.{syntax}.dcm"));
            let bytes = std::fs::read(&file)?;
            let t0 = Instant::now();
            let full_img = decode(&bytes, &limits)?;
            let full = profile.render(&full_img).map_err(anyhow::Error::msg)?;
            let full_stats = image_stats(&full_img, profile.side());
            full_ms += t0.elapsed().as_secs_f64() * 1e3;
            let t0 = Instant::now();
            let prepared = prepare(&bytes, &limits, profile)?;
            let (reduced, reduced_stats) = (prepared.tensor, prepared.stats);
            reduced_ms += t0.elapsed().as_secs_f64() * 1e3;
            if i == 0 {
                let r = decode_reduced(&bytes, &limits, profile.side())?;
                plane = (r.width, r.height);
                stored = (full_img.width, full_img.height);
                if plane == stored {
                    bail!("{syntax}: the reduced decode did not reduce ({plane:?})");
                }
            }
            tensor.extend(
                full.iter()
                    .zip(&reduced)
                    .map(|(a, b)| f64::from(a.abs_diff(*b))),
            );
            let out = session.run(&[full.as_slice(), reduced.as_slice()])?;
            let (a, b) = (&out.probabilities[0], &out.probabilities[1]);
            for (k, f) in manifest.findings.iter().enumerate() {
                let d = f64::from((a[k] - b[k]).abs());
                all.push(d);
                by_finding[k].push(d);
                if (f64::from(a[k]) >= f.threshold) != (f64::from(b[k]) >= f.threshold) {
                    flag_changes.push(format!("{study}: {} {:.4} → {:.4}", f.name, a[k], b[k]));
                }
            }
            let (ta, tb) = (tier(&manifest, a), tier(&manifest, b));
            if ta != tb {
                tier_changes.push(format!("{study}: {} → {}", tier_name(ta), tier_name(tb)));
            }
            if let Some(reference) = &manifest.ood {
                // As the inference service does: statistics, then the embedding of the
                // model's pooled features.
                let (width, rows) = out
                    .features
                    .as_ref()
                    .context("the model has an OOD reference but no features output")?;
                let relative = |row: usize, stats| {
                    let embedding = embedder.embed(&rows[row * width..(row + 1) * width]);
                    cxrflow_inference::ood::features(stats, Some(&embedding))
                        .and_then(|x| reference.relative(&x))
                        .context("OOD features")
                };
                let (ra, rb) = (relative(0, &full_stats)?, relative(1, &reduced_stats)?);
                ood_delta.push((ra - rb).abs());
                ood_max = ood_max.max(ra);
                if (ra > 1.0) != (rb > 1.0) {
                    ood_changes.push(format!("{study}: OOD distance {ra:.3} → {rb:.3}"));
                }
            }
        }
        let n = paths.len();
        let r = SyntaxResult {
            syntax: syntax.clone(),
            images: n,
            reduced_plane: plane,
            stored,
            tensor_delta: Delta::of(tensor),
            probability_delta: Delta::of(all),
            probability_delta_by_finding: names
                .iter()
                .zip(by_finding)
                .map(|(n, v)| (n.to_string(), Delta::of(v)))
                .collect(),
            flag_changes,
            tier_changes,
            ood: manifest.ood.as_ref().map(|_| OodResult {
                relative_delta: Delta::of(ood_delta),
                relative_max_full: ood_max,
                verdict_changes: ood_changes,
            }),
            full_decode_ms_mean: full_ms / n as f64,
            reduced_decode_ms_mean: reduced_ms / n as f64,
        };
        eprintln!(
            "{syntax}: |Δp| max {:.4} p99 {:.4} mean {:.5}; flags changed {}, tiers changed {}; OOD {}",
            r.probability_delta.max,
            r.probability_delta.p99,
            r.probability_delta.mean,
            r.flag_changes.len(),
            r.tier_changes.len(),
            r.ood.as_ref().map_or("–".into(), |o| format!(
                "distance |Δ| max {:.3}, largest {:.2}, verdicts changed {}",
                o.relative_delta.max,
                o.relative_max_full,
                o.verdict_changes.len()
            ))
        );
        results.push(r);
    }
    Ok(ReducedReport {
        model: format!("{}/{}", manifest.name, manifest.version),
        sample: format!(
            "the first {} frontal images of {}/CheXpert-v1.0-small/heldout.csv, re-rendered at {}×≈{} (seed {})",
            paths.len(),
            args.dataset.display(),
            ImageSpec::FULL_SIZE.short_side,
            ImageSpec::FULL_SIZE.short_side * 6 / 5,
            args.seed
        ),
        images: paths.len(),
        results,
        render_s,
        encode_s,
        score_s: t.elapsed().as_secs_f64(),
    })
}

pub fn run(args: ReducedArgs) -> anyhow::Result<()> {
    let report = measure(&args)?;
    if let Some(d) = args.out.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(&args.out, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("| syntax | stored → decoded | tensor Δ max / p99 / mean | Δp max / p99 / mean | flag changes | tier changes | OOD distance Δ max (largest distance) | OOD verdict changes | full / reduced ms |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &report.results {
        println!(
            "| {} | {}×{} → {}×{} | {:.0} / {:.0} / {:.2} | {:.4} / {:.4} / {:.5} | {} | {} | {} | {} | {:.0} / {:.0} |",
            r.syntax,
            r.stored.0,
            r.stored.1,
            r.reduced_plane.0,
            r.reduced_plane.1,
            r.tensor_delta.max,
            r.tensor_delta.p99,
            r.tensor_delta.mean,
            r.probability_delta.max,
            r.probability_delta.p99,
            r.probability_delta.mean,
            r.flag_changes.len(),
            r.tier_changes.len(),
            r.ood.as_ref().map_or("–".into(), |o| format!(
                "{:.3} ({:.2})",
                o.relative_delta.max, o.relative_max_full
            )),
            r.ood
                .as_ref()
                .map_or("–".into(), |o| o.verdict_changes.len().to_string()),
            r.full_decode_ms_mean,
            r.reduced_decode_ms_mean
        );
    }
    eprintln!("written to {}", args.out.display());
    Ok(())
}
