//! The pipeline's measurements, on one stack: capacity (a flood of studies, steady drain rate)
//! with the CPU time each process spent on it, latency open-loop at 50% and 90% of capacity
//! and at the baseline's load, peak RSS per service at steady load, then an overload burst at
//! twice the capacity with the critical studies' latency and worklist standing.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use cxrflow_common::kafka::Producer;
use cxrflow_common::registry::codec_for;
use serde::Serialize;

use crate::cli::Args;
use crate::corpus::Corpus;
use crate::load::LoadResult;
use crate::pipeline::{worklist_standing, BatchFacts, Driver, Observer, WorklistStanding};
use crate::procfs::{busy_share, cpu_seconds, machine_ticks, memory, Memory};
use crate::schedule::offsets;
use crate::stack::{Stack, StackConfig};

/// CPU seconds one process spent during the capacity flood.
#[derive(Debug, Clone, Serialize)]
pub struct CpuShare {
    pub process: String,
    pub cpu_s: f64,
    pub cpu_ms_per_study: f64,
}

/// CPU one process used while the stack had nothing to do (polling, timers).
#[derive(Debug, Clone, Serialize)]
pub struct IdleCpu {
    pub process: String,
    /// CPU seconds per second: 0.19 = 19 % of one core.
    pub cores: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcessMemory {
    pub process: String,
    #[serde(flatten)]
    pub memory: Memory,
}

#[derive(Debug, Clone, Serialize)]
pub struct PipelineReport {
    pub stack: StackConfig,
    pub capacity: LoadResult,
    /// Steady drain rate of the flood: the pipeline's maximum sustained throughput.
    pub capacity_per_s: f64,
    pub capacity_batches: BatchFacts,
    /// Where the CPU went during the flood (services, broker, this bench).
    pub cpu: Vec<CpuShare>,
    /// What each process costs with no study in flight (after the warm-up, before the flood).
    pub idle_cpu: Vec<IdleCpu>,
    /// Busy share of the whole machine's CPU during the flood.
    pub machine_busy: Option<f64>,
    /// Share of the machine's CPU the pipeline's processes (and this bench) used during the
    /// flood; the rest of `machine_busy` was someone else.
    pub own_cpu_share: Option<f64>,
    pub at_50: LoadResult,
    /// Where the latency goes at 50% load.
    pub at_50_stages: BatchFacts,
    pub at_90: LoadResult,
    /// At the baseline's 90% load (the same offered load as `fastapi.at_90`).
    pub equal_load: Option<LoadResult>,
    pub burst: LoadResult,
    pub burst_worklist: Option<WorklistStanding>,
    pub dead_letters: usize,
    pub memory_steady: Vec<ProcessMemory>,
    pub memory_after_burst: Vec<ProcessMemory>,
    /// The capacity flood again on full-size DICOM (`--full-size-dicom`), right after the
    /// small corpus's, on the same stack.
    pub full_size: Option<FullSizeCapacity>,
}

/// The pipeline's capacity on the workload hospitals send: full-size CR DICOM.
#[derive(Debug, Clone, Serialize)]
pub struct FullSizeCapacity {
    /// Transfer syntaxes, taken by the studies in turn.
    pub syntaxes: Vec<String>,
    pub images: usize,
    pub mean_file_mib: f64,
    pub capacity: LoadResult,
    /// Studies per second over the whole flood, first send to last decision
    /// (`capacity.achieved_per_s`). Not the 10th–90th percentile window the small corpus's
    /// capacity uses: with preprocessing as costly as the model, a flood on shared cores does not
    /// run every stage at one rate (preprocess takes the cores first and the model finishes
    /// alone), and that window read half as much again as the cores can give (37.5 against 24.6
    /// studies/s, 2026-12-06).
    pub capacity_per_s: f64,
    /// `capacity_per_s` ÷ the best bare layout: the model alone, on tensors of the same size.
    pub efficiency: f64,
    /// `capacity_per_s` ÷ the small corpus's rate over its whole flood, in this run (issue #24's
    /// goal: ≥ 0.9).
    pub of_small_corpus: f64,
    /// CPU per study, every process of the stack together (the sum of `cpu`).
    pub cpu_ms_per_study: f64,
    /// The small corpus's CPU per study ÷ this one's, in this run: the same ratio from what the
    /// cores spent rather than from wall time.
    pub of_small_corpus_cpu: f64,
    /// Dead letters during the flood (a full-size file preprocess refused).
    pub dead_letters: usize,
    pub cpu: Vec<CpuShare>,
}

/// CPU per process between two snapshots, per study completed.
fn cpu_shares(
    before: &[(String, Option<f64>)],
    after: &[(String, Option<f64>)],
    done: usize,
) -> Vec<CpuShare> {
    let done = done.max(1) as f64;
    before
        .iter()
        .zip(after)
        .filter_map(|((name, a), (_, b))| {
            let s = (*b)? - (*a)?;
            Some(CpuShare {
                process: name.clone(),
                cpu_s: s,
                cpu_ms_per_study: s * 1e3 / done,
            })
        })
        .collect()
}

fn print_cpu(cpu: &[CpuShare]) {
    for c in cpu {
        eprintln!(
            "    cpu {:<36} {:>8.1} s  {:>7.1} ms/study",
            c.process, c.cpu_s, c.cpu_ms_per_study
        );
    }
}

fn memories(stack: &Stack) -> Vec<ProcessMemory> {
    stack
        .pids()
        .into_iter()
        .filter_map(|(process, pid)| memory(pid).map(|memory| ProcessMemory { process, memory }))
        .collect()
}

fn cpu_snapshot(stack: &Stack) -> Vec<(String, Option<f64>)> {
    let mut v: Vec<(String, Option<f64>)> = stack
        .pids()
        .into_iter()
        .map(|(n, p)| (n, cpu_seconds(&p.to_string())))
        .collect();
    v.push((
        "bench (load generator + observer)".into(),
        cpu_seconds("self"),
    ));
    v
}

pub async fn run(
    args: &Args,
    cpus: usize,
    corpus: &Arc<Corpus>,
    cfg: StackConfig,
    bare_best: f64,
    equal_rate: Option<f64>,
    full: Option<&Arc<Corpus>>,
) -> anyhow::Result<PipelineReport> {
    eprintln!(
        "starting the stack: {} ({:?})",
        cfg.bin.display(),
        cfg.inference
    );
    let stack = Stack::start(&cfg, &args.scratch).await?;
    let (codec, _) = codec_for(&stack.kafka).await?;
    let mut driver = Driver {
        producer: Producer::new(&stack.kafka)?,
        codec: codec.clone(),
        corpus: corpus.clone(),
        observer: Observer::start(&stack.kafka, codec)?,
        scan_images: args.scan_images,
    };
    let patience = Duration::from_secs(60);
    let wait = Duration::from_secs(600);
    let zero = |n: usize| vec![Duration::ZERO; n];

    // Warm-up: consumers joined, sessions' arenas grown, caches filled.
    let warm =
        (cfg.inference.max_batch * cfg.inference.replicas * cfg.inference.sessions * 2).max(8);
    warm_up(&driver, "warm-up", warm, patience, wait).await?;

    // Idle: every study of the warm-up decided, nothing sent for a while.
    let idle_len = Duration::from_secs(if args.quick { 5 } else { 15 });
    let (before, t) = (cpu_snapshot(&stack), std::time::Instant::now());
    tokio::time::sleep(idle_len).await;
    let (after, idle_s) = (cpu_snapshot(&stack), t.elapsed().as_secs_f64());
    let idle_cpu: Vec<IdleCpu> = before
        .iter()
        .zip(&after)
        .filter_map(|((name, a), (_, b))| {
            Some(IdleCpu {
                process: name.clone(),
                cores: ((*b)? - (*a)?) / idle_s,
            })
        })
        .collect();
    eprintln!(
        "  idle for {idle_len:?}: {}",
        idle_cpu
            .iter()
            .map(|c| format!("{} {:.0}%", c.process, c.cores * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let n = ((bare_best * args.flood_len().as_secs_f64()) as usize).max(60);
    eprintln!("  flood: {n} studies at once");
    let (cpu0, ticks0, t0) = (
        cpu_snapshot(&stack),
        machine_ticks(),
        std::time::Instant::now(),
    );
    let (capacity, capacity_batches) = driver.run("capacity", None, &zero(n), patience, wait).await;
    let (cpu1, ticks1, flood_s) = (
        cpu_snapshot(&stack),
        machine_ticks(),
        t0.elapsed().as_secs_f64(),
    );
    let capacity_per_s = capacity
        .steady_per_s
        .or(capacity.achieved_per_s)
        .ok_or_else(|| anyhow::anyhow!("the pipeline completed too few studies: {capacity:?}"))?;
    eprintln!(
        "  capacity {capacity_per_s:.2} studies/s (bare best {bare_best:.2}: {:.3}), batches {capacity_batches:?}",
        capacity_per_s / bare_best
    );
    let cpu = cpu_shares(&cpu0, &cpu1, capacity.completed);
    print_cpu(&cpu);

    let full_size = match full {
        Some(full) => {
            // The files go where a gateway sharing ingest's store puts them.
            let full = Arc::new(full.stored_in(&stack.blobs).await?);
            let small_corpus = std::mem::replace(&mut driver.corpus, full);
            let small = SmallCorpus {
                // The same measure as the full-size flood's (first send to last decision),
                // never the 10th-90th percentile window: comparing the two read 37.5 against 24.6.
                per_s: capacity.achieved_per_s.ok_or_else(|| {
                    anyhow::anyhow!(
                        "the small corpus's flood has no whole-flood rate: {capacity:?}"
                    )
                })?,
                cpu_ms_per_study: cpu.iter().map(|c| c.cpu_ms_per_study).sum(),
            };
            let measured = full_size_capacity(&driver, &stack, args, n, bare_best, small).await;
            driver.corpus = small_corpus;
            Some(measured?)
        }
        None => None,
    };

    let mut steady = Vec::new();
    let mut stages = Vec::new();
    for (share, phase) in [(0.5, "cxrflow 50%"), (0.9, "cxrflow 90%")] {
        let rate = capacity_per_s * share;
        let o = offsets(args.arrivals, rate, args.run_len(), 11);
        let (r, st) = driver.run(phase, Some(rate), &o, patience, wait).await;
        stages.push(st);
        eprintln!(
            "  {phase} ({rate:.2}/s): p50 {:?} ms, p99 {:?} ms, lost {}",
            r.latency_ms.p50, r.latency_ms.p99, r.lost
        );
        steady.push(r);
    }
    let equal_load = match equal_rate {
        Some(rate) => {
            let o = offsets(args.arrivals, rate, args.run_len(), 11);
            let (r, _) = driver
                .run("cxrflow at baseline 90%", Some(rate), &o, patience, wait)
                .await;
            eprintln!(
                "  at the baseline's load ({rate:.2}/s): p50 {:?} ms, p99 {:?} ms",
                r.latency_ms.p50, r.latency_ms.p99
            );
            Some(r)
        }
        None => None,
    };
    let memory_steady = memories(&stack);

    let rate = capacity_per_s * 2.0;
    let o = offsets(args.arrivals, rate, args.burst_len(), 13);
    eprintln!("  burst: {} studies at {rate:.2}/s", o.len());
    let burst_wait = args.burst_len() * 3 + Duration::from_secs(120);
    let (burst, _) = driver
        .run("burst", Some(rate), &o, patience, burst_wait)
        .await;
    eprintln!(
        "  burst: {} decided, {} lost, drain {:?} s",
        burst.completed, burst.lost, burst.drain_s
    );
    let phase_uids: HashSet<String> = (0..o.len()).map(|i| corpus.uid("burst", i)).collect();
    let critical: HashSet<String> = (0..o.len())
        .filter(|i| corpus.image(*i).critical)
        .map(|i| corpus.uid("burst", i))
        .collect();
    let burst_worklist = match stack.triage_url() {
        Some(url) => worklist_standing(&url, &critical, &phase_uids).await.ok(),
        None => None,
    };
    let memory_after_burst = memories(&stack);
    let own_cpu_share = Some(cpu.iter().map(|c| c.cpu_s).sum::<f64>() / (flood_s * cpus as f64));
    let dead_letters = driver.observer.lock().dead_letters;
    drop(driver);
    stack.stop().await;
    Ok(PipelineReport {
        stack: cfg,
        capacity,
        capacity_per_s,
        capacity_batches,
        cpu,
        idle_cpu,
        machine_busy: busy_share(ticks0, ticks1),
        own_cpu_share,
        at_90: steady.pop().expect("two steady runs"),
        at_50: steady.pop().expect("two steady runs"),
        at_50_stages: stages.swap_remove(0),
        equal_load,
        burst,
        burst_worklist,
        dead_letters,
        memory_steady,
        memory_after_burst,
        full_size,
    })
}

/// `n` studies at once, every one of which must reach the worklist: consumers joined,
/// sessions' arenas grown, caches filled.
async fn warm_up(
    driver: &Driver,
    phase: &str,
    n: usize,
    patience: Duration,
    wait: Duration,
) -> anyhow::Result<()> {
    let (w, _) = driver
        .run(phase, None, &vec![Duration::ZERO; n], patience, wait)
        .await;
    anyhow::ensure!(
        w.completed == w.sent,
        "{phase}: only {} of {} studies reached the worklist",
        w.completed,
        w.sent
    );
    Ok(())
}

/// The small corpus's flood, for the full-size one to be compared with.
struct SmallCorpus {
    /// Studies per second, first send to last decision.
    per_s: f64,
    cpu_ms_per_study: f64,
}

/// A warm-up and a capacity flood of the driver's (full-size) corpus: `n` studies, as many as
/// the small corpus's flood.
async fn full_size_capacity(
    driver: &Driver,
    stack: &Stack,
    args: &Args,
    n: usize,
    bare_best: f64,
    small: SmallCorpus,
) -> anyhow::Result<FullSizeCapacity> {
    let (patience, wait) = (Duration::from_secs(60), Duration::from_secs(900));
    let zero = |n: usize| vec![Duration::ZERO; n];
    let corpus = &driver.corpus;
    eprintln!(
        "  full-size DICOM: {} studies, {:.1} MiB each on average",
        corpus.images.len(),
        corpus.mean_mib()
    );
    warm_up(driver, "full-size warm-up", 8, patience, wait).await?;
    let dead_before = driver.observer.lock().dead_letters;
    eprintln!("  full-size flood: {n} studies at once");
    let cpu0 = cpu_snapshot(stack);
    let (capacity, _) = driver
        .run("full-size capacity", None, &zero(n), patience, wait)
        .await;
    let cpu1 = cpu_snapshot(stack);
    let capacity_per_s = capacity.achieved_per_s.ok_or_else(|| {
        anyhow::anyhow!("the pipeline completed too few full-size studies: {capacity:?}")
    })?;
    let efficiency = capacity_per_s / bare_best;
    let of_small_corpus = capacity_per_s / small.per_s;
    let cpu = cpu_shares(&cpu0, &cpu1, capacity.completed);
    let cpu_ms_per_study: f64 = cpu.iter().map(|c| c.cpu_ms_per_study).sum();
    let of_small_corpus_cpu = small.cpu_ms_per_study / cpu_ms_per_study;
    eprintln!(
        "  full-size capacity {capacity_per_s:.2} studies/s over the whole flood (small corpus {:.2}): {efficiency:.3} of bare, {of_small_corpus:.3} of the small corpus's; CPU {cpu_ms_per_study:.1} ms/study (small {:.1}): {of_small_corpus_cpu:.3}",
        small.per_s, small.cpu_ms_per_study
    );
    print_cpu(&cpu);
    Ok(FullSizeCapacity {
        syntaxes: args.full_size_dicom.clone(),
        images: corpus.images.len(),
        mean_file_mib: corpus.mean_mib(),
        capacity,
        capacity_per_s,
        efficiency,
        of_small_corpus,
        cpu_ms_per_study,
        of_small_corpus_cpu,
        dead_letters: driver.observer.lock().dead_letters - dead_before,
        cpu,
    })
}
