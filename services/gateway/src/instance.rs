//! One received DICOM instance: what the gateway accepts (SOP classes, transfer syntaxes), the
//! metadata a scan event needs read from the data set, and the Part-10 file the blob store keeps.
//! Patient identifiers are read only to be pseudonymised; `Debug` of the metadata hides them.

use std::borrow::Cow;

use chrono::{FixedOffset, NaiveDateTime, NaiveTime, TimeDelta, TimeZone};
use chrono_tz::Tz;
use cxrflow_contracts::OrderPriority;
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject, OpenFileOptions};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use crate::error::{clip, InstanceError};
use crate::values::{parse_da, parse_offset, parse_tm};

pub const VERIFICATION: &str = "1.2.840.10008.1.1";
pub const CR_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.1";
pub const DX_FOR_PRESENTATION: &str = "1.2.840.10008.5.1.4.1.1.1.1";
pub const DX_FOR_PROCESSING: &str = "1.2.840.10008.5.1.4.1.1.1.1.1";

/// The storage SOP classes chest radiographs come in.
pub const STORAGE_SOP_CLASSES: &[&str] =
    &[CR_IMAGE_STORAGE, DX_FOR_PRESENTATION, DX_FOR_PROCESSING];

/// Transfer syntaxes accepted, in order of preference: exactly those preprocess decodes (one
/// list in the contracts crate). Accepting one it cannot decode would only move the failure
/// downstream, after the sender was told "stored"; refusing one it decodes loses the image.
pub use cxrflow_contracts::dicom::{
    is_decodable_transfer_syntax as is_accepted_transfer_syntax, trim_uid,
    DECODABLE_TRANSFER_SYNTAXES as TRANSFER_SYNTAXES,
};

pub fn is_storage_sop_class(uid: &str) -> bool {
    STORAGE_SOP_CLASSES.contains(&trim_uid(uid))
}

/// The modality an accepted storage SOP class implies (the IODs fix it: CR or DX).
pub fn modality_of(sop_class: &str) -> &'static str {
    if trim_uid(sop_class) == CR_IMAGE_STORAGE {
        "CR"
    } else {
        "DX"
    }
}

/// Checks the DICOM UID grammar (PS3.5 §9.1).
pub fn check_uid(uid: &str) -> Result<(), &'static str> {
    if uid.is_empty() {
        return Err("empty");
    }
    if uid.len() > 64 {
        return Err("longer than 64 characters");
    }
    if !uid.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err("only digits and dots are allowed");
    }
    for c in uid.split('.') {
        if c.is_empty() {
            return Err("empty component");
        }
        if c.len() > 1 && c.starts_with('0') {
            return Err("component with a leading zero");
        }
    }
    Ok(())
}

/// What a scan event needs from the data set. `patient_id` and `accession` stay inside the
/// gateway: only their pseudonyms leave it.
#[derive(Clone, PartialEq)]
pub struct InstanceMeta {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub view_position: Option<String>,
    pub patient_age_years: Option<i32>,
    pub patient_sex: Option<String>,
    /// Acquisition time, when the data set states one.
    pub acquired: Option<Acquired>,
    pub priority: OrderPriority,
    pub(crate) patient_id: Option<String>,
    pub(crate) accession: Option<String>,
}

impl std::fmt::Debug for InstanceMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceMeta")
            .field("sop_class_uid", &self.sop_class_uid)
            .field("sop_instance_uid", &self.sop_instance_uid)
            .field("study_instance_uid", &self.study_instance_uid)
            .field("series_instance_uid", &self.series_instance_uid)
            .field("view_position", &self.view_position)
            .field("patient_age_years", &self.patient_age_years)
            .field("patient_sex", &self.patient_sex)
            .field("acquired", &self.acquired)
            .field("priority", &self.priority)
            .field("patient_id", &"****")
            .field("accession", &"****")
            .finish()
    }
}

fn text<'a>(obj: &'a InMemDicomObject, tag: Tag) -> Option<Cow<'a, str>> {
    let e = obj.element_opt(tag).ok().flatten()?;
    let s = e.to_str().ok()?;
    let t = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    if t.is_empty() {
        None
    } else if t.len() == s.len() {
        Some(s)
    } else {
        Some(Cow::Owned(t.to_string()))
    }
}

fn uid(obj: &InMemDicomObject, tag: Tag, attribute: &'static str) -> Result<String, InstanceError> {
    let v = text(obj, tag).ok_or(InstanceError::MissingAttribute { attribute })?;
    let v = trim_uid(&v).to_string();
    check_uid(&v).map_err(|why| InstanceError::UidMalformed {
        attribute,
        value: clip(&v),
        why,
    })?;
    Ok(v)
}

impl InstanceMeta {
    /// Reads the metadata of a CR/DX data set; fails on a missing or malformed UID and on a SOP
    /// class the gateway does not accept.
    pub fn from_dataset(obj: &InMemDicomObject) -> Result<Self, InstanceError> {
        let sop_class_uid = uid(obj, tags::SOP_CLASS_UID, "SOPClassUID")?;
        if !is_storage_sop_class(&sop_class_uid) {
            return Err(InstanceError::SopClassNotSupported {
                sop_class: sop_class_uid,
            });
        }
        let patient_age_years =
            cxrflow_dicom::age::patient_age_years(|tag| text(obj, tag).map(Cow::into_owned));
        Ok(InstanceMeta {
            sop_instance_uid: uid(obj, tags::SOP_INSTANCE_UID, "SOPInstanceUID")?,
            study_instance_uid: uid(obj, tags::STUDY_INSTANCE_UID, "StudyInstanceUID")?,
            series_instance_uid: uid(obj, tags::SERIES_INSTANCE_UID, "SeriesInstanceUID")?,
            sop_class_uid,
            view_position: text(obj, tags::VIEW_POSITION).map(|v| v.to_ascii_uppercase()),
            patient_age_years,
            patient_sex: text(obj, tags::PATIENT_SEX)
                .map(|s| s.to_ascii_uppercase())
                .filter(|s| matches!(s.as_str(), "M" | "F" | "O")),
            acquired: acquisition(obj),
            priority: match text(obj, tags::REQUESTED_PROCEDURE_PRIORITY).as_deref() {
                Some(p) if p.eq_ignore_ascii_case("STAT") => OrderPriority::Stat,
                Some(p) if p.eq_ignore_ascii_case("HIGH") => OrderPriority::Urgent,
                _ => OrderPriority::Routine,
            },
            patient_id: text(obj, tags::PATIENT_ID).map(Cow::into_owned),
            accession: text(obj, tags::ACCESSION_NUMBER).map(Cow::into_owned),
        })
    }
}

/// Parses a data set received over DIMSE in its negotiated transfer syntax. Its declared
/// lengths are checked first (dicom-parser would allocate a hostile one before failing), and a
/// sequence encoded as UN with undefined length (PS3.5 §6.2.2), which dicom-parser misreads, is
/// left out of what is parsed: the metadata read here is never in one. A data set sent in
/// implicit VR under explicit VR little endian is read as implicit VR, as preprocess reads the
/// stored file. The stored file keeps the data set exactly as received.
pub fn read_dataset(bytes: &[u8], ts_uid: &str) -> Result<InMemDicomObject, InstanceError> {
    let supported = |uid| {
        TransferSyntaxRegistry
            .get(uid)
            .ok_or_else(|| InstanceError::TransferSyntaxNotSupported(clip(ts_uid)))
    };
    let unreadable = |e: cxrflow_dicom::ScanError| InstanceError::Unreadable(e.to_string());
    let declared = trim_uid(ts_uid);
    supported(declared)?;
    let uid = cxrflow_dicom::part10::data_set_syntax(declared, bytes).map_err(unreadable)?;
    let ts = supported(uid)?;
    let bytes = cxrflow_dicom::readable_data_set(
        Cow::Borrowed(bytes),
        uid,
        cxrflow_dicom::Purpose::Metadata,
    )
    .map_err(unreadable)?;
    InMemDicomObject::read_dataset_with_ts(&bytes[..], ts)
        .map_err(|e| InstanceError::Unreadable(e.to_string()))
}

/// A Part-10 file (STOW-RS part) parsed: its transfer syntax, its file meta SOP class and
/// instance, and the data set.
pub struct Part10 {
    pub transfer_syntax: String,
    pub media_sop_class: String,
    pub media_sop_instance: String,
    pub dataset: InMemDicomObject,
}

/// Parses a Part-10 file: 128-byte preamble, `DICM`, file meta group, data set.
pub fn read_part10(bytes: &[u8]) -> Result<Part10, InstanceError> {
    if bytes.len() < 132 || &bytes[128..132] != b"DICM" {
        return Err(InstanceError::Unreadable(
            "not a DICOM Part-10 file (no DICM prefix after the 128-byte preamble)".into(),
        ));
    }
    // As preprocess reads it: the shapes of the wild made Part 10 (a meta group without its
    // length, an implicit VR data set under explicit VR), lengths checked, UN sequences of
    // undefined length left out.
    let unreadable = |e: cxrflow_dicom::ScanError| InstanceError::Unreadable(e.to_string());
    let body = cxrflow_dicom::part10::normalize(&bytes[128..]).map_err(unreadable)?;
    let (body, _) =
        cxrflow_dicom::readable(body, cxrflow_dicom::Purpose::Metadata).map_err(unreadable)?;
    let file = OpenFileOptions::new()
        .read_preamble(dicom_object::file::ReadPreamble::Never)
        .from_reader(&body[..])
        .map_err(|e| InstanceError::Unreadable(e.to_string()))?;
    let meta = file.meta();
    let part = Part10 {
        transfer_syntax: trim_uid(meta.transfer_syntax()).to_string(),
        media_sop_class: trim_uid(meta.media_storage_sop_class_uid()).to_string(),
        media_sop_instance: trim_uid(meta.media_storage_sop_instance_uid()).to_string(),
        dataset: InMemDicomObject::new_empty(),
    };
    Ok(Part10 {
        dataset: file.into_inner(),
        ..part
    })
}

/// Builds the Part-10 file of a data set received over DIMSE: preamble, `DICM`, a file meta
/// group naming the negotiated transfer syntax and the sending AE, then the data set bytes
/// exactly as received (never re-encoded).
pub fn part10_file(
    meta: &InstanceMeta,
    ts_uid: &str,
    calling_ae: &str,
    dataset: &[u8],
) -> Result<Vec<u8>, InstanceError> {
    let table = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(meta.sop_class_uid.as_str())
        .media_storage_sop_instance_uid(meta.sop_instance_uid.as_str())
        .transfer_syntax(trim_uid(ts_uid))
        .source_application_entity_title(calling_ae)
        .build()
        .map_err(|e| InstanceError::Unreadable(format!("file meta: {e}")))?;
    let mut out = Vec::with_capacity(dataset.len() + 512);
    out.extend_from_slice(&[0u8; 128]);
    out.extend_from_slice(b"DICM");
    table
        .write(&mut out)
        .map_err(|e| InstanceError::Unreadable(format!("file meta: {e}")))?;
    out.extend_from_slice(dataset);
    Ok(out)
}

/// An acquisition time as the data set states it: a local date and time, and its offset from
/// UTC where the data set gives one (TimezoneOffsetFromUTC, or the DT value's own suffix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acquired {
    pub local: NaiveDateTime,
    pub offset: Option<FixedOffset>,
}

impl Acquired {
    /// Milliseconds since the epoch: by the data set's own offset, else in `zone`, the zone
    /// the site's modality clocks keep (DICOM dates and times are local; most modalities send
    /// no offset). A local time the zone skips (clocks going forward) is read with the offset
    /// before the change; one it repeats (clocks going back), as the earlier.
    pub fn millis(&self, zone: Tz) -> Option<i64> {
        if let Some(o) = self.offset {
            return o
                .from_local_datetime(&self.local)
                .single()
                .map(|t| t.timestamp_millis());
        }
        match zone.from_local_datetime(&self.local).earliest() {
            Some(t) => Some(t.timestamp_millis()),
            None => {
                let hour = TimeDelta::hours(1);
                let before = zone.from_local_datetime(&(self.local - hour)).earliest()?;
                Some((before + hour).timestamp_millis())
            }
        }
    }
}

/// The acquisition time, from (in order) AcquisitionDateTime, AcquisitionDate+Time,
/// ContentDate+Time, StudyDate+Time, with the data set's offset from UTC if it states one.
fn acquisition(obj: &InMemDicomObject) -> Option<Acquired> {
    let tz = text(obj, tags::TIMEZONE_OFFSET_FROM_UTC).and_then(|o| parse_offset(&o));
    if let Some(dt) = text(obj, tags::ACQUISITION_DATE_TIME) {
        let (body, off) = match dt.find(['+', '-']) {
            Some(i) => (&dt[..i], parse_offset(&dt[i..])),
            None => (&dt[..], None),
        };
        if body.len() >= 8 {
            if let Some(date) = parse_da(&body[..8]) {
                let time = if body.len() > 8 {
                    parse_tm(&body[8..])
                } else {
                    Some(NaiveTime::MIN)
                };
                if let Some(t) = time {
                    return Some(Acquired {
                        local: date.and_time(t),
                        offset: off.or(tz),
                    });
                }
            }
        }
    }
    for (d, t) in [
        (tags::ACQUISITION_DATE, tags::ACQUISITION_TIME),
        (tags::CONTENT_DATE, tags::CONTENT_TIME),
        (tags::STUDY_DATE, tags::STUDY_TIME),
    ] {
        if let Some(date) = text(obj, d).and_then(|d| parse_da(&d)) {
            let time = text(obj, t)
                .and_then(|t| parse_tm(&t))
                .unwrap_or(NaiveTime::MIN);
            return Some(Acquired {
                local: date.and_time(time),
                offset: tz,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, PrimitiveValue, VR};

    fn put(obj: &mut InMemDicomObject, tag: Tag, vr: VR, v: &str) {
        obj.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
    }

    fn dataset() -> InMemDicomObject {
        let mut o = InMemDicomObject::new_empty();
        put(
            &mut o,
            tags::SOP_CLASS_UID,
            VR::UI,
            "1.2.840.10008.5.1.4.1.1.1.1\0",
        );
        put(&mut o, tags::SOP_INSTANCE_UID, VR::UI, "1.2.3.4.5.6");
        put(&mut o, tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3.4");
        put(&mut o, tags::SERIES_INSTANCE_UID, VR::UI, "1.2.3.4.5");
        put(&mut o, tags::PATIENT_ID, VR::LO, "MRN-4711");
        put(&mut o, tags::PATIENT_BIRTH_DATE, VR::DA, "19600315");
        put(&mut o, tags::PATIENT_SEX, VR::CS, "F ");
        put(&mut o, tags::VIEW_POSITION, VR::CS, "pa");
        put(&mut o, tags::ACQUISITION_DATE, VR::DA, "20240314");
        put(&mut o, tags::ACQUISITION_TIME, VR::TM, "101530.25");
        put(&mut o, tags::TIMEZONE_OFFSET_FROM_UTC, VR::SH, "+0100");
        put(&mut o, tags::REQUESTED_PROCEDURE_PRIORITY, VR::SH, "STAT");
        o
    }

    /// Deflate is on the shared list (preprocess decodes it), so the gateway must read a deflated
    /// data set's metadata, not refuse it or fail after accepting it.
    #[test]
    fn accepts_and_reads_a_deflated_data_set() {
        use dicom_transfer_syntax_registry::entries::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN as DEFLATED;
        assert!(is_accepted_transfer_syntax("1.2.840.10008.1.2.1.99\0"));
        assert!(is_accepted_transfer_syntax("1.2.840.10008.1.2.4.80"));
        assert!(!is_accepted_transfer_syntax("1.2.840.10008.1.2.4.100"));
        let mut bytes = Vec::new();
        dataset()
            .write_dataset_with_ts(&mut bytes, &DEFLATED.erased())
            .unwrap();
        let read = read_dataset(&bytes, "1.2.840.10008.1.2.1.99").unwrap();
        let m = InstanceMeta::from_dataset(&read).unwrap();
        assert_eq!(m.study_instance_uid, "1.2.3.4");
        assert_eq!(m.view_position.as_deref(), Some("PA"));
    }

    /// Without an offset in the data set, the site's zone decides, daylight saving included.
    #[test]
    fn local_times_are_read_in_the_sites_zone() {
        let at = |s: &str| Acquired {
            local: NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap(),
            offset: None,
        };
        let ms = |s: &str| {
            Some(
                chrono::DateTime::parse_from_rfc3339(s)
                    .unwrap()
                    .timestamp_millis(),
            )
        };
        let ny = Tz::America__New_York;
        let cases = [
            ("2024-01-15 10:00:00", ny, "2024-01-15T15:00:00Z"), // EST, -5
            ("2024-07-15 10:00:00", ny, "2024-07-15T14:00:00Z"), // EDT, -4
            (
                "2024-07-15 10:00:00",
                Tz::Asia__Kolkata,
                "2024-07-15T04:30:00Z",
            ),
            ("2024-07-15 10:00:00", Tz::UTC, "2024-07-15T10:00:00Z"),
            // 02:30 on 2024-03-10 does not exist in New York: read at EST.
            ("2024-03-10 02:30:00", ny, "2024-03-10T07:30:00Z"),
            // 01:30 on 2024-11-03 comes twice there: the earlier, at EDT.
            ("2024-11-03 01:30:00", ny, "2024-11-03T05:30:00Z"),
        ];
        for (local, zone, utc) in cases {
            assert_eq!(at(local).millis(zone), ms(utc), "{local} in {zone}");
        }
    }

    #[test]
    fn reads_the_metadata_a_scan_event_needs() {
        let m = InstanceMeta::from_dataset(&dataset()).unwrap();
        assert_eq!(m.sop_class_uid, DX_FOR_PRESENTATION);
        assert_eq!(m.study_instance_uid, "1.2.3.4");
        assert_eq!(m.view_position.as_deref(), Some("PA"));
        assert_eq!(m.patient_sex.as_deref(), Some("F"));
        assert_eq!(
            m.patient_age_years,
            Some(63),
            "from birth date at acquisition"
        );
        assert_eq!(m.priority, OrderPriority::Stat);
        // 2024-03-14T10:15:30.25+01:00, whatever zone the gateway keeps.
        let acquired = m.acquired.unwrap();
        for zone in [Tz::UTC, Tz::America__New_York] {
            assert_eq!(acquired.millis(zone), Some(1_710_407_730_250));
        }
        let shown = format!("{m:?}");
        assert!(!shown.contains("MRN-4711"), "{shown}");
        assert_eq!(modality_of(&m.sop_class_uid), "DX");
    }

    #[test]
    fn refuses_other_sop_classes_and_bad_uids() {
        let mut o = dataset();
        put(
            &mut o,
            tags::SOP_CLASS_UID,
            VR::UI,
            "1.2.840.10008.5.1.4.1.1.2",
        );
        assert!(matches!(
            InstanceMeta::from_dataset(&o),
            Err(InstanceError::SopClassNotSupported { .. })
        ));
        let mut o = dataset();
        put(&mut o, tags::STUDY_INSTANCE_UID, VR::UI, "1.02.3");
        assert!(matches!(
            InstanceMeta::from_dataset(&o),
            Err(InstanceError::UidMalformed { .. })
        ));
        let mut o = dataset();
        o.remove_element(tags::SERIES_INSTANCE_UID);
        assert!(matches!(
            InstanceMeta::from_dataset(&o),
            Err(InstanceError::MissingAttribute { .. })
        ));
    }

    #[test]
    fn part10_round_trips_with_the_data_set_untouched() {
        let obj = dataset();
        let ts = dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased();
        let mut bytes = Vec::new();
        obj.write_dataset_with_ts(&mut bytes, &ts).unwrap();
        let meta = InstanceMeta::from_dataset(&obj).unwrap();
        let file = part10_file(&meta, "1.2.840.10008.1.2.1\0", "MODALITY", &bytes).unwrap();
        assert!(file.ends_with(&bytes));
        let back = read_part10(&file).unwrap();
        assert_eq!(back.transfer_syntax, "1.2.840.10008.1.2.1");
        assert_eq!(back.media_sop_class, DX_FOR_PRESENTATION);
        assert_eq!(back.media_sop_instance, "1.2.3.4.5.6");
        assert_eq!(InstanceMeta::from_dataset(&back.dataset).unwrap(), meta);
        assert!(read_part10(b"not dicom").is_err());
        assert!(read_dataset(&bytes, "1.2.840.10008.1.2.1").is_ok());
    }

    #[test]
    fn an_implicit_vr_data_set_under_explicit_vr_is_read_as_implicit() {
        let implicit = TransferSyntaxRegistry.get("1.2.840.10008.1.2").unwrap();
        let obj = dataset();
        let mut bytes = Vec::new();
        obj.write_dataset_with_ts(&mut bytes, implicit).unwrap();
        let want = InstanceMeta::from_dataset(&obj).unwrap();
        // Over DIMSE, under an explicit VR presentation context.
        let read = read_dataset(&bytes, "1.2.840.10008.1.2.1").unwrap();
        assert_eq!(InstanceMeta::from_dataset(&read).unwrap(), want);
        // As a Part 10 file whose meta group says explicit VR (STOW-RS, or the file stored above).
        let file = part10_file(&want, "1.2.840.10008.1.2.1", "MODALITY", &bytes).unwrap();
        let back = read_part10(&file).unwrap();
        assert_eq!(InstanceMeta::from_dataset(&back.dataset).unwrap(), want);
        assert_eq!(back.transfer_syntax, "1.2.840.10008.1.2");
    }

    #[test]
    fn a_hostile_declared_length_is_refused_before_dicom_parser_allocates_it() {
        let ts = TransferSyntaxRegistry.get("1.2.840.10008.1.2.1").unwrap();
        let mut bytes = Vec::new();
        dataset().write_dataset_with_ts(&mut bytes, ts).unwrap();
        // (0042,0011) Encapsulated Document, OB, claiming 3 GiB in a data set of a few hundred
        // bytes: dicom-parser would zero-fill the 3 GiB before it found them missing.
        bytes.extend([0x42, 0x00, 0x11, 0x00, b'O', b'B', 0, 0]);
        bytes.extend((3u32 << 30).to_le_bytes());
        let started = std::time::Instant::now();
        let e = read_dataset(&bytes, "1.2.840.10008.1.2.1").unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_millis(200));
        assert!(
            matches!(&e, InstanceError::Unreadable(w) if w.contains("declares 3221225472 bytes")),
            "{e}"
        );
    }
}
