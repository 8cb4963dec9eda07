//! Charts drawn on the server as inline SVG from the run history: a line chart with axes
//! (repository growth, run duration) and a sparkline for the overview. No script, no
//! library: a polyline and a few labels.

use std::fmt::Write as _;

use jiff::Timestamp;

use super::html;

/// One point: when, how much, and whether the run behind it went well.
#[derive(Debug, Clone)]
pub struct Point {
    pub time: Timestamp,
    pub value: f64,
    pub good: bool,
    /// Shown when the pointer rests on the point.
    pub label: String,
}

const WIDTH: f64 = 520.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 14.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 34.0;

/// A line chart of `points` (oldest first) titled `title`; `axis` formats the y values.
pub fn line_chart(title: &str, class: &str, points: &[Point], axis: fn(f64) -> String) -> String {
    let mut svg = format!(
        "<svg class=\"chart {}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" \
         height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}\">\
         <text x=\"{LEFT}\" y=\"18\" font-size=\"13\" font-weight=\"600\">{}</text>",
        html::escape(class),
        html::escape(title),
        html::escape(title)
    );
    let (x0, x1, y0, y1) = (LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP);
    let _ = write!(
        svg,
        "<line x1=\"{x0}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{y0}\" stroke=\"#888\"/>\
         <line x1=\"{x0}\" y1=\"{y0}\" x2=\"{x0}\" y2=\"{y1}\" stroke=\"#888\"/>"
    );
    if points.is_empty() {
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"#6b7280\" \
             text-anchor=\"middle\">no finished runs yet</text></svg>",
            (x0 + x1) / 2.0,
            (y0 + y1) / 2.0
        );
        return svg;
    }
    let t_min = points
        .iter()
        .map(|p| p.time)
        .min()
        .unwrap_or(points[0].time);
    let t_max = points
        .iter()
        .map(|p| p.time)
        .max()
        .unwrap_or(points[0].time);
    let span_ms = (t_max.as_millisecond() - t_min.as_millisecond()).max(1) as f64;
    let v_max = points
        .iter()
        .map(|p| p.value)
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let v_top = if v_max > 0.0 { v_max * 1.1 } else { 1.0 };
    let x = |t: Timestamp| {
        if points.len() == 1 {
            (x0 + x1) / 2.0
        } else {
            x0 + (t.as_millisecond() - t_min.as_millisecond()) as f64 / span_ms * (x1 - x0)
        }
    };
    let y = |v: f64| y0 - (v.max(0.0) / v_top) * (y0 - y1);
    // Grid and y labels: 0, half, top.
    for frac in [0.0, 0.5, 1.0] {
        let v = v_top * frac;
        let yy = y(v);
        let _ = write!(
            svg,
            "<line x1=\"{x0}\" y1=\"{yy:.1}\" x2=\"{x1}\" y2=\"{yy:.1}\" stroke=\"#e5e7eb\"/>\
             <text x=\"{}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
            x0 - 6.0,
            yy + 4.0,
            html::escape(&axis(v))
        );
    }
    // x labels: first and last time.
    let _ = write!(
        svg,
        "<text x=\"{x0}\" y=\"{}\" font-size=\"11\">{}</text>\
         <text x=\"{x1}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
        HEIGHT - 12.0,
        html::escape(&t_min.strftime("%Y-%m-%d %H:%M").to_string()),
        HEIGHT - 12.0,
        html::escape(&t_max.strftime("%Y-%m-%d %H:%M").to_string()),
    );
    let line: Vec<String> = points
        .iter()
        .map(|p| format!("{:.1},{:.1}", x(p.time), y(p.value)))
        .collect();
    let _ = write!(
        svg,
        "<polyline fill=\"none\" stroke=\"#2563eb\" stroke-width=\"2\" points=\"{}\"/>",
        line.join(" ")
    );
    for p in points {
        let colour = if p.good { "#2563eb" } else { "#c0262d" };
        let _ = write!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"><title>{}</title></circle>",
            x(p.time),
            y(p.value),
            html::escape(&p.label)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A small line of `values` (oldest first), for a table cell.
pub fn sparkline(values: &[f64], title: &str) -> String {
    let (w, h) = (120.0, 28.0);
    let mut svg = format!(
        "<svg class=\"sparkline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" \
         height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{}\"><title>{}</title>",
        html::escape(title),
        html::escape(title)
    );
    let max = values
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let top = if max > 0.0 { max } else { 1.0 };
    let n = values.len();
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let x = if n <= 1 {
                w / 2.0
            } else {
                2.0 + i as f64 / (n - 1) as f64 * (w - 4.0)
            };
            let y = h - 2.0 - (v.max(0.0) / top) * (h - 4.0);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    if n == 1 {
        let _ = write!(
            svg,
            "<circle cx=\"{}\" r=\"2\" fill=\"#2563eb\" cy=\"{}\"/>",
            w / 2.0,
            points[0].split(',').nth(1).unwrap_or("14")
        );
    } else if n > 1 {
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"#2563eb\" stroke-width=\"1.5\" points=\"{}\"/>",
            points.join(" ")
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_escape_and_scale() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-02T00:00:00Z".parse().unwrap();
        let pts = vec![
            Point {
                time: t0,
                value: 10.0,
                good: true,
                label: "<a>".into(),
            },
            Point {
                time: t1,
                value: 20.0,
                good: false,
                label: "b".into(),
            },
        ];
        let svg = line_chart("Growth <x>", "growth", &pts, |v| format!("{v:.0}"));
        assert!(svg.starts_with("<svg"));
        assert!(svg.ends_with("</svg>"));
        assert!(svg.contains("Growth &lt;x&gt;"));
        assert!(svg.contains("<title>&lt;a&gt;</title>"));
        assert!(svg.contains("#c0262d"));
        // The first point sits on the left axis, the last on the right edge.
        assert!(svg.contains(&format!("points=\"{LEFT:.1},")));
        assert!(line_chart("e", "e", &[], |v| v.to_string()).contains("no finished runs"));
        assert!(sparkline(&[1.0, 2.0, 3.0], "d").contains("<polyline"));
        assert!(sparkline(&[1.0], "d").contains("<circle"));
    }
}
