//! Brings the DICOM byte streams found in the wild to one shape before anything parses them:
//! `DICM`, a file meta group that opens with its group length, then the data set. Accepted:
//! a Part 10 file with or without its 128-byte preamble; a meta group without the `DICM` magic
//! (pydicom writes one when told to keep a file "like the original"); a meta group without its
//! group length element (older routers); and a bare data set without any meta information
//! (older modalities, `dcmconv -F`), whose transfer syntax is implicit VR little endian — the
//! standard's default — unless its first element carries an explicit VR (little or big
//! endian); and a data set written in implicit VR under a meta group that declares explicit VR
//! little endian. The length pre-scan ([`crate::readable`]) then runs on the result, so a
//! hostile declared length is refused as before.

use std::borrow::Cow;

use crate::{ScanError, DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_BE, EXPLICIT_VR_LE, IMPLICIT_VR_LE};

/// Whether `bytes` look like DICOM without the `DICM` magic: a meta group or a data set whose
/// first element is in the identifying group (0008), little endian, or a data set in explicit
/// VR big endian ([`big_endian_bare`]).
pub fn looks_like_bare_dicom(bytes: &[u8]) -> bool {
    (matches!(bytes.get(0..2), Some([0x02, 0x00]) | Some([0x08, 0x00]))
        && bytes.len() >= 8
        && u16::from_le_bytes([bytes[2], bytes[3]]) < 0x0100)
        || big_endian_bare(bytes)
}

/// A bare data set in explicit VR big endian (the retired syntax some older modalities wrote):
/// its first element is in group 0008, written big endian, with a VR code.
fn big_endian_bare(bytes: &[u8]) -> bool {
    bytes.len() >= 8
        && bytes[0..2] == [0x00, 0x08]
        && u16::from_be_bytes([bytes[2], bytes[3]]) < 0x0100
        && is_vr(&bytes[4..6])
}

/// Whether the two bytes are a VR code (an explicit VR data set).
fn is_vr(b: &[u8]) -> bool {
    b.len() == 2
        && b.iter().all(u8::is_ascii_uppercase)
        && dicom_core::VR::from_binary([b[0], b[1]]).is_some()
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// One explicit VR little endian element header at `at`: (group, element, value offset, length).
fn explicit_header(b: &[u8], at: usize) -> Option<(u16, u16, usize, usize)> {
    let (group, element) = (le16(b, at)?, le16(b, at + 2)?);
    let vr = b.get(at + 4..at + 6)?;
    if is_long_vr(vr) {
        Some((group, element, at + 12, le32(b, at + 8)? as usize))
    } else {
        Some((group, element, at + 8, le16(b, at + 6)? as usize))
    }
}

/// VRs with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2).
fn is_long_vr(vr: &[u8]) -> bool {
    matches!(
        vr,
        b"OB"
            | b"OD"
            | b"OF"
            | b"OL"
            | b"OV"
            | b"OW"
            | b"SQ"
            | b"SV"
            | b"UC"
            | b"UN"
            | b"UR"
            | b"UT"
            | b"UV"
    )
}

fn element(tag: (u16, u16), vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
    let mut v = value.to_vec();
    if v.len() % 2 == 1 {
        v.push(if vr == b"UI" { 0 } else { b' ' });
    }
    let mut out = Vec::with_capacity(12 + v.len());
    out.extend(tag.0.to_le_bytes());
    out.extend(tag.1.to_le_bytes());
    out.extend(vr);
    if vr == b"OB" {
        out.extend([0, 0]);
        out.extend((v.len() as u32).to_le_bytes());
    } else {
        out.extend((v.len() as u16).to_le_bytes());
    }
    out.extend(v);
    out
}

/// `DICM` + a meta group built from `elements` (group length first) + `rest`.
fn with_meta(elements: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 12 + elements.len() + rest.len());
    out.extend(b"DICM");
    out.extend(element((0x0002, 0x0000), b"UL", &[0; 4])[..8].iter());
    out.extend((elements.len() as u32).to_le_bytes());
    out.extend(elements);
    out.extend(rest);
    out
}

/// How a bare data set is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bare {
    ImplicitLe,
    ExplicitLe,
    ExplicitBe,
}

/// One explicit VR big endian element header at `at`: (group, element, value offset, length).
fn explicit_be_header(b: &[u8], at: usize) -> Option<(u16, u16, usize, usize)> {
    let be16 = |i: usize| Some(u16::from_be_bytes(b.get(i..i + 2)?.try_into().ok()?));
    let be32 = |i: usize| Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?));
    let (group, element) = (be16(at)?, be16(at + 2)?);
    let vr = b.get(at + 4..at + 6)?;
    if is_long_vr(vr) {
        Some((group, element, at + 12, be32(at + 8)? as usize))
    } else {
        Some((group, element, at + 8, usize::from(be16(at + 6)?)))
    }
}

/// The value of top-level element `tag` of a bare data set (the first few elements only).
fn dataset_value(b: &[u8], encoding: Bare, tag: (u16, u16)) -> Option<&[u8]> {
    let mut at = 0;
    for _ in 0..64 {
        let (group, elem, start, len) = match encoding {
            Bare::ExplicitLe => explicit_header(b, at)?,
            Bare::ExplicitBe => explicit_be_header(b, at)?,
            Bare::ImplicitLe => (
                le16(b, at)?,
                le16(b, at + 2)?,
                at + 8,
                le32(b, at + 4)? as usize,
            ),
        };
        if len == u32::MAX as usize || (group, elem) > tag {
            return None;
        }
        let value = b.get(start..start.checked_add(len)?)?;
        if (group, elem) == tag {
            return Some(value);
        }
        at = start + len;
    }
    None
}

fn uid(value: &[u8]) -> Vec<u8> {
    let s = String::from_utf8_lossy(value);
    s.trim_end_matches(['\0', ' ']).as_bytes().to_vec()
}

/// The Part 10 body (from `DICM` on, meta group with its group length) of any accepted shape.
pub fn normalize(bytes: &[u8]) -> Result<Cow<'_, [u8]>, ScanError> {
    let body: Cow<'_, [u8]> = if bytes.get(128..132) == Some(b"DICM") {
        Cow::Borrowed(&bytes[128..])
    } else if bytes.starts_with(b"DICM") {
        Cow::Borrowed(bytes)
    } else if bytes.starts_with(&[0x02, 0x00]) {
        // A meta group without the magic.
        let mut v = b"DICM".to_vec();
        v.extend(bytes);
        Cow::Owned(v)
    } else if looks_like_bare_dicom(bytes) {
        return bare_data_set(bytes).map(Cow::Owned);
    } else {
        return Ok(Cow::Borrowed(bytes));
    };
    with_group_length(body).and_then(with_its_own_vr_encoding)
}

/// A data set whose meta group declares explicit VR little endian but which is written in
/// implicit VR: its first element has no VR code where explicit VR puts one (or one its tag
/// cannot have). pydicom reads such files with a warning ("Expected explicit VR, but found
/// implicit VR"), dicom-rs has an opt-in decoder for them (`flexible_decoding`, not in 0.10),
/// DCMTK refuses them. For the native syntax the meta group is corrected to implicit VR little
/// endian, which changes no sample (both are little endian); the length pre-scan then walks the
/// whole data set as implicit VR, so a wrong guess is refused, not decoded. A compressed syntax
/// requires explicit VR, and no syntax says "implicit VR, encapsulated": refused by name.
fn with_its_own_vr_encoding(body: Cow<'_, [u8]>) -> Result<Cow<'_, [u8]>, ScanError> {
    let Some((meta, data_set, syntax)) = meta_group(&body) else {
        return Ok(body); // the length pre-scan names what is wrong with it
    };
    let declared = String::from_utf8_lossy(&uid(syntax)).into_owned();
    if data_set_syntax(&declared, &body[data_set..])? == declared {
        return Ok(body);
    }
    Ok(
        match with_syntax(&body, meta, IMPLICIT_VR_LE, &body[data_set..]) {
            Some(made) => Cow::Owned(made),
            None => body, // walked by meta_group already: not reached
        },
    )
}

/// `body`'s meta group (its elements after the group length: `meta`) naming transfer syntax
/// `syntax` instead of its own, followed by `data_set`.
fn with_syntax(
    body: &[u8],
    meta: std::ops::Range<usize>,
    syntax: &str,
    data_set: &[u8],
) -> Option<Vec<u8>> {
    let mut elements = Vec::with_capacity(meta.len());
    let mut at = meta.start;
    while at < meta.end {
        let (group, element_no, start, len) = explicit_header(body, at)?;
        if (group, element_no) == (0x0002, 0x0010) {
            elements.extend(element((0x0002, 0x0010), b"UI", syntax.as_bytes()));
        } else {
            elements.extend_from_slice(&body[at..start + len]);
        }
        at = start + len;
    }
    Some(with_meta(&elements, data_set))
}

/// A Part 10 body whose data set is deflated, with the data set inflated (at most
/// [`crate::MAX_INFLATED_BYTES`]) under a meta group naming explicit VR little endian, the
/// syntax the inflated bytes are in; `None` for any other body.
pub(crate) fn inflated(body: &[u8]) -> Result<Option<Vec<u8>>, ScanError> {
    let Some((meta, data_set, syntax)) = meta_group(body) else {
        return Ok(None);
    };
    if uid(syntax) != DEFLATED_EXPLICIT_VR_LE.as_bytes() {
        return Ok(None);
    }
    let data_set = crate::inflate(&body[data_set..], crate::MAX_INFLATED_BYTES)?;
    Ok(with_syntax(body, meta, EXPLICIT_VR_LE, &data_set))
}

/// The transfer syntax a data set declared in `declared` is actually written in: implicit VR
/// little endian when it declares explicit VR little endian but [`written_in_implicit_vr`], else
/// the declared one. A compressed syntax (explicit VR little endian by definition) over a data
/// set written in implicit VR is refused: no syntax says "implicit VR, encapsulated".
pub fn data_set_syntax<'a>(declared: &'a str, data_set: &[u8]) -> Result<&'a str, ScanError> {
    let explicit_le = !matches!(
        declared,
        IMPLICIT_VR_LE | EXPLICIT_VR_BE | DEFLATED_EXPLICIT_VR_LE
    );
    if !explicit_le || !written_in_implicit_vr(data_set) {
        return Ok(declared);
    }
    if declared != EXPLICIT_VR_LE {
        return Err(ScanError::corrupt_dicom(format!(
            "the data set is written in implicit VR, which transfer syntax {declared} does not \
             allow (it requires explicit VR little endian)"
        )));
    }
    Ok(IMPLICIT_VR_LE)
}

/// In a body from `DICM` on whose meta group opens with its length: the meta elements after
/// the group length, where the data set starts, and the transfer syntax UID's value. None when
/// the group cannot be walked.
fn meta_group(body: &[u8]) -> Option<(std::ops::Range<usize>, usize, &[u8])> {
    if (le16(body, 4)?, le16(body, 6)?) != (0x0002, 0x0000) {
        return None;
    }
    let (_, _, start, len) = explicit_header(body, 4)?;
    let end = start.checked_add(len)?;
    let data_set = end.checked_add(le32(body, start)? as usize)?;
    let (mut at, mut syntax) = (end, None);
    while at < data_set {
        let (group, element_no, start, len) = explicit_header(body, at)?;
        let value = body.get(start..start.checked_add(len)?)?;
        if (group, element_no) == (0x0002, 0x0010) {
            syntax = Some(value);
        }
        at = start + len;
    }
    (at == data_set && data_set < body.len()).then_some((end..data_set, data_set, syntax?))
}

/// Whether a data set's first element, in an explicit VR syntax, carries no VR code, or one
/// the standard dictionary says its tag cannot have.
fn written_in_implicit_vr(data_set: &[u8]) -> bool {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
    let (Some(group), Some(element_no), Some(code)) =
        (le16(data_set, 0), le16(data_set, 2), data_set.get(4..6))
    else {
        return false;
    };
    let Some(vr) = is_vr(code)
        .then(|| dicom_core::VR::from_binary([code[0], code[1]]))
        .flatten()
    else {
        return true;
    };
    let tag = dicom_core::Tag(group, element_no);
    match dicom_dictionary_std::StandardDataDictionary
        .by_tag(tag)
        .map(|e| e.vr())
    {
        Some(VirtualVr::Exact(known)) => known != vr && vr != dicom_core::VR::UN,
        _ => false, // private, unknown, or a tag of more than one VR: no contradiction
    }
}

/// Inserts the meta group's length when the group opens without it.
fn with_group_length(body: Cow<'_, [u8]>) -> Result<Cow<'_, [u8]>, ScanError> {
    match (le16(&body, 4), le16(&body, 6)) {
        (Some(0x0002), Some(0x0000)) | (None, _) | (_, None) => return Ok(body),
        (Some(0x0002), _) => {}
        _ => return Ok(body),
    }
    let mut at = 4;
    while le16(&body, at) == Some(0x0002) {
        let (_, _, start, len) = explicit_header(&body, at).ok_or_else(|| {
            ScanError::corrupt_dicom(
                "file meta group without its length ends inside an element header",
            )
        })?;
        at = start
            .checked_add(len)
            .filter(|end| *end <= body.len())
            .ok_or_else(|| {
                ScanError::Truncated(format!(
                    "file meta element at {at} declares {len} bytes past the end of the file"
                ))
            })?;
    }
    Ok(Cow::Owned(with_meta(&body[4..at], &body[at..])))
}

/// A data set without any meta information: implicit VR little endian unless its first
/// element names a VR; the SOP class and instance UIDs of the meta group come from it.
fn bare_data_set(b: &[u8]) -> Result<Vec<u8>, ScanError> {
    let encoding = if big_endian_bare(b) {
        Bare::ExplicitBe
    } else if is_vr(b.get(4..6).unwrap_or_default()) {
        Bare::ExplicitLe
    } else {
        Bare::ImplicitLe
    };
    let need = |tag: (u16, u16), name: &str| {
        dataset_value(b, encoding, tag).map(uid).ok_or_else(|| {
            ScanError::corrupt_dicom(format!(
                "a data set without file meta information and without its {name}"
            ))
        })
    };
    let class = need((0x0008, 0x0016), "SOP Class UID (0008,0016)")?;
    let instance = need((0x0008, 0x0018), "SOP Instance UID (0008,0018)")?;
    let syntax = match encoding {
        Bare::ImplicitLe => IMPLICIT_VR_LE,
        Bare::ExplicitLe => EXPLICIT_VR_LE,
        Bare::ExplicitBe => EXPLICIT_VR_BE,
    };
    let mut meta = element((0x0002, 0x0001), b"OB", &[0, 1]);
    meta.extend(element((0x0002, 0x0002), b"UI", &class));
    meta.extend(element((0x0002, 0x0003), b"UI", &instance));
    meta.extend(element((0x0002, 0x0010), b"UI", syntax.as_bytes()));
    Ok(with_meta(&meta, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn implicit(tag: (u16, u16), value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(tag.0.to_le_bytes());
        out.extend(tag.1.to_le_bytes());
        out.extend((value.len() as u32).to_le_bytes());
        out.extend(value);
        out
    }

    #[test]
    fn a_bare_implicit_data_set_gets_a_meta_group_from_its_own_uids() {
        let mut ds = implicit((0x0008, 0x0016), b"1.2.840.10008.5.1.4.1.1.1\0");
        ds.extend(implicit((0x0008, 0x0018), b"1.2.3.4"));
        ds.extend(implicit((0x0008, 0x0060), b"CR"));
        assert!(looks_like_bare_dicom(&ds));
        let body = normalize(&ds).unwrap();
        assert!(body.starts_with(b"DICM"));
        assert_eq!(le16(&body, 4), Some(0x0002));
        assert_eq!(le16(&body, 6), Some(0x0000), "group length first");
        let len = le32(&body, 12).unwrap() as usize;
        assert!(body.ends_with(&ds), "the data set follows unchanged");
        assert_eq!(16 + len + ds.len(), body.len());
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.contains("1.2.840.10008.1.2\0"),
            "implicit VR little endian"
        );
    }

    #[test]
    fn a_bare_data_set_without_its_uids_is_refused_by_name() {
        let ds = implicit((0x0008, 0x0060), b"CR");
        let err = normalize(&ds).unwrap_err();
        assert!(err.to_string().contains("SOP Class UID"), "{err}");
    }

    #[test]
    fn a_meta_group_without_its_length_gets_one_and_a_hostile_length_is_refused() {
        let mut meta = element((0x0002, 0x0001), b"OB", &[0, 1]);
        meta.extend(element((0x0002, 0x0010), b"UI", EXPLICIT_VR_LE.as_bytes()));
        let mut file = b"DICM".to_vec();
        file.extend(&meta);
        file.extend(element((0x0008, 0x0060), b"CS", b"CR"));
        let body = normalize(&file).unwrap();
        assert_eq!((le16(&body, 4), le16(&body, 6)), (Some(2), Some(0)));
        assert_eq!(le32(&body, 12), Some(meta.len() as u32));

        let mut hostile = b"DICM".to_vec();
        hostile.extend([0x02, 0x00, 0x10, 0x00, b'U', b'I', 0xff, 0xff]);
        assert!(matches!(normalize(&hostile), Err(ScanError::Truncated(_))));
    }

    #[test]
    fn the_first_elements_vr_code_says_how_the_data_set_is_written() {
        let explicit = element((0x0008, 0x0016), b"UI", b"1.2.840.10008.5.1.4.1.1.1");
        assert!(!written_in_implicit_vr(&explicit));
        let plain = implicit((0x0008, 0x0016), b"1.2.840.10008.5.1.4.1.1.1\0");
        assert!(written_in_implicit_vr(&plain));
        // An implicit length whose low bytes spell a VR code ("UI", 0x4955) the tag cannot
        // have (Image Type is CS): implicit. One its tag can have is taken for explicit, and a
        // wrong guess is refused by the length pre-scan, never decoded.
        let mut spelled = implicit((0x0008, 0x0008), &[b'X'; 0x4955]);
        assert!(written_in_implicit_vr(&spelled));
        spelled[0..4].copy_from_slice(&[0x08, 0x00, 0x16, 0x00]);
        assert!(!written_in_implicit_vr(&spelled));
        assert!(!written_in_implicit_vr(&[0x08, 0x00]));
    }

    #[test]
    fn an_implicit_data_set_under_an_explicit_meta_group_gets_its_syntax_corrected() {
        let data_set = [
            implicit((0x0008, 0x0016), b"1.2.840.10008.5.1.4.1.1.1\0"),
            implicit((0x0008, 0x0018), b"2.25.7"),
        ]
        .concat();
        let meta = |syntax: &str| {
            let mut m = element((0x0002, 0x0001), b"OB", &[0, 1]);
            m.extend(element((0x0002, 0x0010), b"UI", syntax.as_bytes()));
            with_meta(&m, &data_set)
        };
        let declared = meta(EXPLICIT_VR_LE);
        let fixed = normalize(&declared).expect("corrected");
        assert_eq!(&fixed[..], &meta(IMPLICIT_VR_LE)[..]);
        let consistent = meta(IMPLICIT_VR_LE);
        assert!(matches!(normalize(&consistent), Ok(Cow::Borrowed(_))));
        let jpeg = normalize(&meta("1.2.840.10008.1.2.4.50")).unwrap_err();
        assert!(matches!(jpeg, ScanError::Corrupt(_)), "{jpeg}");
        assert!(
            jpeg.to_string().contains("written in implicit VR"),
            "{jpeg}"
        );
    }

    #[test]
    fn other_bytes_pass_through_untouched() {
        assert!(!looks_like_bare_dicom(b"\x89PNG\r\n\x1a\n"));
        assert!(matches!(normalize(b"hello"), Ok(Cow::Borrowed(_))));
    }
}
