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

/// `--kafka-prop compression.type=zstd` (suggested for a slow network): records compressed
/// with zstd by the producer are stored by the broker and read back intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_compressed_records_round_trip_through_the_broker() {
    let broker = Broker::start();
    let mut kafka = broker.stack().await;
    kafka.props.push(("compression.type".into(), "zstd".into()));
    let producer = Producer::new(&kafka).expect("a zstd producer starts");
    let topic = kafka.topic("cxr.scan.v1");
    // Compressible and not: a repeated pattern and pseudo-random bytes.
    let bodies: Vec<Vec<u8>> = (0..20u32)
        .map(|i| {
            if i % 2 == 0 {
                b"chest radiograph ".repeat(4_000)
            } else {
                (0..60_000u32)
                    .map(|j| (j.wrapping_mul(2_654_435_761).wrapping_add(i) >> 13) as u8)
                    .collect()
            }
        })
        .collect();
    for (i, b) in bodies.iter().enumerate() {
        producer
            .send_raw(
                &topic,
                format!("k{i}").as_bytes(),
                Some(b),
                &BTreeMap::new(),
            )
            .await
            .expect("a zstd batch is acknowledged");
    }
    let read = cxrflow_testkit::read_topic(&kafka, "cxr.scan.v1", Duration::from_secs(30), |r| {
        r.len() >= bodies.len()
    })
    .await;
    let mut got: Vec<(String, Vec<u8>)> = read
        .into_iter()
        .map(|r| {
            (
                String::from_utf8(r.key.unwrap()).unwrap(),
                r.payload.unwrap(),
            )
        })
        .collect();
    got.sort();
    let mut want: Vec<(String, Vec<u8>)> = bodies
        .into_iter()
        .enumerate()
        .map(|(i, b)| (format!("k{i}"), b))
        .collect();
    want.sort();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "records changed on the way");
}
