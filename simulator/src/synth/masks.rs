//! Real lung masks: torchxrayvision's `semantic_masks_v7labs_lungs.zip`.
//!
//! The archive holds one folder, `semantic_masks_v7labs_lungs/`, with ~517 single-channel masks
//! (white lungs on black) of frontal chest radiographs from many sources. Every entry is a PNG
//! whatever its extension says (`.jpg`, `.jpeg`, `.png`, `.PNG`), so the format is sniffed from
//! the bytes. Sizes range from ~200 px to over 4000 px and framing varies (some crop the
//! lungs), so each mask is cropped to its lungs' bounding box, reduced to a small grid, and
//! kept only if it looks like two whole lungs. In the real archive about 80 entries are
//! empty and about 30 have lungs cut off at the image border; ~400 remain.
//!
//! The masks are all frontal; lateral views use parametric lungs
//! ([`crate::synth::lungs::parametric_lateral`]), since a frontal lung outline stretched sideways does
//! not look like a lateral chest.

use crate::synth::lungs::{LungField, GRID};
use rayon::prelude::*;
use std::fs::File;
use std::io::{self, Cursor, Read};
use std::path::{Path, PathBuf};

/// Entries larger than this are not masks of this archive's kind.
const MAX_ENTRY_BYTES: u64 = 32 << 20;

#[derive(Debug, thiserror::Error)]
pub enum MaskError {
    #[error("cannot read mask archive {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a readable zip archive: {source}")]
    Zip {
        path: PathBuf,
        #[source]
        source: zip::result::ZipError,
    },
    #[error("{path}: none of its {rejected} entries is a usable lung mask")]
    NoUsableMasks { path: PathBuf, rejected: usize },
}

/// Lung fields from real (frontal) masks.
#[derive(Debug, Clone, Default)]
pub struct LungMaskLibrary {
    pub(crate) frontal: Vec<LungField>,
    /// Entry names of the masks in use, in library order.
    pub names: Vec<String>,
    /// `(entry name, reason)` for each entry left out.
    pub rejected: Vec<(String, String)>,
}

impl LungMaskLibrary {
    /// Reads every mask in the zip at `path` (decoding in parallel).
    pub fn load_zip(path: &Path) -> Result<Self, MaskError> {
        let file = File::open(path).map_err(|source| MaskError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut archive = zip::ZipArchive::new(file).map_err(|source| MaskError::Zip {
            path: path.to_path_buf(),
            source,
        })?;
        let mut entries: Vec<(String, Result<Vec<u8>, String>)> = Vec::new();
        for i in 0..archive.len() {
            let mut entry = archive.by_index(i).map_err(|source| MaskError::Zip {
                path: path.to_path_buf(),
                source,
            })?;
            let name = entry.name().to_string();
            let base = name.rsplit('/').next().unwrap_or_default();
            if entry.is_dir()
                || base.is_empty()
                || base.starts_with('.')
                || name.contains("__MACOSX")
            {
                continue;
            }
            let bytes = if entry.size() > MAX_ENTRY_BYTES {
                Err(format!("entry is {} bytes", entry.size()))
            } else {
                let mut buf = Vec::with_capacity(entry.size() as usize);
                entry
                    .read_to_end(&mut buf)
                    .map(|_| buf)
                    .map_err(|e| e.to_string())
            };
            entries.push((name, bytes));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let total = entries.len();

        let decoded: Vec<(String, Result<LungField, String>)> = entries
            .into_par_iter()
            .map(|(name, bytes)| {
                let field = bytes.and_then(|b| mask_field(&b));
                (name, field)
            })
            .collect();
        let mut lib = LungMaskLibrary::default();
        for (name, result) in decoded {
            match result {
                Ok(field) => {
                    lib.frontal.push(field);
                    lib.names.push(name);
                }
                Err(reason) => lib.rejected.push((name, reason)),
            }
        }
        if lib.frontal.is_empty() {
            return Err(MaskError::NoUsableMasks {
                path: path.to_path_buf(),
                rejected: total,
            });
        }
        Ok(lib)
    }

    /// Number of usable masks.
    pub fn len(&self) -> usize {
        self.frontal.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frontal.is_empty()
    }
}

/// Decodes one mask and turns it into a lung field.
fn mask_field(bytes: &[u8]) -> Result<LungField, String> {
    let mut reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(8192);
    limits.max_image_height = Some(8192);
    limits.max_alloc = Some(256 << 20);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| e.to_string())?.into_luma8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let raw = img.into_raw();
    let on = |x: usize, y: usize| raw[y * w + x] > 127;

    let (mut x0, mut x1, mut y0, mut y1) = (usize::MAX, 0, usize::MAX, 0);
    for y in 0..h {
        for x in 0..w {
            if on(x, y) {
                x0 = x0.min(x);
                x1 = x1.max(x);
                y0 = y0.min(y);
                y1 = y1.max(y);
            }
        }
    }
    if x0 == usize::MAX || x1 - x0 < 32 || y1 - y0 < 32 {
        return Err("mask is empty or tiny".into());
    }
    // Lungs touching the image border are cut off: their shape is not a whole lung.
    if x0 == 0 || y0 == 0 || x1 + 1 == w || y1 + 1 == h {
        return Err("lungs touch the image border".into());
    }
    let (bw, bh) = (x1 + 1 - x0, y1 + 1 - y0);
    let mut cov = vec![0.0f32; GRID * GRID];
    let mut count = vec![0u32; GRID * GRID];
    for y in y0..=y1 {
        let gy = ((y - y0) * GRID / bh).min(GRID - 1);
        for x in x0..=x1 {
            let gx = ((x - x0) * GRID / bw).min(GRID - 1);
            cov[gy * GRID + gx] += f32::from(u8::from(on(x, y)));
            count[gy * GRID + gx] += 1;
        }
    }
    if count.contains(&0) {
        return Err("mask is smaller than the field grid".into());
    }
    for (c, n) in cov.iter_mut().zip(&count) {
        *c /= *n as f32;
    }
    Ok(LungField::from_coverage(cov, bw as f32 / bh as f32, true)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn png_mask(w: u32, h: u32, lungs: bool) -> Vec<u8> {
        let img = image::GrayImage::from_fn(w, h, |x, y| {
            let (u, v) = (x as f32 / w as f32, y as f32 / h as f32);
            let in_lung = (0.15..0.8).contains(&v)
                && ((0.12..0.42).contains(&u) || (0.58..0.88).contains(&u));
            image::Luma([if lungs && in_lung { 255 } else { 0 }])
        });
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn loads_masks_whatever_their_extension_and_rejects_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("masks.zip");
        let mut zip = zip::ZipWriter::new(File::create(&path).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        zip.add_directory("semantic_masks_v7labs_lungs/", opts)
            .unwrap();
        for (name, bytes) in [
            (
                "semantic_masks_v7labs_lungs/a.jpg",
                png_mask(300, 280, true),
            ),
            (
                "semantic_masks_v7labs_lungs/b.PNG",
                png_mask(500, 500, true),
            ),
            (
                "semantic_masks_v7labs_lungs/empty.png",
                png_mask(200, 200, false),
            ),
            (
                "semantic_masks_v7labs_lungs/junk.jpeg",
                b"not an image".to_vec(),
            ),
        ] {
            zip.start_file(name, opts).unwrap();
            zip.write_all(&bytes).unwrap();
        }
        zip.finish().unwrap();

        let lib = LungMaskLibrary::load_zip(&path).unwrap();
        assert_eq!(lib.len(), 2);
        assert_eq!(lib.rejected.len(), 2);
        assert_eq!(lib.frontal[0].sides.len(), 2);
    }

    #[test]
    fn missing_archive_is_an_error() {
        let err = LungMaskLibrary::load_zip(Path::new("/nonexistent/masks.zip")).unwrap_err();
        assert!(matches!(err, MaskError::Io { .. }));
    }
}
