//! Line plots as PNG: the loss curve and the LR finder's curve.
//!
//! Text is drawn with DejaVu Sans compiled into the binary (plotters' `ab_glyph` font backend), so
//! the trainer needs no system font libraries (fontconfig, freetype) on a bare GPU server.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

/// Registers the embedded font as plotters' "sans-serif", once per process.
fn register_font() -> Result<(), Box<dyn std::error::Error>> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        )
        .map_err(|_| "the embedded DejaVu Sans font did not parse");
    });
    Ok(result?)
}

/// One curve: legend label and (x, y) points.
pub struct Series<'a> {
    pub label: &'a str,
    pub points: Vec<(f64, f64)>,
}

/// Draws the series on shared axes and writes a 900x540 PNG (via a temporary file).
pub fn line_plot(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<(), Box<dyn std::error::Error>> {
    let finite = || {
        series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|(x, y)| x.is_finite() && y.is_finite())
    };
    let (x0, x1) = finite().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &(x, _)| {
        (a.min(x), b.max(x))
    });
    let (y0, y1) = finite().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &(_, y)| {
        (a.min(y), b.max(y))
    });
    if !x0.is_finite() || !y0.is_finite() {
        return Err("nothing to plot".into());
    }
    register_font()?;
    let pad = ((y1 - y0) * 0.05).max(1e-9);
    crate::atomic::create(path, |tmp| -> Result<(), Box<dyn std::error::Error>> {
        let root = BitMapBackend::new(tmp, (900, 540)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1.max(x0 + 1e-9), (y0 - pad)..(y1 + pad))?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .draw()?;
        let colours = [BLUE, RED, GREEN, MAGENTA];
        for (s, colour) in series.iter().zip(colours.iter().cycle()) {
            let colour = *colour;
            chart
                .draw_series(LineSeries::new(
                    s.points
                        .iter()
                        .copied()
                        .filter(|(x, y)| x.is_finite() && y.is_finite()),
                    colour.stroke_width(2),
                ))?
                .label(s.label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    })
}
