//! Live progress of a run: a progress bar with the live publish rate and the consumer lag when
//! stderr is a terminal, otherwise a log line every few seconds (CI logs, files).

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::run::lag::LatestLag;
use crate::run::readers::Traffic;

/// Publications per second over the last few seconds.
struct RateWindow {
    samples: VecDeque<(Instant, usize)>,
    span: Duration,
}

impl RateWindow {
    fn new(span: Duration) -> Self {
        RateWindow {
            samples: VecDeque::new(),
            span,
        }
    }

    fn push(&mut self, now: Instant, count: usize) -> f64 {
        self.samples.push_back((now, count));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > self.span)
        {
            self.samples.pop_front();
        }
        match (self.samples.front(), self.samples.back()) {
            (Some((t0, n0)), Some((t1, n1))) if t1 > t0 => {
                (n1 - n0) as f64 / t1.duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

fn lag_text(latest: &LatestLag) -> String {
    latest
        .lock()
        .ok()
        .and_then(|l| l.as_ref().map(|p| p.total().to_string()))
        .unwrap_or_else(|| "?".into())
}

/// Shows progress until `stop`: `planned` studies to publish (an upper bound when a duration
/// may end the replay sooner), then the reads.
pub fn spawn(
    traffic: Traffic,
    planned: usize,
    latest: LatestLag,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let tty = std::io::stderr().is_terminal();
    tokio::spawn(async move {
        let tick = if tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        };
        let bar = tty.then(|| {
            let b = ProgressBar::new(planned as u64);
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix:>10} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.set_prefix("publishing");
            b
        });
        // The window spans at least two ticks, so a log line every 5 s still sees a rate.
        let mut rate = RateWindow::new((tick * 2).max(Duration::from_secs(5)) + tick / 2);
        let mut reading = false;
        loop {
            let published = traffic.published();
            let reads = traffic.reads();
            let r = rate.push(Instant::now(), published);
            let lag = lag_text(&latest);
            match &bar {
                Some(b) => {
                    if traffic.is_finished() && !reading {
                        reading = true;
                        b.set_prefix("reading");
                        b.set_length(published as u64);
                    }
                    b.set_position(if reading { reads } else { published } as u64);
                    b.set_message(format!("{r:.1}/s published · lag {lag} · read {reads}"));
                }
                None => tracing::info!(
                    published,
                    planned,
                    rate_per_s = format!("{r:.1}"),
                    consumer_lag = %lag,
                    read = reads,
                    "simulation: progress"
                ),
            }
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = stop.cancelled() => break,
            }
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_window_measures_recent_rate() {
        let mut w = RateWindow::new(Duration::from_secs(5));
        let t0 = Instant::now();
        assert_eq!(w.push(t0, 0), 0.0);
        let r = w.push(t0 + Duration::from_secs(2), 20);
        assert!((r - 10.0).abs() < 1e-9);
        // Old samples fall out of the window.
        let r = w.push(t0 + Duration::from_secs(10), 30);
        assert_eq!(r, 0.0);
    }
}
