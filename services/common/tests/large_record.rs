//! A record near the record limit (a 5 MB inline image, say) travels: it is produced and
//! consumed whole, compressible or not; one above the limit is refused at the producer with a
//! clear error, never stored where no consumer could fetch it (tansu 0.6.0 serves at most
//! 5 MiB per fetch, so such a record would stall its partition for good).

use std::collections::BTreeMap;
use std::time::Duration;

use cxrflow_common::kafka::Producer;
use cxrflow_contracts::topics;
use cxrflow_testkit::{read_topic, Broker};

const NEAR_LIMIT: u32 = 5_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_megabyte_record_is_produced_and_consumed() {
    five_megabytes(
        (0..NEAR_LIMIT)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect(),
    )
    .await;
}

/// Compressible (mostly zeros, as an uncompressed DICOM's background is): a small lz4 batch
/// that decompresses to 5 MB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressible_five_megabyte_record_is_produced_and_consumed() {
    five_megabytes((0..NEAR_LIMIT).map(|i| u8::from(i % 4096 == 0)).collect()).await;
}

async fn five_megabytes(big: Vec<u8>) {
    let broker = Broker::start();
    let kafka = broker.stack().await;
    assert!(big.len() as u64 <= kafka.max_message_bytes);
    let producer = Producer::new(&kafka).unwrap();
    let topic = kafka.topic(topics::SCAN);
    for (key, payload) in [
        (b"k", &b"small before"[..]),
        (b"k", &big[..]),
        (b"k", b"small after"),
    ] {
        producer
            .send_raw(&topic, key, Some(payload), &BTreeMap::new())
            .await
            .unwrap();
    }
    let got = read_topic(&kafka, topics::SCAN, Duration::from_secs(30), |r| {
        r.len() >= 3
    })
    .await;
    let sizes: Vec<usize> = got
        .iter()
        .map(|r| r.payload.as_ref().map_or(0, Vec::len))
        .collect();
    assert_eq!(sizes, vec![12, big.len(), 11]);
    assert_eq!(got[1].payload.as_deref(), Some(&big[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_above_the_limit_is_refused_at_the_producer() {
    let broker = Broker::start();
    let kafka = broker.stack().await;
    let producer = Producer::new(&kafka).unwrap();
    let too_big = vec![1u8; (kafka.message_limit_bytes() + 1024) as usize];
    let err = producer
        .send_raw(
            &kafka.topic(topics::SCAN),
            b"k",
            Some(&too_big),
            &BTreeMap::new(),
        )
        .await
        .expect_err("a record above the limit is refused");
    assert!(
        err.to_string().contains("too large") || err.to_string().contains("MessageSizeTooLarge"),
        "{err}"
    );
}
