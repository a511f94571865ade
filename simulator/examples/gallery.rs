//! Renders one synthetic patient with each finding in turn (positive, then uncertain) into a
//! contact sheet, to eyeball what the model will have to learn:
//!
//! ```text
//! cargo run --release -p cxrflow-sim --example gallery -- OUT.png [MASKS_ZIP] [SEED] [Frontal|Lateral]
//! ```

use cxrflow_sim::{
    ChexpertRow, Drift, Finding, ImageSpec, LabelState, Labels, LungMaskLibrary, PatientId,
    Projection, Renderer, Sex, ViewKind,
};
use std::sync::Arc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = args
        .first()
        .ok_or("usage: gallery OUT.png [MASKS_ZIP|-] [SEED] [VIEW]")?;
    let masks = match args.get(1).filter(|m| *m != "-") {
        Some(path) => Some(Arc::new(LungMaskLibrary::load_zip(path.as_ref())?)),
        None => None,
    };
    let seed = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(1);
    let view = match args.get(3).map(String::as_str) {
        Some("Lateral") => ViewKind::Lateral,
        _ => ViewKind::Frontal,
    };
    let renderer = Renderer::new(seed, masks, ImageSpec::SMALL, Drift::NONE);
    let row = |labels: Labels| ChexpertRow {
        path: "CheXpert-v1.0-small/train/patient00042/study1/view1_frontal.jpg".into(),
        patient: PatientId("patient00042".into()),
        study: 1,
        sex: Sex::Male,
        age: Some(62),
        view,
        projection: (view == ViewKind::Frontal).then_some(Projection::Pa),
        labels,
    };
    let mut tiles = vec![renderer.render(&row(Labels::default()))];
    for f in &Finding::ALL[1..] {
        for state in [LabelState::Positive, LabelState::Uncertain] {
            tiles.push(renderer.render(&row(Labels::default().with(*f, state))));
        }
    }
    let cols = 6u32;
    let (cw, ch) = (
        tiles[0].width + 4,
        tiles.iter().map(|t| t.height).max().unwrap_or(0) + 4,
    );
    let rows = (tiles.len() as u32).div_ceil(cols);
    let mut sheet = image::GrayImage::from_pixel(cols * cw, rows * ch, image::Luma([30]));
    for (i, t) in tiles.iter().enumerate() {
        let (x0, y0) = ((i as u32 % cols) * cw, (i as u32 / cols) * ch);
        for y in 0..t.height {
            for x in 0..t.width {
                let v = t.pixels[(y * t.width + x) as usize].min(255) as u8;
                sheet.put_pixel(x0 + x, y0 + y, image::Luma([v]));
            }
        }
    }
    sheet.save(out)?;
    println!("tile 0: no finding; then, for each finding in column order, positive then uncertain");
    Ok(())
}
