//! What every cxrflow service needs and nothing service-specific: configuration, the Kafka
//! client and the at-least-once stage runtime, dead letters, telemetry (logs, metrics, traces),
//! the HTTP endpoints (`/metrics`, `/healthz`, `/readyz`) and their access control, the blob
//! store and shutdown.

pub mod audit;
pub mod auth;
pub mod blob;
pub mod broker;
pub mod config;
pub mod dlq;
pub mod health;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod registry;
pub mod service;
pub mod shutdown;
pub mod stats;
pub mod telemetry;
pub mod time;
pub mod tls;

pub use blob::BlobStoreArgs;
pub use config::{KafkaArgs, ServiceArgs, Urgency};
pub use kafka::stage::{
    run_stage, Inbound, Outbound, Processor, StageConfig, StageDeps, StageError,
};
pub use service::Host;
