//! Times rendering and PNG encoding on one thread and prints JSON:
//!
//! ```text
//! cargo run --release -p cxrflow-sim --example bench_render -- LABELS [MASKS_ZIP|-] [N] [SHORT_SIDE] [16]
//! ```

use cxrflow_sim::{read_label_source, Drift, ImageSpec, LungMaskLibrary, PixelFormat, Renderer};
use std::sync::Arc;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let labels = args
        .first()
        .ok_or("usage: bench_render LABELS [MASKS_ZIP|-] [N] [SHORT_SIDE] [16]")?;
    let masks = match args.get(1).filter(|m| *m != "-") {
        Some(path) => Some(Arc::new(LungMaskLibrary::load_zip(path.as_ref())?)),
        None => None,
    };
    let n: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(200);
    let spec = ImageSpec {
        short_side: args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(320),
        format: if args.get(4).map(String::as_str) == Some("16") {
            PixelFormat::Gray16
        } else {
            PixelFormat::Gray8
        },
    };
    let table = read_label_source(labels.as_ref())?;
    let renderer = Renderer::new(1, masks, spec, Drift::NONE);
    let rows: Vec<_> = table
        .rows
        .iter()
        .step_by((table.rows.len() / n.max(1)).max(1))
        .take(n)
        .collect();
    let (mut render_s, mut encode_s, mut bytes) = (0.0, 0.0, 0usize);
    for row in &rows {
        let t = Instant::now();
        let img = renderer.render(row);
        render_s += t.elapsed().as_secs_f64();
        let t = Instant::now();
        bytes += img.encode_png()?.len();
        encode_s += t.elapsed().as_secs_f64();
    }
    let k = rows.len().max(1) as f64;
    println!(
        "{{\"images\": {}, \"short_side\": {}, \"render_ms\": {:.2}, \"encode_ms\": {:.2}, \"png_kib\": {:.1}}}",
        rows.len(),
        spec.short_side,
        1e3 * render_s / k,
        1e3 * encode_s / k,
        bytes as f64 / k / 1024.0
    );
    Ok(())
}
