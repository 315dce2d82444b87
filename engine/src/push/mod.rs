//! A Pushgateway-compatible API for batch jobs (`--web.enable-pushgateway`): `PUT`, `POST` and
//! `DELETE` on `/metrics/job/<job>{/<label>/<value>}` with the Pushgateway's semantics (1.5,
//! handler/push.go, handler/delete.go, storage/diskmetricstore.go), the store's exposition on
//! [`EXPOSITION_PATH`], and the engine "scraping" its own store every global scrape interval,
//! as a Prometheus scrapes a Pushgateway with `honor_labels: true`.
//!
//! - [`path`]: grouping labels from the path (base64url values, `@base64/=` for empty).
//! - [`store`]: groups, PUT/POST/DELETE, the consistency check, the exposition.
//! - [`persist`]: the on-disk format.
//!
//! A push body is the text format 0.0.4 (the scrape parser's); one that does not parse, or
//! passes a bound, is refused (400, 413) and changes nothing. One that parses but is
//! inconsistent (timestamps, a type or series clash with another group) is refused with 400
//! and, as the Pushgateway does, sets the group's `push_failure_time_seconds`. Every change
//! is written to `<data dir>/pushgateway/groups` before it is answered; if the write fails
//! the change is undone and the answer is 500, so what a client was told is what a restart
//! finds.
//!
//! The self-scrape renders the exposition and reads it back with the scrape parser, so its
//! series are exactly what a Prometheus scrape would see; empty label values (the
//! `instance=""` every pushed series carries) are dropped, and no target labels are added
//! (every series has `job` and `instance`), which is what `honor_labels: true` gives. A series
//! gone since the last round gets a staleness marker. One round is one commit (bounded by
//! [`PUSH_SAMPLE_COUNT_TOTAL_MAX`](crate::limits::PUSH_SAMPLE_COUNT_TOTAL_MAX)).
//!
//! Concurrency: one mutex guards the store; a change holds it through its file write (the
//! writes are serialized, so the file never goes back in time), and no lock is held across an
//! await. Time comes from `Env.clock`, the scrape task is spawned through `Env.spawner` and
//! sleeps with `tokio::time`.

pub mod path;
pub mod persist;
pub mod store;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::io::{Clock, Env, FileSystem};
use crate::model::{Labels, SeriesRef, STALE_NAN_BITS};
use crate::scrape::parse::{Entry, TextParser};
use crate::storage::Appendable;
use store::{parse_body, BodyError, PushMode, Store, StoreError};

/// Where the store's exposition is served, for an external Prometheus to scrape.
pub const EXPOSITION_PATH: &str = "/pushgateway/metrics";

/// The store's file under the data directory.
const STORE_DIRECTORY: &str = "pushgateway";
const STORE_FILE: &str = "groups";

/// Content type of the exposition.
const TEXT_FORMAT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
const PLAIN_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// An HTTP answer of the push API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushResponse {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: String,
}

impl PushResponse {
    fn text(status: u16, body: String) -> Self {
        PushResponse { status, content_type: PLAIN_CONTENT_TYPE, body }
    }
}

/// The push gateway: its store, its file, its clock.
pub struct PushGateway {
    store: Mutex<Store>,
    fs: Arc<dyn FileSystem>,
    directory: PathBuf,
    clock: Arc<dyn Clock>,
}

impl PushGateway {
    /// The gateway persisted under `data_directory`, its store read back from there. A file
    /// that does not decode (or fails the consistency check) is logged and the store starts
    /// empty, as the Pushgateway does; the next change overwrites it.
    pub fn open(fs: Arc<dyn FileSystem>, clock: Arc<dyn Clock>, data_directory: &Path) -> Self {
        let directory = data_directory.join(STORE_DIRECTORY);
        let path = directory.join(STORE_FILE);
        let store = match fs.read(&path) {
            Ok(bytes) => match persist::decode(&bytes) {
                Ok(groups) => {
                    let store = Store::from_groups(groups);
                    match store::check(store.groups()) {
                        Ok(()) => {
                            tracing::info!(groups = store.groups().count(), "push gateway store restored");
                            store
                        }
                        Err(error) => {
                            tracing::error!(%error, path = %path.display(), "push gateway store inconsistent, starting empty");
                            Store::default()
                        }
                    }
                }
                Err(error) => {
                    tracing::error!(%error, path = %path.display(), "could not load persisted push groups");
                    Store::default()
                }
            },
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Store::default(),
            Err(error) => {
                tracing::error!(%error, path = %path.display(), "could not read persisted push groups");
                Store::default()
            }
        };
        PushGateway { store: Mutex::new(store), fs, directory, clock }
    }

    /// [`PushGateway::open`] with the environment's filesystem and clock.
    pub fn from_env(env: &Env, data_directory: &Path) -> Self {
        PushGateway::open(env.fs.clone(), env.clock.clone(), data_directory)
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether this gateway answers `path` ([`PushGateway::handle`] returns `Some`).
    pub fn owns(path: &str) -> bool {
        path == EXPOSITION_PATH
            || path == path::PUSH_PATH_PREFIX
            || path.starts_with("/metrics/job/")
            || path.starts_with("/metrics/job@base64/")
    }

    /// Answers one request (`body` already read within the API's size bound).
    pub fn handle(&self, method: &str, request_path: &str, body: &[u8]) -> PushResponse {
        if request_path == EXPOSITION_PATH {
            return match method {
                "GET" | "HEAD" => {
                    PushResponse { status: 200, content_type: TEXT_FORMAT_CONTENT_TYPE, body: self.exposition() }
                }
                _ => PushResponse::text(405, "Method Not Allowed\n".to_string()),
            };
        }
        let mode = match method {
            "PUT" => Some(PushMode::Replace),
            "POST" => Some(PushMode::Merge),
            "DELETE" => None,
            _ => return PushResponse::text(405, "Method Not Allowed\n".to_string()),
        };
        let grouping = match path::parse_grouping(request_path) {
            Ok(grouping) => grouping,
            Err(error) => return PushResponse::text(400, format!("{error}\n")),
        };
        let Some(mode) = mode else {
            let mut store = self.lock();
            let undo = store.delete(&grouping);
            if let Err(error) = self.persist(&store) {
                store.undo(undo);
                return PushResponse::text(500, format!("persist push groups: {error}\n"));
            }
            return PushResponse::text(202, String::new());
        };
        let parsed = match parse_body(body) {
            Ok(parsed) => parsed,
            Err(error @ BodyError::TooManySamples { .. }) => return PushResponse::text(413, format!("{error}\n")),
            Err(error) => return PushResponse::text(400, format!("{error}\n")),
        };
        let now_ms = self.clock.now_ms();
        let mut store = self.lock();
        let (result, undo) = store.push(&grouping, parsed, mode, now_ms);
        if let Some(undo) = undo {
            if let Err(error) = self.persist(&store) {
                store.undo(undo);
                return PushResponse::text(500, format!("persist push groups: {error}\n"));
            }
        }
        match result {
            // The Pushgateway answers a checked push with 200 (202 only without the check).
            Ok(()) => PushResponse::text(200, String::new()),
            Err(error @ StoreError::Inconsistent(_)) => {
                tracing::debug!(%error, "push refused");
                PushResponse::text(400, format!("{error}\n"))
            }
            Err(error @ StoreError::Full { .. }) => PushResponse::text(400, format!("{error}\n")),
        }
    }

    /// The store's text exposition.
    pub fn exposition(&self) -> String {
        let mut out = String::new();
        self.lock().render(&mut out);
        out
    }

    /// Writes the whole store: temporary file, sync, rename, directory sync.
    fn persist(&self, store: &Store) -> std::io::Result<()> {
        let bytes = persist::encode(store.groups());
        self.fs.create_dir_all(&self.directory)?;
        let temporary = self.directory.join(format!("{STORE_FILE}.tmp"));
        match self.fs.remove_file(&temporary) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        let mut file = self.fs.open_append(&temporary)?;
        file.write_all(&bytes)?;
        file.sync()?;
        drop(file);
        self.fs.rename(&temporary, &self.directory.join(STORE_FILE))?;
        self.fs.sync_dir(&self.directory)
    }

    /// Appends the store's series every `interval_ms`, forever (spawned by the server).
    pub async fn run_scrape(self: Arc<Self>, appendable: Arc<dyn Appendable>, interval_ms: i64) {
        let interval = Duration::from_millis(u64::try_from(interval_ms).unwrap_or(1).max(1));
        let mut previous = BTreeMap::new();
        loop {
            self.scrape_once(appendable.as_ref(), &mut previous).await;
            tokio::time::sleep(interval).await;
        }
    }

    /// One round: every series of the exposition at the clock's time, a staleness marker for
    /// each series of `previous` (the last committed round) that is gone, in one commit.
    pub async fn scrape_once(&self, appendable: &dyn Appendable, previous: &mut BTreeMap<Labels, SeriesRef>) {
        let exposition = self.exposition();
        let timestamp_ms = self.clock.now_ms();
        let mut appender = appendable.appender();
        let mut current: BTreeMap<Labels, SeriesRef> = BTreeMap::new();
        let mut parser = TextParser::new(exposition.as_bytes());
        let mut error_count = 0usize;
        while let Some(entry) = parser.next() {
            let Ok(Entry::Sample { value, .. }) = entry else { continue };
            let Ok(labels) = parser.labels() else { continue };
            let hint = previous.get(&labels).copied();
            match appender.append(hint, &labels, timestamp_ms, value) {
                Ok(series_ref) => {
                    current.insert(labels, series_ref);
                }
                Err(error) => {
                    error_count += 1;
                    tracing::debug!(%error, "push gateway self-scrape append");
                }
            }
        }
        for (labels, series_ref) in previous.iter() {
            if !current.contains_key(labels) {
                let _ = appender.append_by_ref(*series_ref, timestamp_ms, f64::from_bits(STALE_NAN_BITS));
            }
        }
        if error_count > 0 {
            tracing::warn!(error_count, "push gateway self-scrape: samples refused by storage");
        }
        match appender.commit().await {
            Ok(_) => *previous = current,
            Err(error) => {
                tracing::warn!(%error, "push gateway self-scrape commit");
                // Keep the old series too, so their staleness markers are still written.
                previous.extend(current);
            }
        }
    }
}
