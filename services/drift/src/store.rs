//! The drift service's embedded store (SQLite, WAL): reference windows per model version, a
//! reset epoch per model so a running service notices `reset_reference`, and the retrain
//! trigger's record of alerts it acted on.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use crate::detector::ModelKey;
use crate::observation::Observation;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("drift store {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("drift store {path}: cannot create its directory: {source}")]
    Dir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reference study does not (de)serialise: {0}")]
    Json(#[from] serde_json::Error),
}

pub struct DriftStore {
    conn: Connection,
    path: String,
}

impl DriftStore {
    /// Opens (creating) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let p = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                path: p.clone(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(|source| StoreError::Sqlite {
            path: p.clone(),
            source,
        })?;
        let s = DriftStore { conn, path: p };
        s.exec(
            "PRAGMA journal_mode=WAL;
             PRAGMA busy_timeout=5000;
             CREATE TABLE IF NOT EXISTS reference_study (
                 model_name TEXT NOT NULL, model_version TEXT NOT NULL,
                 scope TEXT NOT NULL DEFAULT '', seq INTEGER NOT NULL,
                 study_uid TEXT NOT NULL, observation TEXT NOT NULL,
                 PRIMARY KEY (model_name, model_version, scope, seq));
             CREATE TABLE IF NOT EXISTS reference_epoch (
                 model_name TEXT NOT NULL, model_version TEXT NOT NULL, epoch INTEGER NOT NULL,
                 PRIMARY KEY (model_name, model_version));
             CREATE TABLE IF NOT EXISTS triggered_alert (
                 alert_id TEXT PRIMARY KEY, model_name TEXT NOT NULL, model_version TEXT NOT NULL,
                 triggered_at INTEGER NOT NULL, outcome TEXT NOT NULL);",
        )?;
        s.migrate_scope()?;
        Ok(s)
    }

    /// Stores written before per-site detection have no `scope` column: their rows are the
    /// all-traffic references (scope `''`). Rebuilt once, in one transaction.
    fn migrate_scope(&self) -> Result<(), StoreError> {
        let has_scope: bool = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM pragma_table_info('reference_study') WHERE name='scope'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(|e| self.err(e))?
            > 0;
        if has_scope {
            return Ok(());
        }
        tracing::info!(path = %self.path, "adding per-site scope to the drift reference store");
        self.exec(
            "BEGIN;
             ALTER TABLE reference_study RENAME TO reference_study_unscoped;
             CREATE TABLE reference_study (
                 model_name TEXT NOT NULL, model_version TEXT NOT NULL,
                 scope TEXT NOT NULL DEFAULT '', seq INTEGER NOT NULL,
                 study_uid TEXT NOT NULL, observation TEXT NOT NULL,
                 PRIMARY KEY (model_name, model_version, scope, seq));
             INSERT INTO reference_study (model_name, model_version, scope, seq, study_uid, observation)
                 SELECT model_name, model_version, '', seq, study_uid, observation
                 FROM reference_study_unscoped;
             DROP TABLE reference_study_unscoped;
             COMMIT;",
        )
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn exec(&self, sql: &str) -> Result<(), StoreError> {
        self.conn.execute_batch(sql).map_err(|e| self.err(e))
    }

    /// The persisted reference studies of a model version (of one site's detector when `site`
    /// is given), in order.
    pub fn load_reference(
        &self,
        key: &ModelKey,
        site: Option<&str>,
    ) -> Result<Vec<Observation>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT observation FROM reference_study WHERE model_name=?1 AND model_version=?2 AND scope=?3 ORDER BY seq")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![key.name, key.version, site.unwrap_or("")], |r| {
                r.get::<_, String>(0)
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for r in rows {
            out.push(serde_json::from_str(&r.map_err(|e| self.err(e))?)?);
        }
        Ok(out)
    }

    /// Appends one reference study (idempotent by position).
    pub fn add_reference(
        &self,
        key: &ModelKey,
        site: Option<&str>,
        seq: usize,
        obs: &Observation,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(obs)?;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO reference_study (model_name, model_version, scope, seq, study_uid, observation) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![key.name, key.version, site.unwrap_or(""), seq as i64, obs.study_uid, json],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The reset epoch of a model version (0 until first reset).
    pub fn reference_epoch(&self, key: &ModelKey) -> Result<i64, StoreError> {
        self.conn
            .query_row(
                "SELECT epoch FROM reference_epoch WHERE model_name=?1 AND model_version=?2",
                params![key.name, key.version],
                |r| r.get(0),
            )
            .optional()
            .map(|e| e.unwrap_or(0))
            .map_err(|e| self.err(e))
    }

    /// Deletes the reference of `model_name` (one version, or all versions when `None`) and
    /// bumps its epoch. Returns the number of reference studies deleted.
    pub fn reset_reference(
        &self,
        model_name: &str,
        model_version: Option<&str>,
    ) -> Result<usize, StoreError> {
        let versions: Vec<String> = match model_version {
            Some(v) => vec![v.to_string()],
            None => {
                let mut stmt = self
                    .conn
                    .prepare(
                        "SELECT DISTINCT model_version FROM reference_study WHERE model_name=?1
                         UNION SELECT model_version FROM reference_epoch WHERE model_name=?1",
                    )
                    .map_err(|e| self.err(e))?;
                let rows = stmt
                    .query_map(params![model_name], |r| r.get::<_, String>(0))
                    .map_err(|e| self.err(e))?;
                rows.collect::<Result<_, _>>().map_err(|e| self.err(e))?
            }
        };
        let mut deleted = 0;
        for v in versions {
            deleted += self
                .conn
                .execute(
                    "DELETE FROM reference_study WHERE model_name=?1 AND model_version=?2",
                    params![model_name, v],
                )
                .map_err(|e| self.err(e))?;
            self.conn
                .execute(
                    "INSERT INTO reference_epoch (model_name, model_version, epoch) VALUES (?1, ?2, 1)
                     ON CONFLICT(model_name, model_version) DO UPDATE SET epoch = epoch + 1",
                    params![model_name, v],
                )
                .map_err(|e| self.err(e))?;
        }
        Ok(deleted)
    }

    /// Whether the retrain trigger already acted on `alert_id`.
    pub fn was_triggered(&self, alert_id: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT 1 FROM triggered_alert WHERE alert_id=?1",
                params![alert_id],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(|e| self.err(e))
    }

    /// When the retrain trigger last fired for a model version (ms), if ever.
    pub fn last_trigger(
        &self,
        model_name: &str,
        model_version: &str,
    ) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT MAX(triggered_at) FROM triggered_alert WHERE model_name=?1 AND model_version=?2 AND outcome='triggered'",
                params![model_name, model_version],
                |r| r.get::<_, Option<i64>>(0),
            )
            .map_err(|e| self.err(e))
    }

    pub fn record_trigger(
        &self,
        alert_id: &str,
        model_name: &str,
        model_version: &str,
        at: i64,
        outcome: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO triggered_alert (alert_id, model_name, model_version, triggered_at, outcome) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![alert_id, model_name, model_version, at, outcome],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

/// Replaces the reference of a model (one version, or every version) in the store at `db`:
/// the next `reference_size` studies of that version become the new reference. A running drift
/// service notices at its next study of that model. What `cxrflow drift reset-reference` runs.
pub fn reset_reference(
    db: &Path,
    model_name: &str,
    model_version: Option<&str>,
) -> Result<usize, StoreError> {
    DriftStore::open(db)?.reset_reference(model_name, model_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_round_trips_and_resets() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sub/drift.db");
        let s = DriftStore::open(&db).unwrap();
        let key = ModelKey {
            name: "m".into(),
            version: "1".into(),
        };
        let mut o = Observation {
            study_uid: "u1".into(),
            continuous: vec![Some(1.5), None],
            ..Default::default()
        };
        s.add_reference(&key, None, 0, &o).unwrap();
        o.study_uid = "u2".into();
        s.add_reference(&key, None, 1, &o).unwrap();
        s.add_reference(&key, None, 1, &o).unwrap();
        s.add_reference(&key, Some("site-b"), 0, &o).unwrap();
        let back = s.load_reference(&key, None).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[1], o);
        assert_eq!(s.load_reference(&key, Some("site-b")).unwrap(), vec![o]);
        assert_eq!(s.reference_epoch(&key).unwrap(), 0);
        // A reset replaces every scope's reference of the version.
        assert_eq!(reset_reference(&db, "m", None).unwrap(), 3);
        assert!(s.load_reference(&key, None).unwrap().is_empty());
        assert!(s.load_reference(&key, Some("site-b")).unwrap().is_empty());
        assert_eq!(s.reference_epoch(&key).unwrap(), 1);
        assert!(!s.was_triggered("a").unwrap());
        s.record_trigger("a", "m", "1", 10, "triggered").unwrap();
        assert!(s.was_triggered("a").unwrap());
        assert_eq!(s.last_trigger("m", "1").unwrap(), Some(10));
    }

    #[test]
    fn a_store_without_scopes_is_migrated_keeping_its_reference() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("old.db");
        {
            let c = Connection::open(&db).unwrap();
            c.execute_batch(
                "CREATE TABLE reference_study (
                     model_name TEXT NOT NULL, model_version TEXT NOT NULL, seq INTEGER NOT NULL,
                     study_uid TEXT NOT NULL, observation TEXT NOT NULL,
                     PRIMARY KEY (model_name, model_version, seq));",
            )
            .unwrap();
            let o = serde_json::to_string(&Observation {
                study_uid: "old".into(),
                ..Default::default()
            })
            .unwrap();
            c.execute(
                "INSERT INTO reference_study VALUES ('m', '1', 0, 'old', ?1)",
                params![o],
            )
            .unwrap();
        }
        let s = DriftStore::open(&db).unwrap();
        let key = ModelKey {
            name: "m".into(),
            version: "1".into(),
        };
        let back = s.load_reference(&key, None).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].study_uid, "old");
        // Opening again is a no-op.
        drop(s);
        assert_eq!(
            DriftStore::open(&db)
                .unwrap()
                .load_reference(&key, None)
                .unwrap()
                .len(),
            1
        );
    }
}
