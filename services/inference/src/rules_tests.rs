use std::collections::BTreeMap;

use cxrflow_contracts::DriftWindow;

use super::*;

#[test]
fn guard_trips_once_above_the_bound() {
    let mut g = CanaryGuard::new(Duration::from_secs(60), 0.2, 10);
    let t = Instant::now();
    for _ in 0..9 {
        assert!(g.record("2", true, t).is_none(), "not before min_samples");
    }
    assert_eq!(g.record("2", true, t), Some(1.0));
    assert!(g.record("2", true, t).is_none(), "trips once");
    assert!(
        g.record("3", false, t).is_none(),
        "a new version starts clean"
    );
    for _ in 0..20 {
        assert!(g.record("3", false, t).is_none());
    }
}

#[test]
fn guard_forgets_failures_that_left_the_window() {
    let mut g = CanaryGuard::new(Duration::from_secs(10), 0.2, 5);
    let t = Instant::now();
    for _ in 0..4 {
        assert!(g.record("2", true, t).is_none());
    }
    // Ten seconds later the four failures are out of the window: 1 bad in 5 is 0.2, not above.
    let later = t + Duration::from_secs(11);
    for _ in 0..4 {
        assert!(g.record("2", false, later).is_none());
    }
    assert!(g.record("2", true, later).is_none());
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn latency_rule_trips_only_when_the_p99_stays_above_the_bound_for_the_period() {
    let mut r = LatencyRule::new(
        ms(100),
        Duration::from_secs(60),
        Duration::from_secs(30),
        10,
    );
    let t0 = Instant::now();
    // Fast traffic: never trips.
    for i in 0..200 {
        assert!(r.record("2", ms(20), t0 + ms(i * 10)).is_none());
    }
    // Slow from t0+10s: the p99 crosses the bound as soon as more than 1% is slow, but the
    // rule waits for `sustain`.
    let slow_start = t0 + Duration::from_secs(10);
    let mut tripped = None;
    for s in 0..60u64 {
        let now = slow_start + Duration::from_secs(s);
        if let Some(b) = r.record("2", ms(250), now) {
            tripped = Some((s, b));
            break;
        }
    }
    let (s, breach) = tripped.expect("sustained slowness trips the rule");
    assert!(
        (30..=33).contains(&s),
        "tripped after the sustain period: {s}s"
    );
    assert!(breach.p99 >= ms(240) && breach.p99 <= ms(260), "{breach:?}");
    assert!(breach.above_for >= Duration::from_secs(30));
    // Once per version.
    assert!(r
        .record("2", ms(250), slow_start + Duration::from_secs(61))
        .is_none());
    assert!(r.p99("2").is_some_and(|p| p > ms(100)));
}

#[test]
fn a_latency_spike_shorter_than_the_period_does_not_trip() {
    let mut r = LatencyRule::new(ms(100), Duration::from_secs(5), Duration::from_secs(20), 5);
    let t0 = Instant::now();
    let mut now = t0;
    // A 3 s spike, then fast again: the slow samples leave the 5 s window, the p99 falls back
    // below the bound and the sustain clock restarts.
    for _ in 0..30 {
        assert!(r.record("2", ms(500), now).is_none());
        now += ms(100);
    }
    for _ in 0..600 {
        assert!(r.record("2", ms(10), now).is_none(), "no trip on a spike");
        now += ms(100);
    }
    assert!(r.p99("2").is_some_and(|p| p < ms(100)), "{:?}", r.p99("2"));
}

#[test]
fn latency_rule_keeps_versions_apart_and_needs_samples() {
    let mut r = LatencyRule::new(ms(100), Duration::from_secs(60), Duration::ZERO, 5);
    let t = Instant::now();
    for _ in 0..4 {
        assert!(r.record("slow", ms(900), t).is_none(), "below min_samples");
        assert!(r.record("fast", ms(5), t).is_none());
    }
    assert!(r.record("slow", ms(900), t).is_some());
    assert!(r.record("fast", ms(5), t).is_none());
    r.retain(&["fast"]);
    assert!(r.p99("slow").is_none());
    let mut off = LatencyRule::new(Duration::ZERO, Duration::from_secs(1), Duration::ZERO, 1);
    assert!(!off.enabled());
    assert!(off.record("x", Duration::from_secs(9), t).is_none());
}

fn alert(version: &str, severity: Severity, action: RecommendedAction, at: i64) -> DriftAlert {
    let w = DriftWindow {
        start: 0,
        end: 1,
        count: 1,
    };
    DriftAlert {
        alert_id: "a-1".into(),
        state: AlertState::Raised,
        channel: "PERFORMANCE".into(),
        signal: "auroc".into(),
        statistic: "AUROC_DELTA".into(),
        value: 0.2,
        p_value: None,
        threshold: 0.05,
        reference_window: w.clone(),
        detection_window: w,
        site_id: None,
        model_name: "m".into(),
        model_version: version.into(),
        severity,
        action,
        details: BTreeMap::new(),
        raised_at: at,
    }
}

#[test]
fn drift_rule_withdraws_the_named_candidate_at_the_configured_level() {
    use RecommendedAction::*;
    use Severity::*;
    let cands = vec![
        Candidate {
            version: "2".into(),
            role: ModelRole::Canary,
            staged_at: 1_000,
        },
        Candidate {
            version: "3".into(),
            role: ModelRole::Shadow,
            staged_at: 1_000,
        },
    ];
    let rule = DriftRule {
        min_severity: DriftSeverityLevel::Critical,
        on_retrain: true,
    };
    let (c, reason) = rule
        .target(&alert("2", Critical, Investigate, 2_000), "m", &cands)
        .expect("critical alert on the canary");
    assert_eq!(c.role, ModelRole::Canary);
    assert!(
        reason.contains("a-1") && reason.contains("Critical"),
        "{reason}"
    );
    let (c, _) = rule
        .target(&alert("3", Warning, Retrain, 2_000), "m", &cands)
        .expect("RETRAIN on the shadow");
    assert_eq!(c.version, "3");
    assert!(
        rule.target(&alert("2", Warning, Investigate, 2_000), "m", &cands)
            .is_none(),
        "below the level"
    );
    assert!(
        rule.target(&alert("1", Critical, Retrain, 2_000), "m", &cands)
            .is_none(),
        "production is not a candidate"
    );
    assert!(
        rule.target(&alert("2", Critical, Retrain, 2_000), "other", &cands)
            .is_none(),
        "another model"
    );
    assert!(
        rule.target(&alert("2", Critical, Retrain, 999), "m", &cands)
            .is_none(),
        "raised before the candidate was staged"
    );
    let mut resolved = alert("2", Critical, Retrain, 2_000);
    resolved.state = AlertState::Resolved;
    assert!(rule.target(&resolved, "m", &cands).is_none());

    let warning = DriftRule {
        min_severity: DriftSeverityLevel::Warning,
        on_retrain: false,
    };
    assert!(warning
        .target(&alert("2", Warning, Investigate, 2_000), "m", &cands)
        .is_some());
    assert!(warning
        .target(&alert("2", Info, Retrain, 2_000), "m", &cands)
        .is_none());
    let off = DriftRule {
        min_severity: DriftSeverityLevel::Off,
        on_retrain: false,
    };
    assert!(!off.enabled());
    assert!(off
        .target(&alert("2", Critical, Retrain, 2_000), "m", &cands)
        .is_none());
}
