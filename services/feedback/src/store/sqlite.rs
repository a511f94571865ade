//! The embedded study store: SQLite through `rusqlite` (bundled), in WAL mode.
//!
//! Why SQLite for the single-machine default: it needs no operations at all (no server, no
//! port, nothing to install: the library is compiled in), it is durable (`synchronous=FULL`:
//! a committed transaction survives a power cut, which at-least-once needs — the input offset
//! is committed after the store write, so a lost write would be a lost report), it is one file
//! that can be copied or inspected with the `sqlite3` shell, every read-modify-write runs in a
//! transaction, and WAL lets readers (the export command, tests) read while the service writes.
//! Its limit — one writer, one machine — is exactly the embedded shape's; the distributed shape
//! uses [`super::ScyllaStore`].
//!
//! rusqlite is blocking, so every call runs on tokio's blocking pool (`spawn_blocking`) over a
//! single connection behind a mutex: writes are serialised anyway by SQLite, and one connection
//! keeps the statement cache warm.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cxrflow_contracts::{EpochMillis, LabeledExample, ModelRole, Prediction, RadiologistReport};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::{
    decide_labeled, decide_prediction, decide_report, fingerprint, role_str, LabeledOutcome,
    PredictionOutcome, ReportOutcome, ReportState, SourceRef, StoreError, StoredReport, StudyStore,
};

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE predictions (
    study_uid     TEXT NOT NULL,
    role          TEXT NOT NULL,
    model_version TEXT NOT NULL,
    predicted_at  INTEGER NOT NULL,
    record        TEXT NOT NULL,
    PRIMARY KEY (study_uid, role)
);
CREATE TABLE reports (
    study_uid        TEXT PRIMARY KEY,
    report_id        TEXT NOT NULL,
    read_ended_at    INTEGER NOT NULL,
    state            TEXT NOT NULL,
    received_at      INTEGER NOT NULL,
    source_topic     TEXT NOT NULL,
    source_partition INTEGER NOT NULL,
    source_offset    INTEGER NOT NULL,
    record           TEXT NOT NULL
);
CREATE INDEX reports_by_state ON reports (state, received_at);
CREATE TABLE labeled (
    study_uid     TEXT NOT NULL,
    role          TEXT NOT NULL,
    model_version TEXT NOT NULL,
    labeled_at    INTEGER NOT NULL,
    fingerprint   TEXT NOT NULL,
    source        TEXT NOT NULL,
    record        TEXT NOT NULL,
    PRIMARY KEY (study_uid, role)
);
CREATE INDEX labeled_by_version ON labeled (model_version, labeled_at);
"#];

/// The embedded [`StudyStore`]. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

fn err(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::Sqlite {
        path: path.display().to_string(),
        detail: e.to_string(),
    }
}

fn from_json<T: serde::de::DeserializeOwned>(
    what: &'static str,
    study: &str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        what,
        study: study.to_string(),
        detail: e.to_string(),
    })
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("records serialise to JSON")
}

/// How long an opener or writer waits for another connection's lock.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens the file, sets WAL and the busy timeout, and applies the migrations not yet applied.
fn open_and_migrate(path: &Path) -> rusqlite::Result<Connection> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // The version is read inside a write-locked transaction: two processes opening a fresh
    // store at once (the service and `cxrflow feedback export`, say) would otherwise both see
    // version 0 and the second would fail on "table already exists". IMMEDIATE takes the
    // write lock first; the other waits, then finds the migrations applied.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let applied: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, m) in MIGRATIONS.iter().enumerate().skip(applied.max(0) as usize) {
        tx.execute_batch(m)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
    }
    tx.commit()?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating directories and file as needed) and migrates the store at `path`.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let path = path.to_path_buf();
        let p = path.clone();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection, StoreError> {
            let e = err(&p);
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|x| StoreError::Sqlite {
                    path: p.display().to_string(),
                    detail: format!("cannot create {}: {x}", dir.display()),
                })?;
            }
            // A fresh file is switched to WAL under an exclusive lock, and SQLite does not call
            // the busy handler for every lock a concurrent opener meets there: retry the whole
            // open on "database is locked" for as long as the busy timeout would have waited.
            let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
            loop {
                match open_and_migrate(&p) {
                    Err(rusqlite::Error::SqliteFailure(f, _))
                        if f.code == rusqlite::ErrorCode::DatabaseBusy
                            && std::time::Instant::now() < deadline =>
                    {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    r => break r.map_err(&e),
                }
            }
        })
        .await
        .map_err(|j| StoreError::Sqlite {
            path: path.display().to_string(),
            detail: j.to_string(),
        })??;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    /// Runs `f` in a transaction on the blocking pool.
    async fn with_tx<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let e = err(&path);
            let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
            let tx = c.transaction().map_err(&e)?;
            let out = f(&tx)?;
            tx.commit().map_err(&e)?;
            Ok(out)
        })
        .await
        .map_err(|j| StoreError::Sqlite {
            path: self.path.display().to_string(),
            detail: j.to_string(),
        })?
    }

    fn e(&self) -> impl Fn(rusqlite::Error) -> StoreError + Send + Clone + 'static {
        let path = self.path.display().to_string();
        move |e| StoreError::Sqlite {
            path: path.clone(),
            detail: e.to_string(),
        }
    }
}

type ReportRow = (String, String, i64, String, i32, i64);

fn stored_report(study: &str, row: ReportRow) -> Result<StoredReport, StoreError> {
    let (record, state, received_at, topic, partition, offset) = row;
    Ok(StoredReport {
        report: from_json("report", study, &record)?,
        state: ReportState::parse(&state),
        received_at,
        source: SourceRef {
            topic,
            partition,
            offset,
        },
    })
}

const REPORT_COLUMNS: &str =
    "record, state, received_at, source_topic, source_partition, source_offset";

fn read_report_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ReportRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

#[async_trait]
impl StudyStore for SqliteStore {
    async fn put_prediction(&self, p: &Prediction) -> Result<PredictionOutcome, StoreError> {
        let p = p.clone();
        let e = self.e();
        self.with_tx(move |tx| {
            let uid = p.study.study_instance_uid.clone();
            let role = role_str(p.model_role);
            let stored: Option<String> = tx
                .query_row(
                    "SELECT record FROM predictions WHERE study_uid = ?1 AND role = ?2",
                    params![uid, role],
                    |r| r.get(0),
                )
                .optional()
                .map_err(&e)?;
            let stored: Option<Prediction> = stored.map(|s| from_json("prediction", &uid, &s)).transpose()?;
            let outcome = decide_prediction(stored.as_ref(), &p);
            if outcome == PredictionOutcome::Stored {
                tx.execute(
                    "INSERT INTO predictions (study_uid, role, model_version, predicted_at, record) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (study_uid, role) DO UPDATE SET model_version = excluded.model_version,
                       predicted_at = excluded.predicted_at, record = excluded.record",
                    params![uid, role, p.model_version, p.predicted_at, to_json(&p)],
                )
                .map_err(&e)?;
            }
            Ok(outcome)
        })
        .await
    }

    async fn predictions(&self, study: &str) -> Result<Vec<Prediction>, StoreError> {
        let study = study.to_string();
        let e = self.e();
        self.with_tx(move |tx| {
            let mut st = tx
                .prepare_cached("SELECT record FROM predictions WHERE study_uid = ?1 ORDER BY role")
                .map_err(&e)?;
            let rows = st
                .query_map(params![study], |r| r.get::<_, String>(0))
                .map_err(&e)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(&e)?;
            rows.iter()
                .map(|s| from_json("prediction", &study, s))
                .collect()
        })
        .await
    }

    async fn put_report(
        &self,
        r: &RadiologistReport,
        source: &SourceRef,
        received_at: EpochMillis,
    ) -> Result<ReportOutcome, StoreError> {
        let (r, source) = (r.clone(), source.clone());
        let e = self.e();
        self.with_tx(move |tx| {
            let uid = r.study_instance_uid.clone();
            let stored: Option<String> = tx
                .query_row("SELECT record FROM reports WHERE study_uid = ?1", params![uid], |x| x.get(0))
                .optional()
                .map_err(&e)?;
            let stored: Option<RadiologistReport> = stored.map(|s| from_json("report", &uid, &s)).transpose()?;
            let outcome = decide_report(stored.as_ref(), &r);
            if matches!(outcome, ReportOutcome::Inserted | ReportOutcome::Superseded) {
                tx.execute(
                    "INSERT INTO reports (study_uid, report_id, read_ended_at, state, received_at, source_topic,
                       source_partition, source_offset, record) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (study_uid) DO UPDATE SET report_id = excluded.report_id,
                       read_ended_at = excluded.read_ended_at, state = excluded.state, received_at = excluded.received_at,
                       source_topic = excluded.source_topic, source_partition = excluded.source_partition,
                       source_offset = excluded.source_offset, record = excluded.record",
                    params![
                        uid,
                        r.report_id,
                        r.read_ended_at,
                        ReportState::Pending.as_str(),
                        received_at,
                        source.topic,
                        source.partition,
                        source.offset,
                        to_json(&r)
                    ],
                )
                .map_err(&e)?;
            }
            Ok(outcome)
        })
        .await
    }

    async fn report(&self, study: &str) -> Result<Option<StoredReport>, StoreError> {
        let study = study.to_string();
        let e = self.e();
        self.with_tx(move |tx| {
            let row = tx
                .query_row(
                    &format!("SELECT {REPORT_COLUMNS} FROM reports WHERE study_uid = ?1"),
                    params![study],
                    read_report_row,
                )
                .optional()
                .map_err(&e)?;
            row.map(|r| stored_report(&study, r)).transpose()
        })
        .await
    }

    async fn pending_reports(
        &self,
        received_before: EpochMillis,
    ) -> Result<Vec<StoredReport>, StoreError> {
        let e = self.e();
        self.with_tx(move |tx| {
            let mut st = tx
                .prepare_cached(&format!(
                    "SELECT study_uid, {REPORT_COLUMNS} FROM reports WHERE state = 'pending' AND received_at < ?1
                     ORDER BY received_at"
                ))
                .map_err(&e)?;
            let rows = st
                .query_map(params![received_before], |r| {
                    Ok((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))
                })
                .map_err(&e)?
                .collect::<Result<Vec<(String, ReportRow)>, _>>()
                .map_err(&e)?;
            rows.into_iter().map(|(uid, row)| stored_report(&uid, row)).collect()
        })
        .await
    }

    async fn set_report_state(
        &self,
        study: &str,
        report_id: &str,
        state: ReportState,
    ) -> Result<bool, StoreError> {
        let (study, report_id) = (study.to_string(), report_id.to_string());
        let e = self.e();
        self.with_tx(move |tx| {
            let n = tx
                .execute(
                    "UPDATE reports SET state = ?3 WHERE study_uid = ?1 AND report_id = ?2",
                    params![study, report_id, state.as_str()],
                )
                .map_err(&e)?;
            Ok(n > 0)
        })
        .await
    }

    async fn put_labeled(
        &self,
        ex: &LabeledExample,
        source: &SourceRef,
    ) -> Result<LabeledOutcome, StoreError> {
        let (ex, source) = (ex.clone(), source.clone());
        let e = self.e();
        self.with_tx(move |tx| {
            let uid = ex.study.study_instance_uid.clone();
            let role = role_str(ex.model_role);
            let stored: Option<(String, String)> = tx
                .query_row(
                    "SELECT fingerprint, source FROM labeled WHERE study_uid = ?1 AND role = ?2",
                    params![uid, role],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(&e)?;
            let fp = fingerprint(&ex);
            let outcome = decide_labeled(stored.as_ref().map(|(f, s)| (f.as_str(), s.as_str())), &fp, &source);
            if matches!(outcome, LabeledOutcome::Inserted | LabeledOutcome::Updated) {
                tx.execute(
                    "INSERT INTO labeled (study_uid, role, model_version, labeled_at, fingerprint, source, record)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (study_uid, role) DO UPDATE SET model_version = excluded.model_version,
                       labeled_at = excluded.labeled_at, fingerprint = excluded.fingerprint, source = excluded.source,
                       record = excluded.record",
                    params![uid, role, ex.model_version, ex.labeled_at, fp, source.to_string(), to_json(&ex)],
                )
                .map_err(&e)?;
            }
            tx.execute(
                "UPDATE reports SET state = 'joined' WHERE study_uid = ?1 AND report_id = ?2",
                params![uid, ex.report_id],
            )
            .map_err(&e)?;
            Ok(outcome)
        })
        .await
    }

    async fn labeled(
        &self,
        study: &str,
        role: ModelRole,
    ) -> Result<Option<LabeledExample>, StoreError> {
        let study = study.to_string();
        let e = self.e();
        self.with_tx(move |tx| {
            let row: Option<String> = tx
                .query_row(
                    "SELECT record FROM labeled WHERE study_uid = ?1 AND role = ?2",
                    params![study, role_str(role)],
                    |r| r.get(0),
                )
                .optional()
                .map_err(&e)?;
            row.map(|s| from_json("labeled example", &study, &s))
                .transpose()
        })
        .await
    }

    async fn labeled_since(
        &self,
        model_version: &str,
        since: EpochMillis,
    ) -> Result<Vec<LabeledExample>, StoreError> {
        let version = model_version.to_string();
        let e = self.e();
        self.with_tx(move |tx| {
            let mut st = tx
                .prepare_cached(
                    "SELECT study_uid, record FROM labeled WHERE model_version = ?1 AND labeled_at >= ?2
                     ORDER BY labeled_at, study_uid, role",
                )
                .map_err(&e)?;
            let rows = st
                .query_map(params![version, since], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(&e)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(&e)?;
            rows.iter().map(|(uid, s)| from_json("labeled example", uid, s)).collect()
        })
        .await
    }
}
