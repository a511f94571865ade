//! The host's drain order: ready while serving; not ready as soon as shutdown fires, while the
//! work is still draining, with `/metrics` still answering; side tasks told to stop when the
//! drain starts or, for those that finish the stage's work, once it has drained; the HTTP
//! endpoint gone when `serve` returns. An endpoint that is an intake stops when the drain starts.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cxrflow_common::auth::Routes;
use cxrflow_common::{Host, KafkaArgs, ServiceArgs};
use cxrflow_testkit::eventually;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

/// No broker is needed: the producer connects lazily and no stage runs.
async fn host() -> Host {
    Host::start(
        "host-test",
        &KafkaArgs::for_bootstrap("127.0.0.1:1"),
        &ServiceArgs::local(),
        |_| {},
        Routes::new(),
    )
    .await
    .unwrap()
}

async fn status(url: &str) -> Option<u16> {
    reqwest::get(url).await.ok().map(|r| r.status().as_u16())
}

type Log = Arc<Mutex<Vec<&'static str>>>;

fn note(log: &Log, what: &'static str) {
    log.lock().unwrap().push(what);
}

fn noted(log: &Log, what: &str) -> bool {
    log.lock().unwrap().contains(&what)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_side_tasks_and_the_endpoint_follow_the_drain_order() {
    let mut host = host().await;
    let base = format!("http://{}", host.http_addr);
    let log: Log = Arc::default();
    let l = log.clone();
    host.spawn(|stop| async move {
        stop.cancelled().await;
        note(&l, "follower stopped");
    });
    let l = log.clone();
    host.spawn_until_drained(|stop| async move {
        stop.cancelled().await;
        note(&l, "worker stopped");
    });
    let shutdown = CancellationToken::new();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let (s, l) = (shutdown.clone(), log.clone());
    let work = async move {
        s.cancelled().await;
        // Draining until the test lets go.
        let _ = released.await;
        note(&l, "work drained");
        Ok(())
    };
    let served = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { host.serve_until(&shutdown, work).await }
    });

    let readyz = format!("{base}/readyz");
    eventually(WAIT, "ready while serving", || async {
        status(&readyz).await == Some(200)
    })
    .await;

    shutdown.cancel();
    eventually(WAIT, "not ready once the drain starts", || async {
        status(&readyz).await == Some(503)
    })
    .await;
    assert_eq!(
        status(&format!("{base}/metrics")).await,
        Some(200),
        "metrics answer through the drain"
    );
    eventually(
        WAIT,
        "the follower told to stop at the drain's start",
        || {
            let log = log.clone();
            async move { noted(&log, "follower stopped") }
        },
    )
    .await;
    assert!(
        !noted(&log, "worker stopped"),
        "a worker runs until the work has drained: {:?}",
        log.lock().unwrap()
    );

    release.send(()).unwrap();
    tokio::time::timeout(WAIT, served)
        .await
        .expect("serve returns after the drain")
        .unwrap()
        .unwrap();
    let order = log.lock().unwrap().clone();
    assert_eq!(
        order,
        ["follower stopped", "work drained", "worker stopped"],
        "drain order"
    );
    assert_eq!(status(&readyz).await, None, "the endpoint is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intake_endpoint_stops_taking_requests_when_the_drain_starts() {
    let mut host = host().await;
    host.http_is_intake();
    let readyz = format!("http://{}/readyz", host.http_addr);
    let shutdown = CancellationToken::new();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let s = shutdown.clone();
    let served = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            host.serve_until(&shutdown, async move {
                s.cancelled().await;
                let _ = released.await;
                Ok(())
            })
            .await
        }
    });
    eventually(WAIT, "ready while serving", || async {
        status(&readyz).await == Some(200)
    })
    .await;
    shutdown.cancel();
    eventually(WAIT, "no new request taken while draining", || async {
        status(&readyz).await.is_none()
    })
    .await;
    release.send(()).unwrap();
    tokio::time::timeout(WAIT, served)
        .await
        .expect("serve returns after the drain")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_dropped_before_serving_leaves_no_endpoint() {
    let host = host().await;
    let healthz = format!("http://{}/healthz", host.http_addr);
    assert_eq!(status(&healthz).await, Some(200));
    drop(host);
    eventually(WAIT, "the endpoint stops with the host", || async {
        status(&healthz).await.is_none()
    })
    .await;
}
