//! The report's charts as inline SVG strings, drawn with plotters' SVG backend (text is
//! emitted as `<text>` elements, so no font files are read).

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use super::windows::PointWindows;
use crate::error::{Error, Result};

const FONT: &str = "sans-serif";
/// Colours of the candidate windows: min-max, ACIQ Laplace, ACIQ Gauss, MMSE.
const WINDOW_COLOURS: [RGBColor; 4] = [
    RGBColor(120, 120, 120),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];
/// One colour per bit-width 0..=8.
const BIT_COLOURS: [RGBColor; 9] = [
    RGBColor(60, 60, 60),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(255, 127, 14),
    RGBColor(31, 119, 180),
    RGBColor(23, 190, 207),
    RGBColor(188, 189, 34),
    RGBColor(152, 223, 138),
    RGBColor(44, 160, 44),
];

fn err<E: std::fmt::Display>(e: E) -> Error {
    Error::Report(format!("drawing a chart: {e}"))
}

/// Runs `draw` on a fresh SVG canvas of `size` and returns the SVG text.
fn svg(
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend, plotters::coord::Shift>) -> Result<()>,
) -> Result<String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        draw(&root)?;
        root.present().map_err(err)?;
    }
    Ok(out)
}

/// Horizontal bars, one per label (top to bottom in the given order); `None` values are
/// left empty. The x axis starts at 0 (or at the smallest value if one is negative).
pub fn hbars(
    title: &str,
    x_desc: &str,
    labels: &[String],
    values: &[Option<f64>],
) -> Result<String> {
    let spans: Vec<Option<(f64, f64)>> = values.iter().map(|v| v.map(|v| (0.0, v))).collect();
    hspans(title, x_desc, labels, &spans)
}

/// Horizontal bars from `lo` to `hi`, one per label (top to bottom); `None` left empty.
pub fn hspans(
    title: &str,
    x_desc: &str,
    labels: &[String],
    spans: &[Option<(f64, f64)>],
) -> Result<String> {
    let n = labels.len().max(1);
    let height = 60 + 16 * n as u32;
    let finite = spans
        .iter()
        .flatten()
        .flat_map(|&(a, b)| [a, b])
        .filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((0.0f64, 1.0f64), |(a, b), v| (a.min(v), b.max(v)));
    let (lo, hi) = (lo - 0.02 * (hi - lo), hi + 0.05 * (hi - lo));
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(4);
    let label_w = (longest as u32 * 7 + 12).min(320);
    svg((560, height), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 16))
            .margin(8)
            .x_label_area_size(34)
            .y_label_area_size(label_w)
            .build_cartesian_2d(lo..hi, (0..n as i32).into_segmented())
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_style((FONT, 11))
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => labels
                    .get((n as i32 - 1 - *i) as usize)
                    .cloned()
                    .unwrap_or_default(),
                _ => String::new(),
            })
            .x_desc(x_desc)
            .draw()
            .map_err(err)?;
        let bars = spans.iter().enumerate().filter_map(|(i, v)| {
            let (a, b) = (*v)?;
            let row = n as i32 - 1 - i as i32;
            let mut r = Rectangle::new(
                [
                    (a.clamp(lo, hi), SegmentValue::Exact(row)),
                    (b.clamp(lo, hi), SegmentValue::Exact(row + 1)),
                ],
                RGBColor(31, 119, 180).filled(),
            );
            r.set_margin(2, 2, 0, 0);
            Some(r)
        });
        chart.draw_series(bars).map_err(err)?;
        Ok(())
    })
}

/// The fraction of channels at each bit-width, one stacked bar per layer (graph order).
pub fn bit_stacks(title: &str, x_desc: &str, layers: &[Vec<u8>]) -> Result<String> {
    let n = layers.len().max(1);
    svg((1100, 300), |root| {
        let (plot, legend) = root.split_horizontally(1010);
        let mut chart = ChartBuilder::on(&plot)
            .caption(title, (FONT, 16))
            .margin(8)
            .x_label_area_size(34)
            .y_label_area_size(48)
            .build_cartesian_2d((0..n as i32).into_segmented(), 0f64..1.0)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc(x_desc)
            .y_desc("fraction of channels")
            .draw()
            .map_err(err)?;
        let mut used = [false; 9];
        for (i, bits) in layers.iter().enumerate() {
            let total = bits.len().max(1) as f64;
            let mut base = 0.0;
            for (b, colour) in BIT_COLOURS.iter().enumerate() {
                let count = bits.iter().filter(|&&x| x as usize == b).count();
                if count == 0 {
                    continue;
                }
                used[b] = true;
                let top = base + count as f64 / total;
                let x = i as i32;
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [
                            (SegmentValue::Exact(x), base),
                            (SegmentValue::Exact(x + 1), top),
                        ],
                        colour.filled(),
                    )))
                    .map_err(err)?;
                base = top;
            }
        }
        for (k, (b, colour)) in BIT_COLOURS
            .iter()
            .enumerate()
            .filter(|(b, _)| used[*b])
            .enumerate()
        {
            let y = 40 + 20 * k as i32;
            legend
                .draw(&Rectangle::new([(8, y), (22, y + 12)], colour.filled()))
                .map_err(err)?;
            legend
                .draw(&Text::new(format!("{b} bits"), (28, y), (FONT, 12)))
                .map_err(err)?;
        }
        Ok(())
    })
}

/// Gaussian density scaled to `total` counts per bin of width `w`.
fn gauss(x: f64, mean: f64, std: f64, scale: f64) -> f64 {
    let z = (x - mean) / std.max(1e-12);
    scale * (-0.5 * z * z).exp() / (std.max(1e-12) * (2.0 * std::f64::consts::PI).sqrt())
}

/// The legend of [`window_chart`], in two columns below the plot.
fn legend(area: &DrawingArea<SVGBackend, plotters::coord::Shift>, p: &PointWindows) -> Result<()> {
    let data = if p.hist.is_some() {
        "histogram of the calibration values"
    } else {
        "assumed N(mean, std²) (no histogram)"
    };
    let mut entries: Vec<(String, RGBAColor, u32)> = vec![
        (
            "plan window (widest channel)".into(),
            RGBColor(255, 215, 0).mix(0.5),
            10,
        ),
        (data.into(), BLUE.mix(0.6), 3),
    ];
    for (c, colour) in p.candidates.iter().zip(WINDOW_COLOURS.iter()) {
        let chosen = if c.chosen { " (chosen)" } else { "" };
        entries.push((
            format!("{} [{:.3}, {:.3}]{chosen}", c.name, c.lo, c.hi),
            colour.to_rgba(),
            if c.chosen { 4 } else { 2 },
        ));
    }
    for (i, (label, colour, width)) in entries.into_iter().enumerate() {
        let (x, y) = (10 + 275 * (i % 2) as i32, 10 + 20 * (i / 2) as i32);
        area.draw(&PathElement::new(
            vec![(x, y + 6), (x + 18, y + 6)],
            colour.stroke_width(width),
        ))
        .map_err(err)?;
        area.draw(&Text::new(label, (x + 24, y), (FONT, 11)))
            .map_err(err)?;
    }
    Ok(())
}

/// The point's histogram (log counts) or, without one, its assumed Gaussian, with every
/// candidate window drawn as a pair of vertical lines and the chosen one shaded.
pub fn window_chart(p: &PointWindows) -> Result<String> {
    let (mean, std) = p.mean_std;
    let mut xlo = p.plan_window.0;
    let mut xhi = p.plan_window.1;
    for c in &p.candidates {
        xlo = xlo.min(c.lo);
        xhi = xhi.max(c.hi);
    }
    if let Some(h) = &p.hist {
        xlo = xlo.min(h.lo);
        xhi = xhi.max(h.hi);
    } else {
        xlo = xlo.min(mean - 4.0 * std);
        xhi = xhi.max(mean + 4.0 * std);
    }
    if xhi.partial_cmp(&xlo) != Some(std::cmp::Ordering::Greater) {
        xhi = xlo + 1.0;
    }
    let pad = 0.03 * (xhi - xlo);
    let (xlo, xhi) = (xlo - pad, xhi + pad);
    let ymax = match &p.hist {
        Some(h) => h.counts.iter().copied().max().unwrap_or(1).max(1) as f64 * 2.0,
        None => 2.0 * gauss(mean, mean, std, 1.0),
    };
    let title = format!("{} ({} bits, plan: {})", p.value, p.bits, p.clip);
    svg((560, 370), |root| {
        let (top, bottom) = root.split_vertically(300);
        legend(&bottom, p)?;
        let mut builder = ChartBuilder::on(&top);
        let chart = builder
            .caption(&title, (FONT, 14))
            .margin(8)
            .x_label_area_size(34)
            .y_label_area_size(56);
        let y_desc = if p.hist.is_some() {
            "count (log)"
        } else {
            "density"
        };
        let shade = |w: (f64, f64), y0: f64, y1: f64| {
            Rectangle::new(
                [(w.0, y0), (w.1, y1)],
                RGBColor(255, 215, 0).mix(0.3).filled(),
            )
        };
        macro_rules! body {
            ($chart:expr, $ybot:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .disable_mesh()
                    .x_desc("pre-activation value")
                    .y_desc(y_desc)
                    .draw()
                    .map_err(err)?;
                chart
                    .draw_series(std::iter::once(shade(p.plan_window, $ybot, ymax)))
                    .map_err(err)?;
                match &p.hist {
                    Some(h) => {
                        let bars =
                            h.counts
                                .iter()
                                .enumerate()
                                .filter(|(_, &c)| c > 0)
                                .map(|(i, &c)| {
                                    let (a, b) = h.edges(i);
                                    Rectangle::new(
                                        [(a, $ybot), (b, c as f64)],
                                        BLUE.mix(0.6).filled(),
                                    )
                                });
                        chart.draw_series(bars).map_err(err)?;
                    }
                    None => {
                        let pts = (0..=200).map(|i| {
                            let x = xlo + (xhi - xlo) * i as f64 / 200.0;
                            (x, gauss(x, mean, std, 1.0).max($ybot))
                        });
                        chart
                            .draw_series(LineSeries::new(pts, BLUE.stroke_width(2)))
                            .map_err(err)?;
                    }
                }
                for (c, colour) in p.candidates.iter().zip(WINDOW_COLOURS.iter()) {
                    let style = colour.stroke_width(if c.chosen { 4 } else { 2 });
                    let lines =
                        [c.lo, c.hi].map(|x| PathElement::new(vec![(x, $ybot), (x, ymax)], style));
                    chart.draw_series(lines).map_err(err)?;
                }
            }};
        }
        if p.hist.is_some() {
            body!(
                chart
                    .build_cartesian_2d(xlo..xhi, (0.5f64..ymax).log_scale())
                    .map_err(err)?,
                0.5
            );
        } else {
            body!(
                chart
                    .build_cartesian_2d(xlo..xhi, 0f64..ymax)
                    .map_err(err)?,
                0.0
            );
        }
        Ok(())
    })
}
