//! Simulated radiologists: N readers take studies from the live worklist (`GET /worklist` of
//! the triage service) in the order shown, read for a drawn time, and publish the dataset's
//! ground truth as their report (`cxr.feedback.v1`). Read durations are drawn per study from a
//! seeded log-normal, so the FIFO counterfactual in the report uses the very same durations.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cxrflow_common::kafka::Producer;
use cxrflow_common::time::now_millis;
use cxrflow_contracts::{Codec, FindingLabel, LabelState as WireLabel, RadiologistReport};
use rand::SeedableRng;
use rand_distr::{Distribution, LogNormal};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::dataset::labels::{Finding, LabelState};
use crate::replay::ReplayStudy;

#[derive(Debug, Clone)]
pub struct ReaderConfig {
    pub readers: usize,
    /// Median read time.
    pub median_read: Duration,
    /// `http://host:port` of the triage service.
    pub triage_url: String,
    /// Sent as `Authorization: Bearer`; empty: none.
    pub triage_api_key: String,
    pub seed: u64,
}

/// One worklist entry as the triage service serves it (only the fields readers need).
#[derive(Debug, Clone, Deserialize)]
pub struct WorklistEntry {
    pub study_uid: String,
    pub tier: String,
    pub status: String,
}

/// `GET /worklist`'s body.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct WorklistView {
    pub items: Vec<WorklistEntry>,
}

/// What happened to one study.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReadEvent {
    pub uid: String,
    pub tier: String,
    pub critical_truth: bool,
    /// When a reader first saw it on the worklist.
    pub available_at: i64,
    pub read_started_at: i64,
    pub read_ended_at: i64,
    pub read_ms: u64,
    /// How long the read kept its reader from the next study: the read itself plus publishing
    /// the report (the broker's acknowledgement). The FIFO counterfactual occupies its readers
    /// as long, so that both orders pay the same per-read overhead.
    pub busy_ms: u64,
}

/// The read duration of a study: deterministic per (seed, uid).
pub fn read_duration(cfg: &ReaderConfig, uid: &str) -> Duration {
    let h = uid.bytes().fold(cfg.seed ^ 0xcbf2_9ce4_8422_2325, |a, b| {
        (a ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let mut rng = rand::rngs::StdRng::seed_from_u64(h);
    let median = cfg.median_read.as_secs_f64().max(1e-3);
    let d = LogNormal::new(median.ln(), 0.4).expect("valid log-normal");
    Duration::from_secs_f64(d.sample(&mut rng).min(median * 6.0))
}

fn report(
    study: &ReplayStudy,
    reader: usize,
    start: i64,
    end: i64,
    tier: &str,
) -> RadiologistReport {
    let labels = Finding::ALL
        .iter()
        .map(|f| FindingLabel {
            finding: f.name().to_string(),
            state: match study.row.label(*f) {
                LabelState::Positive => WireLabel::Present,
                LabelState::Uncertain => WireLabel::Uncertain,
                // CheXpert's blank means "not mentioned": the reader reports it absent.
                LabelState::Negative | LabelState::Blank => WireLabel::Absent,
            },
        })
        .collect();
    RadiologistReport {
        report_id: format!("{}-r{reader}", study.uid),
        study_instance_uid: study.uid.clone(),
        site_id: study.site.clone(),
        reader_ref: format!("reader-{reader:02}"),
        read_started_at: start,
        read_ended_at: end,
        labels,
        tier_at_read: Some(tier.to_string()),
    }
}

/// The studies published so far, shared by the gateway (which adds them as it publishes) and
/// the readers (who read until every published study is read and publishing is over).
#[derive(Debug, Clone, Default)]
pub struct Traffic {
    studies: Arc<Mutex<HashMap<String, ReplayStudy>>>,
    done: Arc<AtomicBool>,
    reads: Arc<AtomicUsize>,
}

impl Traffic {
    /// Traffic that is already complete: exactly `studies`.
    pub fn of(studies: impl IntoIterator<Item = ReplayStudy>) -> Self {
        let t = Traffic::default();
        for s in studies {
            t.add(s);
        }
        t.finish();
        t
    }

    pub fn add(&self, study: ReplayStudy) {
        self.lock().insert(study.uid.clone(), study);
    }

    /// No more studies will be added.
    pub fn finish(&self) {
        self.done.store(true, Ordering::SeqCst);
    }

    pub fn is_finished(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }

    pub fn published(&self) -> usize {
        self.lock().len()
    }

    /// Studies read so far.
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    /// Every study published so far, by UID.
    pub fn snapshot(&self) -> HashMap<String, ReplayStudy> {
        self.lock().clone()
    }

    fn get(&self, uid: &str) -> Option<ReplayStudy> {
        self.lock().get(uid).cloned()
    }

    fn contains(&self, uid: &str) -> bool {
        self.lock().contains_key(uid)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ReplayStudy>> {
        // A reader that panicked cannot leave the map half-updated (single inserts).
        self.studies.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Default)]
struct Board {
    claimed: HashSet<String>,
    available: HashMap<String, i64>,
    events: Vec<ReadEvent>,
}

/// Runs the readers until every study in `studies` was read or `shutdown`.
pub async fn run_readers(
    cfg: ReaderConfig,
    studies: Arc<HashMap<String, ReplayStudy>>,
    producer: Producer,
    codec: Arc<Codec>,
    shutdown: CancellationToken,
) -> Vec<ReadEvent> {
    let traffic = Traffic::of(studies.values().cloned());
    read_traffic(cfg, traffic, producer, codec, shutdown).await
}

/// Runs the readers until every study of `studies` was read (once publishing is over) or
/// `shutdown`.
pub async fn read_traffic(
    cfg: ReaderConfig,
    studies: Traffic,
    producer: Producer,
    codec: Arc<Codec>,
    shutdown: CancellationToken,
) -> Vec<ReadEvent> {
    let board = Arc::new(Mutex::new(Board::default()));
    let http = reqwest::Client::new();
    let mut tasks = tokio::task::JoinSet::new();
    for reader in 0..cfg.readers {
        let (cfg, studies, producer, codec, board, http, shutdown) = (
            cfg.clone(),
            studies.clone(),
            producer.clone(),
            codec.clone(),
            board.clone(),
            http.clone(),
            shutdown.clone(),
        );
        tasks.spawn(async move {
            let url = format!("{}/worklist?limit=200", cfg.triage_url);
            while !shutdown.is_cancelled() {
                let finished = studies.is_finished();
                if finished && board.lock().expect("board").events.len() >= studies.published() {
                    break;
                }
                let mut req = http.get(&url);
                if !cfg.triage_api_key.is_empty() {
                    req = req.bearer_auth(&cfg.triage_api_key);
                }
                let list: Vec<WorklistEntry> = match req.send().await {
                    Ok(r) => r.json::<WorklistView>().await.unwrap_or_default().items,
                    Err(_) => Vec::new(),
                };
                let now = now_millis();
                let pick = {
                    let mut b = board.lock().expect("board");
                    for e in &list {
                        b.available.entry(e.study_uid.clone()).or_insert(now);
                    }
                    let pick = list
                        .iter()
                        .find(|e| {
                            e.status != "READ"
                                && studies.contains(&e.study_uid)
                                && !b.claimed.contains(&e.study_uid)
                        })
                        .cloned();
                    if let Some(p) = &pick {
                        b.claimed.insert(p.study_uid.clone());
                    }
                    pick
                };
                let Some(entry) = pick else {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                        _ = shutdown.cancelled() => break,
                    }
                    continue;
                };
                let Some(study) = studies.get(&entry.study_uid) else {
                    continue;
                };
                let d = read_duration(&cfg, &study.uid);
                let start = now_millis();
                tokio::time::sleep(d).await;
                let end = now_millis();
                let rep = report(&study, reader, start, end, &entry.tier);
                if let Err(e) = producer.send(&codec, &rep, &BTreeMap::new()).await {
                    tracing::warn!(error = %e, "reader could not publish a report; will re-read");
                    board.lock().expect("board").claimed.remove(&study.uid);
                    continue;
                }
                let freed = now_millis();
                let mut b = board.lock().expect("board");
                let available_at = b.available.get(&study.uid).copied().unwrap_or(start);
                b.events.push(ReadEvent {
                    uid: study.uid.clone(),
                    tier: entry.tier.clone(),
                    critical_truth: study.critical_truth(),
                    available_at,
                    read_started_at: start,
                    read_ended_at: end,
                    read_ms: d.as_millis() as u64,
                    busy_ms: (freed - start).max(0) as u64,
                });
                studies.reads.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let b = board.lock().expect("board");
    b.events.clone()
}

/// The FIFO counterfactual: the same studies, availability times and reader occupancy (read
/// plus report, [`ReadEvent::busy_ms`]), read in arrival order by the same number of readers.
/// Returns (uid, wait ms).
pub fn fifo_waits(events: &[ReadEvent], readers: usize) -> Vec<(String, i64)> {
    let mut order: Vec<&ReadEvent> = events.iter().collect();
    order.sort_by_key(|e| (e.available_at, e.uid.clone()));
    let mut free_at = vec![i64::MIN; readers.max(1)];
    order
        .into_iter()
        .map(|e| {
            let (slot, t) = free_at
                .iter()
                .copied()
                .enumerate()
                .min_by_key(|(_, t)| *t)
                .expect("at least one reader");
            let start = t.max(e.available_at);
            free_at[slot] = start + e.busy_ms.max(e.read_ms) as i64;
            (e.uid.clone(), start - e.available_at)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(uid: &str, at: i64, ms: u64) -> ReadEvent {
        ReadEvent {
            uid: uid.into(),
            tier: "ROUTINE".into(),
            critical_truth: false,
            available_at: at,
            read_started_at: 0,
            read_ended_at: 0,
            read_ms: ms,
            busy_ms: ms,
        }
    }

    #[test]
    fn fifo_serves_in_arrival_order() {
        let w: BTreeMap<String, i64> =
            fifo_waits(&[ev("b", 10, 100), ev("a", 0, 100), ev("c", 20, 100)], 1)
                .into_iter()
                .collect();
        assert_eq!(w["a"], 0);
        assert_eq!(w["b"], 90);
        assert_eq!(w["c"], 180);
    }

    #[test]
    fn fifo_readers_are_busy_for_the_read_and_its_report() {
        // Reads of 100 ms whose reports took 50 ms more to be acknowledged: the counterfactual
        // readers are not free any sooner than the real ones were.
        let slow = |uid: &str, at| ReadEvent {
            busy_ms: 150,
            ..ev(uid, at, 100)
        };
        let w: BTreeMap<String, i64> = fifo_waits(&[slow("a", 0), slow("b", 10)], 1)
            .into_iter()
            .collect();
        assert_eq!(w["b"], 140);
    }

    #[test]
    fn read_durations_are_deterministic_per_study() {
        let cfg = ReaderConfig {
            readers: 1,
            median_read: Duration::from_millis(200),
            triage_url: String::new(),
            triage_api_key: String::new(),
            seed: 1,
        };
        assert_eq!(read_duration(&cfg, "x"), read_duration(&cfg, "x"));
    }
}
