//! Command-line tool for the engine, in the role promtool plays for Prometheus.
//!
//! - `enginectl check config FILE...` validates configuration files, the rule files they
//!   reference and the embedded alert manager's `config_file`, and exits non-zero when any is
//!   invalid.
//! - `enginectl check rules FILE...` validates rule files with promtool's wording
//!   (`Checking F`, `  SUCCESS: N rules found`, `  FAILED:` and the errors) and exit codes.
//! - `enginectl test rules FILE...` runs rule unit test files in promtool's format
//!   (`engine::rules::unittest`) with promtool's output and exit codes: each test group over
//!   a fresh in-memory database.
//! - `enginectl tsdb list DIR`, `tsdb dump DIR`, `tsdb analyze DIR` read the blocks of a data
//!   directory (this engine's, Prometheus' or promtool's) as promtool's commands of the same
//!   names do; `dump` prints promtool's line format. They read blocks only, never the WAL, and
//!   change nothing on disk.
//! - `enginectl tsdb create-blocks-from openmetrics FILE [DIR]` writes blocks from an OpenMetrics
//!   file as promtool's command of that name does (`engine::tsdb::backfill`), into DIR (default
//!   `data/`), and lists them unless `--quiet`. Flags as promtool's: `--max-block-duration=DUR`
//!   (default 2h), `-r`/`--human-readable`, `-q`/`--quiet`, and `--max-samples-in-memory=N`,
//!   accepted and without effect here (samples go straight into compressed chunks).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use engine::config;
use engine::io::{FileSystem, MemFileSystem, RealFileSystem, TokioSpawner};
use engine::model::{MatchKind, Matcher};
use engine::rules::unittest::{self, TestStorage};
use engine::storage::Querier;
use engine::tsdb::backfill::{create_blocks_from_openmetrics, BackfillOptions};
use engine::tsdb::block::{Block, BlockMeta, Ulid};
use engine::tsdb::{Db, DbOptions};

const USAGE: &str = "usage: enginectl check config FILE...
       enginectl check rules FILE...
       enginectl test rules FILE...
       enginectl tsdb list [-r] DIR
       enginectl tsdb dump DIR
       enginectl tsdb analyze DIR
       enginectl tsdb create-blocks-from openmetrics [--max-block-duration=2h] [-r] [-q] FILE [DIR]";

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    match arguments.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["check", "config", files @ ..] if !files.is_empty() => check_config(files),
        ["check", "rules", files @ ..] if !files.is_empty() => {
            let mut failed = false;
            for file in files {
                failed |= !check_rules_file(Path::new(file));
            }
            if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        ["test", "rules", files @ ..] if !files.is_empty() => test_rules(files),
        ["tsdb", "create-blocks-from", "openmetrics", rest @ ..] => match Backfill::parse(rest) {
            Ok(backfill) => report(backfill.run()),
            Err(error) => {
                eprintln!("error: {error}\n{USAGE}");
                ExitCode::from(2)
            }
        },
        ["tsdb", "list", "-r" | "--human-readable", dir] => report(list(Path::new(dir), true)),
        ["tsdb", command @ ("list" | "dump" | "analyze"), dir] => report(tsdb(command, Path::new(dir))),
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

fn report(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `tsdb create-blocks-from openmetrics` arguments.
struct Backfill {
    input: String,
    output_dir: String,
    max_block_duration_ms: i64,
    human_readable: bool,
    quiet: bool,
}

impl Backfill {
    fn parse(arguments: &[&str]) -> Result<Backfill, String> {
        let mut positional = Vec::new();
        let mut backfill = Backfill {
            input: String::new(),
            output_dir: "data/".to_string(),
            max_block_duration_ms: engine::limits::BLOCK_RANGE_MS_DEFAULT,
            human_readable: false,
            quiet: false,
        };
        let mut arguments = arguments.iter().copied();
        while let Some(argument) = arguments.next() {
            let (flag, inline_value) = match argument.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag, Some(value)),
                _ => (argument, None),
            };
            let mut value = |name: &str| {
                inline_value.or_else(|| arguments.next()).ok_or_else(|| format!("flag {name} needs a value"))
            };
            match flag {
                "-r" | "--human-readable" => backfill.human_readable = true,
                "-q" | "--quiet" => backfill.quiet = true,
                "--max-block-duration" => {
                    let text = value(flag)?;
                    backfill.max_block_duration_ms = config::parse_duration_ms(text)
                        .map_err(|error| format!("--max-block-duration {text:?}: {error}"))?;
                }
                "--max-samples-in-memory" => {
                    let text = value(flag)?;
                    text.parse::<u64>().map_err(|error| format!("--max-samples-in-memory {text:?}: {error}"))?;
                }
                flag if flag.starts_with('-') && flag.len() > 1 => return Err(format!("unknown flag {flag}")),
                _ => positional.push(argument.to_string()),
            }
        }
        match positional.as_slice() {
            [input] => backfill.input = input.clone(),
            [input, output_dir] => {
                backfill.input = input.clone();
                backfill.output_dir = output_dir.clone();
            }
            _ => return Err("expected an input file and an optional output directory".to_string()),
        }
        Ok(backfill)
    }

    // The binary's edge: wall time and OS randomness name the blocks, as promtool's ULIDs do.
    #[allow(clippy::disallowed_methods)]
    fn run(&self) -> Result<(), String> {
        let fs: Arc<dyn FileSystem> = Arc::new(RealFileSystem);
        let input = fs.read(Path::new(&self.input)).map_err(|error| format!("read {}: {error}", self.input))?;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|error| format!("clock before 1970: {error}"))?
            .as_millis() as u64;
        let options = BackfillOptions {
            max_block_duration_ms: self.max_block_duration_ms,
            ulid_time_ms: now_ms,
            ulid_random: rand::random::<u128>(),
            ..BackfillOptions::default()
        };
        let output_dir = Path::new(&self.output_dir);
        let metas = create_blocks_from_openmetrics(fs, &input, output_dir, &options)
            .map_err(|error| format!("backfill {}: {error}", self.input))?;
        if !self.quiet {
            print_blocks(output_dir, &metas, self.human_readable);
        }
        Ok(())
    }
}

fn list(dir: &Path, human_readable: bool) -> Result<(), String> {
    let metas: Vec<BlockMeta> = blocks(dir)?.iter().map(|block| block.meta().clone()).collect();
    print_blocks(dir, &metas, human_readable);
    Ok(())
}

/// promtool's `printBlocks` table: ULID, times, duration, counts and size, aligned as Go's
/// tabwriter (minimum width 13, padding 2) aligns them.
fn print_blocks(dir: &Path, metas: &[BlockMeta], human_readable: bool) {
    let mut rows =
        vec![["BLOCK ULID", "MIN TIME", "MAX TIME", "DURATION", "NUM SAMPLES", "NUM CHUNKS", "NUM SERIES", "SIZE"]
            .map(str::to_string)];
    for meta in metas {
        let size = directory_size(&dir.join(&meta.ulid));
        let time = |time_ms: i64| match human_readable {
            true => go_utc_time(time_ms.div_euclid(1000)),
            false => time_ms.to_string(),
        };
        rows.push([
            meta.ulid.clone(),
            time(meta.min_time_ms),
            time(meta.max_time_ms),
            go_duration(meta.max_time_ms - meta.min_time_ms),
            meta.stats.sample_count.to_string(),
            meta.stats.chunk_count.to_string(),
            meta.stats.series_count.to_string(),
            match human_readable {
                true => base2_bytes(size),
                false => size.to_string(),
            },
        ]);
    }
    let column_count = rows[0].len();
    let widths: Vec<usize> = (0..column_count - 1)
        .map(|column| rows.iter().map(|row| row[column].chars().count() + 2).max().unwrap_or(0).max(13))
        .collect();
    for row in &rows {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            match widths.get(column) {
                Some(width) => line.push_str(&format!("{cell:<width$}")),
                None => line.push_str(cell),
            }
        }
        println!("{line}");
    }
}

/// Go's `time.Time.String()` of a UTC time: `2006-01-02 15:04:05 +0000 UTC`.
fn go_utc_time(unix_s: i64) -> String {
    let days = unix_s.div_euclid(86_400);
    let seconds_of_day = unix_s.rem_euclid(86_400);
    let (year, month, day) = engine::calendar::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} +0000 UTC",
        seconds_of_day / 3600,
        seconds_of_day / 60 % 60,
        seconds_of_day % 60
    )
}

/// Go's `time.Duration.String()` for whole milliseconds: `2h0m0s`, `1m30.5s`, `250ms`.
fn go_duration(duration_ms: i64) -> String {
    engine::rules::unittest::go_duration(duration_ms)
}

/// alecthomas/units' `Base2Bytes.String()`: each non-zero power of 1024 from the largest,
/// `1MiB512KiB`, `0B` for zero.
fn base2_bytes(size: u64) -> String {
    if size == 0 {
        return "0B".to_string();
    }
    let mut out = String::new();
    let mut rest = size;
    for (unit, scale) in [
        ("EiB", 1_u64 << 60),
        ("PiB", 1 << 50),
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("B", 1),
    ] {
        if rest >= scale {
            out.push_str(&format!("{}{unit}", rest / scale));
            rest %= scale;
        }
    }
    out
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
            Ok(config) => {
                println!("  SUCCESS: {}", config.summary());
                let base_dir = Path::new(file).parent().unwrap_or(Path::new(""));
                if let Some(config::AlertManagerSource::File(name)) =
                    config.alert_manager.as_ref().map(|section| &section.source)
                {
                    failed |= !check_alert_manager_file(&base_dir.join(name));
                }
                match engine::rules::file::resolve_rule_files(&RealFileSystem, base_dir, &config.rule_files) {
                    Ok(rule_files) => {
                        if !rule_files.is_empty() {
                            println!("  SUCCESS: {} rule files found", rule_files.len());
                        }
                        println!();
                        for rule_file in rule_files {
                            failed |= !check_rules_file(&rule_file);
                        }
                    }
                    Err(error) => {
                        println!("  FAILED: {error}");
                        failed = true;
                    }
                }
            }
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

/// The embedded alert manager's configuration file (as `amtool check-config`): true when valid.
fn check_alert_manager_file(path: &Path) -> bool {
    let text =
        RealFileSystem.read(path).map_err(|error| format!("read {}: {error}", path.display())).and_then(|bytes| {
            String::from_utf8(bytes).map_err(|error| format!("{} is not UTF-8: {error}", path.display()))
        });
    match text.and_then(|text| engine::alert::config::parse(&text).map_err(|error| error.to_string())) {
        Ok(config) => {
            println!("  SUCCESS: alert manager config {} ({} receivers)", path.display(), config.receivers.len());
            true
        }
        Err(error) => {
            println!("  FAILED: alert manager config {}: {error}", path.display());
            false
        }
    }
}

/// promtool's `check rules` for one file: true when valid.
fn check_rules_file(path: &Path) -> bool {
    println!("Checking {}", path.display());
    match engine::rules::file::load_rule_file(&RealFileSystem, path) {
        Ok(file) => {
            println!("  SUCCESS: {} rules found", file.rule_count());
            println!();
            true
        }
        Err(errors) => {
            eprintln!("  FAILED:");
            for error in errors {
                eprintln!("{error}");
            }
            println!();
            false
        }
    }
}

/// promtool's `test rules`: every file must exist (kingpin's `ExistingFiles`, checked before
/// any runs), then each runs in turn, its report printed as it finishes.
fn test_rules(files: &[&str]) -> ExitCode {
    let fs = RealFileSystem;
    for file in files {
        let path = Path::new(file);
        if fs.list_dir(path).is_ok() {
            let name = path.file_name().map_or_else(|| file.to_string(), |name| name.to_string_lossy().into_owned());
            eprintln!("enginectl: error: '{name}' is a directory, try --help");
            return ExitCode::FAILURE;
        }
        if fs.file_size(path).is_err() {
            eprintln!("enginectl: error: path '{file}' does not exist, try --help");
            return ExitCode::FAILURE;
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: start runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // promtool's `teststorage.New`: a database of its own for every test group, in memory.
    let open_storage = || -> Result<TestStorage, String> {
        let options = DbOptions { background_compaction: false, ..DbOptions::default() };
        let db = Db::open(Arc::new(MemFileSystem::default()), &TokioSpawner, Path::new("/data"), options)
            .map_err(|error| format!("open test storage: {error}"))?;
        Ok(TestStorage { appendable: Arc::new(db.clone()), queryable: Arc::new(db) })
    };
    let failed = runtime.block_on(async {
        let mut failed = false;
        for file in files {
            let report = unittest::run_file(&fs, file, &open_storage).await;
            use std::io::Write as _;
            let _ = std::io::stdout().write_all(report.stdout.as_bytes());
            let _ = std::io::stdout().flush();
            let _ = std::io::stderr().write_all(report.stderr.as_bytes());
            failed |= report.failed;
        }
        failed
    });
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
            let metas: Vec<BlockMeta> = blocks.iter().map(|block| block.meta().clone()).collect();
            print_blocks(dir, &metas, false);
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
    engine::template::format_float(value, 'g', None)
}

#[cfg(test)]
mod tests {
    use super::{base2_bytes, go_duration, go_format_g, go_utc_time};

    #[test]
    fn promtool_table_cells() {
        #[track_caller]
        fn check(got: String, expected: &str) {
            assert_eq!(got, expected);
        }
        check(go_duration(7_200_000), "2h0m0s");
        check(go_duration(7_199_999), "1h59m59.999s");
        check(go_duration(90_500), "1m30.5s");
        check(go_duration(1_000), "1s");
        check(go_duration(250), "250ms");
        check(go_duration(0), "0s");
        check(go_duration(-1_500), "-1.5s");
        check(go_utc_time(0), "1970-01-01 00:00:00 +0000 UTC");
        check(go_utc_time(1_700_000_000), "2023-11-14 22:13:20 +0000 UTC");
        check(go_utc_time(951_782_400), "2000-02-29 00:00:00 +0000 UTC");
        check(go_utc_time(-1), "1969-12-31 23:59:59 +0000 UTC");
        check(base2_bytes(0), "0B");
        check(base2_bytes(1536), "1KiB512B");
        check(base2_bytes(3 << 20), "3MiB");
    }

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
