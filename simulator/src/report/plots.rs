//! The report's charts, drawn with plotters' SVG backend into strings that the HTML page embeds
//! inline. Text becomes SVG `<text>` elements the browser lays out, so no font is needed here
//! (plotters is built without `ttf`; its naive text metrics only place the labels). A chart
//! that cannot be drawn becomes a short note instead of failing the report.

use plotters::prelude::*;

use super::drift::{AlertMark, ChangeMark};
use super::series::HistogramBin;

const SIZE: (u32, u32) = (760, 300);

/// One line of a chart.
pub struct Line {
    pub name: String,
    pub color: RGBColor,
    pub points: Vec<(f64, f64)>,
}

/// Vertical markers on a time axis: drift alerts and the injected change point.
#[derive(Default)]
pub struct Markers<'a> {
    pub alerts: &'a [AlertMark],
    pub change: Option<ChangeMark>,
}

pub const ALERT: RGBColor = RGBColor(230, 120, 0);
pub const CHANGE: RGBColor = RGBColor(200, 0, 0);

/// The n-th colour of a line palette.
pub fn color(i: usize) -> RGBColor {
    const P: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    P[i % P.len()]
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn finish(svg: String, r: DrawResult, title: &str) -> String {
    match r {
        Ok(()) => svg,
        Err(e) => format!(
            "<p class=note>{}: chart not drawn ({})</p>",
            html_escape(title),
            html_escape(&e.to_string())
        ),
    }
}

pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A line chart over time (seconds) with the drift markers.
pub fn time_chart(title: &str, y_desc: &str, lines: &[Line], markers: &Markers) -> String {
    let mut svg = String::new();
    let axes = Axes {
        x_desc: "seconds since the first study",
        y_desc,
        dots: false,
        legend: SeriesLabelPosition::UpperLeft,
    };
    let r = draw_chart(&mut svg, title, &axes, lines, markers);
    finish(svg, r, title)
}

/// How a line chart labels its axes, and whether it marks each point.
struct Axes<'a> {
    x_desc: &'a str,
    y_desc: &'a str,
    dots: bool,
    legend: SeriesLabelPosition,
}

fn draw_chart(
    svg: &mut String,
    title: &str,
    axes: &Axes,
    lines: &[Line],
    markers: &Markers,
) -> DrawResult {
    let xs = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .chain(markers.alerts.iter().map(|a| a.t_s))
        .chain(markers.change.map(|c| c.t_s));
    let x_max = xs.fold(1.0f64, f64::max) * 1.02;
    let y_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.1;
    // Below zero only when a value is (a policy that loses to FIFO).
    let y_min = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::min)
        * 1.1;
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, y_min..y_max)?;
    chart
        .configure_mesh()
        .x_desc(axes.x_desc)
        .y_desc(axes.y_desc)
        .draw()?;
    for l in lines {
        let c = l.color;
        chart
            .draw_series(LineSeries::new(l.points.iter().copied(), c.stroke_width(2)))?
            .label(l.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2)));
        if axes.dots {
            chart.draw_series(l.points.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
        }
    }
    for (i, a) in markers.alerts.iter().enumerate() {
        let s = chart.draw_series(LineSeries::new(
            [(a.t_s, 0.0), (a.t_s, y_max)],
            ALERT.mix(0.8).stroke_width(1),
        ))?;
        if i == 0 {
            s.label("drift alert")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], ALERT));
        }
    }
    if let Some(c) = markers.change {
        chart
            .draw_series(DashedLineSeries::new(
                [(c.t_s, 0.0), (c.t_s, y_max)],
                6,
                4,
                CHANGE.stroke_width(2),
            ))?
            .label("drift injected")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], CHANGE.stroke_width(2)));
    }
    if !lines.is_empty() || !markers.alerts.is_empty() || markers.change.is_some() {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .position(axes.legend.clone())
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// A histogram of latencies (milliseconds).
pub fn histogram(title: &str, bins: &[HistogramBin]) -> String {
    let mut svg = String::new();
    let r = draw_histogram(&mut svg, title, bins);
    finish(svg, r, title)
}

fn draw_histogram(svg: &mut String, title: &str, bins: &[HistogramBin]) -> DrawResult {
    let x_max = bins.last().map_or(1.0, |b| b.hi_ms).max(1.0);
    let y_max = bins.iter().map(|b| b.count).max().unwrap_or(0).max(1) as f64 * 1.1;
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
    chart
        .configure_mesh()
        .x_desc("milliseconds")
        .y_desc("studies")
        .draw()?;
    chart.draw_series(bins.iter().map(|b| {
        Rectangle::new(
            [(b.lo_ms, 0.0), (b.hi_ms, b.count as f64)],
            color(0).mix(0.7).filled(),
        )
    }))?;
    root.present()?;
    Ok(())
}

/// Paired bars per group: AI triage (green) against FIFO (grey).
pub fn paired_bars(title: &str, y_desc: &str, groups: &[(String, f64, f64)]) -> String {
    let mut svg = String::new();
    let r = draw_paired_bars(&mut svg, title, y_desc, groups);
    finish(svg, r, title)
}

fn draw_paired_bars(
    svg: &mut String,
    title: &str,
    y_desc: &str,
    groups: &[(String, f64, f64)],
) -> DrawResult {
    let ai_color = RGBColor(34, 170, 119);
    let fifo_color = RGBColor(150, 150, 150);
    let y_max = groups.iter().map(|g| g.1.max(g.2)).fold(1.0f64, f64::max) * 1.25;
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(10)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..groups.len().max(1) as f64, 0f64..y_max)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(y_desc)
        .draw()?;
    let n = groups.len();
    let at = |i: usize| i as f64;
    chart
        .draw_series((0..n).map(|i| {
            Rectangle::new(
                [(at(i) + 0.1, 0.0), (at(i) + 0.48, groups[i].1)],
                ai_color.filled(),
            )
        }))?
        .label("AI triage")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], ai_color.filled()));
    chart
        .draw_series((0..n).map(|i| {
            Rectangle::new(
                [(at(i) + 0.52, 0.0), (at(i) + 0.9, groups[i].2)],
                fifo_color.filled(),
            )
        }))?
        .label("FIFO")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], fifo_color.filled()));
    chart.draw_series(groups.iter().enumerate().map(|(i, g)| {
        Text::new(
            g.0.clone(),
            (at(i) + 0.1, g.1.max(g.2) + y_max * 0.06),
            ("sans-serif", 12),
        )
    }))?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}

/// A line chart on plain axes, each point drawn as a dot too (a one-point series is a dot), for
/// charts not over the run's time.
pub fn xy_chart(title: &str, x_desc: &str, y_desc: &str, lines: &[Line]) -> String {
    let mut svg = String::new();
    let axes = Axes {
        x_desc,
        y_desc,
        dots: true,
        legend: SeriesLabelPosition::LowerRight,
    };
    let r = draw_chart(&mut svg, title, &axes, lines, &Markers::default());
    finish(svg, r, title)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_inline_svg_with_text() {
        let lines = [Line {
            name: "published".into(),
            color: color(0),
            points: vec![(0.0, 1.0), (1.0, 3.0), (2.0, 2.0)],
        }];
        let svg = time_chart(
            "Throughput",
            "studies/s",
            &lines,
            &Markers {
                alerts: &[],
                change: Some(ChangeMark {
                    index: 3,
                    published_at: 0,
                    t_s: 1.5,
                }),
            },
        );
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
        assert!(svg.contains("<text") && svg.contains("Throughput"));
        assert!(svg.contains("drift injected"));
        let bars = paired_bars("Wait", "ms", &[("all".into(), 10.0, 20.0)]);
        assert!(bars.contains("<rect"));
        let h = histogram(
            "Latency",
            &[HistogramBin {
                lo_ms: 0.0,
                hi_ms: 10.0,
                count: 3,
            }],
        );
        assert!(h.contains("<svg"));
        // Empty inputs still draw (an empty frame), never panic.
        assert!(time_chart("Empty", "x", &[], &Markers::default()).contains("<svg"));
        assert!(histogram("Empty", &[]).contains("<svg"));
    }
}
