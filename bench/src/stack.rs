//! The cxrflow stack under test, deployed as it is in production: the embedded broker (tansu,
//! on-disk storage) and one process per service (`cxrflow <service>` of the umbrella binary),
//! so each service's peak RSS and CPU time can be read from /proc. Everything lives in a
//! scratch directory that is dropped with the stack.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use cxrflow_common::broker::EmbeddedBroker;
use cxrflow_common::kafka::admin::{all_topics, ensure_topics};
use cxrflow_common::KafkaArgs;
use serde::Serialize;

/// How the inference service is laid out (matched to the best bare ORT layout).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct InferenceLayout {
    /// Inference processes in one consumer group.
    pub replicas: usize,
    /// Sessions per process (the bare search's concurrent sessions, in one process as there).
    pub sessions: usize,
    pub intra_op_threads: usize,
    pub max_batch: usize,
    pub max_wait_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StackConfig {
    pub bin: PathBuf,
    pub models_dir: PathBuf,
    /// `name/version`.
    pub model: String,
    pub inference: InferenceLayout,
    pub partitions: i32,
    /// Directories ingest may read `file://` images from.
    pub ingest_file_roots: Vec<PathBuf>,
    /// `RUST_LOG` of the services.
    pub log_filter: String,
}

pub struct Service {
    pub name: String,
    pub port: u16,
    child: Child,
}

impl Service {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

pub struct Stack {
    pub kafka: KafkaArgs,
    /// The blob store ingest, preprocess and triage share (`file://…`).
    pub blobs: String,
    pub services: Vec<Service>,
    pub broker_pid: Option<u32>,
    broker: EmbeddedBroker,
    _dir: tempfile::TempDir,
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until `GET url` answers 2xx.
pub async fn wait_http_ok(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if let Ok(r) = http.get(url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("{url} not ready after {timeout:?}")
}

fn service_args(cfg: &StackConfig, name: &str, dir: &Path, blobs: &str) -> Vec<String> {
    let d = |f: &str| dir.join(f).display().to_string();
    let v: Vec<String> = match name {
        "ingest" => {
            let mut v = vec![
                "--blob-store".into(),
                blobs.into(),
                "--ingest-db".into(),
                d("ingest.db"),
            ];
            for root in &cfg.ingest_file_roots {
                v.push("--ingest-file-root".into());
                v.push(root.display().to_string());
            }
            v
        }
        "preprocess" => vec!["--blob-store".into(), blobs.into()],
        "triage" => vec![
            "--blob-store".into(),
            blobs.into(),
            "--ordering".into(),
            "pooled".into(),
        ],
        "feedback" => vec!["--store".into(), format!("sqlite:{}", d("feedback.db"))],
        "drift" => vec!["--drift-db".into(), d("drift.db")],
        _ => {
            let i = &cfg.inference;
            vec![
                "--models-dir".into(),
                cfg.models_dir.display().to_string(),
                "--model".into(),
                cfg.model.clone(),
                "--intra-op-threads".into(),
                i.intra_op_threads.to_string(),
                "--sessions".into(),
                i.sessions.to_string(),
                "--max-batch".into(),
                i.max_batch.to_string(),
                "--max-wait-ms".into(),
                i.max_wait_ms.to_string(),
                "--reload-interval-ms".into(),
                "0".into(),
            ]
        }
    };
    v
}

impl Stack {
    /// Starts the broker, creates the topics, starts every service and waits until each is
    /// ready.
    pub async fn start(cfg: &StackConfig, scratch: &Path) -> anyhow::Result<Stack> {
        std::fs::create_dir_all(scratch)?;
        let dir = tempfile::Builder::new()
            .prefix("stack-")
            .tempdir_in(scratch)?;
        let root = dir.path().to_path_buf();
        let port = free_port()?;
        let broker_dir = root.join("broker");
        let broker =
            tokio::task::spawn_blocking(move || EmbeddedBroker::start(&broker_dir, port)).await??;
        let broker_pid = crate::procfs::children_named("tansu").into_iter().max();
        let kafka = KafkaArgs::for_bootstrap(broker.bootstrap());
        ensure_topics(&kafka, &all_topics(), cfg.partitions, 1).await?;
        std::fs::create_dir_all(root.join("blobs"))?;
        let blobs = format!("file://{}", root.join("blobs").display());

        let mut names: Vec<String> = vec!["ingest".into(), "preprocess".into()];
        for r in 0..cfg.inference.replicas.max(1) {
            names.push(format!("inference-{r}"));
        }
        names.extend(["triage", "feedback", "drift"].map(String::from));
        let mut services = Vec::new();
        for name in names {
            let svc = name.split('-').next().unwrap_or(&name).to_string();
            let port = free_port()?;
            let log = std::fs::File::create(root.join(format!("{name}.log")))?;
            let child = Command::new(&cfg.bin)
                .arg(&svc)
                .args(["--bootstrap", &kafka.bootstrap])
                .args(["--http", &format!("127.0.0.1:{port}")])
                // A throw-away loopback stack measured for speed, not access control.
                .arg("--insecure-no-auth")
                .args(service_args(cfg, &svc, &root, &blobs))
                .env("RUST_LOG", &cfg.log_filter)
                .env("CXRFLOW_LOG_FORMAT", "json")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {} {svc}", cfg.bin.display()))?;
            services.push(Service { name, port, child });
        }
        let stack = Stack {
            kafka,
            blobs,
            services,
            broker_pid,
            broker,
            _dir: dir,
        };
        for s in &stack.services {
            let url = format!("http://127.0.0.1:{}/readyz", s.port);
            if let Err(e) = wait_http_ok(&url, Duration::from_secs(180)).await {
                let log = std::fs::read_to_string(root.join(format!("{}.log", s.name)))
                    .unwrap_or_default();
                let tail: String = log
                    .chars()
                    .rev()
                    .take(3000)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                anyhow::bail!("{} did not become ready: {e}\n{tail}", s.name);
            }
        }
        Ok(stack)
    }

    pub fn triage_url(&self) -> Option<String> {
        self.services
            .iter()
            .find(|s| s.name == "triage")
            .map(|s| format!("http://127.0.0.1:{}", s.port))
    }

    /// Every process of the stack, broker included, by name.
    pub fn pids(&self) -> Vec<(String, u32)> {
        let mut v: Vec<(String, u32)> = self
            .services
            .iter()
            .map(|s| (s.name.clone(), s.pid()))
            .collect();
        if let Some(p) = self.broker_pid {
            v.push(("broker (tansu)".into(), p));
        }
        v
    }

    /// SIGTERM to every service (graceful drain), SIGKILL to any still running after 15 s,
    /// then the broker.
    pub async fn stop(mut self) {
        for s in &self.services {
            let _ = Command::new("kill")
                .args(["-TERM", &s.pid().to_string()])
                .status();
        }
        let end = Instant::now() + Duration::from_secs(15);
        for s in &mut self.services {
            while Instant::now() < end && matches!(s.child.try_wait(), Ok(None)) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if matches!(s.child.try_wait(), Ok(None)) {
                let _ = s.child.kill();
            }
            let _ = s.child.wait();
        }
        self.broker.kill();
    }
}

impl Drop for Stack {
    /// A bench that fails half-way leaves no service running (the broker kills itself).
    fn drop(&mut self) {
        for s in &mut self.services {
            if matches!(s.child.try_wait(), Ok(None)) {
                let _ = s.child.kill();
                let _ = s.child.wait();
            }
        }
    }
}
