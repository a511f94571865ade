//! The micro-batcher (Triton's dynamic batcher in miniature). The stage runtime hands
//! processors one record at a time, up to `max_in_flight` concurrently, across partitions;
//! each `submit` puts its input and a reply channel on a bounded queue. One task waits for a
//! free model instance (`concurrency` of them: the model's sessions), takes the first waiting
//! input, gathers more until `max_batch` or `max_wait` has passed, runs one model call on a
//! blocking thread and answers every caller with its own row. While every instance is busy
//! the next inputs queue up, so under load batches fill without waiting; when the queue is
//! full, `submit` waits (backpressure, never unbounded memory).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

/// What a caller learns about the batch its input ran in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchInfo {
    pub size: usize,
    pub run_seconds: f64,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum BatchError {
    #[error("the batcher has stopped")]
    Closed,
    /// The model call failed for the whole batch (retryable: the runtime or device).
    #[error("model run failed: {0}")]
    Run(String),
}

type Reply<O> = oneshot::Sender<Result<(O, BatchInfo), BatchError>>;

/// Runs one batch: returns exactly one output per input, in input order.
pub type RunFn<I, O> = Arc<dyn Fn(Vec<I>) -> Result<Vec<O>, String> + Send + Sync>;

/// Called after every batch with (size, run seconds) — metrics.
pub type BatchObserver = Arc<dyn Fn(usize, f64) + Send + Sync>;

#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    pub max_batch: usize,
    pub max_wait: Duration,
    /// Inputs waiting beyond the running batch before `submit` blocks.
    pub queue: usize,
}

/// Handle to a batcher task; cheap to clone. The task ends when every handle is dropped and
/// the queue is drained.
pub struct Batcher<I, O> {
    tx: mpsc::Sender<(I, Reply<O>)>,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Batcher {
            tx: self.tx.clone(),
        }
    }
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts the batcher; up to `concurrency` batches run at once (0 counts as 1).
    pub fn spawn(
        policy: BatchPolicy,
        concurrency: usize,
        run: RunFn<I, O>,
        observe: BatchObserver,
    ) -> Self {
        let (tx, rx) = mpsc::channel(policy.queue.max(1));
        tokio::spawn(batch_loop(rx, policy, concurrency.max(1), run, observe));
        Batcher { tx }
    }

    /// Queues `input` (waiting while the queue is full) and returns its own output.
    pub async fn submit(&self, input: I) -> Result<(O, BatchInfo), BatchError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((input, reply))
            .await
            .map_err(|_| BatchError::Closed)?;
        rx.await.map_err(|_| BatchError::Closed)?
    }
}

async fn batch_loop<I: Send + 'static, O: Send + 'static>(
    mut rx: mpsc::Receiver<(I, Reply<O>)>,
    policy: BatchPolicy,
    concurrency: usize,
    run: RunFn<I, O>,
    observe: BatchObserver,
) {
    let max = policy.max_batch.max(1);
    // The batches running now, one per busy instance.
    let mut running = tokio::task::JoinSet::new();
    loop {
        // A free instance first: while all are busy, inputs accumulate into the next batch.
        while running.len() >= concurrency {
            running.join_next().await;
        }
        let Some(first) = rx.recv().await else { break };
        let mut jobs = vec![first];
        let deadline = tokio::time::Instant::now() + policy.max_wait;
        while jobs.len() < max {
            // Take what is already queued without waiting; wait only while under the deadline.
            match rx.try_recv() {
                Ok(j) => {
                    jobs.push(j);
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(j)) => jobs.push(j),
                _ => break,
            }
        }
        running.spawn(run_batch(jobs, run.clone(), observe.clone()));
    }
    // Every handle is gone: the running batches still answer their callers.
    while running.join_next().await.is_some() {}
}

/// Runs one batch on a blocking thread and answers every caller.
async fn run_batch<I: Send + 'static, O: Send + 'static>(
    jobs: Vec<(I, Reply<O>)>,
    run: RunFn<I, O>,
    observe: BatchObserver,
) {
    let (inputs, replies): (Vec<I>, Vec<Reply<O>>) = jobs.into_iter().unzip();
    let size = inputs.len();
    let started = Instant::now();
    let result = tokio::task::spawn_blocking(move || run(inputs)).await;
    let secs = started.elapsed().as_secs_f64();
    observe(size, secs);
    let info = BatchInfo {
        size,
        run_seconds: secs,
    };
    match result {
        Ok(Ok(outputs)) if outputs.len() == size => {
            for (reply, out) in replies.into_iter().zip(outputs) {
                let _ = reply.send(Ok((out, info)));
            }
        }
        Ok(Ok(outputs)) => {
            let e = BatchError::Run(format!(
                "model returned {} rows for a batch of {size}",
                outputs.len()
            ));
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
        Ok(Err(e)) => {
            for reply in replies {
                let _ = reply.send(Err(BatchError::Run(e.clone())));
            }
        }
        Err(join) => {
            for reply in replies {
                let _ = reply.send(Err(BatchError::Run(format!("model run panicked: {join}"))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Mutex;

    fn doubling(
        sizes: Arc<Mutex<Vec<usize>>>,
        policy: BatchPolicy,
        concurrency: usize,
    ) -> Batcher<u64, u64> {
        let run: RunFn<u64, u64> =
            Arc::new(|xs: Vec<u64>| Ok(xs.into_iter().map(|x| x * 2 + 1).collect()));
        Batcher::spawn(
            policy,
            concurrency,
            run,
            Arc::new(move |n, _| sizes.lock().unwrap().push(n)),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Shuffled concurrent callers each get their own row back, and no batch exceeds max_batch.
        #[test]
        fn every_caller_gets_its_own_row(mut xs in proptest::collection::vec(0u64..1_000_000, 1..200), max_batch in 1usize..40, seed in any::<u64>(), concurrency in 1usize..4) {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
            // Deterministic shuffle by seed.
            let mut s = seed | 1;
            for i in (1..xs.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                xs.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let sizes = Arc::new(Mutex::new(Vec::new()));
            rt.block_on(async {
                let b = doubling(sizes.clone(), BatchPolicy { max_batch, max_wait: Duration::from_millis(2), queue: 16 }, concurrency);
                let handles: Vec<_> = xs.iter().map(|&x| {
                    let b = b.clone();
                    tokio::spawn(async move { (x, b.submit(x).await) })
                }).collect();
                for h in handles {
                    let (x, r) = h.await.unwrap();
                    let (y, info) = r.unwrap();
                    prop_assert_eq!(y, x * 2 + 1);
                    prop_assert!(info.size >= 1 && info.size <= max_batch);
                }
                Ok(())
            })?;
            let sizes = sizes.lock().unwrap();
            prop_assert_eq!(sizes.iter().sum::<usize>(), xs.len());
            prop_assert!(sizes.iter().all(|&n| n <= max_batch));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_a_batch_and_errors_reach_everyone() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let b = doubling(
            sizes.clone(),
            BatchPolicy {
                max_batch: 8,
                max_wait: Duration::from_millis(200),
                queue: 64,
            },
            1,
        );
        let hs: Vec<_> = (0..8u64)
            .map(|x| {
                let b = b.clone();
                tokio::spawn(async move { b.submit(x).await })
            })
            .collect();
        for h in hs {
            h.await.unwrap().unwrap();
        }
        assert!(
            sizes.lock().unwrap().iter().any(|&n| n > 1),
            "batched: {:?}",
            sizes.lock().unwrap()
        );

        let failing: RunFn<u64, u64> = Arc::new(|_| Err("device lost".into()));
        let b = Batcher::spawn(
            BatchPolicy {
                max_batch: 4,
                max_wait: Duration::from_millis(5),
                queue: 4,
            },
            2,
            failing,
            Arc::new(|_, _| {}),
        );
        assert_eq!(
            b.submit(1).await,
            Err(BatchError::Run("device lost".into()))
        );
    }

    /// Batches running at once with `concurrency` instances: each run waits (up to `hold`) for
    /// a second one to overlap it, and the most seen at once is returned.
    async fn most_at_once(concurrency: usize, hold: Duration) -> usize {
        use std::sync::Condvar;
        let state = Arc::new((Mutex::new((0usize, 0usize)), Condvar::new()));
        let s = state.clone();
        let run: RunFn<u64, u64> = Arc::new(move |xs: Vec<u64>| {
            let (lock, cv) = &*s;
            let mut g = lock.lock().unwrap();
            g.0 += 1;
            g.1 = g.1.max(g.0);
            cv.notify_all();
            let (mut g, _) = cv.wait_timeout_while(g, hold, |g| g.0 < 2).unwrap();
            g.0 -= 1;
            Ok(xs)
        });
        let policy = BatchPolicy {
            max_batch: 1,
            max_wait: Duration::from_millis(1),
            queue: 8,
        };
        let b = Batcher::spawn(policy, concurrency, run, Arc::new(|_, _| {}));
        let hs: Vec<_> = (0..4u64)
            .map(|x| {
                let b = b.clone();
                tokio::spawn(async move { b.submit(x).await })
            })
            .collect();
        for (x, h) in hs.into_iter().enumerate() {
            assert_eq!(h.await.unwrap().unwrap().0, x as u64);
        }
        let most = state.0.lock().unwrap().1;
        most
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_run_concurrently_up_to_the_instances() {
        // Two instances: the first two batches overlap (each waits for the other, bounded).
        assert_eq!(most_at_once(2, Duration::from_secs(10)).await, 2);
        // One instance: never two at once, whatever the wait.
        assert_eq!(most_at_once(1, Duration::from_millis(100)).await, 1);
    }
}
