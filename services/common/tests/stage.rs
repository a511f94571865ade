//! The stage runtime against a real broker: round trips, dead letters, redelivery, shutdown commit.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cxrflow_common::kafka::stage::{
    run_stage, Inbound, Outbound, Processor, StageConfig, StageDeps, StageError, StageRunError,
};
use cxrflow_common::kafka::Producer;
use cxrflow_common::metrics::StageMetrics;
use cxrflow_common::KafkaArgs;
use cxrflow_contracts::*;
use cxrflow_testkit::{eventually, read_records, read_topic, Broker};
use tokio_util::sync::CancellationToken;

use cxrflow_testkit::records::study;

fn scan(uid: &str) -> ScanEvent {
    ScanEvent {
        event_id: format!("e-{uid}"),
        study: study(uid),
        media_type: "image/png".into(),
        image_inline: Some(vec![1, 2, 3]),
        image_uri: None,
        image_sha256: None,
        image_size_bytes: None,
    }
}

/// Turns scans into ingested records; a record whose study UID ends in ".hang" never finishes.
struct Echo {
    codec: Arc<Codec>,
    seen: Mutex<Vec<(i32, i64)>>,
    calls: AtomicUsize,
}

impl Processor for Echo {
    async fn process(&self, msg: &Inbound) -> Result<Vec<Outbound>, StageError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push((msg.partition, msg.offset));
        let s: ScanEvent = msg.decode(&self.codec)?;
        if s.study.study_instance_uid.ends_with(".hang") {
            std::future::pending::<()>().await;
        }
        let out = IngestedImage {
            event_id: s.event_id,
            study: s.study,
            blob_uri: "file:///x".into(),
            sha256: "00".into(),
            size_bytes: 3,
            media_type: s.media_type,
            ingested_at: 5,
        };
        Ok(vec![Outbound::record(&self.codec, &out)?])
    }
}

fn deps(kafka: &KafkaArgs, codec: &Arc<Codec>) -> StageDeps {
    let mut reg = prometheus_client::registry::Registry::default();
    StageDeps {
        producer: Producer::new(kafka).unwrap(),
        codec: codec.clone(),
        registry: None,
        metrics: StageMetrics::register(&mut reg, "test"),
        health: Default::default(),
    }
}

fn cfg(group: &str, drain: Duration) -> StageConfig {
    StageConfig {
        service: "test",
        group_id: group.into(),
        topics: vec![topics::SCAN],
        max_in_flight: 8,
        drain_timeout: drain,
        urgency: cxrflow_common::Urgency::StudyPath,
    }
}

async fn produce_scans(kafka: &KafkaArgs, codec: &Codec, uids: &[String]) {
    let p = Producer::new(kafka).unwrap();
    for u in uids {
        p.send(
            codec,
            &scan(u),
            &BTreeMap::from([(
                "traceparent".to_string(),
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_string(),
            )]),
        )
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_type_round_trips_through_the_broker() {
    let broker = Broker::start();
    let kafka = broker.stack().await;
    let codec = Codec::with_static_registry().unwrap();
    let p = Producer::new(&kafka).unwrap();
    let h = BTreeMap::new();
    p.send(&codec, &scan("1.2.1"), &h).await.unwrap();
    let report = RadiologistReport {
        report_id: "r".into(),
        study_instance_uid: "1.2.1".into(),
        site_id: "s".into(),
        reader_ref: "reader".into(),
        read_started_at: 1,
        read_ended_at: 2,
        labels: vec![FindingLabel {
            finding: "Edema".into(),
            state: LabelState::Uncertain,
        }],
        tier_at_read: None,
    };
    p.send(&codec, &report, &h).await.unwrap();
    let got: Vec<ScanEvent> = read_records(&kafka, &codec, 1, Duration::from_secs(20)).await;
    assert_eq!(got, vec![scan("1.2.1")]);
    let got: Vec<RadiologistReport> =
        read_records(&kafka, &codec, 1, Duration::from_secs(20)).await;
    assert_eq!(got, vec![report]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_goes_to_dlq_and_the_next_record_still_flows() {
    let broker = Broker::start();
    let kafka = broker.stack().await;
    let codec = Arc::new(Codec::with_static_registry().unwrap());
    let p = Producer::new(&kafka).unwrap();
    let scan_topic = kafka.topic(topics::SCAN);
    p.send_raw(
        &scan_topic,
        b"1.9.9",
        Some(b"garbage bytes"),
        &BTreeMap::new(),
    )
    .await
    .unwrap();
    p.send_raw(
        &scan_topic,
        b"1.9.8",
        Some(&[0, 0, 0, 0x7f, 0x7f, 1]),
        &BTreeMap::new(),
    )
    .await
    .unwrap();
    produce_scans(&kafka, &codec, &["1.2.3".to_string()]).await;
    let shutdown = CancellationToken::new();
    let echo = Arc::new(Echo {
        codec: codec.clone(),
        seen: Mutex::default(),
        calls: AtomicUsize::new(0),
    });
    let (k, d, s) = (kafka.clone(), deps(&kafka, &codec), shutdown.clone());
    let stage =
        tokio::spawn(
            async move { run_stage(&k, cfg("g1", Duration::from_secs(2)), echo, d, s).await },
        );
    let dlq: Vec<DeadLetter> = read_records(&kafka, &codec, 2, Duration::from_secs(30)).await;
    let reasons: HashSet<_> = dlq.iter().map(|d| d.reason.as_str()).collect();
    assert_eq!(
        reasons,
        HashSet::from(["codec.bad_magic", "codec.unknown_schema_id"])
    );
    let garbage = dlq.iter().find(|d| d.reason == "codec.bad_magic").unwrap();
    assert_eq!(
        garbage.payload.as_deref(),
        Some(&b"garbage bytes"[..]),
        "original bytes kept"
    );
    assert_eq!(garbage.source_topic, scan_topic);
    assert_eq!(garbage.stage, "test");
    let out = read_topic(&kafka, topics::INGESTED, Duration::from_secs(30), |r| {
        !r.is_empty()
    })
    .await;
    assert_eq!(
        out.len(),
        1,
        "the good record after the poison ones still flows"
    );
    assert!(
        out[0]
            .headers
            .iter()
            .any(|(k, v)| k == "traceparent" && v.contains("0af7651916cd43dd8448eb211c80319c")),
        "trace context travels: {:?}",
        out[0].headers
    );
    shutdown.cancel();
    stage.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_record_is_redelivered_and_finished_ones_are_committed() {
    let broker = Broker::start();
    let kafka = broker.stack().await;
    let codec = Arc::new(Codec::with_static_registry().unwrap());
    // Same key → same partition, in order: a, b (never finishes), c.
    let p = Producer::new(&kafka).unwrap();
    let t = kafka.topic(topics::SCAN);
    for uid in ["1.5.1", "1.5.1.hang", "1.5.2"] {
        let bytes = codec.encode(&scan(uid)).unwrap();
        p.send_raw(&t, b"same-key", Some(&bytes), &BTreeMap::new())
            .await
            .unwrap();
    }
    let run = |echo: Arc<Echo>| {
        let shutdown = CancellationToken::new();
        let k = kafka.clone();
        let d = deps(&kafka, &codec);
        let s = shutdown.clone();
        (
            shutdown,
            tokio::spawn(async move {
                run_stage(&k, cfg("g2", Duration::from_millis(500)), echo, d, s).await
            }),
        )
    };
    let first = Arc::new(Echo {
        codec: codec.clone(),
        seen: Mutex::default(),
        calls: AtomicUsize::new(0),
    });
    let (stop, h) = run(first.clone());
    eventually(
        Duration::from_secs(30),
        "first run processed all three",
        || {
            let f = first.clone();
            async move { f.calls.load(Ordering::SeqCst) >= 3 }
        },
    )
    .await;
    let outs = read_topic(&kafka, topics::INGESTED, Duration::from_secs(20), |r| {
        r.len() >= 2
    })
    .await;
    assert_eq!(outs.len(), 2);
    stop.cancel(); // the hanging record is abandoned by the bounded drain: not committed
    h.await.unwrap().unwrap();

    let second = Arc::new(Echo {
        codec: codec.clone(),
        seen: Mutex::default(),
        calls: AtomicUsize::new(0),
    });
    let (stop, h) = run(second.clone());
    eventually(
        Duration::from_secs(30),
        "second run re-received the unfinished record",
        || {
            let s = second.clone();
            async move { s.calls.load(Ordering::SeqCst) >= 1 }
        },
    )
    .await;
    let first_offsets: Vec<i64> = first.seen.lock().unwrap().iter().map(|x| x.1).collect();
    let min_first = *first_offsets.iter().min().unwrap();
    eventually(
        Duration::from_secs(30),
        "both records behind the commit point re-received",
        || {
            let s = second.clone();
            async move { s.calls.load(Ordering::SeqCst) >= 2 }
        },
    )
    .await;
    let redelivered: Vec<i64> = second.seen.lock().unwrap().iter().map(|x| x.1).collect();
    assert_eq!(
        *redelivered.iter().min().unwrap(),
        min_first + 1,
        "resumes at the first unfinished record: the finished one before it was committed"
    );
    // c finished in run 1 but sits behind the unfinished b, so it is redelivered too; the
    // at-least-once duplicate it produces carries the same study key (idempotent downstream).
    stop.cancel();
    h.await.unwrap().unwrap();
}

#[tokio::test]
async fn drain_longer_than_session_timeout_is_rejected() {
    let mut kafka = KafkaArgs::for_bootstrap("127.0.0.1:1");
    kafka.session_timeout_ms = 1000;
    let codec = Arc::new(Codec::with_static_registry().unwrap());
    let echo = Arc::new(Echo {
        codec: codec.clone(),
        seen: Mutex::default(),
        calls: AtomicUsize::new(0),
    });
    let r = run_stage(
        &kafka,
        cfg("g", Duration::from_secs(5)),
        echo,
        deps(&kafka, &codec),
        CancellationToken::new(),
    )
    .await;
    assert!(r.is_err());
}

/// Echo, except that a study UID ending in ".panic" makes the processor panic.
struct Panicky(Echo);

impl Processor for Panicky {
    async fn process(&self, msg: &Inbound) -> Result<Vec<Outbound>, StageError> {
        if msg.key_str().is_some_and(|k| k.ends_with(".panic")) {
            panic!("boom on {}", msg.offset);
        }
        self.0.process(msg).await
    }
}

/// The group's committed offset of every partition of `logical` (-1: none).
fn committed(kafka: &KafkaArgs, group: &str, logical: &str) -> Vec<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let mut cc = kafka.client_config();
    cc.set("group.id", group);
    let c: BaseConsumer = cc.create().unwrap();
    let topic = kafka.topic(logical);
    let md = c
        .fetch_metadata(Some(&topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition(&topic, p.id());
    }
    c.committed_offsets(tpl, Duration::from_secs(10))
        .unwrap()
        .elements()
        .iter()
        .map(|e| e.offset().to_raw().unwrap_or(-1))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_panic_dead_letters_the_record_and_commits_go_on() {
    let broker = Broker::start();
    let kafka = broker.stack().await;
    let codec = Arc::new(Codec::with_static_registry().unwrap());
    // Keyed by study: the records spread over the partitions, so the committed offsets must
    // add up to all three once the partition with the panicked record moved past it.
    let uids = ["1.6.1", "1.6.2.panic", "1.6.3"].map(String::from);
    produce_scans(&kafka, &codec, &uids).await;
    let shutdown = CancellationToken::new();
    let processor = Arc::new(Panicky(Echo {
        codec: codec.clone(),
        seen: Mutex::default(),
        calls: AtomicUsize::new(0),
    }));
    let (k, d, s) = (kafka.clone(), deps(&kafka, &codec), shutdown.clone());
    let stage = tokio::spawn(async move {
        run_stage(&k, cfg("g-panic", Duration::from_secs(2)), processor, d, s).await
    });
    let dlq: Vec<DeadLetter> = read_records(&kafka, &codec, 1, Duration::from_secs(30)).await;
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].reason, "test.panic");
    assert!(dlq[0].error.contains("boom on"), "{}", dlq[0].error);
    assert_eq!(dlq[0].study_instance_uid.as_deref(), Some("1.6.2.panic"));
    let out = read_topic(&kafka, topics::INGESTED, Duration::from_secs(30), |r| {
        r.len() >= 2
    })
    .await;
    assert_eq!(out.len(), 2, "the records around the panic still flow");
    // The partition's offset passes the panicked record: commits are not stalled behind it.
    eventually(
        Duration::from_secs(20),
        "committed offsets past all three records",
        || {
            let k = kafka.clone();
            async move {
                let c = tokio::task::spawn_blocking(move || committed(&k, "g-panic", topics::SCAN))
                    .await
                    .unwrap();
                c.iter().map(|o| o.max(&0)).sum::<i64>() == 3
            }
        },
    )
    .await;
    shutdown.cancel();
    stage.await.unwrap().unwrap();
}

/// Env var that turns the helper below into a group member a test can SIGKILL.
const MEMBER_ENV: &str = "CXRFLOW_TEST_KILLABLE_MEMBER";

/// Not a test on its own: with `CXRFLOW_TEST_KILLABLE_MEMBER=<bootstrap>,<topic>,<group>[,<client
/// id>]` it joins the group, prints ASSIGNED once it holds a partition and keeps reading, never
/// committing, until it is killed (run as a child process by the tests below). Without it, it
/// returns at once.
#[test]
fn killable_group_member() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use std::io::Write;
    let Ok(spec) = std::env::var(MEMBER_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split(',').collect();
    let mut kafka = KafkaArgs::for_bootstrap(parts[0]);
    kafka.session_timeout_ms = 6_000;
    let mut cc = kafka.consumer_config();
    if let Some(client_id) = parts.get(3) {
        cc.set("client.id", *client_id);
    }
    cc.set("group.id", parts[2])
        .set("session.timeout.ms", "6000")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "latest");
    let c: BaseConsumer = cc.create().unwrap();
    c.subscribe(&[parts[1]]).unwrap();
    // Says ASSIGNED each time it goes from holding nothing to holding a partition: with the
    // eager protocol every rebalance takes its partitions away first.
    let mut holds = false;
    loop {
        let _ = c.poll(Duration::from_millis(20));
        let now = c.assignment().map(|a| a.count() > 0).unwrap_or(false);
        if now && !holds {
            println!("ASSIGNED");
            std::io::stdout().flush().unwrap();
        }
        holds = now;
    }
}

/// A [`killable_group_member`] child process and how many times it has been given a partition.
struct GroupMember {
    child: std::process::Child,
    assignments: Arc<AtomicUsize>,
}

impl GroupMember {
    fn kill(self) {} // dropped: SIGKILL, no LeaveGroup, it stays until its session ends

    /// How many assignments it has been given so far.
    fn assigned(&self) -> usize {
        self.assignments.load(Ordering::SeqCst)
    }

    /// Waits up to `within` until the count of its assignments satisfies `ok`.
    async fn assigned_until(&self, within: Duration, what: &str, ok: impl Fn(usize) -> bool) {
        eventually(within, what, || std::future::ready(ok(self.assigned()))).await;
    }
}

impl Drop for GroupMember {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts [`killable_group_member`] in `group` on the scan topic and waits until it holds a
/// partition.
async fn group_member_holding_a_partition(
    kafka: &KafkaArgs,
    group: &str,
    client_id: Option<&str>,
) -> GroupMember {
    use std::io::BufRead;
    let mut spec = format!("{},{},{group}", kafka.bootstrap, kafka.topic(topics::SCAN));
    if let Some(c) = client_id {
        spec = format!("{spec},{c}");
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["killable_group_member", "--exact", "--nocapture"])
        .env(MEMBER_ENV, spec)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let assignments = Arc::new(AtomicUsize::new(0));
    let n = assignments.clone();
    // Reads the child's lines for as long as it lives.
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if l.contains("ASSIGNED") {
                n.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let n = assignments.clone();
    let assigned = tokio::time::timeout(Duration::from_secs(30), async move {
        while n.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    if assigned.is_err() {
        let _ = child.kill();
        panic!("the group member did not get a partition within 30 s");
    }
    GroupMember { child, assignments }
}

/// An [`Echo`] stage running in `group` with its own metrics registry.
struct EchoStage {
    echo: Arc<Echo>,
    reg: Arc<prometheus_client::registry::Registry>,
    health: cxrflow_common::health::Health,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), StageRunError>>>,
}

impl EchoStage {
    fn start(kafka: &KafkaArgs, codec: &Arc<Codec>, group: &'static str) -> EchoStage {
        let shutdown = CancellationToken::new();
        let echo = Arc::new(Echo {
            codec: codec.clone(),
            seen: Mutex::default(),
            calls: AtomicUsize::new(0),
        });
        let mut reg = prometheus_client::registry::Registry::default();
        let mut d = deps(kafka, codec);
        d.metrics = StageMetrics::register(&mut reg, "test");
        let health = d.health.clone();
        let (k, s, e) = (kafka.clone(), shutdown.clone(), echo.clone());
        let task = tokio::spawn(async move {
            run_stage(&k, cfg(group, Duration::from_secs(2)), e, d, s).await
        });
        EchoStage {
            echo,
            reg: Arc::new(reg),
            health,
            shutdown,
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

impl Drop for EchoStage {
    /// A test that failed: stop the stage while the broker still runs (it is dropped after
    /// this), or closing its consumer at the runtime's shutdown waits on a broker that is gone.
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            self.shutdown.cancel();
            tokio::task::block_in_place(|| {
                let _ = tokio::runtime::Handle::current()
                    .block_on(tokio::time::timeout(Duration::from_secs(10), task));
            });
        }
    }
}

/// The test stage's `cxrflow_test_consumer_recoveries_total` lines.
fn recoveries(reg: &prometheus_client::registry::Registry) -> Vec<String> {
    cxrflow_common::metrics::render(reg)
        .lines()
        .filter(|l| l.starts_with("cxrflow_test_consumer_recoveries_total"))
        .map(str::to_string)
        .collect()
}

/// A stage that replaces a SIGKILLed member of its group right away (the dead member still
/// within its session) gets the partitions from the broker and consumes every record, without
/// its ownership watchdog: the embedded broker is built with
/// `scripts/tansu/tansu-broker-group-leader.patch`, which forms a group only from its leader's
/// SyncGroup. Published tansu 0.6.0 formed it from the follower's empty one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_replacing_a_killed_one_at_once_gets_the_partitions() {
    let broker = Broker::start();
    let mut kafka = broker.stack().await;
    kafka.session_timeout_ms = 6_000;
    let codec = Arc::new(Codec::with_static_registry().unwrap());
    let group = "g-replace";
    group_member_holding_a_partition(&kafka, group, None)
        .await
        .kill();

    // Join 3 s after the kill (a restarted process's start-up): tansu 0.6.0 pauses a follower's
    // JoinGroup 3 s, the dead leader's 6 s session ends in between, and published tansu formed
    // the group from the follower's empty SyncGroup, with nothing assigned. Measured on the
    // published broker: 4 of 4 runs stuck for good (until the watchdog rejoined) when joining
    // 3–4 s after the kill; 0–2 s after, 6 of 6 got the partitions after 6.5 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let uids: Vec<String> = (0..6).map(|i| format!("1.7.{i}")).collect();
    produce_scans(&kafka, &codec, &uids).await;
    let started = std::time::Instant::now();
    let st = EchoStage::start(&kafka, &codec, group);
    let out = read_topic(&kafka, topics::INGESTED, Duration::from_secs(90), |r| {
        r.len() >= uids.len()
    })
    .await;
    let took = started.elapsed();
    let recoveries = recoveries(&st.reg);
    eprintln!("replacement consumed everything after {took:?}; recoveries: {recoveries:?}");
    assert!(
        out.len() >= uids.len(),
        "every record consumed: {} of {}",
        out.len(),
        uids.len()
    );
    // The watchdog's first step waits 11 s (session 6 s + 5 s) after it first sees the stall.
    assert!(
        recoveries.is_empty(),
        "the broker formed the group with nothing assigned and the watchdog had to act: \
         {recoveries:?} (is the broker built without scripts/tansu/tansu-broker-*.patch?)"
    );
    assert!(st.health.assigned_once(), "ready once it held a partition");
    assert!(st.health.live().is_ok());
    st.stop().await;
}

/// The ownership watchdog acts on a real broker: a stage whose group's only partition is held
/// by a member that reads nothing it commits (hung, or another replica that stopped making
/// progress) rejoins after its stall bound, and once that member is gone the stage owns the
/// partition and consumes every record. (Its decisions are unit-tested in `ownership.rs`; this
/// checks that a rejoin is a real LeaveGroup + JoinGroup the broker answers.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_rejoins_when_a_member_holds_the_partition_and_commits_nothing() {
    let broker = Broker::start();
    let mut kafka = KafkaArgs::for_bootstrap(broker.bootstrap());
    kafka.topic_prefix = format!("w{:08x}.", rand::random::<u32>());
    kafka.session_timeout_ms = 6_000;
    // The watchdog's steps: rejoin after 5 s, rejoin after 10 s more, new consumer after 20 s.
    kafka.consumer_stall_ms = Some(5_000);
    // One partition, so one member holds everything and the other nothing.
    cxrflow_common::kafka::admin::ensure_topics(
        &kafka,
        &cxrflow_common::kafka::admin::all_topics(),
        1,
        1,
    )
    .await
    .unwrap();
    let codec = Arc::new(Codec::with_static_registry().unwrap());
    let group = "g-hung";
    // Its client id sorts before librdkafka's default ("rdkafka"), so the range assignor keeps
    // giving it the partition at every rebalance while it lives.
    let hung = group_member_holding_a_partition(&kafka, group, Some("0-hung")).await;
    let uids: Vec<String> = (0..6).map(|i| format!("1.8.{i}")).collect();
    produce_scans(&kafka, &codec, &uids).await;
    let st = EchoStage::start(&kafka, &codec, group);
    // The stage's first join is a rebalance: the hung member is given the partition again.
    hung.assigned_until(
        Duration::from_secs(30),
        "the stage joined and the group rebalanced",
        |n| n >= 2,
    )
    .await;
    let r = st.reg.clone();
    let rejoined = move || recoveries(&r).iter().any(|l| l.contains("rejoin"));
    // The count once the join's rebalance has settled (unchanged for 1 s, before the first
    // rejoin, which comes 5 s or more after the stall is first seen).
    let mut before = hung.assigned();
    let mut stable_since = std::time::Instant::now();
    while stable_since.elapsed() < Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = hung.assigned();
        if now != before {
            (before, stable_since) = (now, std::time::Instant::now());
        }
    }
    assert!(!rejoined(), "the watchdog waited out its stall bound");
    let r = rejoined.clone();
    eventually(
        Duration::from_secs(30),
        "the watchdog rejoined while the hung member held the partition",
        || {
            let r = r.clone();
            async move { r() }
        },
    )
    .await;
    assert_eq!(
        st.echo.calls.load(Ordering::SeqCst),
        0,
        "the stage consumed nothing while the other member held the only partition"
    );
    // The rejoin is a real LeaveGroup + JoinGroup: the group rebalances again, and the hung
    // member (first in the range assignor's order) is given the partition once more, before
    // the watchdog's next step (10 s later) could have done it.
    hung.assigned_until(
        Duration::from_secs(8),
        "the rejoin rebalanced the group",
        |n| n > before,
    )
    .await;
    hung.kill();
    let out = read_topic(&kafka, topics::INGESTED, Duration::from_secs(60), |r| {
        r.len() >= uids.len()
    })
    .await;
    assert!(
        out.len() >= uids.len(),
        "every record consumed once the hung member was gone: {} of {} (recoveries: {:?})",
        out.len(),
        uids.len(),
        recoveries(&st.reg)
    );
    st.stop().await;
}
