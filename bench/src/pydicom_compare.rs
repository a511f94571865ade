//! `cxrflow-bench pydicom-compare`: cxrflow's preprocess against the obvious alternative a user
//! would pick, pydicom with its decoding plugins (pylibjpeg's openjpeg/libjpeg/rle, GDCM,
//! Pillow) plus OpenCV's resize, on the same files in the same run.
//!
//! A few held-out studies are rendered again at detector size (about 2500×3000, 12 bits
//! stored in 16) and wrapped as DICOM CR in each transfer syntax ([`crate::full_size`]). Per
//! syntax, in turn: cxrflow's `prepare` (decode, where the codec allows at the resolution the
//! model needs; VOI window; statistics; letterbox to 224²) times each file, and for syntaxes it
//! decodes at a reduced level, the full-resolution decode + statistics + resize too; then
//! `bench/python/pydicom_decode.py` times pydicom's decode + modality LUT + VOI window +
//! `cv2.resize(INTER_AREA)` into the same letterbox with every plugin that handles the
//! syntax. Both sides read the file's bytes before timing and parse them inside it; both run
//! on one thread (the Python process pinned to one CPU, OpenCV and OpenMP at one thread).
//! Reported per syntax: median ms per image for each side, the fastest plugin, and the ratio
//! pydicom ÷ cxrflow; each plugin's 224² tensor is compared with cxrflow's full-resolution one,
//! so both sides are known to produce the same picture.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Parser;
use cxrflow_inference::manifest::resolve;
use cxrflow_inference::session::{ModelSession, SessionOptions};
use cxrflow_preprocess::decode::{decode, decode_reduced};
use cxrflow_preprocess::stats::image_stats;
use cxrflow_preprocess::{prepare, DecodeLimits, Profile};
use serde::{Deserialize, Serialize};

use crate::full_size::{render_heldout, tools_python, wrap_as_dicom, ImageSpec};
use crate::procfs::thread_cpu_ns;

/// Transfer syntaxes of `bench/python/full_size_dicom.py`: name, UID, what it is.
pub const SYNTAXES: [(&str, &str, &str); 9] = [
    ("native", "1.2.840.10008.1.2.1", "Explicit VR Little Endian"),
    (
        "deflate",
        "1.2.840.10008.1.2.1.99",
        "Deflated Explicit VR LE (DCMTK)",
    ),
    ("rle", "1.2.840.10008.1.2.5", "RLE Lossless (DCMTK)"),
    (
        "jpeg-ll",
        "1.2.840.10008.1.2.4.70",
        "JPEG Lossless SV1 (DCMTK)",
    ),
    ("jls", "1.2.840.10008.1.2.4.80", "JPEG-LS Lossless (DCMTK)"),
    (
        "jpeg12",
        "1.2.840.10008.1.2.4.51",
        "JPEG Extended 12-bit, q 90 (DCMTK)",
    ),
    (
        "jpeg",
        "1.2.840.10008.1.2.4.50",
        "JPEG Baseline 8-bit, q 95 (Pillow)",
    ),
    (
        "j2k",
        "1.2.840.10008.1.2.4.90",
        "JPEG 2000 Lossless (Pillow/OpenJPEG)",
    ),
    (
        "j2k-lossy",
        "1.2.840.10008.1.2.4.91",
        "JPEG 2000 10:1 (Pillow/OpenJPEG)",
    ),
];

/// cxrflow's preprocess against pydicom + OpenCV on the same full-size DICOM files.
#[derive(Debug, Clone, Parser)]
#[command(name = "cxrflow-bench pydicom-compare")]
pub struct CompareArgs {
    /// Dataset root (holds `CheXpert-v1.0-small/heldout.csv`).
    #[arg(long, env = "CXRFLOW_DATASET_ROOT")]
    pub dataset: PathBuf,
    /// Held-out frontal images, the first N in file order.
    #[arg(long, default_value_t = 3)]
    pub images: usize,
    /// Timed runs per file and decoder (after one untimed run); the median counts.
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// The dataset's seed (scripts/make-test-data.sh: CXRFLOW_SEED, 7).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// The dataset's lung masks; default
    /// `$CXRFLOW_DATA/chexpert-labels/semantic_masks_v7labs_lungs.zip` when it exists.
    #[arg(long)]
    pub masks: Option<PathBuf>,
    /// Transfer syntaxes (names of bench/python/full_size_dicom.py).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "native,deflate,rle,jpeg-ll,jls,jpeg12,jpeg,j2k,j2k-lossy"
    )]
    pub syntaxes: Vec<String>,
    /// Python with pydicom, its plugins and OpenCV; default `$CXRFLOW_TOOLS/dicom-venv`
    /// (`bench/python-env.sh dicom` makes it).
    #[arg(long, env = "CXRFLOW_BENCH_DICOM_PYTHON")]
    pub python: Option<PathBuf>,
    /// Model directories root: DenseNet-121's CPU per image (batch 1, one intra-op thread, on
    /// the timing thread) is measured in the same run, and each syntax's preprocessing is given
    /// as a share of it (issue #24's goal: at most 0.20). Unset: no model, no share.
    #[arg(long, env = "CXRFLOW_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// The model whose CPU per image preprocessing is compared with.
    #[arg(long, default_value = "densenet121-synthetic")]
    pub model: String,
    /// Timed model runs (after one untimed run); the median counts.
    #[arg(long, default_value_t = 15)]
    pub model_reps: usize,
    #[arg(long, default_value = "target/bench/pydicom-compare.json")]
    pub out: PathBuf,
}

/// Milliseconds per image: the median of the timed runs of each file, averaged over files.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Cost {
    pub wall_ms: f64,
    /// CPU time of the timing thread (cxrflow's preprocess runs on it alone).
    pub cpu_ms: f64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct TensorDelta {
    /// |Δ| on the 224² 8-bit tensor (0..=255) against cxrflow's full-resolution tensor, first
    /// file: INTER_AREA against bilinear (convolution) resampling.
    pub max: u8,
    pub mean: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PluginCost {
    pub plugin: String,
    /// Wall (single-core: the process is pinned to one CPU) and thread CPU, ms per image.
    pub wall_ms: Option<f64>,
    pub thread_cpu_ms: Option<f64>,
    /// CPU of the whole Python process (above `thread_cpu_ms`: the decoder ran threads of its
    /// own, on the same one CPU).
    pub process_cpu_ms: Option<f64>,
    pub tensor_vs_cxrflow: Option<TensorDelta>,
    /// The plugin failed on a file: what it said.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SyntaxComparison {
    pub syntax: String,
    pub transfer_syntax_uid: String,
    pub label: String,
    pub files: usize,
    pub stored: (u32, u32),
    pub file_mib_mean: f64,
    /// cxrflow's `prepare`, as the preprocess service runs it.
    pub cxrflow: Cost,
    /// Whether `prepare` decoded a reduced resolution level for this syntax.
    pub cxrflow_reduced: bool,
    /// Where it did: the full-resolution decode + statistics + resize (what it did before).
    pub cxrflow_full_resolution: Option<Cost>,
    pub pydicom: Vec<PluginCost>,
    /// The plugin with the lowest wall time.
    pub fastest_plugin: Option<String>,
    /// Fastest pydicom plugin ÷ cxrflow `prepare`, wall time (> 1: cxrflow is faster).
    pub ratio_wall: Option<f64>,
    /// The same in thread CPU time (robust to other load on the machine).
    pub ratio_cpu: Option<f64>,
    /// Fastest pydicom plugin ÷ cxrflow's full-resolution path, wall time (the gain without
    /// reduced decoding).
    pub ratio_wall_full_resolution: Option<f64>,
    /// cxrflow `prepare`'s thread CPU ÷ the model's thread CPU per image, same run (goal ≤ 0.20).
    pub share_of_model_cpu: Option<f64>,
}

/// The model preprocessing is compared with: one image per run, one intra-op thread.
#[derive(Debug, Clone, Serialize)]
pub struct ModelCost {
    pub model: String,
    pub runs: usize,
    pub cost: Cost,
}

#[derive(Debug, Serialize)]
pub struct CompareReport {
    pub cpu_model: String,
    pub cpus: usize,
    /// /proc/loadavg (1, 5, 15 min) at the start and the end of the timed part.
    pub load_before: String,
    pub load_after: String,
    pub sample: String,
    pub images: usize,
    pub reps: usize,
    /// Versions and settings of the Python side (pydicom_decode.py's report, less results).
    pub python: serde_json::Value,
    /// The model's CPU per image, measured after the syntaxes (None without `--models-dir`).
    pub model: Option<ModelCost>,
    pub results: Vec<SyntaxComparison>,
    pub render_s: f64,
    pub encode_s: f64,
    pub timed_s: f64,
}

/// One entry of pydicom_decode.py's output.
#[derive(Debug, Deserialize)]
struct PyEntry {
    file: String,
    plugin: String,
    wall_ms: Option<f64>,
    thread_cpu_ms: Option<f64>,
    process_cpu_ms: Option<f64>,
    error: Option<String>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// The model's cost per image: batch 1 through the inference service's own session code, one
/// intra-op thread, on this thread.
fn model_cost(models_dir: &Path, name: &str, reps: usize) -> anyhow::Result<ModelCost> {
    let model = resolve(models_dir, name)
        .with_context(|| format!("model {name} (scripts/make-test-data.sh makes it)"))?;
    let len = model.manifest.input_len();
    let opts = SessionOptions {
        intra_op_threads: 1,
        ..SessionOptions::default()
    };
    let session = ModelSession::load(model, &opts, None)?;
    let image: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
    let cost = time_one(reps, || {
        session.run(&[image.as_slice()])?;
        Ok(())
    })?;
    Ok(ModelCost {
        model: name.to_string(),
        runs: reps.max(1),
        cost,
    })
}

/// Times `f` on one file: one untimed run, then `reps` timed; medians of wall and thread CPU.
fn time_one(reps: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Cost> {
    f()?;
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for _ in 0..reps.max(1) {
        let (t, c) = (Instant::now(), thread_cpu_ns());
        f()?;
        wall.push(t.elapsed().as_secs_f64() * 1e3);
        if let (Some(a), Some(b)) = (c, thread_cpu_ns()) {
            cpu.push((b - a) as f64 / 1e6);
        }
    }
    Ok(Cost {
        wall_ms: median(&mut wall),
        cpu_ms: median(&mut cpu),
    })
}

fn mean_cost(v: &[Cost]) -> Cost {
    let n = v.len().max(1) as f64;
    Cost {
        wall_ms: v.iter().map(|c| c.wall_ms).sum::<f64>() / n,
        cpu_ms: v.iter().map(|c| c.cpu_ms).sum::<f64>() / n,
    }
}

fn tensor_delta(a: &[u8], b: &[u8]) -> Option<TensorDelta> {
    (a.len() == b.len() && !a.is_empty()).then(|| TensorDelta {
        max: a
            .iter()
            .zip(b)
            .map(|(x, y)| x.abs_diff(*y))
            .max()
            .unwrap_or(0),
        mean: a
            .iter()
            .zip(b)
            .map(|(x, y)| f64::from(x.abs_diff(*y)))
            .sum::<f64>()
            / a.len() as f64,
    })
}

/// Per plugin: the mean over files of each file's medians; an error on any file is reported.
fn plugin_costs(entries: &[PyEntry], tensors: &Path, reference: &[u8]) -> Vec<PluginCost> {
    let mut names: Vec<&str> = entries.iter().map(|e| e.plugin.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .map(|plugin| {
            let mine: Vec<&PyEntry> = entries.iter().filter(|e| e.plugin == plugin).collect();
            let error = mine
                .iter()
                .find_map(|e| e.error.as_ref().map(|m| format!("{}: {m}", e.file)));
            let avg = |f: fn(&PyEntry) -> Option<f64>| {
                let v: Vec<f64> = mine.iter().filter_map(|e| f(e)).collect();
                (error.is_none() && v.len() == mine.len())
                    .then(|| mean(&v))
                    .flatten()
            };
            let tensor = std::fs::read(tensors.join(format!("{plugin}.u8"))).ok();
            PluginCost {
                plugin: plugin.to_string(),
                wall_ms: avg(|e| e.wall_ms),
                thread_cpu_ms: avg(|e| e.thread_cpu_ms),
                process_cpu_ms: avg(|e| e.process_cpu_ms),
                tensor_vs_cxrflow: tensor.and_then(|t| tensor_delta(&t, reference)),
                error,
            }
        })
        .collect()
}

/// Fills the fastest plugin and the ratios from the costs already measured.
fn conclude(c: &mut SyntaxComparison) {
    let fastest = c
        .pydicom
        .iter()
        .filter(|p| p.wall_ms.is_some())
        .min_by(|a, b| {
            a.wall_ms
                .unwrap_or(f64::MAX)
                .total_cmp(&b.wall_ms.unwrap_or(f64::MAX))
        });
    c.fastest_plugin = fastest.map(|p| p.plugin.clone());
    c.ratio_wall = fastest
        .and_then(|p| p.wall_ms)
        .map(|w| w / c.cxrflow.wall_ms);
    // The whole process's CPU where a decoder ran threads of its own.
    c.ratio_cpu = fastest
        .and_then(|p| match (p.thread_cpu_ms, p.process_cpu_ms) {
            (Some(t), Some(all)) => Some(t.max(all)),
            (t, all) => t.or(all),
        })
        .map(|t| t / c.cxrflow.cpu_ms);
    c.ratio_wall_full_resolution = fastest
        .and_then(|p| p.wall_ms)
        .zip(c.cxrflow_full_resolution)
        .map(|(w, full)| w / full.wall_ms);
}

fn measure_syntax(
    args: &CompareArgs,
    python: &Path,
    dir: &Path,
    syntax: &str,
    count: usize,
) -> anyhow::Result<SyntaxComparison> {
    let (_, uid, label) = SYNTAXES
        .iter()
        .find(|(n, _, _)| *n == syntax)
        .ok_or_else(|| anyhow::anyhow!("unknown syntax {syntax}"))?;
    let files: Vec<PathBuf> = (0..count)
        .map(|i| dir.join(format!("{i:04}.{syntax}.dcm")))
        .collect();
    let blobs: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).with_context(|| format!("reading {}", f.display())))
        .collect::<anyhow::Result<_>>()?;
    let limits = DecodeLimits::default();
    let profile = Profile::Gray224V1;
    let first = decode(&blobs[0], &limits)?;
    let stored = (first.width, first.height);
    let reference = profile.render(&first).map_err(anyhow::Error::msg)?;
    let reduced = decode_reduced(&blobs[0], &limits, profile.side())?.width != first.width;
    drop(first);

    let mut prepared = Vec::new();
    let mut full = Vec::new();
    for bytes in &blobs {
        prepared.push(time_one(args.reps, || {
            prepare(bytes, &limits, profile)?;
            Ok(())
        })?);
        if reduced {
            full.push(time_one(args.reps, || {
                let img = decode(bytes, &limits)?;
                let stats = image_stats(&img, profile.side());
                let t = profile.render(&img).map_err(anyhow::Error::msg)?;
                std::hint::black_box((stats, t));
                Ok(())
            })?);
        }
    }

    let tensors = dir.join(format!("tensors-{syntax}"));
    std::fs::create_dir_all(&tensors)?;
    let json = dir.join(format!("pydicom-{syntax}.json"));
    let status = Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("python/pydicom_decode.py"))
        .arg("--reps")
        .arg(args.reps.max(1).to_string())
        .arg("--out")
        .arg(&json)
        .arg("--tensors")
        .arg(&tensors)
        .args(&files)
        .env("OMP_NUM_THREADS", "1")
        .env("OPENBLAS_NUM_THREADS", "1")
        .env("MKL_NUM_THREADS", "1")
        .status()
        .with_context(|| {
            format!(
                "running bench/python/pydicom_decode.py with {} (bench/python-env.sh dicom)",
                python.display()
            )
        })?;
    if !status.success() {
        bail!("bench/python/pydicom_decode.py failed on {syntax}: {status}");
    }
    let out: serde_json::Value = serde_json::from_slice(&std::fs::read(&json)?)?;
    let entries: Vec<PyEntry> = serde_json::from_value(out["results"].clone())?;
    let sizes: Vec<f64> = blobs
        .iter()
        .map(|b| b.len() as f64 / (1 << 20) as f64)
        .collect();
    let mut c = SyntaxComparison {
        syntax: syntax.to_string(),
        transfer_syntax_uid: uid.to_string(),
        label: label.to_string(),
        files: blobs.len(),
        stored,
        file_mib_mean: mean(&sizes).unwrap_or(0.0),
        cxrflow: mean_cost(&prepared),
        cxrflow_reduced: reduced,
        cxrflow_full_resolution: reduced.then(|| mean_cost(&full)),
        pydicom: plugin_costs(&entries, &tensors, &reference),
        fastest_plugin: None,
        ratio_wall: None,
        ratio_cpu: None,
        ratio_wall_full_resolution: None,
        share_of_model_cpu: None,
    };
    conclude(&mut c);
    Ok(c)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn measure(args: &CompareArgs) -> anyhow::Result<CompareReport> {
    let python = args
        .python
        .clone()
        .unwrap_or_else(|| tools_python("dicom-venv"));
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
    let t = Instant::now();
    wrap_as_dicom(&python, work.path(), &args.syntaxes)?;
    let encode_s = t.elapsed().as_secs_f64();
    eprintln!(
        "{} full-size images rendered ({render_s:.0} s) and wrapped as DICOM ({encode_s:.0} s)",
        paths.len()
    );

    let (t, load_before) = (Instant::now(), loadavg());
    let mut results = Vec::new();
    let mut python_info = serde_json::Value::Null;
    for syntax in &args.syntaxes {
        let c = measure_syntax(args, &python, work.path(), syntax, paths.len())?;
        eprintln!(
            "{syntax}: cxrflow {:.0} ms{}, pydicom fastest {} {} ms: ×{}",
            c.cxrflow.wall_ms,
            c.cxrflow_full_resolution.map_or(String::new(), |f| format!(
                " (full resolution {:.0})",
                f.wall_ms
            )),
            c.fastest_plugin.as_deref().unwrap_or("none"),
            c.pydicom
                .iter()
                .find(|p| Some(&p.plugin) == c.fastest_plugin.as_ref())
                .and_then(|p| p.wall_ms)
                .map_or("–".into(), |w| format!("{w:.0}")),
            c.ratio_wall.map_or("–".into(), |r| format!("{r:.2}"))
        );
        if python_info.is_null() {
            let json = work.path().join(format!("pydicom-{syntax}.json"));
            let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(json)?)?;
            if let Some(o) = v.as_object_mut() {
                o.remove("results");
            }
            python_info = v;
        }
        results.push(c);
    }
    let model = match &args.models_dir {
        Some(dir) => Some(model_cost(dir, &args.model, args.model_reps)?),
        None => None,
    };
    if let Some(m) = &model {
        eprintln!(
            "{}: {:.0} CPU-ms per image (batch 1, one thread)",
            m.model, m.cost.cpu_ms
        );
        for c in &mut results {
            c.share_of_model_cpu = Some(c.cxrflow.cpu_ms / m.cost.cpu_ms);
        }
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let report = CompareReport {
        cpu_model: cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or("unknown".into(), |(_, v)| v.trim().to_string()),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_before,
        load_after: loadavg(),
        sample: format!(
            "the first {} frontal images of {}/CheXpert-v1.0-small/heldout.csv, re-rendered at {}×≈{} (seed {})",
            paths.len(),
            args.dataset.display(),
            ImageSpec::FULL_SIZE.short_side,
            ImageSpec::FULL_SIZE.short_side * 6 / 5,
            args.seed
        ),
        images: paths.len(),
        reps: args.reps,
        python: python_info,
        model,
        results,
        render_s,
        encode_s,
        timed_s: t.elapsed().as_secs_f64(),
    };
    Ok(report)
}

/// The README table.
pub fn markdown(r: &CompareReport) -> String {
    let f = |v: Option<f64>, d: usize| v.map_or("–".into(), |x| format!("{x:.d$}"));
    let mut out = String::from(
        "| syntax | MiB | cxrflow ms (full resolution) | share of the model's CPU | pydicom + OpenCV ms per plugin | fastest ÷ cxrflow (CPU) | tensor Δ max / mean |\n|---|---|---|---|---|---|---|\n",
    );
    for c in &r.results {
        let plugins: Vec<String> = c
            .pydicom
            .iter()
            .map(|p| match (&p.error, p.wall_ms) {
                (Some(_), _) | (None, None) => format!("{} failed", p.plugin),
                (None, Some(w)) => format!("{} {w:.0}", p.plugin),
            })
            .collect();
        let delta = c.pydicom.iter().filter_map(|p| p.tensor_vs_cxrflow).fold(
            None::<TensorDelta>,
            |acc, d| match acc {
                Some(a) if a.mean >= d.mean => Some(a),
                _ => Some(d),
            },
        );
        out.push_str(&format!(
            "| {} | {:.1} | {:.0}{} | {} | {} | **{}** ({}) | {} |\n",
            c.label,
            c.file_mib_mean,
            c.cxrflow.wall_ms,
            c.cxrflow_full_resolution
                .map_or(String::new(), |f| format!(" ({:.0})", f.wall_ms)),
            f(c.share_of_model_cpu, 2),
            plugins.join(", "),
            f(c.ratio_wall, 2),
            f(c.ratio_cpu, 2),
            delta.map_or("–".into(), |d| format!("{} / {:.2}", d.max, d.mean))
        ));
    }
    if let Some(m) = &r.model {
        out.push_str(&format!(
            "\n{}: {:.1} CPU-ms per image (batch 1, one intra-op thread, median of {} runs); the share is cxrflow's CPU ÷ that.",
            m.model, m.cost.cpu_ms, m.runs
        ));
    }
    out.push_str(&format!(
        "\n{} ({} CPUs), load {} before, {} after; {}; median of {} runs per file, mean over files.\n",
        r.cpu_model, r.cpus, r.load_before, r.load_after, r.sample, r.reps
    ));
    out
}

pub fn run(args: CompareArgs) -> anyhow::Result<()> {
    let report = measure(&args)?;
    if let Some(d) = args.out.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(&args.out, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("{}", markdown(&report));
    eprintln!("written to {}", args.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(plugin: &str, file: &str, wall: f64, error: Option<&str>) -> PyEntry {
        PyEntry {
            file: file.into(),
            plugin: plugin.into(),
            wall_ms: error.is_none().then_some(wall),
            thread_cpu_ms: error.is_none().then_some(wall * 0.9),
            process_cpu_ms: error.is_none().then_some(wall),
            error: error.map(str::to_string),
        }
    }

    #[test]
    fn the_fastest_working_plugin_sets_the_ratio() {
        let entries = vec![
            entry("gdcm", "a", 300.0, None),
            entry("gdcm", "b", 500.0, None),
            entry("pylibjpeg", "a", 200.0, None),
            entry("pylibjpeg", "b", 200.0, None),
            entry("pillow", "a", 10.0, None),
            entry("pillow", "b", 0.0, Some("cannot decode")),
        ];
        let dir = tempfile::tempdir().unwrap();
        let reference = vec![10u8; 16];
        std::fs::write(dir.path().join("gdcm.u8"), vec![12u8; 16]).unwrap();
        let costs = plugin_costs(&entries, dir.path(), &reference);
        let names: Vec<&str> = costs.iter().map(|p| p.plugin.as_str()).collect();
        assert_eq!(names, ["gdcm", "pillow", "pylibjpeg"]);
        assert_eq!(costs[0].wall_ms, Some(400.0));
        assert_eq!(costs[0].tensor_vs_cxrflow.unwrap().max, 2);
        assert!(costs[1].wall_ms.is_none() && costs[1].error.is_some());
        let mut c = SyntaxComparison {
            syntax: "j2k".into(),
            transfer_syntax_uid: "1.2.840.10008.1.2.4.90".into(),
            label: "J2K".into(),
            files: 2,
            stored: (2500, 3000),
            file_mib_mean: 5.0,
            cxrflow: Cost {
                wall_ms: 100.0,
                cpu_ms: 90.0,
            },
            cxrflow_reduced: true,
            cxrflow_full_resolution: Some(Cost {
                wall_ms: 250.0,
                cpu_ms: 240.0,
            }),
            pydicom: costs,
            fastest_plugin: None,
            ratio_wall: None,
            ratio_cpu: None,
            ratio_wall_full_resolution: None,
            share_of_model_cpu: None,
        };
        conclude(&mut c);
        assert_eq!(c.fastest_plugin.as_deref(), Some("pylibjpeg"));
        assert_eq!(c.ratio_wall, Some(2.0));
        // CPU: the process's (all threads) when above the thread's.
        assert!((c.ratio_cpu.unwrap() - 200.0 / 90.0).abs() < 1e-9);
        assert_eq!(c.ratio_wall_full_resolution, Some(0.8));
        c.share_of_model_cpu = Some(90.0 / 450.0);
        let table = markdown(&CompareReport {
            cpu_model: "x".into(),
            cpus: 2,
            load_before: "0.1 0.1 0.1".into(),
            load_after: "0.2 0.1 0.1".into(),
            sample: "s".into(),
            images: 2,
            reps: 3,
            python: serde_json::Value::Null,
            model: Some(ModelCost {
                model: "densenet121-synthetic".into(),
                runs: 15,
                cost: Cost {
                    wall_ms: 460.0,
                    cpu_ms: 450.0,
                },
            }),
            results: vec![c],
            render_s: 0.0,
            encode_s: 0.0,
            timed_s: 0.0,
        });
        assert!(table.contains("| 0.20 | "), "{table}");
        assert!(table.contains("**2.00** (2.22)"), "{table}");
        assert!(
            table.contains("densenet121-synthetic: 450.0 CPU-ms"),
            "{table}"
        );
    }

    #[test]
    fn every_syntax_of_the_wrapping_script_is_known() {
        let script = include_str!("../python/full_size_dicom.py");
        for (name, _, _) in SYNTAXES {
            assert!(script.contains(&format!("\"{name}\"")), "{name}");
        }
    }
}
