//! Kafka plumbing on rdkafka: the idempotent producer, topic administration, the ordered
//! offset finalizer and the at-least-once stage runtime.

pub mod admin;
pub mod finalizer;
pub mod producer;
pub mod snapshot;
pub mod stage;

pub use producer::{ProduceError, Producer};
