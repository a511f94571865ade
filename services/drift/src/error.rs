//! Why a drift input or an alert could not be handled. [`DriftError`] is the drift service's: a
//! record from a topic it does not read is *poison* (dead-lettered with a stable reason); a
//! failing drift store or engine is *transient* (retried with backoff, never committed).
//! [`RetrainTriggerError`] is `cxrflow retrain-trigger`'s: every failure of its export, command,
//! webhook or store is transient, so an alert is never skipped.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use cxrflow_common::StageError;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    #[error("record from {0}")]
    UnexpectedTopic(String),
    /// Transient: the detector's lock was poisoned by a panic.
    #[error("engine lock poisoned")]
    EngineLock,
    /// Transient: the evaluation task was cancelled or panicked.
    #[error("{0}")]
    EngineTask(#[source] tokio::task::JoinError),
    /// Transient: the drift store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl DriftError {
    /// Every reason [`DriftError::reason`] returns.
    pub const REASONS: &'static [&'static str] =
        &["drift.unexpected_topic", "drift.engine", "drift.store"];

    /// The stable reason: the dead letter's `reason` and the metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            DriftError::UnexpectedTopic(_) => "drift.unexpected_topic",
            DriftError::EngineLock | DriftError::EngineTask(_) => "drift.engine",
            DriftError::Store(_) => "drift.store",
        }
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        !matches!(self, DriftError::UnexpectedTopic(_))
    }
}

impl From<DriftError> for StageError {
    fn from(e: DriftError) -> Self {
        StageError::classified(e.reason(), e.is_transient(), e)
    }
}

/// Every variant is transient: a trigger is retried until its export, command and webhook
/// succeed, and its alert recorded.
#[derive(Debug, thiserror::Error)]
pub enum RetrainTriggerError {
    /// The export directory, the exporting binary or the CSV it wrote could not be used.
    #[error("{}: {source}", path.display())]
    ExportIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// No `--trigger-export-bin` and the running binary's path is unknown.
    #[error("{0}")]
    ExportBinary(#[source] std::io::Error),
    #[error("export timed out after {0:?}")]
    ExportTimeout(Duration),
    /// `cxrflow feedback export` failed; `stderr` is the last lines it wrote.
    #[error("feedback export exited with {status}: {stderr}")]
    ExportFailed { status: ExitStatus, stderr: String },
    #[error("command timed out after {0:?}")]
    CommandTimeout(Duration),
    /// The command could not be started or waited for.
    #[error("{0}")]
    Command(#[source] std::io::Error),
    #[error("command exited with {0}")]
    CommandFailed(ExitStatus),
    /// The alert did not serialise as JSON for the webhook.
    #[error("{0}")]
    AlertJson(#[source] serde_json::Error),
    /// The webhook request could not be built or sent.
    #[error("{0}")]
    Webhook(#[source] reqwest::Error),
    #[error("webhook answered {0}")]
    WebhookStatus(reqwest::StatusCode),
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The trigger store's lock was poisoned by a panic.
    #[error("lock poisoned")]
    StoreLock,
}

impl RetrainTriggerError {
    /// Every reason [`RetrainTriggerError::reason`] returns.
    pub const REASONS: &'static [&'static str] = &[
        "trigger.export",
        "trigger.command",
        "trigger.webhook",
        "trigger.store",
    ];

    /// The stable reason: the metric label of the retried failure.
    pub fn reason(&self) -> &'static str {
        use RetrainTriggerError::*;
        match self {
            ExportIo { .. } | ExportBinary(_) | ExportTimeout(_) | ExportFailed { .. } => {
                "trigger.export"
            }
            CommandTimeout(_) | Command(_) | CommandFailed(_) => "trigger.command",
            AlertJson(_) | Webhook(_) | WebhookStatus(_) => "trigger.webhook",
            Store(_) | StoreLock => "trigger.store",
        }
    }

    /// Whether retrying later may succeed: always (see the type's documentation).
    pub fn is_transient(&self) -> bool {
        true
    }
}

impl From<RetrainTriggerError> for StageError {
    fn from(e: RetrainTriggerError) -> Self {
        StageError::classified(e.reason(), e.is_transient(), e)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use cxrflow_testkit::reasons::check;

    use super::*;

    fn io() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::NotFound, "gone")
    }

    fn store() -> StoreError {
        StoreError::Dir {
            path: "/x/drift.db".into(),
            source: io(),
        }
    }

    async fn cancelled() -> tokio::task::JoinError {
        let task = tokio::spawn(std::future::pending::<()>());
        task.abort();
        task.await.unwrap_err()
    }

    /// One of each variant. Adding a variant breaks the match below: add it here too.
    async fn drift_errors() -> Vec<DriftError> {
        let all = vec![
            DriftError::UnexpectedTopic("cxr.other.v1".into()),
            DriftError::EngineLock,
            DriftError::EngineTask(cancelled().await),
            DriftError::Store(store()),
        ];
        for e in &all {
            match e {
                DriftError::UnexpectedTopic(_)
                | DriftError::EngineLock
                | DriftError::EngineTask(_)
                | DriftError::Store(_) => {}
            }
        }
        all
    }

    /// One of each variant. Adding a variant breaks the match below: add it here too.
    fn trigger_errors() -> Vec<RetrainTriggerError> {
        use RetrainTriggerError::*;
        let reqwest = reqwest::Client::new().get("http://[").build().unwrap_err();
        let all = vec![
            ExportIo {
                path: "/x/a.csv".into(),
                source: io(),
            },
            ExportBinary(io()),
            ExportTimeout(Duration::from_secs(1)),
            ExportFailed {
                status: ExitStatus::from_raw(256),
                stderr: "no store".into(),
            },
            CommandTimeout(Duration::from_secs(1)),
            Command(io()),
            CommandFailed(ExitStatus::from_raw(256)),
            AlertJson(serde_json::from_str::<u8>("x").unwrap_err()),
            Webhook(reqwest),
            WebhookStatus(reqwest::StatusCode::BAD_GATEWAY),
            Store(store()),
            StoreLock,
        ];
        for e in &all {
            match e {
                ExportIo { .. }
                | ExportBinary(_)
                | ExportTimeout(_)
                | ExportFailed { .. }
                | CommandTimeout(_)
                | Command(_)
                | CommandFailed(_)
                | AlertJson(_)
                | Webhook(_)
                | WebhookStatus(_)
                | Store(_)
                | StoreLock => {}
            }
        }
        all
    }

    #[tokio::test]
    async fn every_reason_is_listed_and_classified() {
        let all = drift_errors().await;
        let dead_lettered: Vec<_> = all.iter().filter(|e| !e.is_transient()).collect();
        assert!(
            matches!(dead_lettered[..], [DriftError::UnexpectedTopic(_)]),
            "{dead_lettered:?}"
        );
        check(
            DriftError::REASONS,
            all,
            DriftError::reason,
            DriftError::is_transient,
        );
        check(
            RetrainTriggerError::REASONS,
            trigger_errors(),
            RetrainTriggerError::reason,
            RetrainTriggerError::is_transient,
        );
    }

    #[test]
    fn the_words_are_the_retried_errors() {
        let words: Vec<String> = trigger_errors().iter().map(|e| e.to_string()).collect();
        assert_eq!(words[0], "/x/a.csv: gone");
        assert_eq!(
            words[3],
            "feedback export exited with exit status: 1: no store"
        );
        assert_eq!(words[6], "command exited with exit status: 1");
        assert_eq!(words[9], "webhook answered 502 Bad Gateway");
        assert_eq!(words[11], "lock poisoned");
    }
}
