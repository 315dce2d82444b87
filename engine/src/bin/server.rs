//! The deployable engine: `server [--config.file=FILE] [--storage.tsdb.path=DIR]
//! [--web.listen-address=HOST:PORT]`. Without `--config.file` it runs the embedded default
//! configuration, which scrapes the server itself every 5 s.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use engine::config;
use engine::io::{clock::startup_seed, Env, FileSystem, RealFileSystem};
use engine::server::{self, ServerOptions};
use engine::tsdb::compact::RetentionSettings;

const USAGE: &str = "usage: server [flags]

  --config.file=FILE            Prometheus-format YAML config (default: embedded self-scrape config)
  --storage.tsdb.path=DIR       data directory (default: data/)
  --web.listen-address=ADDR     listen address (default: 0.0.0.0:9090)
  --storage.tsdb.wal-sync=WHEN  when commits are fsynced: commit (default; nothing committed is lost on
                                power failure), interval:DUR (e.g. interval:100ms), segment (at segment
                                rollover only, as Prometheus)
  --storage.tsdb.retention.time=DUR
                                how long to keep blocks (default: 15d when no size is set;
                                the config file's storage.tsdb.retention wins over it)
  --storage.tsdb.retention.size=SIZE
                                most bytes for blocks, WAL and head chunks, e.g. 512MB (units B KB
                                MB GB TB PB EB, powers of 1024; default: no limit)
  --storage.tsdb.retention=DUR  deprecated alias of --storage.tsdb.retention.time
  --storage.tsdb.min-block-duration=DUR
                                block range of the head, first compaction level (default: 2h)
  --storage.tsdb.max-block-duration=DUR
                                longest compacted block (default: a tenth of the retention time,
                                at most 31d)
  --storage.tsdb.no-lockfile     do not lock the data directory (default: lock DIR/lock)
  --storage.tsdb.wal-compression=BOOL
                                compress WAL records (default: true; --no-storage.tsdb.wal-compression)
  --storage.tsdb.wal-compression-type=TYPE
                                snappy (default; Prometheus 2.42 reads it), zstd (newer Prometheus
                                versions read it), lz4 (this engine only), none
  --query.lookback-delta=DUR    lookback for instant selectors (default: 5m)
  --query.max-samples=N         most samples one query may load (default: 50000000)
  --query.timeout=DUR           longest a query may take, queue wait included; a request's
                                timeout parameter can only shorten it (default: 2m; 0: none)
  --query.max-concurrency=N     most queries evaluating at once, each on its own compute thread;
                                up to 4 x N more wait, the rest are refused (default: 20)
  --web.enable-remote-write-receiver
                                accept remote write 1.0 requests on POST /api/v1/write
                                (default: off; 404 there)
  --storage.remote.read-sample-limit=N
                                most samples one remote read request (POST /api/v1/read) answers;
                                0: no limit (default: 50000000)
  --storage.remote.read-concurrent-limit=N
                                remote read requests served at once; more are refused with 503
                                (default: 10)
  --storage.remote.read-max-bytes-in-frame=N
                                largest frame of a streamed remote read answer (default: 1048576)
  --query.store=URL             a store this engine queries as a query node: the base URL of an engine
                                or a Prometheus server, read through its /api/v1/read (repeatable);
                                series are deduplicated across the replica labels
  --query.replica-label=NAME    label telling replicas apart, removed by deduplication (repeatable;
                                default: replica)
  --deduplication.func=ALGO     how replicas merge: fill (default: one replica, gaps filled from the
                                others), penalty (Thanos' algorithm), chain (every sample)
  --ha.peer=URL                 the HA peer's base URL: at startup, before scraping, the window this
                                replica missed is read from the peer's /api/v1/read and stored
  --ha.gap-fill-max=DUR         longest window filled from the peer, the newest part (default: 1h)
  --web.external-url=URL        URL the engine is reached at, for alert generator URLs
                                (default: http://localhost:<listen port>)
  --rules.alert.resend-delay=DUR
                                least time between two sends of a firing alert (default: 1m)
  --rules.alert.for-outage-tolerance=DUR
                                longest outage after which 'for' state is still restored (default: 1h)
  --rules.alert.for-grace-period=DUR
                                least time a restored alert stays pending (default: 10m)
  --rules.max-concurrent-evals=N
                                rule groups evaluated at once (default: 4)
  --alertmanager.notification-queue-capacity=N
                                alerts waiting to be sent; the oldest are dropped beyond it
                                (default: 10000)
  --web.enable-pushgateway      accept Pushgateway pushes (PUT/POST/DELETE /metrics/job/<job>{/<label>/<value>}),
                                kept under DIR/pushgateway, appended every global scrape interval and
                                served on /pushgateway/metrics (default: off)
  --log.level=LEVEL             error, warn, info, debug (default: info)
  -h, --help                    this text
  --version                     print the version";

struct Flags {
    config_file: Option<PathBuf>,
    storage_path: PathBuf,
    wal_sync: Option<String>,
    wal_compression: Option<bool>,
    no_lockfile: bool,
    enable_pushgateway: bool,
    remote_write_receiver: bool,
    wal_compression_type: Option<String>,
    retention_time: Option<String>,
    retention_deprecated: Option<String>,
    retention_size: Option<String>,
    block_duration_min: Option<String>,
    block_duration_max: Option<String>,
    listen_address: String,
    lookback_delta: Option<String>,
    query_samples_max: Option<usize>,
    query_timeout: Option<String>,
    query_concurrency_max: Option<usize>,
    remote_read: engine::api::remote_read::RemoteReadLimits,
    query_stores: Vec<String>,
    ha_peer: Option<String>,
    gap_fill_max_ms: i64,
    replica_labels: Vec<String>,
    dedup_algorithm: engine::storage::dedup::DedupAlgorithm,
    log_level: tracing::Level,
    rules: server::RuleFlags,
}

fn parse_flags(arguments: impl Iterator<Item = String>) -> anyhow::Result<Option<Flags>> {
    let mut flags = Flags {
        config_file: None,
        storage_path: PathBuf::from("data/"),
        wal_sync: None,
        wal_compression: None,
        no_lockfile: false,
        enable_pushgateway: false,
        remote_write_receiver: false,
        wal_compression_type: None,
        retention_time: None,
        retention_deprecated: None,
        retention_size: None,
        block_duration_min: None,
        block_duration_max: None,
        listen_address: "0.0.0.0:9090".to_string(),
        lookback_delta: None,
        query_samples_max: None,
        query_timeout: None,
        query_concurrency_max: None,
        remote_read: engine::api::remote_read::RemoteReadLimits::default(),
        query_stores: Vec::new(),
        ha_peer: None,
        gap_fill_max_ms: engine::remote::gap_fill::GAP_FILL_WINDOW_MS_MAX_DEFAULT,
        replica_labels: Vec::new(),
        dedup_algorithm: engine::storage::dedup::DedupAlgorithm::default(),
        log_level: tracing::Level::INFO,
        rules: server::RuleFlags::default(),
    };
    let mut arguments = arguments.peekable();
    while let Some(argument) = arguments.next() {
        if argument == "-h" || argument == "--help" {
            println!("{USAGE}");
            return Ok(None);
        }
        if argument == "--version" {
            println!("server {}", env!("CARGO_PKG_VERSION"));
            return Ok(None);
        }
        if argument == "--storage.tsdb.no-lockfile" {
            flags.no_lockfile = true;
            continue;
        }
        if argument == "--web.enable-pushgateway" {
            flags.enable_pushgateway = true;
            continue;
        }
        if argument == "--web.enable-remote-write-receiver" {
            flags.remote_write_receiver = true;
            continue;
        }
        if argument == "--no-storage.tsdb.wal-compression" {
            flags.wal_compression = Some(false);
            continue;
        }
        if argument == "--storage.tsdb.wal-compression" {
            flags.wal_compression = Some(true);
            continue;
        }
        let (name, inline_value) = match argument.split_once('=') {
            Some((name, value)) => (name.to_string(), Some(value.to_string())),
            None => (argument.clone(), None),
        };
        let mut value = || -> anyhow::Result<String> {
            match inline_value.clone().or_else(|| arguments.next()) {
                Some(value) => Ok(value),
                None => bail!("flag {name} needs a value\n\n{USAGE}"),
            }
        };
        match name.as_str() {
            "--config.file" => flags.config_file = Some(PathBuf::from(value()?)),
            "--storage.tsdb.path" => flags.storage_path = PathBuf::from(value()?),
            "--storage.tsdb.wal-sync" => flags.wal_sync = Some(value()?),
            "--storage.tsdb.wal-compression" => {
                let text = value()?;
                flags.wal_compression = Some(
                    text.parse()
                        .map_err(|_| anyhow::anyhow!("--storage.tsdb.wal-compression: not a bool: {text:?}"))?,
                );
            }
            "--storage.tsdb.wal-compression-type" => flags.wal_compression_type = Some(value()?),
            "--storage.tsdb.retention.time" => flags.retention_time = Some(value()?),
            "--storage.tsdb.retention" => flags.retention_deprecated = Some(value()?),
            "--storage.tsdb.retention.size" => flags.retention_size = Some(value()?),
            "--storage.tsdb.min-block-duration" => flags.block_duration_min = Some(value()?),
            "--storage.tsdb.max-block-duration" => flags.block_duration_max = Some(value()?),
            "--web.listen-address" => flags.listen_address = value()?,
            "--query.lookback-delta" => flags.lookback_delta = Some(value()?),
            "--query.timeout" => flags.query_timeout = Some(value()?),
            "--query.max-concurrency" => {
                let text = value()?;
                let count: usize =
                    text.parse().with_context(|| format!("--query.max-concurrency: not a count: {text:?}"))?;
                if count == 0 {
                    bail!("--query.max-concurrency: must be at least 1");
                }
                flags.query_concurrency_max = Some(count);
            }
            "--query.max-samples" => {
                let text = value()?;
                flags.query_samples_max =
                    Some(text.parse().with_context(|| format!("--query.max-samples: not a count: {text:?}"))?);
            }
            "--storage.remote.read-sample-limit" => {
                let text = value()?;
                flags.remote_read.sample_count_max =
                    text.parse().with_context(|| format!("{name}: not a count: {text:?}"))?;
            }
            "--storage.remote.read-concurrent-limit" => {
                let text = value()?;
                flags.remote_read.concurrency_max = text
                    .parse()
                    .ok()
                    .filter(|&count: &usize| count > 0)
                    .with_context(|| format!("{name}: not a positive count: {text:?}"))?;
            }
            "--storage.remote.read-max-bytes-in-frame" => {
                let text = value()?;
                flags.remote_read.frame_size_max = text
                    .parse()
                    .ok()
                    .filter(|&size: &usize| size > 0)
                    .with_context(|| format!("{name}: not a positive size: {text:?}"))?;
            }
            "--query.store" => {
                let url = value()?;
                engine::io::http_client::HttpEndpoint::parse(&url)
                    .map_err(|error| anyhow::anyhow!("{name}: {error}"))?;
                flags.query_stores.push(url);
            }
            "--query.replica-label" => flags.replica_labels.push(value()?),
            "--ha.peer" => {
                let url = value()?;
                engine::io::http_client::HttpEndpoint::parse(&url)
                    .map_err(|error| anyhow::anyhow!("{name}: {error}"))?;
                flags.ha_peer = Some(url);
            }
            "--ha.gap-fill-max" => flags.gap_fill_max_ms = duration_flag(&name, &value()?)?,
            "--deduplication.func" => {
                flags.dedup_algorithm = engine::storage::dedup::DedupAlgorithm::parse(&value()?)
                    .map_err(|error| anyhow::anyhow!("{name}: {error}"))?;
            }
            "--web.external-url" => flags.rules.external_url = Some(value()?),
            "--rules.alert.resend-delay" => flags.rules.resend_delay_ms = duration_flag(&name, &value()?)?,
            "--rules.alert.for-outage-tolerance" => flags.rules.outage_tolerance_ms = duration_flag(&name, &value()?)?,
            "--rules.alert.for-grace-period" => flags.rules.for_grace_period_ms = duration_flag(&name, &value()?)?,
            "--rules.max-concurrent-evals" => {
                let text = value()?;
                flags.rules.max_concurrent_evals =
                    text.parse().with_context(|| format!("--rules.max-concurrent-evals: not a count: {text:?}"))?;
            }
            "--alertmanager.notification-queue-capacity" => {
                let text = value()?;
                flags.rules.notification_queue_capacity =
                    text.parse().ok().filter(|&capacity: &usize| capacity > 0).with_context(|| {
                        format!("--alertmanager.notification-queue-capacity: not a positive count: {text:?}")
                    })?;
            }
            "--log.level" => {
                let text = value()?;
                flags.log_level = text.parse().map_err(|_| anyhow::anyhow!("--log.level: unknown level {text:?}"))?;
            }
            _ => bail!("unknown flag {argument:?}\n\n{USAGE}"),
        }
    }
    Ok(Some(flags))
}

fn duration_flag(name: &str, text: &str) -> anyhow::Result<i64> {
    config::parse_duration_ms(text).map_err(|error| anyhow::anyhow!("{name}: {error}"))
}

/// The retention and block-duration flags, and whether the deprecated `--storage.tsdb.retention`
/// supplied the time. As Prometheus: `.retention.time` beats the deprecated alias, and a zero
/// retention time or size counts as unset.
fn retention_flags(flags: &Flags) -> anyhow::Result<(RetentionSettings, bool)> {
    let duration = |name: &str, text: &Option<String>| -> anyhow::Result<Option<i64>> {
        text.as_deref()
            .map(|text| config::parse_duration_ms(text).map_err(|error| anyhow::anyhow!("{name}: {error}")))
            .transpose()
    };
    let time_ms = duration("--storage.tsdb.retention.time", &flags.retention_time)?.filter(|ms| *ms > 0);
    let deprecated_ms = duration("--storage.tsdb.retention", &flags.retention_deprecated)?.filter(|ms| *ms > 0);
    let size_bytes = flags
        .retention_size
        .as_deref()
        .map(|text| {
            config::parse_size_bytes(text).map_err(|error| anyhow::anyhow!("--storage.tsdb.retention.size: {error}"))
        })
        .transpose()?
        .filter(|size| *size > 0);
    let settings = RetentionSettings {
        duration_ms: time_ms.or(deprecated_ms),
        size_bytes,
        block_duration_min_ms: duration("--storage.tsdb.min-block-duration", &flags.block_duration_min)?,
        block_duration_max_ms: duration("--storage.tsdb.max-block-duration", &flags.block_duration_max)?,
    };
    Ok((settings, time_ms.is_none() && deprecated_ms.is_some()))
}

/// Every flag with the value in force, for `/api/v1/status/flags` (Prometheus lists all its
/// flags, defaults included).
fn flag_values(flags: &Flags, options: &ServerOptions) -> std::collections::BTreeMap<String, String> {
    let duration = |ms: i64| config::format_duration_ms(ms);
    let optional = |value: &Option<String>| value.clone().unwrap_or_default();
    let retention = &options.storage.retention;
    let pairs = [
        ("config.file", flags.config_file.as_ref().map(|path| path.display().to_string()).unwrap_or_default()),
        ("storage.tsdb.path", flags.storage_path.display().to_string()),
        ("storage.tsdb.wal-sync", optional(&flags.wal_sync)),
        (
            "storage.tsdb.wal-compression",
            (options.storage.wal.compression != engine::tsdb::wal::Compression::None).to_string(),
        ),
        ("storage.tsdb.wal-compression-type", optional(&flags.wal_compression_type)),
        ("storage.tsdb.retention.time", retention.duration_ms.map(duration).unwrap_or_else(|| "0s".to_string())),
        (
            "storage.tsdb.retention.size",
            retention.size_bytes.map(|size| format!("{size}B")).unwrap_or_else(|| "0B".to_string()),
        ),
        ("storage.tsdb.min-block-duration", duration(options.storage.block_range_ms)),
        ("storage.tsdb.max-block-duration", duration(options.storage.block_duration_max_ms)),
        ("storage.tsdb.no-lockfile", flags.no_lockfile.to_string()),
        ("web.listen-address", flags.listen_address.clone()),
        ("web.external-url", optional(&flags.rules.external_url)),
        ("web.enable-pushgateway", options.enable_pushgateway.to_string()),
        ("web.enable-remote-write-receiver", flags.remote_write_receiver.to_string()),
        ("storage.remote.read-sample-limit", flags.remote_read.sample_count_max.to_string()),
        ("storage.remote.read-concurrent-limit", flags.remote_read.concurrency_max.to_string()),
        ("storage.remote.read-max-bytes-in-frame", flags.remote_read.frame_size_max.to_string()),
        ("query.store", flags.query_stores.join(",")),
        ("ha.peer", optional(&flags.ha_peer)),
        ("ha.gap-fill-max", duration(flags.gap_fill_max_ms)),
        ("query.replica-label", options.replica_labels.join(",")),
        ("deduplication.func", options.dedup_algorithm.name().to_string()),
        ("query.lookback-delta", duration(options.engine.lookback_delta_ms)),
        ("query.max-samples", options.engine.query_samples_max.to_string()),
        ("query.timeout", duration(i64::try_from(options.engine.query_timeout_ms).unwrap_or(i64::MAX))),
        ("query.max-concurrency", options.engine.query_concurrency_max.to_string()),
        ("rules.alert.resend-delay", duration(flags.rules.resend_delay_ms)),
        ("rules.alert.for-outage-tolerance", duration(flags.rules.outage_tolerance_ms)),
        ("rules.alert.for-grace-period", duration(flags.rules.for_grace_period_ms)),
        ("rules.max-concurrent-evals", flags.rules.max_concurrent_evals.to_string()),
        ("alertmanager.notification-queue-capacity", flags.rules.notification_queue_capacity.to_string()),
        ("log.level", flags.log_level.to_string().to_lowercase()),
    ];
    pairs.into_iter().map(|(name, value)| (name.to_string(), value)).collect()
}

fn load_config(flags: &Flags) -> anyhow::Result<config::Config> {
    match &flags.config_file {
        Some(path) => {
            let bytes = RealFileSystem.read(path).with_context(|| format!("read config file {}", path.display()))?;
            let text =
                String::from_utf8(bytes).with_context(|| format!("config file {} is not UTF-8", path.display()))?;
            config::parse(&text).with_context(|| format!("load config file {}", path.display()))
        }
        None => {
            let port = flags.listen_address.rsplit_once(':').map(|(_, port)| port).unwrap_or("9090");
            let yaml = config::default_config_yaml(&format!("localhost:{port}"));
            config::parse(&yaml).context("parse embedded default config")
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let Some(flags) = parse_flags(std::env::args().skip(1))? else {
        return Ok(());
    };
    tracing_subscriber::fmt().with_max_level(flags.log_level).with_target(false).with_writer(std::io::stderr).init();
    let config = load_config(&flags)?;
    let mut options = ServerOptions::new(config, flags.storage_path.clone(), flags.listen_address.clone());
    options.config_path = flags.config_file.clone();
    options.rules = flags.rules.clone();
    let reload_trigger = Arc::new(tokio::sync::Notify::new());
    options.reload_trigger = Some(reload_trigger.clone());
    if let Some(text) = &flags.lookback_delta {
        options.engine.lookback_delta_ms =
            config::parse_duration_ms(text).map_err(|error| anyhow::anyhow!("--query.lookback-delta: {error}"))?;
    }
    if let Some(text) = &flags.wal_sync {
        options.storage.sync_policy =
            text.parse().map_err(|error: String| anyhow::anyhow!("--storage.tsdb.wal-sync: {error}"))?;
    }
    if let Some(name) = &flags.wal_compression_type {
        options.storage.wal.compression =
            name.parse().map_err(|error| anyhow::anyhow!("--storage.tsdb.wal-compression-type: {error}"))?;
    }
    options.storage.no_lockfile = flags.no_lockfile;
    options.enable_pushgateway = flags.enable_pushgateway;
    options.remote_write_receiver_enabled = flags.remote_write_receiver;
    options.remote_read_limits = flags.remote_read;
    options.query_stores = flags.query_stores.clone();
    if !flags.replica_labels.is_empty() {
        options.replica_labels = flags.replica_labels.clone();
    }
    options.dedup_algorithm = flags.dedup_algorithm;
    options.gap_fill = flags.ha_peer.clone().map(|peer| engine::remote::gap_fill::GapFillOptions {
        peer,
        window_ms_max: flags.gap_fill_max_ms,
        replica_labels: options.replica_labels.clone(),
        request_timeout_ms: 60_000,
    });
    let (retention, deprecated_retention) = retention_flags(&flags)?;
    if deprecated_retention {
        tracing::warn!(
            deprecation_notice =
                "'storage.tsdb.retention' flag is deprecated, use 'storage.tsdb.retention.time' instead"
        );
    }
    options.apply_retention(retention).map_err(|error| anyhow::anyhow!("storage retention: {error}"))?;
    tracing::info!(
        retention_time_ms = options.storage.retention.duration_ms,
        retention_size_bytes = options.storage.retention.size_bytes,
        min_block_duration_ms = options.storage.block_range_ms,
        max_block_duration_ms = options.storage.block_duration_max_ms,
        "storage retention"
    );
    if flags.wal_compression == Some(false) {
        options.storage.wal.compression = engine::tsdb::wal::Compression::None;
    }
    if let Some(count) = flags.query_samples_max {
        options.engine.query_samples_max = count;
    }
    if let Some(text) = &flags.query_timeout {
        let timeout_ms =
            config::parse_duration_ms(text).map_err(|error| anyhow::anyhow!("--query.timeout: {error}"))?;
        options.engine.query_timeout_ms =
            u64::try_from(timeout_ms).map_err(|_| anyhow::anyhow!("--query.timeout: negative duration {text:?}"))?;
    }
    if let Some(count) = flags.query_concurrency_max {
        options.engine.query_concurrency_max = count;
    }
    options.flag_values = flag_values(&flags, &options);
    options.working_directory = std::env::current_dir().map(|dir| dir.display().to_string()).unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start tokio runtime")?;
    runtime.block_on(async move {
        // One compute thread per query slot: an admitted query never waits for a thread.
        let env = Env::real_with_compute(startup_seed(), options.engine.query_concurrency_max);
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("install SIGTERM handler")?;
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).context("install SIGHUP handler")?;
        // SIGHUP reloads the configuration (rules), as Prometheus.
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                tracing::info!("received SIGHUP, reloading");
                reload_trigger.notify_one();
            }
        });
        // Every commit is already durable, so stopping needs no flush: just stop serving.
        tokio::select! {
            biased;
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("received SIGINT, shutting down");
                Ok(())
            }
            _ = terminate.recv() => {
                tracing::info!("received SIGTERM, shutting down");
                Ok(())
            }
            result = server::run(env, options) => result.context("server stopped"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(arguments: &[&str]) -> Flags {
        parse_flags(arguments.iter().map(|argument| argument.to_string())).unwrap().unwrap()
    }

    fn config(yaml: &str) -> config::Config {
        config::parse(yaml).unwrap()
    }

    /// Resolves `arguments` over the config file `yaml` as `run` does: (retention time, size,
    /// min block duration, max block duration), or the error text.
    fn resolve(arguments: &[&str], yaml: &str) -> Result<(Option<i64>, Option<u64>, i64, i64), String> {
        let mut options = ServerOptions::new(config(yaml), PathBuf::from("data"), "127.0.0.1:9090".to_string());
        let (settings, _) = retention_flags(&flags(arguments)).map_err(|error| format!("{error:#}"))?;
        options.apply_retention(settings)?;
        let storage = &options.storage;
        Ok((
            storage.retention.duration_ms,
            storage.retention.size_bytes,
            storage.block_range_ms,
            storage.block_duration_max_ms,
        ))
    }

    #[test]
    fn retention_from_the_config_file_then_flags_then_prometheus_defaults() {
        #[track_caller]
        fn check(arguments: &[&str], yaml: &str, expected: (Option<i64>, Option<u64>, i64, i64)) {
            assert_eq!(resolve(arguments, yaml), Ok(expected), "{arguments:?} over {yaml:?}");
        }
        let (h, d) = (3_600_000, 86_400_000);
        let file = "storage:\n  tsdb:\n    retention: 30d\n    retention_size: 1GB\n";
        check(&[], "", (Some(15 * d), None, 2 * h, 36 * h));
        check(&[], file, (Some(30 * d), Some(1 << 30), 2 * h, 72 * h));
        check(&["--storage.tsdb.retention.time=10d"], file, (Some(30 * d), Some(1 << 30), 2 * h, 72 * h));
        check(&["--storage.tsdb.retention.time=10d"], "", (Some(10 * d), None, 2 * h, 24 * h));
        check(&["--storage.tsdb.retention.size", "512MB"], "", (None, Some(512 << 20), 2 * h, 31 * d));
        // The deprecated alias, which the new flag beats.
        check(&["--storage.tsdb.retention=20d"], "", (Some(20 * d), None, 2 * h, 48 * h));
        check(
            &["--storage.tsdb.retention=20d", "--storage.tsdb.retention.time=5d"],
            "",
            (Some(5 * d), None, 2 * h, 12 * h),
        );
        // Zero is unset: the file's value, or the default.
        check(&["--storage.tsdb.retention.time=0s"], file, (Some(30 * d), Some(1 << 30), 2 * h, 72 * h));
        check(&["--storage.tsdb.retention.time=0"], "", (Some(15 * d), None, 2 * h, 36 * h));
        check(
            &["--storage.tsdb.min-block-duration=1h", "--storage.tsdb.max-block-duration=3h"],
            "storage:\n  tsdb:\n    min_block_duration: 4h\n    max_block_duration: 8h\n",
            (Some(15 * d), None, 4 * h, 8 * h),
        );
        check(
            &["--storage.tsdb.min-block-duration=1h", "--storage.tsdb.max-block-duration=3h"],
            "",
            (Some(15 * d), None, h, 3 * h),
        );
        check(&[], "storage:\n  tsdb:\n    min_block_duration: 4h\n", (Some(15 * d), None, 4 * h, 36 * h));
    }

    #[test]
    fn remote_write_receiver_flag_is_off_by_default_and_listed() {
        let options = ServerOptions::new(config(""), PathBuf::from("data"), "127.0.0.1:9090".to_string());
        let off = flags(&[]);
        assert!(!off.remote_write_receiver);
        assert_eq!(flag_values(&off, &options)["web.enable-remote-write-receiver"], "false");
        let on = flags(&["--web.enable-remote-write-receiver"]);
        assert!(on.remote_write_receiver);
        assert_eq!(flag_values(&on, &options)["web.enable-remote-write-receiver"], "true");
    }

    #[test]
    fn bad_retention_flags_are_errors_naming_the_flag() {
        #[track_caller]
        fn check(arguments: &[&str], yaml: &str, parts: &[&str]) {
            let error = resolve(arguments, yaml).expect_err(&format!("{arguments:?}"));
            for part in parts {
                assert!(error.contains(part), "{error:?} lacks {part:?}");
            }
        }
        check(&["--storage.tsdb.retention.time=15x"], "", &["--storage.tsdb.retention.time", "15x"]);
        check(&["--storage.tsdb.retention=1.5d"], "", &["--storage.tsdb.retention:", "1.5d"]);
        check(&["--storage.tsdb.retention.size=12XB"], "", &["--storage.tsdb.retention.size", "unknown size unit"]);
        check(&["--storage.tsdb.min-block-duration=0s"], "", &["min block duration must be greater than zero"]);
        check(
            &["--storage.tsdb.max-block-duration=1h"],
            "",
            &["max block duration 1h is shorter than min block duration 2h"],
        );
        // The flag's minimum against the file's maximum.
        check(
            &["--storage.tsdb.min-block-duration=12h"],
            "storage:\n  tsdb:\n    max_block_duration: 6h\n",
            &["max block duration 6h is shorter than min block duration 12h"],
        );
        assert!(parse_flags(["--storage.tsdb.retention.time".to_string()].into_iter()).is_err(), "a value is needed");
        let (_, deprecated) = retention_flags(&flags(&["--storage.tsdb.retention=2d"])).unwrap();
        assert!(deprecated, "the deprecated alias is reported so run() warns");
    }
}
