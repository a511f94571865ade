//! Kafka plumbing on rdkafka: the idempotent producer, topic administration, the ordered
//! offset finalizer, the at-least-once stage runtime and its ownership watchdog.

pub mod admin;
pub mod finalizer;
pub mod ownership;
pub mod producer;
pub mod snapshot;
pub mod stage;

pub use producer::{ProduceError, Producer};
