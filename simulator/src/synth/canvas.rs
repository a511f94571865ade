//! Float image planes and the few drawing primitives the renderer needs: clipped box
//! iteration, soft discs, distance-profiled strokes, value noise and box blur.

use crate::rng::Rng;

/// Hermite smoothstep from 0 at `e0` to 1 at `e1` (either order).
#[inline]
pub(crate) fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// A point in pixel coordinates.
pub(crate) type Pt = (f32, f32);

/// Quadratic Bézier through `p0` and `p2`, pulled towards `p1`, as `n + 1` points.
pub(crate) fn bezier(p0: Pt, p1: Pt, p2: Pt, n: usize) -> Vec<Pt> {
    (0..=n)
        .map(|i| {
            let t = i as f32 / n as f32;
            let (a, b, c) = ((1.0 - t) * (1.0 - t), 2.0 * t * (1.0 - t), t * t);
            (
                a * p0.0 + b * p1.0 + c * p2.0,
                a * p0.1 + b * p1.1 + c * p2.1,
            )
        })
        .collect()
}

/// A single-channel float image, row-major.
#[derive(Debug, Clone)]
pub(crate) struct Plane {
    pub(crate) w: usize,
    pub(crate) h: usize,
    pub(crate) data: Vec<f32>,
}

impl Plane {
    pub(crate) fn new(w: usize, h: usize) -> Self {
        Self {
            w,
            h,
            data: vec![0.0; w * h],
        }
    }

    pub(crate) fn filled(w: usize, h: usize, v: f32) -> Self {
        Self {
            w,
            h,
            data: vec![v; w * h],
        }
    }

    /// Visits every pixel whose centre lies in the box, clipped to the plane, passing the
    /// pixel centre and the value to update.
    pub(crate) fn for_each_in(
        &mut self,
        (x0, y0): Pt,
        (x1, y1): Pt,
        mut f: impl FnMut(f32, f32, &mut f32),
    ) {
        let clip = |v: f32, n: usize| (v.max(0.0) as usize).min(n);
        let (xa, xb) = (clip(x0.floor(), self.w), clip(x1.ceil() + 1.0, self.w));
        let (ya, yb) = (clip(y0.floor(), self.h), clip(y1.ceil() + 1.0, self.h));
        for y in ya..yb {
            let row = &mut self.data[y * self.w..(y + 1) * self.w];
            let py = y as f32 + 0.5;
            for (x, v) in row.iter_mut().enumerate().take(xb).skip(xa) {
                f(x as f32 + 0.5, py, v);
            }
        }
    }

    /// Adds `value` inside a disc with a one-pixel soft edge.
    pub(crate) fn disc_add(&mut self, c: Pt, r: f32, value: f32) {
        self.for_each_in((c.0 - r, c.1 - r), (c.0 + r, c.1 + r), |x, y, v| {
            let d = ((x - c.0).powi(2) + (y - c.1).powi(2)).sqrt();
            *v += value * (r + 0.5 - d).clamp(0.0, 1.0);
        });
    }

    /// Draws a polyline whose cross-section is `profile(d / r)` for distance `d` from the line
    /// (`profile` is only asked for arguments in [0, 1]); overlapping parts take the maximum,
    /// so joints do not double up. `profile` should not increase with distance, or joints
    /// show as rings.
    pub(crate) fn stroke(&mut self, pts: &[Pt], r: f32, profile: impl Fn(f32) -> f32) {
        let r = r.max(0.5);
        for seg in pts.windows(2) {
            let (a, b) = (seg[0], seg[1]);
            let (dx, dy) = (b.0 - a.0, b.1 - a.1);
            let len2 = (dx * dx + dy * dy).max(1e-6);
            let lo = (a.0.min(b.0) - r, a.1.min(b.1) - r);
            let hi = (a.0.max(b.0) + r, a.1.max(b.1) + r);
            self.for_each_in(lo, hi, |x, y, v| {
                let t = (((x - a.0) * dx + (y - a.1) * dy) / len2).clamp(0.0, 1.0);
                let d = ((x - a.0 - t * dx).powi(2) + (y - a.1 - t * dy).powi(2)).sqrt();
                if d < r {
                    *v = v.max(profile(d / r));
                }
            });
        }
    }
}

/// Smooth random field in [-1, 1] over the unit square: random values on a `gw × gh` lattice,
/// smoothstep-interpolated.
#[derive(Debug, Clone)]
pub(crate) struct ValueNoise {
    gw: usize,
    gh: usize,
    v: Vec<f32>,
}

impl ValueNoise {
    pub(crate) fn new(rng: &mut Rng, gw: usize, gh: usize) -> Self {
        let (gw, gh) = (gw.max(2), gh.max(2));
        let v = (0..gw * gh).map(|_| rng.range(-1.0, 1.0)).collect();
        Self { gw, gh, v }
    }

    #[inline]
    pub(crate) fn sample(&self, u: f32, v: f32) -> f32 {
        let fx = u.clamp(0.0, 1.0) * (self.gw - 1) as f32;
        let fy = v.clamp(0.0, 1.0) * (self.gh - 1) as f32;
        let (x0, y0) = (
            (fx as usize).min(self.gw - 2),
            (fy as usize).min(self.gh - 2),
        );
        let (tx, ty) = (fx - x0 as f32, fy - y0 as f32);
        let (sx, sy) = (tx * tx * (3.0 - 2.0 * tx), ty * ty * (3.0 - 2.0 * ty));
        let i = y0 * self.gw + x0;
        let top = self.v[i] + (self.v[i + 1] - self.v[i]) * sx;
        let bot = self.v[i + self.gw] + (self.v[i + self.gw + 1] - self.v[i + self.gw]) * sx;
        top + (bot - top) * sy
    }
}

/// In-place separable box blur of radius `r`, repeated `passes` times (three passes are close
/// to a Gaussian). Edges clamp.
pub(crate) fn box_blur(data: &mut [f32], w: usize, h: usize, r: usize, passes: usize) {
    if r == 0 || w == 0 || h == 0 {
        return;
    }
    let mut line = Vec::new();
    for _ in 0..passes {
        for y in 0..h {
            line.clear();
            line.extend((0..w).map(|x| data[y * w + x]));
            blur_line(&line, r, |x, v| data[y * w + x] = v);
        }
        for x in 0..w {
            line.clear();
            line.extend((0..h).map(|y| data[y * w + x]));
            blur_line(&line, r, |y, v| data[y * w + x] = v);
        }
    }
}

fn blur_line(src: &[f32], r: usize, mut put: impl FnMut(usize, f32)) {
    let n = src.len();
    let at = |i: isize| src[i.clamp(0, n as isize - 1) as usize];
    let ri = r as isize;
    let mut sum: f32 = (-ri..=ri).map(at).sum();
    let norm = 1.0 / (2 * r + 1) as f32;
    for i in 0..n as isize {
        put(i as usize, sum * norm);
        sum += at(i + ri + 1) - at(i - ri);
    }
}

/// Bilinear sample of a `n × n` grid at unit-square coordinates; 0 outside.
#[inline]
pub(crate) fn sample_grid(grid: &[f32], n: usize, u: f32, v: f32) -> f32 {
    if !(0.0..=1.0).contains(&u) || !(0.0..=1.0).contains(&v) {
        return 0.0;
    }
    let fx = u * (n - 1) as f32;
    let fy = v * (n - 1) as f32;
    let (x0, y0) = ((fx as usize).min(n - 2), (fy as usize).min(n - 2));
    let (tx, ty) = (fx - x0 as f32, fy - y0 as f32);
    let i = y0 * n + x0;
    let top = grid[i] + (grid[i + 1] - grid[i]) * tx;
    let bot = grid[i + n] + (grid[i + n + 1] - grid[i + n]) * tx;
    top + (bot - top) * ty
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blur_preserves_constant_and_spreads_spike() {
        let mut flat = vec![0.5; 64];
        box_blur(&mut flat, 8, 8, 2, 3);
        assert!(flat.iter().all(|v| (v - 0.5).abs() < 1e-5));
        let mut spike = vec![0.0; 81];
        spike[40] = 1.0;
        box_blur(&mut spike, 9, 9, 1, 1);
        assert!((spike[40] - 1.0 / 9.0).abs() < 1e-5);
        assert!(spike[41] > 0.0 && spike[0] == 0.0);
    }

    #[test]
    fn stroke_and_disc_stay_in_bounds() {
        let mut p = Plane::new(20, 10);
        p.stroke(&[(-5.0, -5.0), (30.0, 20.0)], 2.0, |_| 1.0);
        p.disc_add((19.0, 9.0), 4.0, 0.5);
        assert!(p.data.iter().any(|&v| v > 0.0));
        assert_eq!(sample_grid(&[0.0, 1.0, 0.0, 1.0], 2, 0.5, 0.5), 0.5);
    }
}
