//! The whole pipeline through a real broker: the simulator replays held-out studies as a PACS
//! gateway, every service runs (the same `up` as the main job), simulated radiologists read
//! from the live worklist, and the report is written.
//!
//! Needs the synthetic dataset and the fitted model that `scripts/make-test-data.sh` builds
//! (`scripts/test.sh` runs it and exports CXRFLOW_DATASET_ROOT and CXRFLOW_MODELS_DIR).

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use cxrflow::up::{up, UpArgs};
use cxrflow_common::auth::Role;
use cxrflow_common::kafka::read::snapshot;
use cxrflow_common::KafkaArgs;
use cxrflow_contracts::{topics, Codec, TriageDecision};
use cxrflow_sim::replay::Arrival;
use cxrflow_sim::run::simulate::SimConfig;
use cxrflow_testkit::Broker;
use support::{free_port_block, required_env};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_study_reaches_the_worklist_once_and_critical_ones_are_read_sooner() {
    let dataset = required_env("CXRFLOW_DATASET_ROOT");
    let models = required_env("CXRFLOW_MODELS_DIR");
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let studies = 150;
    let args = UpArgs {
        data_dir: dir.path().join("stack"),
        bootstrap: Some(broker.bootstrap()),
        broker_port: 0,
        partitions: 2,
        http_base_port: free_port_block(7),
        models_dir: models,
        model: "cxr-small".into(),
        // The generated demo key and the simulated readers' own key: the replay reads the
        // worklist through access control, as a person's `cxrflow up` does.
        api_keys: vec![],
        insecure_no_auth: false,
        keep_running: false,
        no_replay: false,
        session_timeout_ms: 30_000,
        gateway_dicom_port: cxrflow_testkit::free_port(),
        gateway_pseudonym_key: None,
        sim: SimConfig {
            dataset,
            table: "heldout.csv".into(),
            studies,
            rate: 25.0,
            arrival: Arrival::Poisson,
            inline_max: 256 * 1024,
            sites: 2,
            readers: 2,
            median_read_ms: 200,
            triage_url: String::new(),
            seed: 11,
            report_dir: dir.path().join("report"),
            timeout_s: 240,
            ..SimConfig::default()
        },
    };
    tokio::time::timeout(Duration::from_secs(400), up(args, CancellationToken::new()))
        .await
        .expect("the run finishes")
        .expect("the run succeeds");

    // The report files exist and parse.
    let report_dir = dir.path().join("report");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report_dir.join("report.json")).unwrap()).unwrap();
    let html = std::fs::read_to_string(report_dir.join("report.html")).unwrap();
    assert!(
        html.contains("Time to read"),
        "html report has the time-to-read section"
    );

    // Nothing lost, nothing doubled.
    assert_eq!(report["studies_published"], studies);
    assert_eq!(
        report["studies_on_worklist"], studies,
        "every study reached the worklist: {report:#}"
    );
    assert_eq!(
        report["studies_read"], studies,
        "every study was read: {report:#}"
    );
    assert_eq!(report["duplicate_worklist_entries"], 0);
    let kafka = KafkaArgs::for_bootstrap(broker.bootstrap());
    let codec = Codec::with_static_registry().unwrap();
    let decisions = tokio::task::spawn_blocking(move || {
        snapshot(&kafka, topics::TRIAGE, Duration::from_secs(60)).unwrap()
    })
    .await
    .unwrap();
    let mut opened: HashMap<String, usize> = HashMap::new();
    for r in decisions {
        if let Some(d) = r
            .payload
            .and_then(|p| codec.decode::<TriageDecision>(&p).ok())
        {
            if d.version == 1 {
                *opened.entry(d.study.study_instance_uid).or_default() += 1;
            }
        }
    }
    assert_eq!(opened.len(), studies);
    assert!(
        opened.values().all(|n| *n == 1),
        "one worklist entry per study"
    );

    // Critical studies (ground truth) wait less with AI triage than in arrival order.
    let critical = report["time_to_read"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == "critical finding (ground truth)")
        .unwrap();
    let (ai, fifo) = (
        critical["ai_triage"]["mean_ms"].as_f64().unwrap(),
        critical["fifo"]["mean_ms"].as_f64().unwrap(),
    );
    assert!(critical["ai_triage"]["n"].as_u64().unwrap() > 10);
    assert!(
        ai < fifo,
        "critical studies: AI triage mean wait {ai:.0} ms should beat FIFO {fifo:.0} ms"
    );
}

/// A hospital's way in: DCMTK's `storescu` sends a CR file to the embedded stack's DICOM gateway
/// and the study appears on the worklist (gateway → ingest → preprocess → inference → triage).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dicom_store_into_the_embedded_stack_reaches_the_worklist() {
    use cxrflow_preprocess::fixtures::{dicom, DicomSpec};
    let dataset = required_env("CXRFLOW_DATASET_ROOT");
    let models = required_env("CXRFLOW_MODELS_DIR");
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let base = free_port_block(7);
    let dicom_port = cxrflow_testkit::free_port();
    let keys = cxrflow_testkit::keys::TestKeys::new();
    let args = UpArgs {
        data_dir: dir.path().join("stack"),
        bootstrap: Some(broker.bootstrap()),
        broker_port: 0,
        partitions: 2,
        http_base_port: base,
        models_dir: models,
        model: "cxr-small".into(),
        api_keys: vec![keys.file.clone()],
        insecure_no_auth: false,
        keep_running: true,
        no_replay: true,
        session_timeout_ms: 30_000,
        gateway_dicom_port: dicom_port,
        gateway_pseudonym_key: None,
        sim: SimConfig {
            dataset,
            ..SimConfig::default()
        },
    };
    let shutdown = CancellationToken::new();
    let stack = tokio::spawn(up(args, shutdown.clone()));
    let http = cxrflow_testkit::keys::TestKeys::client(keys.key(Role::Reader));
    let gateway_ready = format!("http://127.0.0.1:{}/readyz", base + 6);
    cxrflow_testkit::eventually(Duration::from_secs(120), "the embedded stack is up", || {
        let (http, url, stack) = (&http, &gateway_ready, &stack);
        async move {
            // A stack that stopped (a port taken, a broker refused) says why at once.
            assert!(
                !stack.is_finished(),
                "the embedded stack stopped before it was up"
            );
            http.get(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;

    let file = dir.path().join("cr.dcm");
    std::fs::write(&file, dicom(&DicomSpec::cr(400, 480))).unwrap();
    // A child's chest CR: another study, its age in the header as DCMTK writes it.
    let child = dir.path().join("child.dcm");
    std::fs::write(&child, dicom(&DicomSpec::cr(400, 480))).unwrap();
    let edit = std::process::Command::new("dcmodify")
        .args(["-nb", "-i", "(0010,1010)=006Y", "-i", "(0020,000D)=2.25.43"])
        .args([
            "-i",
            "(0020,000E)=2.25.43.1",
            "-i",
            "(0008,0018)=2.25.43.1.1",
        ])
        .arg(&child)
        .output()
        .expect("dcmodify (dcmtk) runs");
    assert!(edit.status.success(), "dcmodify: {edit:?}");
    // Held-out films wrapped as CR by pydicom with no view anywhere in the header (no View
    // Position, View Code Sequence or Patient Orientation): laterals, which the model must not
    // score as frontal films, and a frontal one, which it must.
    let unnamed = dir.path().join("unnamed");
    std::fs::create_dir(&unnamed).unwrap();
    let mut wrap = std::process::Command::new(cxrflow_testkit::tools_python());
    wrap.args(["-c", UNNAMED_VIEW_CR])
        .arg(&unnamed)
        .arg(required_env("CXRFLOW_DATASET_ROOT"))
        .arg(UNNAMED_LATERALS.to_string());
    cxrflow_testkit::run_tool(wrap);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&unnamed)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), UNNAMED_LATERALS + 3, "{files:?}");
    // The frontal film loses its Patient's Age to DCMTK (as a router that strips ages would):
    // it is scored all the same, and marked "age unknown" on the worklist.
    let frontal_file = files
        .iter()
        .find(|f| {
            f.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("2.25.60-")
        })
        .expect("the frontal film");
    cxrflow_testkit::run_tool({
        let mut c = std::process::Command::new("dcmodify");
        c.args(["-nb", "-e", "(0010,1010)"]).arg(frontal_file);
        c
    });
    // DCMTK's storescu sends files to the embedded gateway, in one association.
    let store = |files: Vec<PathBuf>| async move {
        let out = tokio::process::Command::new("storescu")
            .args(["-aec", "CXRFLOW", "127.0.0.1", &dicom_port.to_string()])
            .args(&files)
            .output()
            .await
            .expect("storescu (Debian package dcmtk, installed by scripts/prereqs.sh) runs");
        assert!(
            out.status.success(),
            "storescu failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    store(
        [file.clone(), child.clone()]
            .into_iter()
            .chain(files)
            .collect(),
    )
    .await;

    let worklist = format!("http://127.0.0.1:{}/worklist", base + 3);
    cxrflow_testkit::eventually(
        Duration::from_secs(120),
        "the stored studies on the worklist, the child's not scored",
        || {
            let (http, url) = (&http, &worklist);
            async move {
                let Ok(r) = http.get(url).send().await else {
                    return false;
                };
                let v: serde_json::Value = r.json().await.unwrap_or_default();
                let items = v["items"].as_array().cloned().unwrap_or_default();
                let listed = |uid: &str| items.iter().find(|i| i["study_uid"] == uid).cloned();
                // The child's is listed, not scored, with the reason in words.
                listed("2.25.42").is_some_and(|i| i["tier"] != "AI_PENDING")
                    && listed("2.25.43").is_some_and(|i| {
                        i["tier"] == "NOT_ASSESSABLE"
                            && i["not_assessable_code"] == "eligibility.age"
                            && i["not_assessable_reason"]
                                == "patient aged 6: the model was trained and validated on \
                                    patients 18 and over"
                    })
            }
        },
    )
    .await;
    // The laterals without a view are listed, none ranked: each refused by the
    // out-of-distribution gate, by its distance or, nearer the laterals than the frontal films,
    // by the lateral reference (at least one that way, or this test does not test it).
    let lateral_uids: Vec<String> = (0..UNNAMED_LATERALS)
        .map(|i| format!("2.25.5{i}"))
        .collect();
    let wanted: Vec<String> = lateral_uids
        .iter()
        .cloned()
        .chain(["2.25.70".to_string(), "2.25.60".to_string()])
        .collect();
    let decided = |items: &[serde_json::Value]| -> Option<Vec<serde_json::Value>> {
        wanted
            .iter()
            .map(|u| {
                items
                    .iter()
                    .find(|i| i["study_uid"] == u.as_str() && i["tier"] != "AI_PENDING")
                    .cloned()
            })
            .collect()
    };
    let items = || async {
        let r = http.get(&worklist).send().await.ok()?;
        let v: serde_json::Value = r.json().await.ok()?;
        v["items"].as_array().cloned()
    };
    // The two-image study is judged once triage has taken both its images' predictions, in
    // whichever order they came (the stages do not keep the order of one study's images).
    let metrics_http = cxrflow_testkit::keys::TestKeys::client(keys.key(Role::Metrics));
    let triage_metrics = format!("http://127.0.0.1:{}/metrics", base + 3);
    let lateral_taken = || async {
        let text = match metrics_http.get(&triage_metrics).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        text.lines().any(|l| {
            l.starts_with("cxrflow_triage_predictions_ignored_total{reason=\"less_urgent_image\"}")
        })
    };
    cxrflow_testkit::eventually(
        Duration::from_secs(120),
        "the films without a view and both images of the two-image study decided",
        || async {
            let Some(films) = items().await.and_then(|i| decided(&i)) else {
                return false;
            };
            let two = &films[UNNAMED_LATERALS];
            // Either order: the lateral's came last (NOT_ASSESSABLE before studies were ranked
            // by their most urgent image, counted now), or first (the PA's then said so).
            let pa_after_lateral = two["reasons"].as_array().is_some_and(|r| {
                r.iter().any(|r| {
                    r.as_str()
                        .is_some_and(|r| r.starts_with("ranked by its most urgent image"))
                })
            });
            two["tier"] == "NOT_ASSESSABLE" || pa_after_lateral || lateral_taken().await
        },
    )
    .await;
    let mut films = decided(&items().await.expect("the worklist")).expect("decided");
    let frontal = films.pop().expect("the frontal film");
    let two_images = films.pop().expect("the study of two images");
    let laterals = films;
    // Ranked by the PA, whichever prediction came last.
    assert!(
        ["CRITICAL", "URGENT", "ROUTINE"]
            .contains(&two_images["tier"].as_str().unwrap_or_default()),
        "a PA and its lateral are ranked by the PA: {two_images}"
    );
    for l in &laterals {
        assert_eq!(l["tier"], "NOT_ASSESSABLE", "a lateral without a view: {l}");
        let code = l["not_assessable_code"].as_str().unwrap_or_default();
        assert!(
            code == "ood.lateral" || code == "ood.distance",
            "a lateral without a view: {l}"
        );
    }
    let by_reference = laterals
        .iter()
        .filter(|l| l["not_assessable_code"] == "ood.lateral")
        .collect::<Vec<_>>();
    assert!(!by_reference.is_empty(), "{laterals:?}");
    assert!(
        by_reference[0]["not_assessable_reason"]
            .as_str()
            .is_some_and(
                |r| r.starts_with("no view position, and the image looks like a lateral film")
            ),
        "{:?}",
        by_reference[0]
    );
    assert!(
        ["CRITICAL", "URGENT", "ROUTINE"].contains(&frontal["tier"].as_str().unwrap_or_default()),
        "a frontal film without a view is still ranked: {frontal}"
    );
    // Scored without an age (neither its header nor its scan event had one): marked, under the
    // default --preprocess-unknown-age score. The PA beside it kept pydicom's Patient's Age.
    assert_eq!(frontal["age_unknown"], true, "{frontal}");
    assert!(
        frontal["reasons"].as_array().is_some_and(|r| r
            .iter()
            .any(|r| r == cxrflow_triage::policy::AGE_UNKNOWN_REASON)),
        "{frontal}"
    );
    assert_eq!(two_images["age_unknown"], false, "{two_images}");
    let refused = reqwest::get(&worklist).await.expect("triage answers");
    assert_eq!(refused.status(), 401, "the worklist without a key");

    // Images added after the report. The CR (2.25.42) is read; stored again as it was (a
    // re-send) it stays read; a film of the same study with a new SOP Instance UID, stored
    // after the report, puts the study back on the worklist for that film.
    let listed = |uid: &'static str| {
        let items = &items;
        async move {
            items()
                .await
                .and_then(|i| i.into_iter().find(|i| i["study_uid"] == uid))
        }
    };
    let reported = http
        .post(format!(
            "http://127.0.0.1:{}/studies/2.25.42/report",
            base + 3
        ))
        .json(&serde_json::json!({ "labels": [] }))
        .send()
        .await
        .expect("triage answers");
    assert_eq!(reported.status(), 202, "the report is accepted");
    cxrflow_testkit::eventually(
        Duration::from_secs(30),
        "the read study off the list",
        || async { listed("2.25.42").await.is_none() },
    )
    .await;
    let metric = |port: u16, name: &'static str| {
        let metrics_http = &metrics_http;
        async move {
            let url = format!("http://127.0.0.1:{port}/metrics");
            let text = match metrics_http.get(&url).send().await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        }
    };
    store(vec![file.clone()]).await;
    cxrflow_testkit::eventually(
        Duration::from_secs(60),
        "ingest skips the re-sent image",
        || async { metric(base, "cxrflow_ingest_duplicates_total").await >= 1.0 },
    )
    .await;
    assert!(
        listed("2.25.42").await.is_none(),
        "a re-sent image that was read does not reopen its study"
    );
    let repeat = dir.path().join("repeat.dcm");
    std::fs::copy(&file, &repeat).unwrap();
    let edit = std::process::Command::new("dcmodify")
        .args(["-nb", "-i", "(0008,0018)=2.25.42.1.2"])
        .arg(&repeat)
        .output()
        .expect("dcmodify (dcmtk) runs");
    assert!(edit.status.success(), "dcmodify: {edit:?}");
    store(vec![repeat]).await;
    cxrflow_testkit::eventually(
        Duration::from_secs(120),
        "the study open again for the film stored after its report",
        || async {
            listed("2.25.42").await.is_some_and(|i| {
                // Ranked as the film's prediction says (this synthetic film is refused by the
                // out-of-distribution gate: NOT_ASSESSABLE, listed all the same).
                i["read_at"].is_i64()
                    && i["status"] == "OPEN"
                    && i["tier"] != "AI_PENDING"
                    && i["reasons"].as_array().is_some_and(|r| {
                        r.iter().any(|r| {
                            r.as_str().is_some_and(|r| {
                                r.starts_with("open again: an image of it arrived")
                            })
                        })
                    })
            })
        },
    )
    .await;
    assert_eq!(
        metric(base + 3, "cxrflow_triage_studies_reopened_total").await,
        1.0
    );
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(60), stack)
        .await
        .expect("the stack stops")
        .expect("up task")
        .expect("up ends cleanly");
}

/// How many held-out laterals the DICOM test sends without a view.
const UNNAMED_LATERALS: usize = 6;

/// pydicom wraps the held-out split's first laterals (study UIDs 2.25.50…) and its first frontal
/// film (2.25.60) as 8-bit CR with an identity window and no view anywhere in the header, and
/// the same frontal film and first lateral as one study of two images (2.25.70, PA then LL).
/// Written with the codec tests' CR header (`synthetic_cr.py`). Arguments: the output
/// directory, the dataset root, the number of laterals.
const UNNAMED_VIEW_CR: &str = concat!(
    include_str!("../../services/preprocess/tests/support/synthetic_cr.py"),
    r#"
import csv
from pathlib import Path
out, root, n = Path(d), Path(sys.argv[2]), int(sys.argv[3])
rows = list(csv.DictReader(open(root / "CheXpert-v1.0-small" / "heldout.csv")))
laterals = [r for r in rows if r["Frontal/Lateral"] == "Lateral"][:n]
frontal = [r for r in rows if r["Frontal/Lateral"] == "Frontal"][0]
picks = [(f"2.25.5{i}", r, None) for i, r in enumerate(laterals)] + [("2.25.60", frontal, None)]
# One study of two images, as a PA-and-lateral chest is sent: the PA first, then its lateral.
picks += [("2.25.70", frontal, "PA"), ("2.25.70", laterals[0], "LL")]
for k, (uid, r, view) in enumerate(picks):
    px = np.asarray(Image.open(root / r["Path"]).convert("L"))
    ds = header(8, px.shape[1], px.shape[0], "MONOCHROME2")
    del ds.ViewPosition
    if view:
        ds.ViewPosition = view
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uid, uid + ".1"
    ds.PatientID, ds.AccessionNumber = "P" + uid.replace(".", ""), "A" + uid.replace(".", "")
    ds.PatientAge = "%03dY" % int(float(r["Age"]))
    ds.WindowCenter, ds.WindowWidth = 128, 256
    ds.PixelData = px.tobytes()
    ds.save_as(out / ("%s-%02d.dcm" % (uid, k)), enforce_file_format=True)
"#
);
