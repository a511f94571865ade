//! Topic creation: every cxrflow topic with its partitions, compaction for the worklist and
//! model-control topics.

use std::time::Duration;

use cxrflow_contracts::topics;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use crate::config::KafkaArgs;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin client: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("creating topic {topic}: {code}")]
    Create {
        topic: String,
        code: RDKafkaErrorCode,
    },
}

/// Creates the given logical topics (with the stack's prefix) if they do not exist.
pub async fn ensure_topics(
    kafka: &KafkaArgs,
    logical: &[&str],
    partitions: i32,
    replication: i32,
) -> Result<(), AdminError> {
    let admin: AdminClient<DefaultClientContext> = kafka.client_config().create()?;
    let names: Vec<String> = logical.iter().map(|t| kafka.topic(t)).collect();
    let max_message = kafka.message_limit_bytes().to_string();
    let new: Vec<NewTopic<'_>> = names
        .iter()
        .zip(logical)
        .map(|(name, logical)| {
            let t = NewTopic::new(name, partitions, TopicReplication::Fixed(replication))
                .set("max.message.bytes", &max_message);
            if topics::COMPACTED.contains(logical) {
                t.set("cleanup.policy", "compact")
            } else {
                t
            }
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in admin.create_topics(new.iter(), &opts).await? {
        match r {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(AdminError::Create { topic, code }),
        }
    }
    Ok(())
}

/// Every cxrflow topic.
pub fn all_topics() -> Vec<&'static str> {
    topics::SCHEMAS.iter().map(|(t, _)| *t).collect()
}
