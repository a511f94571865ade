//! The retraining export a trigger hands over: the labeled examples of the alert's model
//! version as the feedback service's CheXpert-style CSV, made by `cxrflow feedback export` (the
//! drift crate never reads the feedback store itself).

use std::path::PathBuf;
use std::time::Duration;

use cxrflow_contracts::DriftAlert;

use crate::error::RetrainTriggerError;
use crate::retrain_trigger::TriggerConfig;

/// Which labeled examples a trigger exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportSince {
    /// Labeled at or after the start of the alert's detection window.
    Window,
    /// Every labeled example of the model version.
    All,
}

/// A finished export: the CSV file and its data rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub path: PathBuf,
    pub rows: usize,
}

/// Runs `cxrflow feedback export` for the alert's model version into `<alert id>.csv`.
pub async fn export(
    cfg: &TriggerConfig,
    a: &DriftAlert,
    store: &str,
) -> Result<Export, RetrainTriggerError> {
    let io = |path: &PathBuf| {
        let path = path.clone();
        move |source| RetrainTriggerError::ExportIo { path, source }
    };
    let limit = Duration::from_millis(cfg.timeout_ms);
    std::fs::create_dir_all(&cfg.export_dir).map_err(io(&cfg.export_dir))?;
    let path = cfg.export_dir.join(format!("{}.csv", a.alert_id));
    let bin = match &cfg.export_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe().map_err(RetrainTriggerError::ExportBinary)?,
    };
    let since = match cfg.export_since {
        ExportSince::Window => a.detection_window.start.max(0),
        ExportSince::All => 0,
    };
    let mut c = tokio::process::Command::new(&bin);
    c.args(["feedback", "export", "--store", store, "--model-version"])
        .arg(&a.model_version)
        .arg("--since")
        .arg(since.to_string())
        .arg("--output")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(limit, c.output())
        .await
        .map_err(|_| RetrainTriggerError::ExportTimeout(limit))?
        .map_err(io(&bin))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: String = stderr.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
        return Err(RetrainTriggerError::ExportFailed {
            status: out.status,
            stderr: tail,
        });
    }
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let rows = text.lines().count().saturating_sub(1);
    tracing::info!(alert_id = %a.alert_id, version = %a.model_version, rows, path = %path.display(), "labeled examples exported for retraining");
    Ok(Export { path, rows })
}
