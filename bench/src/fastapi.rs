//! The baseline most hospital AI prototypes ship: a Python FastAPI service (bench/python/app.py)
//! under uvicorn that decodes the posted PNG, letterboxes it to the model input and calls
//! onnxruntime once per request. Started on loopback from its own venv with a given number of
//! uvicorn worker processes and intra-op threads per session; driven open-loop (or closed-loop
//! to find its saturation throughput) with a client deadline per request.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cxrflow_common::time::now_millis;
use tokio::time::Instant;

use crate::corpus::Corpus;
use crate::load::Outcome;
use crate::schedule::drive;
use crate::stack::{free_port, wait_http_ok};

pub struct Server {
    child: Child,
    pub url: String,
    /// What the app says about itself (onnxruntime version, session threads).
    pub info: serde_json::Value,
    pub command: String,
}

impl Server {
    pub async fn start(
        python: &Path,
        app_dir: &Path,
        model_dir: &Path,
        workers: usize,
        intra_op_threads: Option<usize>,
        log: PathBuf,
    ) -> anyhow::Result<Server> {
        let port = free_port()?;
        let args = vec![
            "-m".to_string(),
            "uvicorn".into(),
            "app:app".into(),
            "--app-dir".into(),
            app_dir.display().to_string(),
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            port.to_string(),
            "--workers".into(),
            workers.to_string(),
            "--log-level".into(),
            "warning".into(),
            "--no-access-log".into(),
        ];
        let mut command = Command::new(python);
        command
            .args(&args)
            .env("CXRFLOW_BENCH_MODEL_DIR", model_dir);
        let mut env = String::new();
        if let Some(t) = intra_op_threads {
            command.env("CXRFLOW_BENCH_INTRA_OP_THREADS", t.to_string());
            env = format!("CXRFLOW_BENCH_INTRA_OP_THREADS={t} ");
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (bench/python-env.sh makes it)",
                    python.display()
                )
            })?;
        let url = format!("http://127.0.0.1:{port}");
        let mut server = Server {
            child,
            url: url.clone(),
            info: serde_json::Value::Null,
            command: format!("{env}{} {}", python.display(), args.join(" ")),
        };
        if let Err(e) = wait_http_ok(&format!("{url}/healthz"), Duration::from_secs(120)).await {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            anyhow::bail!("FastAPI baseline did not start: {e}\n{log}");
        }
        server.info = reqwest::get(format!("{url}/info")).await?.json().await?;
        Ok(server)
    }

    /// Waits until `workers` distinct worker processes have answered (each on a new
    /// connection: the kernel hands a connection to whichever worker is accepting, so one that
    /// is still loading its session is not asked); a measurement that starts earlier would
    /// time fewer workers than the layout has.
    pub async fn await_workers(&self, workers: usize, within: Duration) -> anyhow::Result<()> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(10))
            .build()?;
        let end = Instant::now() + within;
        let mut seen = std::collections::HashSet::new();
        while seen.len() < workers {
            anyhow::ensure!(
                Instant::now() < end,
                "only {} of {workers} uvicorn workers answered within {within:?}",
                seen.len()
            );
            let asks = (0..2 * workers).map(|_| {
                let http = http.clone();
                let url = format!("{}/info", self.url);
                async move {
                    let v: serde_json::Value =
                        http.get(url).send().await.ok()?.json().await.ok()?;
                    v["pid"].as_u64()
                }
            });
            let before = seen.len();
            seen.extend(futures::future::join_all(asks).await.into_iter().flatten());
            if seen.len() == before {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub async fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end && matches!(self.child.try_wait(), Ok(None)) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A client with the run's deadline per request and no connection limit.
pub fn client(deadline: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(deadline)
        .pool_idle_timeout(Duration::from_secs(30))
        .build()?)
}

/// Posts send `i`'s image; latency counts from `sent_ms` (its scheduled time).
async fn predict(
    http: reqwest::Client,
    url: String,
    corpus: Arc<Corpus>,
    i: usize,
    sent_ms: f64,
) -> Outcome {
    let img = corpus.image(i);
    let r = http
        .post(&url)
        .header("content-type", "image/png")
        .body(img.png.as_ref().clone())
        .send()
        .await;
    let (ok, timed_out) = match r {
        Ok(resp) if resp.status().is_success() => match resp.bytes().await {
            Ok(_) => (true, false),
            Err(e) => (false, e.is_timeout()),
        },
        Ok(_) => (false, false),
        Err(e) => (false, e.is_timeout()),
    };
    Outcome {
        sent_ms,
        finished_ms: Some(now_millis() as f64),
        ok,
        timed_out,
        critical: img.critical,
    }
}

/// Sends at `offsets` (open loop) and waits for every answer or deadline.
pub async fn open_loop(
    server: &Server,
    corpus: &Arc<Corpus>,
    offsets: &[Duration],
    deadline: Duration,
) -> anyhow::Result<Vec<Outcome>> {
    let http = client(deadline)?;
    let url = format!("{}/predict", server.url);
    let start = Instant::now();
    let epoch0 = now_millis() as f64;
    let tasks = drive(start, offsets, |i, due| {
        let sent_ms = epoch0 + (due - start).as_secs_f64() * 1e3;
        predict(http.clone(), url.clone(), corpus.clone(), i, sent_ms)
    })
    .await;
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await?);
    }
    Ok(out)
}

/// `concurrency` clients each sending the next request as soon as the last answered, for
/// `duration`: the saturation throughput.
pub async fn closed_loop(
    server: &Server,
    corpus: &Arc<Corpus>,
    concurrency: usize,
    duration: Duration,
    deadline: Duration,
) -> anyhow::Result<Vec<Outcome>> {
    let http = client(deadline)?;
    let url = format!("{}/predict", server.url);
    let end = Instant::now() + duration;
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let (http, url, corpus) = (http.clone(), url.clone(), corpus.clone());
        workers.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut i = w;
            while Instant::now() < end {
                let sent = now_millis() as f64;
                out.push(predict(http.clone(), url.clone(), corpus.clone(), i, sent).await);
                i += concurrency;
            }
            out
        }));
    }
    let mut out = Vec::new();
    for w in workers {
        out.extend(w.await?);
    }
    Ok(out)
}
