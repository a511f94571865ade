//! The images both designs are sent: frontal studies of the replay dataset's held-out table
//! (`heldout.csv`, CheXpert format), read into memory once, each marked critical when its
//! ground-truth labels hold a positive finding that the model manifest lists as critical.
//! Sends cycle through them under fresh UIDs, so the ingest ledger sees every send as a new
//! study. (The CSV is read here rather than through the simulator crate, whose replay API is
//! the simulator's own business.)

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use cxrflow_common::time::now_millis;
use cxrflow_contracts::{OrderPriority, ScanEvent, StudyContext};
use cxrflow_inference::manifest::Manifest;
use sha2::{Digest, Sha256};

/// How a scan event carries its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ScanImages {
    /// A `file://` URI of the image on disk, as cxrflow's DICOM gateway publishes it after
    /// writing the file, or a PACS gateway pointing at its export share: the image never rides
    /// on Kafka (ARCHITECTURE: "large images never ride on Kafka").
    Reference,
    /// The PNG bytes inside the event (a gateway that cannot share files).
    Inline,
}

/// One study as the bench sends it.
#[derive(Clone)]
pub struct Image {
    /// The image file's bytes (PNG, or DICOM in the full-size corpus).
    pub png: Arc<Vec<u8>>,
    /// `image/png` or `application/dicom`.
    pub media_type: &'static str,
    /// The image file (absolute), for events that carry a reference.
    pub path: PathBuf,
    pub critical: bool,
    pub view: String,
    pub sex: Option<String>,
    pub age: Option<i32>,
    /// (URI, sha256) of the file in the stack's blob store at its content address, where the
    /// gateway would have put it ([`Corpus::stored_in`]).
    pub stored: Option<(String, String)>,
}

pub struct Corpus {
    pub images: Vec<Image>,
    /// The manifest's critical findings.
    pub critical_findings: Vec<String>,
    /// Distinguishes this run's study UIDs from any earlier run's.
    pub run_tag: String,
    /// The dataset directory the images' files lie under.
    root: PathBuf,
}

/// A DICOM UID derived from a name (`2.25.` + a 128-bit hash as a decimal integer).
pub fn derived_uid(name: &str) -> String {
    let d = Sha256::digest(name.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    format!("2.25.{}", u128::from_be_bytes(b))
}

/// The directory holding `CheXpert-v1.0-small/` (the row paths are relative to it).
fn dataset_parent(root: &Path) -> PathBuf {
    if root.join("heldout.csv").is_file() {
        root.parent()
            .map_or_else(|| root.to_path_buf(), Path::to_path_buf)
    } else {
        root.to_path_buf()
    }
}

impl Corpus {
    /// Up to `max` frontal studies of the held-out table under `root`.
    pub fn load(root: &Path, manifest: &Manifest, max: usize) -> anyhow::Result<Corpus> {
        let parent = dataset_parent(root);
        let table = ["CheXpert-v1.0-small", "CheXpert-v1.0"]
            .iter()
            .map(|d| parent.join(d).join("heldout.csv"))
            .find(|p| p.is_file())
            .with_context(|| {
                format!(
                    "no CheXpert-v1.0(-small)/heldout.csv under {} (`cxrflow sim synth` or \
                     scripts/make-test-data.sh makes a dataset)",
                    root.display()
                )
            })?;
        let critical_findings: Vec<String> = manifest
            .findings
            .iter()
            .filter(|f| f.critical)
            .map(|f| f.name.clone())
            .collect();
        let mut csv = csv::Reader::from_path(&table)?;
        let headers = csv.headers()?.clone();
        let col = |name: &str| headers.iter().position(|h| h == name);
        let (path_c, view_c) = (col("Path"), col("Frontal/Lateral"));
        let (ap_c, sex_c, age_c) = (col("AP/PA"), col("Sex"), col("Age"));
        let critical_c: Vec<usize> = critical_findings.iter().filter_map(|f| col(f)).collect();
        let mut images = Vec::new();
        for row in csv.records() {
            if images.len() >= max {
                break;
            }
            let row = row?;
            let cell = |c: Option<usize>| c.and_then(|c| row.get(c)).unwrap_or("").trim();
            if cell(view_c) != "Frontal" {
                continue; // the frontal gate skips inference for laterals: not a fair load
            }
            let file = std::path::absolute(parent.join(cell(path_c)).with_extension("png"))?;
            let png =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let critical = critical_c
                .iter()
                .any(|c| row.get(*c).and_then(|v| v.trim().parse::<f64>().ok()) == Some(1.0));
            let sex = match cell(sex_c) {
                "Male" => Some("M".to_string()),
                "Female" => Some("F".to_string()),
                _ => None,
            };
            images.push(Image {
                png: Arc::new(png),
                media_type: "image/png",
                path: file,
                critical,
                view: if cell(ap_c) == "AP" { "AP" } else { "PA" }.into(),
                sex,
                age: cell(age_c).parse().ok(),
                stored: None,
            });
        }
        anyhow::ensure!(
            !images.is_empty(),
            "no frontal studies in {}",
            table.display()
        );
        Ok(Corpus {
            images,
            root: std::path::absolute(&parent)?,
            critical_findings,
            run_tag: format!("{:08x}", rand::random::<u32>()),
        })
    }

    /// The full-size corpus: the first `images` frontal studies of the same held-out table
    /// (the same rows, findings and labels as the first of `small`'s), rendered again at
    /// detector size with the dataset's `seed` (the same patients) and wrapped as DICOM CR in
    /// each of `syntaxes` (`bench/python/full_size_dicom.py` names; the studies take the
    /// syntaxes in turn) under `dir`, which must outlive the run: the scan events point at the
    /// files there.
    pub fn full_size(
        small: &Corpus,
        dataset: &Path,
        seed: u64,
        images: usize,
        syntaxes: &[String],
        python: &Path,
        dir: &Path,
    ) -> anyhow::Result<Corpus> {
        anyhow::ensure!(
            !syntaxes.is_empty(),
            "no transfer syntax for the full-size corpus"
        );
        std::fs::create_dir_all(dir)?;
        let images = images.min(small.images.len());
        crate::full_size::render_heldout(dataset, seed, None, images, dir)?;
        crate::full_size::wrap_as_dicom(python, dir, syntaxes)?;
        let mut out = Vec::with_capacity(images);
        for (i, like) in small.images.iter().take(images).enumerate() {
            let syntax = &syntaxes[i % syntaxes.len()];
            let file = std::path::absolute(dir.join(format!("{i:04}.{syntax}.dcm")))?;
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            out.push(Image {
                png: Arc::new(bytes),
                media_type: "application/dicom",
                path: file,
                critical: like.critical,
                view: like.view.clone(),
                sex: like.sex.clone(),
                age: like.age,
                stored: None,
            });
        }
        Ok(Corpus {
            images: out,
            critical_findings: small.critical_findings.clone(),
            run_tag: format!("{}-full", small.run_tag),
            root: std::path::absolute(dir)?,
        })
    }

    /// This corpus with every file written to the blob store at `store_url` under its content
    /// address, as the DICOM gateway writes what it receives when it shares ingest's store
    /// (compose, Helm, `cxrflow up`): its scan events then name that object and its sha256, as
    /// the gateway's do, and ingest references the object instead of reading it.
    pub async fn stored_in(&self, store_url: &str) -> anyhow::Result<Corpus> {
        let store = cxrflow_common::blob::BlobStore::open(store_url, &[])?;
        let mut images = Vec::with_capacity(self.images.len());
        for img in &self.images {
            let (uri, sha, _) = store
                .put_content_addressed(img.png.as_ref().clone().into())
                .await?;
            images.push(Image {
                stored: Some((uri, sha)),
                ..img.clone()
            });
        }
        Ok(Corpus {
            images,
            critical_findings: self.critical_findings.clone(),
            run_tag: self.run_tag.clone(),
            root: self.root.clone(),
        })
    }

    /// Mean size of the corpus's files, MiB.
    pub fn mean_mib(&self) -> f64 {
        self.images.iter().map(|i| i.png.len() as f64).sum::<f64>()
            / self.images.len().max(1) as f64
            / (1024.0 * 1024.0)
    }

    /// The image of send number `i`.
    pub fn image(&self, i: usize) -> &Image {
        &self.images[i % self.images.len()]
    }

    /// Share of the corpus that is critical.
    pub fn critical_share(&self) -> f64 {
        self.images.iter().filter(|i| i.critical).count() as f64 / self.images.len() as f64
    }

    /// The study UID of send `i` in `phase`.
    pub fn uid(&self, phase: &str, i: usize) -> String {
        derived_uid(&format!("bench/{}/{phase}/{i}/study", self.run_tag))
    }

    /// The directory every image file lies under (ingest must be allowed to read it).
    pub fn image_root(&self) -> PathBuf {
        self.root.clone()
    }

    /// The scan event a PACS gateway would publish for send `i` of `phase`: the image inline or
    /// by reference, UIDs unique to this run, phase and send, `published_at` = now.
    pub fn scan_event(&self, phase: &str, i: usize, images: ScanImages) -> ScanEvent {
        let img = self.image(i);
        let base = format!("bench/{}/{phase}/{i}", self.run_tag);
        let now = now_millis();
        ScanEvent {
            event_id: derived_uid(&format!("{base}/event")),
            study: StudyContext {
                site_id: format!("site-{:02}", 1 + i % 2),
                study_instance_uid: self.uid(phase, i),
                series_instance_uid: derived_uid(&format!("{base}/series")),
                sop_instance_uid: derived_uid(&format!("{base}/sop")),
                accession_number: None,
                patient_ref: format!("pt-bench-{:06}", i % self.images.len()),
                modality: "CR".into(),
                view_position: Some(img.view.clone()),
                patient_age_years: img.age,
                patient_sex: img.sex.clone(),
                acquired_at: now,
                published_at: now,
                priority_hint: OrderPriority::Routine,
            },
            media_type: img.media_type.into(),
            image_inline: (images == ScanImages::Inline).then(|| img.png.as_ref().clone()),
            image_uri: (images == ScanImages::Reference).then(|| match &img.stored {
                Some((uri, _)) => uri.clone(),
                None => format!("file://{}", img.path.display()),
            }),
            image_sha256: img
                .stored
                .as_ref()
                .filter(|_| images == ScanImages::Reference)
                .map(|(_, sha)| sha.clone()),
            image_size_bytes: Some(img.png.len() as i64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The full-size corpus holds the small one's first studies as DICOM files that preprocess
    /// decodes at detector size, and its scan events point at them. Needs what scripts/test.sh
    /// prepares: the synthetic dataset and models (`CXRFLOW_DATASET_ROOT`,
    /// `CXRFLOW_MODELS_DIR`) and the tools venv (pydicom, Pillow).
    #[test]
    fn the_full_size_corpus_is_the_small_ones_studies_as_dicom() {
        let var = |v: &str| {
            std::env::var_os(v).map(PathBuf::from).unwrap_or_else(|| {
                panic!("{v} is not set: source $CXRFLOW_DATA/test-data.env (scripts/test.sh does)")
            })
        };
        let (root, models) = (var("CXRFLOW_DATASET_ROOT"), var("CXRFLOW_MODELS_DIR"));
        let model = cxrflow_inference::manifest::resolve(&models, "cxr-small").unwrap();
        let small = Corpus::load(&root, &model.manifest, 3).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let syntaxes = ["native".to_string(), "jpeg".to_string()];
        let python = crate::full_size::tools_python("venv");
        let full = Corpus::full_size(&small, &root, 7, 3, &syntaxes, &python, dir.path()).unwrap();
        assert_eq!(full.images.len(), 3);
        for (i, (f, s)) in full.images.iter().zip(&small.images).enumerate() {
            let name = format!("{i:04}.{}.dcm", syntaxes[i % 2]);
            assert!(f.path.ends_with(&name), "{}", f.path.display());
            assert_eq!(
                (f.media_type, f.critical),
                ("application/dicom", s.critical)
            );
            assert_eq!(&f.png[128..132], b"DICM", "{name}");
            let img = cxrflow_preprocess::decode::decode(&f.png, &Default::default()).unwrap();
            assert!(img.original_width >= 2000, "{name}: {}", img.original_width);
        }
        assert!(full.mean_mib() > 1.0, "{}", full.mean_mib());
        assert_eq!(full.image_root(), std::path::absolute(dir.path()).unwrap());
        let ev = full.scan_event("flood", 4, ScanImages::Reference);
        assert_eq!(ev.media_type, "application/dicom");
        assert_eq!(
            ev.image_uri,
            Some(format!("file://{}", full.images[1].path.display()))
        );
        assert_ne!(
            ev.study.study_instance_uid,
            small
                .scan_event("flood", 4, ScanImages::Reference)
                .study
                .study_instance_uid
        );
    }

    #[test]
    fn derived_uids_follow_the_dicom_grammar() {
        let u = derived_uid("bench/x/0/study");
        assert!(u.len() <= 64 && u.starts_with("2.25."));
        assert!(u[5..].bytes().all(|b| b.is_ascii_digit()));
        assert_ne!(u, derived_uid("bench/x/1/study"));
    }
}
