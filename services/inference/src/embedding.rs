//! Prediction.embedding: a fixed random projection of the model's pooled `features` output to
//! [`EMBEDDING_DIMS`] dimensions, for drift's representation channel.
//!
//! The projection is an Achlioptas sign matrix: entry (i, j) is ±1/√16, the sign drawn from
//! SplitMix64 seeded with [`PROJECTION_SEED`] XOR the feature width D, in row-major order
//! (i over the 16 outputs, j over D). It depends on nothing else, so every replica and every
//! release projects the same features to the same embedding (distances are preserved in
//! expectation, Johnson–Lindenstrauss); a model with a different D gets a different matrix,
//! and its embeddings are not comparable with another model's, by design.

use std::sync::{Arc, Mutex};

/// Length of every embedding.
pub const EMBEDDING_DIMS: usize = 16;
/// Seed of the projection (documented above; changing it invalidates drift references).
pub const PROJECTION_SEED: u64 = 0x00C0_FFEE_CF10_0016;

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The 16×D projection matrix (row-major) for features of width `d`.
pub fn projection(d: usize) -> Vec<f32> {
    let mut state = PROJECTION_SEED ^ d as u64;
    let v = 1.0 / (EMBEDDING_DIMS as f32).sqrt();
    (0..EMBEDDING_DIMS * d)
        .map(|_| {
            if splitmix64(&mut state) & 1 == 1 {
                v
            } else {
                -v
            }
        })
        .collect()
}

/// Projects one feature row with a matrix from [`projection`].
pub fn project(matrix: &[f32], features: &[f32]) -> Vec<f32> {
    let d = features.len();
    (0..EMBEDDING_DIMS)
        .map(|i| {
            matrix[i * d..(i + 1) * d]
                .iter()
                .zip(features)
                .map(|(a, b)| a * b)
                .sum()
        })
        .collect()
}

/// Embeds feature rows, building the projection for their width once and keeping it (a
/// model's width never changes; another width gets its own matrix).
#[derive(Debug, Default)]
pub struct Embedder {
    projection: Mutex<Option<(usize, Arc<Vec<f32>>)>>,
}

impl Embedder {
    /// The embedding of one features row.
    pub fn embed(&self, features: &[f32]) -> Vec<f32> {
        let d = features.len();
        let m = {
            let mut p = self.projection.lock().unwrap_or_else(|e| e.into_inner());
            match &*p {
                Some((pd, m)) if *pd == d => m.clone(),
                _ => {
                    let m = Arc::new(projection(d));
                    *p = Some((d, m.clone()));
                    m
                }
            }
        };
        project(&m, features)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_is_fixed_and_linear() {
        assert_eq!(projection(1024), projection(1024));
        assert_ne!(projection(16), projection(17)[..16 * 16].to_vec());
        let m = projection(4);
        let a = project(&m, &[1.0, 2.0, 3.0, 4.0]);
        let b = project(&m, &[2.0, 4.0, 6.0, 8.0]);
        assert_eq!(a.len(), EMBEDDING_DIMS);
        for (x, y) in a.iter().zip(&b) {
            assert!((2.0 * x - y).abs() < 1e-5);
        }
    }
}
