//! What `/healthz` and `/readyz` say about a service's consumer loops.
//!
//! Live: no stage has had work for longer than its bound without making progress. Work is lag
//! on partitions the stage holds, or records waiting in its topics while it holds nothing and
//! nobody else commits (the ownership watchdog's stall); progress is a record fetched or
//! finished, or a transient failure retried (a stage waiting out a dependency is alive and
//! restarting it would not help). Ready: every stage has held a partition at least once, so a
//! service reports ready only once its group gave it something to consume.
//!
//! Why not simply "the process answers HTTP": a consumer that silently owns nothing, or whose
//! loop is wedged, answers HTTP perfectly while the backlog grows; an orchestrator can only
//! restart what its liveness probe reports.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every stage of one service; cloned into the HTTP state and the stage runtime.
#[derive(Clone, Default)]
pub struct Health {
    stages: Arc<Mutex<Vec<Arc<StageProbe>>>>,
}

impl Health {
    /// Registers a stage; it counts until the returned guard is dropped.
    pub fn register(&self, name: &str, bound: Duration) -> ProbeGuard {
        let probe = Arc::new(StageProbe::new(name, bound));
        self.stages.lock().expect("health lock").push(probe.clone());
        ProbeGuard {
            health: self.clone(),
            probe,
        }
    }

    /// `Err` names every stage that has had work without progress for longer than its bound.
    pub fn live(&self) -> Result<(), String> {
        let now = Instant::now();
        let stalled: Vec<String> = self
            .stages
            .lock()
            .expect("health lock")
            .iter()
            .filter_map(|p| p.stalled(now))
            .collect();
        if stalled.is_empty() {
            Ok(())
        } else {
            Err(stalled.join("; "))
        }
    }

    /// Every registered stage has held a partition at least once (true with no stages).
    pub fn assigned_once(&self) -> bool {
        self.stages
            .lock()
            .expect("health lock")
            .iter()
            .all(|p| p.ever_assigned.load(Ordering::SeqCst))
    }
}

/// Removes its stage from the service's health when the stage ends.
pub struct ProbeGuard {
    health: Health,
    probe: Arc<StageProbe>,
}

impl std::ops::Deref for ProbeGuard {
    type Target = StageProbe;
    fn deref(&self) -> &StageProbe {
        &self.probe
    }
}

impl ProbeGuard {
    pub fn probe(&self) -> Arc<StageProbe> {
        self.probe.clone()
    }
}

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        if let Ok(mut s) = self.health.stages.lock() {
            s.retain(|p| !Arc::ptr_eq(p, &self.probe));
        }
    }
}

/// One stage's view: written by the stage runtime, read by the HTTP handlers.
#[derive(Debug)]
pub struct StageProbe {
    name: String,
    bound: Duration,
    start: Instant,
    assigned: AtomicI64,
    ever_assigned: AtomicBool,
    /// Milliseconds since `start` when the current stretch of work began; `u64::MAX`: no work.
    work_since_ms: AtomicU64,
    last_progress_ms: AtomicU64,
}

impl StageProbe {
    fn new(name: &str, bound: Duration) -> Self {
        StageProbe {
            name: name.to_string(),
            bound,
            start: Instant::now(),
            assigned: AtomicI64::new(0),
            ever_assigned: AtomicBool::new(false),
            work_since_ms: AtomicU64::new(u64::MAX),
            last_progress_ms: AtomicU64::new(0),
        }
    }

    fn ms(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.start).as_millis() as u64
    }

    /// The partitions the stage holds now.
    pub fn set_assigned(&self, partitions: i64) {
        self.assigned.store(partitions, Ordering::SeqCst);
        if partitions > 0 {
            self.ever_assigned.store(true, Ordering::SeqCst);
        }
    }

    pub fn assigned(&self) -> i64 {
        self.assigned.load(Ordering::SeqCst)
    }

    /// Whether the stage has something to do (lag, or records nobody owns).
    pub fn set_work(&self, work: bool) {
        if work {
            let now = self.ms(Instant::now());
            let _ = self.work_since_ms.compare_exchange(
                u64::MAX,
                now,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        } else {
            self.work_since_ms.store(u64::MAX, Ordering::SeqCst);
        }
    }

    /// A record fetched or finished, or a failure retried.
    pub fn progress(&self) {
        self.last_progress_ms
            .store(self.ms(Instant::now()), Ordering::SeqCst);
    }

    /// A description of the stall when the stage has had work and no progress past its bound.
    fn stalled(&self, now: Instant) -> Option<String> {
        let since = self.work_since_ms.load(Ordering::SeqCst);
        if since == u64::MAX {
            return None;
        }
        let quiet_from = since.max(self.last_progress_ms.load(Ordering::SeqCst));
        let quiet = Duration::from_millis(self.ms(now).saturating_sub(quiet_from));
        (quiet > self.bound).then(|| {
            format!(
                "{}: work waiting and no progress for {:.0?} (bound {:?}, {} partitions held)",
                self.name,
                quiet,
                self.bound,
                self.assigned()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_without_progress_past_the_bound_is_not_live() {
        let h = Health::default();
        let g = h.register("s", Duration::from_millis(0));
        assert!(h.live().is_ok(), "no work: live");
        g.set_work(true);
        std::thread::sleep(Duration::from_millis(5));
        let e = h.live().unwrap_err();
        assert!(e.contains("s: work waiting"), "{e}");
        g.set_work(false);
        assert!(h.live().is_ok());
        drop(g);
        assert!(h.live().is_ok());
    }

    #[test]
    fn progress_keeps_a_busy_stage_live() {
        let h = Health::default();
        let g = h.register("s", Duration::from_secs(60));
        g.set_work(true);
        g.progress();
        assert!(h.live().is_ok());
    }

    #[test]
    fn ready_only_after_every_stage_held_a_partition() {
        let h = Health::default();
        assert!(h.assigned_once(), "no stages");
        let a = h.register("a", Duration::from_secs(1));
        let b = h.register("b", Duration::from_secs(1));
        assert!(!h.assigned_once());
        a.set_assigned(2);
        assert!(!h.assigned_once());
        b.set_assigned(1);
        b.set_assigned(0);
        assert!(h.assigned_once(), "once is enough");
        drop(a);
        assert!(h.assigned_once());
    }
}
