//! Sites: how the traffic is spread over the hospital's sites (the `site_id` of every event).

use rand::Rng;

/// Sites and how much of the traffic each sends.
#[derive(Debug, Clone)]
pub struct SiteMix {
    names: Vec<String>,
    cumulative: Vec<f64>,
}

impl SiteMix {
    /// `n` sites named `site-01` …; `weights` (any positive scale) for the first sites, 1 for
    /// the rest; non-positive or non-finite weights count as 0 (all 0: equal shares).
    pub fn new(n: usize, weights: &[f64]) -> Self {
        let n = n.max(1);
        let names = (1..=n).map(|i| format!("site-{i:02}")).collect();
        let mut w: Vec<f64> = (0..n)
            .map(|i| weights.get(i).copied().unwrap_or(1.0))
            .map(|x| if x.is_finite() && x > 0.0 { x } else { 0.0 })
            .collect();
        if w.iter().all(|x| *x == 0.0) {
            w = vec![1.0; n];
        }
        let total: f64 = w.iter().sum();
        let mut acc = 0.0;
        let cumulative = w
            .iter()
            .map(|x| {
                acc += x / total;
                acc
            })
            .collect();
        SiteMix { names, cumulative }
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The site whose patients change in [`DriftScenario::SiteDemographics`]: the last one.
    pub fn drifting_site(&self) -> &str {
        self.names.last().map_or("site-01", String::as_str)
    }

    /// Draws a site by weight.
    pub fn draw(&self, rng: &mut impl Rng) -> &str {
        let u: f64 = rng.random();
        let i = self
            .cumulative
            .iter()
            .position(|c| u < *c)
            .unwrap_or(self.names.len() - 1);
        &self.names[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn site_weights_shape_the_mix() {
        let mix = SiteMix::new(3, &[3.0, 1.0, 0.0]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut counts = std::collections::HashMap::<String, usize>::new();
        for _ in 0..4_000 {
            *counts.entry(mix.draw(&mut rng).to_string()).or_default() += 1;
        }
        assert!((counts["site-01"] as f64 / 4_000.0 - 0.75).abs() < 0.04);
        assert!(!counts.contains_key("site-03"));
        assert_eq!(mix.drifting_site(), "site-03");
        assert_eq!(SiteMix::new(2, &[0.0, -1.0]).names().len(), 2);
    }
}
