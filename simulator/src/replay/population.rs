//! Who was sent: the shares of views, sexes, ages and positives in a stretch of traffic, so a
//! report shows what a drift scenario actually changed.

use serde::{Deserialize, Serialize};

use crate::dataset::labels::{Finding, LabelState, Projection, Sex, ViewKind};
use crate::dataset::ChexpertRow;

/// The share of a population with an attribute, for the before/after comparison in the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PopulationMix {
    pub studies: usize,
    pub ap_fraction: f64,
    pub lateral_fraction: f64,
    pub female_fraction: f64,
    pub mean_age: f64,
    /// Positives of the plan's finding.
    pub finding_prevalence: f64,
    /// Images sent with transformed pixels.
    pub intensity_shifted: usize,
}

impl PopulationMix {
    /// The mix of `studies` (row, pixels shifted).
    pub fn of<'a>(
        studies: impl IntoIterator<Item = (&'a ChexpertRow, bool)>,
        finding: Finding,
    ) -> Self {
        let (mut n, mut ap, mut lat, mut fem, mut pos, mut shifted) = (0, 0, 0, 0, 0, 0);
        let (mut age_sum, mut aged) = (0u64, 0u64);
        for (r, s) in studies {
            n += 1;
            ap += usize::from(r.view == ViewKind::Frontal && r.projection == Some(Projection::Ap));
            lat += usize::from(r.view == ViewKind::Lateral);
            fem += usize::from(r.sex == Sex::Female);
            pos += usize::from(r.label(finding) == LabelState::Positive);
            shifted += usize::from(s);
            if let Some(a) = r.age {
                age_sum += u64::from(a);
                aged += 1;
            }
        }
        let frac = |k: usize| if n == 0 { 0.0 } else { k as f64 / n as f64 };
        PopulationMix {
            studies: n,
            ap_fraction: frac(ap),
            lateral_fraction: frac(lat),
            female_fraction: frac(fem),
            mean_age: if aged == 0 {
                0.0
            } else {
                age_sum as f64 / aged as f64
            },
            finding_prevalence: frac(pos),
            intensity_shifted: shifted,
        }
    }
}
