//! The SOP ledger: which SOP instance UIDs were ingested, with what content and by which event,
//! in an embedded SQLite database (WAL) so deduplication survives restarts.
//!
//! At-least-once and the ledger: a row is written *before* the output is acknowledged, and it
//! only says "this SOP was first seen with this content in this event". A later record with the
//! same event id is a redelivery (the process may have crashed before the output was
//! acknowledged), so it is emitted again — downstream is idempotent by key. A record with
//! another event id and the same content is a gateway resend: skipped and counted. The same
//! SOP with other content is a conflict: poison.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};

/// What the ledger says about a (SOP, content, event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First time this SOP is seen: now recorded under this event.
    First,
    /// The same event again (redelivery or DLQ replay): emit again.
    Redelivery,
    /// The same content under another event: a resend, emit nothing.
    Duplicate { first_event_id: String },
    /// Other content for the same SOP.
    Conflict {
        sha256: String,
        first_event_id: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ingest database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("ingest database {path}: cannot create its directory: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("ingest database task failed: {0}")]
    Join(String),
}

/// The SOP instance UID ledger. Cheap to clone; one connection behind a mutex (every statement
/// is a few microseconds, and one writer is what SQLite wants anyway).
#[derive(Clone)]
pub struct SopLedger {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ingested_sop (
    sop_instance_uid TEXT PRIMARY KEY,
    sha256           TEXT NOT NULL,
    first_event_id   TEXT NOT NULL,
    blob_uri         TEXT,
    first_seen_at    INTEGER NOT NULL
) WITHOUT ROWID;
";

impl SopLedger {
    /// Opens (creating if needed) the ledger at `path`.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| LedgerError::Dir {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let sql = |source| LedgerError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sql)?;
        // WAL + NORMAL: durable across process crashes; a power loss may forget the last rows,
        // which at worst lets a resend through once (downstream is idempotent by key).
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql)?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        Ok(SopLedger {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let conn = self.conn.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut c).map_err(|source| LedgerError::Sqlite { path, source })
        })
        .await
        .map_err(|e| LedgerError::Join(e.to_string()))?
    }

    /// Records `sop` as first seen with `sha256` in `event_id`, unless it was seen before;
    /// says which case it is. Atomic, so two concurrent records of one SOP cannot both be first.
    pub async fn claim(
        &self,
        sop: &str,
        sha256: &str,
        event_id: &str,
        now_ms: i64,
    ) -> Result<Claim, LedgerError> {
        let (sop, sha256, event_id) = (sop.to_string(), sha256.to_string(), event_id.to_string());
        self.with_conn(move |c| {
            let tx = c.transaction()?;
            let inserted = tx.execute(
                "INSERT INTO ingested_sop (sop_instance_uid, sha256, first_event_id, first_seen_at)
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (sop_instance_uid) DO NOTHING",
                params![sop, sha256, event_id, now_ms],
            )?;
            let claim = if inserted == 1 {
                Claim::First
            } else {
                let (seen_sha, first_event_id): (String, String) = tx.query_row(
                    "SELECT sha256, first_event_id FROM ingested_sop WHERE sop_instance_uid = ?1",
                    params![sop],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                if seen_sha != sha256 {
                    Claim::Conflict {
                        sha256: seen_sha,
                        first_event_id,
                    }
                } else if first_event_id == event_id {
                    Claim::Redelivery
                } else {
                    Claim::Duplicate { first_event_id }
                }
            };
            tx.commit()?;
            Ok(claim)
        })
        .await
    }

    /// Notes where the first event's image was stored.
    pub async fn set_blob_uri(
        &self,
        sop: &str,
        event_id: &str,
        blob_uri: &str,
    ) -> Result<(), LedgerError> {
        let (sop, event_id, blob_uri) =
            (sop.to_string(), event_id.to_string(), blob_uri.to_string());
        self.with_conn(move |c| {
            c.execute(
                "UPDATE ingested_sop SET blob_uri = ?3 WHERE sop_instance_uid = ?1 AND first_event_id = ?2",
                params![sop, event_id, blob_uri],
            )
            .map(|_| ())
        })
        .await
    }

    /// Forgets a claim whose event then failed for good, so a later resend is not skipped.
    pub async fn release(&self, sop: &str, event_id: &str) -> Result<(), LedgerError> {
        let (sop, event_id) = (sop.to_string(), event_id.to_string());
        self.with_conn(move |c| {
            c.execute(
                "DELETE FROM ingested_sop WHERE sop_instance_uid = ?1 AND first_event_id = ?2",
                params![sop, event_id],
            )
            .map(|_| ())
        })
        .await
    }

    /// (sha256, first event id, blob uri) of a SOP, if seen.
    pub async fn lookup(
        &self,
        sop: &str,
    ) -> Result<Option<(String, String, Option<String>)>, LedgerError> {
        let sop = sop.to_string();
        self.with_conn(move |c| {
            c.query_row(
                "SELECT sha256, first_event_id, blob_uri FROM ingested_sop WHERE sop_instance_uid = ?1",
                params![sop],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn claims_distinguish_first_redelivery_duplicate_and_conflict_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/ingest.db");
        let l = SopLedger::open(&path).unwrap();
        assert_eq!(l.claim("1.2", "aa", "e1", 1).await.unwrap(), Claim::First);
        assert_eq!(
            l.claim("1.2", "aa", "e1", 2).await.unwrap(),
            Claim::Redelivery
        );
        l.set_blob_uri("1.2", "e1", "file:///b/aa").await.unwrap();
        drop(l);

        let l = SopLedger::open(&path).unwrap();
        assert_eq!(
            l.claim("1.2", "aa", "e2", 3).await.unwrap(),
            Claim::Duplicate {
                first_event_id: "e1".into()
            }
        );
        assert_eq!(
            l.claim("1.2", "bb", "e3", 4).await.unwrap(),
            Claim::Conflict {
                sha256: "aa".into(),
                first_event_id: "e1".into()
            }
        );
        assert_eq!(
            l.lookup("1.2").await.unwrap(),
            Some(("aa".into(), "e1".into(), Some("file:///b/aa".into())))
        );
        l.release("1.2", "e2").await.unwrap();
        assert!(
            l.lookup("1.2").await.unwrap().is_some(),
            "only the first event's claim is released"
        );
        l.release("1.2", "e1").await.unwrap();
        assert_eq!(l.claim("1.2", "bb", "e4", 5).await.unwrap(), Claim::First);
    }

    #[tokio::test]
    async fn concurrent_claims_of_one_sop_have_exactly_one_first() {
        let dir = tempfile::tempdir().unwrap();
        let l = SopLedger::open(&dir.path().join("ingest.db")).unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let l = l.clone();
                tokio::spawn(
                    async move { l.claim("1.9", "cc", &format!("e{i}"), i).await.unwrap() },
                )
            })
            .collect();
        let mut firsts = 0;
        for t in tasks {
            if t.await.unwrap() == Claim::First {
                firsts += 1;
            }
        }
        assert_eq!(firsts, 1);
    }
}
