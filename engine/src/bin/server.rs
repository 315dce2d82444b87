//! The deployable engine: `server [--config.file=FILE] [--storage.tsdb.path=DIR]
//! [--web.listen-address=HOST:PORT]`. Without `--config.file` it runs the embedded default
//! configuration, which scrapes the server itself every 5 s.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use engine::config;
use engine::io::{clock::startup_seed, Env, FileSystem, RealFileSystem};
use engine::server::{self, ServerOptions};

const USAGE: &str = "usage: server [flags]

  --config.file=FILE            Prometheus-format YAML config (default: embedded self-scrape config)
  --storage.tsdb.path=DIR       data directory (default: data/)
  --web.listen-address=ADDR     listen address (default: 0.0.0.0:9090)
  --storage.tsdb.wal-sync=WHEN  when commits are fsynced: commit (default; nothing committed is lost on
                                power failure), interval:DUR (e.g. interval:100ms), segment (at segment
                                rollover only, as Prometheus)
  --storage.tsdb.no-lockfile     do not lock the data directory (default: lock DIR/lock)
  --storage.tsdb.wal-compression=BOOL
                                compress WAL records (default: true; --no-storage.tsdb.wal-compression)
  --storage.tsdb.wal-compression-type=TYPE
                                snappy (default; Prometheus 2.42 reads it), zstd (newer Prometheus
                                versions read it), lz4 (this engine only), none
  --query.lookback-delta=DUR    lookback for instant selectors (default: 5m)
  --query.max-samples=N         most samples one query may load (default: 50000000)
  --log.level=LEVEL             error, warn, info, debug (default: info)
  -h, --help                    this text
  --version                     print the version";

struct Flags {
    config_file: Option<PathBuf>,
    storage_path: PathBuf,
    wal_sync: Option<String>,
    wal_compression: Option<bool>,
    no_lockfile: bool,
    wal_compression_type: Option<String>,
    listen_address: String,
    lookback_delta: Option<String>,
    query_samples_max: Option<usize>,
    log_level: tracing::Level,
}

fn parse_flags(arguments: impl Iterator<Item = String>) -> anyhow::Result<Option<Flags>> {
    let mut flags = Flags {
        config_file: None,
        storage_path: PathBuf::from("data/"),
        wal_sync: None,
        wal_compression: None,
        no_lockfile: false,
        wal_compression_type: None,
        listen_address: "0.0.0.0:9090".to_string(),
        lookback_delta: None,
        query_samples_max: None,
        log_level: tracing::Level::INFO,
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
            "--web.listen-address" => flags.listen_address = value()?,
            "--query.lookback-delta" => flags.lookback_delta = Some(value()?),
            "--query.max-samples" => {
                let text = value()?;
                flags.query_samples_max =
                    Some(text.parse().with_context(|| format!("--query.max-samples: not a count: {text:?}"))?);
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
    if flags.wal_compression == Some(false) {
        options.storage.wal.compression = engine::tsdb::wal::Compression::None;
    }
    if let Some(count) = flags.query_samples_max {
        options.engine.query_samples_max = count;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start tokio runtime")?;
    runtime.block_on(async move {
        let env = Env::real(startup_seed());
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("install SIGTERM handler")?;
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
