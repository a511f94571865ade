//! The one test harness every integration test uses: starts a real Kafka-API broker (tansu,
//! installed by `scripts/install-broker.sh`) on a free loopback port with on-disk storage,
//! hands out uniquely prefixed topics, reads topics back, and waits on conditions with a
//! deadline (never a bare sleep). [`service`]: a service's `run()` started and stopped in the
//! test's process. [`tools`]: what a test does when a tool it needs is missing. [`records`]: the record builders
//! tests share.

pub mod keys;
pub mod reasons;
pub mod records;
pub mod service;
pub mod tools;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use cxrflow_common::broker::EmbeddedBroker;
use cxrflow_common::config::KafkaArgs;
use cxrflow_common::kafka::admin::{all_topics, ensure_topics};
use cxrflow_contracts::{AvroRecord, Codec};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;

pub use service::{service_args, TestService};
pub use tools::{require_service, require_tool};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Runs a tool a test needs (DCMTK, the tools venv's Python) and fails the test, with the
/// tool's own output, when it cannot run or exits non-zero.
pub fn run_tool(mut cmd: std::process::Command) {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{cmd:?} cannot run (DCMTK and the tools venv come from scripts/prereqs.sh): {e}")
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A converter run as `name ARGS… input output` (DCMTK's, GDCM's, OpenJPEG's tools), failing the
/// test with its output as [`run_tool`] does.
pub fn convert(name: &str, args: &[&str], input: &std::path::Path, output: &std::path::Path) {
    let mut c = std::process::Command::new(name);
    c.args(args).arg(input).arg(output);
    run_tool(c);
}

/// Logs for tests (once per process); `RUST_LOG` controls the level.
/// The tools venv's Python (`$CXRFLOW_TOOLS/venv`, made by scripts/prereqs.sh): Pillow,
/// pydicom, scikit-image, opentelemetry-proto for tests that need another toolkit's files or
/// peers.
pub fn tools_python() -> std::path::PathBuf {
    let tools = std::env::var("CXRFLOW_TOOLS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/cxrflow/tools")
        });
    tools.join("venv/bin/python")
}

/// pydicom's own test corpus (`pydicom/data/test_files`: files from GDCM, DCMTK, vendors and
/// pydicom), shipped in the tools venv's pinned pydicom wheel.
pub fn pydicom_test_files() -> std::path::PathBuf {
    package_data("pydicom", "data/test_files")
}

/// A directory inside an installed package of the tools venv (`path` relative to the package),
/// which must exist.
pub fn package_data(package: &str, path: &str) -> std::path::PathBuf {
    let out = std::process::Command::new(tools_python())
        .args([
            "-c",
            &format!("import os, {package}; print(os.path.dirname({package}.__file__))"),
        ])
        .output()
        .unwrap_or_else(|e| panic!("the tools venv's python cannot run (scripts/prereqs.sh): {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join(path);
    assert!(dir.is_dir(), "no {package} data at {}", dir.display());
    dir
}

/// GDCM's element (4453,100C) as pydicom's `UN_sequence.dcm` ends with it: VR UN, undefined
/// length, its items in implicit VR (PS3.5 §6.2.2), a Referenced Series Sequence two deep;
/// explicit VR little endian header.
pub fn gdcm_un_sequence() -> Vec<u8> {
    let path = pydicom_test_files().join("UN_sequence.dcm");
    let file = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header = [
        0x53, 0x44, 0x0C, 0x10, b'U', b'N', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
    ];
    let at = file
        .windows(header.len())
        .position(|w| w == header)
        .expect("GDCM's UN element");
    file[at..].to_vec()
}

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,librdkafka=warn,rdkafka=warn")
            }),
        )
        .with_test_writer()
        .try_init();
}

/// A running broker on a free port with storage in a temporary directory, stopped on drop.
pub struct Broker {
    inner: EmbeddedBroker,
    _dir: tempfile::TempDir,
}

impl Broker {
    /// Starts a broker with sqlite storage in a fresh temporary directory and waits until it
    /// answers metadata requests.
    pub fn start() -> Broker {
        init_logs();
        let dir = tempfile::tempdir().expect("temp dir");
        let inner =
            EmbeddedBroker::start(dir.path(), free_port()).unwrap_or_else(|e| panic!("{e}"));
        Broker { inner, _dir: dir }
    }

    pub fn bootstrap(&self) -> String {
        self.inner.bootstrap()
    }

    /// The broker process's id (a test pauses it with SIGSTOP, as a VM migration would).
    pub fn pid(&self) -> u32 {
        self.inner.pid().expect("the broker runs")
    }

    /// Kills the broker (SIGKILL) without touching its storage.
    pub fn kill(&mut self) {
        self.inner.kill();
    }

    /// Kill and start again on the same port and storage.
    pub fn restart(&mut self) {
        self.inner.restart().unwrap_or_else(|e| panic!("{e}"));
    }

    /// Kafka settings for a fresh, uniquely prefixed set of topics, all created.
    pub async fn stack(&self) -> KafkaArgs {
        let mut k = KafkaArgs::for_bootstrap(self.bootstrap());
        k.topic_prefix = format!("t{:08x}.", rand::random::<u32>());
        k.session_timeout_ms = 10_000;
        ensure_topics(&k, &all_topics(), 2, 1)
            .await
            .expect("create topics");
        k
    }
}

/// Polls `cond` until true or panics after `timeout`, naming what it waited for.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {timeout:?} waiting for: {what}");
}

/// Async form of [`wait_until`].
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {timeout:?} waiting for: {what}");
}

/// The value of one series (exact name plus labels, e.g. `x_total{kind="a"}`) on
/// `<base>/metrics`, e.g. `base` = `http://127.0.0.1:8080`; None when the endpoint does not
/// answer or the series is absent.
pub async fn scrape_metric(base: &str, series: &str) -> Option<f64> {
    let body = reqwest::get(format!("{base}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    body.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
}

/// A raw record read back from a topic.
#[derive(Debug, Clone)]
pub struct RawRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, String)>,
}

/// Reads a logical topic from the beginning until `enough` says the records collected so far
/// suffice, or `timeout` passes (then returns what it has).
///
/// The reader assigns itself every partition directly instead of joining a consumer group: a
/// test reader needs no coordination, and a group join is one more broker round trip that the
/// embedded broker occasionally answers slowly under a fully parallel suite.
pub async fn read_topic(
    kafka: &KafkaArgs,
    logical: &str,
    timeout: Duration,
    enough: impl Fn(&[RawRecord]) -> bool,
) -> Vec<RawRecord> {
    use rdkafka::message::Headers;
    let consumer: StreamConsumer =
        cxrflow_common::kafka::reader_config(kafka, "reader", cxrflow_common::Urgency::StudyPath)
            .create()
            .expect("reader consumer");
    let end = Instant::now() + timeout;
    let topic = kafka.topic(logical);
    let mut out = Vec::new();
    if !assign_all_from_beginning(&consumer, &topic, end).await {
        tracing::warn!(topic, "reader: the topic has no partitions");
        return out;
    }
    while !enough(&out) {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, consumer.recv()).await {
            Ok(Ok(m)) => out.push(RawRecord {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().map(<[u8]>::to_vec),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| {
                                (
                                    x.key.to_string(),
                                    String::from_utf8_lossy(x.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
            Ok(Err(e)) => tracing::debug!(error = %e, "reader error"),
            Err(_) => break,
        }
    }
    out
}

/// Assigns every partition of `topic` at its first offset, retrying the metadata request until
/// the topic shows partitions; false when `end` passed first (the topic does not exist).
pub async fn assign_all_from_beginning(
    consumer: &StreamConsumer,
    topic: &str,
    end: Instant,
) -> bool {
    use rdkafka::{Offset, TopicPartitionList};
    loop {
        let partitions = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .ok()
            .and_then(|md| {
                md.topics()
                    .iter()
                    .find(|t| t.name() == topic && t.error().is_none())
                    .map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
            })
            .unwrap_or_default();
        if !partitions.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for p in partitions {
                tpl.add_partition_offset(topic, p, Offset::Beginning)
                    .expect("partition offset");
            }
            consumer.assign(&tpl).expect("assign");
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads and decodes `n` records of type `T` (or what arrives before `timeout`).
pub async fn read_records<T: AvroRecord>(
    kafka: &KafkaArgs,
    codec: &Codec,
    n: usize,
    timeout: Duration,
) -> Vec<T> {
    read_topic(kafka, T::TOPIC, timeout, |r| r.len() >= n)
        .await
        .into_iter()
        .filter_map(|r| r.payload.and_then(|p| codec.decode::<T>(&p).ok()))
        .collect()
}
