//! The retraining export: labeled examples of one model version as a CheXpert-style CSV —
//! `Path` (the image's blob URI) then the 14 finding columns in CheXpert's order, each `1`
//! (present), `0` (absent), `-1` (uncertain) or blank (not assessed / not mentioned), the
//! encoding CheXpert's `train.csv` uses and training code already reads.

use std::path::PathBuf;

use cxrflow_contracts::{EpochMillis, LabelState, LabeledExample, FINDINGS};

use crate::store::{self, StoreError, StoreUri, StudyStore};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing the CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("writing the CSV: {0}")]
    Io(#[from] std::io::Error),
    #[error("--since {0:?}: expected epoch milliseconds, YYYY-MM-DD or RFC 3339")]
    BadSince(String),
}

/// `cxrflow feedback export` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// The study store to read.
    #[arg(long = "store", env = "CXRFLOW_FEEDBACK_STORE", default_value = crate::DEFAULT_STORE)]
    pub store: StoreUri,
    #[command(flatten)]
    pub scylla: crate::ScyllaArgs,
    /// Export examples of this model version.
    #[arg(long = "model-version")]
    pub model_version: String,
    /// Only examples labeled at or after this time (epoch ms, YYYY-MM-DD or RFC 3339).
    #[arg(long = "since", value_parser = parse_since, default_value = "0")]
    pub since: EpochMillis,
    /// Output file; `-` for standard output.
    #[arg(long = "output", short = 'o', default_value = "-")]
    pub output: PathBuf,
}

/// Parses `--since`: epoch milliseconds, a UTC date, or an RFC 3339 timestamp.
pub fn parse_since(s: &str) -> Result<EpochMillis, ExportError> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc().timestamp_millis());
        }
    }
    Err(ExportError::BadSince(s.to_string()))
}

fn cell(ex: &LabeledExample, finding: &str) -> &'static str {
    match ex
        .labels
        .iter()
        .find(|l| l.finding == finding)
        .map(|l| l.state)
    {
        Some(LabelState::Present) => "1",
        Some(LabelState::Absent) => "0",
        Some(LabelState::Uncertain) => "-1",
        Some(LabelState::NotAssessed) | None => "",
    }
}

/// Writes the labeled examples of `model_version` labeled at or after `since` as CSV; returns
/// how many rows were written.
pub async fn export_csv<W: std::io::Write>(
    store: &dyn StudyStore,
    model_version: &str,
    since: EpochMillis,
    writer: W,
) -> Result<usize, ExportError> {
    let examples = store.labeled_since(model_version, since).await?;
    let mut w = csv::Writer::from_writer(writer);
    let mut header = vec!["Path"];
    header.extend(FINDINGS.iter().copied());
    w.write_record(&header)?;
    for ex in &examples {
        let mut row = vec![ex.blob_uri.as_str()];
        row.extend(FINDINGS.iter().map(|f| cell(ex, f)));
        w.write_record(&row)?;
    }
    w.flush()?;
    Ok(examples.len())
}

/// `cxrflow feedback export`: opens the store and writes the CSV where `args` say.
pub async fn export(args: &ExportArgs) -> Result<usize, ExportError> {
    let store = store::open(&args.store, &args.scylla).await?;
    if args.output.as_os_str() == "-" {
        export_csv(
            store.as_ref(),
            &args.model_version,
            args.since,
            std::io::stdout().lock(),
        )
        .await
    } else {
        let file = std::fs::File::create(&args.output)?;
        export_csv(
            store.as_ref(),
            &args.model_version,
            args.since,
            std::io::BufWriter::new(file),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use crate::store::{SourceRef, SqliteStore};

    #[tokio::test]
    async fn csv_has_path_and_fourteen_label_columns() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("f.db")).await.unwrap();
        let src = SourceRef {
            topic: "t".into(),
            partition: 0,
            offset: 1,
        };
        let mut a = fixtures::labeled("1.1", "v1", 0.3, LabelState::NotAssessed);
        a.labels[2].state = LabelState::Present; // Cardiomegaly
        a.labels[5].state = LabelState::Uncertain; // Edema
        a.labels[12].state = LabelState::Absent; // Fracture
        let mut old = fixtures::labeled("1.2", "v1", 0.3, LabelState::Present);
        old.labeled_at = 1_000;
        let other = fixtures::labeled("1.3", "v2", 0.3, LabelState::Present);
        for ex in [&a, &old, &other] {
            store.put_labeled(ex, &src).await.unwrap();
        }
        let mut out = Vec::new();
        let n = export_csv(&store, "v1", parse_since("2020-01-01").unwrap(), &mut out)
            .await
            .unwrap();
        assert_eq!(n, 1);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "Path,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,Lung Opacity,Lung Lesion,Edema,Consolidation,\
             Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural Other,Fracture,Support Devices"
        );
        assert_eq!(lines[1], "file:///blobs/1.1.png,,,1,,,-1,,,,,,,0,");
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn since_formats() {
        assert_eq!(parse_since("1700000000000").unwrap(), 1_700_000_000_000);
        assert_eq!(parse_since("1970-01-02").unwrap(), 86_400_000);
        assert_eq!(parse_since("1970-01-01T00:00:01Z").unwrap(), 1000);
        assert!(parse_since("yesterday").is_err());
    }
}
