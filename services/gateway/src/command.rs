//! DIMSE command sets (PS3.7 §9, §E): reading a request's command fields and encoding a
//! response, always in implicit VR little endian with its Command Group Length.

use dicom_core::{dicom_value, DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use crate::instance::trim_uid;

pub const C_STORE_RQ: u16 = 0x0001;
pub const C_STORE_RSP: u16 = 0x8001;
pub const C_ECHO_RQ: u16 = 0x0030;
pub const C_ECHO_RSP: u16 = 0x8030;
/// Command Data Set Type value meaning "no data set follows".
pub const NO_DATASET: u16 = 0x0101;
/// A command set is a few hundred bytes; anything near this is not a command.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;

/// A DIMSE command as far as the gateway reads it.
#[derive(Debug)]
pub struct Command {
    pub field: u16,
    pub message_id: u16,
    pub sop_class: String,
    pub sop_instance: String,
    pub has_dataset: bool,
}

pub fn read_command(bytes: &[u8]) -> Result<Command, String> {
    let ts = dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased();
    let obj = InMemDicomObject::read_dataset_with_ts(bytes, &ts)
        .map_err(|e| format!("unreadable command set: {e}"))?;
    let int = |tag, name: &str| -> Result<u16, String> {
        obj.element(tag)
            .map_err(|_| format!("command set lacks {name}"))?
            .to_int::<u16>()
            .map_err(|_| format!("{name} is not an unsigned short"))
    };
    let uid = |tag| -> String {
        obj.element_opt(tag)
            .ok()
            .flatten()
            .and_then(|e| e.to_str().ok().map(|s| trim_uid(&s).to_string()))
            .unwrap_or_default()
    };
    Ok(Command {
        field: int(tags::COMMAND_FIELD, "CommandField")?,
        message_id: int(tags::MESSAGE_ID, "MessageID")?,
        has_dataset: int(tags::COMMAND_DATA_SET_TYPE, "CommandDataSetType")? != NO_DATASET,
        sop_class: uid(tags::AFFECTED_SOP_CLASS_UID),
        sop_instance: uid(tags::AFFECTED_SOP_INSTANCE_UID),
    })
}

fn padded(s: &str, pad: char) -> String {
    let mut s = s.to_string();
    if s.len() % 2 == 1 {
        s.push(pad);
    }
    s
}

/// Encodes a response command set (implicit VR little endian, with its group length).
pub fn response(
    field: u16,
    request: &Command,
    status: u16,
    comment: Option<&str>,
) -> Result<Vec<u8>, String> {
    let mut elements = vec![
        DataElement::new(
            tags::AFFECTED_SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from(padded(&request.sop_class, '\0')),
        ),
        DataElement::new(tags::COMMAND_FIELD, VR::US, dicom_value!(U16, [field])),
        DataElement::new(
            tags::MESSAGE_ID_BEING_RESPONDED_TO,
            VR::US,
            dicom_value!(U16, [request.message_id]),
        ),
        DataElement::new(
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            dicom_value!(U16, [NO_DATASET]),
        ),
        DataElement::new(tags::STATUS, VR::US, dicom_value!(U16, [status])),
    ];
    if !request.sop_instance.is_empty() {
        elements.push(DataElement::new(
            tags::AFFECTED_SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(padded(&request.sop_instance, '\0')),
        ));
    }
    if let Some(c) = comment {
        // Error Comment is LO: at most 64 characters.
        let c: String = c.chars().filter(|c| *c != '\\').take(64).collect();
        elements.push(DataElement::new(
            tags::ERROR_COMMENT,
            VR::LO,
            PrimitiveValue::from(padded(&c, ' ')),
        ));
    }
    let obj = InMemDicomObject::command_from_element_iter(elements);
    let ts = dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased();
    let mut out = Vec::with_capacity(256);
    obj.write_dataset_with_ts(&mut out, &ts)
        .map_err(|e| format!("encoding the response: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_encode_with_group_length_and_read_back() {
        let req = Command {
            field: C_STORE_RQ,
            message_id: 7,
            sop_class: "1.2.840.10008.5.1.4.1.1.1".into(),
            sop_instance: "1.2.3".into(),
            has_dataset: true,
        };
        let bytes = response(C_STORE_RSP, &req, 0xA900, Some("bad \\ thing")).unwrap();
        let ts = dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased();
        let obj = InMemDicomObject::read_dataset_with_ts(&bytes[..], &ts).unwrap();
        let group_len = obj
            .element(tags::COMMAND_GROUP_LENGTH)
            .unwrap()
            .to_int::<u32>()
            .unwrap();
        assert_eq!(
            group_len as usize,
            bytes.len() - 12,
            "group length excludes itself"
        );
        assert_eq!(
            obj.element(tags::COMMAND_FIELD)
                .unwrap()
                .to_int::<u16>()
                .unwrap(),
            C_STORE_RSP
        );
        let comment = obj.element(tags::ERROR_COMMENT).unwrap().to_str().unwrap();
        assert!(!comment.contains('\\'), "{comment}");
        assert_eq!(
            obj.element(tags::STATUS).unwrap().to_int::<u16>().unwrap(),
            0xA900
        );
        assert_eq!(
            obj.element(tags::MESSAGE_ID_BEING_RESPONDED_TO)
                .unwrap()
                .to_int::<u16>()
                .unwrap(),
            7
        );
        assert!(read_command(b"garbage").is_err());
    }
}
