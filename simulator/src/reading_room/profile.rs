//! A site's working week: when chest radiographs arrive (daily volume, diurnal curve, weekend
//! factor, order priorities) and who reads them (reader shifts), and how long a read takes.
//!
//! The defaults are assumptions, not measurements: they are shaped after what is commonly
//! reported for emergency-department and inpatient chest radiography (ED arrivals peak from late
//! morning to evening and bottom out around 04–06; inpatient portable films cluster in the
//! early-morning round; weekend volume drops because elective and outpatient work stops), and
//! no dataset stands behind the individual numbers. Every one of them is a flag.

use cxrflow_contracts::{EpochMillis, OrderPriority};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Poisson};

pub const MINUTE: i64 = 60_000;
pub const HOUR: i64 = 60 * MINUTE;
pub const DAY: i64 = 24 * HOUR;

/// Monday 2024-01-01 00:00 UTC: the simulated clock's origin (day 0 is a weekday).
pub const CLOCK_ORIGIN: EpochMillis = 1_704_067_200_000;

/// Relative arrival rate per hour of day (0..24), ED plus inpatient mix (assumption, see the
/// module doc): a night trough, the 06–09 inpatient round, an ED plateau through the evening.
pub const DEFAULT_DIURNAL: [f64; 24] = [
    2.5, 2.0, 1.8, 1.6, 1.7, 2.5, 4.5, 6.0, 6.0, 5.5, 5.5, 5.2, 5.0, 5.0, 5.0, 5.0, 4.8, 4.6, 4.4,
    4.2, 4.0, 3.6, 3.2, 2.8,
];

/// Readers on duty from `start_hour` to `end_hour` (wrapping past midnight when end < start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Shift {
    pub start_hour: u32,
    pub end_hour: u32,
    pub readers: u32,
}

impl Shift {
    pub fn covers(&self, hour: u32) -> bool {
        if self.start_hour <= self.end_hour {
            (self.start_hour..self.end_hour).contains(&hour)
        } else {
            hour >= self.start_hour || hour < self.end_hour
        }
    }
}

/// Parses `08-20x2,20-08x1` (hours, readers).
pub fn parse_shifts(spec: &str) -> Result<Vec<Shift>, String> {
    spec.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let bad = || format!("expected HH-HHxN, got {p:?}");
            let (hours, n) = p.split_once('x').ok_or_else(bad)?;
            let (a, b) = hours.split_once('-').ok_or_else(bad)?;
            let start_hour: u32 = a.trim().parse().map_err(|_| bad())?;
            let end_hour: u32 = b.trim().parse().map_err(|_| bad())?;
            let readers: u32 = n.trim().parse().map_err(|_| bad())?;
            if start_hour > 23 || end_hour > 24 || start_hour == end_hour % 24 {
                return Err(bad());
            }
            Ok(Shift {
                start_hour,
                end_hour: end_hour % 24,
                readers,
            })
        })
        .collect()
}

/// Two readers by day (08–20), one at night (20–08): an assumed mid-size hospital rota.
pub fn default_shifts() -> Vec<Shift> {
    vec![
        Shift {
            start_hour: 8,
            end_hour: 20,
            readers: 2,
        },
        Shift {
            start_hour: 20,
            end_hour: 8,
            readers: 1,
        },
    ]
}

/// One site's arrivals and staffing.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SiteProfile {
    pub name: String,
    /// Mean studies on a weekday.
    pub daily_volume: f64,
    /// Relative rate per hour of day.
    pub diurnal: [f64; 24],
    /// Saturday/Sunday volume relative to a weekday (assumed 0.75).
    pub weekend_factor: f64,
    /// Share of STAT orders (assumed 0.10) and URGENT orders (assumed 0.20), drawn independently
    /// of the ground truth: a conservative choice (real STAT orders are enriched for critical
    /// findings, which would help the order-priority policy).
    pub stat_share: f64,
    pub urgent_share: f64,
    pub shifts: Vec<Shift>,
}

impl SiteProfile {
    pub fn new(name: impl Into<String>, daily_volume: f64) -> Self {
        SiteProfile {
            name: name.into(),
            daily_volume,
            diurnal: DEFAULT_DIURNAL,
            weekend_factor: 0.75,
            stat_share: 0.10,
            urgent_share: 0.20,
            shifts: default_shifts(),
        }
    }

    /// Readers on duty at an hour of day.
    pub fn readers_at(&self, hour: u32) -> u32 {
        self.shifts
            .iter()
            .filter(|s| s.covers(hour))
            .map(|s| s.readers)
            .sum()
    }

    /// Staffed reader-minutes per day.
    pub fn staffed_minutes_per_day(&self) -> f64 {
        (0..24).map(|h| self.readers_at(h) as f64 * 60.0).sum()
    }

    /// The weekday volume at which the week's read work fills `utilisation` of the staffed
    /// reader time (offered load; the measured busy share comes out of the run).
    pub fn volume_for_utilisation(&self, utilisation: f64, reads: &ReadTimes) -> f64 {
        let days_per_week = 5.0 + 2.0 * self.weekend_factor;
        utilisation * self.staffed_minutes_per_day() * 7.0 / (reads.mean_minutes() * days_per_week)
    }
}

/// Read time per study: log-normal (median 2.5 min by default, an assumed plain-film read
/// including the report; sigma 0.5 gives a p90 of about 4.7 min).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ReadTimes {
    pub median_minutes: f64,
    pub sigma: f64,
}

impl Default for ReadTimes {
    fn default() -> Self {
        ReadTimes {
            median_minutes: 2.5,
            sigma: 0.5,
        }
    }
}

impl ReadTimes {
    pub fn mean_minutes(&self) -> f64 {
        self.median_minutes * (self.sigma * self.sigma / 2.0).exp()
    }
}

/// One study arriving at a site. Its read duration is drawn here, once, so every policy reads
/// the same study for the same time.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrival {
    /// Index in the run's arrival list (and the study UID's suffix).
    pub id: usize,
    pub site: usize,
    /// Acquisition.
    pub at: EpochMillis,
    /// When the worklist hears of it: at acquisition, or when an outage ends.
    pub arrives_at: EpochMillis,
    pub priority: OrderPriority,
    /// The pool study it shows (sampled with replacement).
    pub study: usize,
    pub read_ms: i64,
}

/// Arrivals over `days` from the origin for every site: a non-homogeneous Poisson process with
/// the hour's rate, uniform within the hour, studies drawn with replacement from a pool of
/// `pool_len`. Sorted by time; deterministic from the seed.
pub fn arrivals(
    sites: &[SiteProfile],
    days: u32,
    pool_len: usize,
    reads: &ReadTimes,
    seed: u64,
) -> Vec<Arrival> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x7ead_1e00);
    let read_dist = LogNormal::new(reads.median_minutes.max(1e-3).ln(), reads.sigma.max(0.0))
        .unwrap_or_else(|_| LogNormal::new(0.0, 0.0).expect("a valid log-normal"));
    let mut out = Vec::new();
    for (site_ix, site) in sites.iter().enumerate() {
        let total: f64 = site.diurnal.iter().sum::<f64>().max(f64::MIN_POSITIVE);
        for day in 0..days {
            let weekend = day % 7 >= 5;
            let volume = site.daily_volume * if weekend { site.weekend_factor } else { 1.0 };
            for hour in 0..24 {
                let lambda = volume * site.diurnal[hour] / total;
                let n = match Poisson::new(lambda) {
                    Ok(p) => p.sample(&mut rng) as usize,
                    Err(_) => 0,
                };
                for _ in 0..n {
                    let at = CLOCK_ORIGIN
                        + day as i64 * DAY
                        + hour as i64 * HOUR
                        + rng.random_range(0..HOUR);
                    let u: f64 = rng.random();
                    let priority = if u < site.stat_share {
                        OrderPriority::Stat
                    } else if u < site.stat_share + site.urgent_share {
                        OrderPriority::Urgent
                    } else {
                        OrderPriority::Routine
                    };
                    let minutes: f64 = read_dist.sample(&mut rng);
                    out.push(Arrival {
                        id: 0,
                        site: site_ix,
                        at,
                        arrives_at: at,
                        priority,
                        study: rng.random_range(0..pool_len.max(1)),
                        read_ms: ((minutes * MINUTE as f64) as i64).max(1_000),
                    });
                }
            }
        }
    }
    out.sort_by_key(|a| (a.at, a.site));
    for (i, a) in out.iter_mut().enumerate() {
        a.id = i;
    }
    out
}

/// An outage between the modalities and the worklist (a PACS or network downtime) from `start`
/// to `end`: what is acquired during it reaches the worklist when it ends, in acquisition
/// order, a millisecond apart per second acquired.
pub fn delay_by_outage(arrivals: &mut [Arrival], start: EpochMillis, end: EpochMillis) {
    for a in arrivals.iter_mut().filter(|a| (start..end).contains(&a.at)) {
        a.arrives_at = end + (a.at - start) / 1_000;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_parse_and_wrap() {
        let s = parse_shifts("08-20x2, 20-08x1").unwrap();
        assert_eq!(s, default_shifts());
        let site = SiteProfile::new("a", 100.0);
        assert_eq!(site.readers_at(8), 2);
        assert_eq!(site.readers_at(19), 2);
        assert_eq!(site.readers_at(20), 1);
        assert_eq!(site.readers_at(3), 1);
        assert_eq!(site.staffed_minutes_per_day(), 36.0 * 60.0);
        assert!(parse_shifts("8-8x1").is_err());
        assert!(parse_shifts("nonsense").is_err());
    }

    #[test]
    fn arrivals_follow_the_volume_and_are_deterministic() {
        let sites = [SiteProfile::new("a", 400.0)];
        let reads = ReadTimes::default();
        let a = arrivals(&sites, 7, 10, &reads, 1);
        assert_eq!(a, arrivals(&sites, 7, 10, &reads, 1));
        let expected = 400.0 * (5.0 + 2.0 * 0.75);
        assert!(
            (a.len() as f64 - expected).abs() < 0.1 * expected,
            "{}",
            a.len()
        );
        assert!(a.windows(2).all(|w| w[0].at <= w[1].at));
        let median = {
            let mut r: Vec<i64> = a.iter().map(|x| x.read_ms).collect();
            r.sort();
            r[r.len() / 2] as f64 / MINUTE as f64
        };
        assert!((median - 2.5).abs() < 0.2, "{median}");
    }

    #[test]
    fn volume_for_utilisation_fills_the_staffed_time() {
        let site = SiteProfile::new("a", 0.0);
        let reads = ReadTimes::default();
        let v = site.volume_for_utilisation(0.85, &reads);
        let work = v * (5.0 + 2.0 * 0.75) * reads.mean_minutes();
        let staffed = site.staffed_minutes_per_day() * 7.0;
        assert!((work / staffed - 0.85).abs() < 1e-9);
    }
}
