//! The results service against a real broker, a real PACS (DCMTK's `storescp`) and an HTTP
//! server playing the FHIR endpoint: decisions on `cxr.triage.v1` arrive at both, once per
//! decision version, across destinations that are down, a 503, a restart with deliveries
//! pending and a re-read decision; a refusal is dead-lettered with the server's answer.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use cxrflow_common::kafka::Producer;
use cxrflow_common::KafkaArgs;
use cxrflow_contracts::*;
use cxrflow_results::Config;
use cxrflow_testkit::{eventually, free_port, read_records, service_args, Broker, TestService};
use support::*;

#[derive(Debug, Clone)]
struct Post {
    authorization: Option<String>,
    content_type: Option<String>,
    bundle: serde_json::Value,
    answered: u16,
}

#[derive(Clone)]
struct Endpoint {
    posts: Arc<Mutex<Vec<Post>>>,
    /// Answer 503 to this many POSTs first.
    unavailable_first: Arc<AtomicUsize>,
    /// Every other answer.
    status: u16,
    body: &'static str,
}

impl Endpoint {
    fn posts(&self) -> Vec<Post> {
        self.posts.lock().unwrap().clone()
    }

    fn accepted(&self) -> Vec<Post> {
        self.posts()
            .into_iter()
            .filter(|p| p.answered < 300)
            .collect()
    }
}

async fn fhir_post(
    State(e): State<Endpoint>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let status = if e
        .unavailable_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        503
    } else {
        e.status
    };
    e.posts.lock().unwrap().push(Post {
        authorization: h("authorization"),
        content_type: h("content-type"),
        bundle: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        answered: status,
    });
    let body = if status == 503 {
        "busy".to_string()
    } else {
        e.body.to_string()
    };
    (StatusCode::from_u16(status).unwrap(), body)
}

/// An HTTP server on `port` answering `POST /fhir`.
async fn start_endpoint(
    port: u16,
    unavailable_first: usize,
    status: u16,
    body: &'static str,
) -> Endpoint {
    let e = Endpoint {
        posts: Arc::default(),
        unavailable_first: Arc::new(AtomicUsize::new(unavailable_first)),
        status,
        body,
    };
    let app = axum::Router::new()
        .route("/fhir", post(fhir_post))
        .with_state(e.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    e
}

struct Service(TestService);

impl Service {
    fn start(
        kafka: &KafkaArgs,
        state: &Path,
        fhir_port: Option<u16>,
        pacs_port: Option<u16>,
    ) -> Service {
        let mut svc = service_args();
        svc.drain_timeout_ms = 3_000;
        // One record at a time: a re-read decision is judged before the next one of its
        // partition, so "the next version arrived" means "the duplicate was not delivered".
        svc.max_in_flight = 1;
        let mut cfg = Config::defaults(kafka.clone(), svc);
        cfg.fhir_url = fhir_port.map(|p| format!("http://127.0.0.1:{p}/fhir"));
        let token = state.join("fhir-token");
        std::fs::write(&token, "secret-token\n").unwrap();
        cfg.fhir_token_file = Some(token);
        cfg.dicom_destination = pacs_port.map(|p| format!("PACS@127.0.0.1:{p}").parse().unwrap());
        cfg.state_dir = state.join("results");
        cfg.retry_min_ms = 100;
        cfg.retry_max_ms = 500;
        cfg.destination_timeout_s = 5;
        Service(TestService::spawn("results", cfg.service.http, |s| {
            cxrflow_results::run(cfg, s)
        }))
    }

    async fn metric(&self, series: &str) -> f64 {
        self.0.metric(series).await.unwrap_or(-1.0)
    }

    async fn stop(self) {
        self.0.stop().await;
    }
}

async fn publish(kafka: &KafkaArgs, codec: &Codec, decisions: &[TriageDecision]) {
    let producer = Producer::new(kafka).unwrap();
    for d in decisions {
        producer.send(codec, d, &Default::default()).await.unwrap();
    }
}

fn pending_files(state: &Path, destination: &str) -> usize {
    std::fs::read_dir(state.join("results").join(destination).join("pending"))
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))
            })
            .count()
        })
        .unwrap_or(0)
}

/// The DiagnosticReport identifier values of the accepted bundles.
fn report_ids(posts: &[Post]) -> Vec<String> {
    let mut ids: Vec<String> = posts
        .iter()
        .flat_map(|p| p.bundle["entry"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["resource"]["resourceType"] == "DiagnosticReport")
        .map(|e| {
            e["resource"]["identifier"][0]["value"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    ids.sort();
    ids
}

const S1: &str = "1.2.826.0.1.3680043.8.498.101";
const S2: &str = "1.2.826.0.1.3680043.8.498.102";
const S3: &str = "1.2.826.0.1.3680043.8.498.103";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_wait_out_absent_destinations_and_a_restart_and_arrive_once_per_decision_version() {
    let broker = Broker::start();
    let kafka = broker.stack().await;
    let codec = Codec::with_static_registry().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (fhir_port, pacs_port) = (free_port(), free_port());

    // Both destinations are down.
    let a = Service::start(&kafka, state.path(), Some(fhir_port), Some(pacs_port));
    let mut read = decision(S3, 4, TriageTier::Urgent);
    read.status = WorklistStatus::Read;
    publish(
        &kafka,
        &codec,
        &[
            decision(S1, 1, TriageTier::Critical),
            decision(S2, 1, TriageTier::NotAssessable),
            decision(S3, 1, TriageTier::AiPending),
            read,
        ],
    )
    .await;
    eventually(Duration::from_secs(60), "two results pending and retried per destination", || async {
        let mut ok = true;
        for d in ["fhir", "dicom"] {
            ok &= a.metric(&format!("cxrflow_results_pending_deliveries{{destination=\"{d}\"}}")).await == 2.0;
            ok &= a.metric(&format!("cxrflow_results_deliveries_total{{destination=\"{d}\",outcome=\"retried\"}}")).await >= 1.0;
        }
        ok
    })
    .await;
    assert_eq!(
        a.metric("cxrflow_results_decisions_total{action=\"skipped_ai_pending\"}")
            .await,
        1.0
    );
    assert_eq!(
        a.metric("cxrflow_results_decisions_total{action=\"skipped_read\"}")
            .await,
        1.0
    );
    a.stop().await;
    assert_eq!(
        pending_files(state.path(), "fhir"),
        2,
        "pending deliveries are on disk"
    );
    assert_eq!(pending_files(state.path(), "dicom"), 2);

    // Both come up (the FHIR server busy once), and the service restarts.
    let fhir = start_endpoint(
        fhir_port,
        1,
        201,
        r#"{"resourceType":"Bundle","type":"transaction-response"}"#,
    )
    .await;
    let pacs = StoreScp::start("PACS", pacs_port, &state.path().join("pacs"));
    let b = Service::start(&kafka, state.path(), Some(fhir_port), Some(pacs_port));
    eventually(
        Duration::from_secs(60),
        "both pending results delivered after the restart",
        || async { fhir.accepted().len() == 2 && pacs.received().len() == 2 },
    )
    .await;
    assert_eq!(fhir.posts()[0].answered, 503, "the busy answer was retried");
    let want = vec![format!("{S1}-v1"), format!("{S2}-v1")];
    assert_eq!(report_ids(&fhir.accepted()), want);
    for p in fhir.posts() {
        assert_eq!(p.authorization.as_deref(), Some("Bearer secret-token"));
        assert_eq!(p.content_type.as_deref(), Some("application/fhir+json"));
        assert_eq!(p.bundle["type"], "transaction");
        for e in p.bundle["entry"].as_array().unwrap() {
            let cond = e["request"]["ifNoneExist"].as_str().unwrap();
            let id = &e["resource"]["identifier"][0];
            assert_eq!(
                cond,
                format!(
                    "identifier={}|{}",
                    id["system"].as_str().unwrap(),
                    id["value"].as_str().unwrap()
                ),
                "every create is conditional on the resource's own identifier"
            );
        }
    }
    let not_assessed = fhir
        .accepted()
        .into_iter()
        .flat_map(|p| p.bundle["entry"].as_array().cloned().unwrap())
        .find(|e| e["resource"]["identifier"][0]["value"] == format!("{S2}-v1"))
        .unwrap();
    assert!(not_assessed["resource"]["conclusion"]
        .as_str()
        .unwrap()
        .starts_with("Not assessed by AI: image unlike the training data"));
    assert!(not_assessed["resource"].get("result").is_none());

    // The same decision version read again (a Kafka re-delivery, a replay), then a new version.
    publish(
        &kafka,
        &codec,
        &[
            decision(S1, 1, TriageTier::Critical),
            decision(S1, 2, TriageTier::Critical),
        ],
    )
    .await;
    eventually(
        Duration::from_secs(60),
        "the new version delivered",
        || async { fhir.accepted().len() == 3 && pacs.received().len() == 3 },
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "the re-read version counted as a duplicate",
        || async {
            b.metric("cxrflow_results_decisions_total{action=\"duplicate\"}")
                .await
                >= 1.0
        },
    )
    .await;
    assert_eq!(
        report_ids(&fhir.accepted()),
        vec![format!("{S1}-v1"), format!("{S1}-v2"), format!("{S2}-v1")],
        "once per decision version"
    );
    assert_eq!(pacs.received().len(), 3, "{:?}", pacs.received());
    // The PACS writes its file before it answers: the counters follow within moments.
    eventually(
        Duration::from_secs(10),
        "three deliveries counted, none pending",
        || async {
            b.metric(
                "cxrflow_results_deliveries_total{destination=\"dicom\",outcome=\"delivered\"}",
            )
            .await
                == 3.0
                && b.metric("cxrflow_results_pending_deliveries{destination=\"fhir\"}")
                    .await
                    == 0.0
        },
    )
    .await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_result_is_dead_lettered_with_the_destination_answer() {
    let broker = Broker::start();
    let kafka = broker.stack().await;
    let codec = Codec::with_static_registry().unwrap();
    let state = tempfile::tempdir().unwrap();
    let fhir_port = free_port();
    const ANSWER: &str = r#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"Unknown code system urn:x"}]}"#;
    let fhir = start_endpoint(fhir_port, 0, 400, ANSWER).await;
    let s = Service::start(&kafka, state.path(), Some(fhir_port), None);
    publish(&kafka, &codec, &[decision(S1, 1, TriageTier::Critical)]).await;

    let dead: Vec<DeadLetter> = read_records(&kafka, &codec, 1, Duration::from_secs(60)).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let dl = &dead[0];
    assert_eq!(dl.stage, "results");
    assert_eq!(dl.reason, "results.fhir_refused");
    assert!(dl.error.starts_with("HTTP 400: "), "{}", dl.error);
    assert!(
        dl.error.contains("Unknown code system urn:x"),
        "{}",
        dl.error
    );
    assert_eq!(dl.study_instance_uid.as_deref(), Some(S1));
    assert_eq!(dl.source_topic, kafka.topic(topics::TRIAGE));
    let original: TriageDecision = codec.decode(dl.payload.as_deref().unwrap()).unwrap();
    assert_eq!(
        original.study.study_instance_uid, S1,
        "the dead letter carries the decision"
    );

    eventually(
        Duration::from_secs(20),
        "the refusal counted and off the queue",
        || async {
            s.metric("cxrflow_results_deliveries_total{destination=\"fhir\",outcome=\"refused\"}")
                .await
                == 1.0
                && s.metric("cxrflow_results_pending_deliveries{destination=\"fhir\"}")
                    .await
                    == 0.0
        },
    )
    .await;
    assert_eq!(fhir.posts().len(), 1, "a refusal is not retried");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_destination_it_reads_decisions_stays_ready_and_delivers_nothing() {
    let broker = Broker::start();
    let kafka = broker.stack().await;
    let codec = Codec::with_static_registry().unwrap();
    let state = tempfile::tempdir().unwrap();
    let s = Service::start(&kafka, state.path(), None, None);
    publish(&kafka, &codec, &[decision(S1, 1, TriageTier::Critical)]).await;
    eventually(
        Duration::from_secs(60),
        "the decision read and counted",
        || async {
            s.metric("cxrflow_results_decisions_total{action=\"no_destination\"}")
                .await
                == 1.0
        },
    )
    .await;
    let ready = reqwest::get(format!("{}/readyz", s.0.base()))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    assert!(
        !state.path().join("results").exists(),
        "no destination, no queue"
    );
    s.stop().await;
}
