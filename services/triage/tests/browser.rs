//! The worklist page in a real browser: headless Chromium (Debian's `chromium`) driven through
//! `chromedriver` by fantoccini, against the triage service on a real broker. A critical study
//! is listed above a routine one; an update that makes the routine study more urgent moves it
//! to the top through the SSE stream, without a reload; a report filled in and submitted from
//! the study view reaches `cxr.feedback.v1` and closes the study on the page; a second submit
//! is refused; an escalation shows its badge; a film of the read study arriving after its report
//! brings the study back with the badge "new image after report"; a film scored without a
//! patient age is marked "age unknown" until an update with an age. Screenshots go to
//! `<target>/test-artifacts/triage-worklist*.png`.
//!
//! Needs `chromium` and `chromedriver` (scripts/prereqs.sh): without them the test fails under
//! `CXRFLOW_REQUIRE_TOOLS=1` and is skipped and listed otherwise ([`cxrflow_testkit::tools`]).

use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cxrflow_common::auth::Role;
use cxrflow_common::blob::{BlobStore, BlobStoreArgs};
use cxrflow_common::KafkaArgs;
use cxrflow_contracts::*;
use cxrflow_testkit::keys::TestKeys;
use cxrflow_testkit::{read_records, require_tool, service_args, TestService};
use cxrflow_triage::clock::{Clock, ManualClock};
use cxrflow_triage::worklist::OrderingMode;
use cxrflow_triage::{run_observed, Config, Running};
use fantoccini::Locator;
use futures::FutureExt;
use serde_json::{json, Value};

#[path = "browser/driver.rs"]
mod driver;
mod support;
use driver::{artifacts_dir, ChromeDriver, Page};
use support::stack;

const T0: i64 = 1_700_000_000_000;
const ROUTINE: &str = "1.2.840.9.routine";
const CRITICAL: &str = "1.2.840.9.critical";
const BROKEN: &str = "1.2.840.9.broken";

fn prediction(uid: &str, finding: &str, p: f64, critical: bool, blob_uri: &str) -> Prediction {
    use cxrflow_testkit::records::{prediction, score, study};
    Prediction {
        blob_uri: blob_uri.into(),
        findings: vec![FindingScore {
            critical,
            urgent: !critical && URGENT_FINDINGS.contains(&finding),
            ..score(finding, p)
        }],
        ..prediction(StudyContext {
            acquired_at: T0,
            published_at: T0,
            ..study(uid)
        })
    }
}

/// A chest-X-ray-ish grey image: a bright mediastinum between two dark lung fields.
fn radiograph_png() -> Bytes {
    let img = image::GrayImage::from_fn(512, 512, |x, y| {
        let (dx, dy) = (x as f64 - 256.0, y as f64 - 280.0);
        let lung = |cx: f64| ((x as f64 - cx) / 90.0).powi(2) + (dy / 170.0).powi(2) < 1.0;
        let v = if dx.abs() < 35.0 {
            225.0
        } else if lung(150.0) || lung(362.0) {
            40.0 + 25.0 * ((y as f64 / 9.0).sin().abs())
        } else {
            170.0
        };
        image::Luma([v as u8])
    });
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("encode png");
    Bytes::from(out)
}

fn uids(rows: &[(String, String, String)]) -> Vec<&str> {
    rows.iter().map(|r| r.0.as_str()).collect()
}

struct Service {
    running: Running,
    service: TestService,
    keys: TestKeys,
}

async fn start_triage(kafka: &KafkaArgs, blob_url: &str, clock: &ManualClock) -> Service {
    let keys = TestKeys::new();
    let mut svc = service_args();
    svc.auth = keys.auth_args();
    svc.drain_timeout_ms = 3_000;
    let mut cfg = Config::defaults(kafka.clone(), svc);
    cfg.blob_store = BlobStoreArgs::at(blob_url);
    cfg.tick_ms = 50;
    cfg.ordering = OrderingMode::Pooled;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let service = TestService::spawn("triage", cfg.service.http, |s| {
        run_observed(cfg, clock, s, Some(tx))
    });
    let running = tokio::time::timeout(Duration::from_secs(30), rx)
        .await
        .expect("triage ready within 30 s")
        .expect("triage started");
    Service {
        running,
        service,
        keys,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_worklist_page_orders_updates_live_and_closes_a_reported_study() {
    let (Some(chromium), Some(driver_bin)) =
        (require_tool("chromium"), require_tool("chromedriver"))
    else {
        return;
    };
    let started = Instant::now();
    let shots = artifacts_dir();
    let _ = std::fs::remove_file(shots.join("triage-worklist-failure.png"));
    let driver = ChromeDriver::start(
        &driver_bin,
        &chromium,
        &shots.join("triage-chromedriver.log"),
    )
    .await;

    let (_stack, kafka, codec, producer, blob_url) = stack().await;
    let (blob_uri, _, _) = BlobStore::open(&blob_url, &[])
        .unwrap()
        .put_content_addressed(radiograph_png())
        .await
        .unwrap();
    let clock = ManualClock::at(T0 + 5 * 60_000);
    let svc = start_triage(&kafka, &blob_url, &clock).await;
    let send = |p: Prediction| {
        let (producer, codec) = (&producer, &codec);
        async move {
            producer
                .send(codec, &p, &Default::default())
                .await
                .expect("produce prediction");
        }
    };
    // The routine film came without a patient age (a router that strips it): scored, and
    // marked so.
    let mut no_age = prediction(ROUTINE, "Cardiomegaly", 0.2, false, &blob_uri);
    no_age.study.patient_age_years = None;
    send(no_age).await;
    send(prediction(CRITICAL, "Pneumothorax", 0.93, true, &blob_uri)).await;

    let browser = driver.browser().await;
    let page = Page {
        browser: &browser,
        shots: shots.clone(),
    };
    let base = format!("http://{}", svc.running.http_addr);
    // Close the session whatever happens, so no Chromium outlives the test.
    let outcome = std::panic::AssertUnwindSafe(async {
        browser
            .goto(&format!("{base}/"))
            .await
            .expect("open the page");

        // Not signed in: the sign-in form, which refuses a wrong key and takes the right one;
        // afterwards the page holds no credential a script could read (HttpOnly cookie, no
        // local storage).
        page.sign_in("cxrk_not-a-key").await;
        page.text_until("the refusal", "error", |t| t == "Sign-in refused.")
            .await;
        page.sign_in(svc.keys.key(Role::Reader)).await;
        page.text_until("the signed-in page", "who", |t| {
            t == "signed in as key:reader"
        })
        .await;
        let exposed = browser
            .execute(
                "return document.cookie + '|' + JSON.stringify(Object.assign({}, localStorage));",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(exposed, Value::String("|{}".into()), "a credential visible to scripts");
        // The only errors so far: the 401 that brought the sign-in page and the refused key.
        let signing_in = driver.severe_console_entries(&browser).await;
        assert!(
            signing_in.len() == 2
                && signing_in[0].contains(&format!("{base}/ "))
                && signing_in.iter().all(|e| e.contains("401")),
            "{signing_in:#?}"
        );

        // Both rows, critical first.
        let rows = page.rows_until("both studies", |r| r.len() == 2).await;
        assert_eq!(uids(&rows), [CRITICAL, ROUTINE], "{rows:?}");
        assert_eq!(
            (rows[0].1.as_str(), rows[1].1.as_str()),
            ("CRITICAL", "ROUTINE")
        );
        page.text_until("the live status", "status", |s| s.starts_with("live"))
            .await;
        assert_eq!(
            page.age_badges().await,
            [ROUTINE],
            "only the film without an age is marked"
        );
        page.screenshot("").await;

        // An update (newer model, later prediction) makes the routine study critical with a
        // higher score: it moves to the top through SSE, and the page is never reloaded.
        browser
            .execute("window.cxrflowNotReloaded = true; return null;", vec![])
            .await
            .unwrap();
        let mut update = prediction(ROUTINE, "Pneumothorax", 0.97, true, &blob_uri);
        update.model_version = "1.1.0".into();
        update.predicted_at = T0 + 2_000;
        send(update).await;
        let rows = page
            .rows_until("the updated study on top", |r| {
                r.first()
                    .is_some_and(|top| top.0 == ROUTINE && top.1 == "CRITICAL")
            })
            .await;
        assert_eq!(uids(&rows), [ROUTINE, CRITICAL], "{rows:?}");
        assert!(
            page.age_badges().await.is_empty(),
            "the update carries an age: no badge left"
        );
        let kept = browser
            .execute("return window.cxrflowNotReloaded === true;", vec![])
            .await
            .unwrap();
        assert_eq!(
            kept,
            Value::Bool(true),
            "the page was reloaded instead of updated"
        );
        page.screenshot("-moved").await;

        // Open the critical study: its image shows and the label form is there.
        browser
            .find(Locator::Css(&format!("tr.study[data-uid='{CRITICAL}']")))
            .await
            .expect("the critical study's row")
            .click()
            .await
            .unwrap();
        page.text_until("the study view", "d-title", |t| t.contains(CRITICAL))
            .await;
        page.until(
            "the thumbnail",
            "const i = document.getElementById('d-img'); return i.complete && i.naturalWidth;",
            |v| v.as_u64().is_some_and(|w| w > 0),
        )
        .await;
        let label = |finding: &str| {
            format!("//form[@id='d-form']//label[normalize-space(text())='{finding}']/select")
        };
        for (finding, state) in [("Pneumothorax", "PRESENT"), ("Pleural Effusion", "ABSENT")] {
            browser
                .find(Locator::XPath(&label(finding)))
                .await
                .unwrap_or_else(|e| panic!("no {finding} field: {e}"))
                .select_by_label(state)
                .await
                .unwrap();
        }
        page.screenshot("-study").await;
        browser
            .find(Locator::Id("d-submit"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        page.text_until("the report accepted", "d-result", |t| {
            t == "report submitted"
        })
        .await;

        // The report closes the study: it leaves the open list on the page.
        let rows = page
            .rows_until("the reported study gone", |r| uids(r) == [ROUTINE])
            .await;
        assert_eq!(rows.len(), 1);
        page.text_until("one open study", "status", |s| s.contains(" 1 open"))
            .await;
        // A read study takes no second report: the page says it is closed and disables the
        // button, and the service refuses one sent anyway.
        page.text_until("the study view closed", "d-closed", |t| t == "read: closed")
            .await;
        let disabled = browser
            .execute(
                "return document.getElementById('d-submit').disabled;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            disabled,
            Value::Bool(true),
            "submit stays enabled on a read study"
        );
        let again = TestKeys::client(svc.keys.key(Role::Reader))
            .post(format!("{base}/studies/{CRITICAL}/report"))
            .json(&json!({ "labels": [] }))
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 409, "a second report for a read study");

        // Waiting past the critical cap escalates the remaining study: the badge and the overdue
        // deadline show without a reload.
        clock.advance(3_600_000);
        let rows = page
            .rows_until("the escalation", |r| {
                r.first().is_some_and(|top| top.2.contains("escalated ×1"))
            })
            .await;
        assert!(rows[0].2.starts_with("ESCALATED"), "{rows:?}");
        page.until(
            "the overdue deadline",
            "return document.querySelector('#rows tr.study td.overdue')?.textContent ?? null;",
            |v| v.as_str().is_some_and(|t| t.starts_with("overdue")),
        )
        .await;
        page.screenshot("-read").await;

        // A study the AI may not rank: listed as soon as it is scanned (AI_PENDING), then
        // NOT_ASSESSABLE with the reason in words when preprocessing dead-letters its image;
        // the header counts it and the filter shows it alone.
        let scan = ScanEvent {
            event_id: "e-broken".into(),
            study: prediction(BROKEN, "Cardiomegaly", 0.1, false, "").study,
            media_type: "image/jpeg".into(),
            image_inline: None,
            image_uri: Some("file:///incoming/broken.jpg".into()),
            image_sha256: None,
            image_size_bytes: None,
        };
        producer
            .send(&codec, &scan, &Default::default())
            .await
            .expect("produce scan");
        let rows = page
            .rows_until("the scanned study, AI pending", |r| {
                r.iter().any(|row| row.0 == BROKEN && row.1 == "AI_PENDING")
            })
            .await;
        assert_eq!(rows.len(), 2, "{rows:?}");
        page.text_until("the pending count", "count-AI_PENDING", |t| t.ends_with(" 1"))
            .await;
        let dead = DeadLetter {
            stage: "preprocess".into(),
            reason: "decode.truncated".into(),
            error: "file:///blobs/x (image/jpeg): image is truncated: truncated JPEG".into(),
            source_topic: kafka.topic(topics::INGESTED),
            source_partition: 0,
            source_offset: 1,
            key: Some(BROKEN.as_bytes().to_vec()),
            payload: None,
            headers: Default::default(),
            study_instance_uid: Some(BROKEN.into()),
            failed_at: T0,
            replay_count: 0,
        };
        producer
            .send(&codec, &dead, &Default::default())
            .await
            .expect("produce dead letter");
        page.rows_until("the study not assessable", |r| {
            r.iter()
                .any(|row| row.0 == BROKEN && row.1 == "NOT_ASSESSABLE")
        })
        .await;
        page.until(
            "the reason on its row",
            &format!(
                "return document.querySelector(\"tr.study[data-uid='{BROKEN}'] .why\")?.textContent ?? null;"
            ),
            |v| v.as_str() == Some("image could not be decoded: image is truncated: truncated JPEG"),
        )
        .await;
        page.text_until("the not-assessable count", "count-NOT_ASSESSABLE", |t| {
            t.ends_with(" 1")
        })
        .await;
        page.select("only", "unranked").await;
        let rows = page
            .rows_until("the filter", |r| uids(r) == [BROKEN])
            .await;
        assert_eq!(rows[0].1, "NOT_ASSESSABLE");
        page.screenshot("-not-assessable").await;

        // A film of the read critical study that reached the gateway after its report: the
        // study is back on the list, ranked by that film, with a badge saying why.
        page.select("only", "").await;
        let mut late = prediction(CRITICAL, "Pneumothorax", 0.91, true, &blob_uri);
        late.study.sop_instance_uid = format!("{CRITICAL}.2");
        late.study.published_at = T0 + 30 * 60_000;
        late.predicted_at = T0 + 31 * 60_000;
        send(late).await;
        let rows = page
            .rows_until("the read study back for its late film", |r| {
                r.iter().any(|row| row.0 == CRITICAL)
            })
            .await;
        let back = rows.iter().find(|row| row.0 == CRITICAL).unwrap();
        // (Waiting since its acquisition an hour ago, it is escalated at once too.)
        assert_eq!(back.1, "CRITICAL", "{rows:?}");
        assert!(back.2.ends_with("new image after report"), "{rows:?}");
        page.until(
            "the badge's reason",
            &format!(
                "return document.querySelector(\"tr.study[data-uid='{CRITICAL}'] .badge.again\")?.title ?? null;"
            ),
            |v| v.as_str() == Some("open again: an image of it arrived 0h25m after its report"),
        )
        .await;
        // The study view, still open on it, takes a report again.
        page.text_until("the study view open again", "d-closed", |t| {
            t == "open again: an image arrived after its report"
        })
        .await;
        let enabled = browser
            .execute(
                "return document.getElementById('d-submit').disabled;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(enabled, Value::Bool(false), "submit disabled on a study open again");
        // A fresh form, not the last report's labels.
        let fresh = browser
            .execute(
                "return [...document.querySelectorAll('#d-form select')].every(s => s.value === 'NOT_ASSESSED');",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(fresh, Value::Bool(true), "the last report's labels kept");
        page.screenshot("-reopened").await;

        let severe = driver.severe_console_entries(&browser).await;
        assert!(severe.is_empty(), "the page logged errors: {severe:#?}");

        // The page runs under a Content-Security-Policy that admits only its own script: a
        // script a study field smuggled past the escaping would not run.
        let injected = browser
            .execute(
                "const s = document.createElement('script'); \
                 s.textContent = 'window.cxrflowInjected = true;'; \
                 document.body.appendChild(s); return window.cxrflowInjected === true;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(injected, Value::Bool(false), "an inline script ran");
        let blocked = driver.severe_console_entries(&browser).await;
        assert!(
            blocked.iter().any(|e| e.contains("Content Security Policy")),
            "{blocked:#?}"
        );
    })
    .catch_unwind()
    .await;
    let _ = browser.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }

    // The report reached the feedback topic like any other.
    let reports: Vec<RadiologistReport> =
        read_records(&kafka, &codec, 1, Duration::from_secs(20)).await;
    assert_eq!(reports.len(), 1, "{reports:?}");
    let r = &reports[0];
    assert_eq!(r.study_instance_uid, CRITICAL);
    assert_eq!(r.site_id, "site-a");
    assert_eq!(r.tier_at_read.as_deref(), Some("CRITICAL"));
    let mut labels: Vec<(String, LabelState)> = r
        .labels
        .iter()
        .map(|l| (l.finding.clone(), l.state))
        .collect();
    labels.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        labels,
        [
            ("Pleural Effusion".to_string(), LabelState::Absent),
            ("Pneumothorax".to_string(), LabelState::Present),
        ]
    );

    svc.service.stop().await;
    eprintln!(
        "browser test took {:?}; screenshots in {}",
        started.elapsed(),
        shots.display()
    );
}
