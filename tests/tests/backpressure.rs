//! Backpressure: with inference stopped, the upstream services keep working through a backlog
//! with bounded memory (the backlog waits in Kafka, not in their heaps), and when inference
//! comes back it drains the backlog (with its own bounded prefetch) and nothing is lost.
//!
//! Memory is the resident set of each service process (`VmRSS`, `/proc/<pid>/status`), sampled
//! while the backlog grows: its growth between a third of the backlog and all of it must stay
//! far below what holding the backlog would cost.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use cxrflow_contracts::topics;
use support::{until, Pipeline, Service};

/// Resident set size of a process, in bytes.
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_inference_stopped_upstream_memory_stays_bounded_and_nothing_is_lost() {
    let _turn = support::exclusive();
    let mut p = Pipeline::start().await;
    p.kill(Service::Inference);
    let killed_at = std::time::Instant::now();

    let n = 150;
    let studies = support::studies(&p.dataset, n, 77);
    let uids: BTreeSet<String> = studies.iter().map(|s| s.uid.clone()).collect();
    // Inline images (as a gateway without a shared store sends them): the heaviest case.
    let replay = support::start_replay(&p, &studies, 40.0, 1 << 20, 77);

    // Preprocessed tensors pile up on the topic while inference is away; sample RSS meanwhile.
    let samples: std::cell::RefCell<Vec<(usize, u64, u64)>> = Default::default();
    let backlog = until(
        Duration::from_secs(300),
        "the whole backlog preprocessed",
        || {
            let p = &p;
            let samples = &samples;
            async move {
                let done = p.snapshot(topics::PREPROCESSED).await.len();
                let ingest = p.pid(Service::Ingest).and_then(rss_bytes).unwrap_or(0);
                let pre = p.pid(Service::Preprocess).and_then(rss_bytes).unwrap_or(0);
                samples.borrow_mut().push((done, ingest, pre));
                if done >= n {
                    Ok(done)
                } else {
                    Err(format!("{done} of {n} preprocessed"))
                }
            }
        },
    )
    .await;
    assert_eq!(
        backlog, n,
        "each study preprocessed once while inference was away"
    );
    replay.await.expect("replay task");
    let samples = samples.into_inner();

    let at_third = samples
        .iter()
        .find(|(d, _, _)| *d >= n / 3)
        .copied()
        .expect("a sample at a third of the backlog");
    let peak_ingest = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let peak_pre = samples.iter().map(|s| s.2).max().unwrap_or(0);
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    eprintln!(
        "RSS at {} preprocessed: ingest {:.0} MiB, preprocess {:.0} MiB; peak over the backlog of {n}: ingest {:.0} MiB, preprocess {:.0} MiB",
        at_third.0,
        mib(at_third.1),
        mib(at_third.2),
        mib(peak_ingest),
        mib(peak_pre)
    );
    // The backlog's tensors alone are n × 224² bytes, its images several MiB more: growth past
    // the first third well under that shows nothing is held per record.
    let tensors = (n as u64) * 224 * 224;
    for (name, third, peak) in [
        ("ingest", at_third.1, peak_ingest),
        ("preprocess", at_third.2, peak_pre),
    ] {
        assert!(peak > 0, "{name}: no RSS sample");
        assert!(
            peak.saturating_sub(third) < tensors / 2,
            "{name} grew {:.1} MiB between a third of the backlog and its end",
            mib(peak.saturating_sub(third))
        );
        assert!(peak < 1 << 30, "{name} peaked at {:.0} MiB", mib(peak));
    }

    // Inference comes back and drains the backlog: every study on the worklist exactly once.
    // (It stays away at least as long as the reliability suite's restarts: see
    // `support::extra_downtime_ms` for the embedded broker's group-rejoin limitation.)
    let down = Duration::from_millis(support::extra_downtime_ms());
    tokio::time::sleep(down.saturating_sub(killed_at.elapsed())).await;
    p.spawn(Service::Inference);
    p.wait_ready(Service::Inference, Duration::from_secs(120))
        .await;
    until(
        Duration::from_secs(300),
        "every study on the worklist after the backlog drained",
        || {
            let p = &p;
            let uids = &uids;
            async move {
                let h = support::WorklistHistory::of(&p.decisions().await);
                let missing = uids.iter().filter(|u| !h.opened.contains_key(*u)).count();
                if missing == 0 {
                    Ok(())
                } else {
                    Err(format!(
                        "{missing} of {} not yet on the worklist",
                        uids.len()
                    ))
                }
            }
        },
    )
    .await;
    let h = support::WorklistHistory::of(&p.decisions().await);
    for u in &uids {
        assert_eq!(h.opened[u], 1, "{u} opened {} times", h.opened[u]);
    }
    assert!(
        h.conflicting_versions.is_empty(),
        "{:?}",
        h.conflicting_versions
    );
    let inference_rss = p.pid(Service::Inference).and_then(rss_bytes).unwrap_or(0);
    eprintln!(
        "inference RSS after draining the backlog: {:.0} MiB",
        mib(inference_rss)
    );
    p.check_alive();
    assert!(p.unexpected_exits.is_empty(), "{:?}", p.unexpected_exits);
}
