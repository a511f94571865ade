//! The PACS as a DICOM Storage SCP: one association per SR, C-STORE as an SCU (dicom-ul),
//! released after the response. Blocking dicom-ul calls run on the blocking pool.
//!
//! Answers: success and warnings (0x0000, 0xB000, 0xB006, 0xB007) are delivered; "out of
//! resources" (0xA7xx) and a transient association rejection, a refused connection, a timeout
//! or an abort are retried; any other failure status, a permanent association rejection or a
//! PACS that accepts no presentation context for Comprehensive SR is a refusal.

use std::time::Duration;

use dicom_core::{dicom_value, DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_ul::association::Error as UlError;
use dicom_ul::pdu::{
    AssociationRJResult, PDataValue, PDataValueType, PresentationContextResultReason,
};
use dicom_ul::{ClientAssociationOptions, Pdu};
use std::io::Write;

use super::{clip, Destination, Outcome};
use crate::error::ResultsError;
use crate::sr::{COMPREHENSIVE_SR, EXPLICIT_VR_LE, IMPLICIT_VR_LE};

const C_STORE_RQ: u16 = 0x0001;
const C_STORE_RSP: u16 = 0x8001;

/// `--dicom-destination AE@host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DicomAddress {
    pub called_ae: String,
    pub addr: String,
}

impl std::str::FromStr for DicomAddress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ae, addr) = s
            .split_once('@')
            .ok_or_else(|| format!("expected AE@host:port, got {s:?}"))?;
        if ae.is_empty() || ae.len() > 16 || !ae.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
            return Err(format!(
                "AE title must be 1..16 printable characters: {ae:?}"
            ));
        }
        if !addr.contains(':') {
            return Err(format!(
                "expected host:port after the AE title, got {addr:?}"
            ));
        }
        Ok(DicomAddress {
            called_ae: ae.to_string(),
            addr: addr.to_string(),
        })
    }
}

impl std::fmt::Display for DicomAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.called_ae, self.addr)
    }
}

/// C-STORE over TLS: the client configuration and the name the PACS certificate must carry.
#[derive(Clone)]
pub struct DicomTls {
    pub config: std::sync::Arc<rustls::ClientConfig>,
    pub server_name: String,
}

pub struct DicomStore {
    pub address: DicomAddress,
    pub tls: Option<DicomTls>,
    pub calling_ae: String,
    pub timeout: Duration,
}

impl Destination for DicomStore {
    fn name(&self) -> &'static str {
        "dicom"
    }

    fn refused(&self, answer: String) -> ResultsError {
        ResultsError::DicomRefused(answer)
    }

    fn describe(&self) -> String {
        format!(
            "C-STORE to {} as {}{}",
            self.address,
            self.calling_ae,
            if self.tls.is_some() { " over TLS" } else { "" }
        )
    }

    async fn deliver(&self, body: &[u8]) -> Outcome {
        let address = self.address.clone();
        let calling = self.calling_ae.clone();
        let timeout = self.timeout;
        let tls = self.tls.clone();
        let body = body.to_vec();
        tokio::task::spawn_blocking(move || store(&address, tls, &calling, timeout, &body))
            .await
            .unwrap_or_else(|e| Outcome::Unavailable(format!("C-STORE task failed: {e}")))
    }
}

fn ul_outcome(e: UlError) -> Outcome {
    match e {
        UlError::Rejected { association_rj, .. } => {
            let what = format!("association rejected: {association_rj:?}");
            if association_rj.result == AssociationRJResult::Permanent {
                Outcome::Refused(what)
            } else {
                Outcome::Unavailable(what)
            }
        }
        UlError::NoAcceptedPresentationContexts { .. } => {
            Outcome::Refused("no presentation context accepted for Comprehensive SR".to_string())
        }
        other => Outcome::Unavailable(clip(&other.to_string(), 500)),
    }
}

fn command(sop_instance: &str) -> Result<Vec<u8>, String> {
    let el = |tag, vr, v: PrimitiveValue| DataElement::new(tag, vr, v);
    let obj = InMemDicomObject::command_from_element_iter([
        el(
            tags::AFFECTED_SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from(padded(COMPREHENSIVE_SR)),
        ),
        el(tags::COMMAND_FIELD, VR::US, dicom_value!(U16, [C_STORE_RQ])),
        el(tags::MESSAGE_ID, VR::US, dicom_value!(U16, [1])),
        el(tags::PRIORITY, VR::US, dicom_value!(U16, [0])),
        el(
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            dicom_value!(U16, [0x0000]),
        ),
        el(
            tags::AFFECTED_SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(padded(sop_instance)),
        ),
    ]);
    let ts = dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased();
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, &ts)
        .map_err(|e| format!("encoding the C-STORE command: {e}"))?;
    Ok(out)
}

fn padded(uid: &str) -> String {
    let mut s = uid.to_string();
    if s.len() % 2 == 1 {
        s.push('\0');
    }
    s
}

/// The status of a C-STORE-RSP command set.
fn response_status(bytes: &[u8]) -> Result<(u16, Option<String>), String> {
    let ts = dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased();
    let obj = InMemDicomObject::read_dataset_with_ts(bytes, &ts)
        .map_err(|e| format!("unreadable response: {e}"))?;
    let field = obj
        .element(tags::COMMAND_FIELD)
        .ok()
        .and_then(|e| e.to_int::<u16>().ok());
    if field != Some(C_STORE_RSP) {
        return Err(format!(
            "expected a C-STORE-RSP, got command field {field:?}"
        ));
    }
    let status = obj
        .element(tags::STATUS)
        .map_err(|_| "response without a status".to_string())?
        .to_int::<u16>()
        .map_err(|_| "status is not an unsigned short".to_string())?;
    let comment = obj
        .element_opt(tags::ERROR_COMMENT)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok().map(|s| s.trim().to_string()));
    Ok((status, comment))
}

/// What a C-STORE status means for the delivery.
pub fn status_outcome(status: u16, comment: Option<&str>) -> Outcome {
    let words = match comment {
        Some(c) if !c.is_empty() => format!("C-STORE status 0x{status:04X}: {c}"),
        _ => format!("C-STORE status 0x{status:04X}"),
    };
    match status {
        0x0000 | 0xB000 | 0xB006 | 0xB007 => Outcome::Delivered,
        0xA700..=0xA7FF => Outcome::Unavailable(words),
        _ => Outcome::Refused(words),
    }
}

/// The SR file's data set and SOP instance UID (the bytes we wrote ourselves).
fn dataset_of(file: &[u8]) -> Result<(InMemDicomObject, String), String> {
    let obj = dicom_object::FileDicomObject::from_reader(file)
        .map_err(|e| format!("queued SR unreadable: {e}"))?;
    let uid = obj
        .meta()
        .media_storage_sop_instance_uid()
        .trim_end_matches('\0')
        .to_string();
    Ok((obj.into_inner(), uid))
}

fn store(
    address: &DicomAddress,
    tls: Option<DicomTls>,
    calling: &str,
    timeout: Duration,
    file: &[u8],
) -> Outcome {
    let (dataset, sop_instance) = match dataset_of(file) {
        Ok(x) => x,
        Err(e) => return Outcome::Refused(e),
    };
    let options = ClientAssociationOptions::new()
        .calling_ae_title(calling)
        .called_ae_title(address.called_ae.as_str())
        .with_presentation_context(COMPREHENSIVE_SR, vec![EXPLICIT_VR_LE, IMPLICIT_VR_LE])
        .connection_timeout(timeout)
        .read_timeout(timeout)
        .write_timeout(timeout);
    match tls {
        None => match options.establish(address.addr.as_str()) {
            Ok(a) => exchange(a, dataset, &sop_instance),
            Err(e) => ul_outcome(e),
        },
        Some(t) => match options
            .tls_config(t.config)
            .server_name(&t.server_name)
            .establish_tls(address.addr.as_str())
        {
            Ok(a) => exchange(a, dataset, &sop_instance),
            Err(e) => ul_outcome(e),
        },
    }
}

/// One C-STORE on an established association, then its release.
fn exchange<S>(
    mut assoc: dicom_ul::ClientAssociation<S>,
    dataset: InMemDicomObject,
    sop_instance: &str,
) -> Outcome
where
    S: dicom_ul::association::CloseSocket + std::io::Read + std::io::Write,
{
    let Some(pc) = assoc
        .presentation_contexts()
        .iter()
        .find(|pc| pc.reason == PresentationContextResultReason::Acceptance)
        .cloned()
    else {
        let _ = assoc.abort();
        return Outcome::Refused("no presentation context accepted for Comprehensive SR".into());
    };
    let ts = if pc.transfer_syntax.trim_end_matches('\0') == IMPLICIT_VR_LE {
        dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased()
    } else {
        dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased()
    };
    let cmd = match command(sop_instance) {
        Ok(c) => c,
        Err(e) => return Outcome::Refused(e),
    };
    let mut data = Vec::new();
    if let Err(e) = dataset.write_dataset_with_ts(&mut data, &ts) {
        let _ = assoc.abort();
        return Outcome::Refused(format!("encoding the SR data set: {e}"));
    }
    let sent = assoc
        .send(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: pc.id,
                value_type: PDataValueType::Command,
                is_last: true,
                data: cmd,
            }],
        })
        .map_err(ul_outcome)
        .and_then(|_| {
            let mut w = assoc.send_pdata(pc.id);
            w.write_all(&data)
                .and_then(|_| w.finish())
                .map_err(|e| Outcome::Unavailable(format!("sending the data set: {e}")))
        });
    if let Err(o) = sent {
        let _ = assoc.abort();
        return o;
    }
    let outcome = match assoc.receive() {
        Ok(Pdu::PData { data }) => {
            let bytes: Vec<u8> = data
                .into_iter()
                .filter(|v| v.value_type == PDataValueType::Command)
                .flat_map(|v| v.data)
                .collect();
            match response_status(&bytes) {
                Ok((status, comment)) => status_outcome(status, comment.as_deref()),
                Err(e) => Outcome::Unavailable(e),
            }
        }
        Ok(Pdu::AbortRQ { source }) => {
            return Outcome::Unavailable(format!("association aborted by the PACS: {source:?}"))
        }
        Ok(other) => Outcome::Unavailable(format!("unexpected PDU {other:?}")),
        Err(e) => ul_outcome(e),
    };
    let _ = assoc.release();
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        let a: DicomAddress = "PACS@10.0.0.5:104".parse().unwrap();
        assert_eq!(a.called_ae, "PACS");
        assert_eq!(a.addr, "10.0.0.5:104");
        assert!("PACS".parse::<DicomAddress>().is_err());
        assert!("@h:1".parse::<DicomAddress>().is_err());
        assert!("A_TITLE_LONGER_THAN_16@h:1"
            .parse::<DicomAddress>()
            .is_err());
    }

    #[test]
    fn statuses_classify() {
        assert_eq!(status_outcome(0x0000, None), Outcome::Delivered);
        assert_eq!(status_outcome(0xB007, None), Outcome::Delivered);
        assert!(matches!(
            status_outcome(0xA702, None),
            Outcome::Unavailable(_)
        ));
        assert_eq!(
            status_outcome(0x0122, Some("SOP class not supported")),
            Outcome::Refused("C-STORE status 0x0122: SOP class not supported".into())
        );
    }
}
