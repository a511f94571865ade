//! The service's notion of now, injectable so tests can simulate hours in milliseconds.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use cxrflow_contracts::EpochMillis;

pub trait Clock: Send + Sync + 'static {
    fn now_millis(&self) -> EpochMillis;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> EpochMillis {
        cxrflow_common::time::now_millis()
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn at(ms: EpochMillis) -> Self {
        ManualClock(Arc::new(AtomicI64::new(ms)))
    }
    pub fn set(&self, ms: EpochMillis) {
        self.0.store(ms, Ordering::SeqCst);
    }
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> EpochMillis {
        self.0.load(Ordering::SeqCst)
    }
}
