//! The baseline most hospital AI prototypes ship: a Python FastAPI service (bench/python/app.py)
//! under uvicorn that decodes the posted PNG, letterboxes it to the model input and calls
//! onnxruntime once per request. Started on loopback from its own venv; driven open-loop (or
//! closed-loop to find its saturation throughput) with a client deadline per request.

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
        let child = Command::new(python)
            .args(&args)
            .env("CXRFLOW_BENCH_MODEL_DIR", model_dir)
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
            command: format!("{} {}", python.display(), args.join(" ")),
        };
        if let Err(e) = wait_http_ok(&format!("{url}/healthz"), Duration::from_secs(120)).await {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            anyhow::bail!("FastAPI baseline did not start: {e}\n{log}");
        }
        server.info = reqwest::get(format!("{url}/info")).await?.json().await?;
        Ok(server)
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
