//! `cxrflow dlq replay`: re-publishes dead-lettered records to the topic they came from, after
//! a fix, with their original key, bytes and headers plus a replay counter.

use std::time::Duration;

use clap::Args;
use cxrflow_common::dlq::replay_headers;
use cxrflow_common::kafka::Producer;
use cxrflow_common::registry::codec_for;
use cxrflow_common::KafkaArgs;
use cxrflow_contracts::{topics, DeadLetter};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;

#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Only dead letters with this reason (e.g. `inference.nan_output`).
    #[arg(long)]
    pub reason: Option<String>,
    /// Only dead letters from this stage (e.g. `preprocess`).
    #[arg(long)]
    pub stage: Option<String>,
    /// Consumer group that remembers what was already replayed.
    #[arg(long, default_value = "cxrflow-dlq-replay")]
    pub group_id: String,
    /// Stop after this many replays.
    #[arg(long, default_value_t = u64::MAX)]
    pub limit: u64,
    /// Stop when no dead letter arrives for this long.
    #[arg(long, default_value_t = 5000)]
    pub idle_ms: u64,
    /// Give up on records already replayed this many times (they are poison for good).
    #[arg(long, default_value_t = 3)]
    pub max_replays: i32,
    /// Print what would be replayed without producing.
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let (codec, _) = codec_for(&args.kafka).await?;
    let producer = Producer::new(&args.kafka)?;
    let mut cc = args.kafka.consumer_config();
    cc.set("group.id", &args.group_id)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    let consumer: StreamConsumer = cc.create()?;
    consumer.subscribe(&[&args.kafka.topic(topics::DLQ)])?;
    let (mut replayed, mut skipped) = (0u64, 0u64);
    let actor = format!(
        "os-user:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    );
    while replayed < args.limit {
        let m = match tokio::time::timeout(Duration::from_millis(args.idle_ms), consumer.recv())
            .await
        {
            Ok(m) => m?,
            Err(_) => break,
        };
        let dl: DeadLetter = match m.payload().map(|p| codec.decode(p)) {
            Some(Ok(d)) => d,
            _ => {
                skipped += 1;
                consumer.commit_message(&m, rdkafka::consumer::CommitMode::Sync)?;
                continue;
            }
        };
        let wanted = args.reason.as_ref().is_none_or(|r| *r == dl.reason)
            && args.stage.as_ref().is_none_or(|s| *s == dl.stage)
            && dl.replay_count < args.max_replays;
        if wanted {
            println!(
                "replay {} {}/{}/{} reason={} -> {}",
                if args.dry_run { "(dry run)" } else { "" },
                dl.source_topic,
                dl.source_partition,
                dl.source_offset,
                dl.reason,
                dl.source_topic
            );
            if !args.dry_run {
                producer
                    .send_raw(
                        &dl.source_topic,
                        dl.key.as_deref().unwrap_or_default(),
                        dl.payload.as_deref(),
                        &replay_headers(&dl),
                    )
                    .await?;
                cxrflow_common::audit::dead_letter_replayed(
                    &actor,
                    &dl.source_topic,
                    dl.source_partition,
                    dl.source_offset,
                    &String::from_utf8_lossy(dl.key.as_deref().unwrap_or(b"-")),
                    &dl.reason,
                );
            }
            replayed += 1;
        } else {
            skipped += 1;
        }
        if !args.dry_run {
            consumer.commit_message(&m, rdkafka::consumer::CommitMode::Sync)?;
        }
    }
    println!("replayed {replayed}, skipped {skipped}");
    Ok(())
}
