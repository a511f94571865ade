//! `cxrflow retrain-trigger`: the reference consumer of `cxr.drift.v1`, so a team can wire
//! retraining without writing Kafka code. On a RAISED or UPDATED alert recommending RETRAIN it
//! runs a configured shell command (the alert's fields in `CXRFLOW_ALERT_*` environment
//! variables, the whole alert as JSON in `CXRFLOW_ALERT_JSON`) and/or POSTs the alert JSON to a
//! webhook, at most once per model version per debounce interval.
//!
//! With `--trigger-export-store`, each trigger first exports the labeled examples of the alert's
//! model version (labeled since the detection window opened, or all of them) as the feedback
//! service's CheXpert-style CSV, by running `cxrflow feedback export` (the same binary by
//! default): the drift crate does not read the feedback store itself, services meet only on
//! topics and on documented commands. The command gets the file in `CXRFLOW_EXPORT_CSV` (and
//! `CXRFLOW_EXPORT_ROWS`); the webhook gets a `multipart/form-data` body with the `alert` (JSON)
//! and the `export` (text/csv) instead of the bare alert JSON.
//!
//! Delivery guarantee: **at-least-once** consumption, **at-most-once per alert** action: every
//! alert id acted on (or debounced) is recorded in SQLite before the offset is stored, so a
//! redelivered alert — after a crash or restart — never triggers twice. The catch: a crash
//! after the command ran but before the record was written runs it again; commands should be
//! idempotent by `CXRFLOW_ALERT_ID`. A failing command or webhook is retried (transient), never
//! skipped.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use cxrflow_common::{KafkaArgs, Outbound, Processor, ServiceArgs, StageError};
use cxrflow_contracts::{topics, AlertState, Codec, DriftAlert, RecommendedAction};
use tokio_util::sync::CancellationToken;

use crate::error::RetrainTriggerError;
use crate::retrain_export::export;
pub use crate::retrain_export::{Export, ExportSince};
use crate::store::DriftStore;

/// `cxrflow retrain-trigger` settings.
#[derive(Debug, Clone, Args)]
pub struct TriggerConfig {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub service: ServiceArgs,
    /// SQLite record of the alerts acted on.
    #[arg(
        long = "trigger-db",
        env = "CXRFLOW_TRIGGER_DB",
        default_value = ".cxrflow/retrain-trigger.db"
    )]
    pub trigger_db: PathBuf,
    /// Shell command run (`sh -c`) on a RETRAIN alert.
    #[arg(long = "trigger-command", env = "CXRFLOW_TRIGGER_COMMAND")]
    pub command: Option<String>,
    /// URL the alert JSON is POSTed to on a RETRAIN alert.
    #[arg(long = "trigger-webhook", env = "CXRFLOW_TRIGGER_WEBHOOK")]
    pub webhook: Option<String>,
    /// Least time between two triggers for one model version (alert time), ms.
    #[arg(long = "trigger-debounce-ms", env = "CXRFLOW_TRIGGER_DEBOUNCE_MS", default_value_t = 6 * 3_600_000)]
    pub debounce_ms: i64,
    /// Feedback store to export the labeled examples from (e.g. `sqlite://.cxrflow/feedback.db`);
    /// unset: no export.
    #[arg(long = "trigger-export-store", env = "CXRFLOW_TRIGGER_EXPORT_STORE")]
    pub export_store: Option<String>,
    /// Directory of the exports (`<alert id>.csv`).
    #[arg(
        long = "trigger-export-dir",
        env = "CXRFLOW_TRIGGER_EXPORT_DIR",
        default_value = ".cxrflow/retrain-exports"
    )]
    pub export_dir: PathBuf,
    /// Which labeled examples: those labeled since the alert's detection window opened
    /// (`window`), or every one of the model version (`all`).
    #[arg(
        long = "trigger-export-since",
        env = "CXRFLOW_TRIGGER_EXPORT_SINCE",
        default_value = "window"
    )]
    pub export_since: ExportSince,
    /// The `cxrflow` binary that runs `feedback export`; default: this binary.
    #[arg(long = "trigger-export-bin", env = "CXRFLOW_TRIGGER_EXPORT_BIN")]
    pub export_bin: Option<PathBuf>,
    /// Time limit of the command or webhook call, ms.
    #[arg(
        long = "trigger-timeout-ms",
        env = "CXRFLOW_TRIGGER_TIMEOUT_MS",
        default_value_t = 600_000
    )]
    pub timeout_ms: u64,
}

impl TriggerConfig {
    pub fn defaults(kafka: KafkaArgs, service: ServiceArgs) -> Self {
        TriggerConfig {
            kafka,
            service,
            trigger_db: PathBuf::from(".cxrflow/retrain-trigger.db"),
            command: None,
            webhook: None,
            debounce_ms: 6 * 3_600_000,
            timeout_ms: 600_000,
            export_store: None,
            export_dir: PathBuf::from(".cxrflow/retrain-exports"),
            export_since: ExportSince::Window,
            export_bin: None,
        }
    }
}

/// The environment a trigger command gets.
pub fn alert_env(a: &DriftAlert) -> Vec<(String, String)> {
    let mut v = vec![
        ("CXRFLOW_ALERT_ID", a.alert_id.clone()),
        (
            "CXRFLOW_ALERT_STATE",
            format!("{:?}", a.state).to_uppercase(),
        ),
        ("CXRFLOW_ALERT_CHANNEL", a.channel.clone()),
        ("CXRFLOW_ALERT_SIGNAL", a.signal.clone()),
        ("CXRFLOW_ALERT_STATISTIC", a.statistic.clone()),
        ("CXRFLOW_ALERT_VALUE", a.value.to_string()),
        (
            "CXRFLOW_ALERT_P_VALUE",
            a.p_value.map(|p| p.to_string()).unwrap_or_default(),
        ),
        ("CXRFLOW_ALERT_THRESHOLD", a.threshold.to_string()),
        (
            "CXRFLOW_ALERT_SEVERITY",
            format!("{:?}", a.severity).to_uppercase(),
        ),
        (
            "CXRFLOW_ALERT_ACTION",
            format!("{:?}", a.action).to_uppercase(),
        ),
        ("CXRFLOW_ALERT_MODEL_NAME", a.model_name.clone()),
        ("CXRFLOW_ALERT_MODEL_VERSION", a.model_version.clone()),
        (
            "CXRFLOW_ALERT_SITE_ID",
            a.site_id.clone().unwrap_or_default(),
        ),
        (
            "CXRFLOW_ALERT_REFERENCE_START",
            a.reference_window.start.to_string(),
        ),
        (
            "CXRFLOW_ALERT_REFERENCE_END",
            a.reference_window.end.to_string(),
        ),
        (
            "CXRFLOW_ALERT_REFERENCE_COUNT",
            a.reference_window.count.to_string(),
        ),
        (
            "CXRFLOW_ALERT_WINDOW_START",
            a.detection_window.start.to_string(),
        ),
        (
            "CXRFLOW_ALERT_WINDOW_END",
            a.detection_window.end.to_string(),
        ),
        (
            "CXRFLOW_ALERT_WINDOW_COUNT",
            a.detection_window.count.to_string(),
        ),
        ("CXRFLOW_ALERT_RAISED_AT", a.raised_at.to_string()),
    ];
    v.push((
        "CXRFLOW_ALERT_JSON",
        serde_json::to_string(a).unwrap_or_default(),
    ));
    v.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// What to do with an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Ignore,
    AlreadyTriggered,
    Debounced,
    Trigger,
}

/// Pure decision: act only on RAISED/UPDATED RETRAIN alerts not acted on before and not within
/// the debounce interval of the last trigger for that model version.
pub fn decide(
    a: &DriftAlert,
    already: bool,
    last_trigger: Option<i64>,
    debounce_ms: i64,
) -> Decision {
    if a.action != RecommendedAction::Retrain || a.state == AlertState::Resolved {
        return Decision::Ignore;
    }
    if already {
        return Decision::AlreadyTriggered;
    }
    if last_trigger.is_some_and(|t| a.raised_at - t < debounce_ms) {
        return Decision::Debounced;
    }
    Decision::Trigger
}

struct TriggerProcessor {
    codec: Arc<Codec>,
    store: Arc<Mutex<DriftStore>>,
    cfg: TriggerConfig,
    http: reqwest::Client,
}

impl TriggerProcessor {
    async fn act(&self, a: &DriftAlert) -> Result<(), RetrainTriggerError> {
        let limit = Duration::from_millis(self.cfg.timeout_ms);
        let export = match &self.cfg.export_store {
            Some(store) => Some(export(&self.cfg, a, store).await?),
            None => None,
        };
        if let Some(cmd) = &self.cfg.command {
            let mut c = tokio::process::Command::new("sh");
            c.arg("-c").arg(cmd).envs(alert_env(a)).kill_on_drop(true);
            if let Some(e) = &export {
                c.env("CXRFLOW_EXPORT_CSV", &e.path)
                    .env("CXRFLOW_EXPORT_ROWS", e.rows.to_string());
            }
            let status = tokio::time::timeout(limit, c.status())
                .await
                .map_err(|_| RetrainTriggerError::CommandTimeout(limit))?
                .map_err(RetrainTriggerError::Command)?;
            if !status.success() {
                return Err(RetrainTriggerError::CommandFailed(status));
            }
        }
        if let Some(url) = &self.cfg.webhook {
            let req = self.http.post(url).timeout(limit);
            let req = match &export {
                None => req.json(a),
                Some(e) => {
                    let csv =
                        std::fs::read(&e.path).map_err(|source| RetrainTriggerError::ExportIo {
                            path: e.path.clone(),
                            source,
                        })?;
                    let json = serde_json::to_vec(a).map_err(RetrainTriggerError::AlertJson)?;
                    let part = |bytes: Vec<u8>, name: String, mime: &str| {
                        reqwest::multipart::Part::bytes(bytes)
                            .file_name(name)
                            .mime_str(mime)
                            .map_err(RetrainTriggerError::Webhook)
                    };
                    let form = reqwest::multipart::Form::new()
                        .part(
                            "alert",
                            part(json, format!("{}.json", a.alert_id), "application/json")?,
                        )
                        .part(
                            "export",
                            part(csv, format!("{}.csv", a.alert_id), "text/csv")?,
                        );
                    req.multipart(form)
                }
            };
            let resp = req.send().await.map_err(RetrainTriggerError::Webhook)?;
            if !resp.status().is_success() {
                return Err(RetrainTriggerError::WebhookStatus(resp.status()));
            }
        }
        Ok(())
    }
}

impl Processor for TriggerProcessor {
    async fn process(&self, msg: &cxrflow_common::Inbound) -> Result<Vec<Outbound>, StageError> {
        let a: DriftAlert = msg.decode(&self.codec)?;
        let decision = {
            let s = self
                .store
                .lock()
                .map_err(|_| RetrainTriggerError::StoreLock)?;
            let already = s
                .was_triggered(&a.alert_id)
                .map_err(RetrainTriggerError::Store)?;
            let last = s
                .last_trigger(&a.model_name, &a.model_version)
                .map_err(RetrainTriggerError::Store)?;
            decide(&a, already, last, self.cfg.debounce_ms)
        };
        let outcome = match decision {
            Decision::Ignore | Decision::AlreadyTriggered => return Ok(vec![]),
            Decision::Debounced => "debounced",
            Decision::Trigger => {
                self.act(&a).await?;
                "triggered"
            }
        };
        tracing::info!(alert_id = %a.alert_id, model = %a.model_name, version = %a.model_version, outcome, "retrain trigger");
        let s = self
            .store
            .lock()
            .map_err(|_| RetrainTriggerError::StoreLock)?;
        s.record_trigger(
            &a.alert_id,
            &a.model_name,
            &a.model_version,
            a.raised_at,
            outcome,
        )
        .map_err(RetrainTriggerError::Store)?;
        Ok(vec![])
    }
}

/// Runs the retrain trigger until `shutdown` is cancelled.
pub async fn run_retrain_trigger(
    cfg: TriggerConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if cfg.command.is_none() && cfg.webhook.is_none() {
        tracing::warn!("retrain-trigger has neither --trigger-command nor --trigger-webhook: alerts are only recorded");
    }
    let store = DriftStore::open(&cfg.trigger_db)?;
    let host = cxrflow_common::Host::start(
        "retrain_trigger",
        &cfg.kafka,
        &cfg.service,
        |_| {},
        cxrflow_common::auth::Routes::new(),
    )
    .await?;
    let processor = Arc::new(TriggerProcessor {
        codec: host.codec().clone(),
        store: Arc::new(Mutex::new(store)),
        http: reqwest::Client::new(),
        cfg: cfg.clone(),
    });
    let mut stage = host.background_stage(vec![topics::DRIFT]);
    // Actions are serialised so debouncing sees the previous trigger.
    stage.max_in_flight = 1;
    host.serve(stage, processor, &shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use cxrflow_contracts::{DriftWindow, Severity};

    fn alert(action: RecommendedAction, state: AlertState, at: i64) -> DriftAlert {
        let w = DriftWindow {
            start: 0,
            end: 1,
            count: 1,
        };
        DriftAlert {
            alert_id: "a1".into(),
            state,
            channel: "PERFORMANCE".into(),
            signal: "auroc.Edema".into(),
            statistic: "AUROC_DELTA".into(),
            value: -0.1,
            p_value: Some(0.001),
            threshold: 0.8,
            reference_window: w.clone(),
            detection_window: w,
            site_id: None,
            model_name: "m".into(),
            model_version: "1".into(),
            severity: Severity::Critical,
            action,
            details: Default::default(),
            raised_at: at,
        }
    }

    #[test]
    fn decisions() {
        use AlertState::*;
        use RecommendedAction::*;
        assert_eq!(
            decide(&alert(Investigate, Raised, 0), false, None, 10),
            Decision::Ignore
        );
        assert_eq!(
            decide(&alert(Retrain, Resolved, 0), false, None, 10),
            Decision::Ignore
        );
        assert_eq!(
            decide(&alert(Retrain, Raised, 0), true, None, 10),
            Decision::AlreadyTriggered
        );
        assert_eq!(
            decide(&alert(Retrain, Updated, 5), false, Some(0), 10),
            Decision::Debounced
        );
        assert_eq!(
            decide(&alert(Retrain, Raised, 50), false, Some(0), 10),
            Decision::Trigger
        );
        let env = alert_env(&alert(Retrain, Raised, 0));
        assert!(env
            .iter()
            .any(|(k, v)| k == "CXRFLOW_ALERT_ACTION" && v == "RETRAIN"));
    }
}
