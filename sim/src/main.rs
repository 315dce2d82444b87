//! `sim SCENARIO.toml [--seed N | --seeds A..B] [--chart FILE.svg] [--out DIR]`: replays a
//! scenario and prints its report; the last line is `report-hash: <hex>`. `--out` also writes
//! the report directory (`report.md`, `report.json`, charts). `--seeds` sweeps a range of seeds and prints one
//! line per seed plus the distribution of alert latency over the sweep. Exits 1 when a threshold
//! fails, printing the command that reproduces it.

use std::process::ExitCode;

use anyhow::Context;
use sha2::Digest;

const USAGE: &str = "usage: sim SCENARIO.toml [--seed N | --seeds A..B] [--chart FILE.svg] [--out DIR]";
/// Most seeds one sweep runs.
const SWEEP_SEED_COUNT_MAX: u64 = 10_000;

fn main() -> ExitCode {
    // `SIM_LOG=info` (or debug, warn, ...) prints every simulated host's engine log to stderr;
    // the report and its hash do not change.
    #[allow(clippy::disallowed_methods)] // Binary edge: reads its environment once.
    if let Some(level) =
        std::env::var("SIM_LOG").ok().and_then(|text| text.parse::<tracing_subscriber::filter::LevelFilter>().ok())
    {
        tracing_subscriber::fmt().with_max_level(level).with_writer(std::io::stderr).with_ansi(false).init();
    }
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
    let mut seed_range = None;
    let mut out_dir = None;
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--seed" => {
                let text = arguments.next().context("--seed needs a value")?;
                seed = Some(text.parse::<u64>().with_context(|| format!("--seed: not a number: {text:?}"))?);
            }
            "--seeds" => {
                let text = arguments.next().context("--seeds needs a range A..B")?;
                let (first, last) = text.split_once("..").with_context(|| format!("--seeds: {text:?} is not A..B"))?;
                let first: u64 = first.parse().with_context(|| format!("--seeds: bad start in {text:?}"))?;
                let last: u64 = last.parse().with_context(|| format!("--seeds: bad end in {text:?}"))?;
                anyhow::ensure!(
                    first <= last && last - first < SWEEP_SEED_COUNT_MAX,
                    "--seeds: {text:?} is empty or too long"
                );
                seed_range = Some((first, last));
            }
            "--chart" => chart_path = Some(arguments.next().context("--chart needs a file name")?),
            "--out" => out_dir = Some(arguments.next().context("--out needs a directory")?),
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
    if let Some((first, last)) = seed_range {
        return sweep(&scenario, &scenario_path, first, last);
    }
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
    let cost = sim::output::RealCost { wall_s, speedup: virtual_s / wall_s.max(1e-9) };
    println!("real cost (not hashed): wall {wall_s:.2} s, {:.1}x real time", cost.speedup);
    if let Some(dir) = &out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("create {dir}"))?;
        for (name, bytes) in sim::output::render(&scenario, &scenario_path, &result, &report, cost)? {
            let path = std::path::Path::new(dir).join(name);
            std::fs::write(&path, bytes).with_context(|| format!("write {}", path.display()))?;
        }
        println!("report: {dir}/report.md");
    }
    if !report.failures.is_empty() {
        println!("reproduce: cargo run --release --bin sim -- {scenario_path} --seed {seed}");
    }
    println!("report-hash: {}", report.hash);
    Ok(report.failures.is_empty())
}

/// Runs every seed of `first..=last`, one summary line each, then the alert latency distribution.
#[allow(clippy::disallowed_methods, clippy::disallowed_types)] // Binary edge: times the sweep.
fn sweep(scenario: &sim::scenario::Scenario, scenario_path: &str, first: u64, last: u64) -> anyhow::Result<bool> {
    let wall_started = std::time::Instant::now();
    let mut lines = vec![format!("sweep: {} seeds {first}..{last}", scenario.name)];
    let mut latency_ms = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000, 3)?;
    let mut failed_seeds = Vec::new();
    for seed in first..=last {
        let result = sim::harness::run(scenario, seed)?;
        let report = sim::report::build(scenario, &result);
        let alerting = result.alerting.as_ref();
        let latency = alerting.and_then(sim::alerting::AlertingOutcome::latency_ms);
        if let Some(latency) = latency {
            latency_ms.record(latency.max(1))?;
        }
        let groups = alerting.map(|outcome| outcome.firing_per_group()).unwrap_or_default();
        let verdict = if report.failures.is_empty() { "PASS" } else { "FAIL" };
        lines.push(format!(
            "seed {seed}: {verdict} alert latency {} ms, firing notifications per group {:?}, report-hash {}",
            latency.map_or("-".to_string(), |latency| latency.to_string()),
            groups.iter().map(|(_, count)| *count).collect::<Vec<_>>(),
            &report.hash[..16]
        ));
        for failure in &report.failures {
            lines.push(format!("  failed: {failure}"));
        }
        if !report.failures.is_empty() {
            failed_seeds.push(seed);
        }
    }
    if !latency_ms.is_empty() {
        lines.push(format!(
            "alert latency over {} seeds, ms (virtual): p50 {} p95 {} p99 {} max {}",
            latency_ms.len(),
            latency_ms.value_at_quantile(0.5),
            latency_ms.value_at_quantile(0.95),
            latency_ms.value_at_quantile(0.99),
            latency_ms.max()
        ));
    }
    lines.push(format!(
        "verdict: {} of {} seeds passed",
        (last - first + 1) - failed_seeds.len() as u64,
        last - first + 1
    ));
    let deterministic = lines.join("\n") + "\n";
    print!("{deterministic}");
    println!("real cost (not hashed): wall {:.2} s", wall_started.elapsed().as_secs_f64());
    for seed in &failed_seeds {
        println!("reproduce: cargo run --release --bin sim -- {scenario_path} --seed {seed}");
    }
    let hash: String =
        sha2::Sha256::digest(deterministic.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect();
    println!("report-hash: {hash}");
    Ok(failed_seeds.is_empty())
}
