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
    let title = format!("{}: query latency (virtual time), seed {}", scenario.name, result.seed);
    points_svg(scenario, result, &result.client.query_points, title)
}

/// The herd's latency through the frontend, drawn as [`latency_svg`] draws the client's.
pub fn frontend_latency_svg(
    scenario: &Scenario,
    result: &RunResult,
    herd: &crate::herd::HerdOutcome,
) -> anyhow::Result<String> {
    let title = format!("{}: users' latency through the frontend (virtual time), seed {}", scenario.name, result.seed);
    points_svg(scenario, result, &herd.points, title)
}

fn points_svg(
    scenario: &Scenario,
    result: &RunResult,
    points: &[(u64, u64, bool)],
    title: String,
) -> anyhow::Result<String> {
    let x_max_s = scenario.duration_s as f64;
    let latency_ms = |latency_us: u64| latency_us as f64 / 1000.0;
    let y_max_ms =
        points.iter().filter(|(_, _, ok)| *ok).map(|(_, latency_us, _)| latency_ms(*latency_us)).fold(1.0, f64::max)
            * 1.2;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
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
        draw_faults(&mut chart, result, y_max_ms)?;
        chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw().map_err(draw_error)?;
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

/// Samples committed per virtual second (by sample timestamp, from the ledger), with the
/// faults marked as on the latency chart.
pub fn ingest_svg(scenario: &Scenario, result: &RunResult) -> anyhow::Result<String> {
    let rate = ingest_per_second(scenario, result);
    let x_max_s = scenario.duration_s as f64;
    let y_max = rate.iter().copied().max().unwrap_or(1).max(1) as f64 * 1.2;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let title = format!("{}: samples committed per second (virtual time), seed {}", scenario.name, result.seed);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(0.0..x_max_s, 0.0..y_max)
            .map_err(draw_error)?;
        chart.configure_mesh().x_desc("virtual time (s)").y_desc("samples / s").draw().map_err(draw_error)?;
        chart
            .draw_series(LineSeries::new(
                rate.iter().enumerate().map(|(second, count)| (second as f64 + 0.5, *count as f64)),
                BLUE.stroke_width(2),
            ))
            .map_err(draw_error)?
            .label("committed")
            .legend(|(x, y)| PathElement::new([(x - 8, y), (x + 8, y)], BLUE.stroke_width(2)));
        draw_faults(&mut chart, result, y_max)?;
        chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw().map_err(draw_error)?;
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

/// Distinct committed samples per virtual second of the workload, by sample timestamp (the
/// verification phase after it is left out).
pub fn ingest_per_second(scenario: &Scenario, result: &RunResult) -> Vec<u64> {
    let mut rate = vec![0_u64; scenario.duration_s as usize];
    for samples in result.ledger.samples.values() {
        for timestamp_ms in samples.keys() {
            let second = (timestamp_ms - scenario.epoch_ms as i64).max(0) / 1000;
            if let Some(count) = rate.get_mut(second as usize) {
                *count += 1;
            }
        }
    }
    rate
}

/// A vertical line per fault: green for those that end one (restart, heal, disk freed), red
/// for the rest.
fn draw_faults<DB: DrawingBackend>(
    chart: &mut ChartContext<
        '_,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    result: &RunResult,
    y_max: f64,
) -> anyhow::Result<()> {
    for fault in &result.faults_applied {
        let x_s = fault.at_ms as f64 / 1000.0;
        let color = match fault.action {
            FaultAction::Restart | FaultAction::Heal | FaultAction::DiskFree => GREEN,
            _ => RED,
        };
        chart.draw_series(LineSeries::new([(x_s, 0.0), (x_s, y_max)], color.stroke_width(1))).map_err(draw_error)?;
    }
    Ok(())
}

fn draw_error<E: std::fmt::Debug>(error: E) -> anyhow::Error {
    anyhow::anyhow!("draw chart: {error:?}")
}
