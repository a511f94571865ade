//! Full-size radiographs as a site's archive holds them, for the benches that decode DICOM:
//! held-out studies rendered again at detector size (about 2500×3000, 12 bits: the same seed
//! and lung masks as the dataset, so the same patient and findings), then wrapped as DICOM CR in
//! the transfer syntaxes asked for by `bench/python/full_size_dicom.py` (pydicom and Pillow,
//! DCMTK for the syntaxes it encodes).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use anyhow::{bail, Context};
use cxrflow_sim::{read_label_file, Drift, LungMaskLibrary, Renderer, ViewKind};

pub use cxrflow_sim::ImageSpec;

/// `$CXRFLOW_TOOLS/<venv>/bin/python` (CXRFLOW_TOOLS defaults to ~/.cache/cxrflow/tools).
pub fn tools_python(venv: &str) -> PathBuf {
    let tools = std::env::var("CXRFLOW_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| home().join(".cache/cxrflow/tools"));
    tools.join(venv).join("bin/python")
}

fn home() -> PathBuf {
    PathBuf::from(std::env::var("HOME").unwrap_or_default())
}

/// Renders the first `images` frontal studies of `dataset`'s held-out split at detector size
/// as 16-bit PNGs `dir/NNNN.png`; returns their study paths, in the same order.
pub fn render_heldout(
    dataset: &Path,
    seed: u64,
    masks: Option<&Path>,
    images: usize,
    dir: &Path,
) -> anyhow::Result<Vec<String>> {
    let csv = dataset.join("CheXpert-v1.0-small/heldout.csv");
    let table = read_label_file(&csv).with_context(|| format!("reading {}", csv.display()))?;
    let rows: Vec<_> = table
        .rows
        .into_iter()
        .filter(|r| r.view == ViewKind::Frontal)
        .take(images)
        .collect();
    if rows.is_empty() {
        bail!("no frontal rows in {}", csv.display());
    }
    let masks = masks.map(Path::to_path_buf).or_else(|| {
        let data = std::env::var("CXRFLOW_DATA")
            .map(PathBuf::from)
            .unwrap_or_else(|_| home().join(".cache/cxrflow/data"));
        Some(data.join("chexpert-labels/semantic_masks_v7labs_lungs.zip")).filter(|p| p.exists())
    });
    let masks = match masks {
        Some(p) => Some(Arc::new(
            LungMaskLibrary::load_zip(&p).with_context(|| format!("masks {}", p.display()))?,
        )),
        None => None,
    };
    let renderer = Renderer::new(seed, masks, ImageSpec::FULL_SIZE, Drift::NONE);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunks: Vec<Vec<(usize, &cxrflow_sim::ChexpertRow)>> = {
        let mut c = vec![Vec::new(); threads];
        for (i, r) in rows.iter().enumerate() {
            c[i % threads].push((i, r));
        }
        c
    };
    std::thread::scope(|s| -> anyhow::Result<()> {
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| {
                let renderer = &renderer;
                s.spawn(move || -> anyhow::Result<()> {
                    for (i, row) in chunk {
                        let png = renderer.render(row).encode_png()?;
                        std::fs::write(dir.join(format!("{i:04}.png")), png)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("render thread panicked"))??;
        }
        Ok(())
    })?;
    Ok(rows.iter().map(|r| r.path.clone()).collect())
}

/// Wraps every `dir/*.png` as `dir/NAME.SYNTAX.dcm` for each syntax
/// (`bench/python/full_size_dicom.py` lists them) with `python` (pydicom, Pillow).
pub fn wrap_as_dicom(python: &Path, dir: &Path, syntaxes: &[String]) -> anyhow::Result<()> {
    let status = Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("python/full_size_dicom.py"))
        .arg(dir)
        .args(syntaxes)
        .status()
        .with_context(|| {
            format!(
                "running bench/python/full_size_dicom.py with {} (pydicom and Pillow)",
                python.display()
            )
        })?;
    if !status.success() {
        bail!("bench/python/full_size_dicom.py failed: {status}");
    }
    Ok(())
}
