//! Builds a synthetic dataset from the command line until the `cxrflow sim synth` subcommand
//! exists:
//!
//! ```text
//! cargo run --release -p cxrflow-sim --example synth -- LABELS OUT [MASKS_ZIP] [SEED] [TRAIN VALID HELDOUT] [SHORT_SIDE] [16]
//! ```

use cxrflow_sim::{synthesize, ImageSpec, PixelFormat, SplitCounts, SynthConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [labels, out, rest @ ..] = args.as_slice() else {
        eprintln!(
            "usage: synth LABELS OUT [MASKS_ZIP|-] [SEED] [TRAIN VALID HELDOUT] [SHORT_SIDE] [16]"
        );
        std::process::exit(2);
    };
    let mut cfg = SynthConfig::new(labels, out);
    if let Some(m) = rest.first().filter(|m| *m != "-") {
        cfg.masks = Some(m.into());
    }
    if let Some(seed) = rest.get(1) {
        cfg.seed = seed.parse()?;
    }
    if let [t, v, h, ..] = rest.get(2..).unwrap_or_default() {
        cfg.studies = SplitCounts {
            train: t.parse()?,
            valid: v.parse()?,
            heldout: h.parse()?,
        };
    }
    if let Some(side) = rest.get(5) {
        cfg.image = ImageSpec {
            short_side: side.parse()?,
            format: if rest.get(6).map(String::as_str) == Some("16") {
                PixelFormat::Gray16
            } else {
                PixelFormat::Gray8
            },
        };
    }
    let summary = synthesize(&cfg)?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}
