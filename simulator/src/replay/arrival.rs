//! When studies arrive: a small, pure arrival process. `rate` is always the *target mean* rate
//! over a long horizon, whatever the shape, so runs with different shapes carry the same load
//! and differ only in how it is spread:
//!
//! - constant: evenly spaced;
//! - Poisson: exponential gaps;
//! - diurnal: a Poisson process whose rate follows a compressed day, lowest at "midnight"
//!   (t = 0) and highest at "noon" (`rate · (1 − a·cos 2πt/day)`);
//! - bursts: a Poisson process at a base rate with periodic bursts at `factor` times it; the
//!   base is set so that the mean over a period is `rate`.
//!
//! The time-varying shapes are drawn by thinning (Lewis & Shedler): candidates at the peak
//! rate, each kept with probability `rate(t) / peak`.

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp};
use serde::Serialize;

/// The shape of the arrival process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Arrival {
    /// Evenly spaced at the rate.
    Constant,
    /// A Poisson process at the rate (exponential gaps).
    Poisson,
    /// A Poisson process whose rate follows a compressed day (`--day-s`, `--diurnal-amplitude`).
    Diurnal,
    /// A Poisson process with periodic bursts (`--burst-every-s`, `--burst-len-s`,
    /// `--burst-factor`).
    Bursts,
}

/// Everything that shapes arrivals.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ArrivalConfig {
    pub kind: Arrival,
    /// Target mean rate, studies per second.
    pub rate: f64,
    /// Diurnal: length of one compressed day, seconds.
    pub day_s: f64,
    /// Diurnal: relative swing of the rate around its mean, 0..=1.
    pub diurnal_amplitude: f64,
    /// Bursts: a burst starts every this many seconds …
    pub burst_every_s: f64,
    /// … and lasts this long (the end of each period, so a run starts calm).
    pub burst_len_s: f64,
    /// Bursts: rate during a burst, as a multiple of the base rate.
    pub burst_factor: f64,
}

impl ArrivalConfig {
    /// A shape with the default parameters for the others.
    pub fn new(kind: Arrival, rate: f64) -> Self {
        ArrivalConfig {
            kind,
            rate,
            day_s: 120.0,
            diurnal_amplitude: 0.8,
            burst_every_s: 30.0,
            burst_len_s: 5.0,
            burst_factor: 5.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ArrivalError {
    #[error("arrival rate must be positive and finite, got {0}")]
    Rate(f64),
    #[error("diurnal day must be positive and the amplitude within 0..=1 (day {day_s} s, amplitude {amplitude})")]
    Diurnal { day_s: f64, amplitude: f64 },
    #[error("bursts need 0 < burst length < period and a factor >= 1 (every {every_s} s, length {len_s} s, factor {factor})")]
    Bursts {
        every_s: f64,
        len_s: f64,
        factor: f64,
    },
}

/// A seeded arrival process: [`ArrivalProcess::next_arrival`] yields increasing arrival times
/// in seconds from the start.
#[derive(Debug, Clone)]
pub struct ArrivalProcess {
    cfg: ArrivalConfig,
    /// Highest instantaneous rate (thinning envelope).
    peak: f64,
    /// Burst shape: the rate outside bursts.
    base: f64,
    t: f64,
    rng: rand::rngs::StdRng,
}

impl ArrivalProcess {
    pub fn new(cfg: ArrivalConfig, seed: u64) -> Result<Self, ArrivalError> {
        if !(cfg.rate.is_finite() && cfg.rate > 0.0) {
            return Err(ArrivalError::Rate(cfg.rate));
        }
        let (peak, base) = match cfg.kind {
            Arrival::Constant | Arrival::Poisson => (cfg.rate, cfg.rate),
            Arrival::Diurnal => {
                let ok = cfg.day_s.is_finite()
                    && cfg.day_s > 0.0
                    && (0.0..=1.0).contains(&cfg.diurnal_amplitude);
                if !ok {
                    return Err(ArrivalError::Diurnal {
                        day_s: cfg.day_s,
                        amplitude: cfg.diurnal_amplitude,
                    });
                }
                (cfg.rate * (1.0 + cfg.diurnal_amplitude), cfg.rate)
            }
            Arrival::Bursts => {
                let ok = cfg.burst_every_s.is_finite()
                    && cfg.burst_len_s > 0.0
                    && cfg.burst_len_s < cfg.burst_every_s
                    && cfg.burst_factor.is_finite()
                    && cfg.burst_factor >= 1.0;
                if !ok {
                    return Err(ArrivalError::Bursts {
                        every_s: cfg.burst_every_s,
                        len_s: cfg.burst_len_s,
                        factor: cfg.burst_factor,
                    });
                }
                let duty = cfg.burst_len_s / cfg.burst_every_s;
                let base = cfg.rate / (1.0 + (cfg.burst_factor - 1.0) * duty);
                (base * cfg.burst_factor, base)
            }
        };
        Ok(ArrivalProcess {
            cfg,
            peak,
            base,
            t: 0.0,
            rng: rand::rngs::StdRng::seed_from_u64(seed ^ 0xa221_7a1e),
        })
    }

    pub fn config(&self) -> &ArrivalConfig {
        &self.cfg
    }

    /// Whether `t` (seconds from the start) falls in a burst.
    pub fn in_burst(&self, t: f64) -> bool {
        self.cfg.kind == Arrival::Bursts
            && t.rem_euclid(self.cfg.burst_every_s) >= self.cfg.burst_every_s - self.cfg.burst_len_s
    }

    /// The instantaneous rate at `t` seconds from the start, studies per second.
    pub fn rate_at(&self, t: f64) -> f64 {
        match self.cfg.kind {
            Arrival::Constant | Arrival::Poisson => self.cfg.rate,
            Arrival::Diurnal => {
                let phase = std::f64::consts::TAU * t / self.cfg.day_s;
                self.cfg.rate * (1.0 - self.cfg.diurnal_amplitude * phase.cos())
            }
            Arrival::Bursts => {
                if self.in_burst(t) {
                    self.base * self.cfg.burst_factor
                } else {
                    self.base
                }
            }
        }
    }

    /// The next arrival time, seconds from the start.
    pub fn next_arrival(&mut self) -> f64 {
        match self.cfg.kind {
            Arrival::Constant => {
                let at = self.t;
                self.t += 1.0 / self.cfg.rate;
                at
            }
            Arrival::Poisson => {
                let at = self.t;
                self.t += self.exp_gap(self.cfg.rate);
                at
            }
            Arrival::Diurnal | Arrival::Bursts => loop {
                self.t += self.exp_gap(self.peak);
                let keep = self.rate_at(self.t) / self.peak;
                if self.rng.random::<f64>() < keep {
                    return self.t;
                }
            },
        }
    }

    fn exp_gap(&mut self, rate: f64) -> f64 {
        // `rate` was checked positive and finite in `new`.
        Exp::new(rate).map_or(1.0 / rate, |d| d.sample(&mut self.rng))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arrivals(cfg: ArrivalConfig, seed: u64, horizon: f64) -> Vec<f64> {
        let mut p = ArrivalProcess::new(cfg, seed).unwrap();
        let mut out = Vec::new();
        loop {
            let t = p.next_arrival();
            if t >= horizon {
                return out;
            }
            out.push(t);
        }
    }

    #[test]
    fn constant_is_evenly_spaced() {
        let a = arrivals(ArrivalConfig::new(Arrival::Constant, 4.0), 1, 10.0);
        assert_eq!(a.len(), 40);
        assert!(a.windows(2).all(|w| (w[1] - w[0] - 0.25).abs() < 1e-9));
    }

    #[test]
    fn bursts_raise_the_rate_during_bursts() {
        let cfg = ArrivalConfig {
            burst_every_s: 10.0,
            burst_len_s: 2.0,
            burst_factor: 6.0,
            ..ArrivalConfig::new(Arrival::Bursts, 20.0)
        };
        let p = ArrivalProcess::new(cfg, 3).unwrap();
        let a = arrivals(cfg, 3, 2_000.0);
        let (inside, outside): (Vec<f64>, Vec<f64>) = a.iter().partition(|t| p.in_burst(**t));
        // 20% of the time is burst: rates per second inside and outside.
        let r_in = inside.len() as f64 / 400.0;
        let r_out = outside.len() as f64 / 1_600.0;
        assert!(
            (r_in / r_out - 6.0).abs() < 0.6,
            "burst/base rate ratio {:.2}",
            r_in / r_out
        );
        assert!(p.rate_at(9.0) > p.rate_at(1.0));
    }

    #[test]
    fn diurnal_peaks_at_noon() {
        let cfg = ArrivalConfig {
            day_s: 100.0,
            diurnal_amplitude: 0.9,
            ..ArrivalConfig::new(Arrival::Diurnal, 10.0)
        };
        let a = arrivals(cfg, 5, 10_000.0);
        let phase = |t: &f64| t.rem_euclid(100.0);
        let night = a
            .iter()
            .filter(|t| phase(t) < 10.0 || phase(t) >= 90.0)
            .count();
        let noon = a
            .iter()
            .filter(|t| (40.0..60.0).contains(&phase(t)))
            .count();
        assert!(noon > 5 * night, "noon {noon} vs night {night}");
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(ArrivalProcess::new(ArrivalConfig::new(Arrival::Poisson, 0.0), 0).is_err());
        let bursts = ArrivalConfig {
            burst_len_s: 40.0,
            ..ArrivalConfig::new(Arrival::Bursts, 1.0)
        };
        assert!(ArrivalProcess::new(bursts, 0).is_err());
    }

    fn any_kind() -> impl Strategy<Value = Arrival> {
        prop_oneof![
            Just(Arrival::Constant),
            Just(Arrival::Poisson),
            Just(Arrival::Diurnal),
            Just(Arrival::Bursts),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Over a long horizon (whole days and burst periods) every shape delivers its target
        /// mean rate.
        #[test]
        fn mean_rate_matches_the_target(kind in any_kind(), rate in 2.0f64..40.0, seed in any::<u64>()) {
            let cfg = ArrivalConfig { day_s: 50.0, burst_every_s: 10.0, burst_len_s: 2.5, ..ArrivalConfig::new(kind, rate) };
            let horizon = 1_000.0;
            let n = arrivals(cfg, seed, horizon).len() as f64;
            let expected = rate * horizon;
            // Poisson counts: sd = sqrt(expected); allow 5 sd plus 1% for the shape.
            let tol = 5.0 * expected.sqrt() + 0.01 * expected;
            prop_assert!((n - expected).abs() < tol, "{kind:?} at {rate}/s: {n} arrivals, expected {expected}");
        }

        #[test]
        fn arrivals_increase(kind in any_kind(), seed in any::<u64>()) {
            let a = arrivals(ArrivalConfig::new(kind, 5.0), seed, 100.0);
            prop_assert!(a.windows(2).all(|w| w[1] >= w[0]));
        }
    }
}
