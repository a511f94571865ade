//! DICOM reading shared by the gateway and preprocess: a pre-scan of a DICOM file's (or data
//! set's) declared lengths, run before dicom-object sees the bytes.
//!
//! dicom-parser reserves and zero-fills each value's declared length before reading it, and a
//! length may claim up to 4 GiB: a 1 KiB file could make it allocate gigabytes before it fails
//! as truncated. This walks the file meta group and the data set as dicom-parser does
//! (elements, sequences, items, pixel fragments) without copying anything, and refuses as
//! truncated any length longer than what is left of the file, or of the enclosing item or
//! sequence. Whatever could make the two walks disagree on where a header starts is refused as
//! corrupt. Not walked: data sets in a syntax refused anyway.
//!
//! A deflated data set (Deflated Explicit VR Little Endian) is inflated first, at most
//! [`MAX_INFLATED_BYTES`], and its inflated bytes are walked: its declared lengths are bounded
//! by what it inflates to, not by the file's size, and deflate packs up to 1032 bytes into one,
//! so a 64 MiB upload could otherwise make dicom-parser zero-fill tens of GiB (a deflate bomb,
//! or a few lengths of 4 GiB over a short stream). A stream cut short or one inflating past the
//! bound is refused by name. For the picture the inflated file is what dicom-object reads; for
//! metadata (the gateway) dicom-object inflates the file again for itself.
//!
//! One encoding dicom-parser misreads is taken out before it reads the file: an element of VR UN
//! with undefined length in an explicit VR syntax. PS3.5 §6.2.2 (CP-246) says its value is a
//! sequence encoded in implicit VR little endian, whatever the transfer syntax; it is what a
//! private or unknown sequence becomes when a node that does not know it re-encodes an implicit
//! VR object in explicit VR (GDCM and DCMTK read it so; dicom-rs issue #169 is its report for
//! Philips' private groups). dicom-parser reads the items in the file's own explicit encoding and
//! fails, or worse, reads garbage. The walk reads them as implicit VR and [`readable`] drops the
//! element, unless the reader wants the picture ([`Purpose::Pixels`]) and the element may bear on
//! how the image is shown or gated (then the file is refused by name), or it sits inside an item
//! or sequence of defined length (whose length would then be wrong: refused by name too).

use std::borrow::Cow;

pub mod age;
pub mod part10;

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::{tags, StandardDataDictionary};
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};

/// Why the bytes cannot be handed to dicom-parser. The words name the tag and the byte.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// A declared length runs past the end of the file or of its enclosing item.
    #[error("{0}")]
    Truncated(String),
    /// A structure the two walks (this one, dicom-parser's) could read differently.
    #[error("{0}")]
    Corrupt(String),
    /// Valid DICOM that dicom-parser cannot read and that may not be dropped.
    #[error("{0}")]
    Unreadable(String),
    /// More than cxrflow reads: a deflated data set inflating past [`MAX_INFLATED_BYTES`].
    #[error("{0}")]
    TooLarge(String),
}

use ScanError::Truncated;

/// The native transfer syntaxes, whose data sets the walks read element by element.
pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
pub const EXPLICIT_VR_BE: &str = "1.2.840.10008.1.2.2";
/// Deflated explicit VR little endian: its data set is walked once inflated (see the crate's
/// doc).
pub const DEFLATED_EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1.99";

/// The most a deflated data set may inflate to: twice the largest image the decode limits let
/// through in one frame (8192 × 8192 samples of 16 bits, 128 MiB) with room for its metadata;
/// a full-size CR is 15 MiB. What a deflate bomb needs is far more.
pub const MAX_INFLATED_BYTES: usize = 256 << 20;

impl ScanError {
    pub(crate) fn corrupt_dicom(detail: impl Into<String>) -> ScanError {
        ScanError::Corrupt(detail.into())
    }
}

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
pub struct NativePixels {
    /// The value's bytes in the body [`readable`] returns.
    pub range: std::ops::Range<usize>,
}

/// What the reader wants from the object, which decides which UN sequences may be dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The picture (preprocess): a UN sequence that may bear on how the image is shown or gated
    /// (groups 0028, 0054, 2050, 7FE0) is refused rather than dropped.
    Pixels,
    /// Identifiers and dates (the gateway), none of them in a sequence: any may be dropped.
    Metadata,
}

/// Checks every declared length in `body`, the file from `DICM` on (preamble removed), takes
/// out the elements dicom-parser would misread (VR UN of undefined length, PS3.5 §6.2.2: see the
/// crate's doc), and says where the uncompressed pixel data lies in what it returns when the
/// syntax is native little endian.
///
/// For the picture ([`Purpose::Pixels`]) a deflated data set comes back inflated, under a meta
/// group naming explicit VR little endian: inflated once, not again by dicom-object, and its
/// samples then read in place. For metadata (the gateway, which reports and stores the syntax it
/// received) it stays deflated, walked once inflated.
pub fn readable(
    body: Cow<'_, [u8]>,
    purpose: Purpose,
) -> Result<(Cow<'_, [u8]>, Option<NativePixels>), ScanError> {
    if purpose == Purpose::Pixels {
        if let Some(inflated) = part10::inflated(&body)? {
            return readable(Cow::Owned(inflated), purpose).map_err(of_inflated);
        }
    }
    let found = walk(&body, None, purpose)?;
    if found.implicit_sequences.is_empty() {
        return Ok((body, found.native));
    }
    // The pixel data is a top-level element, never inside one taken out: it moves up by the
    // length of those before it.
    let native = found.native.map(|n| {
        let before: usize = (found.implicit_sequences.iter())
            .filter(|r| r.end <= n.range.start)
            .map(|r| r.len())
            .sum();
        NativePixels {
            range: n.range.start - before..n.range.end - before,
        }
    });
    Ok((
        Cow::Owned(without(&body, &found.implicit_sequences)),
        native,
    ))
}

/// [`readable`] for a data set without file meta (as received over DIMSE) in the transfer
/// syntax `uid`.
pub fn readable_data_set<'a>(
    data_set: Cow<'a, [u8]>,
    uid: &str,
    purpose: Purpose,
) -> Result<Cow<'a, [u8]>, ScanError> {
    let found = walk(&data_set, Some(uid), purpose)?;
    if found.implicit_sequences.is_empty() {
        return Ok(data_set);
    }
    Ok(Cow::Owned(without(&data_set, &found.implicit_sequences)))
}

fn without(bytes: &[u8], ranges: &[std::ops::Range<usize>]) -> Vec<u8> {
    let mut kept = Vec::with_capacity(bytes.len());
    let mut from = 0;
    for range in ranges {
        kept.extend_from_slice(&bytes[from..range.start]);
        from = range.end;
    }
    kept.extend_from_slice(&bytes[from..]);
    kept
}

/// What a walk found.
struct Walk {
    native: Option<NativePixels>,
    /// Elements of VR UN and undefined length (PS3.5 §6.2.2) to take out, in file order.
    implicit_sequences: Vec<std::ops::Range<usize>>,
}

/// Walks `body`: a Part 10 body from `DICM` on, or with `data_set_syntax` a bare data set in
/// that transfer syntax.
fn walk(body: &[u8], data_set_syntax: Option<&str>, purpose: Purpose) -> Result<Walk, ScanError> {
    let mut c = Cursor {
        bytes: body,
        pos: 0,
        end: body.len(),
        syntax: Syntax::ExplicitLe, // the file meta group's, whatever the data set's
        pixels: Vec::new(),
        defined: 0,
        implicit_sequences: Vec::new(),
        purpose,
    };
    let uid = match data_set_syntax {
        Some(uid) => uid.to_string(),
        None => meta_group(&mut c)?,
    };
    let uid = uid.trim_end_matches(|c: char| c.is_whitespace() || c == '\0');
    c.syntax = match uid {
        IMPLICIT_VR_LE => Syntax::ImplicitLe,
        EXPLICIT_VR_BE => Syntax::ExplicitBe,
        DEFLATED_EXPLICIT_VR_LE => return deflated(&body[c.pos..], purpose),
        // Unknown: refused by name next, before dicom-object reads the data set.
        uid if TransferSyntaxRegistry.get(uid).is_none() => {
            return Ok(Walk {
                native: None,
                implicit_sequences: Vec::new(),
            })
        }
        _ => Syntax::ExplicitLe,
    };
    elements(&mut c, 0)?;
    let native = matches!(uid, IMPLICIT_VR_LE | EXPLICIT_VR_LE);
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

/// A deflated data set (PS3.5 A.5: raw deflate, RFC 1951, then at most a padding byte) that
/// stays deflated (metadata, or a bare data set), inflated at most [`MAX_INFLATED_BYTES`] and
/// walked as the explicit VR little endian data set it holds. A UN sequence of undefined length
/// cannot be taken out of the compressed bytes, so it is refused by name.
fn deflated(stream: &[u8], purpose: Purpose) -> Result<Walk, ScanError> {
    let data_set = inflate(stream, MAX_INFLATED_BYTES)?;
    let found = walk(&data_set, Some(EXPLICIT_VR_LE), purpose).map_err(of_inflated)?;
    if let Some(at) = found.implicit_sequences.first() {
        return Err(ScanError::Unreadable(format!(
            "a sequence encoded as UN with undefined length (PS3.5 §6.2.2) at byte {}, which the \
             DICOM parser cannot read and which cannot be taken out of a deflated data set",
            at.start
        )));
    }
    Ok(Walk {
        native: None,
        implicit_sequences: Vec::new(),
    })
}

/// A walk's error in an inflated data set, saying so (its byte offsets are the inflated ones).
fn of_inflated(e: ScanError) -> ScanError {
    let said = |w: String| format!("{w} (in the deflated data set, inflated)");
    match e {
        ScanError::Truncated(w) => ScanError::Truncated(said(w)),
        ScanError::Corrupt(w) => ScanError::Corrupt(said(w)),
        ScanError::Unreadable(w) => ScanError::Unreadable(said(w)),
        too_large @ ScanError::TooLarge(_) => too_large,
    }
}

/// Inflates a raw deflate stream (RFC 1951) to at most `limit` bytes, by flate2 (zlib-rs).
pub(crate) fn inflate(stream: &[u8], limit: usize) -> Result<Vec<u8>, ScanError> {
    use flate2::{Decompress, FlushDecompress, Status};
    let mut z = Decompress::new(false);
    let mut out = Vec::new();
    loop {
        if out.len() > limit {
            return Err(ScanError::TooLarge(format!(
                "the deflated data set inflates past {} MiB ({} of its {} bytes read), more than \
                 cxrflow reads",
                limit >> 20,
                z.total_in(),
                stream.len()
            )));
        }
        out.reserve((limit + 1 - out.len()).min(4 << 20));
        let (read, written) = (z.total_in(), out.len());
        let at = usize::try_from(read).map_or(stream.len(), |r| r.min(stream.len()));
        let status = z
            .decompress_vec(&stream[at..], &mut out, FlushDecompress::None)
            .map_err(|e| {
                ScanError::corrupt_dicom(format!(
                    "the deflated data set is not a deflate stream at byte {at} of {}: {e}",
                    stream.len()
                ))
            })?;
        if status == Status::StreamEnd && out.len() <= limit {
            return Ok(out);
        }
        if z.total_in() == read && out.len() == written {
            return Err(ScanError::Truncated(format!(
                "the deflate stream of the data set ends before its last block ({} bytes read, \
                 {} inflated)",
                stream.len(),
                out.len()
            )));
        }
    }
}

/// Walks the magic and the file meta group; returns the transfer syntax UID it names.
fn meta_group(c: &mut Cursor<'_>) -> Result<String, ScanError> {
    if c.take(4)? != b"DICM" {
        return Err(ScanError::corrupt_dicom(
            "no DICM magic before the file meta group",
        ));
    }
    // As dicom-object reads it: the group length first, then elements until it is used up.
    let (tag, _, len) = c.header()?;
    if tag != tags::FILE_META_INFORMATION_GROUP_LENGTH || len != 4 {
        return Err(ScanError::corrupt_dicom(format!(
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
    Ok(String::from_utf8_lossy(uid).into_owned())
}

/// Data set elements until the end or, at `depth` > 0, the item's delimiter.
fn elements(c: &mut Cursor<'_>, depth: u32) -> Result<(), ScanError> {
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
fn items(c: &mut Cursor<'_>, depth: u32, fragments: bool) -> Result<(), ScanError> {
    if depth > MAX_DEPTH {
        return Err(ScanError::corrupt_dicom(format!(
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
                return Err(ScanError::corrupt_dicom(format!(
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
fn implicit_sequence(c: &mut Cursor<'_>, tag: Tag, at: usize, depth: u32) -> Result<(), ScanError> {
    let unreadable = |why: String| {
        ScanError::Unreadable(format!(
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
        if c.purpose == Purpose::Pixels && matches!(tag.0, 0x0028 | 0x0054 | 0x2050 | 0x7FE0) {
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
    purpose: Purpose,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.end.saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ScanError> {
        let at = self.pos;
        let out = self.bytes.get(at..self.end).and_then(|rest| rest.get(..n));
        let out = out.ok_or_else(|| Truncated(format!("header cut short at byte {at}")))?;
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ScanError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        if self.syntax == Syntax::ExplicitBe {
            out.reverse(); // callers read little endian
        }
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, ScanError> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, ScanError> {
        self.array().map(u32::from_le_bytes)
    }

    /// (tag, VR, length) as dicom-encoding reads them: items and delimiters (group FFFE) and
    /// implicit VR have no VR field; explicit VRs have a 16-bit length but for those below.
    fn header(&mut self) -> Result<(Tag, VR, u32), ScanError> {
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
    fn value(&mut self, tag: Tag, len: u32, unit: u32) -> Result<&'a [u8], ScanError> {
        let (at, left) = (self.pos, self.remaining());
        if len as usize > left {
            return Err(Truncated(format!(
                "{tag} at byte {at} declares {len} bytes, {left} left"
            )));
        }
        if !len.is_multiple_of(unit) {
            return Err(ScanError::corrupt_dicom(format!(
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
        walk: impl FnOnce(&mut Self) -> Result<(), ScanError>,
    ) -> Result<(), ScanError> {
        let (start, outer) = (self.pos, self.end);
        self.end = start + self.value(tag, len, 1)?.len();
        self.pos = start;
        self.defined += 1;
        walk(self)?;
        self.defined -= 1;
        if self.pos != self.end {
            return Err(ScanError::corrupt_dicom(format!(
                "{tag} at byte {start} ends early, at {}",
                self.pos
            )));
        }
        self.end = outer;
        Ok(())
    }
}
