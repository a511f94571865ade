//! Reading and writing CheXpert label files (`train.csv`, `valid.csv`, plain or gzipped).
//!
//! A bad row never stops a read: it is skipped, counted, and the first few reasons are kept
//! with their line numbers. Only an unreadable file or a header without the CheXpert columns is
//! an error, because then nothing in the file can be trusted.
//!
//! Beside it: the CheXpert vocabulary ([`labels`]) and the patient-level splits ([`split`]).

pub mod labels;
pub mod split;

use crate::dataset::labels::{Finding, LabelState, Labels, Projection, Sex, ViewKind};
use flate2::read::MultiGzDecoder;
use serde::Serialize;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// The CheXpert header, in order.
/// The five image columns, then the 14 findings.
pub const COLUMNS: [&str; 19] = {
    let image = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA"];
    let mut out = [""; 19];
    let mut i = 0;
    while i < out.len() {
        out[i] = if i < image.len() {
            image[i]
        } else {
            Finding::ALL[i - image.len()].name()
        };
        i += 1;
    }
    out
};

/// How many row errors a [`LabelTable`] keeps verbatim; the rest are only counted.
pub const KEPT_ROW_ERRORS: usize = 32;

/// CheXpert's patient directory name, e.g. `patient00001`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PatientId(pub String);

/// One study of one patient (`patient00001/study2`): the unit that is kept together.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct StudyKey {
    pub patient: PatientId,
    pub study: u32,
}

/// One image row of a label file.
#[derive(Debug, Clone, PartialEq)]
pub struct ChexpertRow {
    /// As written in the file, relative to the dataset's parent directory.
    pub path: String,
    pub patient: PatientId,
    pub study: u32,
    pub sex: Sex,
    /// `None` when the cell is empty or 0 (CheXpert's "no age").
    pub age: Option<u32>,
    pub view: ViewKind,
    pub projection: Option<Projection>,
    pub labels: Labels,
}

impl ChexpertRow {
    pub fn study_key(&self) -> StudyKey {
        StudyKey {
            patient: self.patient.clone(),
            study: self.study,
        }
    }

    /// Where the image lives, given the directory that holds `CheXpert-v1.0(-small)/`.
    pub fn image_path(&self, dataset_parent: &Path) -> PathBuf {
        dataset_parent.join(&self.path)
    }

    pub fn label(&self, finding: Finding) -> LabelState {
        self.labels.get(finding)
    }
}

/// Extracts patient and study from a CheXpert image path
/// (`…/patient00001/study1/view1_frontal.jpg`).
pub fn parse_image_path(path: &str) -> Option<(PatientId, u32)> {
    let parts: Vec<&str> = path.split(['/', '\\']).collect();
    parts.windows(2).find_map(|w| {
        let digits = w[0].strip_prefix("patient")?;
        let study = w[1].strip_prefix("study")?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some((PatientId(w[0].to_string()), study.parse().ok()?))
    })
}

/// A file-level failure: nothing of the file was read.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{source_name}: cannot read the csv header: {source}")]
    Header {
        source_name: String,
        #[source]
        source: csv::Error,
    },
    #[error("{source_name}: header lacks column {column:?}")]
    MissingColumn {
        source_name: String,
        column: &'static str,
    },
    #[error("{path}: no CheXpert label file (train.csv / valid.csv) found there")]
    NotADataset { path: PathBuf },
    #[error("cannot write labels to {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
}

/// Why one row was skipped; `line` is the 1-based line in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct RowError {
    pub line: u64,
    pub reason: RowErrorReason,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowErrorReason {
    #[error("expected at least {expected} fields, found {found}")]
    FieldCount { expected: usize, found: usize },
    #[error("unreadable record: {0}")]
    Malformed(String),
    #[error("path {0:?} has no patientNNNNN/studyN components")]
    Path(String),
    #[error("bad {column} value {value:?}")]
    Value { column: &'static str, value: String },
}

/// The rows of one label file, with what was skipped.
#[derive(Debug, Clone, Default)]
pub struct LabelTable {
    /// Where the rows came from, for messages.
    pub source: String,
    pub rows: Vec<ChexpertRow>,
    pub skipped: usize,
    /// The first [`KEPT_ROW_ERRORS`] reasons for skipping.
    pub errors: Vec<RowError>,
}

impl LabelTable {
    /// Appends another table's rows and counts.
    pub fn extend(&mut self, other: LabelTable) {
        self.rows.extend(other.rows);
        self.skipped += other.skipped;
        let room = KEPT_ROW_ERRORS.saturating_sub(self.errors.len());
        self.errors.extend(other.errors.into_iter().take(room));
    }
}

/// Reads a label file, gunzipping it when it starts with the gzip magic bytes (so both
/// `train.csv` and torchxrayvision's `chexpert_train.csv.gz` work).
pub fn read_label_file(path: &Path) -> Result<LabelTable, DatasetError> {
    let io_err = |source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = BufReader::new(File::open(path).map_err(io_err)?);
    let gzipped = reader
        .fill_buf()
        .map_err(io_err)?
        .starts_with(&[0x1f, 0x8b]);
    let name = path.display().to_string();
    if gzipped {
        read_labels(MultiGzDecoder::new(reader), &name)
    } else {
        read_labels(reader, &name)
    }
}

/// Reads CheXpert csv text. Columns are found by name, so extra columns or another order are
/// fine; a missing column is an error.
pub fn read_labels<R: Read>(reader: R, source: &str) -> Result<LabelTable, DatasetError> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(reader);
    let header = csv.headers().map_err(|e| DatasetError::Header {
        source_name: source.to_string(),
        source: e,
    })?;
    let mut index = [0usize; 19];
    for (slot, column) in index.iter_mut().zip(COLUMNS) {
        *slot = header
            .iter()
            .position(|h| h.trim_start_matches('\u{feff}').trim() == column)
            .ok_or(DatasetError::MissingColumn {
                source_name: source.to_string(),
                column,
            })?;
    }
    let needed = index.iter().max().map_or(0, |m| m + 1);

    let mut table = LabelTable {
        source: source.to_string(),
        ..LabelTable::default()
    };
    let skip = |table: &mut LabelTable, err: RowError| {
        table.skipped += 1;
        if table.errors.len() < KEPT_ROW_ERRORS {
            table.errors.push(err);
        }
    };
    let mut record = csv::StringRecord::new();
    loop {
        match csv.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().map_or(0, |p| p.line());
                if record.len() == 1 && record[0].trim().is_empty() {
                    continue; // a blank line carries nothing
                }
                match parse_row(&record, &index, needed) {
                    Ok(row) => table.rows.push(row),
                    Err(reason) => skip(&mut table, RowError { line, reason }),
                }
            }
            Err(e) if e.is_io_error() => {
                let csv::ErrorKind::Io(source) = e.into_kind() else {
                    unreachable!("is_io_error checked the kind")
                };
                return Err(DatasetError::Io {
                    path: PathBuf::from(&table.source),
                    source,
                });
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                skip(
                    &mut table,
                    RowError {
                        line,
                        reason: RowErrorReason::Malformed(e.to_string()),
                    },
                );
            }
        }
    }
    Ok(table)
}

fn parse_row(
    record: &csv::StringRecord,
    index: &[usize; 19],
    needed: usize,
) -> Result<ChexpertRow, RowErrorReason> {
    if record.len() < needed {
        return Err(RowErrorReason::FieldCount {
            expected: needed,
            found: record.len(),
        });
    }
    let cell = |i: usize| record[index[i]].trim();
    let bad = |column: &'static str, value: &str| RowErrorReason::Value {
        column,
        value: value.to_string(),
    };

    let path = cell(0);
    let (patient, study) =
        parse_image_path(path).ok_or_else(|| RowErrorReason::Path(path.to_string()))?;
    let sex = Sex::parse(cell(1)).ok_or_else(|| bad(COLUMNS[1], cell(1)))?;
    let age = match cell(2) {
        "" => None,
        text => match text.parse::<f64>() {
            // CheXpert writes 0 where it has no age (3 of its 223,414 training rows, all adults'
            // studies by their findings): replayed as 0 it would be a newborn's film, refused by
            // preprocess's age rule, where the row only lacks an age.
            Ok(0.0) => None,
            Ok(a) if (0.0..=150.0).contains(&a) => Some(a.round() as u32),
            _ => return Err(bad(COLUMNS[2], text)),
        },
    };
    let view = ViewKind::parse(cell(3)).ok_or_else(|| bad(COLUMNS[3], cell(3)))?;
    let projection = Projection::parse(cell(4)).map_err(|()| bad(COLUMNS[4], cell(4)))?;
    let mut labels = Labels::default();
    for (k, finding) in Finding::ALL.into_iter().enumerate() {
        let text = cell(5 + k);
        let state = LabelState::parse(text).ok_or_else(|| bad(COLUMNS[5 + k], text))?;
        labels.set(finding, state);
    }
    Ok(ChexpertRow {
        path: path.to_string(),
        patient,
        study,
        sex,
        age,
        view,
        projection,
        labels,
    })
}

/// Writes rows in CheXpert's format (header, `1.0` / `0.0` / `-1.0` / empty labels).
pub fn write_labels<'a, W: Write>(
    writer: W,
    rows: impl IntoIterator<Item = &'a ChexpertRow>,
) -> Result<(), csv::Error> {
    let mut csv = csv::Writer::from_writer(writer);
    csv.write_record(COLUMNS)?;
    for row in rows {
        let age = row.age.map(|a| a.to_string()).unwrap_or_default();
        let mut fields: Vec<&str> = vec![
            &row.path,
            row.sex.as_cell(),
            &age,
            row.view.as_cell(),
            row.projection.map_or("", Projection::as_cell),
        ];
        fields.extend(row.labels.0.iter().map(|l| l.as_cell()));
        csv.write_record(&fields)?;
    }
    csv.flush()?;
    Ok(())
}

/// Writes a label file at `path`.
pub fn write_label_file<'a>(
    path: &Path,
    rows: impl IntoIterator<Item = &'a ChexpertRow>,
) -> Result<(), DatasetError> {
    let file = File::create(path).map_err(|source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    write_labels(io::BufWriter::new(file), rows).map_err(|source| DatasetError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// The directory names CheXpert ships under, full-size first.
pub const DATASET_DIR_NAMES: [&str; 2] = ["CheXpert-v1.0", "CheXpert-v1.0-small"];

/// The label files a dataset directory may hold, in the order they are read.
pub const SPLIT_FILES: [&str; 3] = ["train.csv", "valid.csv", "heldout.csv"];

/// A CheXpert dataset on disk: its label files, and the directory image paths are relative to.
#[derive(Debug, Clone)]
pub struct ChexpertDataset {
    /// The directory holding `CheXpert-v1.0(-small)/`; row paths are relative to it.
    pub parent: PathBuf,
    /// The dataset directory itself.
    pub dir: PathBuf,
    /// `(file name, rows)` for each label file found.
    pub tables: Vec<(String, LabelTable)>,
}

impl ChexpertDataset {
    /// Every row of every label file, in file order.
    pub fn all_rows(&self) -> LabelTable {
        let mut all = LabelTable {
            source: self.dir.display().to_string(),
            ..LabelTable::default()
        };
        for (_, table) in &self.tables {
            all.extend(table.clone());
        }
        all
    }
}

/// Opens a dataset given either the dataset directory (`…/CheXpert-v1.0-small`) or the
/// directory that contains it.
pub fn open_dataset(path: &Path) -> Result<ChexpertDataset, DatasetError> {
    let has_labels = |dir: &Path| SPLIT_FILES.iter().any(|f| dir.join(f).is_file());
    let dir = if has_labels(path) {
        path.to_path_buf()
    } else {
        DATASET_DIR_NAMES
            .iter()
            .map(|name| path.join(name))
            .find(|d| has_labels(d))
            .ok_or_else(|| DatasetError::NotADataset {
                path: path.to_path_buf(),
            })?
    };
    let parent = dir
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let mut tables = Vec::new();
    for name in SPLIT_FILES {
        let file = dir.join(name);
        if file.is_file() {
            tables.push((name.to_string(), read_label_file(&file)?));
        }
    }
    Ok(ChexpertDataset {
        parent,
        dir,
        tables,
    })
}

/// Reads labels from a label file (csv or csv.gz) or from a dataset directory (all its label
/// files together).
pub fn read_label_source(path: &Path) -> Result<LabelTable, DatasetError> {
    if path.is_dir() {
        Ok(open_dataset(path)?.all_rows())
    } else {
        read_label_file(path)
    }
}

#[cfg(test)]
mod tests;
