//! Support devices: radiopaque lines and tubes, and a pacemaker/ICD generator (the "small
//! bright rectangle") with its leads. Every image labelled with devices gets the generator and
//! at least one line, so the finding always has the same two signatures.

use crate::dataset::labels::Finding;
use crate::dataset::ChexpertRow;
use crate::synth::anatomy::Chest;
use crate::synth::canvas::{bezier, smoothstep, Pt};
use crate::synth::findings::{finding_rng, strength};
use crate::synth::layers::Layers;

pub(crate) fn overlay(chest: &Chest, layers: &mut Layers, row: &ChexpertRow, seed: u64, key: &str) {
    let Some(s) = strength(row.label(Finding::SupportDevices)) else {
        return;
    };
    let mut rng = finding_rng(seed, key, Finding::SupportDevices);
    let (lw, lh) = chest.lung_size;
    let (lx0, ly0) = chest.lung_origin;
    let wf = chest.w as f32;
    let metal = &mut layers.metal;
    let wire = |v: f32| move |t: f32| v * s * (1.0 - 0.3 * t * t);
    // A tube's radiopaque stripe: brighter walls, but the joints of a curved tube would ring, so
    // tubes are drawn as single straight segments.
    let tube = |v: f32| move |t: f32| v * s * (0.55 + 0.45 * smoothstep(0.45, 0.85, t));
    let heart = chest.heart;
    let frontal = chest.frontal();

    // Generator below a clavicle, leads to the right atrium and ventricle.
    let side = if rng.chance(0.8) { 1.0 } else { -1.0 };
    let g: Pt = if frontal {
        (chest.midline + side * 0.37 * lw, ly0 + 0.07 * lh)
    } else {
        (lx0 + 0.12 * lw, ly0 + 0.12 * lh)
    };
    let (hw, hh) = (
        0.055 * wf * rng.range(0.9, 1.1),
        0.038 * wf * rng.range(0.9, 1.1),
    );
    metal.for_each_in((g.0 - hw, g.1 - hh), (g.0 + hw, g.1 + hh), |x, y, v| {
        let (dx, dy) = (((x - g.0) / hw).abs(), ((y - g.1) / hh).abs());
        let r = (dx.powi(4) + dy.powi(4)).sqrt().sqrt();
        let battery = if dx < 0.55 && dy < 0.6 { 1.0 } else { 0.85 };
        *v = v.max(0.95 * s * battery * smoothstep(1.0, 0.9, r));
    });
    let ventricle = (heart.cx + 0.25 * heart.rx, heart.cy + 0.45 * heart.ry);
    let atrium = (heart.cx - 0.55 * heart.rx, heart.cy - 0.55 * heart.ry);
    let via = (chest.midline - 0.02 * lw, ly0 + 0.2 * lh);
    let lead_r = 0.0045 * wf;
    metal.stroke(
        &bezier((g.0, g.1 + hh), via, ventricle, 24),
        lead_r,
        wire(0.8),
    );
    if rng.chance(0.6) {
        metal.stroke(&bezier((g.0, g.1 + hh), via, atrium, 24), lead_r, wire(0.8));
    }

    // Lines and tubes; at least one.
    let mut drawn = 0;
    if rng.chance(0.55) {
        // Endotracheal tube, tip a few centimetres above the carina.
        let (cx, cy) = chest.carina;
        let top = if frontal {
            (chest.midline, 0.0)
        } else {
            (lx0 + 0.42 * lw, 0.0)
        };
        metal.stroke(&[top, (cx, cy - 0.07 * lh)], 0.012 * wf, tube(0.6));
        drawn += 1;
    }
    if rng.chance(0.4) {
        // Nasogastric tube down the oesophagus into the stomach.
        let base = chest.sides.iter().map(|s| s.base_y).fold(0.0, f32::max);
        let pts = if frontal {
            let mut p = vec![
                (chest.midline - 0.02 * lw, 0.0),
                (chest.midline - 0.01 * lw, base - 0.05 * lh),
            ];
            p.extend(bezier(
                (chest.midline - 0.01 * lw, base - 0.05 * lh),
                (chest.midline + 0.05 * lw, base + 0.12 * lh),
                (chest.midline + 0.3 * lw, base + 0.1 * lh),
                16,
            ));
            p
        } else {
            vec![(lx0 + 0.6 * lw, 0.0), (lx0 + 0.68 * lw, base + 0.1 * lh)]
        };
        metal.stroke(&pts, 0.006 * wf, wire(0.65));
        drawn += 1;
    }
    if drawn == 0 || rng.chance(0.6) {
        // Central venous catheter from the internal jugular to the superior vena cava.
        let (start, bend, tip) = if frontal {
            (
                (chest.midline - 0.24 * lw, 0.0),
                (chest.midline - 0.12 * lw, ly0 + 0.06 * lh),
                (chest.midline - 0.05 * lw, ly0 + 0.36 * lh),
            )
        } else {
            (
                (lx0 + 0.5 * lw, 0.0),
                (lx0 + 0.47 * lw, ly0 + 0.15 * lh),
                (lx0 + 0.42 * lw, ly0 + 0.42 * lh),
            )
        };
        metal.stroke(&bezier(start, bend, tip, 20), 0.005 * wf, wire(0.75));
    }
}
