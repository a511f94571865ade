//! cxrflow's contracts: the Avro schemas of every topic, the Rust record types, the Confluent
//! wire framing, the schema registries and the DICOM transfer syntaxes the gateway and
//! preprocess agree on. Sans-I/O: nothing here touches a socket or a file,
//! so every service (and any tool) can depend on it freely.

pub mod codec;
pub mod dicom;
pub mod findings;
pub mod framing;
pub mod records;
pub mod registry;
pub mod report;
pub mod topics;
pub mod view;

pub use codec::{AvroRecord, Codec, CodecError};
pub use findings::{Finding, UnknownFinding, CRITICAL_FINDINGS, FINDINGS, URGENT_FINDINGS};
pub use framing::{FrameError, Framed};
pub use records::*;
pub use registry::{RegistryError, SchemaId, SchemaRegistry, StaticRegistry};
pub use report::ReportError;
