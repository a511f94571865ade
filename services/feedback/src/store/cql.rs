//! Every CQL statement of the ScyllaDB store, with its schema migration, in one place so the
//! data model can be reviewed on its own.
//!
//! Tables are keyed for the queries the service makes (one partition per query):
//! - `predictions`, `reports`, `labeled_by_study`: partition = study UID — the join and the
//!   idempotency checks read one study at a time.
//! - `labeled_by_version_day`: partition = (model_version, day of `labeled_at`) — the
//!   retraining export reads one model version over a time range, a day partition at a time,
//!   so no partition grows without bound. `labeled_days` lists the days a version has, so an
//!   export `--since` far in the past reads only days that exist.
//! - `pending_reports`: the sweep's index of reports still waiting for a prediction. It holds
//!   only pending reports (rows are deleted on join/expiry), so one partition stays small.
//!
//! Records are stored as their JSON next to the key columns: the Avro schema is the contract,
//! and the store never needs to query inside a record.

/// Schema version this module migrates to (recorded in `schema_migrations`).
pub const SCHEMA_VERSION: i32 = 1;

/// The keyspace statement (replication is the deployment's choice).
pub fn create_keyspace(keyspace: &str, replication_factor: u32) -> String {
    format!(
        "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = \
         {{'class': 'NetworkTopologyStrategy', 'replication_factor': {replication_factor}}}"
    )
}

/// The tables of schema version 1, in order; each statement is idempotent.
pub fn migration_v1(ks: &str) -> Vec<String> {
    vec![
        format!("CREATE TABLE IF NOT EXISTS {ks}.schema_migrations (version int PRIMARY KEY, applied_at bigint)"),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.predictions (study_uid text, role text, model_version text, \
             predicted_at bigint, record text, PRIMARY KEY ((study_uid), role))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.reports (study_uid text PRIMARY KEY, report_id text, \
             read_ended_at bigint, state text, received_at bigint, source_topic text, source_partition int, \
             source_offset bigint, record text)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.pending_reports (bucket int, received_at bigint, study_uid text, \
             PRIMARY KEY ((bucket), received_at, study_uid))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.labeled_by_study (study_uid text, role text, model_version text, \
             labeled_at bigint, fingerprint text, source text, record text, PRIMARY KEY ((study_uid), role))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.labeled_by_version_day (model_version text, day int, \
             labeled_at bigint, study_uid text, role text, record text, \
             PRIMARY KEY ((model_version, day), labeled_at, study_uid, role))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.labeled_days (model_version text, day int, \
             PRIMARY KEY ((model_version), day))"
        ),
    ]
}

pub fn record_migration(ks: &str) -> String {
    format!("INSERT INTO {ks}.schema_migrations (version, applied_at) VALUES (?, ?)")
}

/// The single partition of `pending_reports`.
pub const PENDING_BUCKET: i32 = 0;

/// Prepared statements (bind markers in the order their callers pass values).
pub struct Cql {
    pub select_prediction: String,
    pub select_predictions: String,
    pub upsert_prediction: String,
    pub select_report: String,
    pub upsert_report: String,
    pub set_report_state: String,
    pub insert_pending: String,
    pub delete_pending: String,
    pub select_pending: String,
    pub select_labeled: String,
    pub upsert_labeled: String,
    pub insert_labeled_day: String,
    pub delete_labeled_day: String,
    pub insert_day: String,
    pub select_days: String,
    pub select_labeled_day: String,
}

impl Cql {
    pub fn new(ks: &str) -> Cql {
        Cql {
            select_prediction: format!("SELECT record FROM {ks}.predictions WHERE study_uid = ? AND role = ?"),
            select_predictions: format!("SELECT record FROM {ks}.predictions WHERE study_uid = ?"),
            upsert_prediction: format!(
                "INSERT INTO {ks}.predictions (study_uid, role, model_version, predicted_at, record) VALUES (?, ?, ?, ?, ?)"
            ),
            select_report: format!(
                "SELECT record, state, received_at, source_topic, source_partition, source_offset \
                 FROM {ks}.reports WHERE study_uid = ?"
            ),
            upsert_report: format!(
                "INSERT INTO {ks}.reports (study_uid, report_id, read_ended_at, state, received_at, source_topic, \
                 source_partition, source_offset, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            set_report_state: format!("UPDATE {ks}.reports SET state = ? WHERE study_uid = ?"),
            insert_pending: format!(
                "INSERT INTO {ks}.pending_reports (bucket, received_at, study_uid) VALUES (?, ?, ?)"
            ),
            delete_pending: format!(
                "DELETE FROM {ks}.pending_reports WHERE bucket = ? AND received_at = ? AND study_uid = ?"
            ),
            select_pending: format!(
                "SELECT study_uid FROM {ks}.pending_reports WHERE bucket = ? AND received_at < ?"
            ),
            select_labeled: format!(
                "SELECT fingerprint, source, labeled_at, model_version, record FROM {ks}.labeled_by_study \
                 WHERE study_uid = ? AND role = ?"
            ),
            upsert_labeled: format!(
                "INSERT INTO {ks}.labeled_by_study (study_uid, role, model_version, labeled_at, fingerprint, source, \
                 record) VALUES (?, ?, ?, ?, ?, ?, ?)"
            ),
            insert_labeled_day: format!(
                "INSERT INTO {ks}.labeled_by_version_day (model_version, day, labeled_at, study_uid, role, record) \
                 VALUES (?, ?, ?, ?, ?, ?)"
            ),
            delete_labeled_day: format!(
                "DELETE FROM {ks}.labeled_by_version_day WHERE model_version = ? AND day = ? AND labeled_at = ? \
                 AND study_uid = ? AND role = ?"
            ),
            insert_day: format!("INSERT INTO {ks}.labeled_days (model_version, day) VALUES (?, ?)"),
            select_days: format!("SELECT day FROM {ks}.labeled_days WHERE model_version = ? AND day >= ?"),
            select_labeled_day: format!(
                "SELECT record FROM {ks}.labeled_by_version_day WHERE model_version = ? AND day = ? AND labeled_at >= ?"
            ),
        }
    }
}
