//! The gateway's send loop: studies from a [`StudySource`] at the times an [`ArrivalProcess`]
//! draws, until the count, the duration or the dataset runs out (or shutdown)
//! ([`publish_traffic`]); or a fixed list of studies ([`publish`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cxrflow_common::kafka::Producer;
use cxrflow_contracts::Codec;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::arrival::{Arrival, ArrivalConfig, ArrivalError, ArrivalProcess};
use super::pixels::{shift_intensity, PixelError};
use super::population::PopulationMix;
use super::{scan_event, stage_bytes, stage_image, ReplayStudy, StudySource};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("reading {path}: {source}")]
    Image {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("shifting the intensity of {path}: {source}")]
    Pixels {
        path: PathBuf,
        #[source]
        source: PixelError,
    },
    #[error(transparent)]
    Arrival(#[from] ArrivalError),
    #[error(transparent)]
    Produce(#[from] cxrflow_common::kafka::ProduceError),
}

/// One published study.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    pub uid: String,
    pub published_at: i64,
    pub site: String,
    pub after_change: bool,
    pub drifted: bool,
}

/// Where the drift plan's change happened: the first study after it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ChangePoint {
    /// Studies published before it.
    pub index: usize,
    pub published_at: i64,
}

/// What a replay sent.
#[derive(Debug, Clone, Default)]
pub struct ReplayOutcome {
    pub published: Vec<Published>,
    pub change: Option<ChangePoint>,
    /// The traffic before and after the change point (all of it before when there is none).
    pub before: PopulationMix,
    pub after: PopulationMix,
    /// Scenario draws that fell back to the natural mix (sub-population exhausted).
    pub shortfall: usize,
    /// The last pass through the table that was published from (0: no study was repeated).
    pub cycles: u32,
}

/// How [`publish`] paces and sends a fixed list of studies.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub arrival: Arrival,
    /// Studies per second (the shape's other parameters take their defaults).
    pub rate: f64,
    /// Images up to this many bytes ride inline; larger ones by `file://` reference.
    pub inline_max: u64,
    pub seed: u64,
}

/// Publishes `studies` in order as `pace` says; `progress` hears the count after each one.
pub async fn publish(
    producer: &Producer,
    codec: &Codec,
    studies: &[ReplayStudy],
    pace: Pace,
    mut progress: impl FnMut(usize),
) -> Result<Vec<Published>, ReplayError> {
    let secret = format!("sim-{}", pace.seed);
    let mut arrivals = ArrivalProcess::new(ArrivalConfig::new(pace.arrival, pace.rate), pace.seed)?;
    let start = Instant::now();
    let mut out = Vec::with_capacity(studies.len());
    for (i, s) in studies.iter().enumerate() {
        let due = arrivals.next_arrival();
        tokio::time::sleep(Duration::from_secs_f64(due).saturating_sub(start.elapsed())).await;
        let (inline, size) = prepare_image(s, pace.inline_max).await?;
        let ev = scan_event(s, inline, size, &secret);
        producer.send(codec, &ev, &BTreeMap::new()).await?;
        out.push(Published {
            uid: s.uid.clone(),
            published_at: ev.study.published_at,
            site: s.site.clone(),
            after_change: s.after_change,
            drifted: s.drifted,
        });
        progress(i + 1);
    }
    Ok(out)
}

/// How [`publish_traffic`] paces and sends the studies of a [`StudySource`].
#[derive(Debug, Clone, Copy)]
pub struct TrafficPace {
    pub arrival: ArrivalConfig,
    /// Images up to this many bytes ride inline; larger ones by `file://` reference.
    pub inline_max: u64,
    pub seed: u64,
    /// Stop after this many studies (`0`: no count limit).
    pub max_studies: usize,
    /// Stop when the next arrival would come after this long.
    pub duration: Option<Duration>,
}

/// The image bytes to send inline (or `None` after staging it for by-reference) and its size.
async fn prepare_image(
    s: &ReplayStudy,
    inline_max: u64,
) -> Result<(Option<Vec<u8>>, u64), ReplayError> {
    let io = |e| ReplayError::Image {
        path: s.image.clone(),
        source: e,
    };
    let Some(drift) = s.intensity else {
        let size = std::fs::metadata(&s.image).map_err(io)?.len();
        if size <= inline_max {
            return Ok((Some(std::fs::read(&s.image).map_err(io)?), size));
        }
        stage_image(s).map_err(io)?;
        return Ok((None, size));
    };
    let raw = std::fs::read(&s.image).map_err(io)?;
    let seed = s.uid.bytes().fold(0xcbf2_9ce4_8422_2325u64, |a, b| {
        (a ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let shifted = tokio::task::spawn_blocking(move || shift_intensity(&raw, drift, seed))
        .await
        .map_err(|e| io(std::io::Error::other(e.to_string())))?
        .map_err(|e| ReplayError::Pixels {
            path: s.image.clone(),
            source: e,
        })?;
    let size = shifted.len() as u64;
    if size <= inline_max {
        return Ok((Some(shifted), size));
    }
    stage_bytes(s, &shifted).map_err(io)?;
    Ok((None, size))
}

/// Publishes studies drawn from `source` as `pace` says; `on_publish` hears of each one once
/// the broker acknowledged it.
pub async fn publish_traffic(
    producer: &Producer,
    codec: &Codec,
    source: &mut StudySource,
    pace: TrafficPace,
    stop: &CancellationToken,
    mut on_publish: impl FnMut(&ReplayStudy, &Published),
) -> Result<ReplayOutcome, ReplayError> {
    let secret = format!("sim-{}", pace.seed);
    let mut arrivals = ArrivalProcess::new(pace.arrival, pace.seed)?;
    let plan = *source.plan();
    let start = Instant::now();
    let mut out = ReplayOutcome::default();
    let (mut before, mut after) = (Vec::new(), Vec::new());
    while pace.max_studies == 0 || out.published.len() < pace.max_studies {
        let due = arrivals.next_arrival();
        if pace.duration.is_some_and(|d| due > d.as_secs_f64()) {
            break;
        }
        let wait = Duration::from_secs_f64(due).saturating_sub(start.elapsed());
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => break,
        }
        let changed = plan.changed(out.published.len(), start.elapsed().as_secs_f64());
        let Some(s) = source.next(changed) else {
            tracing::info!(
                published = out.published.len(),
                "replay: the dataset table has no studies"
            );
            break;
        };
        if s.cycle > out.cycles {
            // Said once per cycle, so a load tester knows the studies repeat (under new UIDs).
            out.cycles = s.cycle;
            tracing::info!(
                published = out.published.len(),
                "replay: cycle {} of the {} studies in the table, with fresh study/series/SOP UIDs",
                s.cycle + 1,
                source.available(),
            );
        }
        let (inline, size) = prepare_image(&s, pace.inline_max).await?;
        let ev = scan_event(&s, inline, size, &secret);
        producer.send(codec, &ev, &BTreeMap::new()).await?;
        let p = Published {
            uid: s.uid.clone(),
            published_at: ev.study.published_at,
            site: s.site.clone(),
            after_change: s.after_change,
            drifted: s.drifted,
        };
        if s.after_change && out.change.is_none() {
            out.change = Some(ChangePoint {
                index: out.published.len(),
                published_at: p.published_at,
            });
        }
        on_publish(&s, &p);
        out.published.push(p);
        let shifted = s.intensity.is_some();
        if s.after_change {
            after.push((s.row, shifted));
        } else {
            before.push((s.row, shifted));
        }
    }
    out.before = PopulationMix::of(before.iter().map(|(r, s)| (r, *s)), plan.finding);
    out.after = PopulationMix::of(after.iter().map(|(r, s)| (r, *s)), plan.finding);
    out.shortfall = source.shortfall;
    Ok(out)
}
