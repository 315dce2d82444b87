//! `compare ingest`: the engine's ingest cost next to Prometheus' and VictoriaMetrics' on
//! identical data, from one run on one machine. The command serves a synthetic exporter fleet on
//! `127.0.0.1:<target-port-base + i>`, runs each system in turn (never two at once) with its own
//! temporary data directory and loopback port, lets it scrape every target at `--interval`, and
//! after a warm-up reads over the window: CPU seconds of the process (`/proc/<pid>/stat`), the
//! system's own samples-appended counter and active-series gauge (its `/metrics`), resident
//! memory (`/proc/<pid>/status`) and the data directory's size. The report goes to stdout and,
//! with `--out`, to a Markdown file.
//!
//! `compare query`: query latency on the same series. The command writes the
//! [`Dataset`](bench::query::dataset) (2 h at 15 s ending now) as one OpenMetrics file; for each
//! system in turn it loads the series (the engine: `enginectl tsdb create-blocks-from
//! openmetrics`, Prometheus: `promtool` with the same arguments, VictoriaMetrics: its
//! `/api/v1/import/prometheus`, then `/internal/force_flush`), starts it, waits until it is idle,
//! checks `count({__name__=~".+"})`, then runs every query of the set `--warmups` times and
//! `--runs` times measured, one request at a time, timing each on the client and reading the
//! process' CPU from `/proc/<pid>/stat` before and after. The engine's answers are compared with
//! Prometheus'. The report goes to stdout and, with `--out`, to a Markdown file.
//!
//! Invariants: every process this command starts (systems and backfill tools) is stopped
//! (SIGTERM, then SIGKILL after [`STOP_GRACE_MS`]; tools by SIGKILL) and its directory removed
//! when its guard drops: on success, on error, on Ctrl-C or SIGTERM; every wait is bounded. The
//! generator's bodies are a pure function of (seed, data kind, target, scrape number seen by
//! that target), and the scrape numbers restart at zero for each system, so every system sees
//! the same sequence; the query dataset is a pure function of (seed, series, end time).
//!
//! Concurrency: one current-thread tokio runtime runs the generator's listeners and the
//! measurement, so the generator never takes more than one core; its CPU is reported. Queries
//! are sent one at a time, and never to two systems at once.
//!
//! This tool sits outside the engine and talks to the OS directly (processes, sockets, files,
//! wall time), which the engine's determinism lints forbid elsewhere.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::convert::Infallible;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bench::ingest::exposition;
use bench::ingest::procfs;
use bench::ingest::report::{self, DiskPart, Measurement, Outcome, RunParameters};
use bench::ingest::rules::{rule_file_yaml, RuleFigures, RuleLoad};
use bench::ingest::workload::{DataKind, Workload, SERIES_COUNT_MAX};
use bench::query::dataset::{Dataset, Format, STEP_MS};
use bench::query::queries::{evaluation_time_ms, query_set, request_path, Query, Shape};
use bench::query::report::{
    self as query_report, LoadStep, QueryMeasurement, QueryOutcome, RunParameters as QueryRunParameters, SystemOutcome,
    SystemRun,
};
use bench::query::result::{self, QueryResult};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

const USAGE: &str = "usage: compare ingest [flags]

  --targets N                 targets the generator serves (default 100, at most 1000)
  --series N                  series per target (default 1000)
  --interval DUR              scrape interval (default 1s)
  --warmup DUR                time each system runs before the window (default 30s)
  --measure DUR               measurement window (default 120s)
  --data random|realistic     values: seeded random f64, or exporter-like (default random)
  --seed N                    seed of the values (default 1)
  --systems LIST              comma-separated: engine,prometheus,victoria-metrics (default all)
  --engine-bin PATH           engine server binary (default target/release/server)
  --prometheus-bin PATH       default /usr/bin/prometheus
  --victoria-metrics-bin PATH default /usr/bin/victoria-metrics
  --target-port-base PORT     first generator port (default 20000)
  --system-port PORT          port each system listens on, one at a time (default 29090)
  --rules N                   also evaluate N alerting rules on the engine and Prometheus
                              (default 0: none; VictoriaMetrics evaluates rules in vmalert)
  --rule-group-size N         rules per group (default 100)
  --rule-interval DUR         every group's evaluation interval (default 15s)
  --out FILE                  also write the Markdown report here";

/// Most targets: bounds the listeners and the ports used.
const TARGET_COUNT_MAX: usize = 1000;
/// Longest a system may take to answer its first `/metrics`.
const STARTUP_MS_MAX: u64 = 60_000;
/// Longest a system gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE_MS: u64 = 10_000;
/// Longest one request to a system's `/metrics` may take.
const METRICS_REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Largest `/metrics` page read from a system.
const METRICS_BODY_SIZE_MAX: usize = 16 * 1024 * 1024;
/// Pause between two systems, so one's exit does not bleed into the next's window.
const COOL_DOWN_MS: u64 = 5_000;
/// The rule file's name in each system's work directory (`--rules`).
const RULE_FILE_NAME: &str = "rules.yml";
/// Log lines quoted when a system fails.
const LOG_TAIL_LINE_COUNT: usize = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    Engine,
    Prometheus,
    VictoriaMetrics,
}

impl System {
    fn parse(text: &str) -> Option<System> {
        match text {
            "engine" => Some(System::Engine),
            "prometheus" => Some(System::Prometheus),
            "victoria-metrics" => Some(System::VictoriaMetrics),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            System::Engine => "engine",
            System::Prometheus => "prometheus",
            System::VictoriaMetrics => "victoria-metrics",
        }
    }

    /// Where its samples-appended counter may live, first match wins.
    fn samples_metrics(self) -> &'static [(&'static str, &'static [(&'static str, &'static str)])] {
        match self {
            System::Engine => &[
                ("prometheus_tsdb_head_samples_appended_total", &[]),
                ("engine_tsdb_head_samples_appended_total", &[]),
            ],
            System::Prometheus => &[("prometheus_tsdb_head_samples_appended_total", &[])],
            System::VictoriaMetrics => {
                &[("vm_rows_inserted_total", &[("type", "promscrape")]), ("vm_rows_added_to_storage_total", &[])]
            }
        }
    }

    /// Where its active-series gauge may live, first match wins.
    fn series_metrics(self) -> &'static [(&'static str, &'static [(&'static str, &'static str)])] {
        match self {
            System::Engine => &[("prometheus_tsdb_head_series", &[]), ("engine_tsdb_head_series", &[])],
            System::Prometheus => &[("prometheus_tsdb_head_series", &[])],
            System::VictoriaMetrics => &[
                ("vm_cache_entries", &[("type", "storage/hour_metric_ids")]),
                ("vm_cache_entries", &[("type", "storage/tsid")]),
            ],
        }
    }
}

struct Options {
    target_count: usize,
    series_count: usize,
    interval_ms: u64,
    warmup_ms: u64,
    measure_ms: u64,
    data_kind: DataKind,
    seed: u64,
    systems: Vec<System>,
    engine_bin: PathBuf,
    prometheus_bin: PathBuf,
    victoria_metrics_bin: PathBuf,
    target_port_base: u16,
    system_port: u16,
    rule_count: usize,
    rule_group_size: usize,
    rule_interval_ms: u64,
    out: Option<PathBuf>,
}

impl Options {
    /// The rule load, when `--rules` asked for one.
    fn rule_load(&self) -> Option<RuleLoad> {
        (self.rule_count > 0).then_some(RuleLoad {
            rule_count: self.rule_count,
            group_size: self.rule_group_size,
            interval_ms: self.rule_interval_ms,
            target_count: self.target_count,
            port_base: self.target_port_base,
        })
    }
}

fn parse_duration(flag: &str, text: &str) -> anyhow::Result<u64> {
    let duration_ms = engine::config::parse_duration_ms(text).map_err(|error| anyhow::anyhow!("{flag}: {error}"))?;
    if duration_ms <= 0 {
        bail!("{flag}: must be positive, got {text:?}");
    }
    Ok(duration_ms as u64)
}

fn parse_number<T: std::str::FromStr>(flag: &str, text: &str) -> anyhow::Result<T> {
    text.parse().map_err(|_| anyhow::anyhow!("{flag}: not a number: {text:?}"))
}

/// The `(flag, value)` pairs of `arguments` (`--flag value` or `--flag=value`); `None` after
/// printing `usage` for `-h`/`--help`.
fn flag_values(arguments: &[String], usage: &str) -> anyhow::Result<Option<Vec<(String, String)>>> {
    let mut pairs = Vec::new();
    let mut arguments = arguments.iter();
    while let Some(argument) = arguments.next() {
        if argument == "-h" || argument == "--help" {
            println!("{usage}");
            return Ok(None);
        }
        let (flag, inline_value) = match argument.split_once('=') {
            Some((flag, value)) => (flag, Some(value.to_string())),
            None => (argument.as_str(), None),
        };
        match inline_value.or_else(|| arguments.next().cloned()) {
            Some(value) => pairs.push((flag.to_string(), value)),
            None => bail!("flag {flag} needs a value\n\n{usage}"),
        }
    }
    Ok(Some(pairs))
}

fn parse_options(arguments: &[String]) -> anyhow::Result<Option<Options>> {
    let mut options = Options {
        target_count: 100,
        series_count: 1000,
        interval_ms: 1000,
        warmup_ms: 30_000,
        measure_ms: 120_000,
        data_kind: DataKind::Random,
        seed: 1,
        systems: vec![System::Engine, System::Prometheus, System::VictoriaMetrics],
        engine_bin: PathBuf::from("target/release/server"),
        prometheus_bin: PathBuf::from("/usr/bin/prometheus"),
        victoria_metrics_bin: PathBuf::from("/usr/bin/victoria-metrics"),
        target_port_base: 20_000,
        system_port: 29_090,
        rule_count: 0,
        rule_group_size: 100,
        rule_interval_ms: 15_000,
        out: None,
    };
    match arguments.first().map(String::as_str) {
        Some("ingest") => {}
        Some("-h" | "--help") | None => {
            println!("{USAGE}");
            return Ok(None);
        }
        Some(other) => bail!("unknown command {other:?}\n\n{USAGE}"),
    }
    let Some(flags) = flag_values(&arguments[1..], USAGE)? else {
        return Ok(None);
    };
    for (flag, value) in flags {
        let flag = flag.as_str();
        match flag {
            "--targets" => options.target_count = parse_number(flag, &value)?,
            "--series" => options.series_count = parse_number(flag, &value)?,
            "--interval" => options.interval_ms = parse_duration(flag, &value)?,
            "--warmup" => options.warmup_ms = parse_duration(flag, &value)?,
            "--measure" => options.measure_ms = parse_duration(flag, &value)?,
            "--data" => {
                options.data_kind = DataKind::parse(&value)
                    .ok_or_else(|| anyhow::anyhow!("--data: expected random or realistic, got {value:?}"))?
            }
            "--seed" => options.seed = parse_number(flag, &value)?,
            "--systems" => options.systems = parse_systems(&value)?,
            "--engine-bin" => options.engine_bin = PathBuf::from(value),
            "--prometheus-bin" => options.prometheus_bin = PathBuf::from(value),
            "--victoria-metrics-bin" => options.victoria_metrics_bin = PathBuf::from(value),
            "--target-port-base" => options.target_port_base = parse_number(flag, &value)?,
            "--system-port" => options.system_port = parse_number(flag, &value)?,
            "--rules" => options.rule_count = parse_number(flag, &value)?,
            "--rule-group-size" => options.rule_group_size = parse_number(flag, &value)?,
            "--rule-interval" => options.rule_interval_ms = parse_duration(flag, &value)?,
            "--out" => options.out = Some(PathBuf::from(value)),
            _ => bail!("unknown flag {flag:?}\n\n{USAGE}"),
        }
    }
    if options.target_count == 0 || options.target_count > TARGET_COUNT_MAX {
        bail!("--targets: expected 1..={TARGET_COUNT_MAX}, got {}", options.target_count);
    }
    if options.series_count == 0 || options.series_count > SERIES_COUNT_MAX {
        bail!("--series: expected 1..={SERIES_COUNT_MAX}, got {}", options.series_count);
    }
    let last_port = options.target_port_base as usize + options.target_count - 1;
    if last_port > u16::MAX as usize || (options.target_port_base..=last_port as u16).contains(&options.system_port) {
        bail!(
            "--target-port-base {} with {} targets overflows or overlaps --system-port",
            options.target_port_base,
            options.target_count
        );
    }
    if options.systems.is_empty() {
        bail!("--systems: name at least one system");
    }
    if options.rule_group_size == 0 {
        bail!("--rule-group-size: must be positive");
    }
    Ok(Some(options))
}

/// The exporter fleet: one listener per target, each counting the scrapes it served.
struct Generator {
    scrape_counts: Arc<Vec<AtomicU64>>,
    listener_tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Generator {
    async fn start(workload: Arc<Workload>, target_count: usize, port_base: u16) -> anyhow::Result<Generator> {
        let scrape_counts: Arc<Vec<AtomicU64>> = Arc::new((0..target_count).map(|_| AtomicU64::new(0)).collect());
        let mut listener_tasks = Vec::with_capacity(target_count);
        for target_index in 0..target_count {
            let port = port_base + target_index as u16;
            let listener = TcpListener::bind(("127.0.0.1", port))
                .await
                .with_context(|| format!("bind generator target {target_index} on 127.0.0.1:{port}"))?;
            let workload = workload.clone();
            let scrape_counts = scrape_counts.clone();
            listener_tasks.push(tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    let workload = workload.clone();
                    let scrape_counts = scrape_counts.clone();
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let response = if request.uri().path() == "/metrics" {
                            let scrape_index = scrape_counts[target_index].fetch_add(1, Ordering::Relaxed);
                            let body = workload.render(target_index as u64, scrape_index);
                            Response::builder()
                                .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                                .body(Full::new(Bytes::from(body)))
                        } else {
                            Response::builder().status(StatusCode::NOT_FOUND).body(Full::new(Bytes::new()))
                        };
                        async move { Ok::<_, Infallible>(response.expect("static response parts are valid")) }
                    });
                    tokio::spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }));
        }
        Ok(Generator { scrape_counts, listener_tasks })
    }

    /// Restarts every target's scrape numbering at zero.
    fn reset(&self) {
        for count in self.scrape_counts.iter() {
            count.store(0, Ordering::Relaxed);
        }
    }

    fn scrapes_served_count(&self) -> u64 {
        self.scrape_counts.iter().map(|count| count.load(Ordering::Relaxed)).sum()
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        for task in &self.listener_tasks {
            task.abort();
        }
    }
}

/// A directory under the system's temporary directory, removed with everything in it on drop.
struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    /// `<tmp>/<name>-<pid>`, emptied first if a previous run left it.
    fn create(name: &str) -> anyhow::Result<WorkDir> {
        let path = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path).with_context(|| format!("remove stale {}", path.display()))?;
        }
        std::fs::create_dir_all(&path).with_context(|| format!("create {}", path.display()))?;
        Ok(WorkDir { path })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A running system; dropping it stops the process, then removes its work directory.
struct SystemProcess {
    system: System,
    child: Child,
    data_dir: PathBuf,
    log_path: PathBuf,
    port: u16,
    // Dropped after `Drop::drop` stopped the child.
    _work_dir: WorkDir,
}

impl SystemProcess {
    /// Starts `system` for `compare ingest`: scraping the generator per `config_yaml`.
    fn spawn(system: System, options: &Options, config_yaml: &str) -> anyhow::Result<SystemProcess> {
        let work_dir = WorkDir::create(&format!("compare-{}", system.name()))?;
        let data_dir = work_dir.path.join("data");
        std::fs::create_dir_all(&data_dir).with_context(|| format!("create {}", data_dir.display()))?;
        let config_path = work_dir.path.join("scrape.yml");
        std::fs::write(&config_path, config_yaml).with_context(|| format!("write {}", config_path.display()))?;
        if let Some(load) = options.rule_load() {
            let rules_path = work_dir.path.join(RULE_FILE_NAME);
            std::fs::write(&rules_path, rule_file_yaml(&load))
                .with_context(|| format!("write {}", rules_path.display()))?;
        }
        let address = format!("127.0.0.1:{}", options.system_port);
        let (config, data) = (config_path.display(), data_dir.display());
        let (binary, arguments): (&Path, Vec<String>) = match system {
            System::Engine => (
                &options.engine_bin,
                vec![
                    format!("--config.file={config}"),
                    format!("--storage.tsdb.path={data}"),
                    format!("--web.listen-address={address}"),
                    "--log.level=warn".to_string(),
                ],
            ),
            System::Prometheus => (
                &options.prometheus_bin,
                vec![
                    format!("--config.file={config}"),
                    format!("--storage.tsdb.path={data}"),
                    format!("--web.listen-address={address}"),
                    "--log.level=warn".to_string(),
                ],
            ),
            System::VictoriaMetrics => (
                &options.victoria_metrics_bin,
                vec![
                    format!("-promscrape.config={config}"),
                    format!("-storageDataPath={data}"),
                    format!("-httpListenAddr={address}"),
                    "-loggerLevel=WARN".to_string(),
                ],
            ),
        };
        SystemProcess::launch(system, binary, &arguments, work_dir, data_dir, options.system_port)
    }

    /// Starts `binary` in `work_dir` with its output in `work_dir/log.txt`; the guard owns the
    /// directory from here on (a failure to start removes it too).
    fn launch(
        system: System,
        binary: &Path,
        arguments: &[String],
        work_dir: WorkDir,
        data_dir: PathBuf,
        port: u16,
    ) -> anyhow::Result<SystemProcess> {
        let log_path = work_dir.path.join("log.txt");
        let log = std::fs::File::create(&log_path).with_context(|| format!("create {}", log_path.display()))?;
        // The child runs in its work directory, so a relative binary path is resolved here.
        let binary = std::fs::canonicalize(binary)
            .with_context(|| format!("find {} binary {}", system.name(), binary.display()))?;
        let child = Command::new(&binary)
            .args(arguments)
            .current_dir(&work_dir.path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("duplicate log handle")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {} ({})", system.name(), binary.display()))?;
        Ok(SystemProcess { system, child, data_dir, log_path, port, _work_dir: work_dir })
    }

    fn log_tail(&self) -> String {
        file_tail(&self.log_path)
    }

    fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait().context("poll child")? {
            bail!("{} exited with {status}; log tail:\n{}", self.system.name(), self.log_tail());
        }
        Ok(())
    }

    /// Waits until `/metrics` answers with the samples counter.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(STARTUP_MS_MAX);
        loop {
            self.check_running()?;
            if let Ok(body) = fetch_metrics(self.port).await {
                if find_metric(&body, self.system.samples_metrics()).is_ok() {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "{} did not serve /metrics within {STARTUP_MS_MAX} ms; log tail:\n{}",
                    self.system.name(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for SystemProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
            let attempt_count = STOP_GRACE_MS / 100;
            let mut exited = false;
            for _ in 0..attempt_count {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    exited = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if !exited {
                eprintln!("{} ignored SIGTERM for {STOP_GRACE_MS} ms; sending SIGKILL", self.system.name());
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// One HTTP/1.1 request to `127.0.0.1:<port>` on a new connection, bounded in time and in the
/// size of the answer: its status and body.
async fn http_request(
    port: u16,
    method: hyper::Method,
    path: &str,
    body: Bytes,
    timeout_ms: u64,
    body_size_max: usize,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let request = async {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.context("connect")?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.context("handshake")?;
        tokio::spawn(connection);
        let request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header("host", format!("127.0.0.1:{port}"))
            .header("content-type", "text/plain")
            .body(Full::new(body))
            .context("build request")?;
        let response = sender.send_request(request).await.context("send request")?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), body_size_max)
            .collect()
            .await
            .map_err(|error| anyhow::anyhow!("read body: {error}"))?
            .to_bytes();
        Ok::<_, anyhow::Error>((status, body))
    };
    tokio::time::timeout(Duration::from_millis(timeout_ms), request)
        .await
        .with_context(|| format!("{method} 127.0.0.1:{port}{} timed out after {timeout_ms} ms", short(path)))?
        .with_context(|| format!("{method} 127.0.0.1:{port}{}", short(path)))
}

/// `text` cut to 120 characters for an error message.
fn short(text: &str) -> String {
    match text.char_indices().nth(120) {
        Some((index, _)) => format!("{}...", &text[..index]),
        None => text.to_string(),
    }
}

/// GET `http://127.0.0.1:<port>/metrics`, bounded in time and size.
async fn fetch_metrics(port: u16) -> anyhow::Result<String> {
    let (status, body) = http_request(
        port,
        hyper::Method::GET,
        "/metrics",
        Bytes::new(),
        METRICS_REQUEST_TIMEOUT_MS,
        METRICS_BODY_SIZE_MAX,
    )
    .await?;
    if status != StatusCode::OK {
        bail!("GET 127.0.0.1:{port}/metrics: status {status}");
    }
    String::from_utf8(body.to_vec()).context("body is not UTF-8")
}

/// The first candidate metric present in `body`: its value and its `name{labels}`.
fn find_metric(body: &str, candidates: &[(&str, &[(&str, &str)])]) -> anyhow::Result<(f64, String)> {
    let samples = exposition::parse(body).context("parse /metrics")?;
    for (name, labels) in candidates {
        if let Some(value) = exposition::sum(&samples, name, labels) {
            let selector: Vec<String> = labels.iter().map(|(key, value)| format!("{key}=\"{value}\"")).collect();
            return Ok((value, format!("{name}{{{}}}", selector.join(","))));
        }
    }
    let names: Vec<&str> = candidates.iter().map(|(name, _)| *name).collect();
    bail!("none of {names:?} in /metrics")
}

fn read_proc(pid: &str, file: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(format!("/proc/{pid}/{file}")).with_context(|| format!("read /proc/{pid}/{file}"))
}

fn cpu_ms(pid: &str, clock_ticks_per_s: u64) -> anyhow::Result<u64> {
    Ok(procfs::cpu_ticks(&read_proc(pid, "stat")?)? * 1000 / clock_ticks_per_s)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".to_string())
}

/// Apparent size of every file under `path`; entries that vanish mid-walk count as empty.
fn tree_size(path: &Path) -> u64 {
    let Ok(metadata) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !metadata.is_dir() {
        return metadata.len();
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries.filter_map(Result::ok).map(|entry| tree_size(&entry.path())).sum()
}

fn disk_parts(data_dir: &Path) -> anyhow::Result<Vec<DiskPart>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(data_dir).with_context(|| format!("list {}", data_dir.display()))? {
        let entry = entry.context("read directory entry")?;
        entries.push((entry.file_name().to_string_lossy().into_owned(), tree_size(&entry.path())));
    }
    entries.sort();
    Ok(report::group_disk_parts(&entries))
}

fn command_output(program: &str, arguments: &[&str]) -> Option<String> {
    let output = Command::new(program).args(arguments).stdin(Stdio::null()).output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    let line = text.lines().map(str::trim).find(|line| !line.is_empty())?.to_string();
    Some(line)
}

fn version(system: System, binary: &Path) -> String {
    let found = match system {
        System::Engine | System::Prometheus => command_output(&binary.to_string_lossy(), &["--version"]),
        System::VictoriaMetrics => command_output(&binary.to_string_lossy(), &["-version"]).or_else(|| {
            command_output("dpkg-query", &["-W", "-f=${Version}", "victoria-metrics"])
                .map(|v| format!("victoria-metrics {v} (Debian package)"))
        }),
    };
    found.unwrap_or_else(|| "unknown".to_string()).replace('|', "/")
}

fn duration_text(duration_ms: u64) -> String {
    if duration_ms.is_multiple_of(1000) {
        format!("{}s", duration_ms / 1000)
    } else {
        format!("{duration_ms}ms")
    }
}

/// One scrape job over every target, understood by all three systems; with `--rules`, the rule
/// file for the systems that evaluate rules themselves.
fn scrape_config_yaml(options: &Options, system: System) -> String {
    let interval = duration_text(options.interval_ms);
    let mut yaml = format!("global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n");
    if options.rule_load().is_some() && system != System::VictoriaMetrics {
        let _ = writeln!(yaml, "rule_files: ['{RULE_FILE_NAME}']");
    }
    yaml.push_str("scrape_configs:\n  - job_name: generator\n    static_configs:\n      - targets:\n");
    for target_index in 0..options.target_count {
        let _ = writeln!(yaml, "          - 127.0.0.1:{}", options.target_port_base as usize + target_index);
    }
    yaml
}

struct Sampling {
    samples_appended_count: f64,
    samples_metric: String,
    cpu_ms: u64,
    generator_cpu_ms: u64,
    scrapes_served_count: u64,
    at: tokio::time::Instant,
    load_average: String,
}

async fn sample(
    process: &mut SystemProcess,
    generator: &Generator,
    clock_ticks_per_s: u64,
) -> anyhow::Result<Sampling> {
    process.check_running()?;
    let pid = process.child.id().to_string();
    let body = fetch_metrics(process.port).await?;
    let (samples_appended_count, samples_metric) = find_metric(&body, process.system.samples_metrics())?;
    Ok(Sampling {
        samples_appended_count,
        samples_metric,
        cpu_ms: cpu_ms(&pid, clock_ticks_per_s)?,
        generator_cpu_ms: cpu_ms("self", clock_ticks_per_s)?,
        scrapes_served_count: generator.scrapes_served_count(),
        at: tokio::time::Instant::now(),
        load_average: load_average(),
    })
}

async fn measure(
    system: System,
    options: &Options,
    generator: &Generator,
    clock_ticks_per_s: u64,
) -> anyhow::Result<Measurement> {
    generator.reset();
    let mut process = SystemProcess::spawn(system, options, &scrape_config_yaml(options, system))?;
    process.wait_ready().await?;
    eprintln!("{}: up (pid {}), warming up for {} ms", system.name(), process.child.id(), options.warmup_ms);
    tokio::time::sleep(Duration::from_millis(options.warmup_ms)).await;
    let start = sample(&mut process, generator, clock_ticks_per_s).await?;
    eprintln!("{}: measuring for {} ms", system.name(), options.measure_ms);
    tokio::time::sleep(Duration::from_millis(options.measure_ms)).await;
    let end = sample(&mut process, generator, clock_ticks_per_s).await?;
    let body = fetch_metrics(process.port).await?;
    let (active_series_count, series_metric) = find_metric(&body, system.series_metrics())?;
    let rules = match options.rule_load() {
        Some(_) if system != System::VictoriaMetrics => Some(
            RuleFigures::from_samples(&exposition::parse(&body).context("parse /metrics")?)
                .context("no prometheus_rule_group_* metrics although rules were loaded")?,
        ),
        _ => None,
    };
    let rss_size = procfs::rss_bytes(&read_proc(&process.child.id().to_string(), "status")?)?;
    let disk_parts = disk_parts(&process.data_dir)?;
    Ok(Measurement {
        system: system.name().to_string(),
        version: version(
            system,
            match system {
                System::Engine => &options.engine_bin,
                System::Prometheus => &options.prometheus_bin,
                System::VictoriaMetrics => &options.victoria_metrics_bin,
            },
        ),
        samples_metric: end.samples_metric,
        series_metric,
        window_ms: end.at.duration_since(start.at).as_millis() as u64,
        samples_appended_window_count: end.samples_appended_count - start.samples_appended_count,
        samples_appended_total_count: end.samples_appended_count,
        scrapes_served_window_count: end.scrapes_served_count - start.scrapes_served_count,
        cpu_ms: end.cpu_ms - start.cpu_ms,
        generator_cpu_ms: end.generator_cpu_ms - start.generator_cpu_ms,
        active_series_count,
        rss_size,
        disk_parts,
        load_average: (start.load_average, end.load_average),
        rules,
    })
}

fn machine_description() -> String {
    let cpu_count = std::thread::available_parallelism().map(|count| count.get()).unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("MemTotal:"))
                .map(|line| line["MemTotal:".len()..].trim().to_string())
        })
        .unwrap_or_default();
    format!("{cpu_count} CPUs, Linux {kernel}, {memory} RAM (shared with other jobs)")
}

async fn run(options: Options, command_line: String) -> anyhow::Result<()> {
    let clock_ticks_per_s = command_output("getconf", &["CLK_TCK"]).and_then(|text| text.parse().ok()).unwrap_or(100);
    let started_at = command_output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]).unwrap_or_default();
    let workload = Arc::new(Workload::new(options.seed, options.data_kind, options.series_count));
    let generator = Generator::start(workload, options.target_count, options.target_port_base).await?;
    eprintln!(
        "generator: {} targets x {} series on 127.0.0.1:{}..",
        options.target_count, options.series_count, options.target_port_base
    );
    let phase_ms_max = STARTUP_MS_MAX + options.warmup_ms + options.measure_ms + 4 * METRICS_REQUEST_TIMEOUT_MS;
    let mut outcomes = Vec::new();
    for (index, &system) in options.systems.iter().enumerate() {
        if index > 0 {
            tokio::time::sleep(Duration::from_millis(COOL_DOWN_MS)).await;
        }
        let result = tokio::time::timeout(
            Duration::from_millis(phase_ms_max),
            measure(system, &options, &generator, clock_ticks_per_s),
        )
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("did not finish within {phase_ms_max} ms")));
        match result {
            Ok(measurement) => outcomes.push(Outcome::Measured(Box::new(measurement))),
            Err(error) => {
                eprintln!("{}: failed: {error:#}", system.name());
                outcomes.push(Outcome::Failed { system: system.name().to_string(), error: format!("{error:#}") });
            }
        }
    }
    let parameters = RunParameters {
        target_count: options.target_count,
        series_count: options.series_count,
        interval_ms: options.interval_ms,
        warmup_ms: options.warmup_ms,
        measure_ms: options.measure_ms,
        data_kind: options.data_kind.name(),
        seed: options.seed,
        command_line,
        started_at,
        machine: machine_description(),
        rules: options.rule_load(),
    };
    let markdown = report::render(&parameters, &outcomes);
    println!("{markdown}");
    if let Some(path) = &options.out {
        std::fs::write(path, &markdown).with_context(|| format!("write report {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}

// ---- compare query ------------------------------------------------------------------------------

const QUERY_USAGE: &str = "usage: compare query [flags]

  --series N                  series every system holds (default 100000; a multiple of 200)
  --runs N                    measured runs of each query (default 20)
  --warmups N                 unmeasured runs before them (default 2)
  --seed N                    seed of the values (default 1)
  --systems LIST              comma-separated: engine,prometheus,victoria-metrics (default all)
  --engine-bin PATH           engine server binary (default target/release/server)
  --enginectl-bin PATH        default target/release/enginectl
  --prometheus-bin PATH       default /usr/bin/prometheus
  --promtool-bin PATH         default /usr/bin/promtool
  --victoria-metrics-bin PATH default /usr/bin/victoria-metrics
  --system-port PORT          port each system listens on, one at a time (default 29090)
  --query-timeout DUR         longest one query may take (default 60s)
  --out FILE                  also write the Markdown report here";

/// Longest a backfill tool (`promtool`, `enginectl`) may run.
const TOOL_MS_MAX: u64 = 30 * 60 * 1000;
/// Longest a loaded system may take to answer its first query.
const QUERY_STARTUP_MS_MAX: u64 = 10 * 60 * 1000;
/// Longest the readiness probe and the series count may take.
const PROBE_TIMEOUT_MS: u64 = 60_000;
/// Largest query answer read.
const QUERY_BODY_SIZE_MAX: usize = 256 * 1024 * 1024;
/// Largest answer to an import or flush request.
const ADMIN_BODY_SIZE_MAX: usize = 64 * 1024;
/// Body size of one VictoriaMetrics import request.
const IMPORT_BODY_SIZE_TARGET: usize = 16 * 1024 * 1024;
/// Longest one import request may take.
const IMPORT_REQUEST_TIMEOUT_MS: u64 = 5 * 60 * 1000;
/// A system has settled after loading when it used at most this CPU time in one interval...
const SETTLE_CPU_MS_MAX: u64 = 50;
/// ...of this length...
const SETTLE_INTERVAL_MS: u64 = 1000;
/// ...twice in a row; it is measured anyway (and the report says so) after this long.
const SETTLE_MS_MAX: u64 = 180_000;
/// Most runs of one query: bounds the time a system is measured.
const RUN_COUNT_MAX: usize = 10_000;
/// The OpenMetrics file is written in pieces of about this size.
const WRITE_CHUNK_SIZE: usize = 8 * 1024 * 1024;
/// Prometheus and the engine start without a scrape job, so they hold the backfilled series only.
const QUERY_CONFIG_YAML: &str = "global:\n  scrape_interval: 15s\n";

struct QueryOptions {
    series_count: usize,
    run_count: usize,
    warmup_count: usize,
    seed: u64,
    systems: Vec<System>,
    engine_bin: PathBuf,
    enginectl_bin: PathBuf,
    prometheus_bin: PathBuf,
    promtool_bin: PathBuf,
    victoria_metrics_bin: PathBuf,
    system_port: u16,
    query_timeout_ms: u64,
    out: Option<PathBuf>,
}

fn parse_systems(value: &str) -> anyhow::Result<Vec<System>> {
    let systems: Vec<System> = value
        .split(',')
        .map(|name| System::parse(name.trim()).ok_or_else(|| anyhow::anyhow!("--systems: unknown system {name:?}")))
        .collect::<anyhow::Result<_>>()?;
    if systems.is_empty() {
        bail!("--systems: name at least one system");
    }
    Ok(systems)
}

/// `compare query` flags (the arguments after `query`).
fn parse_query_options(arguments: &[String]) -> anyhow::Result<Option<QueryOptions>> {
    let mut options = QueryOptions {
        series_count: 100_000,
        run_count: 20,
        warmup_count: 2,
        seed: 1,
        systems: vec![System::Engine, System::Prometheus, System::VictoriaMetrics],
        engine_bin: PathBuf::from("target/release/server"),
        enginectl_bin: PathBuf::from("target/release/enginectl"),
        prometheus_bin: PathBuf::from("/usr/bin/prometheus"),
        promtool_bin: PathBuf::from("/usr/bin/promtool"),
        victoria_metrics_bin: PathBuf::from("/usr/bin/victoria-metrics"),
        system_port: 29_090,
        query_timeout_ms: 60_000,
        out: None,
    };
    let Some(flags) = flag_values(arguments, QUERY_USAGE)? else {
        return Ok(None);
    };
    for (flag, value) in flags {
        let flag = flag.as_str();
        match flag {
            "--series" => options.series_count = parse_number(flag, &value)?,
            "--runs" => options.run_count = parse_number(flag, &value)?,
            "--warmups" => options.warmup_count = parse_number(flag, &value)?,
            "--seed" => options.seed = parse_number(flag, &value)?,
            "--systems" => options.systems = parse_systems(&value)?,
            "--engine-bin" => options.engine_bin = PathBuf::from(value),
            "--enginectl-bin" => options.enginectl_bin = PathBuf::from(value),
            "--prometheus-bin" => options.prometheus_bin = PathBuf::from(value),
            "--promtool-bin" => options.promtool_bin = PathBuf::from(value),
            "--victoria-metrics-bin" => options.victoria_metrics_bin = PathBuf::from(value),
            "--system-port" => options.system_port = parse_number(flag, &value)?,
            "--query-timeout" => options.query_timeout_ms = parse_duration(flag, &value)?,
            "--out" => options.out = Some(PathBuf::from(value)),
            _ => bail!("unknown flag {flag:?}\n\n{QUERY_USAGE}"),
        }
    }
    // The dataset checks the series count itself; checked here too for a message naming the flag.
    Dataset::new(options.seed, options.series_count, 0).map_err(|error| anyhow::anyhow!("--series: {error}"))?;
    if options.run_count == 0 || options.run_count > RUN_COUNT_MAX {
        bail!("--runs: expected 1..={RUN_COUNT_MAX}, got {}", options.run_count);
    }
    if options.warmup_count > RUN_COUNT_MAX {
        bail!("--warmups: expected 0..={RUN_COUNT_MAX}, got {}", options.warmup_count);
    }
    Ok(Some(options))
}

/// A tool process that is killed if dropped before it exits (error, timeout or signal).
struct ToolProcess {
    child: Child,
}

impl Drop for ToolProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn file_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINE_COUNT)..].join("\n")
}

/// Runs `binary` to completion within [`TOOL_MS_MAX`], its output in `log_path`; its wall time.
async fn run_tool(binary: &Path, arguments: &[String], log_path: &Path) -> anyhow::Result<u64> {
    let log = std::fs::File::create(log_path).with_context(|| format!("create {}", log_path.display()))?;
    let binary = std::fs::canonicalize(binary).with_context(|| format!("find {}", binary.display()))?;
    let started = tokio::time::Instant::now();
    let child = Command::new(&binary)
        .args(arguments)
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("duplicate log handle")?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("start {}", binary.display()))?;
    let mut tool = ToolProcess { child };
    loop {
        if let Some(status) = tool.child.try_wait().context("poll tool")? {
            if !status.success() {
                bail!(
                    "{} {} exited with {status}; log tail:\n{}",
                    binary.display(),
                    arguments.join(" "),
                    file_tail(log_path)
                );
            }
            return Ok(started.elapsed().as_millis() as u64);
        }
        if started.elapsed() >= Duration::from_millis(TOOL_MS_MAX) {
            bail!("{} did not finish within {TOOL_MS_MAX} ms; log tail:\n{}", binary.display(), file_tail(log_path));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Writes the OpenMetrics rendering of `dataset` to `path`; the file's size.
async fn write_openmetrics(dataset: &Dataset, path: &Path) -> anyhow::Result<u64> {
    use std::io::Write as _;
    let file = std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut buffer = String::with_capacity(WRITE_CHUNK_SIZE + (1 << 20));
    let metric_count = dataset.metric_count();
    for metric_index in 0..metric_count {
        dataset.render_metric(metric_index, Format::OpenMetrics, &mut buffer);
        if metric_index + 1 == metric_count {
            buffer.push_str(Dataset::openmetrics_end());
        }
        if buffer.len() >= WRITE_CHUNK_SIZE || metric_index + 1 == metric_count {
            writer.write_all(buffer.as_bytes()).with_context(|| format!("write {}", path.display()))?;
            buffer.clear();
            // Lets the signal handlers run between pieces.
            tokio::task::yield_now().await;
        }
    }
    writer.flush().with_context(|| format!("write {}", path.display()))?;
    drop(writer);
    Ok(std::fs::metadata(path).with_context(|| format!("stat {}", path.display()))?.len())
}

/// Sends the dataset to VictoriaMetrics' `/api/v1/import/prometheus` in bodies of about
/// [`IMPORT_BODY_SIZE_TARGET`], each ending on a whole metric.
async fn import_into_victoria_metrics(dataset: &Dataset, port: u16) -> anyhow::Result<()> {
    let metric_count = dataset.metric_count();
    let mut buffer = String::with_capacity(IMPORT_BODY_SIZE_TARGET + (1 << 20));
    for metric_index in 0..metric_count {
        dataset.render_metric(metric_index, Format::ExpositionMs, &mut buffer);
        if buffer.len() >= IMPORT_BODY_SIZE_TARGET || metric_index + 1 == metric_count {
            let body =
                Bytes::from(std::mem::replace(&mut buffer, String::with_capacity(IMPORT_BODY_SIZE_TARGET + (1 << 20))));
            let (status, answer) = http_request(
                port,
                hyper::Method::POST,
                "/api/v1/import/prometheus",
                body,
                IMPORT_REQUEST_TIMEOUT_MS,
                ADMIN_BODY_SIZE_MAX,
            )
            .await?;
            if !status.is_success() {
                bail!(
                    "import up to metric {metric_index}: status {status}: {}",
                    short(&String::from_utf8_lossy(&answer))
                );
            }
        }
    }
    Ok(())
}

/// GETs a query; the body when the status is 200, else an error with the API's message.
async fn query_request(port: u16, path: &str, timeout_ms: u64) -> anyhow::Result<Bytes> {
    let (status, body) =
        http_request(port, hyper::Method::GET, path, Bytes::new(), timeout_ms, QUERY_BODY_SIZE_MAX).await?;
    if status != StatusCode::OK {
        let message = match result::parse_response(&body) {
            Err(error @ result::ResultError::Failed { .. }) => error.to_string(),
            _ => String::from_utf8_lossy(&body).into_owned(),
        };
        bail!("status {status}: {}", short(&message));
    }
    Ok(body)
}

fn instant_path(expr: &str, time_ms: i64) -> String {
    let query = Query {
        name: "probe",
        expr: expr.to_string(),
        shape: Shape::Instant,
        series_selected_count: 0,
        target_ms: None,
    };
    request_path(&query, time_ms)
}

/// Waits until the system answers an instant query (Prometheus answers 503 while it opens its
/// blocks).
async fn wait_ready_for_queries(process: &mut SystemProcess, time_ms: i64) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(QUERY_STARTUP_MS_MAX);
    let path = instant_path("1", time_ms);
    loop {
        process.check_running()?;
        if query_request(process.port, &path, PROBE_TIMEOUT_MS).await.is_ok() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "{} did not answer a query within {QUERY_STARTUP_MS_MAX} ms; log tail:\n{}",
                process.system.name(),
                process.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until the system is idle (background compaction or merges after loading would
/// otherwise count as query CPU); false when it was still busy at [`SETTLE_MS_MAX`].
async fn settle(process: &mut SystemProcess, clock_ticks_per_s: u64) -> anyhow::Result<bool> {
    let pid = process.child.id().to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(SETTLE_MS_MAX);
    let mut quiet_count = 0;
    let mut last_cpu_ms = cpu_ms(&pid, clock_ticks_per_s)?;
    loop {
        tokio::time::sleep(Duration::from_millis(SETTLE_INTERVAL_MS)).await;
        process.check_running()?;
        let now_cpu_ms = cpu_ms(&pid, clock_ticks_per_s)?;
        quiet_count = if now_cpu_ms - last_cpu_ms <= SETTLE_CPU_MS_MAX { quiet_count + 1 } else { 0 };
        last_cpu_ms = now_cpu_ms;
        if quiet_count >= 2 {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
    }
}

fn elapsed_ms(since: tokio::time::Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

/// Loads the dataset into `system` and starts it: the running process and the load steps.
async fn load_system(
    system: System,
    options: &QueryOptions,
    dataset: &Dataset,
    openmetrics_path: &Path,
    clock_ticks_per_s: u64,
) -> anyhow::Result<(SystemProcess, Vec<LoadStep>)> {
    let work_dir = WorkDir::create(&format!("compare-query-{}", system.name()))?;
    let data_dir = work_dir.path.join("data");
    std::fs::create_dir_all(&data_dir).with_context(|| format!("create {}", data_dir.display()))?;
    let address = format!("127.0.0.1:{}", options.system_port);
    let mut steps = Vec::new();
    let mut process = match system {
        System::Engine | System::Prometheus => {
            let (tool, server) = match system {
                System::Engine => (&options.enginectl_bin, &options.engine_bin),
                _ => (&options.promtool_bin, &options.prometheus_bin),
            };
            let tool_name = tool.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
            eprintln!("{}: {tool_name} tsdb create-blocks-from openmetrics", system.name());
            let arguments: Vec<String> = ["tsdb", "create-blocks-from", "openmetrics"]
                .iter()
                .map(|word| word.to_string())
                .chain([openmetrics_path.display().to_string(), data_dir.display().to_string()])
                .collect();
            let duration_ms = run_tool(tool, &arguments, &work_dir.path.join("backfill-log.txt")).await?;
            steps.push(LoadStep { step: format!("{tool_name} tsdb create-blocks-from openmetrics"), duration_ms });
            let config_path = work_dir.path.join("config.yml");
            std::fs::write(&config_path, QUERY_CONFIG_YAML)
                .with_context(|| format!("write {}", config_path.display()))?;
            let arguments = vec![
                format!("--config.file={}", config_path.display()),
                format!("--storage.tsdb.path={}", data_dir.display()),
                format!("--web.listen-address={address}"),
                "--log.level=warn".to_string(),
            ];
            let started = tokio::time::Instant::now();
            let mut process =
                SystemProcess::launch(system, server, &arguments, work_dir, data_dir, options.system_port)?;
            wait_ready_for_queries(&mut process, evaluation_time_ms(dataset)).await?;
            steps.push(LoadStep { step: "start until the first answer".to_string(), duration_ms: elapsed_ms(started) });
            process
        }
        System::VictoriaMetrics => {
            let arguments = vec![
                format!("-storageDataPath={}", data_dir.display()),
                format!("-httpListenAddr={address}"),
                "-search.disableCache".to_string(),
                "-loggerLevel=WARN".to_string(),
            ];
            let started = tokio::time::Instant::now();
            let mut process = SystemProcess::launch(
                system,
                &options.victoria_metrics_bin,
                &arguments,
                work_dir,
                data_dir,
                options.system_port,
            )?;
            wait_ready_for_queries(&mut process, evaluation_time_ms(dataset)).await?;
            steps.push(LoadStep { step: "start".to_string(), duration_ms: elapsed_ms(started) });
            eprintln!("{}: importing {} samples", system.name(), dataset.sample_count());
            let started = tokio::time::Instant::now();
            import_into_victoria_metrics(dataset, process.port).await?;
            steps.push(LoadStep {
                step: "import via /api/v1/import/prometheus".to_string(),
                duration_ms: elapsed_ms(started),
            });
            let started = tokio::time::Instant::now();
            let (status, answer) = http_request(
                process.port,
                hyper::Method::GET,
                "/internal/force_flush",
                Bytes::new(),
                IMPORT_REQUEST_TIMEOUT_MS,
                ADMIN_BODY_SIZE_MAX,
            )
            .await?;
            if !status.is_success() {
                bail!("/internal/force_flush: status {status}: {}", short(&String::from_utf8_lossy(&answer)));
            }
            steps.push(LoadStep { step: "/internal/force_flush".to_string(), duration_ms: elapsed_ms(started) });
            process
        }
    };
    let started = tokio::time::Instant::now();
    let settled = settle(&mut process, clock_ticks_per_s).await?;
    let step = if settled { "settle" } else { "settle (**still busy** when measuring began)" };
    steps.push(LoadStep { step: step.to_string(), duration_ms: elapsed_ms(started) });
    Ok((process, steps))
}

/// Times one query: warm-ups, then the measured runs; the outcome and the parsed first answer.
async fn measure_query(
    process: &SystemProcess,
    query: &Query,
    end_ms: i64,
    options: &QueryOptions,
    clock_ticks_per_s: u64,
) -> (QueryOutcome, Option<QueryResult>) {
    let failed = |error: anyhow::Error| (QueryOutcome::Failed { error: format!("{error:#}") }, None);
    let path = request_path(query, end_ms);
    for _ in 0..options.warmup_count {
        if let Err(error) = query_request(process.port, &path, options.query_timeout_ms).await {
            return failed(error.context("warm-up run"));
        }
    }
    let pid = process.child.id().to_string();
    let cpu_before_ms = match cpu_ms(&pid, clock_ticks_per_s) {
        Ok(cpu) => cpu,
        Err(error) => return failed(error),
    };
    let mut latencies_us = Vec::with_capacity(options.run_count);
    let mut first_body = None;
    for run_index in 0..options.run_count {
        let started = tokio::time::Instant::now();
        match query_request(process.port, &path, options.query_timeout_ms).await {
            Ok(body) => {
                latencies_us.push(started.elapsed().as_micros() as u64);
                first_body.get_or_insert(body);
            }
            Err(error) => return failed(error.context(format!("run {}", run_index + 1))),
        }
    }
    let cpu_after_ms = match cpu_ms(&pid, clock_ticks_per_s) {
        Ok(cpu) => cpu,
        Err(error) => return failed(error),
    };
    let body = first_body.expect("run_count is at least 1");
    let parsed = match result::parse_response(&body) {
        Ok(parsed) => parsed,
        Err(error) => return failed(error.into()),
    };
    let measurement = QueryMeasurement {
        latencies_us,
        cpu_ms: cpu_after_ms - cpu_before_ms,
        response_size: body.len(),
        series_returned_count: parsed.series.len(),
        point_count: parsed.point_count(),
        agreement: None,
    };
    (QueryOutcome::Measured(measurement), Some(parsed))
}

/// Loads, checks and queries one system: its run and each query's parsed answer.
async fn measure_system(
    system: System,
    options: &QueryOptions,
    dataset: &Dataset,
    queries: &[Query],
    openmetrics_path: &Path,
    clock_ticks_per_s: u64,
) -> anyhow::Result<(SystemRun, Vec<Option<QueryResult>>)> {
    let (process, load_steps) = load_system(system, options, dataset, openmetrics_path, clock_ticks_per_s).await?;
    let disk_size = tree_size(&process.data_dir);
    let count_path = instant_path("count({__name__=~\".+\"})", evaluation_time_ms(dataset));
    let body = query_request(process.port, &count_path, PROBE_TIMEOUT_MS).await.context("count every series")?;
    let counted = result::parse_response(&body).context("count every series")?;
    let series_seen_count = counted.series.first().and_then(|series| series.points.first()).map(|point| point.1);
    if series_seen_count != Some(dataset.series_count() as f64) {
        eprintln!(
            "{}: holds {series_seen_count:?} series, expected {}; measuring anyway",
            system.name(),
            dataset.series_count()
        );
    }
    let rss_loaded_size = procfs::rss_bytes(&read_proc(&process.child.id().to_string(), "status")?)?;
    let load_before = load_average();
    let mut outcomes = Vec::with_capacity(queries.len());
    let mut answers = Vec::with_capacity(queries.len());
    for query in queries {
        let (outcome, answer) =
            measure_query(&process, query, evaluation_time_ms(dataset), options, clock_ticks_per_s).await;
        match &outcome {
            QueryOutcome::Measured(measurement) => eprintln!(
                "{}: {}: p50 {:.1} ms",
                system.name(),
                query.name,
                query_report::percentile(&measurement.latencies_us, 50.0).unwrap_or(0) as f64 / 1000.0
            ),
            QueryOutcome::Failed { error } => eprintln!("{}: {}: failed: {error}", system.name(), query.name),
        }
        outcomes.push(outcome);
        answers.push(answer);
    }
    let load_after = load_average();
    let rss_size = procfs::rss_bytes(&read_proc(&process.child.id().to_string(), "status")?)?;
    let binary = match system {
        System::Engine => &options.engine_bin,
        System::Prometheus => &options.prometheus_bin,
        System::VictoriaMetrics => &options.victoria_metrics_bin,
    };
    let run = SystemRun {
        system: system.name().to_string(),
        version: version(system, binary),
        load_steps,
        series_seen_count,
        disk_size,
        rss_loaded_size,
        rss_size,
        load_average: (load_before, load_after),
        queries: outcomes,
    };
    Ok((run, answers))
}

async fn run_query(options: QueryOptions, command_line: String) -> anyhow::Result<()> {
    let clock_ticks_per_s = command_output("getconf", &["CLK_TCK"]).and_then(|text| text.parse().ok()).unwrap_or(100);
    let started_at = command_output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]).unwrap_or_default();
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).context("clock before 1970")?.as_millis()
            as i64;
    // The last sample on the dataset's grid at or before now (a whole second, as STEP_MS is).
    let end_ms = now_ms - now_ms % STEP_MS;
    let dataset = Dataset::new(options.seed, options.series_count, end_ms)?;
    let queries = query_set(&dataset);
    let file_dir = WorkDir::create("compare-query-openmetrics")?;
    let openmetrics_path = file_dir.path.join("series.om.txt");
    let openmetrics_size = if options.systems.iter().any(|system| *system != System::VictoriaMetrics) {
        eprintln!("writing {} series, {} samples as OpenMetrics", dataset.series_count(), dataset.sample_count());
        let started = tokio::time::Instant::now();
        let size = write_openmetrics(&dataset, &openmetrics_path).await?;
        eprintln!("wrote {} MiB in {} ms", size >> 20, elapsed_ms(started));
        size
    } else {
        0
    };
    let mut outcomes = Vec::new();
    let mut answers: Vec<(System, Vec<Option<QueryResult>>)> = Vec::new();
    for (index, &system) in options.systems.iter().enumerate() {
        if index > 0 {
            tokio::time::sleep(Duration::from_millis(COOL_DOWN_MS)).await;
        }
        match measure_system(system, &options, &dataset, &queries, &openmetrics_path, clock_ticks_per_s).await {
            Ok((run, system_answers)) => {
                outcomes.push(SystemOutcome::Ran(Box::new(run)));
                answers.push((system, system_answers));
            }
            Err(error) => {
                eprintln!("{}: failed: {error:#}", system.name());
                outcomes.push(SystemOutcome::Failed { system: system.name().to_string(), error: format!("{error:#}") });
            }
        }
    }
    // The engine's answers against Prometheus', query by query.
    let answers_of = |wanted: System| answers.iter().find(|(system, _)| *system == wanted).map(|(_, answers)| answers);
    if let (Some(engine_answers), Some(prometheus_answers)) =
        (answers_of(System::Engine), answers_of(System::Prometheus))
    {
        for outcome in &mut outcomes {
            let SystemOutcome::Ran(run) = outcome else { continue };
            if run.system != System::Engine.name() {
                continue;
            }
            for (query_index, query_outcome) in run.queries.iter_mut().enumerate() {
                if let (QueryOutcome::Measured(measurement), Some(Some(mine)), Some(Some(theirs))) =
                    (query_outcome, engine_answers.get(query_index), prometheus_answers.get(query_index))
                {
                    measurement.agreement = Some(result::compare(mine, theirs));
                }
            }
        }
    }
    let parameters = QueryRunParameters {
        series_count: dataset.series_count(),
        sample_count: dataset.sample_count(),
        start_ms: dataset.start_ms(),
        end_ms: dataset.end_ms(),
        evaluation_ms: evaluation_time_ms(&dataset),
        seed: options.seed,
        run_count: options.run_count,
        warmup_count: options.warmup_count,
        openmetrics_size,
        command_line,
        started_at,
        machine: machine_description(),
    };
    let markdown = query_report::render(&parameters, &queries, &outcomes);
    println!("{markdown}");
    if let Some(path) = &options.out {
        std::fs::write(path, &markdown).with_context(|| format!("write report {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}

/// Runs `future` on a current-thread runtime until it ends or a signal arrives; on a signal the
/// future is dropped, and with it every process guard it holds.
fn run_until_signal(future: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("start tokio runtime")?;
    runtime.block_on(async move {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("install SIGTERM handler")?;
        tokio::select! {
            biased;
            _ = tokio::signal::ctrl_c() => bail!("interrupted (SIGINT); stopped every system started"),
            _ = terminate.recv() => bail!("terminated (SIGTERM); stopped every system started"),
            result = future => result,
        }
    })
}

fn main() -> std::process::ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let command_line = format!("cargo run --release -p bench --bin compare -- {}", arguments.join(" "));
    let result = (|| -> anyhow::Result<()> {
        match arguments.first().map(String::as_str) {
            Some("query") => {
                let Some(options) = parse_query_options(&arguments[1..])? else {
                    return Ok(());
                };
                run_until_signal(run_query(options, command_line))
            }
            Some("-h" | "--help") | None => {
                println!("{USAGE}\n\n{QUERY_USAGE}");
                Ok(())
            }
            _ => {
                let Some(options) = parse_options(&arguments)? else {
                    return Ok(());
                };
                run_until_signal(run(options, command_line))
            }
        }
    })();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arguments(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    #[track_caller]
    fn check_error(text: &str, expected: &str) {
        let error = parse_options(&arguments(text)).err().expect("rejected");
        assert!(format!("{error:#}").contains(expected), "{error:#} should contain {expected:?}");
    }

    #[test]
    fn options_parse() {
        let options = parse_options(&arguments(
            "ingest --targets 3 --series=50 --interval 500ms --warmup 2s --measure 1m --data realistic --systems prometheus,engine --out r.md",
        ))
        .expect("parses")
        .expect("runs");
        assert_eq!((options.target_count, options.series_count), (3, 50));
        assert_eq!((options.interval_ms, options.warmup_ms, options.measure_ms), (500, 2000, 60_000));
        assert_eq!(options.data_kind, DataKind::Realistic);
        assert_eq!(options.systems, vec![System::Prometheus, System::Engine]);
        assert_eq!(options.out, Some(PathBuf::from("r.md")));
        check_error("ingest --targets 0", "--targets");
        check_error("ingest --targets 2000", "--targets");
        check_error("ingest --interval 0", "--interval");
        check_error("ingest --systems engine,graphite", "graphite");
        check_error("ingest --data zipf", "--data");
        check_error("ingest --series", "needs a value");
        check_error("ingest --target-port-base 29000 --targets 100", "overlaps");
        check_error("select", "unknown command");
    }

    #[track_caller]
    fn check_query_error(text: &str, expected: &str) {
        let error = parse_query_options(&arguments(text)).err().expect("rejected");
        assert!(format!("{error:#}").contains(expected), "{error:#} should contain {expected:?}");
    }

    #[test]
    fn query_options_parse() {
        let options = parse_query_options(&arguments(
            "--series 2000 --runs=5 --warmups 0 --systems engine,victoria-metrics --query-timeout 2m --out q.md",
        ))
        .expect("parses")
        .expect("runs");
        assert_eq!((options.series_count, options.run_count, options.warmup_count), (2000, 5, 0));
        assert_eq!(options.systems, vec![System::Engine, System::VictoriaMetrics]);
        assert_eq!(options.query_timeout_ms, 120_000);
        assert_eq!(options.out, Some(PathBuf::from("q.md")));
        let defaults = parse_query_options(&[]).expect("parses").expect("runs");
        assert_eq!((defaults.series_count, defaults.run_count, defaults.warmup_count), (100_000, 20, 2));
        check_query_error("--series 300", "--series");
        check_query_error("--runs 0", "--runs");
        check_query_error("--systems graphite", "graphite");
        check_query_error("--targets 3", "unknown flag");
        check_query_error("--query-timeout 0s", "--query-timeout");
    }

    #[test]
    fn query_config_has_no_scrape_job() {
        let config = engine::config::parse(QUERY_CONFIG_YAML).expect("the engine accepts it");
        assert!(config.scrape_configs.is_empty());
    }

    #[test]
    fn scrape_config_lists_every_target() {
        let options = parse_options(&arguments("ingest --targets 2 --interval 1500ms")).expect("parses").expect("runs");
        let yaml = scrape_config_yaml(&options, System::Engine);
        assert_eq!(
            yaml,
            "global:\n  scrape_interval: 1500ms\n  scrape_timeout: 1500ms\nscrape_configs:\n  - job_name: generator\n    static_configs:\n      - targets:\n          - 127.0.0.1:20000\n          - 127.0.0.1:20001\n"
        );
        engine::config::parse(&yaml).expect("the engine accepts the generated config");
    }

    #[test]
    fn metric_lookup_takes_the_first_candidate_present() {
        let body = "engine_tsdb_head_samples_appended_total 42\nvm_cache_entries{type=\"storage/tsid\"} 7\n";
        assert_eq!(
            find_metric(body, System::Engine.samples_metrics()).expect("found"),
            (42.0, "engine_tsdb_head_samples_appended_total{}".to_string())
        );
        assert_eq!(
            find_metric(body, System::VictoriaMetrics.series_metrics()).expect("found"),
            (7.0, "vm_cache_entries{type=\"storage/tsid\"}".to_string())
        );
        assert!(find_metric(body, System::Prometheus.series_metrics()).is_err());
    }
}
