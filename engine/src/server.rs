//! Assembles one engine: storage (WAL replayed), scrape loops, query engine and HTTP API, all on
//! the [`Env`] it is given. The real server binary and the simulator both call [`run`], so the
//! simulated engine is the deployed engine.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::api::{self, Api};
use crate::config::Config;
use crate::io::{Env, Listener};
use crate::limits::{RuntimeLimits, LISTEN_BIND_ATTEMPT_COUNT_MAX, LISTEN_BIND_RETRY_MS};
use crate::metrics::SelfMetrics;
use crate::promql::{Engine, EngineOptions};
use crate::scrape;
use crate::tsdb::compact::RetentionSettings;
use crate::tsdb::{CommitObserver, Db, DbOptions, TsdbError};

/// Everything a server needs besides its environment.
#[derive(Clone)]
pub struct ServerOptions {
    /// Scrape configuration.
    pub config: Config,
    /// Data directory (`--storage.tsdb.path`).
    pub storage_path: PathBuf,
    /// `host:port` to listen on (`--web.listen-address`).
    pub listen_address: String,
    /// Query engine settings.
    pub engine: EngineOptions,
    /// Runtime limits.
    pub limits: RuntimeLimits,
    /// Storage settings (the commit observer below overrides the one in here).
    pub storage: DbOptions,
    /// Called after every storage commit (the simulator's durability checker).
    pub commit_observer: Option<CommitObserver>,
}

impl ServerOptions {
    /// Options with defaults for everything but the configuration, data path and address; the
    /// storage's retention and block durations come from the config file's `storage.tsdb` keys
    /// (with Prometheus' defaults for those unset).
    pub fn new(config: Config, storage_path: PathBuf, listen_address: String) -> Self {
        let mut options = ServerOptions {
            config,
            storage_path,
            listen_address,
            engine: EngineOptions::default(),
            limits: RuntimeLimits::default(),
            storage: DbOptions::default(),
            commit_observer: None,
        };
        if let Err(error) = options.apply_retention(RetentionSettings::default()) {
            // A parsed config already passed these checks; keep Prometheus' defaults.
            tracing::warn!(%error, "storage.tsdb retention settings ignored");
        }
        options
    }

    /// The config file's retention and block-duration keys.
    pub fn config_retention_settings(&self) -> RetentionSettings {
        let storage = &self.config.storage;
        RetentionSettings {
            duration_ms: storage.retention_duration_ms,
            size_bytes: storage.retention_size_bytes,
            block_duration_min_ms: storage.block_duration_min_ms,
            block_duration_max_ms: storage.block_duration_max_ms,
        }
    }

    /// Sets `storage`'s retention, block range and maximum block duration from the config
    /// file's keys layered over `flags` (the file wins, as for every `storage.tsdb` key and as
    /// Prometheus 3 does for retention), with Prometheus' defaults for what neither sets; an
    /// error names a value that does not fit (a maximum below the minimum).
    pub fn apply_retention(&mut self, flags: RetentionSettings) -> Result<(), String> {
        let settings = self.config_retention_settings().or(flags);
        settings.validate()?;
        let resolved = settings.resolve();
        self.storage.retention = resolved.retention;
        self.storage.block_range_ms = resolved.block_duration_min_ms;
        self.storage.block_duration_max_ms = resolved.block_duration_max_ms;
        Ok(())
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The storage could not be opened or replayed.
    #[error("open storage: {0}")]
    Storage(#[from] TsdbError),
    /// A configured value the storage does not take.
    #[error("configuration: {0}")]
    Config(String),
    /// The listen address could not be bound.
    #[error("listen on {address}: {source}")]
    Bind {
        /// The address.
        address: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// Opens storage, starts scraping and serves the API until cancelled.
pub async fn run(env: Env, options: ServerOptions) -> Result<(), ServerError> {
    let mut db_options = DbOptions {
        commit_observer: options.commit_observer.clone(),
        clock: Some(env.clock.clone()),
        seed: env.random.seed(),
        ..options.storage.clone()
    };
    // The config file's `storage.tsdb` keys, where set, win over the flags.
    let storage_config = &options.config.storage;
    if let Some(size) = storage_config.wal_segment_size_max {
        db_options.wal.segment_size_max = size;
    }
    if let Some(count) = storage_config.series_count_max {
        db_options.series_count_max = count;
    }
    if let Some(no_lockfile) = storage_config.no_lockfile {
        db_options.no_lockfile = no_lockfile;
    }
    if let Some(name) = &storage_config.wal_compression {
        db_options.wal.compression = name.parse().map_err(|error| ServerError::Config(format!("{error}")))?;
    }
    let db = Db::open(env.fs.clone(), env.spawner.as_ref(), &options.storage_path, db_options)?;
    let stats = db.stats();
    tracing::info!(
        series = stats.series_count,
        samples = stats.wal_samples_replayed,
        path = %options.storage_path.display(),
        "storage opened, WAL replayed"
    );
    let listener = bind(&env, &options.listen_address).await?;
    tracing::info!(address = %options.listen_address, "listening");
    let metrics = Arc::new(SelfMetrics::default());
    scrape::start(&env, &options.config, Arc::new(db.clone()), metrics.clone(), options.limits.scrape_body_size_max);
    let engine = Engine::new(Arc::new(db.clone()), options.engine.clone());
    let api = Arc::new(Api::new(engine, env.clock.clone(), db, metrics, options.limits.http_request_body_size_max));
    api::serve::serve(listener, api, env.spawner.clone(), options.limits.http_connections_max).await;
    Ok(())
}

/// Binds with a bounded number of retries: right after a restart the old socket may linger.
async fn bind(env: &Env, address: &str) -> Result<Box<dyn Listener>, ServerError> {
    let mut attempt = 1;
    loop {
        match env.net.bind(address.to_string()).await {
            Ok(listener) => return Ok(listener),
            Err(source) if attempt >= LISTEN_BIND_ATTEMPT_COUNT_MAX => {
                return Err(ServerError::Bind { address: address.to_string(), source })
            }
            Err(error) => {
                tracing::warn!(%error, attempt, "bind listen address, retrying");
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(LISTEN_BIND_RETRY_MS)).await;
            }
        }
    }
}
