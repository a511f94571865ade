//! Traces leave the process: every service its own OS process (as deployed), pointed at a real
//! OTLP/HTTP receiver only through the standard `OTEL_EXPORTER_OTLP_ENDPOINT` variable (a small
//! Python server that decodes the protobuf with the official `opentelemetry-proto` definitions,
//! `tests/otlp/receiver.py`). One study's spans from ingest, preprocess, inference and triage
//! arrive under one trace id, each with its own `service.name`, and the services' JSON log
//! lines for that study carry the same trace id.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{until, Pipeline, Service};

struct Receiver {
    child: Child,
    port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

use cxrflow_testkit::tools_python as python;

fn start_receiver(port: u16) -> Receiver {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("spans.jsonl");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("otlp/receiver.py");
    let mut child = Command::new(python())
        .arg(&script)
        .arg(port.to_string())
        .arg(&out)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{} cannot run (scripts/prereqs.sh makes the tools venv): {e}",
                python().display()
            )
        });
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first.trim(), "listening", "the receiver started");
    Receiver {
        child,
        port,
        out,
        _dir: dir,
    }
}

#[derive(Debug)]
struct Span {
    service: String,
    trace_id: String,
    name: String,
}

fn spans(r: &Receiver) -> Vec<Span> {
    std::fs::read_to_string(&r.out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| Span {
            service: v["service"].as_str().unwrap_or_default().to_string(),
            trace_id: v["trace_id"].as_str().unwrap_or_default().to_string(),
            name: v["name"].as_str().unwrap_or_default().to_string(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_study_is_one_trace_across_every_service_process() {
    let _turn = support::exclusive();
    let receiver = start_receiver(cxrflow_testkit::free_port());
    // The standard variables only: the services' own flag stays unset. A short batch delay so
    // spans leave within the test's patience.
    let endpoint = format!("http://127.0.0.1:{}", receiver.port);
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint);
    std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "200");
    std::env::remove_var("CXRFLOW_OTLP_ENDPOINT");
    // The stage runtime's per-record line ("record processed") is at debug.
    std::env::set_var("RUST_LOG", "info,cxrflow_common::kafka::stage=debug");
    let started = std::time::Instant::now();
    let p = Pipeline::start().await;
    eprintln!("pipeline ready in {:?}", started.elapsed());

    let studies = support::studies(&p.dataset, 1, 41);
    let uid = studies[0].uid.clone();
    support::start_replay(&p, &studies, 2.0, 256 * 1024, 41)
        .await
        .expect("replay task");

    let want: BTreeSet<&str> = [
        "cxrflow-ingest",
        "cxrflow-preprocess",
        "cxrflow-inference",
        "cxrflow-triage",
    ]
    .into();
    let trace = until(
        Duration::from_secs(120),
        "one trace with spans from ingest, preprocess, inference and triage",
        || {
            let receiver = &receiver;
            let want = &want;
            async move {
                let mut by_trace: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
                for s in spans(receiver) {
                    by_trace.entry(s.trace_id).or_default().insert(s.service);
                }
                by_trace
                    .iter()
                    .find(|(_, services)| want.iter().all(|w| services.contains(*w)))
                    .map(|(t, _)| t.clone())
                    .ok_or_else(|| format!("traces and their services: {by_trace:?}"))
            }
        },
    )
    .await;
    eprintln!(
        "one trace across the services {:?} after the start",
        started.elapsed()
    );
    let names: BTreeSet<String> = spans(&receiver)
        .into_iter()
        .filter(|s| s.trace_id == trace)
        .map(|s| format!("{}:{}", s.service, s.name))
        .collect();
    assert!(names.contains("cxrflow-triage:record"), "{names:?}");

    // The JSON log lines of the record spans carry the trace id.
    let logged = until(
        Duration::from_secs(30),
        "a triage log line with the trace id",
        || {
            let path = p.log_path(Service::Triage);
            let trace = trace.clone();
            async move {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                text.lines()
                    .find(|l| l.contains(&format!("\"trace_id\":\"{trace}\"")))
                    .map(str::to_string)
                    .ok_or_else(|| "no line yet".to_string())
            }
        },
    )
    .await;
    let line: serde_json::Value = serde_json::from_str(&logged).expect("a JSON log line");
    assert_eq!(line["span"]["trace_id"], trace.as_str(), "{line}");
    eprintln!(
        "study {uid}: trace {trace} with {} spans: {names:?}",
        names.len()
    );
}
