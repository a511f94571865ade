//! Kafka plumbing on rdkafka: the idempotent producer, topic administration, the ordered
//! offset finalizer, the at-least-once stage runtime and its ownership watchdog, reading a
//! topic to its end and following a control topic.

pub mod admin;
pub mod finalizer;
pub mod follow;
pub mod ownership;
pub mod producer;
pub mod read;
pub mod stage;

pub use follow::follow;
pub use producer::{ProduceError, Producer};
pub use read::{read_to_end, reader_config, throwaway_group_id, ReadError, ReadSummary};
