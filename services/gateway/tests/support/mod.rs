//! Shared helpers of the gateway integration tests: a running gateway (and ingest), CR/DX
//! fixtures generated with dicom-object in the shapes real files have, the external DICOM
//! clients (DCMTK, pynetdicom) and a small dicom-ul client for the cases no tool produces.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use cxrflow_common::KafkaArgs;
use cxrflow_contracts::{Codec, ScanEvent};
use cxrflow_gateway::instance::{CR_IMAGE_STORAGE, DX_FOR_PRESENTATION, DX_FOR_PROCESSING};
use cxrflow_gateway::Config;
use cxrflow_testkit::{free_port, read_topic, service_args, RawRecord, TestService};
use dicom_core::value::C;
use dicom_core::{dicom_value, DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use dicom_ul::pdu::{PDataValue, PDataValueType};
use dicom_ul::Pdu;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const WAIT: Duration = Duration::from_secs(30);
pub const KEY: &str = "test-pseudonym-key-0123456789";
pub const AE: &str = "CXRFLOW";
pub const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
pub const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
pub const CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
pub const VERIFICATION: &str = "1.2.840.10008.1.1";

pub fn codec() -> Arc<Codec> {
    Arc::new(Codec::with_static_registry().unwrap())
}

/// A gateway running in this process.
/// A broker, a gateway in front of it with a file blob store in `dir`, and what tests read back.
pub struct Stack {
    pub gw: Running,
    pub kafka: KafkaArgs,
    pub blob_url: String,
    pub dir: tempfile::TempDir,
    pub codec: Arc<Codec>,
    _broker: cxrflow_testkit::Broker,
}

impl Stack {
    pub async fn start() -> Stack {
        let broker = cxrflow_testkit::Broker::start();
        let kafka = broker.stack().await;
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(&kafka, dir.path());
        let blob_url = cfg.blob_store.clone().unwrap();
        let gw = Running::start(cfg).await;
        Stack {
            gw,
            kafka,
            blob_url,
            dir,
            codec: codec(),
            _broker: broker,
        }
    }
}

pub struct Running {
    pub service: TestService,
    pub http: u16,
    pub dicom: u16,
}

impl Running {
    /// Starts the gateway and waits until it is ready.
    pub async fn start(cfg: Config) -> Running {
        let (http, dicom) = (cfg.service.http, cfg.dicom_listen.port());
        let service = TestService::spawn("gateway", http, |s| cxrflow_gateway::run(cfg, s));
        service.wait_ready(WAIT).await;
        Running {
            service,
            http: http.port(),
            dicom,
        }
    }

    /// Stops (drain) and waits for the gateway to return.
    pub async fn stop(self) {
        self.service.stop().await;
    }

    pub fn stow_url(&self, path: &str) -> String {
        format!("{}{path}", self.service.base())
    }

    /// The value of a metric line (exact name plus labels) on `/metrics`, if present.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        self.service.metric(series).await
    }

    /// `cxrflow_gateway_rejected_total{reason=…}`, 0 when absent.
    pub async fn rejected(&self, reason: &str) -> f64 {
        self.metric(&format!(
            "cxrflow_gateway_rejected_total{{reason=\"{reason}\"}}"
        ))
        .await
        .unwrap_or(0.0)
    }
}

/// Gateway settings for a test: blobs under `dir`, fixed free ports, short timeouts.
pub fn config(kafka: &KafkaArgs, dir: &Path) -> Config {
    let mut cfg = Config::defaults(kafka.clone(), service_args());
    cfg.dicom_listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    cfg.blob_store = Some(format!("file://{}", dir.join("dicom").display()));
    cfg.pseudonym_key = Some(KEY.into());
    cfg.association_timeout_ms = 1_000;
    cfg.idle_timeout_ms = 1_500;
    cfg.site_id = "site-test".into();
    // The fixtures' clocks keep UTC (`fixture`), whatever the host's zone.
    cfg.timezone = Some("UTC".into());
    cfg
}

/// An ingest service in this process, consuming what the gateway publishes.
pub fn start_ingest(kafka: &KafkaArgs, dir: &Path) -> TestService {
    start_ingest_with_store(
        kafka,
        dir,
        format!("file://{}", dir.join("ingest-blobs").display()),
    )
}

/// Ingest writing its claim checks to `store` (e.g. the gateway's).
pub fn start_ingest_with_store(kafka: &KafkaArgs, dir: &Path, store: String) -> TestService {
    let mut cfg = cxrflow_ingest::Config::defaults(kafka.clone(), service_args());
    cfg.blob_store.url = Some(store);
    cfg.ingest_db = dir.join("ingest.db");
    TestService::spawn("ingest", cfg.service.http, |s| cxrflow_ingest::run(cfg, s))
}

/// The kinds of chest radiograph files the tests send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// CR, 12 bits stored in 16, MONOCHROME1 (how most CR plates export).
    Cr12,
    /// DX for presentation, 16 bits stored, MONOCHROME2.
    Dx16,
    /// DX for processing, 14 bits stored.
    DxProcessing14,
    /// A CT slice: a SOP class the gateway must refuse.
    Ct,
}

impl Kind {
    pub fn sop_class(self) -> &'static str {
        match self {
            Kind::Cr12 => CR_IMAGE_STORAGE,
            Kind::Dx16 => DX_FOR_PRESENTATION,
            Kind::DxProcessing14 => DX_FOR_PROCESSING,
            Kind::Ct => CT_IMAGE_STORAGE,
        }
    }

    pub fn modality(self) -> &'static str {
        match self {
            Kind::Cr12 => "CR",
            Kind::Ct => "CT",
            _ => "DX",
        }
    }

    fn bits_stored(self) -> u16 {
        match self {
            Kind::Cr12 | Kind::Ct => 12,
            Kind::Dx16 => 16,
            Kind::DxProcessing14 => 14,
        }
    }
}

/// A generated instance and the identifiers the tests look for.
pub struct Fixture {
    pub kind: Kind,
    pub study: String,
    pub series: String,
    pub sop: String,
    pub patient_id: String,
    pub patient_name: String,
    pub birth_date: String,
    pub accession: String,
    pub dataset: InMemDicomObject,
}

fn put(o: &mut InMemDicomObject, tag: Tag, vr: VR, v: &str) {
    o.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
}

fn put_u16(o: &mut InMemDicomObject, tag: Tag, v: u16) {
    o.put(DataElement::new(tag, VR::US, dicom_value!(U16, [v])));
}

/// Instance `n` of `kind`: the attributes a modality writes, a 64×64 image with a gradient.
pub fn fixture(n: u32, kind: Kind) -> Fixture {
    let run: u32 = rand::random::<u32>() % 1_000_000;
    let study = format!("1.2.826.0.1.3680043.10.543.{run}.{n}");
    let series = format!("{study}.1");
    let sop = format!("{series}.{}", n + 1);
    let patient_id = format!("MRN{run:06}X{n}");
    let patient_name = format!("Testperson^Jane{n}");
    let birth_date = "19580704".to_string();
    let accession = format!("ACC{run:06}Q{n}");
    let now = chrono::Utc::now();
    let (date, time) = (
        now.format("%Y%m%d").to_string(),
        now.format("%H%M%S").to_string(),
    );
    let mut o = InMemDicomObject::new_empty();
    put(&mut o, tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100");
    put(&mut o, tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY");
    put(&mut o, tags::SOP_CLASS_UID, VR::UI, kind.sop_class());
    put(&mut o, tags::SOP_INSTANCE_UID, VR::UI, &sop);
    put(&mut o, tags::STUDY_DATE, VR::DA, &date);
    put(&mut o, tags::STUDY_TIME, VR::TM, &time);
    put(&mut o, tags::ACQUISITION_DATE, VR::DA, &date);
    put(&mut o, tags::ACQUISITION_TIME, VR::TM, &time);
    put(&mut o, tags::ACCESSION_NUMBER, VR::SH, &accession);
    put(&mut o, tags::MODALITY, VR::CS, kind.modality());
    put(&mut o, tags::MANUFACTURER, VR::LO, "cxrflow test");
    put(&mut o, tags::INSTITUTION_NAME, VR::LO, "Test Hospital");
    put(&mut o, tags::REFERRING_PHYSICIAN_NAME, VR::PN, "Doctor^Who");
    put(&mut o, tags::PATIENT_NAME, VR::PN, &patient_name);
    put(&mut o, tags::PATIENT_ID, VR::LO, &patient_id);
    put(&mut o, tags::PATIENT_BIRTH_DATE, VR::DA, &birth_date);
    put(&mut o, tags::PATIENT_SEX, VR::CS, "F");
    put(&mut o, tags::PATIENT_AGE, VR::AS, "066Y");
    put(&mut o, tags::BODY_PART_EXAMINED, VR::CS, "CHEST");
    put(&mut o, tags::VIEW_POSITION, VR::CS, "PA");
    put(&mut o, tags::STUDY_INSTANCE_UID, VR::UI, &study);
    put(&mut o, tags::SERIES_INSTANCE_UID, VR::UI, &series);
    put(&mut o, tags::STUDY_ID, VR::SH, "1");
    put(&mut o, tags::SERIES_NUMBER, VR::IS, "1");
    put(&mut o, tags::INSTANCE_NUMBER, VR::IS, &(n + 1).to_string());
    put(&mut o, tags::PATIENT_ORIENTATION, VR::CS, "P\\F");
    if matches!(kind, Kind::Dx16 | Kind::DxProcessing14) {
        let intent = if kind == Kind::Dx16 {
            "FOR PRESENTATION"
        } else {
            "FOR PROCESSING"
        };
        put(&mut o, tags::PRESENTATION_INTENT_TYPE, VR::CS, intent);
        put(&mut o, tags::IMAGER_PIXEL_SPACING, VR::DS, "0.139\\0.139");
        put(&mut o, tags::DETECTOR_TYPE, VR::CS, "SCINTILLATOR");
    }
    let bits = kind.bits_stored();
    let monochrome = if kind == Kind::Cr12 {
        "MONOCHROME1"
    } else {
        "MONOCHROME2"
    };
    put_u16(&mut o, tags::SAMPLES_PER_PIXEL, 1);
    put(&mut o, tags::PHOTOMETRIC_INTERPRETATION, VR::CS, monochrome);
    put_u16(&mut o, tags::ROWS, 64);
    put_u16(&mut o, tags::COLUMNS, 64);
    put_u16(&mut o, tags::BITS_ALLOCATED, 16);
    put_u16(&mut o, tags::BITS_STORED, bits);
    put_u16(&mut o, tags::HIGH_BIT, bits - 1);
    put_u16(&mut o, tags::PIXEL_REPRESENTATION, 0);
    let max = (1u32 << bits) - 1;
    let pixels: Vec<u16> = (0..64u32 * 64)
        .map(|i| (((i % 64) * 37 + (i / 64) * 11 + n * 101) % (max + 1)) as u16)
        .collect();
    o.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(C::from_vec(pixels)),
    ));
    Fixture {
        kind,
        study,
        series,
        sop,
        patient_id,
        patient_name,
        birth_date,
        accession,
        dataset: o,
    }
}

impl Fixture {
    /// The Part-10 file in transfer syntax `ts`.
    pub fn part10(&self, ts: &str) -> Vec<u8> {
        let meta = FileMetaTableBuilder::new()
            .media_storage_sop_class_uid(self.kind.sop_class())
            .media_storage_sop_instance_uid(self.sop.as_str())
            .transfer_syntax(ts);
        let file = self.dataset.clone().with_meta(meta).expect("file meta");
        let mut out = Vec::new();
        file.write_all(&mut out).expect("write part 10");
        out
    }

    pub fn write(&self, dir: &Path, ts: &str) -> PathBuf {
        let path = dir.join(format!("{}.dcm", self.sop));
        std::fs::write(&path, self.part10(ts)).unwrap();
        path
    }

    /// The data set alone, as sent over DIMSE in `ts`.
    pub fn dataset_bytes(&self, ts: &str) -> Vec<u8> {
        let ts = dicom_transfer_syntax_registry::TransferSyntaxRegistry
            .get(ts)
            .expect("known transfer syntax");
        let mut out = Vec::new();
        self.dataset.write_dataset_with_ts(&mut out, ts).unwrap();
        out
    }
}

use dicom_encoding::transfer_syntax::TransferSyntaxIndex as _;

/// Asserts that none of the fixture's identifying values is in `bytes`.
pub fn assert_no_phi(f: &Fixture, bytes: &[u8], what: &str) {
    for (name, v) in [
        ("patient id", f.patient_id.as_str()),
        ("patient name", f.patient_name.as_str()),
        ("birth date", f.birth_date.as_str()),
        ("accession number", f.accession.as_str()),
        ("given name", "Jane"),
        ("family name", "Testperson"),
    ] {
        assert!(
            !bytes.windows(v.len()).any(|w| w == v.as_bytes()),
            "{what} contains the {name} {v:?}"
        );
    }
}

/// Scan events on the topic (raw records and decoded), reading until `n` arrived.
pub async fn scan_events(
    kafka: &KafkaArgs,
    codec: &Codec,
    n: usize,
    timeout: Duration,
) -> Vec<(RawRecord, ScanEvent)> {
    read_topic(kafka, cxrflow_contracts::topics::SCAN, timeout, |r| {
        r.len() >= n
    })
    .await
    .into_iter()
    .map(|r| {
        let e = codec
            .decode::<ScanEvent>(r.payload.as_deref().expect("payload"))
            .expect("scan event decodes");
        (r, e)
    })
    .collect()
}

/// A DCMTK tool, or a clear failure naming the package to install.
pub fn dcmtk(tool: &str) -> std::process::Command {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{tool} not found on PATH: install the Debian package `dcmtk` (scripts/prereqs.sh)"
    );
    std::process::Command::new(tool)
}

/// DCMTK's storescu as a modality runs it: from MODALITY1 to the gateway's AE title on
/// 127.0.0.1:`port`; the caller adds its options (TLS, a timeout, a proposed syntax: DCMTK
/// reads options after the peer too) and the files to send.
pub fn storescu(port: u16) -> std::process::Command {
    let mut c = dcmtk("storescu");
    c.args([
        "-aet",
        "MODALITY1",
        "-aec",
        AE,
        "127.0.0.1",
        &port.to_string(),
    ]);
    c
}

/// Runs a command to completion off the async runtime; returns (success, stdout+stderr).
pub async fn run_tool(mut cmd: std::process::Command) -> (bool, String) {
    tokio::task::spawn_blocking(move || {
        let out = cmd.output().expect("tool runs");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    })
    .await
    .unwrap()
}

/// The project venv's python (with pynetdicom), or a clear failure.
pub fn venv_python() -> PathBuf {
    let tools = std::env::var_os("CXRFLOW_TOOLS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/cxrflow/tools")))
        .expect("HOME or CXRFLOW_TOOLS set");
    let python = tools.join("venv/bin/python");
    assert!(
        python.is_file(),
        "{} missing: create the tools venv and `pip install -r scripts/requirements-models.txt` (pynetdicom)",
        python.display()
    );
    python
}

// ---- A minimal DICOM upper-layer client for the cases no tool produces. ----

/// A C-STORE-RQ command set (implicit VR little endian).
pub fn c_store_rq(message_id: u16, sop_class: &str, sop_instance: &str) -> Vec<u8> {
    let pad = |s: &str| {
        let mut s = s.to_string();
        if s.len() % 2 == 1 {
            s.push('\0');
        }
        s
    };
    let obj = InMemDicomObject::command_from_element_iter([
        DataElement::new(
            tags::AFFECTED_SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from(pad(sop_class)),
        ),
        DataElement::new(tags::COMMAND_FIELD, VR::US, dicom_value!(U16, [0x0001])),
        DataElement::new(tags::MESSAGE_ID, VR::US, dicom_value!(U16, [message_id])),
        DataElement::new(tags::PRIORITY, VR::US, dicom_value!(U16, [0])),
        DataElement::new(
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            dicom_value!(U16, [0x0000]),
        ),
        DataElement::new(
            tags::AFFECTED_SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(pad(sop_instance)),
        ),
    ]);
    let ts = dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased();
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, &ts).unwrap();
    out
}

pub fn pdata(pc: u8, value_type: PDataValueType, is_last: bool, data: Vec<u8>) -> Pdu {
    Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: pc,
            value_type,
            is_last,
            data,
        }],
    }
}

/// The status of a C-STORE-RSP / C-ECHO-RSP PDU.
pub fn response_status(pdu: &Pdu) -> Option<u16> {
    let Pdu::PData { data } = pdu else {
        return None;
    };
    let v = data.first()?;
    let ts = dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased();
    let obj = InMemDicomObject::read_dataset_with_ts(&v.data[..], &ts).ok()?;
    obj.element(tags::STATUS).ok()?.to_int::<u16>().ok()
}

/// Every file under `dir`, recursively, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// [`c_store`] of fixture `f`'s data set on presentation context 1, which must be answered
/// within [`WAIT`] (an answer, not a hang).
pub async fn c_store_answered(
    assoc: &mut dicom_ul::association::AsyncClientAssociation<TcpStream>,
    message_id: u16,
    f: &Fixture,
    dataset: &[u8],
) -> Option<u16> {
    tokio::time::timeout(
        WAIT,
        c_store(assoc, 1, message_id, f.kind.sop_class(), &f.sop, dataset),
    )
    .await
    .expect("an answer, not a hang")
}

/// A new association from MODALITY1 whose C-STORE of fixture `f` is answered out of resources
/// (0xA700: the sender keeps the instance and resends), the gateway counting it refused for
/// `reason`; returns the association, for the resend.
pub async fn c_store_out_of_resources(
    gw: &Running,
    f: &Fixture,
    dataset: &[u8],
    reason: &str,
) -> dicom_ul::association::AsyncClientAssociation<TcpStream> {
    let mut assoc = associate_explicit_le(gw.dicom, f.kind.sop_class()).await;
    let status = c_store_answered(&mut assoc, 1, f, dataset).await;
    assert_eq!(
        status,
        Some(0xA700),
        "out of resources ({reason}): the sender keeps the instance"
    );
    assert_eq!(gw.rejected(reason).await, 1.0, "refused for {reason}");
    assoc
}

/// An association from MODALITY1 to the gateway on `port`, proposing `sop_class` in explicit VR
/// little endian only (presentation context 1).
pub async fn associate_explicit_le(
    port: u16,
    sop_class: &str,
) -> dicom_ul::association::AsyncClientAssociation<TcpStream> {
    dicom_ul::ClientAssociationOptions::new()
        .calling_ae_title("MODALITY1")
        .called_ae_title(AE)
        .with_presentation_context(sop_class, vec![EXPLICIT_LE])
        .establish_async(("127.0.0.1", port))
        .await
        .expect("association")
}

/// Sends one C-STORE (command, then the data set in PDUs of at most `chunk` bytes) on an
/// established association and returns the response status.
pub async fn c_store(
    assoc: &mut dicom_ul::association::AsyncClientAssociation<TcpStream>,
    pc: u8,
    message_id: u16,
    sop_class: &str,
    sop_instance: &str,
    dataset: &[u8],
) -> Option<u16> {
    assoc
        .send(&pdata(
            pc,
            PDataValueType::Command,
            true,
            c_store_rq(message_id, sop_class, sop_instance),
        ))
        .await
        .ok()?;
    let chunks: Vec<&[u8]> = dataset.chunks(8 * 1024).collect();
    for (i, c) in chunks.iter().enumerate() {
        assoc
            .send(&pdata(
                pc,
                PDataValueType::Data,
                i + 1 == chunks.len(),
                c.to_vec(),
            ))
            .await
            .ok()?;
    }
    let rsp = assoc.receive().await.ok()?;
    response_status(&rsp)
}

/// An A-ASSOCIATE-RQ PDU proposing `abstract_syntax` in implicit VR little endian.
pub fn associate_rq(calling: &str, called: &str, abstract_syntax: &str) -> Vec<u8> {
    use dicom_ul::pdu::{AssociationRQ, PresentationContextProposed, UserVariableItem};
    let pdu = Pdu::AssociationRQ(AssociationRQ {
        protocol_version: 1,
        calling_ae_title: calling.into(),
        called_ae_title: called.into(),
        application_context_name: "1.2.840.10008.3.1.1.1".into(),
        presentation_contexts: vec![PresentationContextProposed {
            id: 1,
            abstract_syntax: abstract_syntax.into(),
            transfer_syntaxes: vec![IMPLICIT_LE.into()],
        }],
        user_variables: vec![UserVariableItem::MaxLength(16_384)],
    });
    let mut out = Vec::new();
    dicom_ul::write_pdu(&mut out, &pdu).unwrap();
    out
}

/// Reads one PDU from a raw socket (or `None` on close, error or after `timeout`).
pub async fn read_raw_pdu(socket: &mut TcpStream, timeout: Duration) -> Option<Pdu> {
    let mut buf = BytesMut::new();
    tokio::time::timeout(
        timeout,
        dicom_ul::association::read_pdu_from_wire_async(socket, &mut buf, 1 << 20, false),
    )
    .await
    .ok()?
    .ok()
}

/// Whether the peer closed the socket (EOF or reset) within `timeout`, draining what it sent.
pub async fn closed_within(socket: &mut TcpStream, timeout: Duration) -> bool {
    let mut sink = [0u8; 1024];
    tokio::time::timeout(timeout, async {
        loop {
            match socket.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

pub async fn connect(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.set_nodelay(true).unwrap();
    let _ = s.flush().await;
    s
}

pub async fn write_raw(socket: &mut TcpStream, bytes: &[u8]) {
    let _ = socket.write_all(bytes).await;
}
