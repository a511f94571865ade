//! The float layers one radiograph is composed from: the anatomy, findings and devices each
//! paint into them, and `render` sums them into pixels. Kept apart from `render` so the painters
//! depend on the layers, not on the renderer that calls them.

use crate::synth::canvas::Plane;

/// The float layers one image is composed from.
pub(crate) struct Layers {
    /// Fraction of lung air replaced by fluid or tissue (heart, effusion, consolidation …).
    pub(crate) opacity: Plane,
    /// Extra air inside the lung outline (pneumothorax, air bronchograms).
    pub(crate) lucency: Plane,
    /// Vascular markings, scaled by `marking_gain`.
    pub(crate) markings: Plane,
    pub(crate) marking_gain: Plane,
    /// Extra soft-tissue thickness, in attenuation units.
    pub(crate) soft: Plane,
    pub(crate) bone: Plane,
    pub(crate) metal: Plane,
    /// Air outside the lungs: trachea, bronchi, stomach.
    pub(crate) airway: Plane,
}

impl Layers {
    pub(crate) fn new(w: usize, h: usize) -> Self {
        Self {
            opacity: Plane::new(w, h),
            lucency: Plane::new(w, h),
            markings: Plane::new(w, h),
            marking_gain: Plane::filled(w, h, 1.0),
            soft: Plane::new(w, h),
            bone: Plane::new(w, h),
            metal: Plane::new(w, h),
            airway: Plane::new(w, h),
        }
    }
}
