//! Decoding the generated fixtures: every container, bit depth, photometric interpretation and
//! transfer syntax we claim, and every broken input with its own reason.

use cxrflow_preprocess::decode::{decode, Container, DecodeLimits};
use cxrflow_preprocess::fixtures::{self, broken, ts, DicomSpec};
use cxrflow_preprocess::{prepare, Profile};

fn limits() -> DecodeLimits {
    DecodeLimits::default()
}

/// Mean display value (0..1) of the top-left marker square, which the phantom draws white.
fn marker_mean(img: &cxrflow_preprocess::DecodedImage) -> f64 {
    let (w, h) = (img.width as usize, img.height as usize);
    let (mw, mh) = (w / 20, h / 20);
    let mut sum = 0f64;
    for y in 0..mh {
        for x in 0..mw {
            sum += f64::from(img.pixels[y * w + x]) / 65535.0;
        }
    }
    sum / (mw * mh) as f64
}

/// Mean of the air at the bottom-left corner, which the phantom draws nearly black.
fn air_mean(img: &cxrflow_preprocess::DecodedImage) -> f64 {
    let (w, h) = (img.width as usize, img.height as usize);
    let y = h - 2;
    (0..w / 20)
        .map(|x| f64::from(img.pixels[y * w + x]) / 65535.0)
        .sum::<f64>()
        / (w / 20) as f64
}

#[test]
fn monochrome1_is_inverted_so_high_stored_values_come_out_dark() {
    let spec = DicomSpec::cr(120, 150);
    let stored = spec.stored_values();
    // In stored values the air (bottom-left) is the bright-in-stored-value region of MONOCHROME1.
    let w = 120usize;
    assert!(
        stored[148 * w + 1] > 3500,
        "air is stored high in MONOCHROME1"
    );
    assert!(stored[1] < 100, "the marker is stored low");
    let img = decode(&fixtures::dicom(&spec), &limits()).unwrap();
    assert_eq!(img.photometric, "MONOCHROME1");
    assert_eq!(img.bits_stored, 12);
    assert_eq!((img.width, img.height), (120, 150));
    assert!(
        air_mean(&img) < 0.1,
        "air comes out dark: {}",
        air_mean(&img)
    );
    assert!(
        marker_mean(&img) > 0.9,
        "marker comes out bright: {}",
        marker_mean(&img)
    );
    assert_eq!(img.view_position.as_deref(), Some("PA"));
}

#[test]
fn every_supported_dicom_layout_decodes_to_the_same_picture() {
    let cases = [
        ("CR explicit LE", DicomSpec::cr(96, 120)),
        (
            "CR implicit LE",
            DicomSpec::cr(96, 120).transfer_syntax(ts::IMPLICIT_VR_LE),
        ),
        (
            "CR explicit BE",
            DicomSpec::cr(96, 120).transfer_syntax(ts::EXPLICIT_VR_BE),
        ),
        (
            "CR RLE",
            DicomSpec::cr(96, 120).transfer_syntax(ts::RLE_LOSSLESS),
        ),
        ("DX window", DicomSpec::dx(96, 120)),
        (
            "DX rescaled",
            DicomSpec {
                rescale: Some((2.0, -100.0)),
                window: None,
                ..DicomSpec::dx(96, 120)
            },
        ),
        ("8-bit", DicomSpec::gray8(96, 120)),
        (
            "8-bit JPEG baseline",
            DicomSpec::gray8(96, 120).transfer_syntax(ts::JPEG_BASELINE),
        ),
    ];
    for (name, spec) in cases {
        let img =
            decode(&fixtures::dicom(&spec), &limits()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(img.container, Container::Dicom);
        assert_eq!((img.width, img.height), (96, 120), "{name}");
        assert!(
            air_mean(&img) < 0.15,
            "{name}: air dark ({})",
            air_mean(&img)
        );
        assert!(
            marker_mean(&img) > 0.85,
            "{name}: marker bright ({})",
            marker_mean(&img)
        );
    }
}

#[test]
fn window_center_width_is_applied() {
    // A narrow window around the soft tissue: air clips to black, the marker to white, and the
    // body (0.6 of full scale) lands mid-grey.
    let max = f64::from((1u32 << 14) - 1);
    let spec = DicomSpec {
        window: Some((0.6 * max, 0.2 * max)),
        ..DicomSpec::dx(100, 100)
    };
    let img = decode(&fixtures::dicom(&spec), &limits()).unwrap();
    let body = f64::from(img.pixels[80 * 100 + 20]) / 65535.0;
    assert!(
        (body - 0.5).abs() < 0.05,
        "body at the window centre is mid-grey: {body}"
    );
    assert_eq!(air_mean(&img), 0.0);
}

#[test]
fn raster_images_decode_in_8_and_16_bits() {
    for (name, bytes, bits, photometric) in [
        ("png8", fixtures::png_gray8(90, 110), 8, "MONOCHROME2"),
        ("png16", fixtures::png_gray16(90, 110), 16, "MONOCHROME2"),
        ("jpeg8", fixtures::jpeg_gray8(90, 110), 8, "MONOCHROME2"),
        ("jpeg rgb", fixtures::jpeg_rgb8(90, 110), 8, "RGB"),
    ] {
        let img = decode(&bytes, &limits()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            (img.width, img.height, img.bits_stored),
            (90, 110, bits),
            "{name}"
        );
        assert_eq!(img.photometric, photometric, "{name}");
        assert!(marker_mean(&img) > 0.9 && air_mean(&img) < 0.1, "{name}");
    }
}

#[test]
fn full_size_cr_goes_through_the_whole_pipeline() {
    let bytes = fixtures::dicom(&DicomSpec::cr(2500, 3000));
    let p = prepare(&bytes, &limits(), Profile::Gray320V1).unwrap();
    assert_eq!(p.tensor.len(), 320 * 320);
    assert_eq!(
        (p.stats.original_width, p.stats.original_height),
        (2500, 3000)
    );
    assert_eq!(p.stats.bits_stored, 12);
    assert_eq!(p.stats.photometric, "MONOCHROME1");
    assert!(p.stats.mean > 0.1 && p.stats.mean < 0.7, "{}", p.stats.mean);
    // portrait 2500×3000 → 267×320, bars of 26 or 27 columns on each side
    assert_eq!(p.tensor[160 * 320], 0);
    assert_eq!(p.tensor[160 * 320 + 319], 0);
}

#[test]
fn broken_inputs_fail_with_their_own_reason() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("zero bytes", broken::zero_bytes(), "decode.empty"),
        ("truncated png", broken::truncated_png(), "decode.truncated"),
        ("wrong magic", broken::wrong_magic(), "decode.not_an_image"),
        (
            "60000×60000 png",
            broken::png_claiming(60_000, 60_000),
            "decode.too_large",
        ),
        (
            "dicom without pixel data",
            broken::dicom_without_pixel_data(),
            "decode.not_an_image",
        ),
        (
            "dicom MPEG2",
            broken::dicom_with_transfer_syntax(ts::MPEG2_MAIN),
            "decode.unsupported_transfer_syntax",
        ),
        (
            "dicom unknown syntax",
            broken::dicom_with_transfer_syntax("1.2.3.4.5.6.7"),
            "decode.unsupported_transfer_syntax",
        ),
        (
            "truncated dicom",
            broken::truncated_dicom(),
            "decode.truncated",
        ),
        (
            "dicom over the limits",
            fixtures::dicom(&DicomSpec::cr(300, 200)),
            "decode.too_large",
        ),
    ];
    let small = DecodeLimits {
        max_width: 256,
        ..limits()
    };
    for (name, bytes, reason) in cases {
        let lim = if name == "dicom over the limits" {
            small
        } else {
            limits()
        };
        let err = decode(&bytes, &lim).expect_err(name);
        assert_eq!(err.reason(), reason, "{name}: {err}");
    }
    let err = decode(
        &broken::dicom_with_transfer_syntax(ts::MPEG2_MAIN),
        &limits(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("1.2.840.10008.1.2.4.100") && err.to_string().contains("MPEG2"),
        "{err}"
    );
}

#[test]
fn alloc_limit_refuses_before_decoding() {
    let tight = DecodeLimits {
        max_alloc: 1000,
        ..DecodeLimits::default()
    };
    let err = decode(&fixtures::png_gray8(100, 100), &tight).unwrap_err();
    assert_eq!(err.reason(), "decode.too_large");
}
