//! The outputs checked by other programs: the SR by DCMTK (`dsrdump`, `dcmdump`), dicom3tools'
//! `dciodvfy` (the Comprehensive SR IOD) and pydicom, stored into DCMTK's `storescp` with our
//! C-STORE SCU and posted by STOW-RS to an HTTP server; the FHIR Bundle by the official FHIR R4
//! JSON schema (python `jsonschema`).

mod support;

use std::process::Command;
use std::time::Duration;

use cxrflow_contracts::TriageTier;
use cxrflow_results::destination::dicom::{DicomAddress, DicomStore};
use cxrflow_results::destination::{Destination, Outcome};
use cxrflow_results::{fhir, report, sr};
use cxrflow_testkit::{free_port, tools_python};
use support::*;

fn sr_file(tier: TriageTier, dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let d = decision("1.2.826.0.1.3680043.8.498.77", 3, tier);
    let r = report::plan(&d, cxrflow_common::time::now_millis(), 0).unwrap();
    let doc = sr::build(&r);
    let path = dir.join(format!("{tier:?}.dcm"));
    std::fs::write(&path, doc.to_file_bytes().unwrap()).unwrap();
    (path, doc.sop_instance_uid)
}

#[test]
fn a_critical_sr_reads_in_dcmtk_and_pydicom_with_tier_findings_model_and_source_image() {
    let dir = tempfile::tempdir().unwrap();
    let (path, sop_uid) = sr_file(TriageTier::Critical, dir.path());

    // dsrdump checks the content tree against the IOD's relationship constraints as it reads:
    // any warning or error it prints fails the test, except one: DCMTK 3.6.7's VR checker
    // skips UTF-8 (ISO_IR 192) text and says so.
    let out = Command::new("dsrdump")
        .arg("+Pl")
        .arg(&path)
        .output()
        .unwrap();
    let tree = String::from_utf8_lossy(&out.stdout).into_owned();
    let complaints: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| {
            !l.trim().is_empty()
                && !l
                    .contains("VR checker does not support this Specific Character Set: ISO_IR 192")
        })
        .map(str::to_string)
        .collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "dsrdump: {complaints:?}\n{tree}"
    );
    for want in [
        "Comprehensive SR",
        "Diagnostic imaging study",
        "AI triage tier",
        "CRITICAL",
        "Pneumothorax",
        "Pleural effusion",
        "0.9300",
        "cxr-small@1.2.0",
        "Algorithm Version",
        "not a diagnosis",
        "IMAGE:(,,\"Source\")=(CR image,)",
        "UNVERIFIED",
    ] {
        assert!(tree.contains(want), "dsrdump lacks {want:?}:\n{tree}");
    }
    // Below its threshold: not reported.
    assert!(!tree.contains("Cardiomegaly"), "{tree}");

    let mut c = Command::new("dcmdump");
    c.arg("+L").arg(&path);
    let dump = output_of(c);
    assert!(dump.contains("=ComprehensiveSRStorage"), "{dump}");
    assert!(dump.contains(&sop_uid), "{dump}");

    let script = r#"
import sys, pydicom
ds = pydicom.dcmread(sys.argv[1])
assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33", ds.SOPClassUID
assert ds.Modality == "SR" and ds.VerificationFlag == "UNVERIFIED"
assert ds.StudyInstanceUID == "1.2.826.0.1.3680043.8.498.77"
images = [i for i in ds.ContentSequence if i.ValueType == "IMAGE"]
assert len(images) == 1
ref = images[0].ReferencedSOPSequence[0]
assert ref.ReferencedSOPInstanceUID == "1.2.826.0.1.3680043.8.498.77.1.1", ref
assert ref.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.1"
ev = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
assert ev.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == ref.ReferencedSOPInstanceUID
findings = [i.ConceptCodeSequence[0] for i in ds.ContentSequence
            if i.ValueType == "CODE" and i.ConceptNameCodeSequence[0].CodeValue == "121071"]
assert [(f.CodingSchemeDesignator, f.CodeValue) for f in findings] == [("SCT", "36118008"), ("SCT", "60046008")], findings
print("ok", ds.SOPInstanceUID)
"#;
    let mut c = Command::new(tools_python());
    c.args(["-c", script]).arg(&path);
    let out = output_of(c);
    assert!(out.contains(&sop_uid), "{out}");
}

#[test]
fn a_not_assessable_sr_says_the_ai_did_not_assess_it_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = sr_file(TriageTier::NotAssessable, dir.path());
    let mut c = Command::new("dsrdump");
    c.arg(&path);
    let tree = output_of(c);
    for want in [
        "NOT_ASSESSABLE",
        "Not assessed by AI",
        "image unlike the training data",
    ] {
        assert!(tree.contains(want), "dsrdump lacks {want:?}:\n{tree}");
    }
    assert!(!tree.contains("Pneumothorax"), "{tree}");
}

fn fhir_schema() -> std::path::PathBuf {
    let data = std::env::var("CXRFLOW_DATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/cxrflow/data")
        });
    let p = data.join("fhir-r4/fhir.schema.json");
    assert!(
        p.exists(),
        "{} missing: run scripts/fetch-fhir-schema.sh (scripts/prereqs.sh does)",
        p.display()
    );
    p
}

const VALIDATE: &str = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
assert schema["id"] == "http://hl7.org/fhir/json-schema/4.0", schema["id"]
validator = jsonschema.Draft6Validator(schema)
bad = 0
for path in sys.argv[2:]:
    doc = json.load(open(path))
    # The whole Bundle, then each entry's resource on its own (a Bundle's entry.resource is
    # validated through the discriminator's oneOf too, but errors read better per resource).
    for what, d in [("Bundle", doc)] + [(e["resource"]["resourceType"], e["resource"]) for e in doc.get("entry", [])]:
        errors = list(validator.iter_errors(d))
        for e in errors[:5]:
            print(path, what, "INVALID:", e.message[:300], list(e.absolute_path))
        bad += bool(errors)
print("invalid documents:", bad)
sys.exit(1 if bad else 0)
"#;

#[test]
fn the_fhir_bundles_validate_against_the_official_r4_schema_and_a_broken_one_does_not() {
    let schema = fhir_schema();
    let dir = tempfile::tempdir().unwrap();
    let ids = fhir::Identifiers {
        system: cxrflow_results::DEFAULT_IDENTIFIER_SYSTEM.into(),
    };
    let mut files = vec![];
    for tier in [TriageTier::Critical, TriageTier::NotAssessable] {
        let d = decision("1.2.826.0.1.3680043.8.498.78", 1, tier);
        let r = report::plan(&d, cxrflow_common::time::now_millis(), 0).unwrap();
        let b = fhir::bundle(&r, &ids);
        let p = dir.path().join(format!("{tier:?}.json"));
        std::fs::write(&p, serde_json::to_vec_pretty(&b).unwrap()).unwrap();
        files.push(p);
    }
    let mut c = Command::new(tools_python());
    c.args(["-c", VALIDATE]).arg(&schema).args(&files);
    let out = output_of(c);
    assert!(out.contains("invalid documents: 0"), "{out}");

    // The validator does reject what R4 forbids: a status outside its value set, an element
    // R4 does not define.
    let mut broken: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    let entries = broken["entry"].as_array_mut().unwrap();
    let last = entries.len() - 1;
    assert_eq!(
        entries[last]["resource"]["resourceType"],
        "DiagnosticReport"
    );
    entries[last]["resource"]["status"] = "bogus".into();
    assert_eq!(entries[1]["resource"]["resourceType"], "Observation");
    entries[1]["resource"]["probability"] = 0.93.into();
    let p = dir.path().join("broken.json");
    std::fs::write(&p, serde_json::to_vec(&broken).unwrap()).unwrap();
    let out = Command::new(tools_python())
        .args(["-c", VALIDATE])
        .arg(&schema)
        .arg(&p)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "a broken bundle passed: {text}");
    assert!(text.contains("DiagnosticReport INVALID"), "{text}");
    assert!(text.contains("Observation INVALID"), "{text}");
}

#[tokio::test]
async fn c_store_puts_the_sr_into_storescp_once_and_an_absent_pacs_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (path, sop_uid) = sr_file(TriageTier::Critical, dir.path());
    let body = std::fs::read(&path).unwrap();
    let scp = StoreScp::start("PACS", free_port(), &dir.path().join("pacs"));
    let store = DicomStore {
        address: format!("PACS@127.0.0.1:{}", scp.port)
            .parse::<DicomAddress>()
            .unwrap(),
        tls: None,
        calling_ae: "CXRFLOW".into(),
        timeout: Duration::from_secs(10),
    };
    assert_eq!(store.deliver(&body).await, Outcome::Delivered);
    // A re-delivery of the same decision version is the same SOP instance: still one file.
    assert_eq!(store.deliver(&body).await, Outcome::Delivered);
    let files = scp.received();
    assert_eq!(files.len(), 1, "{files:?}");
    let mut c = Command::new("dcmdump");
    c.args(["+P", "SOPInstanceUID", "+P", "SOPClassUID"])
        .arg(&files[0]);
    let dump = output_of(c);
    assert!(dump.contains(&sop_uid), "{dump}");
    assert!(dump.contains("=ComprehensiveSRStorage"), "{dump}");
    let mut c = Command::new("dsrdump");
    c.arg(&files[0]);
    assert!(output_of(c).contains("CRITICAL"));

    let absent = DicomStore {
        address: format!("PACS@127.0.0.1:{}", free_port()).parse().unwrap(),
        tls: None,
        calling_ae: "CXRFLOW".into(),
        timeout: Duration::from_secs(2),
    };
    assert!(
        matches!(absent.deliver(&body).await, Outcome::Unavailable(_)),
        "a PACS that is down is retried, not refused"
    );
}

/// A CA, and a certificate it issued for `names`, as PEM files in `dir` named `<stem>.pem` and
/// `<stem>.key`.
fn issue(
    ca: &(rcgen::Certificate, rcgen::KeyPair),
    names: &[&str],
    dir: &std::path::Path,
    stem: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let p = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.0, &ca.1).unwrap();
    let (c, k) = (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

fn new_ca(name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    let key = rcgen::KeyPair::generate().unwrap();
    (p.self_signed(&key).unwrap(), key)
}

#[tokio::test]
async fn c_store_over_mutual_tls_reaches_a_tls_storescp_and_a_stranger_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, sop_uid) = sr_file(TriageTier::Critical, dir.path());
    let body = std::fs::read(&path).unwrap();
    let ca = new_ca("hospital CA");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.0.pem()).unwrap();
    let (pacs_cert, pacs_key) = issue(&ca, &["localhost"], dir.path(), "pacs");
    let (our_cert, our_key) = issue(&ca, &["cxrflow-results"], dir.path(), "results");
    let scp = StoreScp::start_tls(
        "PACS",
        free_port(),
        &dir.path().join("pacs"),
        &pacs_key,
        &pacs_cert,
        &ca_file,
    );
    let tls = |ca: &std::path::Path, identity: Option<(&std::path::Path, &std::path::Path)>| {
        Some(cxrflow_results::destination::dicom::DicomTls {
            config: std::sync::Arc::new(cxrflow_common::tls::client_config(ca, identity).unwrap()),
            server_name: "localhost".into(),
        })
    };
    let store = |tls| DicomStore {
        address: format!("PACS@127.0.0.1:{}", scp.port).parse().unwrap(),
        tls,
        calling_ae: "CXRFLOW".into(),
        timeout: Duration::from_secs(10),
    };
    assert_eq!(
        store(tls(&ca_file, Some((&our_cert, &our_key))))
            .deliver(&body)
            .await,
        Outcome::Delivered
    );
    let files = scp.received();
    assert_eq!(files.len(), 1, "{files:?}");
    let mut c = Command::new("dcmdump");
    c.args(["+P", "SOPInstanceUID"]).arg(&files[0]);
    assert!(output_of(c).contains(&sop_uid));

    // A PACS whose certificate another CA signed is not trusted; without a client certificate
    // the PACS refuses us. Neither stores anything; both are retried (a configuration to fix).
    let stranger = new_ca("another CA");
    let stranger_file = dir.path().join("stranger.pem");
    std::fs::write(&stranger_file, stranger.0.pem()).unwrap();
    for (what, tls) in [
        (
            "untrusted PACS",
            tls(&stranger_file, Some((&our_cert, &our_key))),
        ),
        ("no client certificate", tls(&ca_file, None)),
        ("plain DICOM", None),
    ] {
        let outcome = store(tls).deliver(&body).await;
        assert!(
            matches!(outcome, Outcome::Unavailable(_)),
            "{what}: {outcome:?}"
        );
    }
    assert_eq!(scp.received().len(), 1, "nothing more stored");
}

/// A request the STOW-RS server received: its headers and body.
type Received = (axum::http::HeaderMap, Vec<u8>);

#[derive(Clone, Default)]
struct StowLog(std::sync::Arc<std::sync::Mutex<Vec<Received>>>);

async fn stow_post(
    axum::extract::State(log): axum::extract::State<StowLog>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> (axum::http::StatusCode, &'static str) {
    let mut l = log.0.lock().unwrap();
    l.push((headers, body.to_vec()));
    if l.len() == 1 {
        (axum::http::StatusCode::OK, "{}")
    } else {
        // What a PACS answers when it refuses the instance (PS3.18 §10.5.3: 409 with reasons).
        (
            axum::http::StatusCode::CONFLICT,
            r#"{"00081198":{"vr":"SQ"},"comment":"SOP class not supported"}"#,
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stow_rs_posts_the_sr_as_multipart_related_with_the_token_and_a_409_is_a_refusal() {
    use cxrflow_results::destination::stow::StowServer;
    let dir = tempfile::tempdir().unwrap();
    let (path, sop_uid) = sr_file(TriageTier::Critical, dir.path());
    let file = std::fs::read(&path).unwrap();
    let log = StowLog::default();
    let port = free_port();
    let app = axum::Router::new()
        .route("/dicomweb/studies", axum::routing::post(stow_post))
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let token = dir.path().join("token");
    std::fs::write(&token, "stow-token\n").unwrap();
    let stow = StowServer::new(
        format!("http://127.0.0.1:{port}/dicomweb/"),
        Some(token),
        Duration::from_secs(5),
    )
    .unwrap();

    assert_eq!(stow.deliver(&file).await, Outcome::Delivered);
    let (headers, body) = log.0.lock().unwrap()[0].clone();
    let ct = headers["content-type"].to_str().unwrap().to_string();
    assert!(
        ct.starts_with("multipart/related; type=\"application/dicom\"; boundary="),
        "{ct}"
    );
    assert_eq!(headers["authorization"], "Bearer stow-token");
    // The one part is the SR file, byte for byte, and DCMTK reads it.
    let boundary = ct.rsplit("boundary=").next().unwrap();
    let head = format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n");
    let tail = format!("\r\n--{boundary}--\r\n");
    assert!(body.starts_with(head.as_bytes()) && body.ends_with(tail.as_bytes()));
    let part = &body[head.len()..body.len() - tail.len()];
    assert_eq!(part, &file[..]);
    let received = dir.path().join("received.dcm");
    std::fs::write(&received, part).unwrap();
    let mut c = Command::new("dcmdump");
    c.args(["+P", "SOPInstanceUID"]).arg(&received);
    assert!(output_of(c).contains(&sop_uid));

    match stow.deliver(&file).await {
        Outcome::Refused(answer) => {
            assert!(answer.starts_with("HTTP 409: "), "{answer}");
            assert!(answer.contains("SOP class not supported"), "{answer}");
        }
        other => panic!("a 409 is a refusal, got {other:?}"),
    }
    let absent = StowServer::new(
        format!("http://127.0.0.1:{}", free_port()),
        None,
        Duration::from_secs(2),
    )
    .unwrap();
    assert!(matches!(
        absent.deliver(&file).await,
        Outcome::Unavailable(_)
    ));
}

/// dciodvfy's (dicom3tools) complaints about a file: every Error line, and the Warning lines
/// other than the two expected ones (the empty patient and study ids a DICOMDIR would want: no
/// PHI travels; the local coding scheme 99CXRFLOW, declared in the file but not in its list).
fn dciodvfy_complaints(path: &std::path::Path) -> (String, Vec<String>) {
    let out = Command::new("dciodvfy")
        .arg(path)
        .output()
        .expect("dciodvfy (Debian dicom3tools, from scripts/prereqs.sh)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let complaints = text
        .lines()
        .filter(|l| l.starts_with("Error") || l.starts_with("Warning"))
        .filter(|l| {
            !(l.contains("needed to build DICOMDIR - Patient ID")
                || l.contains("needed to build DICOMDIR - Study ID")
                || l.contains("Unrecognized defined term <99CXRFLOW>"))
        })
        .map(str::to_string)
        .collect();
    (text, complaints)
}

#[test]
fn dciodvfy_finds_no_error_in_the_srs_and_does_in_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    for tier in [TriageTier::Critical, TriageTier::NotAssessable] {
        let (path, _) = sr_file(tier, dir.path());
        let (text, complaints) = dciodvfy_complaints(&path);
        assert!(
            text.contains("ComprehensiveSR"),
            "IOD not recognised:\n{text}"
        );
        assert!(complaints.is_empty(), "{tier:?}: {complaints:#?}\n{text}");
    }
    // Negative control: without its Completion Flag (type 1) the document is not a valid SR.
    let (path, _) = sr_file(TriageTier::Critical, dir.path());
    let mut obj = dicom_object::open_file(&path).unwrap();
    obj.remove_element(dicom_dictionary_std::tags::COMPLETION_FLAG);
    let broken = dir.path().join("broken.dcm");
    obj.write_to_file(&broken).unwrap();
    let (text, complaints) = dciodvfy_complaints(&broken);
    assert!(
        complaints
            .iter()
            .any(|l| l.starts_with("Error") && l.contains("<CompletionFlag>")),
        "{text}"
    );
}
