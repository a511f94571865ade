//! The open-loop load generator: requests leave at times fixed in advance, whatever the
//! system under test does with the earlier ones (no coordinated omission), and each one's
//! latency is counted from its scheduled time, not from when it happened to be sent.

use std::future::Future;
use std::time::Duration;

use rand::SeedableRng;
use rand_distr::{Distribution, Exp};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How arrivals are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Arrivals {
    /// Evenly spaced at the rate.
    Constant,
    /// A Poisson process at the rate (exponential gaps), as studies reach a hospital.
    Poisson,
}

/// Send offsets from the start of a run: `rate` per second for `duration`.
pub fn offsets(arrivals: Arrivals, rate: f64, duration: Duration, seed: u64) -> Vec<Duration> {
    let rate = rate.max(1e-6);
    let end = duration.as_secs_f64();
    let mut out = Vec::new();
    match arrivals {
        Arrivals::Constant => {
            let n = (rate * end).floor() as usize;
            out.extend((0..n).map(|i| Duration::from_secs_f64(i as f64 / rate)));
        }
        Arrivals::Poisson => {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let gap = Exp::new(rate).expect("a positive rate");
            let mut t = 0.0;
            while t < end {
                out.push(Duration::from_secs_f64(t));
                t += gap.sample(&mut rng);
            }
        }
    }
    out
}

/// Starts `make(i)` as its own task at `start + offsets[i]` for every i, never waiting for an
/// earlier one; returns the tasks in send order.
pub async fn drive<T, F, Fut>(
    start: Instant,
    offsets: &[Duration],
    mut make: F,
) -> Vec<JoinHandle<T>>
where
    T: Send + 'static,
    F: FnMut(usize, Instant) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let mut tasks = Vec::with_capacity(offsets.len());
    for (i, off) in offsets.iter().enumerate() {
        let due = start + *off;
        tokio::time::sleep_until(due).await;
        tasks.push(tokio::spawn(make(i, due)));
    }
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_arrivals_are_evenly_spaced() {
        let o = offsets(Arrivals::Constant, 4.0, Duration::from_secs(2), 0);
        assert_eq!(o.len(), 8);
        assert_eq!(o[0], Duration::ZERO);
        assert_eq!(o[1], Duration::from_millis(250));
        assert_eq!(o[7], Duration::from_millis(1750));
    }

    #[test]
    fn poisson_arrivals_keep_the_rate_and_order() {
        let o = offsets(Arrivals::Poisson, 50.0, Duration::from_secs(100), 3);
        assert!(o.windows(2).all(|w| w[0] <= w[1]));
        assert!(o.last().unwrap() < &Duration::from_secs(100));
        let n = o.len() as f64;
        assert!((n - 5000.0).abs() < 300.0, "{n}");
        assert_eq!(
            o,
            offsets(Arrivals::Poisson, 50.0, Duration::from_secs(100), 3)
        );
    }

    #[tokio::test]
    async fn drive_sends_on_schedule_without_waiting_for_slow_requests() {
        let o = offsets(Arrivals::Constant, 100.0, Duration::from_millis(100), 0);
        let start = Instant::now();
        let tasks = drive(start, &o, |i, due| async move {
            let late = Instant::now() - due;
            // Every request is much slower than the gap: a closed loop would fall behind.
            tokio::time::sleep(Duration::from_millis(500)).await;
            (i, late)
        })
        .await;
        assert!(start.elapsed() < Duration::from_millis(400));
        for (i, t) in tasks.into_iter().enumerate() {
            let (j, late) = t.await.unwrap();
            assert_eq!(i, j);
            assert!(late < Duration::from_millis(100), "{late:?}");
        }
    }
}
