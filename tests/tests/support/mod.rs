//! The pipeline as a hospital would run it in the distributed shape: every service its own
//! `cxrflow <service>` OS process against a real broker, so a test can kill one with SIGKILL
//! and start it again exactly as an orchestrator would. Each process's stdout and stderr go to
//! a log file (appended across restarts) that a test can read back.
//!
//! Needs the `cxrflow` binary (`$CXRFLOW_BIN`, else `<target>/debug/cxrflow`), the synthetic
//! dataset and the fitted model (`scripts/make-test-data.sh` builds all three; `scripts/test.sh`
//! runs it and exports the variables).

#![allow(dead_code)]

use cxrflow_common::auth::Role;
use cxrflow_testkit::keys::TestKeys;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cxrflow_common::kafka::read::SnapshotRecord;
use cxrflow_common::kafka::Producer;
use cxrflow_common::KafkaArgs;
use cxrflow_contracts::{topics, Codec, LabeledExample, TriageDecision, WorklistStatus};
use cxrflow_sim::dataset::open_dataset;
use cxrflow_sim::replay::{publish, select_studies, Arrival, Pace, Published, ReplayStudy};
use cxrflow_testkit::{free_port, Broker};
use tokio::task::JoinHandle;

/// Consumer session of every service process: short, so a killed member leaves its group soon.
pub const SESSION_TIMEOUT_MS: u64 = 6_000;
/// Shutdown drain bound; must stay under the session timeout (services check at start).
pub const DRAIN_TIMEOUT_MS: u64 = 3_000;

pub fn required_env(name: &str) -> PathBuf {
    PathBuf::from(std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run scripts/make-test-data.sh and source $CXRFLOW_DATA/test-data.env (scripts/test.sh does both)")
    }))
}

/// The umbrella binary the service processes run.
pub fn cxrflow_bin() -> PathBuf {
    if let Ok(p) = std::env::var("CXRFLOW_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "CXRFLOW_BIN={} does not exist: build it with `cargo build -p cxrflow` (scripts/make-test-data.sh does)",
            p.display()
        );
        return p;
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let p = target.join("debug/cxrflow");
    assert!(
        p.is_file(),
        "no cxrflow binary at {} and CXRFLOW_BIN is not set: build it with `cargo build -p cxrflow` (scripts/make-test-data.sh does)",
        p.display()
    );
    p
}

/// Heavy tests (a broker, five service processes, ONNX Runtime) take turns, across test
/// processes too (nextest runs each test in its own process), so that on a small machine
/// their deadlines measure the pipeline rather than each other.
pub fn exclusive() -> File {
    let path = std::env::temp_dir().join("cxrflow-reliability-tests.lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("lock file {}: {e}", path.display()));
    f.lock()
        .unwrap_or_else(|e| panic!("locking {}: {e}", path.display()));
    f
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    Ingest,
    Preprocess,
    Inference,
    Triage,
    Feedback,
}

impl Service {
    pub const ALL: [Service; 5] = [
        Service::Ingest,
        Service::Preprocess,
        Service::Inference,
        Service::Triage,
        Service::Feedback,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Service::Ingest => "ingest",
            Service::Preprocess => "preprocess",
            Service::Inference => "inference",
            Service::Triage => "triage",
            Service::Feedback => "feedback",
        }
    }
}

/// A broker, its topics (uniquely prefixed) and one OS process per service.
pub struct Pipeline {
    pub broker: Broker,
    pub kafka: KafkaArgs,
    pub codec: Arc<Codec>,
    pub dataset: PathBuf,
    models: PathBuf,
    bin: PathBuf,
    dir: tempfile::TempDir,
    ports: BTreeMap<Service, u16>,
    children: HashMap<Service, Child>,
    /// (service, how it ended) for every process that ended without the test killing it.
    pub unexpected_exits: Vec<(Service, String)>,
    pub starts: BTreeMap<Service, usize>,
    /// Flags added to a service's command line at its next start (a configuration fix).
    pub extra_args: HashMap<Service, Vec<String>>,
    /// The API keys every service accepts (`--auth-api-keys`), as deployed.
    pub keys: TestKeys,
}

impl Pipeline {
    /// Starts a broker, creates the topics and starts every service, waiting until each is ready.
    pub async fn start() -> Pipeline {
        let bin = cxrflow_bin();
        let dataset = std::fs::canonicalize(required_env("CXRFLOW_DATASET_ROOT"))
            .expect("CXRFLOW_DATASET_ROOT exists");
        let models = required_env("CXRFLOW_MODELS_DIR");
        let broker = tokio::task::block_in_place(Broker::start);
        let mut kafka = broker.stack().await;
        kafka.session_timeout_ms = SESSION_TIMEOUT_MS;
        let dir = tempfile::tempdir().expect("temp dir");
        for d in ["blobs", "logs"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let ports = Service::ALL.iter().map(|s| (*s, free_port())).collect();
        let mut p = Pipeline {
            broker,
            kafka,
            codec: Arc::new(Codec::with_static_registry().expect("static registry")),
            dataset,
            models,
            bin,
            dir,
            ports,
            children: HashMap::new(),
            unexpected_exits: Vec::new(),
            starts: BTreeMap::new(),
            extra_args: HashMap::new(),
            keys: TestKeys::new(),
        };
        for s in Service::ALL {
            p.spawn(s);
        }
        for s in Service::ALL {
            p.wait_ready(s, Duration::from_secs(120)).await;
        }
        p
    }

    pub fn port(&self, s: Service) -> u16 {
        self.ports[&s]
    }

    pub fn triage_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port(Service::Triage))
    }

    pub fn log_path(&self, s: Service) -> PathBuf {
        self.dir
            .path()
            .join("logs")
            .join(format!("{}.log", s.name()))
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    fn args(&self, s: Service) -> Vec<String> {
        let d = self.dir.path();
        let blobs = format!("file://{}", d.join("blobs").display());
        let mut a: Vec<String> = vec![
            s.name().into(),
            "--log-format".into(),
            "json".into(),
            "--bootstrap".into(),
            self.kafka.bootstrap.clone(),
            "--topic-prefix".into(),
            self.kafka.topic_prefix.clone(),
            "--session-timeout-ms".into(),
            SESSION_TIMEOUT_MS.to_string(),
            "--drain-timeout-ms".into(),
            DRAIN_TIMEOUT_MS.to_string(),
            "--http".into(),
            format!("127.0.0.1:{}", self.port(s)),
            "--group-id".into(),
            format!("cxrflow-{}", s.name()),
            "--auth-api-keys".into(),
            self.keys.file.display().to_string(),
        ];
        let extra: Vec<String> = match s {
            Service::Ingest => vec![
                "--blob-store".into(),
                blobs,
                "--ingest-db".into(),
                d.join("ingest.db").display().to_string(),
                "--ingest-file-root".into(),
                self.dataset.display().to_string(),
            ],
            Service::Preprocess => vec!["--blob-store".into(), blobs],
            Service::Inference => vec![
                "--models-dir".into(),
                self.models.display().to_string(),
                "--model".into(),
                "cxr-small".into(),
            ],
            Service::Triage => vec![
                "--blob-store".into(),
                blobs,
                "--ordering".into(),
                "pooled".into(),
            ],
            Service::Feedback => vec![
                "--store".into(),
                format!("sqlite:{}", d.join("feedback.db").display()),
            ],
        };
        a.extend(extra);
        a.extend(self.extra_args.get(&s).cloned().unwrap_or_default());
        a
    }

    /// The OS process id of a running service.
    pub fn pid(&self, s: Service) -> Option<u32> {
        self.children.get(&s).map(Child::id)
    }

    /// The `cxrflow` binary the services run (for one-off commands such as `dlq replay`).
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// Starts `s` (again), its output appended to its log file.
    pub fn spawn(&mut self, s: Service) {
        assert!(!self.children.contains_key(&s), "{} already runs", s.name());
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(s))
            .expect("log file");
        let child = Command::new(&self.bin)
            .args(self.args(s))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} {}: {e}", self.bin.display(), s.name()));
        *self.starts.entry(s).or_default() += 1;
        self.children.insert(s, child);
    }

    /// SIGKILL, as a crashed process or an OOM-killed container would end.
    pub fn kill(&mut self, s: Service) {
        let mut c = self
            .children
            .remove(&s)
            .unwrap_or_else(|| panic!("{} is not running", s.name()));
        if let Ok(Some(status)) = c.try_wait() {
            self.unexpected_exits
                .push((s, format!("had already exited before the kill: {status}")));
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    /// Records every process that ended on its own (a service must survive what the test does).
    pub fn check_alive(&mut self) {
        let mut ended = Vec::new();
        for (s, c) in self.children.iter_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                ended.push((*s, status.to_string()));
            }
        }
        for (s, status) in ended {
            self.children.remove(&s);
            self.unexpected_exits.push((s, status));
        }
    }

    pub async fn wait_ready(&mut self, s: Service, timeout: Duration) {
        let url = format!("http://127.0.0.1:{}/readyz", self.port(s));
        let http = reqwest::Client::new();
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(r) = http.get(&url).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(Ok(Some(status))) = self.children.get_mut(&s).map(Child::try_wait) {
                panic!(
                    "{} exited during start-up ({status}); log:\n{}",
                    s.name(),
                    self.log_tail(s, 4000)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{} not ready on {url} after {timeout:?}; log:\n{}",
            s.name(),
            self.log_tail(s, 4000)
        );
    }

    /// Records `s` handled since its latest start (log lines inside a record span), so a stage
    /// that came back but consumes nothing shows up as such.
    pub fn handled_since_last_start(&self, s: Service) -> usize {
        let log = self.log(s);
        let since = log
            .rfind("\"message\":\"starting\"")
            .map_or(&log[..], |i| &log[i..]);
        since
            .lines()
            .filter(|l| l.contains("\"name\":\"record\""))
            .count()
    }

    pub fn log(&self, s: Service) -> String {
        std::fs::read_to_string(self.log_path(s)).unwrap_or_default()
    }

    pub fn log_tail(&self, s: Service, chars: usize) -> String {
        let l = self.log(s);
        let start = l.len().saturating_sub(chars);
        let start = (start..l.len())
            .find(|i| l.is_char_boundary(*i))
            .unwrap_or(l.len());
        l[start..].to_string()
    }

    /// Every record of a logical topic up to its current end.
    pub async fn snapshot(&self, logical: &'static str) -> Vec<SnapshotRecord> {
        let k = self.kafka.clone();
        tokio::task::spawn_blocking(move || {
            cxrflow_common::kafka::read::snapshot(&k, logical, Duration::from_secs(60))
                .unwrap_or_else(|e| panic!("reading {logical}: {e}"))
        })
        .await
        .unwrap()
    }

    pub async fn decisions(&self) -> Vec<TriageDecision> {
        self.snapshot(topics::TRIAGE)
            .await
            .into_iter()
            .filter_map(|r| r.payload)
            .map(|p| {
                self.codec
                    .decode::<TriageDecision>(&p)
                    .expect("triage record decodes")
            })
            .collect()
    }

    pub async fn labeled(&self) -> Vec<LabeledExample> {
        self.snapshot(topics::LABELED)
            .await
            .into_iter()
            .filter_map(|r| r.payload)
            .map(|p| {
                self.codec
                    .decode::<LabeledExample>(&p)
                    .expect("labeled record decodes")
            })
            .collect()
    }

    /// `GET /worklist` study UIDs in order, or `None` while triage is away or rebuilding.
    pub async fn worklist(&self, http: &reqwest::Client) -> Option<Vec<(String, String)>> {
        let r = http
            .get(format!("{}/worklist", self.triage_url()))
            .bearer_auth(self.keys.key(Role::Reader))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        let v: serde_json::Value = r.json().await.ok()?;
        Some(
            v["items"]
                .as_array()?
                .iter()
                .map(|i| {
                    (
                        i["study_uid"].as_str().unwrap_or_default().to_string(),
                        i["status"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect(),
        )
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        for (_, mut c) in self.children.drain() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() || std::env::var_os("CXRFLOW_KEEP_TEST_LOGS").is_some() {
            let keep = std::env::temp_dir()
                .join(format!("cxrflow-reliability-logs-{}", std::process::id()));
            let _ = std::fs::create_dir_all(&keep);
            for s in Service::ALL {
                let _ = std::fs::copy(self.log_path(s), keep.join(format!("{}.log", s.name())));
            }
            eprintln!("service logs kept in {}", keep.display());
        }
    }
}

/// `n` held-out studies of the test dataset, deterministically.
pub fn studies(dataset: &Path, n: usize, seed: u64) -> Vec<ReplayStudy> {
    let ds = open_dataset(dataset).expect("test dataset opens");
    let sites = vec!["site-01".to_string(), "site-02".to_string()];
    let s = select_studies(&ds, "heldout.csv", n, seed, &sites);
    assert_eq!(s.len(), n, "the dataset has {n} held-out studies");
    s
}

/// What the triage topic says about each study.
#[derive(Debug, Default)]
pub struct WorklistHistory {
    /// Version-1 ("opened") decisions per study, counted once per distinct content: a decision
    /// the broker stored but whose acknowledgement was lost (a broker restart) is published
    /// again, identical — at-least-once, visible in `repeated_versions` — and is not a second
    /// entry; a different version 1 would be (and lands in `conflicting_versions` too).
    pub opened: BTreeMap<String, usize>,
    /// Latest version and its status per study.
    pub latest: BTreeMap<String, (i64, WorklistStatus)>,
    /// (study, version) published with different content: two histories of one study.
    pub conflicting_versions: BTreeSet<(String, i64)>,
    /// Records that repeat an earlier (study, version) with the same content.
    pub repeated_versions: usize,
}

impl WorklistHistory {
    pub fn of(decisions: &[TriageDecision]) -> Self {
        let mut h = WorklistHistory::default();
        let mut seen: HashMap<(String, i64), (WorklistStatus, String, u64)> = HashMap::new();
        for d in decisions {
            let uid = d.study.study_instance_uid.clone();
            let content = (d.status, format!("{:?}", d.tier), d.score.to_bits());
            let repeat = seen.get(&(uid.clone(), d.version)) == Some(&content);
            if d.version == 1 && !repeat {
                *h.opened.entry(uid.clone()).or_default() += 1;
            }
            let latest = h.latest.entry(uid.clone()).or_insert((0, d.status));
            if d.version >= latest.0 {
                *latest = (d.version, d.status);
            }
            match seen.get(&(uid.clone(), d.version)) {
                Some(c) if *c == content => h.repeated_versions += 1,
                Some(_) => {
                    h.conflicting_versions.insert((uid, d.version));
                }
                None => {
                    seen.insert((uid, d.version), content);
                }
            }
        }
        h
    }
}

/// Polls `f` until it answers `Ok` or panics after `timeout` with what it waited for and the
/// last `Err` it gave (the state a person needs to see).
pub async fn until<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let end = Instant::now() + timeout;
    loop {
        match f().await {
            Ok(t) => return t,
            Err(state) if Instant::now() > end => {
                panic!("timed out after {timeout:?} waiting for: {what}; last state: {state}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Publishes `studies` at `rate` per second in the background, as a PACS gateway would.
pub fn start_replay(
    p: &Pipeline,
    studies: &[ReplayStudy],
    rate: f64,
    inline_max: u64,
    seed: u64,
) -> JoinHandle<Vec<Published>> {
    let producer = Producer::new(&p.kafka).expect("producer");
    let codec = p.codec.clone();
    let studies = studies.to_vec();
    tokio::spawn(async move {
        let pace = Pace {
            arrival: Arrival::Constant,
            rate,
            inline_max,
            seed,
        };
        let out = publish(&producer, &codec, &studies, pace, |_| {})
            .await
            .expect("replay publishes every study");
        producer.flush(Duration::from_secs(30));
        out
    })
}

/// How much longer each killed service stays down (`CXRFLOW_CRASH_EXTRA_DOWNTIME_MS`).
///
/// Default 0: a killed service is started again at once, as an orchestrator would. The
/// replacement then joins while its SIGKILLed predecessor still leads the group; published
/// tansu 0.6.0 could settle the group with nothing assigned to anybody, which the embedded
/// broker's patch fixes (services/common/src/kafka/ownership.rs explains the coordinator's path;
/// the stage's ownership watchdog stays as the backstop). Set it above the session timeout to
/// test restarts that never meet the dead member.
pub fn extra_downtime_ms() -> u64 {
    std::env::var("CXRFLOW_CRASH_EXTRA_DOWNTIME_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A block of `n` consecutive free loopback ports (services of `cxrflow up` take consecutive
/// HTTP ports), below the kernel's ephemeral range (32768 on): outgoing connections take those
/// ports at any moment, between this check and the services' binds.
pub fn free_port_block(n: u16) -> u16 {
    for _ in 0..200 {
        let base = 20_000 + rand::random::<u16>() % 12_000;
        let held: Vec<_> = (0..n)
            .filter_map(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if held.len() == n as usize {
            return base;
        }
    }
    panic!("no block of {n} free loopback ports");
}

/// Whether a process runs (a zombie has closed its port and files: as good as gone).
pub fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}
