//! `sim SCENARIO.toml [--seed N] [--chart FILE.svg]`: replays a scenario and prints its report; the last line is
//! `report-hash: <hex>`. Exits 1 when a threshold fails, printing the command that reproduces it.

use std::process::ExitCode;

use anyhow::Context;

const USAGE: &str = "usage: sim SCENARIO.toml [--seed N] [--chart FILE.svg]";

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

#[allow(clippy::disallowed_methods, clippy::disallowed_types)] // Binary edge: reads the scenario file and times the run.
fn run() -> anyhow::Result<bool> {
    let mut scenario_path = None;
    let mut seed = None;
    let mut chart_path = None;
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--seed" => {
                let text = arguments.next().context("--seed needs a value")?;
                seed = Some(text.parse::<u64>().with_context(|| format!("--seed: not a number: {text:?}"))?);
            }
            "--chart" => chart_path = Some(arguments.next().context("--chart needs a file name")?),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(true);
            }
            _ if scenario_path.is_none() && !argument.starts_with('-') => scenario_path = Some(argument),
            _ => anyhow::bail!("unexpected argument {argument:?}\n{USAGE}"),
        }
    }
    let scenario_path = scenario_path.context(USAGE)?;
    let text = std::fs::read_to_string(&scenario_path).with_context(|| format!("read {scenario_path}"))?;
    let scenario = sim::scenario::parse(&text).with_context(|| format!("parse {scenario_path}"))?;
    let seed = seed.unwrap_or(scenario.seed);
    println!("SEED={seed}");
    let wall_started = std::time::Instant::now();
    let result = sim::harness::run(&scenario, seed)?;
    let wall_s = wall_started.elapsed().as_secs_f64();
    let report = sim::report::build(&scenario, &result);
    if let Some(path) = &chart_path {
        let svg = sim::chart::latency_svg(&scenario, &result)?;
        std::fs::write(path, svg).with_context(|| format!("write chart {path}"))?;
        println!("chart: {path}");
    }
    print!("{}", report.deterministic);
    let virtual_s = result.tick_count as f64 / 1000.0;
    println!("real cost (not hashed): wall {wall_s:.2} s, {:.1}x real time", virtual_s / wall_s.max(1e-9));
    if !report.failures.is_empty() {
        println!("reproduce: cargo run --release --bin sim -- {scenario_path} --seed {seed}");
    }
    println!("report-hash: {}", report.hash);
    Ok(report.failures.is_empty())
}
