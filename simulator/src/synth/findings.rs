//! How each finding shows on the image. A positive label draws the finding at full strength,
//! an uncertain one at [`UNCERTAIN_STRENGTH`]; each finding draws from its own random stream
//! keyed by (seed, image, finding), so its look varies between images but never disturbs the
//! anatomy or the other findings.

use crate::dataset::labels::{Finding, LabelState};
use crate::dataset::ChexpertRow;
use crate::rng::{stable_hash, Rng};
use crate::synth::anatomy::{Chest, RibFracture, Side, RIB_BAND};
use crate::synth::canvas::{smoothstep, Pt, ValueNoise};
use crate::synth::layers::Layers;

/// How strongly an uncertain (-1.0) label is drawn relative to a positive one.
pub const UNCERTAIN_STRENGTH: f32 = 0.45;

/// Drawing strength for a label state, `None` when nothing is drawn.
pub fn strength(state: LabelState) -> Option<f32> {
    match state {
        LabelState::Positive => Some(1.0),
        LabelState::Uncertain => Some(UNCERTAIN_STRENGTH),
        LabelState::Negative | LabelState::Blank => None,
    }
}

/// The finding's own random stream for this image.
pub(crate) fn finding_rng(seed: u64, key: &str, finding: Finding) -> Rng {
    Rng::new(stable_hash(seed, finding.name(), key))
}

/// Findings that change the anatomy's geometry; applied before the anatomy is drawn.
pub(crate) fn reshape(chest: &mut Chest, row: &ChexpertRow, seed: u64, key: &str) {
    if let Some(s) = strength(row.label(Finding::EnlargedCardiomediastinum)) {
        chest.mediastinum_scale = 1.0 + 0.9 * s;
        chest.mediastinum_hw *= chest.mediastinum_scale;
        chest.aortic_knob.rx *= 1.0 + 0.4 * s;
        chest.aortic_knob.ry *= 1.0 + 0.4 * s;
        chest.aortic_knob.cx += chest.mediastinum_hw * 0.3 * s;
        chest.heart.rx *= 1.0 + 0.06 * s;
    }
    if let Some(s) = strength(row.label(Finding::Cardiomegaly)) {
        let h = &mut chest.heart;
        let bottom = h.cy + h.ry;
        h.cx += 0.12 * h.rx * s; // the left ventricle grows towards the patient's left
        h.rx *= 1.0 + 0.36 * s;
        h.ry *= 1.0 + 0.14 * s;
        h.cy = bottom - h.ry;
    }
    if let Some(s) = strength(row.label(Finding::Fracture)) {
        let mut rng = finding_rng(seed, key, Finding::Fracture);
        let frontal = chest.frontal();
        chest.fracture = Some(RibFracture {
            side: if frontal { rng.sign() } else { 1.0 },
            index: 3 + rng.below(5) as i32,
            at: if frontal {
                rng.range(0.5, 0.85)
            } else {
                rng.range(0.15, 0.4)
            },
            gap: 0.012 + 0.01 * s,
            step: 0.25 * s,
        });
    }
}

/// Findings drawn over the anatomy (devices are in [`crate::synth::devices`]).
pub(crate) fn overlay(chest: &Chest, layers: &mut Layers, row: &ChexpertRow, seed: u64, key: &str) {
    type Draw = fn(&Chest, &mut Layers, &mut Rng, f32);
    let table: [(Finding, Draw); 9] = [
        (Finding::PleuralEffusion, effusion),
        (Finding::Pneumothorax, pneumothorax),
        (Finding::Edema, edema),
        (Finding::Consolidation, consolidation),
        (Finding::Pneumonia, pneumonia),
        (Finding::LungOpacity, lung_opacity),
        (Finding::LungLesion, lesion),
        (Finding::Atelectasis, atelectasis),
        (Finding::PleuralOther, pleural_other),
    ];
    for (finding, draw) in table {
        if let Some(s) = strength(row.label(finding)) {
            draw(chest, layers, &mut finding_rng(seed, key, finding), s);
        }
    }
    if let (Some(s), Some(f)) = (strength(row.label(Finding::Fracture)), chest.fracture) {
        // Callus around the break makes it findable at low resolution too.
        let p = rib_point(chest, f);
        let r = 0.28 * chest.rib_spacing;
        layers.bone.for_each_in(
            (p.0 - 2.0 * r, p.1 - r),
            (p.0 + 2.0 * r, p.1 + r),
            |x, y, v| {
                let d = (((x - p.0) / (1.8 * r)).powi(2) + ((y - p.1) / r).powi(2)).sqrt();
                *v += 1.2 * s * smoothstep(1.0, 0.6, d);
            },
        );
    }
}

/// Centre of the fractured rib's displaced end at the break.
fn rib_point(chest: &Chest, f: RibFracture) -> Pt {
    let sp = chest.rib_spacing;
    let t = f.index as f32 + RIB_BAND / 2.0 + f.step;
    if chest.frontal() {
        let x = chest.midline + f.side * f.at * chest.lung_size.0 * 0.53;
        let phase = chest.rib_phase[usize::from(f.side > 0.0)];
        (x, chest.posterior_rib_y(f.at) + (t - phase) * sp)
    } else {
        let x = chest.spine_x - f.at * chest.lung_size.0;
        let y0 = chest.lung_origin.1 + 0.35 * (chest.spine_x - x);
        (x, y0 + (t - chest.rib_phase[0]) * sp)
    }
}

/// The sides a finding shows on: one at random, or both with probability `both`.
fn pick_sides<'c>(chest: &'c Chest, rng: &mut Rng, both: f32) -> Vec<&'c Side> {
    let n = chest.sides.len();
    if n > 1 && rng.chance(both) {
        chest.sides.iter().collect()
    } else {
        vec![&chest.sides[rng.below(n)]]
    }
}

/// The box a side occupies, with a margin.
fn side_box(side: &Side, margin: f32) -> (Pt, Pt) {
    let (x0, x1) = (
        side.medial_x.min(side.lateral_x),
        side.medial_x.max(side.lateral_x),
    );
    (
        (x0 - margin, side.apex_y - margin),
        (x1 + margin, side.base_y + margin),
    )
}

/// Pleural effusion: fluid filling the lung base with a meniscus that climbs laterally,
/// blunting the costophrenic angle.
fn effusion(chest: &Chest, layers: &mut Layers, rng: &mut Rng, s: f32) {
    let soft = 0.02 * chest.h as f32;
    for side in pick_sides(chest, rng, 0.5) {
        let amount = s * rng.range(0.7, 1.0);
        let depth = side.height() * (0.12 + 0.26 * amount);
        let (lo, hi) = side_box(side, 0.03 * chest.w as f32);
        let top = side.base_y - depth * 1.1 - soft;
        let side = *side;
        layers.opacity.for_each_in(
            (lo.0, top),
            (hi.0, hi.1 + 0.03 * chest.h as f32),
            |x, y, v| {
                let lat = side.s_of(x).clamp(0.0, 1.0);
                // Meniscus: the fluid climbs the lateral chest wall.
                let level = side.base_y - depth * (0.4 + 0.6 * lat.powi(3));
                let fluid = smoothstep(level - soft, level + soft, y);
                let deeper = smoothstep(level, side.base_y, y);
                *v += s * fluid * (0.6 + 0.35 * deeper);
            },
        );
    }
}

/// Pneumothorax: the lung pulls away from the apex and lateral wall, leaving a rim of air
/// without vessels, bounded by a thin visceral pleural line.
fn pneumothorax(chest: &Chest, layers: &mut Layers, rng: &mut Rng, s: f32) {
    let side = *pick_sides(chest, rng, 0.0)[0];
    let anchor = (side.x_at(0.1), side.y_at(0.9));
    let k = 1.0 - (0.12 + 0.1 * rng.f32()) * s;
    let (lo, hi) = side_box(&side, 2.0);
    let Layers {
        lucency,
        marking_gain,
        opacity,
        ..
    } = layers;
    let mut rims = Vec::new();
    lucency.for_each_in(lo, hi, |x, y, v| {
        let m = chest.lung(x, y);
        let keep = smoothstep(side.y_at(0.95), side.y_at(0.6), y);
        if m <= 0.02 || keep <= 0.0 {
            return;
        }
        let collapsed = chest.lung(anchor.0 + (x - anchor.0) / k, anchor.1 + (y - anchor.1) / k);
        let rim = m * smoothstep(0.6, 0.2, collapsed) * keep;
        let line = m * keep * (-((collapsed - 0.45) / 0.12).powi(2)).exp();
        *v += rim * (0.5 + 0.5 * s);
        rims.push((x, y, rim, line, collapsed));
    });
    let w = chest.w;
    for (x, y, rim, line, collapsed) in rims {
        let i = y as usize * w + x as usize;
        marking_gain.data[i] *= 1.0 - rim;
        opacity.data[i] += s * (0.45 * line + 0.1 * collapsed);
    }
}

/// Edema: bilateral perihilar ("bat-wing") haze with interstitial texture, Kerley B lines at
/// the lateral bases and prominent upper-zone vessels.
fn edema(chest: &Chest, layers: &mut Layers, rng: &mut Rng, s: f32) {
    let tex = ValueNoise::new(rng, 26, 26);
    let wf = chest.w as f32;
    for side in &chest.sides {
        let (hx, hy) = side.hilum;
        let (sx, sy) = (0.55 * side.width(), 0.42 * side.height());
        let (lo, hi) = side_box(side, 0.0);
        let side = *side;
        layers.opacity.for_each_in(lo, hi, |x, y, v| {
            let d2 = ((x - hx) / sx).powi(2) + ((y - hy) / sy).powi(2);
            let t = tex.sample(x / wf, y / chest.h as f32);
            *v += 0.7 * s * (-d2).exp() * (0.7 + 0.3 * t);
        });
        layers
            .marking_gain
            .for_each_in(lo, (hi.0, side.y_at(0.45)), |_, _, v| {
                *v *= 1.0 + 0.6 * s;
            });
        for _ in 0..4 + rng.below(4) {
            let y = side.y_at(rng.range(0.65, 0.92));
            let x0 = side.x_at(rng.range(0.93, 0.99));
            let x1 = side.x_at(rng.range(0.8, 0.86));
            layers
                .opacity
                .stroke(&[(x0, y), (x1, y)], 0.005 * wf, |t| 0.7 * s * (1.0 - t * t));
        }
    }
}

/// A soft-edged blob with an irregular outline and optional mottling, added to the opacity
/// layer. Its noise is laid over its own box, so the outline is organic at any blob size.
fn blob(layers: &mut Layers, rng: &mut Rng, c: Pt, r: Pt, value: f32, mottle: f32) {
    let shape = ValueNoise::new(rng, 6, 6);
    let grain = ValueNoise::new(rng, 12, 12);
    let (x0, y0) = (c.0 - 1.4 * r.0, c.1 - 1.4 * r.1);
    let (bw, bh) = (2.8 * r.0, 2.8 * r.1);
    layers
        .opacity
        .for_each_in((x0, y0), (x0 + bw, y0 + bh), |x, y, v| {
            let (u, w) = ((x - x0) / bw, (y - y0) / bh);
            let d = (((x - c.0) / r.0).powi(2) + ((y - c.1) / r.1).powi(2)).sqrt();
            let d = d + 0.3 * shape.sample(u, w);
            let texture = 1.0 - mottle + mottle * (0.5 + 0.5 * grain.sample(u, w));
            *v += value * smoothstep(1.0, 0.45, d) * texture;
        });
}

/// Consolidation: one dense lobar opacity with air bronchograms.
fn consolidation(chest: &Chest, layers: &mut Layers, rng: &mut Rng, s: f32) {
    let side = *pick_sides(chest, rng, 0.0)[0];
    let zone = [0.25, 0.5, 0.72][rng.below(3)];
    let c = (
        side.x_at(rng.range(0.4, 0.7)),
        side.y_at(zone + rng.range(-0.05, 0.05)),
    );
    let r = (
        side.width() * rng.range(0.24, 0.32),
        side.height() * rng.range(0.14, 0.2),
    );
    blob(layers, rng, c, r, 0.8 * s, 0.15);
    // Air bronchograms: dark branching tubes inside the opacity.
    let toward_hilum = (side.hilum.0 - c.0).signum();
    let start = (c.0 + toward_hilum * 0.6 * r.0, c.1 - 0.2 * r.1);
    for _ in 0..3 {
        let end = (
            c.0 - toward_hilum * rng.range(0.0, 0.5) * r.0,
            c.1 + rng.range(-0.5, 0.5) * r.1,
        );
        layers
            .lucency
            .stroke(&[start, end], 0.006 * chest.w as f32, |t| {
                0.5 * s * (1.0 - t * t)
            });
    }
}

/// Pneumonia: several mottled patches, mostly in the lower and middle zones.
fn pneumonia(chest: &Chest, layers: &mut Layers, rng: &mut Rng, s: f32) {
    for side in pick_sides(chest, rng, 0.3) {
        let side = *side;
        for _ in 0..2 + rng.below(3) {
            let c = (
                side.x_at(rng.range(0.3, 0.8)),
                side.y_at(rng.range(0.45, 0.85)),
            );
            let r = side.width() * rng.range(0.13, 0.2);
            let r = (r, r * rng.range(0.8, 1.2));
            blob(layers, rng, c, r, 0.6 * s, 0.6);
        }
    }
}

/// Lung opacity: broad patchy haze over the middle and lower zones.
fn lung_opacity(chest: &Chest, layers: &mut Layers, rng: &mut Rng, s: f32) {
    let tex = ValueNoise::new(rng, 9, 11);
    for side in pick_sides(chest, rng, 0.4) {
        let (lo, hi) = side_box(side, 0.0);
        let side = *side;
        let (w, h) = (chest.w as f32, chest.h as f32);
        layers.opacity.for_each_in(lo, hi, |x, y, v| {
            let zone = smoothstep(side.y_at(0.25), side.y_at(0.5), y);
            let patch = smoothstep(-0.2, 0.5, tex.sample(x / w, y / h));
            *v += 0.45 * s * zone * patch;
        });
    }
}

/// Lung lesion: one (sometimes two) small, sharply marginated, lobulated nodules.
fn lesion(chest: &Chest, layers: &mut Layers, rng: &mut Rng, s: f32) {
    let count = if rng.chance(0.2) { 2 } else { 1 };
    for _ in 0..count {
        let side = *pick_sides(chest, rng, 0.0)[0];
        let mut c = side.hilum;
        for _ in 0..12 {
            let p = (
                side.x_at(rng.range(0.3, 0.85)),
                side.y_at(rng.range(0.15, 0.75)),
            );
            if chest.lung(p.0, p.1) > 0.8 {
                c = p;
                break;
            }
        }
        let r = chest.w as f32 * rng.range(0.02, 0.035);
        let (lobes, phase) = (7.0 + rng.below(3) as f32, rng.range(0.0, 6.3));
        layers.opacity.for_each_in(
            (c.0 - 1.2 * r, c.1 - 1.2 * r),
            (c.0 + 1.2 * r, c.1 + 1.2 * r),
            |x, y, v| {
                let (dx, dy) = (x - c.0, y - c.1);
                let edge = r * (1.0 + 0.04 * (lobes * dy.atan2(dx) + phase).sin());
                *v += 0.95 * s * smoothstep(edge + 1.0, edge - 1.0, (dx * dx + dy * dy).sqrt());
            },
        );
        layers.soft.disc_add(c, r, 0.04 * s);
    }
}

/// Atelectasis: a plate-like linear band in a lower zone with a little haze beneath.
fn atelectasis(chest: &Chest, layers: &mut Layers, rng: &mut Rng, s: f32) {
    for side in pick_sides(chest, rng, 0.25) {
        let t = rng.range(0.6, 0.82);
        let tilt = rng.range(-0.07, 0.07) * side.height();
        let a = (side.x_at(0.15), side.y_at(t) - tilt);
        let b = (side.x_at(0.85), side.y_at(t) + tilt);
        let r = chest.w as f32 * rng.range(0.014, 0.022);
        layers
            .opacity
            .stroke(&[a, b], r, |d| 0.6 * s * (1.0 - d * d).powi(2));
        let drop = 0.08 * side.height();
        let (x0, x1) = (a.0.min(b.0), a.0.max(b.0));
        layers
            .opacity
            .for_each_in((x0, a.1.min(b.1)), (x1, a.1.max(b.1) + drop), |x, y, v| {
                let f = (x - a.0) / (b.0 - a.0);
                let line = a.1 + (b.1 - a.1) * f;
                *v += 0.15
                    * s
                    * smoothstep(line + drop, line, y)
                    * smoothstep(line - 1.0, line + r, y);
            });
    }
}

/// Pleural other: pleural thickening along the lateral chest wall, with calcified plaques.
fn pleural_other(chest: &Chest, layers: &mut Layers, rng: &mut Rng, s: f32) {
    for side in pick_sides(chest, rng, 0.4) {
        let side = *side;
        let centre = (side.x_at(0.45), side.y_at(0.5));
        let k = 0.93;
        let (lo, hi) = side_box(&side, 2.0);
        layers.opacity.for_each_in(lo, hi, |x, y, v| {
            if side.s_of(x) < 0.45 || y > side.y_at(0.85) || y < side.y_at(0.08) {
                return;
            }
            let m = chest.lung(x, y);
            let inner = chest.lung(centre.0 + (x - centre.0) / k, centre.1 + (y - centre.1) / k);
            *v += 0.85 * s * m * smoothstep(0.7, 0.2, inner);
        });
        for _ in 0..1 + rng.below(3) {
            let p = (
                side.x_at(rng.range(0.88, 0.97)),
                side.y_at(rng.range(0.3, 0.8)),
            );
            let r = chest.w as f32 * rng.range(0.008, 0.014);
            let q = (p.0, p.1 + 2.5 * r);
            layers.bone.stroke(&[p, q], r, |t| 0.8 * s * (1.0 - t * t));
        }
    }
}

#[cfg(test)]
mod tests;
