//! Statistics every service computes the same way: AUROC by ranks (feedback's live
//! performance, drift's performance test, the simulator's report and reading room). One
//! implementation, so a NaN score means the same everywhere: it is skipped (a model that gave
//! no finite score did not rank the study).

/// Area under the ROC curve of `(score, positive)` pairs, by the Mann–Whitney U statistic:
///
/// ```text
/// AUC = (R₊ − n₊(n₊ + 1)/2) / (n₊ · n₋)
/// ```
///
/// where `R₊` is the sum of the ranks of the positives in the pooled sample sorted by score
/// (ascending, ranks from 1), with tied scores given the mean of the ranks they span
/// ("midranks"), `n₊` the number of positives and `n₋` the number of negatives
/// (Hanley & McNeil 1982, Radiology 143:29–36; Mason & Graham 2002). With midranks this equals
/// the probability that a random positive outscores a random negative, counting ties as ½ —
/// exactly the O(n²) pair count, in O(n log n).
///
/// `None` when either class is empty (AUROC undefined). Non-finite scores are skipped.
pub fn auroc(pairs: &[(f64, bool)]) -> Option<f64> {
    let mut v: Vec<(f64, bool)> = pairs
        .iter()
        .copied()
        .filter(|(s, _)| s.is_finite())
        .collect();
    let n_pos = v.iter().filter(|(_, p)| *p).count();
    let n_neg = v.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1].0 == v[i].0 {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share the midrank.
        let midrank = (i + 1 + j + 1) as f64 / 2.0;
        let pos_in_tie = v[i..=j].iter().filter(|(_, p)| *p).count();
        rank_sum_pos += midrank * pos_in_tie as f64;
        i = j + 1;
    }
    let (np, nn) = (n_pos as f64, n_neg as f64);
    Some((rank_sum_pos - np * (np + 1.0) / 2.0) / (np * nn))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition, counted pair by pair: P(score₊ > score₋) + ½ P(score₊ = score₋).
    fn brute_force_auroc(pairs: &[(f64, bool)]) -> Option<f64> {
        let pos: Vec<f64> = pairs.iter().filter(|p| p.1).map(|p| p.0).collect();
        let neg: Vec<f64> = pairs.iter().filter(|p| !p.1).map(|p| p.0).collect();
        if pos.is_empty() || neg.is_empty() {
            return None;
        }
        let mut wins = 0.0;
        for p in &pos {
            for n in &neg {
                wins += if p > n {
                    1.0
                } else if p == n {
                    0.5
                } else {
                    0.0
                };
            }
        }
        Some(wins / (pos.len() * neg.len()) as f64)
    }

    #[test]
    fn known_values() {
        assert_eq!(auroc(&[(0.1, false), (0.9, true)]), Some(1.0));
        assert_eq!(auroc(&[(0.9, false), (0.1, true)]), Some(0.0));
        assert_eq!(auroc(&[(0.5, false), (0.5, true)]), Some(0.5));
        assert_eq!(auroc(&[(0.5, true), (0.7, true)]), None);
        assert_eq!(auroc(&[]), None);
        // 3 positives, 2 negatives, one tie: wins = 2 + 1.5 + 2 = 5.5 of 6... counted by hand:
        // pos {0.8, 0.4, 0.9}, neg {0.4, 0.2}: 0.8 beats both (2), 0.4 ties 0.4 and beats 0.2
        // (1.5), 0.9 beats both (2) → 5.5 / 6.
        let v = [
            (0.8, true),
            (0.4, true),
            (0.9, true),
            (0.4, false),
            (0.2, false),
        ];
        assert!((auroc(&v).unwrap() - 5.5 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn non_finite_scores_are_skipped() {
        let v = [
            (f64::NAN, true),
            (0.9, true),
            (0.1, false),
            (f64::INFINITY, false),
        ];
        assert_eq!(auroc(&v), Some(1.0));
        assert_eq!(auroc(&[(f64::NAN, true), (0.1, false)]), None);
    }

    proptest! {
        #[test]
        fn ranks_equal_pair_counting(pairs in proptest::collection::vec(((0u8..12).prop_map(|x| x as f64 / 11.0), any::<bool>()), 0..200)) {
            let a = auroc(&pairs);
            let b = brute_force_auroc(&pairs);
            match (a, b) {
                (Some(a), Some(b)) => prop_assert!((a - b).abs() < 1e-9, "{a} vs {b}"),
                (a, b) => prop_assert_eq!(a, b),
            }
        }
    }
}
