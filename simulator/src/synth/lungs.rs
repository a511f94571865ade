//! Lung fields: where the air is, in the unit square of the lungs' bounding box.
//!
//! A field comes either from a real lung mask (see [`crate::synth::masks`]) or from a parametric
//! shape; both go through [`LungField::from_coverage`], so the renderer sees one kind of thing.

use crate::rng::Rng;
use crate::synth::canvas::{box_blur, sample_grid, smoothstep};

/// Resolution of a field's grid; bilinear sampling smooths it at render size.
pub(crate) const GRID: usize = 128;

/// One lung's extent in field coordinates (unit square of the lungs' bounding box).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SideShape {
    /// -1 when the lateral edge is towards u = 0 (the patient's right lung on a frontal), +1
    /// when towards u = 1 (the patient's left lung; posterior on a lateral).
    pub(crate) outward: f32,
    pub(crate) u0: f32,
    pub(crate) u1: f32,
    pub(crate) apex_v: f32,
    pub(crate) base_v: f32,
}

/// A lung field ready to render.
#[derive(Debug, Clone)]
pub struct LungField {
    /// Soft 0..1 lung membership.
    pub(crate) edge: Vec<f32>,
    /// Relative air thickness (0 outside, up to 1 in the thickest part).
    pub(crate) depth: Vec<f32>,
    /// Two sides (patient's right lung first) for a frontal field, one for a lateral.
    pub(crate) sides: Vec<SideShape>,
    /// Width / height of the lungs' bounding box in the source.
    pub(crate) aspect: f32,
}

impl LungField {
    /// Builds a field from a `GRID × GRID` coverage grid spanning the lungs' bounding box;
    /// `frontal` asks for two lungs separated by a mediastinal gap. The error says why a shape
    /// was not accepted.
    pub(crate) fn from_coverage(
        coverage: Vec<f32>,
        aspect: f32,
        frontal: bool,
    ) -> Result<Self, &'static str> {
        let n = GRID;
        let fill = coverage.iter().sum::<f32>() / (n * n) as f32;
        if !(0.25..=0.9).contains(&fill) {
            return Err("lung area is implausible for its bounding box");
        }
        if !(0.6..=2.0).contains(&aspect) {
            return Err("bounding box aspect is implausible");
        }
        let column = |x: usize| (0..n).map(|y| coverage[y * n + x]).sum::<f32>() / n as f32;
        let sides = if frontal {
            let (split, gap) = (n * 3 / 10..n * 7 / 10)
                .map(|x| (x, column(x)))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap_or((n / 2, 1.0));
            if gap > 0.2 {
                return Err("no mediastinal gap between two lungs");
            }
            let left = side_shape(&coverage, 0, split, -1.0);
            let right = side_shape(&coverage, split, n, 1.0);
            let (al, ar) = (area(&coverage, 0, split), area(&coverage, split, n));
            if al.min(ar) < 0.25 * (al + ar) {
                return Err("one lung is missing or tiny");
            }
            vec![left?, right?]
        } else {
            vec![side_shape(&coverage, 0, n, 1.0)?]
        };

        let mut edge = coverage.clone();
        box_blur(&mut edge, n, n, 1, 2);
        // Running sums leave rounding crumbs around zero.
        edge.iter_mut().for_each(|e| *e = e.clamp(0.0, 1.0));
        let mut core = coverage;
        box_blur(&mut core, n, n, n / 14, 3);
        let peak = core.iter().cloned().fold(1e-6, f32::max);
        let depth = edge
            .iter()
            .zip(&core)
            .map(|(e, c)| e * (0.35 + 0.65 * (c / peak).max(0.0)))
            .collect();
        Ok(Self {
            edge,
            depth,
            sides,
            aspect,
        })
    }

    #[inline]
    pub(crate) fn edge_at(&self, u: f32, v: f32) -> f32 {
        sample_grid(&self.edge, GRID, u, v)
    }

    #[inline]
    pub(crate) fn depth_at(&self, u: f32, v: f32) -> f32 {
        sample_grid(&self.depth, GRID, u, v)
    }
}

fn area(cov: &[f32], x0: usize, x1: usize) -> f32 {
    (0..GRID)
        .flat_map(|y| (x0..x1).map(move |x| (x, y)))
        .map(|(x, y)| cov[y * GRID + x])
        .sum()
}

fn side_shape(cov: &[f32], x0: usize, x1: usize, outward: f32) -> Result<SideShape, &'static str> {
    let n = GRID as f32;
    let (mut ua, mut ub, mut va, mut vb) = (usize::MAX, 0, usize::MAX, 0);
    for y in 0..GRID {
        for x in x0..x1 {
            if cov[y * GRID + x] > 0.5 {
                ua = ua.min(x);
                ub = ub.max(x);
                va = va.min(y);
                vb = vb.max(y);
            }
        }
    }
    if ua == usize::MAX || ub - ua < GRID / 10 || vb - va < GRID / 4 {
        return Err("a lung is too small");
    }
    Ok(SideShape {
        outward,
        u0: ua as f32 / n,
        u1: (ub + 1) as f32 / n,
        apex_v: va as f32 / n,
        base_v: (vb + 1) as f32 / n,
    })
}

/// Rasterizes `inside(u, v)` on the grid with 3×3 supersampling.
fn rasterize(inside: impl Fn(f32, f32) -> bool) -> Vec<f32> {
    let n = GRID;
    let mut cov = vec![0.0; n * n];
    for y in 0..n {
        for x in 0..n {
            let mut hits = 0;
            for sy in 0..3 {
                for sx in 0..3 {
                    let u = (x as f32 + (sx as f32 + 0.5) / 3.0) / n as f32;
                    let v = (y as f32 + (sy as f32 + 0.5) / 3.0) / n as f32;
                    hits += usize::from(inside(u, v));
                }
            }
            cov[y * n + x] = hits as f32 / 9.0;
        }
    }
    cov
}

/// A parametric frontal pair of lungs: rounded apices, convex lateral edges, domed bases with
/// the costophrenic angles lowest, and the cardiac notch on the patient's left.
pub(crate) fn parametric_frontal(rng: &mut Rng) -> LungField {
    let gap = rng.range(0.07, 0.12);
    let apex = [rng.range(0.0, 0.04), rng.range(0.0, 0.05)];
    let dome = [rng.range(0.12, 0.2), rng.range(0.1, 0.18)];
    let notch = rng.range(0.25, 0.4);
    let bulge = rng.range(0.45, 0.7);
    let cov = rasterize(|u, v| {
        let (s, side) = if u < 0.5 - gap / 2.0 {
            (1.0 - u / (0.5 - gap / 2.0), 0)
        } else if u > 0.5 + gap / 2.0 {
            ((u - 0.5 - gap / 2.0) / (0.5 - gap / 2.0), 1)
        } else {
            return false;
        };
        if v < apex[side] {
            return false;
        }
        let t = ((v - apex[side]) / 0.7).min(1.0);
        let lateral = 0.42 + 0.58 * (t * std::f32::consts::FRAC_PI_2).sin().powf(bulge);
        let mut medial = 0.22 * (1.0 - (v / 0.25).min(1.0)).powi(2);
        if side == 1 {
            medial += notch * smoothstep(0.45, 0.95, v);
        } else {
            medial += 0.08 * smoothstep(0.6, 1.0, v);
        }
        let base = 1.0 - dome[side] * (1.0 - s * s);
        s >= medial && s <= lateral && v <= base
    });
    LungField::from_coverage(cov, rng.range(1.0, 1.25), true)
        .expect("the parametric frontal shape is always plausible")
}

/// A parametric lateral lung (both lungs superimposed): a tall dome, narrower at the apex,
/// its base sloping from the anterior diaphragm down to the deep posterior sulcus.
pub(crate) fn parametric_lateral(rng: &mut Rng) -> LungField {
    let cx = rng.range(0.46, 0.54);
    let power = rng.range(1.9, 2.3);
    let base_front = rng.range(0.66, 0.76);
    let cov = rasterize(|u, v| {
        let taper = 0.75 + 0.25 * smoothstep(0.0, 0.5, v);
        let du = ((u - cx) / (0.5 * taper)).abs();
        let dv = ((v - 0.62) / 0.62).abs();
        let base =
            base_front + (1.0 - base_front) * u.powf(1.5) - 0.04 * (u * std::f32::consts::PI).sin();
        du.powf(power) + dv.powf(power) <= 1.0 && v <= base
    });
    LungField::from_coverage(cov, 1.05, false)
        .expect("the parametric lateral shape is always plausible")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parametric_fields_are_accepted_for_many_seeds() {
        for seed in 0..500 {
            let mut rng = Rng::new(seed);
            let f = parametric_frontal(&mut rng);
            assert_eq!(f.sides.len(), 2);
            assert!(f.sides[0].u1 <= f.sides[1].u0 + 0.02);
            let l = parametric_lateral(&mut rng);
            assert_eq!(l.sides.len(), 1);
        }
    }

    #[test]
    fn depth_is_deepest_inside() {
        let f = parametric_frontal(&mut Rng::new(3));
        let s = f.sides[0];
        let mid = f.depth_at((s.u0 + s.u1) / 2.0, (s.apex_v + s.base_v) / 2.0);
        assert!(mid > 0.8, "{mid}");
        assert_eq!(f.depth_at(0.5, 0.3), 0.0);
    }
}
