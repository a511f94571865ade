//! A pool of real studies: `cxr.predictions.v1` records exported from a pipeline run (JSON
//! lines of [`Prediction`]) joined to the dataset's label file for their ground truth. The
//! replay names a study `replay::study_uid(row, cycle)` (cycle 0 for the first pass over the
//! table); every cycle's name finds its label rows here, and a study is critical when any of its rows has a finding of the critical set
//! positive (as [`crate::replay::ReplayStudy::critical_truth`] says).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cxrflow_contracts::{ModelRole, Prediction};

use super::model::PoolStudy;
use crate::dataset::labels::LabelState;
use crate::dataset::{read_label_file, DatasetError};
use crate::replay::{study_uid, CRITICAL};

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("reading predictions {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("predictions {path}, line {line}: not a cxr.predictions.v1 record: {source}")]
    Json {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Labels(#[from] DatasetError),
    #[error("no prediction in {predictions} names a study of {labels}")]
    Empty {
        predictions: PathBuf,
        labels: PathBuf,
    },
}

/// The critical-finding score triage's policy ranks by: the highest ratio to threshold among
/// critical findings, mapped to 0..1 (0.5 at the threshold), for the pool's AUROC.
fn critical_score(p: &Prediction) -> f64 {
    p.findings
        .iter()
        .filter(|f| f.critical && f.probability.is_finite())
        .map(|f| {
            let t = if f.threshold > 0.0 { f.threshold } else { 0.5 };
            let r = f.probability.clamp(0.0, 1.0) / t;
            r / (1.0 + r)
        })
        .fold(0.0, f64::max)
}

/// The pool: one study per predicted study UID with a label row (the newest non-shadow
/// prediction wins), in UID order. Also returns how many predictions found no label row.
pub fn pool_from_files(
    predictions: &Path,
    labels: &Path,
) -> Result<(Vec<PoolStudy>, usize), PoolError> {
    let table = read_label_file(labels)?;
    let io = |source| PoolError::Io {
        path: predictions.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(predictions).map_err(io)?;
    let mut records = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let p: Prediction = serde_json::from_str(&line).map_err(|source| PoolError::Json {
            path: predictions.to_path_buf(),
            line: i + 1,
            source,
        })?;
        if p.model_role != ModelRole::Shadow {
            records.push(p);
        }
    }
    // A replay longer than its table cycles through it with fresh UIDs per cycle
    // (`replay::study_uid`); a run of N predictions over S studies has at most N/S + 1 cycles.
    let cycles = (records.len() / table.rows.len().max(1)) as u32 + 1;
    let mut truth: HashMap<String, bool> = HashMap::new();
    for row in &table.rows {
        let critical = CRITICAL
            .iter()
            .any(|f| row.label(*f) == LabelState::Positive);
        for cycle in 0..=cycles {
            *truth.entry(study_uid(row, cycle)).or_default() |= critical;
        }
    }
    let mut newest: HashMap<String, Prediction> = HashMap::new();
    let mut unmatched = 0;
    for p in records {
        let uid = p.study.study_instance_uid.clone();
        if !truth.contains_key(&uid) {
            unmatched += 1;
            continue;
        }
        match newest.get(&uid) {
            Some(cur) if cur.predicted_at >= p.predicted_at => {}
            _ => {
                newest.insert(uid, p);
            }
        }
    }
    let mut uids: Vec<&String> = newest.keys().collect();
    uids.sort();
    let pool: Vec<PoolStudy> = uids
        .into_iter()
        .map(|uid| {
            let p = &newest[uid];
            PoolStudy {
                critical: truth[uid],
                probability: critical_score(p),
                prediction: Some(Arc::new(p.clone())),
            }
        })
        .collect();
    if pool.is_empty() {
        return Err(PoolError::Empty {
            predictions: predictions.to_path_buf(),
            labels: labels.to_path_buf(),
        });
    }
    Ok((pool, unmatched))
}
