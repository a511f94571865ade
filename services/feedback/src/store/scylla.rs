//! The distributed study store: ScyllaDB (or Cassandra) through the `scylla` driver.
//!
//! All CQL lives in [`super::cql`]. Statements are prepared once at connect and run at
//! `LOCAL_QUORUM`, so a read after a write of the same study sees it. Read-modify-write
//! sequences (`put_*`) are plain reads then writes, not lightweight transactions: the
//! processor serialises work per study inside a process, and Kafka's partitioning by study UID
//! keeps a study on one consumer. The catch: during a consumer-group rebalance two replicas can
//! briefly handle the same study; the worst outcome is one duplicate labeled example, which
//! downstream consumers tolerate (they are idempotent by study key).

use async_trait::async_trait;
use cxrflow_contracts::{EpochMillis, LabeledExample, ModelRole, Prediction, RadiologistReport};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;

use std::path::PathBuf;
use std::sync::Arc;

use super::cql::{self, Cql};
use super::{
    decide_labeled, decide_prediction, decide_report, epoch_day, fingerprint, role_str,
    LabeledOutcome, PredictionOutcome, ReportOutcome, ReportState, SourceRef, StoreError,
    StoredReport, StudyStore,
};

struct Prepared {
    select_prediction: PreparedStatement,
    select_predictions: PreparedStatement,
    upsert_prediction: PreparedStatement,
    select_report: PreparedStatement,
    upsert_report: PreparedStatement,
    set_report_state: PreparedStatement,
    insert_pending: PreparedStatement,
    delete_pending: PreparedStatement,
    select_pending: PreparedStatement,
    select_labeled: PreparedStatement,
    upsert_labeled: PreparedStatement,
    insert_labeled_day: PreparedStatement,
    delete_labeled_day: PreparedStatement,
    insert_day: PreparedStatement,
    select_days: PreparedStatement,
    select_labeled_day: PreparedStatement,
}

/// How to reach a ScyllaDB cluster that asks for credentials and TLS (`scylla://` stores).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ScyllaArgs {
    /// Username for ScyllaDB's password authenticator; needs `CXRFLOW_SCYLLA_PASSWORD`.
    #[arg(
        long = "scylla-user",
        env = "CXRFLOW_SCYLLA_USER",
        requires = "scylla_password"
    )]
    pub scylla_user: Option<String>,
    /// Its password, from the environment (e.g. a Kubernetes Secret), never shown.
    #[arg(
        long = "scylla-password",
        env = "CXRFLOW_SCYLLA_PASSWORD",
        hide_env_values = true,
        requires = "scylla_user"
    )]
    pub scylla_password: Option<String>,
    /// Connect over TLS, trusting the CA certificates in this PEM file (client-to-node
    /// encryption).
    #[arg(long = "scylla-tls-ca", env = "CXRFLOW_SCYLLA_TLS_CA")]
    pub scylla_tls_ca: Option<PathBuf>,
    /// With TLS: present this client certificate (PEM) when the cluster requires one; needs
    /// `--scylla-tls-key`.
    #[arg(
        long = "scylla-tls-cert",
        env = "CXRFLOW_SCYLLA_TLS_CERT",
        requires_all = ["scylla_tls_key", "scylla_tls_ca"]
    )]
    pub scylla_tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(
        long = "scylla-tls-key",
        env = "CXRFLOW_SCYLLA_TLS_KEY",
        requires = "scylla_tls_cert"
    )]
    pub scylla_tls_key: Option<PathBuf>,
}

impl ScyllaArgs {
    /// The TLS client configuration, or `None` for plain CQL.
    pub fn tls(&self) -> Result<Option<rustls::ClientConfig>, StoreError> {
        cxrflow_common::tls::client_config_from(
            "scylla-tls",
            self.scylla_tls_ca.as_deref(),
            self.scylla_tls_cert.as_deref(),
            self.scylla_tls_key.as_deref(),
        )
        .map_err(|e| StoreError::Config(format!("ScyllaDB TLS: {e}")))
    }

    /// A session builder for `nodes` with these credentials and TLS.
    pub fn builder(&self, nodes: &[String]) -> Result<SessionBuilder, StoreError> {
        let mut b = SessionBuilder::new().known_nodes(nodes);
        match (&self.scylla_user, &self.scylla_password) {
            (Some(u), Some(p)) => b = b.user(u.as_str(), p.as_str()),
            (None, None) => {}
            _ => {
                return Err(StoreError::Config(
                    "a ScyllaDB user needs CXRFLOW_SCYLLA_PASSWORD and the other way round".into(),
                ))
            }
        }
        if let Some(tls) = self.tls()? {
            b = b.tls_context(Some(Arc::new(tls)));
        }
        Ok(b)
    }

    /// For the start-up log line: no secret.
    pub fn describe(&self) -> String {
        format!(
            "user={} password={} tls={}",
            self.scylla_user.as_deref().unwrap_or("(none)"),
            if self.scylla_password.is_some() {
                "****"
            } else {
                "(none)"
            },
            match (&self.scylla_tls_ca, &self.scylla_tls_cert) {
                (None, _) => "off".to_string(),
                (Some(ca), None) => format!("ca={}", ca.display()),
                (Some(ca), Some(c)) => format!("ca={} client_cert={}", ca.display(), c.display()),
            }
        )
    }
}

/// The ScyllaDB [`StudyStore`].
pub struct ScyllaStore {
    session: Session,
    keyspace: String,
    ps: Prepared,
}

type ReportRow = (String, String, i64, String, i32, i64);
type LabeledRow = (String, String, i64, String, String);

impl ScyllaStore {
    /// Connects to `nodes`, creates the keyspace and tables (the migration step), and prepares
    /// every statement.
    pub async fn connect(
        nodes: &[String],
        keyspace: &str,
        replication_factor: u32,
        access: &ScyllaArgs,
    ) -> Result<ScyllaStore, StoreError> {
        let fail = |detail: String| StoreError::Scylla {
            keyspace: keyspace.to_string(),
            detail,
        };
        let session = access
            .builder(nodes)?
            .build()
            .await
            .map_err(|e| fail(format!("connect to {nodes:?}: {e}")))?;
        session
            .query_unpaged(cql::create_keyspace(keyspace, replication_factor), ())
            .await
            .map_err(|e| fail(format!("create keyspace: {e}")))?;
        for stmt in cql::migration_v1(keyspace) {
            session
                .query_unpaged(stmt.as_str(), ())
                .await
                .map_err(|e| fail(format!("migration: {e}: {stmt}")))?;
        }
        session
            .await_schema_agreement()
            .await
            .map_err(|e| fail(format!("schema agreement: {e}")))?;
        session
            .query_unpaged(
                cql::record_migration(keyspace),
                (cql::SCHEMA_VERSION, cxrflow_common::time::now_millis()),
            )
            .await
            .map_err(|e| fail(format!("record migration: {e}")))?;
        let c = Cql::new(keyspace);
        let prep = |text: String| {
            let session = &session;
            let fail = &fail;
            async move {
                let mut p = session
                    .prepare(text.as_str())
                    .await
                    .map_err(|e| fail(format!("prepare {text}: {e}")))?;
                p.set_consistency(Consistency::LocalQuorum);
                Ok::<_, StoreError>(p)
            }
        };
        let ps = Prepared {
            select_prediction: prep(c.select_prediction).await?,
            select_predictions: prep(c.select_predictions).await?,
            upsert_prediction: prep(c.upsert_prediction).await?,
            select_report: prep(c.select_report).await?,
            upsert_report: prep(c.upsert_report).await?,
            set_report_state: prep(c.set_report_state).await?,
            insert_pending: prep(c.insert_pending).await?,
            delete_pending: prep(c.delete_pending).await?,
            select_pending: prep(c.select_pending).await?,
            select_labeled: prep(c.select_labeled).await?,
            upsert_labeled: prep(c.upsert_labeled).await?,
            insert_labeled_day: prep(c.insert_labeled_day).await?,
            delete_labeled_day: prep(c.delete_labeled_day).await?,
            insert_day: prep(c.insert_day).await?,
            select_days: prep(c.select_days).await?,
            select_labeled_day: prep(c.select_labeled_day).await?,
        };
        Ok(ScyllaStore {
            session,
            keyspace: keyspace.to_string(),
            ps,
        })
    }

    fn fail(&self, what: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Scylla {
            keyspace: self.keyspace.clone(),
            detail: format!("{what}: {e}"),
        }
    }

    async fn exec(
        &self,
        what: &str,
        ps: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(ps, values)
            .await
            .map(|_| ())
            .map_err(|e| self.fail(what, e))
    }

    /// Runs a query and deserialises every row as `R` (owned types only).
    async fn rows<R>(
        &self,
        what: &str,
        ps: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<Vec<R>, StoreError>
    where
        R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
    {
        let res = self
            .session
            .execute_unpaged(ps, values)
            .await
            .map_err(|e| self.fail(what, e))?
            .into_rows_result()
            .map_err(|e| self.fail(what, e))?;
        let rows = res
            .rows::<R>()
            .map_err(|e| self.fail(what, e))?
            .collect::<Result<Vec<R>, _>>()
            .map_err(|e| self.fail(what, e))?;
        Ok(rows)
    }

    fn json<T: serde::de::DeserializeOwned>(
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

    async fn report_row(&self, study: &str) -> Result<Option<ReportRow>, StoreError> {
        Ok(self
            .rows::<ReportRow>("select report", &self.ps.select_report, (study,))
            .await?
            .into_iter()
            .next())
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("records serialise to JSON")
}

fn stored_report(study: &str, row: ReportRow) -> Result<StoredReport, StoreError> {
    let (record, state, received_at, topic, partition, offset) = row;
    Ok(StoredReport {
        report: ScyllaStore::json("report", study, &record)?,
        state: ReportState::parse(&state),
        received_at,
        source: SourceRef {
            topic,
            partition,
            offset,
        },
    })
}

#[async_trait]
impl StudyStore for ScyllaStore {
    async fn put_prediction(&self, p: &Prediction) -> Result<PredictionOutcome, StoreError> {
        let uid = p.study.study_instance_uid.as_str();
        let role = role_str(p.model_role);
        let stored = self
            .rows::<(String,)>("select prediction", &self.ps.select_prediction, (uid, role))
            .await?
            .into_iter()
            .next()
            .map(|(s,)| Self::json::<Prediction>("prediction", uid, &s))
            .transpose()?;
        let outcome = decide_prediction(stored.as_ref(), p);
        if outcome == PredictionOutcome::Stored {
            self.exec(
                "upsert prediction",
                &self.ps.upsert_prediction,
                (
                    uid,
                    role,
                    p.model_version.as_str(),
                    p.predicted_at,
                    to_json(p),
                ),
            )
            .await?;
        }
        Ok(outcome)
    }

    async fn predictions(&self, study: &str) -> Result<Vec<Prediction>, StoreError> {
        self.rows::<(String,)>("select predictions", &self.ps.select_predictions, (study,))
            .await?
            .iter()
            .map(|(s,)| Self::json("prediction", study, s))
            .collect()
    }

    async fn put_report(
        &self,
        r: &RadiologistReport,
        source: &SourceRef,
        received_at: EpochMillis,
    ) -> Result<ReportOutcome, StoreError> {
        let uid = r.study_instance_uid.as_str();
        let old = self
            .report_row(uid)
            .await?
            .map(|row| stored_report(uid, row))
            .transpose()?;
        let outcome = decide_report(old.as_ref().map(|o| &o.report), r);
        if matches!(outcome, ReportOutcome::Inserted | ReportOutcome::Superseded) {
            if let Some(o) = old.as_ref().filter(|o| o.state == ReportState::Pending) {
                self.exec(
                    "delete pending",
                    &self.ps.delete_pending,
                    (cql::PENDING_BUCKET, o.received_at, uid),
                )
                .await?;
            }
            // Index first: a crash between the two leaves an index row whose report is not
            // pending, which the sweep skips; the other order could lose a pending report.
            self.exec(
                "insert pending",
                &self.ps.insert_pending,
                (cql::PENDING_BUCKET, received_at, uid),
            )
            .await?;
            self.exec(
                "upsert report",
                &self.ps.upsert_report,
                (
                    uid,
                    r.report_id.as_str(),
                    r.read_ended_at,
                    ReportState::Pending.as_str(),
                    received_at,
                    source.topic.as_str(),
                    source.partition,
                    source.offset,
                    to_json(r),
                ),
            )
            .await?;
        }
        Ok(outcome)
    }

    async fn report(&self, study: &str) -> Result<Option<StoredReport>, StoreError> {
        self.report_row(study)
            .await?
            .map(|row| stored_report(study, row))
            .transpose()
    }

    async fn pending_reports(
        &self,
        received_before: EpochMillis,
    ) -> Result<Vec<StoredReport>, StoreError> {
        let uids = self
            .rows::<(String,)>(
                "select pending",
                &self.ps.select_pending,
                (cql::PENDING_BUCKET, received_before),
            )
            .await?;
        let mut out = Vec::new();
        for (uid,) in uids {
            if let Some(r) = self.report(&uid).await? {
                if r.state == ReportState::Pending && r.received_at < received_before {
                    out.push(r);
                }
            }
        }
        out.sort_by_key(|r| r.received_at);
        Ok(out)
    }

    async fn set_report_state(
        &self,
        study: &str,
        report_id: &str,
        state: ReportState,
    ) -> Result<bool, StoreError> {
        let Some(current) = self.report(study).await? else {
            return Ok(false);
        };
        if current.report.report_id != report_id {
            return Ok(false);
        }
        self.exec(
            "set report state",
            &self.ps.set_report_state,
            (state.as_str(), study),
        )
        .await?;
        if current.state == ReportState::Pending && state != ReportState::Pending {
            self.exec(
                "delete pending",
                &self.ps.delete_pending,
                (cql::PENDING_BUCKET, current.received_at, study),
            )
            .await?;
        }
        Ok(true)
    }

    async fn put_labeled(
        &self,
        ex: &LabeledExample,
        source: &SourceRef,
    ) -> Result<LabeledOutcome, StoreError> {
        let uid = ex.study.study_instance_uid.as_str();
        let role = role_str(ex.model_role);
        let stored = self
            .rows::<LabeledRow>("select labeled", &self.ps.select_labeled, (uid, role))
            .await?
            .into_iter()
            .next();
        let fp = fingerprint(ex);
        let outcome = decide_labeled(
            stored.as_ref().map(|s| (s.0.as_str(), s.1.as_str())),
            &fp,
            source,
        );
        if matches!(outcome, LabeledOutcome::Inserted | LabeledOutcome::Updated) {
            let record = to_json(ex);
            let day = epoch_day(ex.labeled_at);
            self.exec(
                "insert labeled day",
                &self.ps.insert_labeled_day,
                (
                    ex.model_version.as_str(),
                    day,
                    ex.labeled_at,
                    uid,
                    role,
                    record.as_str(),
                ),
            )
            .await?;
            self.exec(
                "insert day",
                &self.ps.insert_day,
                (ex.model_version.as_str(), day),
            )
            .await?;
            self.exec(
                "upsert labeled",
                &self.ps.upsert_labeled,
                (
                    uid,
                    role,
                    ex.model_version.as_str(),
                    ex.labeled_at,
                    fp.as_str(),
                    source.to_string(),
                    record.as_str(),
                ),
            )
            .await?;
            if let Some((_, _, old_at, old_version, _)) = &stored {
                if (old_version.as_str(), *old_at) != (ex.model_version.as_str(), ex.labeled_at) {
                    self.exec(
                        "delete old labeled day",
                        &self.ps.delete_labeled_day,
                        (old_version.as_str(), epoch_day(*old_at), *old_at, uid, role),
                    )
                    .await?;
                }
            }
        }
        self.set_report_state(uid, &ex.report_id, ReportState::Joined)
            .await?;
        Ok(outcome)
    }

    async fn labeled(
        &self,
        study: &str,
        role: ModelRole,
    ) -> Result<Option<LabeledExample>, StoreError> {
        self.rows::<LabeledRow>(
            "select labeled",
            &self.ps.select_labeled,
            (study, role_str(role)),
        )
        .await?
        .into_iter()
        .next()
        .map(|row| Self::json("labeled example", study, &row.4))
        .transpose()
    }

    async fn labeled_since(
        &self,
        model_version: &str,
        since: EpochMillis,
    ) -> Result<Vec<LabeledExample>, StoreError> {
        let days = self
            .rows::<(i32,)>(
                "select days",
                &self.ps.select_days,
                (model_version, epoch_day(since)),
            )
            .await?;
        let mut out: Vec<LabeledExample> = Vec::new();
        for (day,) in days {
            for (record,) in self
                .rows::<(String,)>(
                    "select labeled day",
                    &self.ps.select_labeled_day,
                    (model_version, day, since),
                )
                .await?
            {
                out.push(Self::json("labeled example", model_version, &record)?);
            }
        }
        out.sort_by(|a, b| {
            (a.labeled_at, &a.study.study_instance_uid)
                .cmp(&(b.labeled_at, &b.study.study_instance_uid))
        });
        Ok(out)
    }
}
