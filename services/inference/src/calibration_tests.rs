use super::*;

fn samples(pos: &[f64], neg: &[f64]) -> Vec<Sample> {
    pos.iter()
        .map(|&p| Sample {
            probability: p,
            truth: Some(true),
        })
        .chain(neg.iter().map(|&p| Sample {
            probability: p,
            truth: Some(false),
        }))
        .collect()
}

#[test]
fn targets_parse_and_print() {
    assert_eq!(
        "sensitivity=0.9".parse::<Target>().unwrap(),
        Target::Sensitivity(0.9)
    );
    assert_eq!(
        "specificity>=0.95".parse::<Target>().unwrap(),
        Target::Specificity(0.95)
    );
    assert_eq!(
        "flag-rate<=0.1".parse::<Target>().unwrap(),
        Target::FlagRate(0.1)
    );
    assert!("recall=0.9".parse::<Target>().is_err());
    assert!("sensitivity=1.5".parse::<Target>().is_err());
    assert_eq!(Target::Sensitivity(0.9).to_string(), "sensitivity>=0.9");
}

#[test]
fn a_sensitivity_target_takes_the_most_specific_threshold_that_meets_it() {
    // Positives at 0.9, 0.8, 0.7, 0.2; negatives spread below and among them.
    let s = samples(&[0.9, 0.8, 0.7, 0.2], &[0.75, 0.5, 0.4, 0.3, 0.1, 0.05]);
    let (t, met) = choose(&s, Target::Sensitivity(0.75));
    assert!(met);
    assert_eq!(
        t, 0.7,
        "3 of 4 positives at >= 0.7, and no higher threshold keeps 3"
    );
    let op = OperatingPoint::measure(&s, t, Target::Sensitivity(0.75));
    assert_eq!(op.sensitivity, Some(0.75));
    assert_eq!(op.specificity, Some(5.0 / 6.0));
    assert_eq!(op.ppv, Some(0.75));
    assert_eq!(op.flag_rate, 0.4);
    // All positives needs the threshold down to the lowest positive.
    assert_eq!(choose(&s, Target::Sensitivity(1.0)), (0.2, true));
}

#[test]
fn specificity_and_flag_rate_targets_take_the_most_sensitive_threshold() {
    let s = samples(&[0.9, 0.8, 0.7, 0.2], &[0.75, 0.5, 0.4, 0.3, 0.1, 0.05]);
    // Specificity 1.0 needs every negative below: above 0.75.
    assert_eq!(choose(&s, Target::Specificity(1.0)), (0.8, true));
    // At most 20% of 10 images flagged: two images.
    assert_eq!(choose(&s, Target::FlagRate(0.2)), (0.8, true));
    // Flagging nothing meets a zero budget.
    let (t, met) = choose(&s, Target::FlagRate(0.0));
    assert!(met && t > 0.9);
}

#[test]
fn a_target_without_positives_is_reported_unmet() {
    let s = samples(&[], &[0.3, 0.2]);
    let (_, met) = choose(&s, Target::Sensitivity(0.9));
    assert!(!met);
    let op = OperatingPoint::measure(&s, 0.5, Target::Sensitivity(0.9));
    assert_eq!(op.sensitivity, None);
    assert!(!op.met);
}

#[test]
fn nan_never_flags_and_uncertain_labels_count_only_in_the_flag_rate() {
    let s = vec![
        Sample {
            probability: f64::NAN,
            truth: Some(true),
        },
        Sample {
            probability: 0.9,
            truth: None,
        },
        Sample {
            probability: 0.8,
            truth: Some(true),
        },
    ];
    let c = Counts::at(&s, 0.5);
    assert_eq!((c.images, c.flagged, c.tp, c.fn_), (3, 2, 1, 1));
    assert_eq!(c.sensitivity(), Some(0.5));
}

#[test]
fn clopper_pearson_matches_published_values() {
    // 8 of 10: exact interval 0.4439–0.9748 (e.g. R's binom.test).
    let [lo, hi] = clopper_pearson(8, 10).unwrap();
    assert!((lo - 0.4439).abs() < 1e-3, "{lo}");
    assert!((hi - 0.9748).abs() < 1e-3, "{hi}");
    assert_eq!(clopper_pearson(0, 5).unwrap()[0], 0.0);
    assert_eq!(clopper_pearson(5, 5).unwrap()[1], 1.0);
    assert_eq!(clopper_pearson(0, 0), None);
}

fn image(p: [f64; 2], t: [Option<bool>; 2]) -> ScoredImage {
    ScoredImage {
        probabilities: p.to_vec(),
        truth: t.to_vec(),
    }
}

#[test]
fn the_budget_raises_the_busiest_member_until_the_tier_fits() {
    let images: Vec<ScoredImage> = (0..10)
        .map(|i| {
            let p = i as f64 / 10.0;
            image([p, 0.95 - p], [Some(i >= 8), Some(i <= 1)])
        })
        .collect();
    let mut t = vec![0.0, 0.9];
    // Finding 0 flags all 10, finding 1 one: the tier flags 10.
    fit_budget(&images, &[0, 1], &mut t, 0.3);
    let flagged = images
        .iter()
        .filter(|img| flags(img.probabilities[0], t[0]) || flags(img.probabilities[1], t[1]))
        .count();
    assert!(flagged <= 3, "{flagged} flagged at {t:?}");
    assert_eq!(t[1], 0.9, "the quiet member keeps its threshold");
    assert!(t[0] >= 0.8 - 1e-9);
}

#[test]
fn a_tier_is_measured_on_the_images_no_more_urgent_tier_took() {
    let names = vec!["A".to_string(), "B".to_string()];
    let images = vec![
        image([0.9, 0.9], [Some(true), Some(true)]), // critical takes it
        image([0.1, 0.9], [Some(false), Some(true)]), // urgent TP
        image([0.1, 0.9], [Some(false), Some(false)]), // urgent FP
        image([0.1, 0.1], [Some(false), Some(true)]), // urgent FN
        image([0.1, 0.1], [Some(false), Some(false)]), // TN
    ];
    let t = [0.5, 0.5];
    let urgent = measure_tier(&images, &names, &[1], &t, &[0]);
    assert_eq!((urgent.flagged, urgent.positives), (2, 2));
    assert_eq!(urgent.sensitivity, Some(0.5));
    assert_eq!(urgent.ppv, Some(0.5));
    let critical = measure_tier(&images, &names, &[0], &t, &[]);
    assert_eq!((critical.flagged, critical.positives), (1, 1));
    assert_eq!(critical.flag_rate, 0.2);
}
