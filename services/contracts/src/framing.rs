//! Confluent wire framing: magic byte 0, a 4-byte big-endian schema id, then Avro binary.

use crate::registry::SchemaId;

pub const MAGIC: u8 = 0;
pub const HEADER_LEN: usize = 5;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("record is {0} bytes, shorter than the 5-byte Confluent header")]
    TooShort(usize),
    #[error("magic byte is {0}, expected 0 (not a Confluent-framed Avro record)")]
    BadMagic(u8),
}

/// A framed record split into its schema id and Avro body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framed<'a> {
    pub schema_id: SchemaId,
    pub body: &'a [u8],
}

impl<'a> Framed<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FrameError> {
        if bytes.len() < HEADER_LEN {
            return Err(FrameError::TooShort(bytes.len()));
        }
        if bytes[0] != MAGIC {
            return Err(FrameError::BadMagic(bytes[0]));
        }
        let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        Ok(Framed {
            schema_id: SchemaId(id),
            body: &bytes[HEADER_LEN..],
        })
    }
}

/// Prefixes `body` with the header for `id`.
pub fn frame(id: SchemaId, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.push(MAGIC);
    out.extend_from_slice(&id.0.to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn frame_then_parse_round_trips(id in any::<u32>(), body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let bytes = frame(SchemaId(id), &body);
            let f = Framed::parse(&bytes).unwrap();
            prop_assert_eq!(f.schema_id, SchemaId(id));
            prop_assert_eq!(f.body, &body[..]);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = Framed::parse(&bytes);
        }
    }

    #[test]
    fn short_and_bad_magic_are_typed() {
        assert_eq!(Framed::parse(&[0, 1]), Err(FrameError::TooShort(2)));
        assert_eq!(
            Framed::parse(&[7, 0, 0, 0, 1]),
            Err(FrameError::BadMagic(7))
        );
    }
}
