//! What the triage service's broker-backed tests share.

use cxrflow_common::kafka::Producer;
use cxrflow_common::KafkaArgs;
use cxrflow_contracts::Codec;
use cxrflow_testkit::Broker;

/// Keeps a test's broker and blob store directory for as long as it holds this.
pub struct Stack {
    _broker: Broker,
    _dir: tempfile::TempDir,
}

/// A broker with the stack's topics, a codec and a producer on it, and a blob store's URL.
pub async fn stack() -> (Stack, KafkaArgs, Codec, Producer, String) {
    let broker = Broker::start();
    let kafka = broker.stack().await;
    let codec = Codec::with_static_registry().unwrap();
    let producer = Producer::new(&kafka).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let blob_url = format!("file://{}", dir.path().join("blobs").display());
    let guard = Stack {
        _broker: broker,
        _dir: dir,
    };
    (guard, kafka, codec, producer, blob_url)
}
