//! Command-line tool for the engine, in the role promtool plays for Prometheus.
//!
//! - `enginectl check config FILE...` validates configuration files and exits non-zero on the
//!   first invalid one.
//! - `enginectl tsdb list DIR`, `tsdb dump DIR`, `tsdb analyze DIR` read the blocks of a data
//!   directory (this engine's, Prometheus' or promtool's) as promtool's commands of the same
//!   names do; `dump` prints promtool's line format. They read blocks only, never the WAL, and
//!   change nothing on disk.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use engine::config;
use engine::io::{FileSystem, RealFileSystem};
use engine::model::{MatchKind, Matcher};
use engine::storage::Querier;
use engine::tsdb::block::{Block, Ulid};

const USAGE: &str = "usage: enginectl check config FILE...
       enginectl tsdb list DIR
       enginectl tsdb dump DIR
       enginectl tsdb analyze DIR";

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    match arguments.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["check", "config", files @ ..] if !files.is_empty() => check_config(files),
        ["tsdb", command @ ("list" | "dump" | "analyze"), dir] => match tsdb(command, Path::new(dir)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        },
        ["-h" | "--help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn check_config(files: &[&str]) -> ExitCode {
    let mut failed = false;
    for file in files {
        println!("Checking {file}");
        let text = RealFileSystem
            .read(std::path::Path::new(file))
            .map_err(|error| format!("read {file}: {error}"))
            .and_then(|bytes| String::from_utf8(bytes).map_err(|error| format!("{file} is not UTF-8: {error}")));
        match text.and_then(|text| config::parse(&text).map_err(|error| error.to_string())) {
            Ok(config) => println!("  SUCCESS: {}", config.summary()),
            Err(error) => {
                println!("  FAILED: {error}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The blocks of `dir`, oldest first.
fn blocks(dir: &Path) -> Result<Vec<Block>, String> {
    let fs: Arc<dyn FileSystem> = Arc::new(RealFileSystem);
    let names = fs.list_dir(dir).map_err(|error| format!("list {}: {error}", dir.display()))?;
    let mut blocks = Vec::new();
    for name in names.iter().filter(|name| Ulid::parse(name).is_some()) {
        let block = Block::open(fs.clone(), &dir.join(name)).map_err(|error| format!("open block {name}: {error}"))?;
        blocks.push(block);
    }
    blocks.sort_by_key(|block| (block.meta().min_time_ms, block.meta().ulid.clone()));
    Ok(blocks)
}

fn every_series() -> Matcher {
    Matcher::new(MatchKind::Regex, "__name__", ".+").expect("a valid regex")
}

fn tsdb(command: &str, dir: &Path) -> Result<(), String> {
    let blocks = blocks(dir)?;
    match command {
        "list" => {
            println!("BLOCK ULID                  MIN TIME       MAX TIME       DURATION     NUM SAMPLES  NUM CHUNKS   NUM SERIES");
            for block in &blocks {
                let meta = block.meta();
                println!(
                    "{:<27} {:<14} {:<14} {:<12} {:<12} {:<12} {}",
                    meta.ulid,
                    meta.min_time_ms,
                    meta.max_time_ms,
                    format_duration_ms(meta.max_time_ms - meta.min_time_ms),
                    meta.stats.sample_count,
                    meta.stats.chunk_count,
                    meta.stats.series_count
                );
            }
        }
        "dump" => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for block in &blocks {
                let querier = block.querier(i64::MIN, i64::MAX);
                for series in querier.select(None, &[every_series()]) {
                    let series = series.map_err(|error| format!("read block {}: {error}", block.meta().ulid))?;
                    let labels = promtool_labels(&series.labels);
                    for sample in &series.samples {
                        use std::io::Write as _;
                        writeln!(out, "{labels} {} {}", go_format_g(sample.value), sample.timestamp_ms)
                            .map_err(|error| format!("write: {error}"))?;
                    }
                }
            }
        }
        _ => analyze(&blocks)?,
    }
    Ok(())
}

/// Series, chunks, bytes per sample and the label names with the most values, per block.
fn analyze(blocks: &[Block]) -> Result<(), String> {
    for block in blocks {
        let meta = block.meta();
        let size: u64 = ["index", "chunks"].iter().map(|part| directory_size(&block.dir().join(part))).sum();
        println!("Block ID: {}", meta.ulid);
        println!("Duration: {}", format_duration_ms(meta.max_time_ms - meta.min_time_ms));
        println!("Total Series: {}", meta.stats.series_count);
        println!("Total Chunks: {}", meta.stats.chunk_count);
        println!("Total Samples: {}", meta.stats.sample_count);
        if meta.stats.sample_count > 0 {
            println!("Bytes per Sample: {:.2}", size as f64 / meta.stats.sample_count as f64);
        }
        let querier = block.querier(i64::MIN, i64::MAX);
        let names = querier.label_names(&[]).map_err(|error| error.to_string())?;
        let mut cardinality: Vec<(usize, String)> = Vec::new();
        for name in names {
            let value_count = querier.label_values(&name, &[]).map_err(|error| error.to_string())?.len();
            cardinality.push((value_count, name));
        }
        cardinality.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        println!("Highest cardinality labels:");
        for (value_count, name) in cardinality.iter().take(20) {
            println!("{value_count} {name}");
        }
        let mut by_metric: BTreeMap<String, usize> = BTreeMap::new();
        for series in querier.select(None, &[every_series()]) {
            let series = series.map_err(|error| error.to_string())?;
            *by_metric.entry(series.labels.metric_name().unwrap_or("").to_string()).or_default() += 1;
        }
        let mut by_metric: Vec<(usize, String)> = by_metric.into_iter().map(|(name, count)| (count, name)).collect();
        by_metric.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        println!("Highest cardinality metric names:");
        for (series_count, name) in by_metric.iter().take(20) {
            println!("{series_count} {name}");
        }
    }
    Ok(())
}

fn directory_size(path: &Path) -> u64 {
    let fs = RealFileSystem;
    match fs.list_dir(path) {
        Ok(names) => names.iter().map(|name| directory_size(&path.join(name))).sum(),
        Err(_) => fs.file_size(path).unwrap_or(0),
    }
}

fn format_duration_ms(duration_ms: i64) -> String {
    config::format_duration_ms(duration_ms)
}

/// Labels as Go's `labels.Labels.String()` prints them: `{__name__="up", job="a"}`.
fn promtool_labels(labels: &engine::model::Labels) -> String {
    let pairs: Vec<String> = labels.iter().map(|label| format!("{}={:?}", label.name, label.value)).collect();
    format!("{{{}}}", pairs.join(", "))
}

/// A float as Go's `%g` prints it (`strconv.FormatFloat(v, 'g', -1, 64)`): the shortest digits
/// that read back exactly, in exponent form (`1.5e+06`, two exponent digits at least) when the
/// decimal exponent is below -4 or at least 6 (upstream's threshold for shortest formatting).
fn go_format_g(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "+Inf".to_string() } else { "-Inf".to_string() };
    }
    if value == 0.0 {
        return if value.is_sign_negative() { "-0".to_string() } else { "0".to_string() };
    }
    let scientific = format!("{value:e}"); // Shortest digits: `1.234e5`, `-5e-7`.
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if (-4..6).contains(&exponent) {
        format!("{value}")
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::go_format_g;

    #[test]
    fn floats_print_as_go_percent_g() {
        #[track_caller]
        fn check(value: f64, expected: &str) {
            assert_eq!(go_format_g(value), expected, "{value:?}");
        }
        check(1.0, "1");
        check(0.5, "0.5");
        check(-3.25, "-3.25");
        check(123456.7, "123456.7");
        check(1234567.0, "1.234567e+06");
        check(1e21, "1e+21");
        check(0.0001, "0.0001");
        check(0.00001234, "1.234e-05");
        check(1e-300, "1e-300");
        check(f64::NAN, "NaN");
        check(f64::INFINITY, "+Inf");
        check(f64::NEG_INFINITY, "-Inf");
        check(-0.0, "-0");
        check(0.1 + 0.2, "0.30000000000000004");
    }
}
