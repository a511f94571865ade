//! The model directory and its manifest (docs/model-manifest.md): `<root>/<name>/<version>/`
//! with `model.onnx` and `manifest.json`. Loading validates everything inference relies on, so
//! a bad model fails at load with a clear message instead of producing wrong predictions.

use std::path::{Path, PathBuf};

use cxrflow_contracts::FINDINGS;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid manifest: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("manifest {path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
    #[error("no model {name:?} under {root} (expected {root}/{name}/<version>/manifest.json)")]
    NotFound { root: PathBuf, name: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    pub name: String,
    pub layout: String,
    pub channels: u32,
    pub height: u32,
    pub width: u32,
    pub dtype: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreprocessingSpec {
    pub profile_id: String,
    pub width: u32,
    pub height: u32,
    pub channels: u32,
    #[serde(default)]
    pub interpolation: Option<String>,
    #[serde(default)]
    pub fit: Option<String>,
}

/// The model input is `pixel_u8 * scale + offset`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub scale: f32,
    pub offset: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputNames {
    pub probabilities: String,
    #[serde(default)]
    pub features: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// The graph already outputs probabilities.
    None,
    /// Inference applies a sigmoid to the output.
    Sigmoid,
}

/// The worklist tier a finding over its threshold raises a study to (docs/model-manifest.md,
/// "Tiers"): chosen by clinical meaning, its threshold by `cxrflow model calibrate`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FindingTier {
    /// Minutes matter (pneumothorax): the study is read first.
    Critical,
    /// Hours matter: read before routine work.
    Urgent,
    /// Reported with its probability, never raises the study's tier.
    #[default]
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingSpec {
    pub name: String,
    pub threshold: f64,
    /// The flag of manifests written before tiers; `tier` wins when present, and calibration
    /// keeps the two in step so older readers still see the CRITICAL set.
    #[serde(default)]
    pub critical: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<FindingTier>,
    /// What calibration measured at `threshold` (absent in uncalibrated manifests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operating_point: Option<crate::calibration::OperatingPoint>,
}

impl FindingSpec {
    /// The finding's tier: `tier`, or for a manifest from before tiers CRITICAL when flagged
    /// critical and no tier otherwise (such a model ranks nothing URGENT by its findings).
    pub fn tier(&self) -> FindingTier {
        self.tier.unwrap_or(if self.critical {
            FindingTier::Critical
        } else {
            FindingTier::None
        })
    }
}

/// The precision of the graph's weights and arithmetic. Inputs and outputs stay float32 either
/// way: an fp16 variant is converted with its I/O kept in float32 (onnxconverter-common's
/// `convert_float_to_float16(model, keep_io_types=True)`), so preprocessing, batching and the
/// NaN check are the same for both; ONNX Runtime runs fp16 arithmetic fast on CUDA only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp32,
    Fp16,
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    #[serde(default = "default_file")]
    pub file: String,
    pub input: InputSpec,
    pub preprocessing: PreprocessingSpec,
    pub normalization: Normalization,
    pub outputs: OutputNames,
    pub activation: Activation,
    /// `fp32` (default when absent) or `fp16`.
    #[serde(default)]
    pub precision: Precision,
    pub findings: Vec<FindingSpec>,
    #[serde(default)]
    pub training: serde_json::Value,
    /// How the thresholds were chosen (`cxrflow model calibrate`): split, targets, and the tier
    /// sizes, PPV and sensitivity they gave on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<crate::calibration::CalibrationRecord>,
    /// The out-of-distribution reference (`cxrflow model calibrate-ood`); without it the OOD
    /// gate is off for this version (logged at load).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ood: Option<crate::ood::OodReference>,
}

fn default_file() -> String {
    "model.onnx".into()
}

impl Manifest {
    /// Number of input elements per image (C·H·W).
    pub fn input_len(&self) -> usize {
        (self.input.channels * self.input.height * self.input.width) as usize
    }

    /// Checks the manifest's internal consistency; `Err` holds every problem found, joined.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.name.trim().is_empty() || self.name.contains('/') {
            problems.push(format!(
                "name {:?} must be non-empty without '/'",
                self.name
            ));
        }
        if self.version.trim().is_empty() || self.version.contains('/') {
            problems.push(format!(
                "version {:?} must be non-empty without '/'",
                self.version
            ));
        }
        let names: Vec<&str> = self.findings.iter().map(|f| f.name.as_str()).collect();
        if names != FINDINGS {
            problems.push(format!(
                "findings must be the 14 CheXpert findings in canonical order {FINDINGS:?}, got {names:?}"
            ));
        }
        for f in &self.findings {
            if f.tier
                .is_some_and(|t| (t == FindingTier::Critical) != f.critical)
            {
                problems.push(format!(
                    "{:?} has tier {:?} but critical {} (they must agree)",
                    f.name,
                    f.tier(),
                    f.critical
                ));
            }
            if !(0.0..=1.0).contains(&f.threshold) {
                problems.push(format!(
                    "threshold of {:?} is {} (must be within [0, 1])",
                    f.name, f.threshold
                ));
            }
        }
        let i = &self.input;
        if i.layout != "NCHW" {
            problems.push(format!(
                "input.layout {:?} unsupported (NCHW only)",
                i.layout
            ));
        }
        if i.dtype != "float32" {
            problems.push(format!(
                "input.dtype {:?} unsupported (float32 only; an fp16 model keeps float32 inputs \
                 and outputs: convert it with keep_io_types and declare \"precision\": \"fp16\")",
                i.dtype
            ));
        }
        if i.channels == 0 || i.height == 0 || i.width == 0 {
            problems.push("input channels/height/width must be positive".into());
        }
        if i.name.is_empty() {
            problems.push("input.name is empty".into());
        }
        let p = &self.preprocessing;
        if p.profile_id.trim().is_empty() {
            problems.push("preprocessing.profile_id is empty".into());
        }
        if (p.width, p.height, p.channels) != (i.width, i.height, i.channels) {
            problems.push(format!(
                "preprocessing produces {}x{}x{} but the model input is {}x{}x{} (WxHxC)",
                p.width, p.height, p.channels, i.width, i.height, i.channels
            ));
        }
        let n = self.normalization;
        if !n.scale.is_finite() || n.scale == 0.0 || !n.offset.is_finite() {
            problems.push(format!(
                "normalization scale {} / offset {} must be finite, scale non-zero",
                n.scale, n.offset
            ));
        }
        if self.outputs.probabilities.is_empty() {
            problems.push("outputs.probabilities is empty".into());
        }
        if self.outputs.features.as_deref() == Some(self.outputs.probabilities.as_str()) {
            problems.push("outputs.features and outputs.probabilities name the same output".into());
        }
        if self.file.is_empty() || self.file.contains("..") {
            problems.push(format!(
                "file {:?} must name a file inside the model directory",
                self.file
            ));
        }
        if let Some(r) = &self.ood {
            if let Err(e) = r.validate() {
                problems.push(e);
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// A model version on disk: its directory and validated manifest.
#[derive(Debug, Clone)]
pub struct ModelDir {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl ModelDir {
    /// Reads and validates `<dir>/manifest.json`; the model file must exist.
    pub fn load(dir: &Path) -> Result<ModelDir, ManifestError> {
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path).map_err(|source| ManifestError::Read {
            path: path.clone(),
            source,
        })?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|source| ManifestError::Parse {
                path: path.clone(),
                source,
            })?;
        let invalid = |problem: String| ManifestError::Invalid {
            path: path.clone(),
            problem,
        };
        manifest.validate().map_err(invalid)?;
        if let Some(v) = dir.file_name().and_then(|v| v.to_str()) {
            if v != manifest.version {
                return Err(invalid(format!(
                    "directory {v:?} holds manifest version {:?}",
                    manifest.version
                )));
            }
        }
        let model = dir.join(&manifest.file);
        if !model.is_file() {
            return Err(invalid(format!(
                "model file {} does not exist",
                model.display()
            )));
        }
        Ok(ModelDir {
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    pub fn model_path(&self) -> PathBuf {
        self.dir.join(&self.manifest.file)
    }
}

/// Compares versions numerically where both parse as dot-separated numbers (`1.10.0` > `1.9.2`),
/// lexically otherwise.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let parse = |s: &str| {
        s.split('.')
            .map(|p| p.parse::<u64>())
            .collect::<Result<Vec<_>, _>>()
    };
    match (parse(a), parse(b)) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

/// The versions of `name` under `root` that hold a manifest, oldest first.
pub fn versions(root: &Path, name: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(root.join(name))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("manifest.json").is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    out.sort_by(|a, b| compare_versions(a, b));
    out
}

/// Resolves `name[/version]` under `root`: a pinned version, or the newest one present.
pub fn resolve(root: &Path, spec: &str) -> Result<ModelDir, ManifestError> {
    let (name, version) = match spec.split_once('/') {
        Some((n, v)) => (n, Some(v)),
        None => (spec, None),
    };
    let version = match version {
        Some(v) => v.to_string(),
        None => versions(root, name)
            .pop()
            .ok_or_else(|| ManifestError::NotFound {
                root: root.to_path_buf(),
                name: name.to_string(),
            })?,
    };
    ModelDir::load(&root.join(name).join(version))
}

#[cfg(test)]
#[path = "manifest_tests.rs"]
mod tests;
