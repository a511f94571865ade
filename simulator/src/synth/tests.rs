//! End-to-end synthesis into temporary directories.

use super::*;
use crate::dataset::{read_label_file, COLUMNS};
use std::collections::HashSet;

/// A label file of `patients` patients with one or two studies of one or two views.
fn label_file(dir: &Path, patients: usize) -> PathBuf {
    let mut text = COLUMNS.join(",") + "\n";
    for p in 1..=patients {
        for study in 1..=(1 + p % 2) {
            let sex = if p.is_multiple_of(3) {
                "Female"
            } else {
                "Male"
            };
            let card = if p.is_multiple_of(4) { "1.0" } else { "" };
            let eff = if p.is_multiple_of(5) { "-1.0" } else { "0.0" };
            text += &format!(
                "CheXpert-v1.0-small/train/patient{p:05}/study{study}/view1_frontal.jpg,{sex},{},Frontal,AP,,,{card},,,,,,,,{eff},,,1.0\n",
                30 + p
            );
            if p % 3 == 1 {
                text += &format!(
                    "CheXpert-v1.0-small/train/patient{p:05}/study{study}/view2_lateral.jpg,{sex},{},Lateral,,,,{card},,,,,,,,{eff},,,\n",
                    30 + p
                );
            }
        }
    }
    text += "CheXpert-v1.0-small/train/broken.jpg,Male,1,Frontal,AP\n";
    let path = dir.join("train.csv");
    std::fs::write(&path, text).unwrap();
    path
}

fn small_config(labels: &Path, out: &Path) -> SynthConfig {
    let mut cfg = SynthConfig::new(labels, out);
    cfg.seed = 5;
    cfg.studies = SplitCounts {
        train: 12,
        valid: 3,
        heldout: 5,
    };
    cfg.image.short_side = 96;
    cfg.threads = Some(2);
    cfg
}

fn files(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((
                    path.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&path).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn writes_a_chexpert_dataset_with_disjoint_patients() {
    let dir = tempfile::tempdir().unwrap();
    let labels = label_file(dir.path(), 60);
    let out = dir.path().join("out");
    let summary = synthesize(&small_config(&labels, &out)).unwrap();
    assert_eq!(summary.skipped_rows, 1);
    assert_eq!(summary.dataset_dir, out.join("CheXpert-v1.0-small"));
    let mut patients: Vec<HashSet<PatientIdText>> = Vec::new();
    let mut images = 0;
    for s in &summary.splits {
        let table = read_label_file(&s.csv).unwrap();
        assert_eq!(table.skipped, 0);
        assert_eq!(table.rows.len(), s.images);
        assert!(
            s.studies
                <= SplitCounts {
                    train: 12,
                    valid: 3,
                    heldout: 5
                }
                .get(s.split)
        );
        for row in &table.rows {
            assert!(row
                .path
                .starts_with(&format!("CheXpert-v1.0-small/{}/", s.split)));
            assert!(row.path.ends_with(".png"));
            let img = image::open(out.join(&row.path)).unwrap();
            assert_eq!(img.width(), 96);
            assert!(matches!(img, image::DynamicImage::ImageLuma8(_)));
        }
        images += table.rows.len();
        patients.push(table.rows.iter().map(|r| r.patient.0.clone()).collect());
    }
    assert_eq!(summary.images_written, images);
    assert!(summary.splits[0].images > 0 && summary.splits[2].images > 0);
    for (i, a) in patients.iter().enumerate() {
        for b in &patients[i + 1..] {
            assert!(a.is_disjoint(b), "a patient is in two splits");
        }
    }
}

type PatientIdText = String;

#[test]
fn same_seed_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let labels = label_file(dir.path(), 30);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    synthesize(&small_config(&labels, &a)).unwrap();
    let mut cfg = small_config(&labels, &b);
    cfg.threads = Some(1);
    synthesize(&cfg).unwrap();
    let (fa, fb) = (files(&a), files(&b));
    assert!(fa.len() > 10);
    assert_eq!(fa, fb);
}

#[test]
fn sixteen_bit_option_stores_twelve_bits() {
    let dir = tempfile::tempdir().unwrap();
    let labels = label_file(dir.path(), 10);
    let out = dir.path().join("full");
    let mut cfg = small_config(&labels, &out);
    cfg.image = ImageSpec {
        short_side: 200,
        format: PixelFormat::Gray16,
    };
    cfg.studies = SplitCounts {
        train: 2,
        valid: 0,
        heldout: 1,
    };
    let summary = synthesize(&cfg).unwrap();
    assert_eq!(summary.dataset_dir, out.join("CheXpert-v1.0"));
    let row = &read_label_file(&summary.splits[0].csv).unwrap().rows[0];
    let bytes = std::fs::read(out.join(&row.path)).unwrap();
    assert_eq!(&bytes[37..41], b"sBIT", "12 significant bits declared");
    assert_eq!(bytes[41], 12);
    let img = image::load_from_memory(&bytes).unwrap();
    let image::DynamicImage::ImageLuma16(px) = img else {
        panic!("expected a 16-bit grayscale PNG");
    };
    let max = px.pixels().map(|p| p.0[0]).max().unwrap();
    assert!(max <= 4095 && max > 1000, "max {max}");
    // An empty split still gets its csv (header only).
    assert_eq!(
        read_label_file(&summary.splits[1].csv).unwrap().rows.len(),
        0
    );
}

#[test]
fn bad_configuration_is_rejected_and_empty_splits_are_fine() {
    let dir = tempfile::tempdir().unwrap();
    let labels = label_file(dir.path(), 3);
    let mut cfg = small_config(&labels, dir.path());
    cfg.image.short_side = 10;
    assert!(matches!(synthesize(&cfg), Err(SimError::Config(_))));
    cfg.image.short_side = 96;
    cfg.studies = SplitCounts {
        train: 0,
        valid: 0,
        heldout: 0,
    };
    let empty = synthesize(&cfg).unwrap();
    assert_eq!(empty.images_written, 0);
    assert!(empty.splits.iter().all(|s| s.csv.is_file()));
    let missing = small_config(&dir.path().join("nope.csv"), dir.path());
    assert!(matches!(synthesize(&missing), Err(SimError::Dataset(_))));
    assert_eq!(png_name("a/b/view1_frontal.jpg", 0), "view1_frontal.png");
    assert_eq!(png_name("a/b/..", 3), "view3.png");
}
