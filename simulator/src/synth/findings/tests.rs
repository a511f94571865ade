//! Each finding must change the image measurably, where it should, and more when positive
//! than when uncertain. Parametric lungs keep these tests free of downloaded files.

use crate::dataset::labels::{Finding, LabelState, Labels, Projection, Sex, ViewKind};
use crate::dataset::{ChexpertRow, PatientId};
use crate::synth::render::{Drift, ImageSpec, Radiograph, Renderer};

fn row(patient: u32, view: ViewKind, labels: Labels) -> ChexpertRow {
    let name = format!("patient{patient:05}");
    let file = match view {
        ViewKind::Frontal => "view1_frontal.jpg",
        ViewKind::Lateral => "view2_lateral.jpg",
    };
    ChexpertRow {
        path: format!("CheXpert-v1.0-small/train/{name}/study1/{file}"),
        patient: PatientId(name),
        study: 1,
        sex: if patient.is_multiple_of(2) {
            Sex::Male
        } else {
            Sex::Female
        },
        age: Some(40 + patient % 40),
        view,
        projection: (view == ViewKind::Frontal).then_some(Projection::Pa),
        labels,
    }
}

fn renderer() -> Renderer {
    Renderer::new(11, None, ImageSpec::SMALL, Drift::NONE)
}

fn with(finding: Finding, state: LabelState) -> Labels {
    Labels::default().with(finding, state)
}

/// Mean absolute difference, in grey levels.
fn diff(a: &Radiograph, b: &Radiograph) -> f64 {
    if (a.width, a.height) != (b.width, b.height) {
        return f64::INFINITY;
    }
    let sum: u64 = a
        .pixels
        .iter()
        .zip(&b.pixels)
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / a.pixels.len() as f64
}

/// Pixels that differ by more than `by` grey levels.
fn changed(a: &Radiograph, b: &Radiograph, by: u16) -> usize {
    a.pixels
        .iter()
        .zip(&b.pixels)
        .filter(|(x, y)| x.abs_diff(**y) > by)
        .count()
}

/// Mean over several rows of the width of the bright run around the image centre.
fn central_bright_width(img: &Radiograph, rows: (f32, f32), threshold: u16) -> f64 {
    let w = img.width as usize;
    let (y0, y1) = (
        (rows.0 * img.height as f32) as usize,
        (rows.1 * img.height as f32) as usize,
    );
    let mut total = 0usize;
    for y in y0..y1 {
        let line = &img.pixels[y * w..(y + 1) * w];
        let bright = |x: usize| line[x] >= threshold;
        let c = w / 2;
        let (mut l, mut r) = (c, c);
        while l > 0 && bright(l - 1) {
            l -= 1;
        }
        while r + 1 < w && bright(r + 1) {
            r += 1;
        }
        total += r - l;
    }
    total as f64 / (y1 - y0) as f64
}

#[test]
fn each_finding_changes_the_image_and_uncertain_is_fainter() {
    let r = renderer();
    for view in [ViewKind::Frontal, ViewKind::Lateral] {
        let base = r.render(&row(7, view, Labels::default()));
        for finding in &Finding::ALL[1..] {
            let pos = r.render(&row(7, view, with(*finding, LabelState::Positive)));
            let unc = r.render(&row(7, view, with(*finding, LabelState::Uncertain)));
            let (n_pos, n_unc) = (changed(&base, &pos, 12), changed(&base, &unc, 12));
            assert!(
                n_pos >= 40,
                "{finding} ({view:?}) changes only {n_pos} pixels"
            );
            assert!(
                diff(&base, &unc) > 0.0,
                "{finding} ({view:?}) uncertain changes nothing"
            );
            assert!(
                diff(&base, &pos) > diff(&base, &unc) && n_pos > n_unc,
                "{finding} ({view:?}) uncertain is not fainter than positive"
            );
        }
        // Negative, blank and No Finding draw nothing.
        let negative = Labels([LabelState::Negative; Finding::COUNT]);
        assert_eq!(r.render(&row(7, view, negative)), base);
        let no_finding = with(Finding::NoFinding, LabelState::Positive);
        assert_eq!(r.render(&row(7, view, no_finding)), base);
    }
}

/// Where the lungs and heart of a row's image are, in pixels.
struct Layout {
    /// Per side: (x0, x1, apex y, base y), x0 < x1; lateral edge towards x0 for side 0.
    sides: Vec<(f32, f32, f32, f32)>,
    heart_y: (f32, f32),
}

fn layout(r: &Renderer, row: &ChexpertRow) -> Layout {
    r.with_chest(row, |chest, _| Layout {
        sides: chest
            .sides
            .iter()
            .map(|s| {
                let (x0, x1) = (s.medial_x.min(s.lateral_x), s.medial_x.max(s.lateral_x));
                (x0, x1, s.apex_y, s.base_y)
            })
            .collect(),
        heart_y: (
            chest.heart.cy - 0.3 * chest.heart.ry,
            chest.heart.cy + 0.3 * chest.heart.ry,
        ),
    })
}

/// Mean over a pixel rectangle.
fn mean_px(img: &Radiograph, (x0, y0): (f32, f32), (x1, y1): (f32, f32)) -> f64 {
    let (w, h) = (img.width as f32, img.height as f32);
    img.mean_in((x0 / w, y0 / h), (x1 / w, y1 / h))
}

#[test]
fn cardiomegaly_widens_the_bright_central_region() {
    let r = renderer();
    for patient in 1..=12 {
        let plain = row(patient, ViewKind::Frontal, Labels::default());
        let normal = r.render(&plain);
        let big = r.render(&row(
            patient,
            ViewKind::Frontal,
            with(Finding::Cardiomegaly, LabelState::Positive),
        ));
        let at = layout(&r, &plain);
        // Threshold halfway between the darkest lung and the mediastinum in the normal image.
        let (x0, x1, top, base) = at.sides[0];
        let lung = mean_px(
            &normal,
            (x0 + 0.3 * (x1 - x0), top + 0.3 * (base - top)),
            (x1 - 0.3 * (x1 - x0), top + 0.5 * (base - top)),
        );
        let threshold = ((lung + 200.0) / 2.0) as u16;
        let h = normal.height as f32;
        let band = (at.heart_y.0 / h, at.heart_y.1 / h);
        let (a, b) = (
            central_bright_width(&normal, band, threshold),
            central_bright_width(&big, band, threshold),
        );
        assert!(b > a + 8.0, "patient {patient}: {a:.1} px -> {b:.1} px");
    }
}

#[test]
fn pleural_effusion_brightens_the_lung_bases() {
    let r = renderer();
    for patient in 1..=12 {
        let plain = row(patient, ViewKind::Frontal, Labels::default());
        let normal = r.render(&plain);
        let wet = r.render(&row(
            patient,
            ViewKind::Frontal,
            with(Finding::PleuralEffusion, LabelState::Positive),
        ));
        let mut gain: f64 = 0.0;
        for (x0, x1, top, base) in layout(&r, &plain).sides {
            let lower = ((x0, top + 0.75 * (base - top)), (x1, base));
            gain = gain.max(mean_px(&wet, lower.0, lower.1) - mean_px(&normal, lower.0, lower.1));
            let upper = ((x0, top), (x1, top + 0.4 * (base - top)));
            assert_eq!(
                mean_px(&wet, upper.0, upper.1),
                mean_px(&normal, upper.0, upper.1),
                "patient {patient}: effusion reached the upper zone"
            );
        }
        assert!(
            gain > 15.0,
            "patient {patient}: base brightened by only {gain:.1}"
        );
    }
}

#[test]
fn pneumothorax_darkens_the_apical_rim() {
    let r = renderer();
    for patient in 1..=12 {
        let plain = row(patient, ViewKind::Frontal, Labels::default());
        let normal = r.render(&plain);
        let ptx = r.render(&row(
            patient,
            ViewKind::Frontal,
            with(Finding::Pneumothorax, LabelState::Positive),
        ));
        let mut darkening: f64 = 0.0;
        for (i, (x0, x1, top, base)) in layout(&r, &plain).sides.into_iter().enumerate() {
            // The lateral half of the upper zone.
            let (lx0, lx1) = if i == 0 {
                (x0, (x0 + x1) / 2.0)
            } else {
                ((x0 + x1) / 2.0, x1)
            };
            let apex = ((lx0, top), (lx1, top + 0.3 * (base - top)));
            darkening =
                darkening.max(mean_px(&normal, apex.0, apex.1) - mean_px(&ptx, apex.0, apex.1));
            let bottom = ((x0, top + 0.92 * (base - top)), (x1, base));
            let change = mean_px(&normal, bottom.0, bottom.1) - mean_px(&ptx, bottom.0, bottom.1);
            assert!(
                change.abs() < 1.5,
                "patient {patient}: pneumothorax reached the base"
            );
        }
        assert!(
            darkening > 5.0,
            "patient {patient}: apex darkened by only {darkening:.1}"
        );
    }
}

#[test]
fn lateral_views_show_one_lung_field_frontal_views_two() {
    let r = renderer();
    for patient in 1..=12 {
        let frontal_row = row(patient, ViewKind::Frontal, Labels::default());
        let lateral_row = row(patient, ViewKind::Lateral, Labels::default());
        let (frontal, lateral) = (r.render(&frontal_row), r.render(&lateral_row));
        // Across the upper lungs a frontal is dark, bright (mediastinum), dark; a lateral's single
        // lung field runs through the middle.
        let centre_vs_abdomen = |img: &Radiograph, at: &Layout| {
            let (_, _, top, base) = at.sides[0];
            let h = img.height as f32;
            let (y0, y1) = (
                (top + 0.25 * (base - top)) / h,
                (top + 0.4 * (base - top)) / h,
            );
            img.mean_in((0.46, y0), (0.54, y1)) / img.mean_in((0.4, 0.85), (0.6, 0.95))
        };
        let (fl, ll) = (layout(&r, &frontal_row), layout(&r, &lateral_row));
        let (fc, lc) = (
            centre_vs_abdomen(&frontal, &fl),
            centre_vs_abdomen(&lateral, &ll),
        );
        assert!(
            fc > 0.66,
            "frontal, patient {patient}: centre at {fc:.2} of the abdomen"
        );
        assert!(
            lc < 0.62,
            "lateral, patient {patient}: centre at {lc:.2} of the abdomen"
        );
        assert_eq!(ll.sides.len(), 1);
        // Below the lungs a lateral's most prominent vertical ridge is the spine, at the back
        // (image right).
        let ridge = spine_ridge(&lateral);
        assert!(ridge > 0.6, "lateral, patient {patient}: ridge at {ridge}");
    }
}

/// Centre (fraction of the width) of the most prominent bright vertical ridge (a band 6 % of
/// the width wide, against the bands a tenth of the width to either side) in the rows below
/// the lungs, between 25 % and 78 % of the width (clear of the body's edges).
fn spine_ridge(img: &Radiograph) -> f32 {
    let (w, h) = (img.width as usize, img.height as usize);
    let column = |x: usize| -> f64 {
        (h * 78 / 100..h * 95 / 100)
            .map(|y| f64::from(img.pixels[y * w + x]))
            .sum()
    };
    let cols: Vec<f64> = (0..w).map(column).collect();
    let half = w * 3 / 100;
    let band = |c: usize| cols[c - half..=c + half].iter().sum::<f64>();
    let off = w / 10;
    let ridge = |c: usize| band(c) - 0.5 * (band(c - off) + band(c + off));
    let best = (w * 25 / 100..w * 78 / 100)
        .max_by(|a, b| ridge(*a).total_cmp(&ridge(*b)))
        .unwrap_or(0);
    best as f32 / w as f32
}

#[test]
fn rendering_is_deterministic_per_seed_and_image() {
    let r = renderer();
    let labels = with(Finding::Edema, LabelState::Positive)
        .with(Finding::SupportDevices, LabelState::Positive);
    let a = r.render(&row(3, ViewKind::Frontal, labels));
    assert_eq!(a, r.render(&row(3, ViewKind::Frontal, labels)));
    // The key is the image, not the dataset variant it was listed under.
    let mut full = row(3, ViewKind::Frontal, labels);
    full.path = full
        .path
        .replace("CheXpert-v1.0-small", "CheXpert-v1.0")
        .replace(".jpg", ".png");
    assert_eq!(a, r.render(&full));
    let other_seed = Renderer::new(12, None, ImageSpec::SMALL, Drift::NONE);
    assert!(diff(&a, &other_seed.render(&row(3, ViewKind::Frontal, labels))) > 1.0);
    assert!(diff(&a, &r.render(&row(4, ViewKind::Frontal, labels))) > 1.0);
}
