//! Reliability through a real broker, with every service its own OS process (the distributed
//! shape, as an orchestrator runs it):
//!
//! - crash: under steady replay load each service is killed with SIGKILL in turn and started
//!   again; afterwards every study has exactly one worklist entry, was read once, and has
//!   exactly one distinct labeled example, and the live worklist never showed a study twice;
//! - broker restart: the broker (on-disk storage) is killed and restarted mid-stream; every
//!   study still reaches the worklist and no service gives up;
//! - privacy: the dataset's raw patient ids reach neither a topic nor a service log, and every
//!   `patient_ref` a log line carries is a pseudonym.
//!
//! Needs the `cxrflow` binary, the synthetic dataset and the fitted model that
//! `scripts/make-test-data.sh` builds (`scripts/test.sh` runs it and exports the variables).

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cxrflow_common::auth::Role;
use cxrflow_common::kafka::Producer;
use cxrflow_contracts::{topics, WorklistStatus};
use cxrflow_sim::replay::ReplayStudy;
use cxrflow_sim::run::readers::{run_readers, ReadEvent, ReaderConfig};
use cxrflow_testkit::eventually;
use cxrflow_testkit::keys::TestKeys;
use rand::{Rng, SeedableRng};
use support::{Pipeline, Service, WorklistHistory};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Simulated radiologists reading from the live worklist until every study is read.
fn start_readers(
    p: &Pipeline,
    studies: &[ReplayStudy],
    seed: u64,
    stop: CancellationToken,
) -> JoinHandle<Vec<ReadEvent>> {
    let by_uid: Arc<HashMap<String, ReplayStudy>> =
        Arc::new(studies.iter().map(|s| (s.uid.clone(), s.clone())).collect());
    let cfg = ReaderConfig {
        readers: 4,
        median_read: Duration::from_millis(30),
        triage_url: p.triage_url(),
        triage_api_key: p.keys.key(Role::Reader).to_string(),
        seed,
    };
    let producer = Producer::new(&p.kafka).expect("producer");
    tokio::spawn(run_readers(cfg, by_uid, producer, p.codec.clone(), stop))
}

/// Samples `GET /worklist` until stopped; returns every sample that showed a study twice.
fn watch_worklist(p: &Pipeline, stop: CancellationToken) -> JoinHandle<(usize, Vec<String>)> {
    let url = format!("{}/worklist", p.triage_url());
    let http = TestKeys::client(p.keys.key(Role::Reader));
    tokio::spawn(async move {
        let (mut samples, mut doubled) = (0usize, Vec::new());
        while !stop.is_cancelled() {
            if let Ok(r) = http.get(&url).timeout(Duration::from_secs(5)).send().await {
                if let Ok(v) = r.json::<serde_json::Value>().await {
                    if let Some(items) = v["items"].as_array() {
                        samples += 1;
                        let mut seen = HashSet::new();
                        for i in items {
                            let uid = i["study_uid"].as_str().unwrap_or_default();
                            if !seen.insert(uid.to_string()) {
                                doubled.push(format!(
                                    "sample {samples}: {uid} listed twice ({} items)",
                                    items.len()
                                ));
                            }
                        }
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(150)) => {}
                _ = stop.cancelled() => {}
            }
        }
        (samples, doubled)
    })
}

/// Where each study got to: distinct study keys per topic, and the dead letters' reasons.
async fn progress(p: &Pipeline) -> String {
    let mut out = String::new();
    for t in [
        topics::SCAN,
        topics::INGESTED,
        topics::PREPROCESSED,
        topics::PREDICTIONS,
        topics::TRIAGE,
        topics::FEEDBACK,
        topics::LABELED,
        topics::DLQ,
    ] {
        let recs = p.snapshot(t).await;
        let keys: HashSet<_> = recs.iter().filter_map(|r| r.key.clone()).collect();
        out.push_str(&format!(
            "{t}: {} records, {} distinct keys\n",
            recs.len(),
            keys.len()
        ));
    }
    for r in p.snapshot(topics::DLQ).await {
        if let Some(d) = r
            .payload
            .and_then(|b| p.codec.decode::<cxrflow_contracts::DeadLetter>(&b).ok())
        {
            out.push_str(
                &format!("dead letter: {d:?}\n")
                    .chars()
                    .take(600)
                    .collect::<String>(),
            );
        }
    }
    out
}

/// Waits for the readers to read every study, or fails with where the studies got to.
async fn wait_all_read(
    p: &Pipeline,
    readers: JoinHandle<Vec<ReadEvent>>,
    stop: &CancellationToken,
    n: usize,
    timeout: Duration,
) -> Vec<ReadEvent> {
    let mut readers = readers;
    match tokio::time::timeout(timeout, &mut readers).await {
        Ok(r) => {
            let events = r.expect("readers finish");
            assert_eq!(events.len(), n, "every study was read");
            events
        }
        Err(_) => {
            stop.cancel();
            let events = readers.await.unwrap_or_default();
            let mut logs = String::new();
            for s in Service::ALL {
                logs.push_str(&format!(
                    "{}: started {} times, {} log lines about records since its latest start\n",
                    s.name(),
                    p.starts.get(&s).copied().unwrap_or(0),
                    p.handled_since_last_start(s)
                ));
            }
            for s in Service::ALL {
                logs.push_str(&format!(
                    "--- {} (tail)\n{}\n",
                    s.name(),
                    p.log_tail(s, 1500)
                ));
            }
            panic!(
                "only {} of {n} studies were read within {timeout:?}; pipeline:\n{}\n{logs}",
                events.len(),
                progress(p).await
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_each_service_in_turn_loses_nothing_and_shows_nothing_twice() {
    let _turn = support::exclusive();
    let started = Instant::now();
    let mut p = Pipeline::start().await;
    let n = 120;
    let seed = 21;
    let studies = support::studies(&p.dataset, n, seed);
    let stop = CancellationToken::new();
    let readers = start_readers(&p, &studies, seed, stop.clone());
    let watch_stop = CancellationToken::new();
    let watcher = watch_worklist(&p, watch_stop.clone());
    let replay = support::start_replay(&p, &studies, 10.0, 256 * 1024, seed);

    // Each service in turn: killed at a seeded random point, restarted 0.2–1.5 s later,
    // while the replay and the readers go on.
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6b11_1e55);
    let mut kills = Vec::new();
    for s in Service::ALL {
        tokio::time::sleep(Duration::from_millis(rng.random_range(800..2200))).await;
        p.kill(s);
        let down = rng.random_range(200..1500) + support::extra_downtime_ms();
        kills.push(format!(
            "{} killed at {:.1}s, down {down} ms",
            s.name(),
            started.elapsed().as_secs_f64()
        ));
        tokio::time::sleep(Duration::from_millis(down)).await;
        p.check_alive();
        p.spawn(s);
    }
    let published = replay.await.expect("replay task");
    assert_eq!(published.len(), n);
    eprintln!("kills: {kills:#?}");
    for s in Service::ALL {
        p.wait_ready(s, Duration::from_secs(90)).await;
    }

    let events = wait_all_read(&p, readers, &stop, n, Duration::from_secs(150)).await;
    let read: BTreeSet<_> = events.iter().map(|e| e.uid.clone()).collect();
    assert_eq!(read.len(), n, "each study read once by the readers");

    // The worklist a person reads: one entry per study, each now READ.
    let expected: BTreeSet<String> = studies.iter().map(|s| s.uid.clone()).collect();
    let history = support::until(
        Duration::from_secs(30),
        "every study READ on cxr.triage.v1",
        || async {
            let h = WorklistHistory::of(&p.decisions().await);
            let unread = expected
                .iter()
                .filter(|u| {
                    !h.latest
                        .get(*u)
                        .is_some_and(|(_, s)| *s == WorklistStatus::Read)
                })
                .count();
            if unread == 0 {
                Ok(h)
            } else {
                Err(format!("{unread} studies not READ"))
            }
        },
    )
    .await;
    let keys: BTreeSet<_> = history.latest.keys().cloned().collect();
    assert_eq!(
        keys, expected,
        "the worklist holds exactly the published studies"
    );
    let doubled: BTreeMap<_, _> = history.opened.iter().filter(|(_, c)| **c != 1).collect();
    assert!(
        doubled.is_empty(),
        "studies opened on the worklist other than once (uid → version-1 decisions): {doubled:?}"
    );
    assert!(
        history.conflicting_versions.is_empty(),
        "one study version published with two different contents: {:?}",
        history.conflicting_versions
    );

    // Exactly one distinct labeled example per study (a redelivered copy is allowed).
    let (labeled, examples) = support::until(
        Duration::from_secs(60),
        "a labeled example for every study",
        || async {
            let labeled = p.labeled().await;
            let mut ex: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for e in &labeled {
                ex.entry(e.study.study_instance_uid.clone())
                    .or_default()
                    .insert(e.report_id.clone());
            }
            if ex.len() >= n {
                Ok((labeled, ex))
            } else {
                Err(format!("{} of {n} studies labeled", ex.len()))
            }
        },
    )
    .await;
    let copies = labeled.len();
    let keys: BTreeSet<_> = examples.keys().cloned().collect();
    assert_eq!(
        keys, expected,
        "labeled examples exist for exactly the published studies"
    );
    let two: Vec<_> = examples.iter().filter(|(_, r)| r.len() != 1).collect();
    assert!(
        two.is_empty(),
        "studies with two different labeled examples: {two:?}"
    );
    // Redelivered copies of one example must be the same example.
    let mut by_report: HashMap<&str, &cxrflow_contracts::LabeledExample> = HashMap::new();
    for e in &labeled {
        if let Some(first) = by_report.insert(&e.report_id, e) {
            assert_eq!(
                (&first.probabilities, &first.labels, &first.model_version),
                (&e.probabilities, &e.labels, &e.model_version),
                "two copies of labeled example {} differ",
                e.report_id
            );
        }
    }

    watch_stop.cancel();
    let (samples, shown_twice) = watcher.await.unwrap();
    assert!(samples > 10, "the worklist was sampled ({samples} samples)");
    assert!(
        shown_twice.is_empty(),
        "GET /worklist showed a study twice: {shown_twice:#?}"
    );
    let http = reqwest::Client::new();
    let open: Vec<_> = p
        .worklist(&http)
        .await
        .expect("worklist answers")
        .into_iter()
        .filter(|(u, _)| expected.contains(u))
        .collect();
    assert!(
        open.is_empty(),
        "read studies still open on the worklist: {open:?}"
    );

    assert!(
        p.snapshot(topics::DLQ).await.is_empty(),
        "good records were dead-lettered:\n{}",
        progress(&p).await
    );
    p.check_alive();
    assert!(
        p.unexpected_exits.is_empty(),
        "services ended on their own: {:?}",
        p.unexpected_exits
    );
    eprintln!(
        "crash test: {n} studies, {} triage records ({} repeats of a version), {} labeled records for {} examples, {samples} worklist samples, {:.0}s",
        history.latest.values().map(|(v, _)| *v as usize).sum::<usize>(),
        history.repeated_versions,
        copies,
        examples.len(),
        started.elapsed().as_secs_f64()
    );
}

/// Waits until every study of `expected` is on `GET /worklist`, then asserts none shows twice,
/// none was opened other than once on `cxr.triage.v1`, and nothing was dead-lettered.
async fn every_study_listed_once(
    p: &Pipeline,
    expected: &BTreeSet<String>,
    within: Duration,
    after: &str,
) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + within;
    let shown = loop {
        let shown = p.worklist(&http).await.unwrap_or_default();
        let on: BTreeSet<_> = shown.iter().map(|(u, _)| u.clone()).collect();
        if expected.is_subset(&on) {
            break shown;
        }
        if Instant::now() > deadline {
            panic!(
                "{} of {} studies on the worklist {within:?} after {after}; pipeline:\n{}",
                expected.intersection(&on).count(),
                expected.len(),
                progress(p).await
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let mut seen = HashSet::new();
    let twice: Vec<_> = shown.iter().filter(|(u, _)| !seen.insert(u)).collect();
    assert!(
        twice.is_empty(),
        "GET /worklist shows studies twice: {twice:?}"
    );
    let history = WorklistHistory::of(&p.decisions().await);
    let doubled: BTreeMap<_, _> = history.opened.iter().filter(|(_, c)| **c != 1).collect();
    assert!(
        doubled.is_empty(),
        "studies opened other than once: {doubled:?}"
    );
    assert!(
        history.conflicting_versions.is_empty(),
        "two histories of one study: {:?}",
        history.conflicting_versions
    );
    assert!(
        p.snapshot(topics::DLQ).await.is_empty(),
        "good records were dead-lettered:\n{}",
        progress(p).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_restart_mid_stream_loses_nothing() {
    let _turn = support::exclusive();
    let started = Instant::now();
    let mut p = Pipeline::start().await;
    let n = 80;
    let seed = 33;
    let studies = support::studies(&p.dataset, n, seed);
    let replay = support::start_replay(&p, &studies, 10.0, 256 * 1024, seed);

    tokio::time::sleep(Duration::from_secs(3)).await;
    let t = Instant::now();
    tokio::task::block_in_place(|| p.broker.restart());
    eprintln!(
        "broker killed and back after {:.1}s, at {:.1}s",
        t.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    let published = replay.await.expect("replay task");
    assert_eq!(published.len(), n);
    let expected: BTreeSet<String> = studies.iter().map(|s| s.uid.clone()).collect();
    every_study_listed_once(&p, &expected, Duration::from_secs(150), "the replay").await;
    // Every study has a history on the topic. (Not necessarily its version 1: the topic is
    // compacted, and tansu compacts at its restart, so an AI_PENDING entry superseded by the
    // study's prediction may be gone.)
    let history = WorklistHistory::of(&p.decisions().await);
    assert_eq!(
        history.latest.keys().cloned().collect::<BTreeSet<_>>(),
        expected
    );
    p.check_alive();
    assert!(
        p.unexpected_exits.is_empty(),
        "services gave up on a broker restart: {:?}",
        p.unexpected_exits
    );
    eprintln!(
        "broker restart test: {:.0}s",
        started.elapsed().as_secs_f64()
    );
}

/// A broker that stops answering for twice the consumer session (SIGSTOP: a VM migration, a
/// disk stall, a partition) and comes back: every group rebalances around members it declared
/// dead, and each service must end up owning its partitions again and finish the work. Every
/// study reaches the worklist once, within a minute of the resume, nothing is dead-lettered, no
/// service dies, and the broker re-forms every group by itself (no ownership watchdog recovery).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_paused_past_the_session_timeout_loses_nothing() {
    let _turn = support::exclusive();
    let started = Instant::now();
    let p = Pipeline::start().await;
    let n = 60;
    let seed = 35;
    let studies = support::studies(&p.dataset, n, seed);
    let replay = support::start_replay(&p, &studies, 10.0, 256 * 1024, seed);

    tokio::time::sleep(Duration::from_secs(2)).await;
    let pause = Duration::from_millis(2 * support::SESSION_TIMEOUT_MS);
    freeze(&[p.broker.pid()], pause).await;
    eprintln!(
        "broker paused {:.0} s (twice the session), resumed at {:.1} s",
        pause.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    let published = replay.await.expect("replay task");
    assert_eq!(published.len(), n);
    let expected: BTreeSet<String> = studies.iter().map(|s| s.uid.clone()).collect();
    // Measured: 3 s after the resume with the patched broker (scripts/tansu/tansu-broker-*.patch).
    // Published tansu 0.6.0 kept each group's evicted member as its leader, so every rejoin
    // followed a leader that was gone; only the watchdog's new consumers (45 s into the stall,
    // their requests overlapping the old ones') got the groups re-formed: 170 s after the resume.
    every_study_listed_once(&p, &expected, Duration::from_secs(60), "the pause").await;
    let recovered = watchdog_recoveries(&p, &Service::ALL);
    assert!(
        recovered.is_empty(),
        "the broker left groups without an owner and the ownership watchdog had to act \
         (is the broker built without scripts/tansu/tansu-broker-*.patch?):\n{}",
        recovered.join("\n")
    );
    let mut p = p;
    p.check_alive();
    assert!(
        p.unexpected_exits.is_empty(),
        "services gave up on a paused broker: {:?}",
        p.unexpected_exits
    );
    eprintln!(
        "paused-broker test: every study on the worklist {:.0} s after the start",
        started.elapsed().as_secs_f64()
    );
}

/// A node that freezes (SIGSTOP: a VM pause, a long GC, a swap storm) for twice the consumer
/// session while it holds in-flight records, preprocess, inference and triage on it (triage
/// keeps its worklist in memory and gets its partitions back from the committed offsets): the
/// broker evicts the three members, and when the node thaws each finds its session ended,
/// finishes or drops what it held and joins again. Every study is scored and listed once,
/// nothing is dead-lettered, no service dies, and no ownership watchdog recovery is needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn services_frozen_past_the_session_timeout_lose_nothing_and_show_nothing_twice() {
    let _turn = support::exclusive();
    let started = Instant::now();
    let mut p = Pipeline::start().await;
    let n = 60;
    let seed = 36;
    let studies = support::studies(&p.dataset, n, seed);
    let replay = support::start_replay(&p, &studies, 10.0, 256 * 1024, seed);

    tokio::time::sleep(Duration::from_secs(2)).await;
    let frozen = [Service::Preprocess, Service::Inference, Service::Triage];
    let pids: Vec<u32> = frozen
        .iter()
        .map(|s| p.pid(*s).expect("service runs"))
        .collect();
    let pause = Duration::from_millis(2 * support::SESSION_TIMEOUT_MS);
    freeze(&pids, pause).await;
    let resumed = started.elapsed();
    eprintln!(
        "preprocess, inference and triage frozen {:.0} s, thawed at {:.1} s",
        pause.as_secs_f64(),
        resumed.as_secs_f64()
    );

    let published = replay.await.expect("replay task");
    assert_eq!(published.len(), n);
    let expected: BTreeSet<String> = studies.iter().map(|s| s.uid.clone()).collect();
    let scored = || async {
        let keys: BTreeSet<String> = p
            .snapshot(topics::PREDICTIONS)
            .await
            .into_iter()
            .filter_map(|r| r.key)
            .map(|k| String::from_utf8_lossy(&k).into_owned())
            .collect();
        expected.is_subset(&keys)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !scored().await {
        assert!(
            Instant::now() < deadline,
            "not every study scored a minute after the thaw; pipeline:\n{}",
            progress(&p).await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    every_study_listed_once(&p, &expected, Duration::from_secs(60), "the thaw").await;
    p.check_alive();
    assert!(
        p.unexpected_exits.is_empty(),
        "services died after a freeze: {:?}",
        p.unexpected_exits
    );
    let recovered = watchdog_recoveries(&p, &frozen);
    assert!(
        recovered.is_empty(),
        "a thawed service was left without its partitions and the watchdog had to act:\n{}",
        recovered.join("\n")
    );
    eprintln!(
        "frozen-services test: every study scored and listed {:.1} s after the thaw",
        (started.elapsed() - resumed).as_secs_f64()
    );
}

/// Stops the processes `pids` together (SIGSTOP) for `pause`, then lets them go on (SIGCONT).
async fn freeze(pids: &[u32], pause: Duration) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let pids: Vec<Pid> = pids.iter().map(|p| Pid::from_raw(*p as i32)).collect();
    for pid in &pids {
        kill(*pid, Signal::SIGSTOP).unwrap_or_else(|e| panic!("SIGSTOP {pid}: {e}"));
    }
    tokio::time::sleep(pause).await;
    for pid in &pids {
        kill(*pid, Signal::SIGCONT).unwrap_or_else(|e| panic!("SIGCONT {pid}: {e}"));
    }
}

/// The ownership watchdog's recovery log lines of `services`, each prefixed with its service.
fn watchdog_recoveries(p: &Pipeline, services: &[Service]) -> Vec<String> {
    services
        .iter()
        .flat_map(|s| {
            p.log(*s)
                .lines()
                .filter(|l| l.contains("consumer holds no partitions while records wait"))
                .map(|l| format!("{}: {l}", s.name()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Every `patient` + digits token in `bytes` (the dataset's raw patient id form, `patient00042`).
fn raw_patient_ids(bytes: &[u8]) -> BTreeSet<String> {
    const P: &[u8] = b"patient";
    let mut out = BTreeSet::new();
    let mut i = 0;
    while let Some(at) = bytes[i..]
        .windows(P.len())
        .position(|w| w.eq_ignore_ascii_case(P))
    {
        let start = i + at;
        let digits = bytes[start + P.len()..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits > 0 {
            out.insert(String::from_utf8_lossy(&bytes[start..start + P.len() + digits]).into());
        }
        i = start + P.len();
    }
    out
}

fn is_pseudonym(s: &str) -> bool {
    s.strip_prefix("pt-")
        .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Every (key, string value) in a JSON log line whose key names a patient.
fn patient_fields(v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                if k.to_ascii_lowercase().contains("patient")
                    && !k.contains("age")
                    && !k.contains("sex")
                {
                    out.push((
                        k.clone(),
                        x.as_str().map_or_else(|| x.to_string(), str::to_string),
                    ));
                }
                patient_fields(x, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| patient_fields(x, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_raw_patient_id_reaches_a_topic_or_a_log() {
    let _turn = support::exclusive();
    let started = Instant::now();
    let p = Pipeline::start().await;
    let n = 60;
    let seed = 47;
    let studies = support::studies(&p.dataset, n, seed);
    let ids: BTreeSet<String> = studies.iter().map(|s| s.row.patient.0.clone()).collect();
    assert!(
        ids.iter()
            .all(|id| !raw_patient_ids(id.as_bytes()).is_empty()),
        "the dataset's patient ids have the form the scan looks for: {ids:?}"
    );
    let stop = CancellationToken::new();
    let readers = start_readers(&p, &studies, seed, stop.clone());
    // Some images inline, some by reference (the median image is ~77 kB): both paths run.
    let replay = support::start_replay(&p, &studies, 10.0, 75_000, seed);
    replay.await.expect("replay task");
    wait_all_read(&p, readers, &stop, n, Duration::from_secs(120)).await;
    eventually(
        Duration::from_secs(60),
        "a labeled example for every study",
        || async {
            p.labeled()
                .await
                .iter()
                .map(|e| e.study.study_instance_uid.clone())
                .collect::<HashSet<_>>()
                .len()
                >= n
        },
    )
    .await;

    // Topics: keys, payloads (decompressed by the client) and headers of every record.
    let mut leaks: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut scanned = 0usize;
    for t in cxrflow_common::kafka::admin::all_topics() {
        let end = p.snapshot(t).await.len();
        let recs =
            cxrflow_testkit::read_topic(&p.kafka, t, Duration::from_secs(60), |r| r.len() >= end)
                .await;
        assert!(recs.len() >= end, "read all of {t}");
        for r in recs {
            scanned += 1;
            let mut bytes = r.key.unwrap_or_default();
            bytes.extend(r.payload.unwrap_or_default());
            for (k, v) in r.headers {
                bytes.extend(k.into_bytes());
                bytes.extend(v.into_bytes());
            }
            let found = raw_patient_ids(&bytes);
            if !found.is_empty() {
                leaks.entry(format!("topic {t}")).or_default().extend(found);
            }
        }
    }
    assert!(
        scanned >= 6 * n,
        "the run wrote the topics ({scanned} records)"
    );

    // Logs: every byte each process wrote, and every patient field of every JSON line.
    let mut bad_refs = Vec::new();
    let mut uid_lines = 0usize;
    for s in Service::ALL {
        let log = p.log(s);
        assert!(!log.is_empty(), "{} logged something", s.name());
        let found = raw_patient_ids(log.as_bytes());
        if !found.is_empty() {
            leaks
                .entry(format!("log of {}", s.name()))
                .or_default()
                .extend(found);
        }
        for line in log.lines() {
            if studies.iter().any(|st| line.contains(&st.uid)) {
                uid_lines += 1;
            }
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let mut fields = Vec::new();
            patient_fields(&v, &mut fields);
            for (k, val) in fields {
                if !is_pseudonym(&val) {
                    bad_refs.push(format!("{}: {k}={val}", s.name()));
                }
            }
        }
    }
    let examples: BTreeMap<_, _> = leaks
        .iter()
        .map(|(w, ids)| (w.clone(), ids.iter().take(5).cloned().collect::<Vec<_>>()))
        .collect();
    assert!(
        leaks.is_empty(),
        "raw dataset patient ids found (where → first ids): {examples:#?}"
    );
    assert!(
        bad_refs.is_empty(),
        "log fields naming a patient that are not pseudonyms: {bad_refs:?}"
    );
    eprintln!(
        "privacy test: {scanned} records scanned, {uid_lines} log lines name a study by UID, {:.0}s",
        started.elapsed().as_secs_f64()
    );
}

/// The scan finds what it must (a guard against a vacuous privacy test).
#[test]
fn the_patient_id_scan_finds_raw_ids_and_passes_pseudonyms() {
    let ids = raw_patient_ids(b"file:///d/CheXpert-v1.0-small/heldout/patient00042/study1/x.png patient_ref=pt-0123456789abcdef");
    assert_eq!(ids, BTreeSet::from(["patient00042".to_string()]));
    assert!(is_pseudonym("pt-0123456789abcdef"));
    assert!(!is_pseudonym("patient00042"));
}

/// A test's directory whose `*.log` files are copied to the temp dir when the test fails.
struct KeepLogsOnPanic(tempfile::TempDir);

impl Drop for KeepLogsOnPanic {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let keep = std::env::temp_dir().join(format!("cxrflow-up-logs-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&keep);
        for e in std::fs::read_dir(self.0.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.path().extension().is_some_and(|x| x == "log") {
                let _ = std::fs::copy(e.path(), keep.join(e.file_name()));
            }
        }
        eprintln!("up logs kept in {}", keep.display());
    }
}

/// `cxrflow up` as a person runs it, on `data` with the embedded broker on `broker_port`;
/// stdout and stderr appended to `<data>.log`.
fn spawn_up(
    data: &Path,
    broker_port: u16,
    http_base: u16,
    keys: &TestKeys,
    extra: &[&str],
) -> UpProcess {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.with_extension("log"))
        .expect("up log");
    std::process::Command::new(support::cxrflow_bin())
        .args(["up", "--data-dir"])
        .arg(data)
        .args(["--broker-port", &broker_port.to_string()])
        .args(["--http-base-port", &http_base.to_string()])
        .args(["--gateway-dicom-port", "0", "--session-timeout-ms", "6000"])
        .arg("--models-dir")
        .arg(support::required_env("CXRFLOW_MODELS_DIR"))
        .arg("--dataset")
        .arg(support::required_env("CXRFLOW_DATASET_ROOT"))
        .args(["--studies", "40", "--rate", "8"])
        .arg("--api-keys")
        .arg(&keys.file)
        .args(extra)
        .env(
            "RUST_LOG",
            std::env::var("CXRFLOW_UP_TEST_LOG").unwrap_or("warn,cxrflow_common=info".into()),
        )
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().expect("up log"))
        .stderr(log)
        .spawn()
        .map(UpProcess)
        .expect("cxrflow up starts")
}

/// A `cxrflow up` process, SIGKILLed when dropped (a failing test leaves no stack behind).
struct UpProcess(std::process::Child);

impl Drop for UpProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until every service of `up` answers ready.
async fn wait_up(up: &mut UpProcess, http_base: u16, log: &Path) {
    let http = reqwest::Client::new();
    support::until(Duration::from_secs(120), "cxrflow up ready", || {
        let http = &http;
        let exited = up.0.try_wait().ok().flatten();
        async move {
            if let Some(status) = exited {
                panic!(
                    "cxrflow up exited ({status}):\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            for i in 0..6 {
                let url = format!("http://127.0.0.1:{}/readyz", http_base + i);
                match http.get(&url).send().await {
                    Ok(r) if r.status().is_success() => {}
                    other => return Err(format!("{url}: {other:?}")),
                }
            }
            Ok(())
        }
    })
    .await;
}

/// `cxrflow up` SIGKILLed mid-replay and started again at once on the same data dir
/// (`--no-replay --keep-running`), at three kill moments: its broker dies with it, and every
/// scan the replay got onto `cxr.scan.v1` reaches the worklist exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_up_restarted_at_once_puts_every_published_scan_on_the_worklist_once() {
    let _turn = support::exclusive();
    let dir = KeepLogsOnPanic(tempfile::tempdir().unwrap());
    let codec = cxrflow_contracts::Codec::with_static_registry().unwrap();
    let api_keys = TestKeys::new();
    for (round, kill_after_ms) in [500u64, 2_000, 4_000].into_iter().enumerate() {
        let started = Instant::now();
        let data = dir.0.path().join(format!("stack-{round}"));
        let (broker_port, base) = (cxrflow_testkit::free_port(), support::free_port_block(6));
        let mut first = spawn_up(&data, broker_port, base, &api_keys, &[]);
        let log = data.with_extension("log");
        wait_up(&mut first, base, &log).await;
        let kafka = cxrflow_common::KafkaArgs::for_bootstrap(format!("127.0.0.1:{broker_port}"));
        let snapshot = |logical: &'static str| {
            let k = kafka.clone();
            async move {
                tokio::task::spawn_blocking(move || {
                    cxrflow_common::kafka::read::snapshot(&k, logical, Duration::from_secs(60))
                        .unwrap_or_else(|e| panic!("reading {logical}: {e}"))
                })
                .await
                .unwrap()
            }
        };
        // The kill moment counts from the replay's first scan (opening the dataset comes first).
        support::until(
            Duration::from_secs(60),
            "the replay's first scan",
            || async {
                if snapshot(topics::SCAN).await.is_empty() {
                    Err("no scan yet".to_string())
                } else {
                    Ok(())
                }
            },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(kill_after_ms)).await;
        let broker_pid: u32 = std::fs::read_to_string(data.join("broker/tansu.pid"))
            .expect("the broker's pid file")
            .trim()
            .parse()
            .unwrap();
        drop(first); // SIGKILL
        support::until(
            Duration::from_secs(10),
            "the broker gone with up",
            || async {
                if support::process_alive(broker_pid) {
                    Err(format!("broker {broker_pid} still runs"))
                } else {
                    Ok(())
                }
            },
        )
        .await;

        let mut second = spawn_up(
            &data,
            broker_port,
            base,
            &api_keys,
            &["--no-replay", "--keep-running"],
        );
        wait_up(&mut second, base, &log).await;
        let scans: BTreeSet<String> = snapshot(topics::SCAN)
            .await
            .into_iter()
            .filter_map(|r| r.key.map(|k| String::from_utf8_lossy(&k).into_owned()))
            .collect();
        assert!(
            !scans.is_empty(),
            "round {round}: the replay published before the kill"
        );
        let history = support::until(
            Duration::from_secs(120),
            "every published scan on the worklist",
            || async {
                let decisions: Vec<cxrflow_contracts::TriageDecision> = snapshot(topics::TRIAGE)
                    .await
                    .into_iter()
                    .filter_map(|r| r.payload)
                    .map(|p| codec.decode(&p).expect("triage record decodes"))
                    .collect();
                let h = WorklistHistory::of(&decisions);
                let missing: Vec<_> = scans
                    .iter()
                    .filter(|u| !h.latest.contains_key(*u))
                    .collect();
                if missing.is_empty() {
                    Ok(h)
                } else {
                    let versions: Vec<_> = decisions
                        .iter()
                        .map(|d| (d.study.study_instance_uid.clone(), d.version))
                        .collect();
                    Err(format!(
                        "{} of {} scans not on the worklist: {missing:?}; decisions: {versions:?}",
                        missing.len(),
                        scans.len()
                    ))
                }
            },
        )
        .await;
        // cxr.triage.v1 is compacted (the broker compacts it, e.g. at its restart), so a study's
        // first version may be gone: "once" is one history per study (no version published
        // with two contents) and one entry per study on the live worklist.
        assert!(
            history.conflicting_versions.is_empty(),
            "round {round}: one study version published with two contents: {:?}",
            history.conflicting_versions
        );
        let keys: BTreeSet<_> = history.latest.keys().cloned().collect();
        assert_eq!(
            keys, scans,
            "round {round}: the worklist holds exactly the published scans"
        );
        let items: Vec<serde_json::Value> = TestKeys::client(api_keys.key(Role::Reader))
            .get(format!("http://127.0.0.1:{}/worklist", base + 3))
            .send()
            .await
            .expect("worklist answers")
            .json::<serde_json::Value>()
            .await
            .expect("worklist JSON")["items"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut listed = HashSet::new();
        for i in &items {
            let uid = i["study_uid"].as_str().unwrap_or_default().to_string();
            assert!(
                listed.insert(uid.clone()),
                "round {round}: {uid} listed twice"
            );
        }
        let up_log = std::fs::read_to_string(&log).unwrap_or_default();
        eprintln!(
            "round {round}: killed {kill_after_ms} ms after the first scan, {} scans published, all on the worklist once after {:.0}s; watchdog recoveries: {}",
            scans.len(),
            started.elapsed().as_secs_f64(),
            up_log.matches("recovering").count()
        );
        drop(second);
    }
}

/// `cxrflow up` whose broker port is taken refuses to start and says why.
#[test]
fn up_refuses_a_taken_broker_port() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = std::process::Command::new(support::cxrflow_bin())
        .args(["up", "--data-dir"])
        .arg(dir.path())
        .args([
            "--broker-port",
            &port.to_string(),
            "--gateway-dicom-port",
            "0",
        ])
        .arg("--models-dir")
        .arg(dir.path())
        .arg("--dataset")
        .arg(dir.path())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "up started on a taken port: {text}");
    assert!(
        text.contains(&format!("127.0.0.1:{port} is taken")),
        "{text}"
    );
}
