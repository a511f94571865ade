//! Shared helpers of the ingest integration tests: a running ingest service, scan events with
//! valid UIDs, a tiny scriptable HTTP server.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cxrflow_common::kafka::Producer;
use cxrflow_common::KafkaArgs;
use cxrflow_contracts::{Codec, DeadLetter, OrderPriority, ScanEvent, StudyContext};
use cxrflow_ingest::Config;
use cxrflow_testkit::{service_args, TestService};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Starts ingest with `cfg` in this process.
pub fn start(cfg: Config) -> TestService {
    TestService::spawn("ingest", cfg.service.http, |s| cxrflow_ingest::run(cfg, s))
}

/// Ingest settings for a test: everything under `dir`, short timeouts, a fixed HTTP port.
pub fn config(kafka: &KafkaArgs, dir: &Path) -> Config {
    let mut cfg = Config::defaults(kafka.clone(), service_args());
    cfg.blob_store.url = Some(format!("file://{}", dir.join("blobs").display()));
    cfg.ingest_db = dir.join("ingest.db");
    cfg.connect_timeout_ms = 500;
    cfg.fetch_timeout_ms = 500;
    cfg
}

pub fn now() -> i64 {
    cxrflow_common::time::now_millis()
}

/// A scan event for study number `n` (valid UIDs), image bytes set by the caller.
pub fn scan(n: u32) -> ScanEvent {
    let study = format!("1.2.826.0.1.3680043.10.{n}");
    ScanEvent {
        event_id: format!("event-{n}-{:08x}", rand::random::<u32>()),
        study: StudyContext {
            site_id: "site-a".into(),
            series_instance_uid: format!("{study}.1"),
            sop_instance_uid: format!("{study}.1.1"),
            study_instance_uid: study,
            accession_number: Some(format!("acc-{n}")),
            patient_ref: format!("pseudo-{n}"),
            modality: "CR".into(),
            view_position: Some("PA".into()),
            patient_age_years: Some(60),
            patient_sex: Some("F".into()),
            acquired_at: now() - 60_000,
            published_at: now(),
            priority_hint: OrderPriority::Routine,
        },
        media_type: "image/png".into(),
        image_inline: None,
        image_uri: None,
        image_sha256: None,
        image_size_bytes: None,
    }
}

/// Distinct image bytes for `n` (ingest does not decode, so any bytes do).
pub fn image(n: u32, len: usize) -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
    b.extend((0..len).map(|i| (i as u32).wrapping_mul(31).wrapping_add(n * 7919) as u8));
    b
}

pub async fn produce(kafka: &KafkaArgs, codec: &Codec, scans: &[ScanEvent]) -> Vec<(i32, i64)> {
    let p = Producer::new(kafka).unwrap();
    let mut at = Vec::new();
    for s in scans {
        at.push(p.send(codec, s, &BTreeMap::new()).await.unwrap());
    }
    at
}

/// What the test HTTP server answers on a path.
#[derive(Clone)]
pub enum Route {
    Ok(Vec<u8>),
    Status(u16),
    /// 200 with `len` bytes and no Content-Length (close-delimited): only a streaming cap stops it.
    Endless(usize),
    /// Accepts and never answers while `hang` is set; then serves the bytes.
    Hang(Arc<AtomicBool>, Vec<u8>),
    /// 302 to this URL.
    Redirect(String),
}

/// A tiny HTTP/1.1 server on loopback, scripted per path.
pub struct HttpServer {
    pub port: u16,
    pub routes: Arc<Mutex<HashMap<String, Route>>>,
    /// Requests received per path.
    pub hits: Arc<Mutex<HashMap<String, Arc<AtomicUsize>>>>,
}

impl HttpServer {
    pub async fn start() -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let routes: Arc<Mutex<HashMap<String, Route>>> = Arc::default();
        let hits: Arc<Mutex<HashMap<String, Arc<AtomicUsize>>>> = Arc::default();
        let (r, h) = (routes.clone(), hits.clone());
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let (r, h) = (r.clone(), h.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let line = String::from_utf8_lossy(&head)
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                    h.lock()
                        .unwrap()
                        .entry(path.clone())
                        .or_default()
                        .fetch_add(1, Ordering::SeqCst);
                    let route = r
                        .lock()
                        .unwrap()
                        .get(&path)
                        .cloned()
                        .unwrap_or(Route::Status(404));
                    let respond = |status: u16, body: &[u8]| {
                        let mut out = format!(
                            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        out.extend_from_slice(body);
                        out
                    };
                    let out = match route {
                        Route::Ok(body) => respond(200, &body),
                        Route::Status(s) => respond(s, b"no"),
                        Route::Redirect(to) => format!(
                            "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        )
                        .into_bytes(),
                        Route::Endless(len) => {
                            let _ = sock
                                .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
                                .await;
                            let chunk = vec![7u8; 1024];
                            let mut sent = 0;
                            while sent < len {
                                if sock.write_all(&chunk).await.is_err() {
                                    return;
                                }
                                sent += chunk.len();
                            }
                            let _ = sock.shutdown().await;
                            return;
                        }
                        Route::Hang(hang, body) => {
                            if hang.load(Ordering::SeqCst) {
                                // Hold the connection open, answering nothing, until released.
                                while hang.load(Ordering::SeqCst) {
                                    tokio::time::sleep(Duration::from_millis(50)).await;
                                }
                                return;
                            }
                            respond(200, &body)
                        }
                    };
                    let _ = sock.write_all(&out).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        HttpServer { port, routes, hits }
    }

    pub fn route(&self, path: &str, route: Route) -> String {
        self.routes.lock().unwrap().insert(path.to_string(), route);
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn hits(&self, path: &str) -> usize {
        self.hits
            .lock()
            .unwrap()
            .get(path)
            .map_or(0, |c| c.load(Ordering::SeqCst))
    }
}

/// Dead letters by the study they name: study UID → (reason, error).
pub fn dead_letters_by_study(dlq: &[DeadLetter]) -> HashMap<String, (String, String)> {
    dlq.iter()
        .map(|d| {
            (
                d.study_instance_uid.clone().unwrap_or_default(),
                (d.reason.clone(), d.error.clone()),
            )
        })
        .collect()
}
