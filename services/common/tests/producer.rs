//! The producer against a real broker: each send resolves to its own acknowledged position,
//! concurrent sends from clones of one producer all land, and the delivery-report thread ends
//! with the last handle.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use cxrflow_common::kafka::Producer;
use cxrflow_testkit::{eventually, Broker};

/// Threads of this process named like the producer's delivery-report thread.
fn ack_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "kafka-acks")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_resolve_to_their_own_positions_and_the_thread_ends_with_the_last_handle() {
    let broker = Broker::start();
    let kafka = broker.stack().await;
    let topic = kafka.topic("cxr.scan.v1");
    let before = ack_threads();
    let producer = Producer::new(&kafka).unwrap();
    // The thread names itself once it runs.
    eventually(
        Duration::from_secs(10),
        "the delivery-report thread",
        || async { ack_threads() == before + 1 },
    )
    .await;
    let headers = BTreeMap::new();
    let sends: Vec<_> = (0..50u32)
        .map(|i| {
            // Clones share one client; every send waits for its own acknowledgement.
            let (p, topic, headers) = (producer.clone(), topic.clone(), headers.clone());
            tokio::spawn(async move {
                let payload = i.to_be_bytes();
                p.send_raw(&topic, b"one-key", Some(&payload), &headers)
                    .await
            })
        })
        .collect();
    let mut positions = HashSet::new();
    for s in sends {
        let (partition, offset) = s.await.unwrap().unwrap();
        assert!(offset >= 0);
        assert!(
            positions.insert((partition, offset)),
            "two sends acknowledged at one position"
        );
    }
    // One key, one partition: 50 distinct offsets there.
    assert_eq!(
        positions
            .iter()
            .map(|(p, _)| p)
            .collect::<HashSet<_>>()
            .len(),
        1
    );
    drop(producer);
    assert_eq!(
        ack_threads(),
        before,
        "the delivery-report thread outlived the producer"
    );
}
