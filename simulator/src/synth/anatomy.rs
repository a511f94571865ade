//! Where things are in one synthetic radiograph: the chest geometry chosen from the row's
//! view, projection, age and sex, and the analytic parts of the anatomy (body outline, ribs,
//! spine) that are cheaper to evaluate per pixel than to draw.

use crate::dataset::labels::{Projection, Sex, ViewKind};
use crate::dataset::ChexpertRow;
use crate::rng::Rng;
use crate::synth::canvas::{smoothstep, Pt};
use crate::synth::lungs::LungField;

/// A posterior rib's height as a fraction of the rib spacing.
pub(crate) const RIB_BAND: f32 = 0.38;

/// One lung in pixel coordinates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Side {
    /// -1: lateral edge to the image's left; +1: to its right (posterior on a lateral).
    pub(crate) outward: f32,
    pub(crate) medial_x: f32,
    pub(crate) lateral_x: f32,
    pub(crate) apex_y: f32,
    pub(crate) base_y: f32,
    pub(crate) hilum: Pt,
}

impl Side {
    pub(crate) fn width(&self) -> f32 {
        (self.lateral_x - self.medial_x).abs()
    }

    pub(crate) fn height(&self) -> f32 {
        self.base_y - self.apex_y
    }

    /// x at fraction `s` of the way from the medial (0) to the lateral (1) edge.
    pub(crate) fn x_at(&self, s: f32) -> f32 {
        self.medial_x + (self.lateral_x - self.medial_x) * s
    }

    /// The inverse of [`Side::x_at`].
    pub(crate) fn s_of(&self, x: f32) -> f32 {
        (x - self.medial_x) / (self.lateral_x - self.medial_x)
    }

    /// y at fraction `t` of the way from apex (0) to base (1).
    pub(crate) fn y_at(&self, t: f32) -> f32 {
        self.apex_y + self.height() * t
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Ellipse {
    pub(crate) cx: f32,
    pub(crate) cy: f32,
    /// Semi-axis along `angle`.
    pub(crate) rx: f32,
    pub(crate) ry: f32,
    /// Rotation of the `rx` axis from the image's x axis (radians, y down).
    pub(crate) angle: f32,
}

impl Ellipse {
    /// 1 on the outline, 0 at the centre.
    #[inline]
    pub(crate) fn radius(&self, x: f32, y: f32) -> f32 {
        let (dx, dy) = (x - self.cx, y - self.cy);
        let (sin, cos) = self.angle.sin_cos();
        let a = (dx * cos + dy * sin) / self.rx;
        let b = (dy * cos - dx * sin) / self.ry;
        (a * a + b * b).sqrt()
    }

    /// Half-extents of the bounding box.
    pub(crate) fn extent(&self) -> (f32, f32) {
        let (sin, cos) = self.angle.sin_cos();
        (
            ((self.rx * cos).powi(2) + (self.ry * sin).powi(2)).sqrt(),
            ((self.rx * sin).powi(2) + (self.ry * cos).powi(2)).sqrt(),
        )
    }
}

/// A broken rib: rib `index` on `side` breaks at lateral position `at` (0 spine .. 1 chest
/// wall) and its distal part is displaced by `step` rib spacings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RibFracture {
    pub(crate) side: f32,
    pub(crate) index: i32,
    pub(crate) at: f32,
    pub(crate) gap: f32,
    pub(crate) step: f32,
}

/// The geometry of one image.
#[derive(Debug, Clone)]
pub(crate) struct Chest<'a> {
    pub(crate) w: usize,
    pub(crate) h: usize,
    pub(crate) view: ViewKind,
    pub(crate) portable: bool,
    pub(crate) field: &'a LungField,
    /// The lungs' bounding box: origin and size.
    pub(crate) lung_origin: Pt,
    pub(crate) lung_size: Pt,
    pub(crate) sides: Vec<Side>,
    pub(crate) midline: f32,
    pub(crate) body_hw: f32,
    pub(crate) shoulder_y: f32,
    pub(crate) heart: Ellipse,
    /// Superior mediastinum: half-width around `midline` down to the heart.
    pub(crate) mediastinum_hw: f32,
    /// 1 for a normal mediastinum; larger when it is widened.
    pub(crate) mediastinum_scale: f32,
    pub(crate) aortic_knob: Ellipse,
    pub(crate) carina: Pt,
    pub(crate) spine_x: f32,
    pub(crate) spine_hw: f32,
    pub(crate) rib_spacing: f32,
    pub(crate) rib_phase: [f32; 2],
    pub(crate) fracture: Option<RibFracture>,
    /// 1.0 for a young adult; lower with age (osteopenia) and for women.
    pub(crate) bone_density: f32,
    pub(crate) female: bool,
}

impl<'a> Chest<'a> {
    pub(crate) fn new(
        row: &ChexpertRow,
        field: &'a LungField,
        (w, h): (usize, usize),
        rng: &mut Rng,
    ) -> Self {
        let (wf, hf) = (w as f32, h as f32);
        // CheXpert codes unknown ages as 0; treat those as a typical adult.
        let age = row.age.filter(|&a| a > 0).map_or(55.0, |a| a as f32);
        let female = row.sex == Sex::Female;
        let size = match row.sex {
            Sex::Male => 1.0,
            Sex::Female => 0.93,
            Sex::Unknown => 0.965,
        } * if age < 16.0 { 0.88 } else { 1.0 }
            * (1.0 + 0.03 * rng.normal());
        let bone_density = ((1.12 - 0.008 * (age - 35.0).max(0.0))
            * if female { 0.9 } else { 1.0 })
        .clamp(0.45, 1.15);
        let portable = row.projection == Some(Projection::Ap);
        let mut ctr = (0.42 + 0.0012 * (age - 50.0) + 0.02 * rng.normal()).clamp(0.36, 0.5);
        if portable {
            ctr *= 1.08; // AP magnifies the heart
        }
        let frontal = row.view == ViewKind::Frontal;

        let lw = (wf * if frontal { 0.72 } else { 0.74 } * size).clamp(0.5 * wf, 0.86 * wf);
        // Masks come from images of any framing; their own aspect only nudges a typical one.
        let aspect = (0.54 + 0.5 * field.aspect.clamp(0.9, 1.4)) * (1.0 + 0.04 * rng.normal());
        let lh = (lw / aspect).min(0.62 * hf);
        let midline = wf * (0.5 + 0.012 * rng.normal());
        let lx0 = if frontal {
            midline - lw / 2.0
        } else {
            wf * (0.46 + 0.015 * rng.normal()) - lw / 2.0
        };
        let ly0 = hf * (0.1 + 0.012 * rng.normal());
        let at = |u: f32, v: f32| (lx0 + u * lw, ly0 + v * lh);

        let sides: Vec<Side> = field
            .sides
            .iter()
            .map(|s| {
                let (near, far) = if s.outward < 0.0 {
                    (s.u1, s.u0)
                } else {
                    (s.u0, s.u1)
                };
                let (medial_x, apex_y) = at(near, s.apex_v);
                let (lateral_x, base_y) = at(far, s.base_v);
                let hilum_s = if frontal { 0.22 } else { 0.5 };
                Side {
                    outward: s.outward,
                    medial_x,
                    lateral_x,
                    apex_y,
                    base_y,
                    hilum: (
                        medial_x + (lateral_x - medial_x) * hilum_s,
                        apex_y + (base_y - apex_y) * 0.45,
                    ),
                }
            })
            .collect();
        let base = sides.iter().map(|s| s.base_y).fold(0.0, f32::max);

        let (heart, mediastinum_hw, aortic_knob, carina, spine_x, spine_hw, body_hw) = if frontal {
            // The long axis runs from the base (patient's upper right) to the apex (lower left).
            let rx = ctr * lw * 1.04 / 2.0 * 1.06;
            let ry = rx * (0.68 + 0.04 * rng.normal());
            let heart = Ellipse {
                cx: midline + 0.24 * rx,
                cy: base - 0.04 * lh - 0.75 * ry,
                rx,
                ry,
                angle: 0.4 + 0.06 * rng.normal(),
            };
            let knob_r = 0.03 * lw * (1.0 + 0.008 * (age - 40.0).max(0.0));
            let mhw = 0.075 * lw * (1.0 + 0.003 * (age - 50.0));
            let knob = Ellipse {
                cx: midline + mhw - 0.3 * knob_r,
                cy: ly0 + 0.22 * lh,
                rx: knob_r,
                ry: knob_r,
                angle: 0.0,
            };
            let carina = (midline - 0.01 * lw, ly0 + 0.3 * lh);
            (
                heart,
                mhw,
                knob,
                carina,
                midline,
                0.05 * lw,
                lw / 2.0 * 1.17,
            )
        } else {
            let rx = 0.27 * lw * ctr / 0.42;
            let heart = Ellipse {
                cx: lx0 + 0.34 * lw,
                cy: ly0 + 0.8 * lh,
                rx: rx * 1.1,
                ry: 0.25 * lh,
                angle: -0.5,
            };
            let knob = Ellipse {
                cx: lx0 + 0.55 * lw,
                cy: ly0 + 0.22 * lh,
                rx: 0.0,
                ry: 0.0,
                angle: 0.0,
            };
            let carina = (lx0 + 0.52 * lw, ly0 + 0.36 * lh);
            (
                heart,
                0.09 * lw,
                knob,
                carina,
                lx0 + 0.88 * lw,
                0.085 * lw,
                0.48 * wf,
            )
        };
        let mut chest = Chest {
            w,
            h,
            view: row.view,
            portable,
            field,
            lung_origin: (lx0, ly0),
            lung_size: (lw, lh),
            sides,
            midline,
            body_hw,
            shoulder_y: ly0 - 0.012 * hf,
            heart,
            mediastinum_hw,
            mediastinum_scale: 1.0,
            aortic_knob,
            carina,
            spine_x,
            spine_hw,
            rib_spacing: lh * 0.105 * (1.0 + 0.04 * rng.normal()),
            rib_phase: [rng.range(0.0, 0.25), rng.range(0.0, 0.25)],
            fracture: None,
            bone_density,
            female,
        };
        if !frontal {
            chest.rib_spacing *= 1.1;
        }
        chest
    }

    pub(crate) fn frontal(&self) -> bool {
        self.view == ViewKind::Frontal
    }

    /// Field coordinates of a pixel.
    #[inline]
    pub(crate) fn uv(&self, x: f32, y: f32) -> (f32, f32) {
        (
            (x - self.lung_origin.0) / self.lung_size.0,
            (y - self.lung_origin.1) / self.lung_size.1,
        )
    }

    /// Lung membership at a pixel (0..1).
    #[inline]
    pub(crate) fn lung(&self, x: f32, y: f32) -> f32 {
        let (u, v) = self.uv(x, y);
        self.field.edge_at(u, v)
    }

    /// Soft-tissue thickness through the body, 0 outside (air) to 1 at the thickest.
    #[inline]
    pub(crate) fn body(&self, x: f32, y: f32) -> f32 {
        let (wf, hf) = (self.w as f32, self.h as f32);
        let (ly0, lh) = (self.lung_origin.1, self.lung_size.1);
        let dx = (x - self.midline).abs();
        let base = ly0 + lh;
        if !self.frontal() {
            let hw = self.body_hw * (1.0 - 0.1 * smoothstep(self.shoulder_y, 0.0, y));
            let t = (1.0 - (dx / hw).powi(2)).max(0.0).sqrt();
            return t * (1.0 + 0.1 * smoothstep(base - 0.1 * lh, base + 0.1 * lh, y));
        }
        // The chest wall widens from the apices to the bases; shoulders and arms fill the top
        // corners down to the axillae, under a shoulder line that slopes down from the neck;
        // the abdomen is thick (liver, spleen).
        let chest = self.body_hw * (0.9 + 0.1 * smoothstep(ly0, ly0 + 0.75 * lh, y));
        let edge = 0.012 * wf;
        let mut t =
            (1.0 - (dx / chest).powi(2)).max(0.0).sqrt() * smoothstep(chest, chest - edge, dx);
        let out = ((dx - chest) / (0.5 * wf - chest).max(1.0)).clamp(0.0, 1.0);
        let axilla = ly0 + lh * (0.05 + 0.35 * out);
        let arms = 0.75 * smoothstep(axilla + 0.02 * hf, axilla - 0.02 * hf, y);
        t = t.max(arms);
        let top = self.shoulder_y - 0.12 * hf + 0.11 * hf * (dx / (0.5 * wf)).powi(2);
        t *= smoothstep(top - edge, top + edge, y);
        t * (1.0 + 0.12 * smoothstep(base - 0.05 * lh, base + 0.12 * lh, y))
    }

    /// Rib shadows (posterior ribs plus fainter anterior ribs on a frontal).
    #[inline]
    pub(crate) fn ribs(&self, x: f32, y: f32) -> f32 {
        let (ly0, lh) = (self.lung_origin.1, self.lung_size.1);
        if y < ly0 - 0.12 * lh || y > ly0 + 1.08 * lh {
            return 0.0;
        }
        let vwin = smoothstep(ly0 - 0.12 * lh, ly0 - 0.02 * lh, y)
            * (1.0 - 0.7 * smoothstep(ly0 + 0.9 * lh, ly0 + 1.05 * lh, y));
        let soft = 1.2 / self.rib_spacing; // one pixel in rib-phase units
        if self.frontal() {
            let half = self.lung_size.0 * 0.53;
            let d = (x - self.midline) / half;
            let (side, a) = (d.signum(), d.abs());
            if a > 1.12 {
                return 0.0;
            }
            let phase = self.rib_phase[usize::from(side > 0.0)];
            let t = (y - self.posterior_rib_y(a)) / self.rib_spacing + phase;
            let post = self.posterior_band(t, side, a, soft);
            let ta = (y - ly0 - lh * (0.02 + 0.3 * (1.0 - a))) / (self.rib_spacing * 1.25) + phase;
            let ant = band(ta, 0.36, soft) * smoothstep(0.3, 0.55, a);
            (post + 0.5 * ant) * smoothstep(1.12, 0.98, a) * smoothstep(0.06, 0.16, a) * vwin
        } else {
            // Posterior ribs sweep down and forward from the spine.
            let span = self.lung_size.0;
            let a = (self.spine_x - x) / span;
            if !(0.0..=0.75).contains(&a) {
                return 0.0;
            }
            let t = (y - ly0 - 0.35 * (self.spine_x - x)) / self.rib_spacing + self.rib_phase[0];
            let above = smoothstep(ly0 + 1.0 * lh, ly0 + 0.8 * lh, y);
            0.5 * self.posterior_band(t, 1.0, a, soft) * smoothstep(0.75, 0.45, a) * vwin * above
        }
    }

    /// Where the top of the first posterior rib is at lateral position `a` (0 at the spine, 1
    /// at the chest wall): ribs run out from the spine and curve down towards the wall.
    pub(crate) fn posterior_rib_y(&self, a: f32) -> f32 {
        self.lung_origin.1 + self.lung_size.1 * (0.12 * a * a + 0.18 * a.powi(4) - 0.04 * a)
    }

    fn posterior_band(&self, t: f32, side: f32, a: f32, soft: f32) -> f32 {
        if let Some(f) = self.fracture {
            if f.side == side && a > f.at - f.gap {
                let moved = t - f.step;
                if moved.floor() as i32 == f.index {
                    return if a < f.at + f.gap {
                        0.0
                    } else {
                        band(moved, RIB_BAND, soft)
                    };
                }
                if t.floor() as i32 == f.index {
                    return 0.0;
                }
            }
        }
        band(t, RIB_BAND, soft)
    }

    /// The vertebral column: a bright band with darker disc spaces.
    #[inline]
    pub(crate) fn spine(&self, x: f32, y: f32) -> f32 {
        let period = self.rib_spacing * 0.8;
        let (cx, hw) = if self.frontal() {
            (self.spine_x, self.spine_hw)
        } else {
            // Gentle thoracic kyphosis.
            let k = (y / self.h as f32 - 0.45) * 2.0;
            (
                self.spine_x - 0.03 * self.w as f32 * (1.0 - k * k),
                self.spine_hw,
            )
        };
        let d = ((x - cx) / hw).abs();
        if d >= 1.0 {
            return 0.0;
        }
        let profile = 0.7 + 0.3 * d.powi(4);
        let phase = (y / period).fract();
        let disc = 1.0 - 0.3 * smoothstep(0.12, 0.0, (phase - 0.5).abs());
        let top = smoothstep(0.0, 0.05 * self.h as f32, y);
        profile * disc * smoothstep(1.0, 0.85, d) * top
    }
}

/// A periodic band of relative width `width` with bright cortical edges.
#[inline]
fn band(t: f32, width: f32, soft: f32) -> f32 {
    if t < 0.0 {
        return 0.0;
    }
    let f = t.fract();
    if f > width + soft {
        return 0.0;
    }
    let inside = smoothstep(0.0, soft, f) * smoothstep(width + soft, width, f);
    let c = (2.0 * f / width - 1.0).clamp(-1.0, 1.0);
    inside * (0.6 + 0.4 * c.powi(4))
}
