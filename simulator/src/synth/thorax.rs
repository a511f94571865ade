//! The normal thorax drawn into the layers: heart and mediastinum, hila and vessels, airways,
//! clavicles or sternum, breast shadows and the gastric bubble. (Body outline, ribs and spine
//! are analytic, in [`crate::synth::anatomy`].)

use crate::rng::Rng;
use crate::synth::anatomy::Chest;
use crate::synth::canvas::{bezier, smoothstep, Plane};
use crate::synth::layers::Layers;

/// Draws the anatomy every image has, whatever its labels.
pub(crate) fn draw(chest: &Chest, layers: &mut Layers, rng: &mut Rng) {
    let (lw, lh) = chest.lung_size;
    let (lx0, ly0) = chest.lung_origin;
    let wf = chest.w as f32;
    let frontal = chest.frontal();

    // Heart: replaces the lung it overlaps and adds a little thickness of its own. On a
    // lateral the heart overlaps only part of the lungs' depth, so it is fainter.
    let hrt = chest.heart;
    let (ex, ey) = hrt.extent();
    let (lo, hi) = (
        (hrt.cx - ex * 1.1, hrt.cy - ey * 1.1),
        (hrt.cx + ex * 1.1, hrt.cy + ey * 1.1),
    );
    let (heart_opacity, heart_edge) = if frontal { (0.92, 0.88) } else { (0.55, 0.6) };
    layers.opacity.for_each_in(lo, hi, |x, y, v| {
        *v += heart_opacity * smoothstep(1.0, heart_edge, hrt.radius(x, y));
    });
    layers.soft.for_each_in(lo, hi, |x, y, v| {
        *v += 0.03 * (1.0 - hrt.radius(x, y).powi(2)).max(0.0).sqrt();
    });

    // Mediastinum above the heart, and the aortic knob.
    let (mid, mhw) = if frontal {
        (chest.midline, chest.mediastinum_hw)
    } else {
        (lx0 + 0.5 * lw, chest.mediastinum_hw)
    };
    // The mediastinum widens downwards into the cardiac silhouette.
    let bottom = hrt.cy;
    let (hx, _) = hrt.extent();
    let (flare_top, flare_bottom) = (hrt.cy - 2.4 * hrt.ry, hrt.cy - 0.6 * hrt.ry);
    let strength = if frontal { 0.95 } else { 0.0 };
    let reach = mhw.max(0.75 * hx) * 1.2;
    layers.opacity.for_each_in(
        (mid - reach, 0.0),
        (mid.max(hrt.cx) + reach, bottom),
        |x, y, v| {
            let f = if frontal {
                smoothstep(flare_top, flare_bottom, y)
            } else {
                0.0
            };
            let centre = mid + (hrt.cx - mid) * f;
            let half = mhw + (0.75 * hx - mhw).max(0.0) * f;
            let across = smoothstep(half, half * 0.75, (x - centre).abs());
            *v += strength * across * smoothstep(bottom, bottom - 0.1 * lh, y);
        },
    );
    let k = chest.aortic_knob;
    if k.rx > 0.0 {
        layers.opacity.disc_add((k.cx, k.cy), k.rx, 0.9);
    }
    if !frontal && chest.mediastinum_scale > 1.0 {
        // Seen from the side, a widened mediastinum fills the retrosternal clear space.
        let fill = ((chest.mediastinum_scale - 1.0) / 0.9).min(1.0);
        let (cx, cy) = (lx0 + 0.26 * lw, ly0 + 0.36 * lh);
        let (rx, ry) = (0.17 * lw, 0.3 * lh);
        layers
            .opacity
            .for_each_in((cx - rx, cy - ry), (cx + rx, cy + ry), |x, y, v| {
                let r = (((x - cx) / rx).powi(2) + ((y - cy) / ry).powi(2)).sqrt();
                *v += 0.7 * fill * smoothstep(1.0, 0.3, r);
            });
    }

    // Hila and the vessels that branch from them.
    for side in &chest.sides {
        let r = 0.1 * side.width();
        let (hx, hy) = side.hilum;
        layers.opacity.for_each_in(
            (hx - 2.0 * r, hy - 2.0 * r),
            (hx + 2.0 * r, hy + 2.0 * r),
            |x, y, v| {
                *v += 0.3 * (-((x - hx).powi(2) + (y - hy).powi(2)) / (r * r)).exp();
            },
        );
        vessel_tree(chest, &mut layers.markings, side.hilum, side.outward, rng);
    }

    // Airways: trachea to the carina, main bronchi beyond it.
    let (cx, cy) = chest.carina;
    let tw = 0.036 * lw;
    let top = if frontal {
        (chest.midline, 0.0)
    } else {
        (lx0 + 0.42 * lw, 0.0)
    };
    let tube = |t: f32| 1.0 - t.powi(4);
    layers.airway.stroke(&[top, (cx, cy)], tw, tube);
    if frontal {
        for dir in [-1.0, 1.0] {
            let end = (cx + dir * 0.08 * lw, cy + 0.07 * lh);
            layers.airway.stroke(&[(cx, cy), end], tw * 0.65, tube);
        }
    }

    if frontal {
        // Clavicles: S-shaped, from the sternal notch out and up to the shoulders.
        for dir in [-1.0f32, 1.0] {
            let lift = 0.02 * lh * rng.normal();
            let m = (chest.midline + dir * 0.08 * lw, ly0 + 0.07 * lh);
            let c1 = (chest.midline + dir * 0.22 * lw, ly0 + 0.06 * lh);
            let c2 = (chest.midline + dir * 0.4 * lw, ly0 - 0.04 * lh + lift);
            let e = (chest.midline + dir * 0.6 * lw, ly0 - 0.08 * lh + lift);
            let mut pts = bezier(m, c1, c2, 10);
            pts.extend(bezier(c2, (c2.0 + dir * 0.1 * lw, c2.1 - 0.02 * lh), e, 8));
            layers
                .bone
                .stroke(&pts, 0.016 * wf, |t| 0.9 * (1.0 - t.powi(6)));
        }
        if chest.female {
            // Breast shadows over the lower zones, fading upwards, with a soft curved lower
            // margin.
            for side in &chest.sides {
                let (bx, by) = (side.x_at(0.5), side.base_y - 0.22 * lh);
                let (rx, ry) = (0.3 * lw, 0.24 * lh);
                layers
                    .soft
                    .for_each_in((bx - rx, by - ry), (bx + rx, by + ry), |x, y, v| {
                        let r = (((x - bx) / rx).powi(2) + ((y - by) / ry).powi(2)).sqrt();
                        let edge = if y > by {
                            smoothstep(1.0, 0.7, r)
                        } else {
                            smoothstep(1.0, 0.1, r)
                        };
                        *v += 0.05 * edge;
                    });
            }
        }
        if rng.chance(0.6) {
            let base = chest.sides.last().map_or(ly0 + lh, |s| s.base_y);
            let (gx, gy) = (chest.midline + 0.27 * lw, base + 0.07 * lh);
            let (rx, ry) = (0.07 * lw, 0.035 * lh);
            layers
                .airway
                .for_each_in((gx - rx, gy - ry), (gx + rx, gy + ry), |x, y, v| {
                    let r = (((x - gx) / rx).powi(2) + ((y - gy) / ry).powi(2)).sqrt();
                    let level = if y < gy - 0.2 * ry { 1.0 } else { 0.0 };
                    *v = v.max(level * smoothstep(1.0, 0.7, r));
                });
        }
    } else {
        // Raised arms and shoulders over the upper chest; the sternum in front.
        let arm_bottom = ly0 + 0.3 * lh;
        layers
            .soft
            .for_each_in((0.0, 0.0), (wf, arm_bottom), |x, y, v| {
                *v += 0.12 * smoothstep(arm_bottom, ly0, y) * smoothstep(lx0 + lw, lx0, x);
            });
        let front = chest.midline - 0.93 * chest.body_hw;
        let s0 = (front + 0.02 * wf, ly0 + 0.08 * lh);
        let s1 = (front + 0.05 * wf, ly0 + 0.8 * lh);
        layers
            .bone
            .stroke(&[s0, s1], 0.014 * wf, |t| 0.6 * (1.0 - t.powi(4)));
    }
}

/// Branching vessels from a hilum, tapering and fading outwards, stopping at the lung edge.
fn vessel_tree(chest: &Chest, plane: &mut Plane, hilum: (f32, f32), outward: f32, rng: &mut Rng) {
    let reach = 0.6 * chest.lung_size.1;
    let r0 = 0.012 * chest.w as f32;
    let step = 0.055 * chest.lung_size.1;
    let mut budget = 90;
    let mut stack: Vec<((f32, f32), f32, f32, u32)> = Vec::new();
    let trunks = 5 + rng.below(2);
    let frontal = chest.frontal();
    for i in 0..trunks {
        let f = (i as f32 + rng.range(0.2, 0.8)) / trunks as f32;
        let angle = if frontal {
            let a = -1.2 + 2.5 * f; // from up-lateral to down-lateral
            if outward > 0.0 {
                a
            } else {
                std::f32::consts::PI - a
            }
        } else {
            std::f32::consts::TAU * f
        };
        stack.push((hilum, angle, r0 * rng.range(0.8, 1.1), 0));
    }
    while let Some((p, angle, r, depth)) = stack.pop() {
        if budget == 0 || r < 0.35 || depth > 6 {
            continue;
        }
        budget -= 1;
        let len = step * rng.range(0.7, 1.2) * (1.0 - 0.08 * depth as f32);
        let q = (p.0 + len * angle.cos(), p.1 + len * angle.sin());
        if chest.lung(q.0, q.1) < 0.5 && depth > 0 {
            continue;
        }
        let dist = ((q.0 - hilum.0).powi(2) + (q.1 - hilum.1).powi(2)).sqrt();
        let amp = (0.35 + 0.65 * (r / r0).min(1.0)) * (1.0 - 0.6 * (dist / reach).min(1.0));
        plane.stroke(&[p, q], r, |t| amp * (1.0 - t * t));
        if rng.chance(0.5) {
            let spread = rng.range(0.3, 0.55);
            stack.push((q, angle - spread, r * 0.75, depth + 1));
            stack.push((q, angle + spread, r * 0.75, depth + 1));
        } else {
            stack.push((q, angle + 0.2 * rng.normal(), r * 0.85, depth + 1));
        }
    }
}
