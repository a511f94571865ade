//! Bare ONNX Runtime throughput: the ceiling the pipeline is measured against. A small search
//! over layouts (intra-op threads per session × concurrent sessions × batch size), each run
//! for a fixed time with every session busy on its own thread, through the same
//! `ModelSession` the inference service uses (same normalization, same runtime library).

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use cxrflow_inference::manifest::ModelDir;
use cxrflow_inference::session::{ModelSession, SessionOptions};
use serde::Serialize;

use crate::procfs::{busy_share, cpu_seconds, machine_ticks};

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Layout {
    pub intra_op_threads: usize,
    pub sessions: usize,
    pub batch: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    #[serde(flatten)]
    pub layout: Layout,
    pub images_per_s: f64,
    pub images: usize,
    pub seconds: f64,
    /// CPU time this process spent per image while timed (robust to other load on the
    /// machine, unlike `images_per_s`).
    pub cpu_ms_per_image: Option<f64>,
    /// Share of the whole machine's CPU that was busy while timed; well above
    /// `own_cpu_share`, something else was running.
    pub machine_busy: Option<f64>,
    pub own_cpu_share: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Search {
    pub trials: Vec<Trial>,
    /// The fastest layout: the denominator of pipeline efficiency.
    pub best: Trial,
}

/// Threads × sessions pairs worth trying on `cpus` logical CPUs: every split that fills the
/// machine exactly, plus one single-threaded session.
pub fn thread_layouts(cpus: usize) -> Vec<(usize, usize)> {
    let cpus = cpus.max(1);
    let mut out: Vec<(usize, usize)> = (1..=cpus)
        .filter(|s| cpus.is_multiple_of(*s))
        .map(|s| (cpus / s, s))
        .collect();
    if !out.contains(&(1, 1)) {
        out.push((1, 1));
    }
    out
}

fn input(len: usize, batch: usize, seed: usize) -> Vec<Vec<u8>> {
    (0..batch)
        .map(|b| {
            (0..len)
                .map(|i| ((i * 31 + b * 7 + seed * 13) % 251) as u8)
                .collect()
        })
        .collect()
}

fn run_layout(
    model: &ModelDir,
    layout: Layout,
    min: Duration,
    cpus: usize,
) -> anyhow::Result<Trial> {
    let opts = SessionOptions {
        intra_op_threads: layout.intra_op_threads,
        ..SessionOptions::default()
    };
    let sessions: Vec<ModelSession> = (0..layout.sessions)
        .map(|_| ModelSession::load(model.clone(), &opts, None))
        .collect::<Result<_, _>>()?;
    let len = model.manifest.input_len();
    // The sessions' threads and this one: the timed part starts when all are warm.
    let barrier = Arc::new(Barrier::new(layout.sessions + 1));
    let counts = std::thread::scope(|scope| {
        let handles: Vec<_> = sessions
            .iter()
            .enumerate()
            .map(|(k, session)| {
                let barrier = barrier.clone();
                scope.spawn(move || -> anyhow::Result<(usize, f64)> {
                    let images = input(len, layout.batch, k);
                    let refs: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
                    // Warm-up (allocations, arena growth); wait at the barrier even on failure.
                    let warm = session.run(&refs);
                    barrier.wait();
                    warm?;
                    let t = Instant::now();
                    let mut done = 0;
                    while t.elapsed() < min || done == 0 {
                        session.run(&refs)?;
                        done += layout.batch;
                    }
                    Ok((done, t.elapsed().as_secs_f64()))
                })
            })
            .collect();
        barrier.wait();
        let start = (cpu_seconds("self"), machine_ticks());
        let counts = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("session thread panicked")))
            })
            .collect::<Vec<_>>();
        (counts, start, (cpu_seconds("self"), machine_ticks()))
    });
    let (counts, (cpu0, ticks0), (cpu1, ticks1)) = counts;
    let mut images = 0;
    let mut seconds: f64 = 0.0;
    for c in counts {
        let (n, s) = c?;
        images += n;
        seconds = seconds.max(s);
    }
    let cpu = cpu1.zip(cpu0).map(|(b, a)| b - a);
    Ok(Trial {
        layout,
        images_per_s: images as f64 / seconds,
        images,
        seconds,
        cpu_ms_per_image: cpu.map(|c| c * 1e3 / images.max(1) as f64),
        machine_busy: busy_share(ticks0, ticks1),
        own_cpu_share: cpu.map(|c| c / (seconds * cpus as f64)),
    })
}

/// Runs every (threads, sessions) × batch layout for at least `min` each.
pub fn search(
    model: &ModelDir,
    cpus: usize,
    batches: &[usize],
    min: Duration,
) -> anyhow::Result<Search> {
    let mut trials = Vec::new();
    for (intra_op_threads, sessions) in thread_layouts(cpus) {
        for &batch in batches {
            let layout = Layout {
                intra_op_threads,
                sessions,
                batch,
            };
            let t = run_layout(model, layout, min, cpus)?;
            eprintln!(
                "  bare ORT: {intra_op_threads} thread(s) × {sessions} session(s), batch {batch}: {:.2} images/s, {:.0} CPU-ms/image (machine busy {:.0}%, this process {:.0}%)",
                t.images_per_s,
                t.cpu_ms_per_image.unwrap_or(f64::NAN),
                t.machine_busy.unwrap_or(f64::NAN) * 100.0,
                t.own_cpu_share.unwrap_or(f64::NAN) * 100.0
            );
            trials.push(t);
        }
    }
    let best = trials
        .iter()
        .max_by(|a, b| a.images_per_s.total_cmp(&b.images_per_s))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no bare layout tried"))?;
    Ok(Search { trials, best })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_fill_the_machine() {
        assert_eq!(thread_layouts(2), vec![(2, 1), (1, 2), (1, 1)]);
        assert_eq!(thread_layouts(1), vec![(1, 1)]);
        assert_eq!(thread_layouts(4), vec![(4, 1), (2, 2), (1, 4), (1, 1)]);
    }
}
