//! SVG plots of the report (no plotting dependency): horizontal bars and lines over shared axes.

use std::fmt::Write as _;

const W: f64 = 900.0;
const H: f64 = 420.0;
const COLORS: [&str; 4] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Horizontal bars, one per label.
pub fn bar_chart(title: &str, bars: &[(String, f64)]) -> String {
    let max = bars.iter().map(|b| b.1).fold(1.0, f64::max);
    let row = 22.0;
    let h = 60.0 + row * bars.len() as f64;
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{W}' height='{h}' font-family='sans-serif' font-size='12'>\
         <rect width='100%' height='100%' fill='white'/><text x='10' y='20' font-size='15'>{}</text>",
        esc(title)
    );
    for (i, (label, v)) in bars.iter().enumerate() {
        let y = 40.0 + row * i as f64;
        let w = (W - 420.0) * v / max;
        let _ = write!(
            s,
            "<text x='10' y='{}'>{}</text><rect x='340' y='{}' width='{w:.1}' height='{}' fill='{}'/><text x='{:.1}' y='{}'>{v:.0}</text>",
            y + 14.0,
            esc(label),
            y + 3.0,
            row - 6.0,
            COLORS[i % COLORS.len()],
            345.0 + w,
            y + 14.0
        );
    }
    s.push_str("</svg>");
    s
}

/// Lines over shared axes.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, lines: &[(&str, Vec<(f64, f64)>)]) -> String {
    let xs = lines.iter().flat_map(|l| l.1.iter().map(|p| p.0));
    let ys = lines.iter().flat_map(|l| l.1.iter().map(|p| p.1));
    let (x_max, y_max) = (xs.fold(1e-9, f64::max), ys.fold(1e-9, f64::max));
    let (x0, y0, pw, ph) = (70.0, H - 50.0, W - 100.0, H - 100.0);
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{W}' height='{H}' font-family='sans-serif' font-size='12'>\
         <rect width='100%' height='100%' fill='white'/><text x='10' y='20' font-size='15'>{}</text>\
         <line x1='{x0}' y1='{y0}' x2='{}' y2='{y0}' stroke='black'/><line x1='{x0}' y1='{y0}' x2='{x0}' y2='{}' stroke='black'/>\
         <text x='{}' y='{}'>{} (max {x_max:.2})</text><text x='5' y='{}'>{} (max {y_max:.2})</text>",
        esc(title),
        x0 + pw,
        y0 - ph,
        x0 + pw / 2.0,
        y0 + 35.0,
        esc(x_label),
        y0 - ph - 8.0,
        esc(y_label)
    );
    for (i, (name, pts)) in lines.iter().enumerate() {
        let path: Vec<String> =
            pts.iter().map(|(x, y)| format!("{:.1},{:.1}", x0 + pw * x / x_max, y0 - ph * y / y_max)).collect();
        let c = COLORS[i % COLORS.len()];
        let _ = write!(
            s,
            "<polyline fill='none' stroke='{c}' stroke-width='2' points='{}'/><text x='{}' y='{}' fill='{c}'>{}</text>",
            path.join(" "),
            x0 + pw - 150.0,
            y0 - ph + 20.0 + 16.0 * i as f64,
            esc(name)
        );
    }
    s.push_str("</svg>");
    s
}
