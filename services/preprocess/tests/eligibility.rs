//! The eligibility and integrity gates on files other programs wrote: DCMTK's `img2dcm` and
//! `dcmodify` make secondary-capture, MR, colour, derived, multi-frame-claiming and non-chest
//! objects; Pillow writes the JPEG that is then cut off half-way. Each is refused with its own
//! code and words, and a proper CR that DCMTK touched still goes through.

use std::path::Path;
use std::process::Command;

use cxrflow_preprocess::decode::DecodeLimits;
use cxrflow_preprocess::eligibility::{EligibilityRules, UnknownAge};
use cxrflow_preprocess::fixtures::{self, DicomSpec};
use cxrflow_preprocess::pipeline::{prepare_gated, with_event_age, Gated};
use cxrflow_preprocess::Profile;

fn img2dcm(jpeg: &Path, out: &Path, keys: &[&str]) {
    let mut c = Command::new("img2dcm");
    c.args(["-i", "JPEG"]).arg(jpeg).arg(out);
    for k in keys {
        c.args(["-k", k]);
    }
    run_tool(c);
}

fn dcmodify(file: &Path, changes: &[&str]) {
    let mut c = Command::new("dcmodify");
    c.args(["-nb", "-ie"]);
    for m in changes {
        c.args(["-i", m]);
    }
    c.arg(file);
    run_tool(c);
}

/// What the gate makes of `file`: `Ok(())` when it is prepared, else the code.
fn gate(file: &Path) -> Result<(), (String, String)> {
    let bytes = std::fs::read(file).unwrap();
    match prepare_gated(
        &bytes,
        &DecodeLimits::default(),
        Profile::Gray224V1,
        &EligibilityRules::default(),
    ) {
        Ok(Gated::Prepared(_)) => Ok(()),
        Ok(Gated::Ineligible { why, .. }) => Err((why.code.to_string(), why.reason)),
        Err(e) => Err((e.reason().to_string(), e.to_string())),
    }
}

use cxrflow_testkit::{pydicom_test_files, run_tool, tools_python as python};

#[test]
fn dcmtk_objects_that_are_not_chest_radiographs_are_refused_by_their_own_header() {
    let dir = tempfile::tempdir().unwrap();
    let gray = dir.path().join("gray.jpg");
    std::fs::write(&gray, fixtures::jpeg_gray8(256, 256)).unwrap();
    let rgb = dir.path().join("rgb.jpg");
    std::fs::write(&rgb, fixtures::jpeg_rgb8(256, 256)).unwrap();

    // img2dcm's default: a Secondary Capture object without a Modality.
    let sc = dir.path().join("sc.dcm");
    img2dcm(&gray, &sc, &[]);
    let (code, words) = gate(&sc).unwrap_err();
    assert_eq!(code, "eligibility.modality", "{words}");
    assert_eq!(
        words,
        "not a chest radiograph: the DICOM header has no Modality"
    );
    let ot = dir.path().join("ot.dcm");
    img2dcm(&gray, &ot, &["Modality=OT"]);
    assert_eq!(
        gate(&ot).unwrap_err().1,
        "not a chest radiograph: Modality OT"
    );

    // Claiming CR does not make a secondary capture a radiograph.
    let sc_cr = dir.path().join("sc-cr.dcm");
    img2dcm(&gray, &sc_cr, &["Modality=CR", "BodyPartExamined=CHEST"]);
    let (code, words) = gate(&sc_cr).unwrap_err();
    assert_eq!(code, "eligibility.sop_class", "{words}");
    assert!(words.contains("Secondary Capture Image Storage"), "{words}");

    // An MR slice.
    let mr = dir.path().join("mr.dcm");
    img2dcm(&gray, &mr, &[]);
    dcmodify(
        &mr,
        &[
            "(0008,0060)=MR",
            // dcmodify updates the meta header's SOP class from this.
            "(0008,0016)=1.2.840.10008.5.1.4.1.1.4",
        ],
    );
    assert_eq!(
        gate(&mr).unwrap_err().1,
        "not a chest radiograph: Modality MR"
    );

    // A colour JPEG wrapped as a CR object (img2dcm keeps YBR_FULL_422).
    let colour = dir.path().join("colour.dcm");
    img2dcm(&rgb, &colour, &["Modality=CR"]);
    dcmodify(&colour, &["(0008,0016)=1.2.840.10008.5.1.4.1.1.1"]);
    let (code, words) = gate(&colour).unwrap_err();
    assert_eq!(code, "eligibility.colour", "{words}");

    // A real CR (cxrflow's phantom) that DCMTK edits into another body part, a derived image,
    // a multi-frame claim.
    for (changes, want) in [
        (&["(0018,0015)=ABDOMEN"][..], "eligibility.body_part"),
        (&["(0008,0008)=DERIVED\\PRIMARY"], "eligibility.derived"),
        (&["(0008,0008)=ORIGINAL\\SECONDARY"], "eligibility.derived"),
        // Raw detector data: the DX For Processing class, or its intent in any DX.
        (
            &[
                "(0008,0060)=DX",
                "(0008,0016)=1.2.840.10008.5.1.4.1.1.1.1.1",
                "(0008,0068)=FOR PROCESSING",
            ],
            "eligibility.for_processing",
        ),
        (
            &["(0008,0060)=DX", "(0008,0068)=FOR PROCESSING"],
            "eligibility.for_processing",
        ),
    ] {
        let f = dir.path().join("cr.dcm");
        std::fs::write(&f, fixtures::dicom(&DicomSpec::cr(300, 360))).unwrap();
        dcmodify(&f, changes);
        assert_eq!(gate(&f).unwrap_err().0, want, "{changes:?}");
    }
    // DX's own statement of the anatomy, Anatomic Region Sequence (required in DX; Body Part
    // Examined is optional there), coded as DCMTK writes an item.
    let region = |code: &str, scheme: &str, meaning: &str| {
        [
            format!("(0008,2218)[0].(0008,0100)={code}"),
            format!("(0008,2218)[0].(0008,0102)={scheme}"),
            format!("(0008,2218)[0].(0008,0104)={meaning}"),
        ]
    };
    let knee = "not a chest radiograph: Anatomic Region Sequence (0008,2218) Knee";
    for (item, want) in [
        (region("T-D8200", "SRT", "Knee"), Err(knee)),
        (region("72696002", "SCT", "Knee"), Err(knee)),
        (region("T-D3000", "SRT", "Chest"), Ok(())),
        (region("43799004", "SCT", "Chest"), Ok(())),
    ] {
        let f = dir.path().join("dx-region.dcm");
        std::fs::write(&f, fixtures::dicom(&DicomSpec::dx(300, 360))).unwrap();
        let mut c = Command::new("dcmodify");
        c.args(["-nb", "-ie", "-ea", "(0018,0015)"]);
        for m in &item {
            c.args(["-i", m]);
        }
        c.arg(&f);
        run_tool(c);
        let want = want.map_err(|words| ("eligibility.body_part".to_string(), words.to_string()));
        assert_eq!(gate(&f), want, "{item:?}");
    }

    // The same file For Presentation goes through.
    let f = dir.path().join("dx-presentation.dcm");
    std::fs::write(&f, fixtures::dicom(&DicomSpec::cr(300, 360))).unwrap();
    dcmodify(&f, &["(0008,0060)=DX", "(0008,0068)=FOR PRESENTATION"]);
    assert_eq!(gate(&f), Ok(()));
    // A CR DCMTK touched without changing what it is still goes through.
    let f = dir.path().join("cr-ok.dcm");
    std::fs::write(&f, fixtures::dicom(&DicomSpec::cr(300, 360))).unwrap();
    dcmodify(
        &f,
        &["(0008,0008)=ORIGINAL\\PRIMARY", "(0018,1000)=DEVICE-7"],
    );
    assert_eq!(gate(&f), Ok(()));
}

/// A lateral film without View Position is not taken for a frontal one: the header's View Code
/// Sequence or Patient Orientation says which projection it is, as DCMTK's `dcmodify` writes
/// them (View Position erased, as CR allows and some modalities send). The frontal gate reads
/// the view preprocess reports; with no view at all it treats the film as frontal.
#[test]
fn without_view_position_the_code_sequence_or_patient_orientation_tells_a_lateral() {
    let dir = tempfile::tempdir().unwrap();
    let view = |changes: &[&str]| {
        let f = dir.path().join("cr.dcm");
        std::fs::write(&f, fixtures::dicom(&DicomSpec::cr(300, 360))).unwrap();
        let mut c = Command::new("dcmodify");
        c.args(["-nb", "-ie", "-ea", "(0018,5101)"]);
        for m in changes {
            c.args(["-i", m]);
        }
        c.arg(&f);
        run_tool(c);
        match prepare_gated(
            &std::fs::read(&f).unwrap(),
            &DecodeLimits::default(),
            Profile::Gray224V1,
            &EligibilityRules::default(),
        ) {
            Ok(Gated::Prepared(p)) => p.view_position,
            other => panic!("{changes:?}: {other:?}"),
        }
    };
    let lateral = Some("LATERAL".to_string());
    let frontal = Some("FRONTAL".to_string());
    assert_eq!(view(&[]), None, "nothing says");
    // Patient Orientation: rows toward anterior or posterior, columns toward the feet.
    assert_eq!(view(&["(0020,0020)=A\\F"]), lateral);
    assert_eq!(view(&["(0020,0020)=P\\F"]), lateral);
    assert_eq!(view(&["(0020,0020)=L\\F"]), frontal);
    assert_eq!(view(&["(0020,0020)=R\\H"]), frontal);
    // Stored rotated a quarter turn: still which projection.
    assert_eq!(view(&["(0020,0020)=F\\A"]), lateral);
    // An axial plane is neither.
    assert_eq!(view(&["(0020,0020)=L\\A"]), None);
    // The View Code Sequence (CID 4010's meanings) before the orientation.
    assert_eq!(
        view(&[
            "(0054,0220)[0].(0008,0104)=left lateral",
            "(0020,0020)=L\\F"
        ]),
        lateral
    );
    assert_eq!(
        view(&["(0054,0220)[0].(0008,0104)=postero-anterior"]),
        frontal
    );
    // A View Position the gate knows wins.
    assert_eq!(
        view(&["(0018,5101)=LL", "(0020,0020)=L\\F"]),
        Some("LL".to_string())
    );
}

/// A child's chest radiograph is not scored by a model trained on adults (CheXpert: 18 to 90):
/// the age comes from Patient's Age as DCMTK writes it, in years, months, weeks or days, else
/// from the birth date to the examination's date; an adult's goes through.
#[test]
fn a_childs_radiograph_is_not_scored_whatever_way_its_header_gives_the_age() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], Result<(), &str>)] = &[
        (&["(0010,1010)=005Y"], Err("patient aged 5")),
        (&["(0010,1010)=018M"], Err("patient aged 1")),
        (&["(0010,1010)=003W"], Err("patient aged 0")),
        (&["(0010,1010)=017Y"], Err("patient aged 17")),
        // No Patient's Age: the birth date to the acquisition's, else the study's, date.
        (
            &["(0010,0030)=20100615", "(0008,0022)=20240614"],
            Err("patient aged 13"),
        ),
        (&["(0010,0030)=20060615", "(0008,0020)=20240615"], Ok(())),
        (&["(0010,1010)=018Y"], Ok(())),
        (&["(0010,1010)=045Y"], Ok(())),
        // The age attribute wins over the birth date.
        (&["(0010,1010)=045Y", "(0010,0030)=20200101"], Ok(())),
        // A birth date without the examination's date says nothing.
        (&["(0010,0030)=20200101"], Ok(())),
    ];
    for (changes, want) in cases {
        let f = dir.path().join("cr.dcm");
        std::fs::write(&f, fixtures::dicom(&DicomSpec::cr(300, 360))).unwrap();
        dcmodify(&f, changes);
        match (gate(&f), want) {
            (Ok(()), Ok(())) => {}
            (Err((code, words)), Err(start)) => {
                assert_eq!(code, "eligibility.age", "{changes:?}: {words}");
                assert_eq!(
                    words,
                    format!("{start}: the model was trained and validated on patients 18 and over"),
                    "{changes:?}"
                );
            }
            (got, _) => panic!("{changes:?}: {got:?}, expected {want:?}"),
        }
    }
}

/// A site that wants eligibility proven rather than presumed (`--preprocess-unknown-age
/// not-assessable`) lists a radiograph whose age nobody gave for a person, without a score: the
/// header's Patient's Age or birth date, else the scan event's age, lets an adult's through. The
/// default still scores it (counted, and marked on the worklist).
#[test]
fn a_site_that_refuses_unknown_ages_scores_only_films_whose_age_someone_gave() {
    let strict = EligibilityRules {
        unknown_age: UnknownAge::NotAssessable,
        ..EligibilityRules::default()
    };
    let dir = tempfile::tempdir().unwrap();
    type Case<'a> = (&'a [&'a str], Option<i32>, Result<(), &'a str>);
    let cases: &[Case] = &[
        (&[], None, Err("eligibility.age_unknown")),
        (&[], Some(40), Ok(())),
        (&[], Some(7), Err("eligibility.age")),
        (&["(0010,1010)=045Y"], None, Ok(())),
        // The header wins over the scan event.
        (&["(0010,1010)=045Y"], Some(7), Ok(())),
        (&["(0010,1010)=009Y"], Some(40), Err("eligibility.age")),
        (
            &["(0010,0030)=19700615", "(0008,0020)=20240615"],
            None,
            Ok(()),
        ),
        // A birth date without the examination's date gives no age.
        (
            &["(0010,0030)=19700615"],
            None,
            Err("eligibility.age_unknown"),
        ),
    ];
    for (changes, event_age, want) in cases {
        let f = dir.path().join("cr.dcm");
        std::fs::write(&f, fixtures::dicom(&DicomSpec::cr(300, 360))).unwrap();
        if !changes.is_empty() {
            dcmodify(&f, changes);
        }
        let bytes = std::fs::read(&f).unwrap();
        let judged = |rules: &EligibilityRules| {
            let gated =
                prepare_gated(&bytes, &DecodeLimits::default(), Profile::Gray224V1, rules).unwrap();
            match with_event_age(gated, *event_age, rules) {
                Gated::Prepared(_) => Ok(()),
                Gated::Ineligible { why, .. } => Err((why.code, why.reason)),
            }
        };
        match (judged(&strict), want) {
            (Ok(()), Ok(())) => {}
            (Err((code, words)), Err(want)) => {
                assert_eq!(code, *want, "{changes:?} {event_age:?}: {words}");
                if code == "eligibility.age_unknown" {
                    assert!(words.starts_with("no patient age"), "{words}");
                }
            }
            (got, _) => panic!("{changes:?} {event_age:?}: {got:?}, expected {want:?}"),
        }
        // The default scores an unknown age; it refuses only a known child.
        let default = judged(&EligibilityRules::default()).map_err(|(code, _)| code);
        let want_default = match want {
            Err("eligibility.age_unknown") => Ok(()),
            other => *other,
        };
        assert_eq!(default, want_default, "{changes:?} {event_age:?}");
    }
}

/// A radiograph shrunk below the model's input (a PACS thumbnail, a key image) would be enlarged
/// to fill it: refused by size, with its size in the words; one just large enough goes through.
/// DCMTK's `dcmscale` shrinks a CR, as a PACS or viewer exports one smaller, and marks it
/// DERIVED, which the header gate refuses first; an exporter that keeps ORIGINAL is caught by
/// its size.
#[test]
fn a_radiograph_smaller_than_the_models_input_is_not_scored() {
    let dir = tempfile::tempdir().unwrap();
    let cr = dir.path().join("cr.dcm");
    std::fs::write(&cr, fixtures::dicom(&DicomSpec::cr(1000, 1200))).unwrap();
    let scaled = |width: u32| {
        let f = dir.path().join(format!("cr-{width}.dcm"));
        let mut c = Command::new("dcmscale");
        c.args(["+Sxv", &width.to_string()]).arg(&cr).arg(&f);
        run_tool(c);
        assert_eq!(gate(&f).unwrap_err().0, "eligibility.derived");
        dcmodify(&f, &["(0008,0008)=ORIGINAL\\PRIMARY"]);
        f
    };
    assert_eq!(
        gate(&scaled(160)),
        Err((
            "eligibility.resolution".into(),
            "image 160×192 is smaller than the model's 224×224 input: it would be enlarged to \
             fill it, too little detail to score"
                .into()
        ))
    );
    // 187×224: its long side fills the input without enlarging it.
    assert_eq!(gate(&scaled(187)), Ok(()));
    // A PNG has no header to judge, but its size is judged all the same.
    let png = dir.path().join("small.png");
    std::fs::write(&png, fixtures::png_gray8(150, 180)).unwrap();
    assert_eq!(gate(&png).unwrap_err().0, "eligibility.resolution");
}

#[test]
fn pydicom_objects_an_other_toolkit_writes_are_judged_by_their_header() {
    let dir = tempfile::tempdir().unwrap();
    let script = r#"
import sys
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

def write(path, modality, sop_class, frames=1, body="CHEST"):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.BodyPartExamined = body
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = 256, 256
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    px = (np.arange(256 * 256 * frames, dtype=np.uint16) % 4096).reshape(frames, 256, 256)
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = px.tobytes()
    ds.save_as(path, enforce_file_format=True)

out = sys.argv[1]
write(out + "/ct.dcm", "CT", "1.2.840.10008.5.1.4.1.1.2")
write(out + "/cr-multi.dcm", "CR", "1.2.840.10008.5.1.4.1.1.1", frames=3)
write(out + "/dx-knee.dcm", "DX", "1.2.840.10008.5.1.4.1.1.1.1", body="KNEE")
write(out + "/dx-chest.dcm", "DX", "1.2.840.10008.5.1.4.1.1.1.1")
"#;
    let mut c = Command::new(python());
    c.args(["-c", script]).arg(dir.path());
    run_tool(c);
    let at = |f: &str| dir.path().join(f);
    assert_eq!(gate(&at("ct.dcm")).unwrap_err().0, "eligibility.modality");
    assert_eq!(
        gate(&at("cr-multi.dcm")).unwrap_err().0,
        "eligibility.multiframe"
    );
    assert_eq!(
        gate(&at("dx-knee.dcm")).unwrap_err().1,
        "not a chest radiograph: Body Part Examined KNEE"
    );
    assert_eq!(gate(&at("dx-chest.dcm")), Ok(()));
}

#[test]
fn a_jpeg_or_png_cut_off_half_way_is_never_scored() {
    let dir = tempfile::tempdir().unwrap();
    let script = r#"
import sys
from PIL import Image
img = Image.radial_gradient("L").resize((512, 512))
img.save(sys.argv[1] + "/pil.jpg", quality=90)
img.save(sys.argv[1] + "/pil.png")
"#;
    let mut c = Command::new(python());
    c.args(["-c", script]).arg(dir.path());
    run_tool(c);
    for name in ["pil.jpg", "pil.png"] {
        let whole = std::fs::read(dir.path().join(name)).unwrap();
        let f = dir.path().join(format!("whole-{name}"));
        std::fs::write(&f, &whole).unwrap();
        assert_eq!(gate(&f), Ok(()), "{name} whole");
        for cut in [whole.len() / 2, whole.len() - 2] {
            std::fs::write(&f, &whole[..cut]).unwrap();
            let (code, words) = gate(&f).unwrap_err();
            assert_eq!(code, "decode.truncated", "{name} cut at {cut}: {words}");
        }
    }
}

/// Objects with no image in them (pydicom's RT plan, RT structure set and structured report,
/// recast by DCMTK as chest CRs, as a misconfigured router or a bad edit would send them) are
/// refused as not an image, before any rule judges the image they do not have (they were
/// called "colour image (1 samples per pixel, no photometric interpretation)"); a CR whose
/// Photometric Interpretation DCMTK removed is refused for exactly that.
#[test]
fn objects_without_an_image_or_its_photometric_interpretation_are_refused_for_what_they_lack() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["rtplan.dcm", "rtstruct.dcm", "reportsi.dcm"] {
        let f = dir.path().join(name);
        std::fs::copy(pydicom_test_files().join(name), &f).unwrap();
        dcmodify(
            &f,
            &[
                "(0008,0016)=1.2.840.10008.5.1.4.1.1.1",
                "(0008,0060)=CR",
                "(0018,0015)=CHEST",
            ],
        );
        let (code, words) = gate(&f).unwrap_err();
        assert_eq!(code, "decode.not_an_image", "{name}: {words}");
        assert!(words.contains("no image pixel module"), "{name}: {words}");
    }
    let f = dir.path().join("cr-no-photometric.dcm");
    std::fs::write(&f, fixtures::dicom(&DicomSpec::cr(300, 360))).unwrap();
    let mut c = Command::new("dcmodify");
    c.args(["-nb", "-e", "(0028,0004)"]).arg(&f);
    run_tool(c);
    let (code, words) = gate(&f).unwrap_err();
    assert_eq!(code, "eligibility.photometric_missing", "{words}");
    assert!(
        words.contains("no Photometric Interpretation (0028,0004)"),
        "{words}"
    );
}
