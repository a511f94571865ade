//! `cxrflow sim`: build a synthetic CheXpert-format dataset from the real label file, replay
//! a dataset against a running stack (as a PACS gateway, with simulated readers), or simulate a
//! reading room on a simulated clock (no stack).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use cxrflow_common::KafkaArgs;
use cxrflow_sim::reading_room::{render_table, simulate_room, RoomConfig};
use cxrflow_sim::run::simulate::{simulate, SimConfig};
use cxrflow_sim::synth::render::ImageSpec;
use cxrflow_sim::synth::{synthesize, SplitCounts, SynthConfig};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Subcommand)]
pub enum SimCmd {
    /// Synthesize images for real CheXpert label rows (patient-level train/valid/held-out split).
    Synth(SynthArgs),
    /// Replay a dataset's held-out studies against a running stack and write the report.
    Replay(Box<ReplayArgs>),
    /// Simulate a reading room on a simulated clock: FIFO, order priority and AI tiers (with a
    /// wait-cap sweep) on the same arrivals and read times; prints a table, writes JSON.
    ReadingRoom(Box<ReadingRoomArgs>),
}

#[derive(Debug, Args)]
pub struct ReadingRoomArgs {
    #[command(flatten)]
    pub room: RoomConfig,
    /// Where the JSON report goes.
    #[arg(long, env = "CXRFLOW_ROOM_OUT")]
    pub out: Option<PathBuf>,
    /// Where the HTML page with the charts goes.
    #[arg(long, env = "CXRFLOW_ROOM_HTML")]
    pub html: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// The CheXpert label file (train.csv or torchxrayvision's chexpert_train.csv.gz), or a
    /// CheXpert dataset directory.
    #[arg(long)]
    pub labels: PathBuf,
    /// torchxrayvision's semantic_masks_v7labs_lungs.zip (real lung masks); parametric lungs
    /// when absent.
    #[arg(long)]
    pub masks: Option<PathBuf>,
    /// Output directory (gets `CheXpert-v1.0-small/`).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Training studies.
    #[arg(long, default_value_t = 2000)]
    pub studies: usize,
    /// Validation studies.
    #[arg(long, default_value_t = 150)]
    pub valid: usize,
    /// Held-out studies (the replay's traffic; patients never in train or valid).
    #[arg(long, default_value_t = 600)]
    pub heldout: usize,
    /// Full-size 16-bit images (about 2500×3000, 12 bits stored) for load tests.
    #[arg(long)]
    pub full_size: bool,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub sim: SimConfig,
}

pub async fn run(cmd: SimCmd, shutdown: CancellationToken) -> anyhow::Result<()> {
    match cmd {
        SimCmd::Synth(a) => {
            let mut cfg = SynthConfig::new(a.labels, a.out);
            cfg.masks = a.masks;
            cfg.seed = a.seed;
            cfg.studies = SplitCounts {
                train: a.studies,
                valid: a.valid,
                heldout: a.heldout,
            };
            if a.full_size {
                cfg.image = ImageSpec::FULL_SIZE;
            }
            let summary = tokio::task::spawn_blocking(move || synthesize(&cfg)).await??;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(())
        }
        SimCmd::Replay(a) => {
            let report = simulate(&a.kafka, &a.sim, shutdown).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        SimCmd::ReadingRoom(a) => {
            let ReadingRoomArgs { room, out, html } = *a;
            let report = tokio::task::spawn_blocking(move || simulate_room(&room))
                .await??
                .0;
            print!("{}", render_table(&report));
            if let Some(out) = &out {
                std::fs::write(out, serde_json::to_vec_pretty(&report)?)
                    .with_context(|| format!("writing {}", out.display()))?;
            }
            if let Some(path) = &html {
                std::fs::write(path, cxrflow_sim::reading_room::html::render(&report))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(())
        }
    }
}
