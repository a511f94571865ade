//! `reading-room.html`: the reading room's result as a page a radiology manager reads in a
//! minute: the headline against arrival order, the policy table, the cap sweep's trade-off
//! (critical gain against the others' longest wait) and the open worklist hour by hour.

use super::engine::RoomPolicy;
use super::RoomReport;
use crate::report::plots::{color, html_escape, xy_chart, Line};

pub fn render(r: &RoomReport) -> String {
    let sweep: Vec<(f64, f64)> = {
        let mut v: Vec<(f64, f64, f64)> = r
            .outcomes
            .iter()
            .filter_map(|o| match o.room_policy {
                RoomPolicy::AiTiers {
                    cap_scale: Some(s), ..
                } => Some((
                    s,
                    o.non_critical.max_min,
                    100.0 * o.critical_mean_gain_vs_fifo,
                )),
                _ => None,
            })
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v.into_iter().map(|(_, x, y)| (x, y)).collect()
    };
    let point = |p: RoomPolicy| {
        r.outcomes
            .iter()
            .find(|o| o.room_policy == p)
            .map(|o| (o.non_critical.max_min, 100.0 * o.critical_mean_gain_vs_fifo))
    };
    let mut lines = vec![Line {
        name: "AI tiers, cap sweep".into(),
        color: color(0),
        points: sweep,
    }];
    for (i, (name, p)) in [
        ("arrival order (FIFO)", RoomPolicy::Fifo),
        ("order priority only", RoomPolicy::OrderPriority),
        (
            "AI tiers, no caps",
            RoomPolicy::AiTiers {
                cap_scale: None,
                routine_only: false,
            },
        ),
    ]
    .into_iter()
    .enumerate()
    {
        if let Some(pt) = point(p) {
            lines.push(Line {
                name: name.into(),
                color: color(i + 1),
                points: vec![pt],
            });
        }
    }
    let tradeoff = xy_chart(
        "Critical gain against the others' longest wait",
        "longest wait of a study without a critical finding (min)",
        "critical mean time-to-read gain vs FIFO (%)",
        &lines,
    );
    let queue_lines: Vec<Line> = r
        .outcomes
        .iter()
        .filter(|o| {
            o.room_policy == RoomPolicy::Fifo
                || matches!(
                    o.room_policy,
                    RoomPolicy::AiTiers {
                        cap_scale: Some(s), ..
                    } if s == 1.0
                )
        })
        .enumerate()
        .map(|(i, o)| Line {
            name: o.policy.clone(),
            color: color(i),
            points: o
                .queue_by_hour
                .iter()
                .enumerate()
                .map(|(h, n)| (h as f64, *n as f64))
                .collect(),
        })
        .collect();
    let queue = xy_chart(
        "Open worklist, all sites, hour by hour",
        "hours since Monday 00:00",
        "open studies",
        &queue_lines,
    );
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>cxrflow reading room</title>\
<style>body{{font-family:sans-serif;margin:2em;max-width:960px}}pre{{font-size:12px}}svg{{display:block;margin:1em 0}}</style></head>\
<body><h1>Reading room on a simulated clock</h1><p>{}</p><pre>{}</pre>{tradeoff}{queue}</body></html>\n",
        html_escape(&super::headline(r)).replace('\n', "<br>"),
        html_escape(&super::render_table(r).replacen(&super::headline(r), "", 1)),
    )
}
