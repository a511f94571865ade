//! Feedback's configuration: the shared Kafka and service settings plus the study store, the
//! unknown-study bound and the online metrics' window, each with a `CXRFLOW_…` environment
//! variable and a default that suits the embedded stack.

use std::time::Duration;

use cxrflow_common::{KafkaArgs, ServiceArgs};

use crate::performance::UncertaintyPolicy;
use crate::store::{ScyllaArgs, StoreUri};

/// The embedded stack's study store.
pub const DEFAULT_STORE: &str = "sqlite:.cxrflow/feedback.db";

/// `cxrflow feedback` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub service: ServiceArgs,

    /// The study store: `sqlite:PATH` (embedded) or `scylla://host:port[,host:port]/keyspace[?rf=N]`.
    #[arg(long = "store", env = "CXRFLOW_FEEDBACK_STORE", default_value = DEFAULT_STORE)]
    pub store: StoreUri,

    #[command(flatten)]
    pub scylla: ScyllaArgs,

    /// How long a report waits for its study's prediction before it is dead-lettered
    /// (`feedback.unknown_study`), in milliseconds.
    #[arg(
        long = "pending-timeout-ms",
        env = "CXRFLOW_FEEDBACK_PENDING_TIMEOUT_MS",
        default_value_t = 600_000
    )]
    pub pending_timeout_ms: u64,

    /// Labeled examples per rolling performance window (per model version and site).
    #[arg(
        long = "window",
        env = "CXRFLOW_FEEDBACK_WINDOW",
        default_value_t = 500
    )]
    pub window: usize,

    /// How UNCERTAIN labels count in the metrics: u-ones (present), u-zeros (absent), ignore.
    #[arg(long = "uncertainty", env = "CXRFLOW_FEEDBACK_UNCERTAINTY", value_enum, default_value_t = UncertaintyPolicy::UOnes)]
    pub uncertainty: UncertaintyPolicy,
}

impl Config {
    /// All service-specific settings at their defaults.
    pub fn defaults(kafka: KafkaArgs, service: ServiceArgs) -> Self {
        Config {
            kafka,
            service,
            store: DEFAULT_STORE.parse().expect("default store URI parses"),
            scylla: ScyllaArgs::default(),
            pending_timeout_ms: 600_000,
            window: 500,
            uncertainty: UncertaintyPolicy::UOnes,
        }
    }

    pub fn pending_timeout(&self) -> Duration {
        Duration::from_millis(self.pending_timeout_ms)
    }
}
