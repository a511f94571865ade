//! A pre-scan of a DICOM file's declared lengths, run before dicom-object sees the bytes.
//!
//! dicom-parser reserves and zero-fills each value's declared length before reading it, and a
//! length may claim up to 4 GiB: a 1 KiB file could make it allocate gigabytes before it fails
//! as truncated. This walks the file meta group and the data set as dicom-parser does
//! (elements, sequences, items, pixel fragments) without copying anything, and refuses as
//! truncated any length longer than what is left of the file, or of the enclosing item or
//! sequence. Whatever could make the two walks disagree on where a header starts is refused as
//! corrupt. Not walked: data sets in a syntax refused anyway, and deflated ones (their lengths
//! are bounded by the inflated size, not by the file's).
//!
//! One encoding dicom-parser misreads is taken out before it reads the file: an element of VR UN
//! with undefined length in an explicit VR syntax. PS3.5 §6.2.2 (CP-246) says its value is a
//! sequence encoded in implicit VR little endian, whatever the transfer syntax; it is what a
//! private or unknown sequence becomes when a node that does not know it re-encodes an implicit
//! VR object in explicit VR (GDCM and DCMTK read it so; dicom-rs issue #169 is its report for
//! Philips' private groups). dicom-parser reads the items in the file's own explicit encoding and
//! fails, or worse, reads garbage. The walk reads them as implicit VR and [`readable`] drops the
//! element, unless it bears on how the image is shown or gated (then the file is refused by
//! name), or it sits inside an item or sequence of defined length (whose length would then be
//! wrong: refused by name too).

use std::borrow::Cow;

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::{tags, StandardDataDictionary};
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};

use super::DecodeError::{self, Truncated};

const UNDEFINED: u32 = u32::MAX;
const ITEM: Tag = Tag(0xFFFE, 0xE000);
const ITEM_END: Tag = Tag(0xFFFE, 0xE00D);
const SEQUENCE_END: Tag = Tag(0xFFFE, 0xE0DD);
/// Far deeper than real objects nest; bounds the recursion on crafted input.
const MAX_DEPTH: u32 = 64;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Syntax {
    ExplicitLe,
    ImplicitLe,
    ExplicitBe,
}

/// Where the walk found the data set's own Pixel Data (7FE0,0010), when it holds the samples
/// uncompressed: the only top-level Pixel Data element, with a defined length, in a little
/// endian native syntax. Pixel Data nested in a sequence (an icon image) is not it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NativePixels {
    /// The value's bytes in the body passed to [`check`].
    pub range: std::ops::Range<usize>,
}

/// Checks every declared length in `body`, the file from `DICM` on (preamble removed), takes
/// out the elements dicom-parser would misread (VR UN of undefined length, PS3.5 §6.2.2: see the
/// module's doc), and says where the uncompressed pixel data lies in what it returns when the
/// syntax is native little endian.
pub(super) fn readable(
    body: Cow<'_, [u8]>,
) -> Result<(Cow<'_, [u8]>, Option<NativePixels>), DecodeError> {
    let walk = walk(&body)?;
    if walk.implicit_sequences.is_empty() {
        return Ok((body, walk.native));
    }
    let mut kept = Vec::with_capacity(body.len());
    let mut from = 0;
    for range in &walk.implicit_sequences {
        kept.extend_from_slice(&body[from..range.start]);
        from = range.end;
    }
    kept.extend_from_slice(&body[from..]);
    // Walked again, so that the pixel data's place is the new body's and nothing else moved.
    let again = walk_without_implicit_sequences(&kept)?;
    Ok((Cow::Owned(kept), again))
}

fn walk_without_implicit_sequences(body: &[u8]) -> Result<Option<NativePixels>, DecodeError> {
    let walk = walk(body)?;
    if !walk.implicit_sequences.is_empty() {
        return Err(DecodeError::corrupt_dicom(
            "a UN sequence of undefined length is still there after it was taken out",
        ));
    }
    Ok(walk.native)
}

/// [`readable`], for tests that need only where the native pixel data lies.
#[cfg(test)]
pub(super) fn check(body: &[u8]) -> Result<Option<NativePixels>, DecodeError> {
    readable(Cow::Borrowed(body)).map(|(_, native)| native)
}

/// What a walk found.
struct Walk {
    native: Option<NativePixels>,
    /// Elements of VR UN and undefined length (PS3.5 §6.2.2) to take out, in file order.
    implicit_sequences: Vec<std::ops::Range<usize>>,
}

fn walk(body: &[u8]) -> Result<Walk, DecodeError> {
    let mut c = Cursor {
        bytes: body,
        pos: 0,
        end: body.len(),
        syntax: Syntax::ExplicitLe, // the file meta group's, whatever the data set's
        pixels: Vec::new(),
        defined: 0,
        implicit_sequences: Vec::new(),
    };
    if c.take(4)? != b"DICM" {
        return Err(DecodeError::corrupt_dicom(
            "no DICM magic before the file meta group",
        ));
    }
    // As dicom-object reads it: the group length first, then elements until it is used up.
    let (tag, _, len) = c.header()?;
    if tag != tags::FILE_META_INFORMATION_GROUP_LENGTH || len != 4 {
        return Err(DecodeError::corrupt_dicom(format!(
            "file meta group opens with {tag}, not its length"
        )));
    }
    let group_length = c.u32()? as usize;
    let (group_end, mut uid) = (c.pos.saturating_add(group_length), &b""[..]);
    while c.pos < group_end {
        let (tag, _, len) = c.header()?;
        let value = c.value(tag, len, 1)?;
        if tag == tags::TRANSFER_SYNTAX_UID {
            uid = value;
        }
    }
    let uid = String::from_utf8_lossy(uid);
    let uid = uid.trim_end_matches(|c: char| c.is_whitespace() || c == '\0');
    c.syntax = match uid {
        "1.2.840.10008.1.2" => Syntax::ImplicitLe,
        "1.2.840.10008.1.2.2" => Syntax::ExplicitBe,
        // Deflated, or unknown (refused by name next, before dicom-object reads the data set).
        uid if uid == "1.2.840.10008.1.2.1.99" || TransferSyntaxRegistry.get(uid).is_none() => {
            return Ok(Walk {
                native: None,
                implicit_sequences: Vec::new(),
            })
        }
        _ => Syntax::ExplicitLe,
    };
    elements(&mut c, 0)?;
    let native = matches!(uid, "1.2.840.10008.1.2" | "1.2.840.10008.1.2.1");
    Ok(Walk {
        native: match c.pixels.as_slice() {
            [only] if native => Some(NativePixels {
                range: only.clone(),
            }),
            _ => None,
        },
        implicit_sequences: c.implicit_sequences,
    })
}

/// Data set elements until the end or, at `depth` > 0, the item's delimiter.
fn elements(c: &mut Cursor<'_>, depth: u32) -> Result<(), DecodeError> {
    // dicom-parser ends a data set quietly where not even a tag is left; nested, leftover
    // bytes would start a header the two walks see differently.
    while c.remaining() >= 4 || (depth > 0 && c.remaining() > 0) {
        let at = c.pos;
        let (tag, vr, len) = c.header()?;
        let pixels = tag == tags::PIXEL_DATA && vr != VR::SQ;
        match tag {
            ITEM_END if depth > 0 => return Ok(()),
            ITEM_END => {} // outside any sequence dicom-parser skips it, length and all
            _ if len == UNDEFINED && vr == VR::UN && c.syntax != Syntax::ImplicitLe => {
                implicit_sequence(c, tag, at, depth)?
            }
            // dicom-parser reads any other undefined length as a sequence.
            _ if len == UNDEFINED => items(c, depth + 1, pixels)?,
            _ if vr == VR::SQ => c.within(tag, len, |c| items(c, depth + 1, false))?,
            _ if pixels && depth == 0 => {
                let start = c.pos;
                let value = c.value(tag, len, unit(vr))?;
                c.pixels.push(start..start + value.len());
            }
            _ => drop(c.value(tag, len, unit(vr))?),
        }
    }
    Ok(())
}

/// Items of a sequence (pixel fragments when `fragments`) until its delimiter or the end.
fn items(c: &mut Cursor<'_>, depth: u32, fragments: bool) -> Result<(), DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::corrupt_dicom(format!(
            "over {MAX_DEPTH} sequences deep at byte {}",
            c.pos
        )));
    }
    // dicom-parser reads the first fragment, the offset table, as 32-bit numbers.
    let mut fragment_unit = 4;
    while c.remaining() > 0 {
        let at = c.pos;
        match c.header()? {
            (SEQUENCE_END, _, _) => return Ok(()),
            (ITEM, _, len) if fragments => {
                c.value(ITEM, len, std::mem::replace(&mut fragment_unit, 1))?;
            }
            (ITEM, _, UNDEFINED) => elements(c, depth)?,
            (ITEM, _, len) => c.within(ITEM, len, |c| elements(c, depth))?,
            (tag, _, _) => {
                return Err(DecodeError::corrupt_dicom(format!(
                    "{tag} at byte {at}, not an item"
                )))
            }
        }
    }
    Ok(())
}

/// An element of VR UN and undefined length at byte `at` (its header read): its items are
/// walked in implicit VR little endian (PS3.5 §6.2.2) and the whole element is marked to be
/// taken out, unless the image's display or gating could depend on it.
fn implicit_sequence(
    c: &mut Cursor<'_>,
    tag: Tag,
    at: usize,
    depth: u32,
) -> Result<(), DecodeError> {
    let unreadable = |why: String| {
        DecodeError::UnsupportedImage(format!(
            "{tag} at byte {at} is a sequence encoded as UN with undefined length (implicit VR \
             inside, PS3.5 §6.2.2), which the DICOM parser cannot read, and {why}"
        ))
    };
    let standard = StandardDataDictionary.by_tag(tag);
    if tag.0.is_multiple_of(2) {
        // Standard: only a sequence may be encoded so, and only one the decode never reads may go.
        match standard {
            Some(e) if e.vr().relaxed() == VR::SQ => {}
            _ => {
                return Err(unreadable(
                    "no standard attribute of this tag is a sequence".into(),
                ))
            }
        }
        if matches!(tag.0, 0x0028 | 0x0054 | 0x2050 | 0x7FE0) {
            return Err(unreadable(format!(
                "{} bears on how the image is shown or gated",
                standard.map_or("it", |e| e.alias())
            )));
        }
    }
    if c.defined > 0 {
        return Err(unreadable(
            "it lies inside an item or sequence of defined length".into(),
        ));
    }
    let outer = std::mem::replace(&mut c.syntax, Syntax::ImplicitLe);
    let walked = items(c, depth + 1, false);
    c.syntax = outer;
    walked?;
    c.implicit_sequences.push(at..c.pos);
    Ok(())
}

fn implicit_vr(tag: Tag) -> VR {
    if tag == tags::PIXEL_DATA || (tag.0 >> 8 == 0x60 && tag.1 == 0x3000) {
        return VR::OW; // as dicom-encoding decides
    }
    StandardDataDictionary
        .by_tag(tag)
        .map_or(VR::UN, |e| e.vr().relaxed())
}

/// dicom-parser reads numbers whole and leaves a remainder unread, so its next header would
/// start elsewhere than ours: such a length is refused.
fn unit(vr: VR) -> u32 {
    use VR::*;
    match vr {
        US | OW | SS => 2,
        AT | FL | OF | SL | OL | UL => 4,
        FD | OD | SV | OV | UV => 8,
        _ => 1,
    }
}

/// Reads `bytes[pos..end]`; `end` narrows to the item or sequence being walked.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    end: usize,
    syntax: Syntax,
    /// Every top-level Pixel Data value with a defined length, in file order.
    pixels: Vec<std::ops::Range<usize>>,
    /// How many items or sequences of defined length enclose the position.
    defined: u32,
    /// See [`Walk::implicit_sequences`].
    implicit_sequences: Vec<std::ops::Range<usize>>,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.end.saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let at = self.pos;
        let out = self.bytes.get(at..self.end).and_then(|rest| rest.get(..n));
        let out = out.ok_or_else(|| Truncated(format!("header cut short at byte {at}")))?;
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        if self.syntax == Syntax::ExplicitBe {
            out.reverse(); // callers read little endian
        }
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_le_bytes)
    }

    /// (tag, VR, length) as dicom-encoding reads them: items and delimiters (group FFFE) and
    /// implicit VR have no VR field; explicit VRs have a 16-bit length but for those below.
    fn header(&mut self) -> Result<(Tag, VR, u32), DecodeError> {
        let tag = Tag(self.u16()?, self.u16()?);
        if tag.0 == 0xFFFE {
            return Ok((tag, VR::UN, self.u32()?));
        }
        if self.syntax == Syntax::ImplicitLe {
            return Ok((tag, implicit_vr(tag), self.u32()?));
        }
        let code = self.take(2)?;
        let vr = VR::from_binary([code[0], code[1]]).unwrap_or(VR::UN);
        use VR::*;
        if let OB | OD | OF | OL | OV | OW | SQ | SV | UC | UN | UR | UT | UV = vr {
            self.u16()?; // reserved
            return Ok((tag, vr, self.u32()?));
        }
        Ok((tag, vr, u32::from(self.u16()?)))
    }

    /// Steps over a value of `len` bytes, refusing one longer than what is left or not a
    /// whole number of `unit`s.
    fn value(&mut self, tag: Tag, len: u32, unit: u32) -> Result<&'a [u8], DecodeError> {
        let (at, left) = (self.pos, self.remaining());
        if len as usize > left {
            return Err(Truncated(format!(
                "{tag} at byte {at} declares {len} bytes, {left} left"
            )));
        }
        if !len.is_multiple_of(unit) {
            return Err(DecodeError::corrupt_dicom(format!(
                "{tag} at byte {at}: {len} bytes, not {unit}-byte units"
            )));
        }
        self.take(len as usize)
    }

    /// Runs `walk` over the next `len` bytes alone; it must use them up, or the two walks
    /// would go on from different places.
    fn within(
        &mut self,
        tag: Tag,
        len: u32,
        walk: impl FnOnce(&mut Self) -> Result<(), DecodeError>,
    ) -> Result<(), DecodeError> {
        let (start, outer) = (self.pos, self.end);
        self.end = start + self.value(tag, len, 1)?.len();
        self.pos = start;
        self.defined += 1;
        walk(self)?;
        self.defined -= 1;
        if self.pos != self.end {
            return Err(DecodeError::corrupt_dicom(format!(
                "{tag} at byte {start} ends early, at {}",
                self.pos
            )));
        }
        self.end = outer;
        Ok(())
    }
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

    use super::*;
    use crate::decode::{decode, DecodeLimits};
    use crate::fixtures::{self, broken, ts, DicomSpec};

    const GIB3: u32 = 3 << 30;

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
