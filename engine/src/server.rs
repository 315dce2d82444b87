//! Assembles one engine: storage (WAL replayed), scrape loops, query engine and HTTP API, all on
//! the [`Env`] it is given. The real server binary and the simulator both call [`run`], so the
//! simulated engine is the deployed engine.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::alert::config::AlertManagerConfig;
use crate::alert::manager::{AlertManager, AlertManagerOptions};
use crate::api::{self, Api};
use crate::config::{AlertManagerSource, Config};
use crate::io::{Env, Listener};
use crate::limits::{RuntimeLimits, LISTEN_BIND_ATTEMPT_COUNT_MAX, LISTEN_BIND_RETRY_MS};
use crate::metrics::SelfMetrics;
use crate::notifier::{self, AlertSink, Notifier};
use crate::promql::{Engine, EngineOptions};
use crate::rules::{self, EvalContext, Manager, ManagerOptions};
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
    /// The configuration file, re-read on reload (`/-/reload`, SIGHUP); `None` when the
    /// configuration is embedded (a reload then re-reads the rule files only).
    pub config_path: Option<PathBuf>,
    /// Where alerts go; `None`: the notifier, sending to the `alerting` section's Alertmanagers.
    pub alert_sink: Option<Arc<dyn AlertSink>>,
    /// Each notification triggers a reload (the binary notifies it on SIGHUP).
    pub reload_trigger: Option<Arc<tokio::sync::Notify>>,
    /// Rule manager flags.
    pub rules: RuleFlags,
    /// Every command-line flag with its value in force (`/api/v1/status/flags`).
    pub flag_values: std::collections::BTreeMap<String, String>,
    /// The process's working directory (`/api/v1/status/runtimeinfo`), as the binary found it.
    pub working_directory: String,
    /// Serve the Pushgateway API and scrape its store (`--web.enable-pushgateway`).
    pub enable_pushgateway: bool,
    /// Serve `POST /api/v1/write` (`--web.enable-remote-write-receiver`).
    pub remote_write_receiver_enabled: bool,
    /// `POST /api/v1/read`'s limits (`--storage.remote.read-*`).
    pub remote_read_limits: api::remote_read::RemoteReadLimits,
    /// The query node's stores (`--query.store`, base URLs read through `/api/v1/read`).
    pub query_stores: Vec<String>,
    /// Labels that tell replicas apart (`--query.replica-label`), removed by deduplication.
    pub replica_labels: Vec<String>,
    /// How replicas are merged (`--deduplication.func`).
    pub dedup_algorithm: crate::storage::dedup::DedupAlgorithm,
    /// Fill the outage's gap from the HA peer at startup (`--ha.peer`, `--ha.gap-fill-max`).
    pub gap_fill: Option<crate::remote::gap_fill::GapFillOptions>,
}

/// The rule manager's and notifier's flags (Prometheus `--rules.*`, `--web.external-url`,
/// `--alertmanager.notification-queue-capacity`).
#[derive(Clone, Debug)]
pub struct RuleFlags {
    /// `--web.external-url`; `None`: `http://localhost:<listen port>`.
    pub external_url: Option<String>,
    /// `--rules.alert.resend-delay`.
    pub resend_delay_ms: i64,
    /// `--rules.alert.for-outage-tolerance`.
    pub outage_tolerance_ms: i64,
    /// `--rules.alert.for-grace-period`.
    pub for_grace_period_ms: i64,
    /// `--rules.max-concurrent-evals`.
    pub max_concurrent_evals: usize,
    /// `--alertmanager.notification-queue-capacity`.
    pub notification_queue_capacity: usize,
}

impl Default for RuleFlags {
    fn default() -> Self {
        RuleFlags {
            external_url: None,
            resend_delay_ms: rules::RESEND_DELAY_MS_DEFAULT,
            outage_tolerance_ms: rules::OUTAGE_TOLERANCE_MS_DEFAULT,
            for_grace_period_ms: rules::FOR_GRACE_PERIOD_MS_DEFAULT,
            max_concurrent_evals: rules::MAX_CONCURRENT_EVALS_DEFAULT,
            notification_queue_capacity: notifier::QUEUE_CAPACITY_DEFAULT,
        }
    }
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
            config_path: None,
            alert_sink: None,
            reload_trigger: None,
            rules: RuleFlags::default(),
            flag_values: std::collections::BTreeMap::new(),
            working_directory: String::new(),
            enable_pushgateway: false,
            remote_write_receiver_enabled: false,
            remote_read_limits: api::remote_read::RemoteReadLimits::default(),
            query_stores: Vec::new(),
            replica_labels: vec!["replica".to_string()],
            dedup_algorithm: crate::storage::dedup::DedupAlgorithm::default(),
            gap_fill: None,
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
    let exemplars = Arc::new(crate::exemplars::ExemplarStore::new(options.config.storage.exemplar_count_max));
    metrics.add_source(exemplars.clone());
    if let Some(gap_fill) = &options.gap_fill {
        // Before anything writes: every filled sample is then newer than what its series holds.
        let report = crate::remote::gap_fill::fill_gap(&env, &db, gap_fill, env.clock.now_ms()).await;
        match &report.error {
            None => tracing::info!(
                peer = %gap_fill.peer,
                from_ms = report.from_ms,
                to_ms = report.to_ms,
                series = report.series_count,
                samples = report.sample_count,
                refused = report.refused_count,
                "outage gap filled from the HA peer"
            ),
            Some(error) => tracing::warn!(
                peer = %gap_fill.peer,
                %error,
                samples = report.sample_count,
                "outage gap filled only in part from the HA peer"
            ),
        }
        let gap_fill_metrics = Arc::new(crate::remote::gap_fill::GapFillMetrics::default());
        gap_fill_metrics.record(report);
        metrics.add_source(gap_fill_metrics);
    }
    let scrape_manager = scrape::start(
        &env,
        &options.config,
        Arc::new(db.clone()),
        metrics.clone(),
        options.limits.scrape_body_size_max,
        Some(exemplars.clone()),
    );
    // Queues start when the reloader applies the configuration below.
    let remote_writer = crate::remote::RemoteWriteManager::new(env.clone(), db.clone());
    let store_timeout_ms = i64::try_from(options.engine.query_timeout_ms).ok().filter(|ms| *ms > 0).unwrap_or(120_000);
    let remote_readers = crate::remote::read::RemoteReaders::new(env.clone(), &options.query_stores, store_timeout_ms);
    metrics.add_source(remote_writer.clone());
    let engine = Engine::new(Arc::new(db.clone()), options.engine.clone());
    let port = options.listen_address.rsplit(':').next().unwrap_or("9090");
    let external_url = options
        .rules
        .external_url
        .clone()
        .unwrap_or_else(|| format!("http://localhost:{port}"))
        .trim_end_matches('/')
        .to_string();
    let alert_manager = start_alert_manager(&env, &options, &external_url, &metrics)?;
    // The notifier runs unless the caller supplies its own sink (tests), or the embedded alert
    // manager takes the alerts in process (enabled, and no `alerting.alertmanagers`).
    let in_process = alert_manager.as_ref().filter(|_| options.config.alerting.alertmanagers.is_empty());
    let (sink, notifier): (Arc<dyn AlertSink>, Option<Arc<Notifier>>) = match (&options.alert_sink, in_process) {
        (Some(sink), _) => (sink.clone(), None),
        (None, Some(manager)) => (manager.clone(), None),
        (None, None) => {
            let notifier = Notifier::new(env.clone(), options.rules.notification_queue_capacity);
            env.spawner.spawn("notifier", Box::pin(notifier.clone().run()));
            metrics.add_source(notifier.clone());
            (notifier.clone(), Some(notifier))
        }
    };
    let context = EvalContext {
        engine: engine.clone(),
        appendable: Arc::new(db.clone()),
        queryable: Arc::new(db.clone()),
        sink,
        clock: env.clock.clone(),
        external_labels: options.config.global.external_labels.clone(),
        external_url,
        resend_delay_ms: options.rules.resend_delay_ms,
        outage_tolerance_ms: options.rules.outage_tolerance_ms,
        for_grace_period_ms: options.rules.for_grace_period_ms,
    };
    let manager = Arc::new(Manager::new(env.clone(), context, manager_options(&options.config, &options.rules)));
    let reload_state = Arc::new(ReloadState::new(env.clock.now_ms()));
    let reloader = Arc::new(Reloader {
        env: env.clone(),
        config_path: options.config_path.clone(),
        startup_config: options.config.clone(),
        config_yaml: std::sync::Mutex::new(options.config.source_yaml.clone()),
        external_labels: std::sync::Mutex::new(options.config.global.external_labels.clone()),
        reload_state: reload_state.clone(),
        flags: options.rules.clone(),
        manager: manager.clone(),
        notifier,
        alert_manager: alert_manager.clone(),
        scrape: scrape_manager.clone(),
        remote_writer,
        remote_readers: remote_readers.clone(),
    });
    reloader.apply(&options.config).map_err(ServerError::Config)?;
    metrics.add_source(manager.clone());
    // The reload state, not the reloader: the reloader holds the scrape manager, which holds
    // the metrics, and a cycle would keep the whole engine alive after its tasks end.
    metrics.add_source(reload_state);
    if let Some(trigger) = options.reload_trigger.clone() {
        let reloader = reloader.clone();
        env.spawner.spawn(
            "reload-on-signal",
            Box::pin(async move {
                loop {
                    trigger.notified().await;
                    if let Err(error) = api::Reload::reload(reloader.as_ref()) {
                        tracing::error!(%error, "reload");
                    }
                }
            }),
        );
    }
    let push_gateway = options.enable_pushgateway.then(|| start_push_gateway(&env, &options, &db));
    let remote_write = options.remote_write_receiver_enabled.then(|| {
        let receiver = Arc::new(api::remote_write::Receiver::new(
            Arc::new(db.clone()),
            api::remote_write::ReceiverLimits::default(),
        ));
        metrics.add_source(receiver.clone());
        tracing::info!("remote write receiver enabled (POST /api/v1/write)");
        receiver
    });
    let mut api = Api::new(
        engine,
        env.clock.clone(),
        db,
        metrics,
        options.limits.http_request_body_size_max,
        env.spawner.clone(),
    )
    .with_rules(manager, reloader)
    .with_targets(scrape_manager)
    .with_exemplars(exemplars)
    .with_remote_read_limits(options.remote_read_limits)
    .with_remote_readers(remote_readers)
    .with_dedup(options.replica_labels.clone(), options.dedup_algorithm)
    .with_flags(options.flag_values.clone())
    .with_runtime_info(api::RuntimeInfo {
        start_time_ms: env.clock.now_ms(),
        working_directory: options.working_directory.clone(),
        storage_retention: retention_text(&options.storage.retention),
        compute_thread_count: options.engine.query_concurrency_max,
    });
    if let Some(alert_manager) = alert_manager {
        api = api.with_alert_manager(alert_manager);
    }
    if let Some(push_gateway) = push_gateway {
        api = api.with_push_gateway(push_gateway);
    }
    if let Some(receiver) = remote_write {
        api = api.with_remote_write_receiver(receiver);
    }
    let api = Arc::new(api);
    if let Some(section) = &options.config.frontend {
        start_frontend(&env, section, port, options.limits.http_connections_max).await?;
    }
    api::serve::serve(listener, api, env.spawner.clone(), options.limits.http_connections_max).await;
    Ok(())
}

fn manager_options(config: &Config, flags: &RuleFlags) -> ManagerOptions {
    ManagerOptions {
        evaluation_interval_ms: config.global.evaluation_interval_ms,
        query_offset_ms: config.global.rule_query_offset_ms,
        max_concurrent_evals: flags.max_concurrent_evals,
    }
}

/// Re-reads the configuration file and updates the rule manager, the notifier, the embedded
/// alert manager, the scrape targets and the remote write queues.
struct Reloader {
    env: Env,
    config_path: Option<PathBuf>,
    startup_config: Config,
    /// The YAML of the configuration last applied.
    config_yaml: std::sync::Mutex<String>,
    /// Its external labels (`/federate`).
    external_labels: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
    /// How the last reload went (shared with `/metrics`).
    reload_state: Arc<ReloadState>,
    flags: RuleFlags,
    manager: Arc<Manager>,
    notifier: Option<Arc<Notifier>>,
    alert_manager: Option<Arc<AlertManager>>,
    scrape: Arc<scrape::ScrapeManager>,
    remote_writer: Arc<crate::remote::RemoteWriteManager>,
    remote_readers: Arc<crate::remote::read::RemoteReaders>,
}

impl Reloader {
    /// Resolves `config`'s rule files and hands them to the manager; the previous rules stay
    /// on any error.
    fn apply(&self, config: &Config) -> Result<(), String> {
        let base_dir = self.config_path.as_deref().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
        let files = rules::file::resolve_rule_files(self.env.fs.as_ref(), &base_dir, &config.rule_files)
            .map_err(|error| error.to_string())?;
        self.manager.update_from_files(manager_options(config, &self.flags), &files).map_err(|errors| {
            let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
            format!("error loading rules: {}", texts.join("; "))
        })?;
        tracing::info!(rule_files = files.len(), groups = self.manager.groups().len(), "rules loaded");
        if let Some(notifier) = &self.notifier {
            notifier.apply_config(&config.alerting, &config.global.external_labels);
        }
        // Queues first: a new queue starts at the WAL's end, before the new jobs' first samples.
        self.remote_writer.apply_config(config);
        self.remote_readers.apply_config(config);
        // Unchanged targets keep their loops; removed ones are stopped with staleness markers.
        self.scrape.apply(config);
        match (&self.alert_manager, &config.alert_manager) {
            (Some(alert_manager), Some(section)) if section.enabled => {
                let loaded = load_alert_manager_config(&self.env, self.config_path.as_deref(), &section.source)?;
                if loaded != *alert_manager.config() {
                    alert_manager.apply_config(loaded);
                    tracing::info!("alert manager configuration reloaded");
                }
            }
            (None, Some(section)) if section.enabled => {
                tracing::warn!("alert_manager was enabled by a reload; it starts at the next restart");
            }
            (Some(_), _) => tracing::warn!("alert_manager was disabled by a reload; it stops at the next restart"),
            _ => {}
        }
        if config.frontend != self.startup_config.frontend {
            tracing::warn!("the frontend section changed; the change applies at the next restart");
        }
        Ok(())
    }
}

impl Reloader {
    /// The configuration file's current contents, or the startup configuration when embedded.
    fn read_config(&self) -> Result<Config, String> {
        let Some(path) = &self.config_path else { return Ok(self.startup_config.clone()) };
        let bytes = self.env.fs.read(path).map_err(|error| format!("read {}: {error}", path.display()))?;
        let text = String::from_utf8(bytes).map_err(|error| format!("{} is not UTF-8: {error}", path.display()))?;
        crate::config::parse(&text).map_err(|error| format!("parse {}: {error}", path.display()))
    }
}

/// The outcome of the last (re)load attempt and the time of the last successful one.
struct ReloadState {
    /// (success, Unix ms) of the last attempt.
    last_attempt: std::sync::Mutex<(bool, i64)>,
    /// Unix ms of the last success.
    last_success_ms: std::sync::Mutex<i64>,
}

impl ReloadState {
    fn new(now_ms: i64) -> ReloadState {
        ReloadState {
            last_attempt: std::sync::Mutex::new((true, now_ms)),
            last_success_ms: std::sync::Mutex::new(now_ms),
        }
    }

    fn record(&self, success: bool, now_ms: i64) {
        *self.last_attempt.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = (success, now_ms);
        if success {
            *self.last_success_ms.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = now_ms;
        }
    }

    fn last_attempt(&self) -> (bool, i64) {
        *self.last_attempt.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl crate::metrics::MetricsSource for ReloadState {
    /// Prometheus' reload metrics.
    fn render(&self, out: &mut String) {
        let (success, _) = self.last_attempt();
        let _ = std::fmt::Write::write_fmt(
            out,
            format_args!(
                "# HELP prometheus_config_last_reload_successful Whether the last configuration reload attempt was successful.\n\
                 # TYPE prometheus_config_last_reload_successful gauge\n\
                 prometheus_config_last_reload_successful {}\n\
                 # HELP prometheus_config_last_reload_success_timestamp_seconds Timestamp of the last successful configuration reload.\n\
                 # TYPE prometheus_config_last_reload_success_timestamp_seconds gauge\n\
                 prometheus_config_last_reload_success_timestamp_seconds {}\n",
                u8::from(success),
                *self.last_success_ms.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) / 1000
            ),
        );
    }
}

impl api::Reload for Reloader {
    fn reload(&self) -> Result<(), String> {
        let applied = self.read_config().and_then(|config| {
            self.apply(&config).map_err(|error| format!("failed to reload config: {error}"))?;
            *self.external_labels.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
                config.global.external_labels.clone();
            *self.config_yaml.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = config.source_yaml;
            Ok(())
        });
        // Every attempt is recorded, a file that does not parse included; the old configuration
        // keeps running on any error.
        self.reload_state.record(applied.is_ok(), self.env.clock.now_ms());
        match &applied {
            Ok(()) => {
                tracing::info!("completed loading of configuration file");
            }
            Err(error) => tracing::error!(%error, "reloading the configuration failed; the previous one stays"),
        }
        applied
    }

    fn config_yaml(&self) -> String {
        self.config_yaml.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn external_labels(&self) -> std::collections::BTreeMap<String, String> {
        self.external_labels.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn last_reload(&self) -> (bool, i64) {
        self.reload_state.last_attempt()
    }
}

/// Retention as Prometheus' runtime info prints it: `15d`, `512MiB`, `15d or 512MiB`.
fn retention_text(retention: &crate::tsdb::compact::Retention) -> String {
    let time = retention.duration_ms.map(crate::config::format_duration_ms);
    let size = retention.size_bytes.map(|bytes| {
        // The largest binary unit that divides the size exactly.
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        let unit = (0..units.len()).rev().find(|&unit| bytes > 0 && bytes % (1_u64 << (10 * unit)) == 0).unwrap_or(0);
        format!("{}{}", bytes >> (10 * unit), units[unit])
    });
    match (time, size) {
        (Some(time), Some(size)) => format!("{time} or {size}"),
        (Some(time), None) => time,
        (None, Some(size)) => size,
        (None, None) => String::new(),
    }
}

/// Starts the embedded alert manager when the configuration enables it: its state under
/// `<storage path>/alertmanager/`, its dispatcher as a task, its metrics on `/metrics`.
fn start_alert_manager(
    env: &Env,
    options: &ServerOptions,
    external_url: &str,
    metrics: &Arc<SelfMetrics>,
) -> Result<Option<Arc<AlertManager>>, ServerError> {
    let Some(section) = options.config.alert_manager.as_ref().filter(|section| section.enabled) else {
        return Ok(None);
    };
    let config =
        load_alert_manager_config(env, options.config_path.as_deref(), &section.source).map_err(ServerError::Config)?;
    let alert_manager = AlertManager::new(
        env.clone(),
        config,
        AlertManagerOptions {
            data_dir: options.storage_path.join("alertmanager"),
            external_url: external_url.to_string(),
            retention_ms: crate::alert::nflog::RETENTION_MS_DEFAULT,
        },
    );
    env.spawner.spawn("alert-manager", Box::pin(alert_manager.clone().run()));
    metrics.add_source(alert_manager.clone());
    tracing::info!("embedded alert manager started (API v2 under /api/v2/)");
    Ok(Some(alert_manager))
}

/// Opens the push gateway's store under `<storage path>/pushgateway/` and starts the task that
/// appends its series every global scrape interval (as Prometheus scraping a Pushgateway).
fn start_push_gateway(env: &Env, options: &ServerOptions, db: &Db) -> Arc<crate::push::PushGateway> {
    let push_gateway = Arc::new(crate::push::PushGateway::from_env(env, &options.storage_path));
    let interval_ms = options.config.global.scrape_interval_ms;
    env.spawner
        .spawn("push-gateway-scrape", Box::pin(push_gateway.clone().run_scrape(Arc::new(db.clone()), interval_ms)));
    tracing::info!(interval_ms, "push gateway enabled (PUT/POST/DELETE /metrics/job/..., GET /pushgateway/metrics)");
    push_gateway
}

/// The embedded alert manager's configuration: inline, or read from its file (relative to the
/// engine's configuration file) through the filesystem seam.
fn load_alert_manager_config(
    env: &Env,
    config_path: Option<&Path>,
    source: &AlertManagerSource,
) -> Result<AlertManagerConfig, String> {
    match source {
        AlertManagerSource::Inline(config) => Ok((**config).clone()),
        AlertManagerSource::File(file) => {
            let base_dir = config_path.and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
            let path = base_dir.join(file);
            let bytes = env.fs.read(&path).map_err(|error| format!("read {}: {error}", path.display()))?;
            let text = String::from_utf8(bytes).map_err(|error| format!("{} is not UTF-8: {error}", path.display()))?;
            crate::alert::config::parse(&text)
                .map_err(|error| format!("alert manager config {}: {error}", path.display()))
        }
    }
}

/// Starts the query frontend of the `frontend` section on its own listen address, in front of
/// this server's API (loopback, `port`) unless the section names another downstream.
async fn start_frontend(
    env: &Env,
    section: &crate::config::FrontendSection,
    port: &str,
    connections_max: usize,
) -> Result<(), ServerError> {
    let mut config = section.config.clone();
    if config.downstream_url.is_empty() {
        config.downstream_url = format!("http://127.0.0.1:{port}");
    }
    let downstream = config.downstream_url.clone();
    let frontend = crate::frontend::Frontend::new(env.clone(), config).map_err(ServerError::Config)?;
    let listener = bind(env, &section.listen_address).await?;
    tracing::info!(address = %section.listen_address, %downstream, "query frontend listening");
    env.spawner.spawn("frontend", Box::pin(crate::frontend::serve(listener, Arc::new(frontend), connections_max)));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_prints_as_prometheus_runtime_info() {
        let retention = |duration_ms, size_bytes| crate::tsdb::compact::Retention { duration_ms, size_bytes };
        assert_eq!(retention_text(&retention(Some(15 * 86_400_000), None)), "15d");
        assert_eq!(retention_text(&retention(None, Some(512 << 20))), "512MiB");
        assert_eq!(retention_text(&retention(Some(3_600_000), Some(1500))), "1h or 1500B");
        assert_eq!(retention_text(&retention(None, None)), "");
    }
}
