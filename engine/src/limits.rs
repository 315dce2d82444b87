//! Every bound the engine enforces, in one place, each with its reason. Runtime-tunable limits
//! are fields of [`RuntimeLimits`]; a breach is an error naming the limit and the actual value.

/// Prometheus' `--query.max-samples` default: bounds a query's memory.
pub const QUERY_SAMPLES_MAX_DEFAULT: usize = 50_000_000;

/// Prometheus rejects range queries producing more than 11,000 points per series.
pub const RANGE_POINTS_PER_SERIES_MAX: i64 = 11_000;

/// Most steps one line of the expanding series notation (`1+1x1000000`) may expand to: test
/// files are input, and `0x99999999999` must not allocate terabytes.
pub const SERIES_NOTATION_EXPANSION_COUNT_MAX: usize = 10_000_000;

/// Most evaluation steps one rule unit test group may take (`enginectl test rules`: from 0 to
/// the largest `eval_time` by `evaluation_interval`): a week at 1s is 604,800 steps; `eval_time:
/// 100y` with a 1s interval must be refused, not run for days.
pub const UNIT_TEST_EVALUATION_STEP_COUNT_MAX: i64 = 1_000_000;

/// Largest HTTP request body the API reads (form-encoded queries); Prometheus has no explicit
/// bound, but an unbounded read lets one client exhaust memory.
pub const HTTP_REQUEST_BODY_SIZE_MAX: usize = 8 * 1024 * 1024;

/// Prometheus' `--web.max-connections` default.
pub const HTTP_CONNECTIONS_MAX: usize = 512;

/// Largest scrape body read before the scrape fails; bounds memory per target.
pub const SCRAPE_BODY_SIZE_MAX_DEFAULT: usize = 64 * 1024 * 1024;

/// Attempts to bind the listen address before the server gives up (port still in use right
/// after a restart).
pub const LISTEN_BIND_ATTEMPT_COUNT_MAX: u32 = 50;

/// Pause between bind attempts.
pub const LISTEN_BIND_RETRY_MS: u64 = 100;

const _: () = assert!(HTTP_CONNECTIONS_MAX > 0 && LISTEN_BIND_ATTEMPT_COUNT_MAX > 0);
const _: () = assert!(RANGE_POINTS_PER_SERIES_MAX > 0);

/// Limits a deployment may tune; the defaults above apply when a flag is not given.
#[derive(Clone, Debug)]
pub struct RuntimeLimits {
    /// Largest scrape body, bytes.
    pub scrape_body_size_max: usize,
    /// Largest HTTP request body, bytes.
    pub http_request_body_size_max: usize,
    /// Concurrent HTTP connections.
    pub http_connections_max: usize,
}

impl Default for RuntimeLimits {
    fn default() -> Self {
        RuntimeLimits {
            scrape_body_size_max: SCRAPE_BODY_SIZE_MAX_DEFAULT,
            http_request_body_size_max: HTTP_REQUEST_BODY_SIZE_MAX,
            http_connections_max: HTTP_CONNECTIONS_MAX,
        }
    }
}

/// Prometheus' WAL segment size (tsdb/wlog `DefaultSegmentSize`).
pub const WAL_SEGMENT_SIZE_MAX_DEFAULT: u64 = 128 * 1024 * 1024;

/// Largest WAL record payload; a larger length on disk is corruption, not an allocation.
pub const WAL_RECORD_SIZE_MAX: usize = 32 * 1024 * 1024;

/// Samples per WAL samples record (24 bytes each), keeping records well under the size limit.
pub const WAL_RECORD_SAMPLE_COUNT_MAX: usize = 100_000;

/// Prometheus cuts head chunks at 120 samples (tsdb `DefaultSamplesPerChunk`).
pub const CHUNK_SAMPLE_COUNT_MAX_DEFAULT: usize = 120;

const _: () = assert!((WAL_RECORD_SIZE_MAX as u64) < WAL_SEGMENT_SIZE_MAX_DEFAULT);
const _: () = assert!(WAL_RECORD_SAMPLE_COUNT_MAX * 24 < WAL_RECORD_SIZE_MAX);

/// Shards of the head's series map: appends to different shards never contend (Prometheus
/// stripes its series map 16,384 ways; a few dozen suffice for a handful of cores).
pub const HEAD_SHARD_COUNT: usize = 64;

/// Prometheus' default block range: a head chunk never spans a multiple of it.
pub const BLOCK_RANGE_MS_DEFAULT: i64 = 2 * 60 * 60 * 1000;

/// The design documents' series cap (`storage.tsdb.max_series`).
pub const SERIES_COUNT_MAX_DEFAULT: u64 = 2_000_000;

/// Commits waiting for the WAL writer; a full queue makes appenders wait (backpressure).
pub const COMMIT_QUEUE_CAPACITY: usize = 1024;

/// Most commits the WAL writer joins into one write and one fsync.
pub const GROUP_COMMIT_COUNT_MAX: usize = 256;

/// Most bytes the WAL writer joins into one write.
pub const GROUP_COMMIT_SIZE_MAX: usize = 16 * 1024 * 1024;

const _: () = assert!(HEAD_SHARD_COUNT.is_power_of_two() && GROUP_COMMIT_COUNT_MAX <= COMMIT_QUEUE_CAPACITY);

// ---- Remote-write receiver (`api::remote_write`).

/// Largest decompressed remote-write request, bytes, checked against snappy's length header
/// before decompressing. Prometheus' sender stays far below (500 samples per request by
/// default). A request's new series are one WAL series record no larger than the protobuf that
/// carried them, so this bound also keeps that record under [`WAL_RECORD_SIZE_MAX`].
pub const REMOTE_WRITE_DECOMPRESSED_SIZE_MAX: usize = 32 * 1024 * 1024;

/// Most samples one remote-write request may carry: one request is one commit, and a commit up
/// to this many samples is a single WAL samples record, so it replays whole or not at all.
pub const REMOTE_WRITE_SAMPLE_COUNT_MAX: usize = WAL_RECORD_SAMPLE_COUNT_MAX;

/// Most time series (with or without samples) one remote-write request may carry; with the
/// label bound below it caps the memory decoding may take (protobuf expands up to ~30-fold
/// into structs), since both are counted before anything is decoded.
pub const REMOTE_WRITE_SERIES_COUNT_MAX: usize = 100_000;

/// Most labels, over all series, one remote-write request may carry.
pub const REMOTE_WRITE_LABEL_COUNT_MAX: usize = 2_000_000;

const _: () = assert!(REMOTE_WRITE_DECOMPRESSED_SIZE_MAX <= WAL_RECORD_SIZE_MAX);
const _: () = assert!(REMOTE_WRITE_SAMPLE_COUNT_MAX <= WAL_RECORD_SAMPLE_COUNT_MAX);
const _: () = assert!(REMOTE_WRITE_SERIES_COUNT_MAX <= REMOTE_WRITE_LABEL_COUNT_MAX);

// ---- Remote-write sender (`remote`).

/// Most shards (concurrent requests) one remote write queue may run; Prometheus' default
/// `max_shards` is 200. Each shard buffers up to `capacity` samples, so with the bound below a
/// queue's buffer is at most 200 x 100,000 samples.
pub const REMOTE_WRITE_SHARD_COUNT_MAX: usize = 1_000;

/// Most samples one remote write shard may buffer (`capacity`); Prometheus' default is 2,500.
pub const REMOTE_WRITE_CAPACITY_MAX: usize = 100_000;

/// Largest WAL read the remote write sender makes at once, bytes; a record larger than this is
/// read by doubling the read up to the segment's size.
pub const REMOTE_WRITE_WAL_READ_SIZE_BYTES: u64 = 1024 * 1024;

/// Longest the remote write sender sleeps between looks at the WAL when no commit wakes it, ms
/// (it also notices segment rolls, checkpoints and truncation this way).
pub const REMOTE_WRITE_WAL_POLL_INTERVAL_MS: u64 = 1_000;

// ---- Embedded alert manager (`alert`).

/// Most silences the embedded alert manager stores, expired ones included (Alertmanager's
/// `--silences.max-silences`): bounds memory, the snapshot, and the scan each mute check makes.
pub const SILENCE_COUNT_MAX: usize = 10_000;

/// How long a silence is kept after it ends before garbage collection drops it
/// (Alertmanager's `--data.retention` default, 120h).
pub const SILENCE_RETENTION_MS_DEFAULT: i64 = 120 * 3_600_000;

/// Attempts at drawing a silence id that is not taken before giving up.
pub const SILENCE_ID_ATTEMPT_COUNT_MAX: u32 = 16;

const _: () = assert!(SILENCE_COUNT_MAX > 0 && SILENCE_RETENTION_MS_DEFAULT >= 0 && SILENCE_ID_ATTEMPT_COUNT_MAX > 0);

// ---- Push gateway (`push`).

/// Most groups (job plus path labels) the push gateway holds: each group is a batch job's last
/// run, so thousands mean a client pushes per instance or per run, which the Pushgateway's own
/// docs call a misuse; and every group costs two series of its own (`push_time_seconds`,
/// `push_failure_time_seconds`). A push that would create one more is refused with 400.
pub const PUSH_GROUP_COUNT_MAX: usize = 1_000;

/// Most samples (exposition lines with a value) one push may carry: a batch job reports a
/// summary of its run, not a scrape's worth of series. Beyond it the push is refused with 413.
pub const PUSH_SAMPLE_COUNT_PER_PUSH_MAX: usize = 10_000;

/// Most samples the push gateway holds over all groups, its own timestamp gauges included. The
/// engine "scrapes" the store in one commit, which is one WAL record, and that commit may also
/// carry a staleness marker for every series of the previous round, so twice this must fit in
/// a record. A push that would exceed it is refused with 400.
pub const PUSH_SAMPLE_COUNT_TOTAL_MAX: usize = 50_000;

const _: () = assert!(2 * PUSH_SAMPLE_COUNT_TOTAL_MAX <= WAL_RECORD_SAMPLE_COUNT_MAX);
const _: () = assert!(PUSH_SAMPLE_COUNT_PER_PUSH_MAX + 2 <= PUSH_SAMPLE_COUNT_TOTAL_MAX);
const _: () = assert!(2 * PUSH_GROUP_COUNT_MAX <= PUSH_SAMPLE_COUNT_TOTAL_MAX);
