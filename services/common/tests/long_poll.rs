//! The embedded broker answers a consumer's held fetch as soon as a record arrives, as Apache
//! Kafka does, instead of holding every fetch for the whole `fetch.wait.max.ms` (tansu 0.6.0 as
//! published does; `scripts/install-broker.sh` builds it with `scripts/tansu/*.patch`). A hop
//! then costs milliseconds whatever the fetch wait, and the wait only sets how often an idle
//! consumer asks.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use cxrflow_common::kafka::{reader_config, Producer};
use cxrflow_common::{KafkaArgs, Urgency};
use cxrflow_testkit::{assign_all_from_beginning, Broker};
use rdkafka::consumer::StreamConsumer;
use rdkafka::Message;

/// Every fetch may be held this long when the broker has no records for it.
const WAIT: Duration = Duration::from_secs(5);

/// A stack on `broker` whose consumers wait [`WAIT`], its scan topic, and a consumer assigned
/// every partition of that topic from the beginning.
async fn waiting_consumer(broker: &Broker, purpose: &str) -> (KafkaArgs, String, StreamConsumer) {
    let mut kafka = broker.stack().await;
    kafka.fetch_wait_ms = Some(WAIT.as_millis() as u64);
    let topic = kafka.topic("cxr.scan.v1");
    let consumer: StreamConsumer = reader_config(&kafka, purpose, Urgency::StudyPath)
        .create()
        .expect("consumer");
    assert!(
        assign_all_from_beginning(&consumer, &topic, Instant::now() + WAIT * 3).await,
        "{topic} has no partitions"
    );
    (kafka, topic, consumer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_fetch_is_answered_when_a_record_arrives_not_when_the_wait_ends() {
    let broker = Broker::start();
    let (kafka, topic, consumer) = waiting_consumer(&broker, "long-poll").await;
    let producer = Producer::new(&kafka).expect("producer");
    let send_and_receive = |key: String| {
        let (producer, topic, consumer) = (&producer, &topic, &consumer);
        async move {
            let sent = Instant::now();
            producer
                .send_raw(topic, key.as_bytes(), Some(b"scan"), &BTreeMap::new())
                .await
                .expect("acknowledged");
            let m = tokio::time::timeout(WAIT * 3, consumer.recv())
                .await
                .expect("the record arrives within three fetch waits")
                .expect("a record, not an error");
            assert_eq!(m.key(), Some(key.as_bytes()), "records out of order");
            sent.elapsed()
        }
    };
    // The first record also waits for the consumer's connection and offset lookups: not timed.
    send_and_receive("warm-up".into()).await;
    let mut latencies = Vec::new();
    for i in 0..5 {
        // Sent at a pace unrelated to the wait, so each lands somewhere inside a held fetch.
        tokio::time::sleep(Duration::from_millis(700)).await;
        latencies.push(send_and_receive(format!("k{i}")).await);
    }
    eprintln!("send-to-receive with a {WAIT:?} fetch wait: {latencies:?}");
    let worst = latencies.iter().max().unwrap();
    assert!(
        *worst < WAIT / 5,
        "a record waited {worst:?} for a fetch held up to {WAIT:?} (all: {latencies:?}): is the \
         broker the patched tansu from scripts/install-broker.sh?"
    );
}

/// Bursts of records from concurrent sends to both partitions, each burst read in full before
/// the next: every record arrives without waiting out the 5 s fetch wait. A wake-up the broker
/// lost, or a partition it wrongly took for read to the end, would leave a burst's last records
/// waiting for the wait to end (or for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_bursts_arrive_in_full_without_waiting_out_the_fetch_wait() {
    let broker = Broker::start();
    let (kafka, topic, consumer) = waiting_consumer(&broker, "long-poll-bursts").await;
    let producer = Producer::new(&kafka).expect("producer");
    let mut took = Vec::new();
    for burst in 0..20 {
        let started = Instant::now();
        let keys: Vec<String> = (0..10).map(|i| format!("b{burst}-r{i}")).collect();
        let sends: Vec<_> = keys
            .iter()
            .map(|key| {
                let (producer, topic, key) = (producer.clone(), topic.clone(), key.clone());
                tokio::spawn(async move {
                    producer
                        .send_raw(&topic, key.as_bytes(), Some(b"scan"), &BTreeMap::new())
                        .await
                })
            })
            .collect();
        for send in sends {
            send.await.unwrap().expect("acknowledged");
        }
        let mut missing: HashSet<String> = keys.into_iter().collect();
        while !missing.is_empty() {
            let m = tokio::time::timeout(WAIT * 3, consumer.recv())
                .await
                .unwrap_or_else(|_| panic!("burst {burst}: {missing:?} never arrived"))
                .expect("a record, not an error");
            let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
            assert!(
                missing.remove(&key),
                "burst {burst}: {key} twice or unknown"
            );
        }
        took.push(started.elapsed());
    }
    eprintln!("each burst, sent and read in full: {took:?}");
    // The first burst also waits for the consumer's connection and offset lookups.
    let slowest = *took[1..].iter().max().unwrap();
    assert!(
        slowest < WAIT / 2,
        "a burst took {slowest:?} with a {WAIT:?} fetch wait: a record waited for the wait to end"
    );
}
