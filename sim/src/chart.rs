//! Charts of a run, as SVG: query latency over virtual time, failed queries, and the faults.
//! Built only from virtual-time data, so the same seed draws the same chart.

use plotters::prelude::*;

use crate::harness::RunResult;
use crate::scenario::{FaultAction, Scenario};

/// Chart size in pixels.
const WIDTH_PX: u32 = 900;
const HEIGHT_PX: u32 = 420;

/// Query latency (virtual ms) against the time each query was sent; failed queries sit on the
/// x axis in red; a crash is a red vertical line, a restart a green one.
pub fn latency_svg(scenario: &Scenario, result: &RunResult) -> anyhow::Result<String> {
    let points = &result.client.query_points;
    let x_max_s = scenario.duration_s as f64;
    let latency_ms = |latency_us: u64| latency_us as f64 / 1000.0;
    let y_max_ms =
        points.iter().filter(|(_, _, ok)| *ok).map(|(_, latency_us, _)| latency_ms(*latency_us)).fold(1.0, f64::max)
            * 1.2;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let title = format!("{}: query latency (virtual time), seed {}", scenario.name, result.seed);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(0.0..x_max_s, 0.0..y_max_ms)
            .map_err(draw_error)?;
        chart.configure_mesh().x_desc("virtual time (s)").y_desc("latency (ms)").draw().map_err(draw_error)?;
        chart
            .draw_series(points.iter().filter(|(_, _, ok)| *ok).map(|(sent_at_ms, latency_us, _)| {
                Circle::new((*sent_at_ms as f64 / 1000.0, latency_ms(*latency_us)), 2, BLUE.filled())
            }))
            .map_err(draw_error)?
            .label("answered")
            .legend(|(x, y)| Circle::new((x, y), 3, BLUE.filled()));
        chart
            .draw_series(
                points
                    .iter()
                    .filter(|(_, _, ok)| !*ok)
                    .map(|(sent_at_ms, _, _)| Cross::new((*sent_at_ms as f64 / 1000.0, 0.0), 4, RED.stroke_width(2))),
            )
            .map_err(draw_error)?
            .label("failed")
            .legend(|(x, y)| Cross::new((x, y), 4, RED.stroke_width(2)));
        for fault in &result.faults_applied {
            let x_s = fault.at_ms as f64 / 1000.0;
            let color = match fault.action {
                FaultAction::Restart | FaultAction::Heal | FaultAction::DiskFree => GREEN,
                _ => RED,
            };
            chart
                .draw_series(LineSeries::new([(x_s, 0.0), (x_s, y_max_ms)], color.stroke_width(1)))
                .map_err(draw_error)?;
        }
        chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw().map_err(draw_error)?;
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

fn draw_error<E: std::fmt::Debug>(error: E) -> anyhow::Error {
    anyhow::anyhow!("draw chart: {error:?}")
}
