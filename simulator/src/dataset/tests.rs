//! Label-file parsing, writing and dataset discovery.

use super::*;

const HEADER: &str = "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,Lung Opacity,Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural Other,Fracture,Support Devices";

fn sample() -> String {
    [
        HEADER,
        "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,Female,68,Frontal,AP,1.0,,,,,,,,,0.0,,,,1.0",
        "CheXpert-v1.0-small/train/patient00002/study2/view1_frontal.jpg,Female,87,Frontal,AP,,,-1.0,1.0,,-1.0,-1.0,,-1.0,,-1.0,,1.0,",
        "CheXpert-v1.0-small/train/patient00002/study2/view2_lateral.jpg,Female,87,Lateral,,,,,1.0,,,-1.0,,,,,,1.0,",
        "CheXpert-v1.0-small/train/patient00003/study1/view1_frontal.jpg,Male,41,Frontal,PA,maybe,,,,,,,,,,,,,",
        "CheXpert-v1.0-small/train/patient00004/study1/view1_frontal.jpg,Male,41",
        "no/patient/here.jpg,Male,41,Frontal,PA,,,,,,,,,,,,,,",
        "CheXpert-v1.0-small/train/patient00005/study3/view1_frontal.jpg,Unknown,,Frontal,PA,,,,,,,,,,,,,,",
        "CheXpert-v1.0-small/train/patient00006/study1/view1_frontal.jpg,Male,0,Frontal,PA,,,,,,,,,,,,,,",
    ]
    .join("\n")
}

#[test]
fn parses_labels_and_skips_bad_rows() {
    let table = read_labels(sample().as_bytes(), "inline").unwrap();
    assert_eq!(table.rows.len(), 5);
    assert_eq!(table.skipped, 3);
    let lines: Vec<u64> = table.errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![5, 6, 7]);
    assert!(matches!(
        table.errors[0].reason,
        RowErrorReason::Value {
            column: "No Finding",
            ..
        }
    ));
    assert!(matches!(
        table.errors[1].reason,
        RowErrorReason::FieldCount {
            expected: 19,
            found: 3
        }
    ));
    assert!(matches!(table.errors[2].reason, RowErrorReason::Path(_)));

    let r = &table.rows[1];
    assert_eq!(r.patient, PatientId("patient00002".into()));
    assert_eq!(r.study, 2);
    assert_eq!(r.age, Some(87));
    assert_eq!(r.projection, Some(Projection::Ap));
    assert_eq!(r.label(Finding::Cardiomegaly), LabelState::Uncertain);
    assert_eq!(r.label(Finding::LungOpacity), LabelState::Positive);
    assert_eq!(r.label(Finding::NoFinding), LabelState::Blank);
    assert_eq!(r.label(Finding::Fracture), LabelState::Positive);
    assert_eq!(
        table.rows[0].label(Finding::Pneumothorax),
        LabelState::Negative
    );
    assert_eq!(table.rows[2].view, ViewKind::Lateral);
    assert_eq!(table.rows[2].projection, None);
    assert_eq!(table.rows[3].sex, Sex::Unknown);
    assert_eq!(table.rows[3].age, None);
    // CheXpert's 0 is no age, not a newborn.
    assert_eq!(table.rows[4].age, None);
}

#[test]
fn missing_column_is_a_file_error() {
    let text = "Path,Sex,Age\na,b,c\n";
    let err = read_labels(text.as_bytes(), "inline").unwrap_err();
    assert!(matches!(
        err,
        DatasetError::MissingColumn {
            column: "Frontal/Lateral",
            ..
        }
    ));
}

#[test]
fn write_then_read_round_trips_and_reads_gzip() {
    let table = read_labels(sample().as_bytes(), "inline").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("CheXpert-v1.0-small");
    std::fs::create_dir_all(&ds).unwrap();
    write_label_file(&ds.join("train.csv"), &table.rows).unwrap();
    let opened = open_dataset(dir.path()).unwrap();
    assert_eq!(opened.parent, dir.path());
    assert_eq!(opened.tables[0].1.rows, table.rows);

    let gz_path = dir.path().join("labels.csv.gz");
    let mut gz =
        flate2::write::GzEncoder::new(File::create(&gz_path).unwrap(), flate2::Compression::fast());
    gz.write_all(sample().as_bytes()).unwrap();
    gz.finish().unwrap();
    let from_gz = read_label_file(&gz_path).unwrap();
    assert_eq!(from_gz.rows, table.rows);
    assert_eq!(from_gz.skipped, 3);
}

#[test]
fn image_path_parsing() {
    assert_eq!(
        parse_image_path("CheXpert-v1.0/train/patient64540/study12/view2_lateral.jpg"),
        Some((PatientId("patient64540".into()), 12))
    );
    assert_eq!(parse_image_path("train/patientX/study1/a.jpg"), None);
    assert_eq!(parse_image_path("train/patient1/studyX/a.jpg"), None);
}
