//! The pre-scan of a DICOM file's declared lengths and the PS3.5 §6.2.2 UN sequences taken out
//! before dicom-object reads it: `cxrflow-dicom` (shared with the gateway), its errors as
//! preprocess's reasons. Its tests live here, beside the fixtures and the decoder they check.

use std::borrow::Cow;

pub(super) use cxrflow_dicom::NativePixels;
use cxrflow_dicom::{Purpose, ScanError};

use super::DecodeError;

/// [`cxrflow_dicom::readable`] for the picture, its errors as preprocess's reasons ([`reason`]).
pub(super) fn readable(
    body: Cow<'_, [u8]>,
) -> Result<(Cow<'_, [u8]>, Option<NativePixels>), DecodeError> {
    cxrflow_dicom::readable(body, Purpose::Pixels).map_err(reason)
}

/// cxrflow-dicom's error as preprocess's reason.
pub(super) fn reason(e: ScanError) -> DecodeError {
    match e {
        ScanError::Truncated(words) => DecodeError::Truncated(words),
        ScanError::Corrupt(words) => DecodeError::corrupt_dicom(words),
        ScanError::Unreadable(words) => DecodeError::UnsupportedImage(words),
        ScanError::TooLarge(words) => DecodeError::TooLarge(words),
    }
}

/// [`readable`], for tests that need only where the native pixel data lies.
#[cfg(test)]
pub(super) fn check(body: &[u8]) -> Result<Option<NativePixels>, DecodeError> {
    readable(Cow::Borrowed(body)).map(|(_, native)| native)
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    use dicom_core::value::DataSetSequence;
    use dicom_core::{DataElement, PrimitiveValue};
    use dicom_object::file::ReadPreamble;
    use dicom_object::{FileMetaTableBuilder, InMemDicomObject, OpenFileOptions};
    use proptest::prelude::*;
    use proptest::sample::Index;

    use dicom_core::{Tag, VR};
    use dicom_dictionary_std::tags;

    use super::*;
    use crate::decode::{decode, DecodeLimits};
    use crate::fixtures::{self, broken, ts, DicomSpec};

    const GIB3: u32 = 3 << 30;
    const UNDEFINED: u32 = u32::MAX;
    const ITEM: Tag = Tag(0xFFFE, 0xE000);
    const ITEM_END: Tag = Tag(0xFFFE, 0xE00D);
    const SEQUENCE_END: Tag = Tag(0xFFFE, 0xE0DD);

    /// Tag, VR, reserved bytes and a 4-byte length, little or big endian.
    fn long(tag: Tag, vr: &[u8; 2], len: u32, be: bool) -> Vec<u8> {
        let (g, e, l) = if be {
            (tag.0.to_be_bytes(), tag.1.to_be_bytes(), len.to_be_bytes())
        } else {
            (tag.0.to_le_bytes(), tag.1.to_le_bytes(), len.to_le_bytes())
        };
        [&g[..], &e, vr, &[0, 0], &l].concat()
    }

    /// Tag and 4-byte length (items, delimiters, implicit VR), little endian.
    fn bare(tag: Tag, len: u32) -> Vec<u8> {
        [tag.0.to_le_bytes(), tag.1.to_le_bytes()]
            .concat()
            .into_iter()
            .chain(len.to_le_bytes())
            .collect()
    }

    fn scan(syntax: &str, parts: &[Vec<u8>]) -> Result<(), DecodeError> {
        check(&broken::dicom_with_data_set(syntax, &parts.concat())[128..]).map(drop)
    }

    /// A small file with a sequence two deep, as dicom-object writes it (undefined lengths).
    fn with_sequences(syntax: &str) -> Vec<u8> {
        let code = |value: &str| {
            InMemDicomObject::from_element_iter([
                DataElement::new(tags::CODE_VALUE, VR::SH, PrimitiveValue::from(value)),
                DataElement::new(
                    tags::CODE_MEANING,
                    VR::LO,
                    PrimitiveValue::from("chest view"),
                ),
            ])
        };
        let mut view = code("R-10206");
        let modifiers = DataSetSequence::from(vec![code("G-A186"), code("R-40AB")]);
        view.put(DataElement::new(
            tags::VIEW_MODIFIER_CODE_SEQUENCE,
            VR::SQ,
            modifiers,
        ));
        let obj = InMemDicomObject::from_element_iter([
            DataElement::new(
                tags::SOP_CLASS_UID,
                VR::UI,
                PrimitiveValue::from("1.2.840.10008.5.1.4.1.1.1"),
            ),
            DataElement::new(
                tags::SOP_INSTANCE_UID,
                VR::UI,
                PrimitiveValue::from("2.25.7"),
            ),
            DataElement::new(
                tags::VIEW_CODE_SEQUENCE,
                VR::SQ,
                DataSetSequence::from(vec![view]),
            ),
            DataElement::new(
                tags::PIXEL_DATA,
                VR::OB,
                PrimitiveValue::from(vec![7u8; 16]),
            ),
        ]);
        let file = obj
            .with_meta(FileMetaTableBuilder::new().transfer_syntax(syntax))
            .expect("meta");
        let mut out = Vec::new();
        file.write_all(&mut out).expect("writing to memory");
        out
    }

    /// An element (0043,1001) of VR UN and undefined length whose item holds a private LO in
    /// implicit VR (PS3.5 §6.2.2), with its header in little or big endian.
    fn un_sequence(be: bool) -> Vec<u8> {
        let mut out = long(Tag(0x0043, 0x1001), b"UN", UNDEFINED, be);
        out.extend(bare(ITEM, UNDEFINED));
        out.extend(bare(Tag(0x0043, 0x1010), 6));
        out.extend(b"vendor");
        out.extend(bare(ITEM_END, 0));
        out.extend(bare(SEQUENCE_END, 0));
        out
    }

    /// A 12×10 CR in `syntax` (explicit VR) with [`un_sequence`] before its pixel data.
    fn with_un_sequence(syntax: &'static str) -> Vec<u8> {
        let be = syntax == ts::EXPLICIT_VR_BE;
        let file = fixtures::dicom(&DicomSpec::cr(12, 10).transfer_syntax(syntax));
        let pixel_header: &[u8] = if be {
            &[0x7F, 0xE0, 0x00, 0x10]
        } else {
            &[0xE0, 0x7F, 0x10, 0x00]
        };
        let at = file
            .windows(4)
            .rposition(|w| w == pixel_header)
            .expect("pixel data header");
        [&file[..at], &un_sequence(be), &file[at..]].concat()
    }

    #[test]
    fn an_implicit_un_sequence_is_taken_out_and_the_pixels_are_found_where_they_moved() {
        for syntax in [ts::EXPLICIT_VR_LE, ts::EXPLICIT_VR_BE] {
            let plain = fixtures::dicom(&DicomSpec::cr(12, 10).transfer_syntax(syntax));
            let with = with_un_sequence(syntax);
            let (body, native) = readable(Cow::Borrowed(&with[128..])).expect(syntax);
            // Exactly the element is gone: the rest is the plain file, byte for byte.
            assert_eq!(&body[..], &plain[128..], "{syntax}");
            let want = check(&plain[128..]).expect(syntax);
            assert_eq!(native, want, "{syntax}");
            assert_eq!(
                decode(&with, &DecodeLimits::default())
                    .expect(syntax)
                    .pixels,
                decode(&plain, &DecodeLimits::default())
                    .expect(syntax)
                    .pixels,
            );
        }
        // In implicit VR an unknown element of undefined length is already read as a sequence.
        let plain = fixtures::dicom(&DicomSpec::cr(12, 10).transfer_syntax(ts::IMPLICIT_VR_LE));
        let (body, _) = readable(Cow::Borrowed(&plain[128..])).expect("implicit");
        assert!(matches!(body, Cow::Borrowed(_)));
    }

    /// Valid files in every layout the scan walks; generated once for all proptest cases.
    fn valid_files() -> &'static [Vec<u8>] {
        static FILES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
        FILES.get_or_init(|| {
            let cr = |syntax| fixtures::dicom(&DicomSpec::cr(12, 10).transfer_syntax(syntax));
            vec![
                cr(ts::EXPLICIT_VR_LE),
                cr(ts::IMPLICIT_VR_LE),
                cr(ts::EXPLICIT_VR_BE),
                cr(ts::RLE_LOSSLESS),
                fixtures::dicom(&DicomSpec::gray8(16, 16).transfer_syntax(ts::JPEG_BASELINE)),
                with_sequences(ts::EXPLICIT_VR_LE),
                with_sequences(ts::IMPLICIT_VR_LE),
                with_sequences(ts::EXPLICIT_VR_BE),
                with_un_sequence(ts::EXPLICIT_VR_LE),
                with_un_sequence(ts::EXPLICIT_VR_BE),
            ]
        })
    }

    #[test]
    fn valid_files_pass_in_every_layout() {
        for (i, file) in valid_files().iter().enumerate() {
            assert!(check(&file[128..]).is_ok(), "file {i}");
        }
        // dicom-object reads the sequence files back whole: they are what they claim to be.
        for syntax in [ts::EXPLICIT_VR_LE, ts::IMPLICIT_VR_LE, ts::EXPLICIT_VR_BE] {
            let file = with_sequences(syntax);
            let obj = OpenFileOptions::new()
                .read_preamble(ReadPreamble::Never)
                .from_reader(&file[128..])
                .expect(syntax);
            let views = obj
                .element(tags::VIEW_CODE_SEQUENCE)
                .ok()
                .and_then(|e| e.items());
            let modifiers = views.and_then(|v| {
                v.first()?
                    .element(tags::VIEW_MODIFIER_CODE_SEQUENCE)
                    .ok()?
                    .items()
            });
            assert_eq!(modifiers.map(<[_]>::len), Some(2), "{syntax}");
        }
    }

    #[test]
    fn a_3_gib_element_in_a_1_kib_file_is_refused_before_any_allocation() {
        let file = broken::dicom_claiming_length(GIB3);
        assert_eq!(file.len(), 1024);
        let started = Instant::now();
        let err = decode(&file, &DecodeLimits::default()).unwrap_err();
        // dicom-parser would zero-fill 3 GiB first (seconds); the scan takes microseconds.
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(err.reason(), "decode.truncated");
        // The message is the scan's own: dicom-object never saw the bytes.
        assert!(
            err.to_string()
                .contains("(0042,0011) at byte 56 declares 3221225472 bytes, 840 left"),
            "{err}"
        );
    }

    const DEFLATED: &str = "1.2.840.10008.1.2.1.99";

    /// A file whose data set is `data_set` deflated (PS3.5 A.5: raw deflate), read as it is
    /// compressed, never held inflated.
    fn deflated(data_set: impl std::io::Read) -> Vec<u8> {
        use std::io::Read;
        let mut stream = Vec::new();
        flate2::read::DeflateEncoder::new(data_set, flate2::Compression::best())
            .read_to_end(&mut stream)
            .expect("deflate");
        broken::dicom_with_data_set(DEFLATED, &stream)
    }

    /// Decodes `file`, which must fail within `within`; its reason and words.
    fn refused(file: &[u8], within: Duration) -> (&'static str, String) {
        let started = Instant::now();
        let err = decode(file, &DecodeLimits::default()).unwrap_err();
        assert!(started.elapsed() < within, "{:?}: {err}", started.elapsed());
        (err.reason(), err.to_string())
    }

    #[test]
    fn a_deflated_data_set_is_walked_inflated_and_bounded() {
        use std::io::Read;
        // A 3 GiB length over a short stream: dicom-parser would zero-fill 3 GiB first.
        let header = long(Tag(0x0042, 0x0011), b"OB", GIB3, false);
        let file = deflated(&[&header[..], &[0; 1000]].concat()[..]);
        assert!(file.len() < 512);
        let (reason, words) = refused(&file, Duration::from_millis(200));
        assert_eq!(reason, "decode.truncated");
        assert!(
            words.contains(
                "declares 3221225472 bytes, 1000 left (in the deflated data set, inflated)"
            ),
            "{words}"
        );
        // A deflate bomb with honest lengths: 300 MiB of zeros in an OB element, a file of
        // about 300 KiB. Refused once 256 MiB are out, before dicom-object inflates anything.
        let n: u32 = 300 << 20;
        let header = long(Tag(0x0042, 0x0011), b"OB", n, false);
        let file = deflated(header.chain(std::io::repeat(0).take(u64::from(n))));
        assert!(file.len() < 1 << 20, "{} bytes", file.len());
        let (reason, words) = refused(&file, Duration::from_secs(5));
        assert_eq!(reason, "decode.too_large");
        assert!(
            words.contains("the deflated data set inflates past 256 MiB"),
            "{words}"
        );
        // A stream cut short (GDCM 3.0.21's `gdcmconv --deflated` writes such files): by name,
        // not as whatever element the inflated bytes happen to stop in.
        let samples: Vec<u8> = (0..4096u32).map(|i| (i * 31 % 251) as u8).collect();
        let element = [long(Tag(0x0042, 0x0011), b"OB", 4096, false), samples].concat();
        let whole = deflated(&element[..]);
        let (reason, words) = refused(&whole[..whole.len() - 64], Duration::from_millis(200));
        assert_eq!(reason, "decode.truncated");
        assert!(words.contains("ends before its last block"), "{words}");
        // Not a deflate stream at all.
        let file = broken::dicom_with_data_set(DEFLATED, &[0xFF; 64]);
        let (reason, words) = refused(&file, Duration::from_millis(200));
        assert_eq!(reason, "decode.corrupt_stream");
        assert!(words.contains("is not a deflate stream"), "{words}");
    }

    #[test]
    fn nested_and_encoded_lengths_are_bounded_too() {
        let le = ts::EXPLICIT_VR_LE;
        let seq = |len| long(tags::VIEW_CODE_SEQUENCE, b"SQ", len, false);
        let ob = |len| long(tags::ENCAPSULATED_DOCUMENT, b"OB", len, false);
        let pixels = long(tags::PIXEL_DATA, b"OB", UNDEFINED, false);
        let (item_end, seq_end) = (bare(ITEM_END, 0), bare(SEQUENCE_END, 0));
        let tail = vec![0u8; 48]; // zero elements of length 0
        let deep = [seq(UNDEFINED), bare(ITEM, UNDEFINED)]
            .concat()
            .repeat(1000);
        let cases: Vec<(&str, &str, Vec<Vec<u8>>, &str)> = vec![
            (
                "undefined sequence and item",
                le,
                vec![
                    seq(UNDEFINED),
                    bare(ITEM, UNDEFINED),
                    ob(GIB3),
                    tail.clone(),
                ],
                "decode.truncated",
            ),
            (
                "defined sequence and item",
                le,
                vec![seq(24), bare(ITEM, 16), ob(4), vec![1; 4], tail.clone()],
                "ok",
            ),
            (
                "element longer than its item",
                le,
                vec![seq(24), bare(ITEM, 16), ob(40), tail.clone()],
                "decode.truncated",
            ),
            (
                "item delimiter inside a defined item",
                le,
                vec![seq(24), bare(ITEM, 16), item_end.clone(), ob(0)],
                "decode.corrupt_stream",
            ),
            (
                "element where an item belongs",
                le,
                vec![seq(UNDEFINED), ob(0), seq_end.clone()],
                "decode.corrupt_stream",
            ),
            (
                "pixel fragments",
                le,
                vec![
                    pixels.clone(),
                    bare(ITEM, 0),
                    bare(ITEM, 4),
                    vec![1; 4],
                    seq_end.clone(),
                ],
                "ok",
            ),
            (
                "3 GiB pixel fragment",
                le,
                vec![pixels, bare(ITEM, 0), bare(ITEM, GIB3), tail.clone()],
                "decode.truncated",
            ),
            (
                "1000 sequences deep",
                le,
                vec![deep],
                "decode.corrupt_stream",
            ),
            (
                "3 GiB big endian",
                ts::EXPLICIT_VR_BE,
                vec![
                    long(tags::ENCAPSULATED_DOCUMENT, b"OB", GIB3, true),
                    tail.clone(),
                ],
                "decode.truncated",
            ),
            // Implicit VR: the dictionary says which defined-length values hold items.
            (
                "implicit sequence",
                ts::IMPLICIT_VR_LE,
                vec![
                    bare(tags::VIEW_CODE_SEQUENCE, 16),
                    bare(ITEM, 8),
                    bare(tags::CODE_VALUE, GIB3),
                    tail.clone(),
                ],
                "decode.truncated",
            ),
            (
                "implicit opaque value",
                ts::IMPLICIT_VR_LE,
                vec![
                    bare(tags::ENCAPSULATED_DOCUMENT, 16),
                    bare(ITEM, 8),
                    bare(tags::CODE_VALUE, GIB3),
                ],
                "ok",
            ),
        ];
        for (name, syntax, parts, want) in cases {
            let got = scan(syntax, &parts).map_or_else(|e| e.reason(), |()| "ok");
            assert_eq!(got, want, "{name}: {:?}", scan(syntax, &parts));
        }
        // In the file meta group: (0002,0001) OB claiming 3 GiB.
        let version = long(tags::FILE_META_INFORMATION_VERSION, b"OB", GIB3, false);
        let mut meta = [
            &b"DICM\x02\x00\x00\x00UL\x04\x00\x0c\x00\x00\x00"[..],
            &version,
        ]
        .concat();
        meta.resize(1024, 0);
        assert_eq!(check(&meta).unwrap_err().reason(), "decode.truncated");
    }

    #[test]
    fn the_native_pixel_data_is_located_in_little_endian_syntaxes_only() {
        // 12×10 CR, 16 bits allocated: 240 bytes of samples.
        for syntax in [ts::EXPLICIT_VR_LE, ts::IMPLICIT_VR_LE] {
            let file = fixtures::dicom(&DicomSpec::cr(12, 10).transfer_syntax(syntax));
            let body = &file[128..];
            let found = check(body).expect("valid").expect("native pixel data");
            assert_eq!(found.range.len(), 240, "{syntax}");
            assert_eq!(
                found.range.end,
                body.len(),
                "Pixel Data is the last element"
            );
            let obj = OpenFileOptions::new()
                .read_preamble(ReadPreamble::Never)
                .from_reader(body)
                .expect("dicom-object reads it");
            let px = obj.element(tags::PIXEL_DATA).expect("pixel data");
            assert_eq!(&body[found.range], &px.to_bytes().expect("bytes")[..]);
        }
        // The data set's own pixel data beside a sequence (nested elements are stepped over).
        let file = with_sequences(ts::EXPLICIT_VR_LE);
        let found = check(&file[128..]).unwrap().expect("located");
        assert_eq!(&file[128..][found.range], &[7u8; 16]);
        // Big endian, encapsulated: the decoders read those.
        for file in [
            fixtures::dicom(&DicomSpec::cr(12, 10).transfer_syntax(ts::EXPLICIT_VR_BE)),
            fixtures::dicom(&DicomSpec::cr(12, 10).transfer_syntax(ts::RLE_LOSSLESS)),
            fixtures::dicom(&DicomSpec::gray8(16, 16).transfer_syntax(ts::JPEG_BASELINE)),
        ] {
            assert_eq!(check(&file[128..]), Ok(None));
        }
    }

    fn mutate(file: &[u8], edits: &[(Index, u8)], words: &[(Index, u32)], cut: Index) -> Vec<u8> {
        let mut out = file.to_vec();
        for (at, b) in edits {
            let i = at.index(out.len());
            out[i] = *b;
        }
        // Lengths are where a byte flip does least: overwrite whole 32-bit words too.
        for (at, w) in words {
            let i = at.index(out.len() - 3);
            out[i..i + 4].copy_from_slice(&w.to_le_bytes());
        }
        out.truncate(cut.index(out.len()) + 1);
        out
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024), syntax in 0..4usize) {
            let _ = check(&bytes);
            let _ = check(&[&b"DICM"[..], &bytes].concat());
            let uid = [ts::EXPLICIT_VR_LE, ts::IMPLICIT_VR_LE, ts::EXPLICIT_VR_BE, ts::RLE_LOSSLESS][syntax];
            let _ = check(&broken::dicom_with_data_set(uid, &bytes)[128..]);
        }

        #[test]
        fn mutated_fixtures_never_panic(
            which in any::<Index>(),
            edits in proptest::collection::vec(any::<(Index, u8)>(), 0..8),
            words in proptest::collection::vec(any::<(Index, u32)>(), 0..4),
            cut in any::<Index>(),
        ) {
            let file = which.get(valid_files());
            let mutated = mutate(file, &edits, &words, cut);
            let _ = check(mutated.get(128..).unwrap_or(&mutated));
        }
    }
}
