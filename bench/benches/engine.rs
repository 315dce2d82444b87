//! Hot-path benchmarks: exposition parsing, XOR chunk encode/decode, storage commit (WAL write +
//! fsync on the real disk) and instant-selector queries. Quote ratios from one run side by side;
//! the machine is shared and noisy.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use engine::io::{RealFileSystem, TokioSpawner};
use engine::model::Labels;
use engine::promql::{Engine, EngineOptions};
use engine::scrape::parse;
use engine::storage::Appendable;
use engine::tsdb::chunk::XorChunk;
use engine::tsdb::{Db, DbOptions};

/// A node-exporter-like body: `series_count` labelled counters.
fn exposition(series_count: usize) -> String {
    let mut body = String::from(
        "# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.\n# TYPE node_cpu_seconds_total counter\n",
    );
    for index in 0..series_count {
        body.push_str(&format!(
            "node_cpu_seconds_total{{cpu=\"{}\",mode=\"mode{}\"}} {}.{}\n",
            index / 8,
            index % 8,
            1_000_000 + index * 37,
            index % 100
        ));
    }
    body
}

fn bench_parse(c: &mut Criterion) {
    let body = exposition(1000);
    let mut group = c.benchmark_group("scrape_parse");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("1000_samples", |b| b.iter(|| parse::parse(body.as_bytes()).unwrap()));
    // One hostile line: the cost must stay linear in the label count.
    let labels: String = (0..5000).map(|index| format!("l{index}=\"v\",")).collect();
    let wide_line = format!("m{{{labels}}} 1\n");
    group.throughput(Throughput::Elements(5000));
    group.bench_function("one_line_5000_labels", |b| b.iter(|| parse::parse(wide_line.as_bytes()).unwrap()));
    group.finish();
}

fn bench_chunk(c: &mut Criterion) {
    let samples: Vec<(i64, f64)> =
        (0..120).map(|index| (1_700_000_000_000 + index * 15_000 + index % 3, 1000.0 + (index * 7) as f64)).collect();
    let mut group = c.benchmark_group("xor_chunk");
    group.throughput(Throughput::Elements(120));
    group.bench_function("encode_120", |b| {
        b.iter(|| {
            let mut chunk = XorChunk::new();
            for (timestamp_ms, value) in &samples {
                chunk.append(*timestamp_ms, *value);
            }
            chunk
        })
    });
    let mut chunk = XorChunk::new();
    for (timestamp_ms, value) in &samples {
        chunk.append(*timestamp_ms, *value);
    }
    group.bench_function("decode_120", |b| b.iter(|| chunk.samples().unwrap()));
    // The query path: lazy iteration, no Vec per chunk.
    group.bench_function("iterate_120", |b| {
        b.iter(|| chunk.iter().map(|item| item.map(|(_, value)| value)).sum::<Result<f64, _>>().unwrap())
    });
    group.finish();
    println!("xor chunk: 120 samples in {} bytes ({:.2} bytes/sample)", chunk.size(), chunk.size() as f64 / 120.0);
}

fn open_db(runtime: &tokio::runtime::Runtime, name: &str) -> Db {
    let dir = std::env::temp_dir().join(format!("engine-bench-{name}-{}", std::process::id()));
    let _entered = runtime.enter();
    Db::open(Arc::new(RealFileSystem), &TokioSpawner, &dir, DbOptions::default()).unwrap()
}

fn bench_commit_and_query(c: &mut Criterion) {
    let series: Vec<Labels> = (0..1000)
        .map(|index| {
            Labels::from_pairs([("__name__", "bench_metric"), ("instance", "i"), ("series", &index.to_string())])
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let db = open_db(&runtime, "commit");
    let mut timestamp_ms = 0_i64;
    let mut group = c.benchmark_group("tsdb");
    group.throughput(Throughput::Elements(series.len() as u64));
    group.bench_function("commit_1000_samples_fsync", |b| {
        b.iter_batched(
            || {
                timestamp_ms += 1000;
                timestamp_ms
            },
            |timestamp_ms| {
                let mut appender = db.appender();
                for labels in &series {
                    appender.append(None, labels, timestamp_ms, 1.0).unwrap();
                }
                runtime.block_on(appender.commit()).unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    let engine = Engine::new(Arc::new(db.clone()), EngineOptions::default());
    group.bench_function("instant_query_1000_series", |b| {
        b.iter(|| engine.instant_query("bench_metric{instance=\"i\"}", timestamp_ms).unwrap())
    });
    group.finish();
}

/// The head alone: appends of known series by reference (no WAL), the storage's share of a
/// scrape once the scrape cache knows every series.
fn bench_head_append(c: &mut Criterion) {
    use engine::tsdb::head::{Head, HeadOptions};
    let head =
        Head::new(HeadOptions { chunk_sample_count_max: 120, chunk_range_ms: 7_200_000, series_count_max: 1_000_000 });
    let refs: Vec<u32> = (0..10_000)
        .map(|index| {
            let labels = Labels::from_pairs([("__name__", "bench_metric"), ("series", &index.to_string())]);
            head.get_or_create(&labels).unwrap().0
        })
        .collect();
    let mut timestamp_ms = 0_i64;
    let mut group = c.benchmark_group("head");
    group.throughput(Throughput::Elements(refs.len() as u64));
    group.bench_function("append_by_ref_10000_series", |b| {
        b.iter(|| {
            timestamp_ms += 1000;
            for (index, &series_ref) in refs.iter().enumerate() {
                head.append(series_ref, timestamp_ms, (timestamp_ms / 1000 + index as i64) as f64);
            }
        })
    });
    group.finish();
}

/// The whole commit path on an in-memory disk: appender by reference, WAL encode, writer task,
/// head apply; and replay of the WAL it leaves.
fn bench_commit_and_replay(c: &mut Criterion) {
    use engine::io::MemFileSystem;
    use engine::model::SeriesRef;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let fs = MemFileSystem::default();
    let open = |fs: &MemFileSystem| {
        let _entered = runtime.enter();
        Db::open(Arc::new(fs.clone()), &TokioSpawner, std::path::Path::new("/db"), DbOptions::default()).unwrap()
    };
    let db = open(&fs);
    let series: Vec<Labels> = (0..10_000)
        .map(|index| Labels::from_pairs([("__name__", "bench_metric"), ("series", &index.to_string())]))
        .collect();
    let mut appender = db.appender();
    let refs: Vec<SeriesRef> = series.iter().map(|labels| appender.append(None, labels, 0, 0.0).unwrap()).collect();
    runtime.block_on(appender.commit()).unwrap();
    let mut timestamp_ms = 0_i64;
    let mut group = c.benchmark_group("commit");
    group.throughput(Throughput::Elements(refs.len() as u64));
    group.bench_function("append_by_ref_and_commit_10000_mem_fs", |b| {
        b.iter(|| {
            timestamp_ms += 1000;
            let mut appender = db.appender();
            for (index, series_ref) in refs.iter().enumerate() {
                appender.append_by_ref(*series_ref, timestamp_ms, (index as i64 + timestamp_ms) as f64).unwrap();
            }
            runtime.block_on(appender.commit()).unwrap()
        })
    });
    group.finish();
    drop(db);
    // The WAL now holds 10,000 series and every sample appended above.
    let replayed = open(&fs).stats().wal_samples_replayed;
    let mut group = c.benchmark_group("replay");
    group.throughput(Throughput::Elements(replayed));
    group.sample_size(10);
    group.bench_function("open_and_replay_wal", |b| b.iter(|| open(&fs).stats().series_count));
    group.finish();
    println!("replay: {replayed} samples per open");
}

/// Series held in memory as a store (what a query node holds after reading its stores).
struct InMemory(Arc<engine::remote::read::SeriesStore>);

impl engine::storage::Queryable for InMemory {
    fn querier(
        &self,
        min_time_ms: i64,
        max_time_ms: i64,
    ) -> Result<Box<dyn engine::storage::Querier>, engine::storage::StorageError> {
        Ok(engine::remote::read::series_store_querier(self.0.clone(), min_time_ms, max_time_ms))
    }
}

/// The dedup target: a range query over two replicas of 10,000 series, deduplicated
/// (`fill`, and Thanos' `penalty` for comparison), against the same query over one replica.
/// Each series: 1 h at a 15 s interval; replica b scrapes 7.5 s after a and misses 10 minutes.
fn bench_dedup(c: &mut Criterion) {
    const SERIES_COUNT: usize = 10_000;
    const INTERVAL_MS: i64 = 15_000;
    const HOUR_MS: i64 = 3_600_000;
    let series = |replica: &str, offset_ms: i64, gap: (i64, i64), index: usize| engine::storage::Series {
        labels: Labels::from_pairs([
            ("__name__", "bench_counter".to_string()),
            ("instance", format!("host-{index}")),
            ("replica", replica.to_string()),
        ]),
        samples: (0..HOUR_MS / INTERVAL_MS)
            .map(|step| offset_ms + step * INTERVAL_MS)
            .filter(|&time| time < gap.0 || time >= gap.1)
            .map(|timestamp_ms| engine::model::Sample { timestamp_ms, value: timestamp_ms as f64 / 1000.0 })
            .collect(),
    };
    let mut one = engine::remote::read::SeriesStore::default();
    let mut two = engine::remote::read::SeriesStore::default();
    for index in 0..SERIES_COUNT {
        one.add(series("a", 0, (0, 0), index));
        two.add(series("a", 0, (0, 0), index));
        two.add(series("b", 7_500, (1_200_000, 1_800_000), index));
    }
    let options = EngineOptions { query_samples_max: 100_000_000, ..EngineOptions::default() };
    let single = Engine::new(Arc::new(InMemory(Arc::new(one))), options.clone());
    let two = Arc::new(InMemory(Arc::new(two)));
    let dedup = |algorithm| {
        Engine::new(
            Arc::new(engine::storage::dedup::DedupQueryable::new(two.clone(), vec!["replica".to_string()], algorithm)),
            options.clone(),
        )
    };
    let (fill, penalty) =
        (dedup(engine::storage::dedup::DedupAlgorithm::Fill), dedup(engine::storage::dedup::DedupAlgorithm::Penalty));
    let query = "sum(rate(bench_counter[1m]))";
    let run = |engine: &Engine| engine.range_query(query, 600_000, HOUR_MS, 60_000).unwrap();
    let mut group = c.benchmark_group("dedup_range_query_10000_series");
    group.sample_size(10);
    group.bench_function("one_replica", |b| b.iter(|| run(&single)));
    group.bench_function("two_replicas_fill", |b| b.iter(|| run(&fill)));
    group.bench_function("two_replicas_penalty", |b| b.iter(|| run(&penalty)));
    group.finish();
}

criterion_group!(
    benches,
    bench_parse,
    bench_chunk,
    bench_commit_and_query,
    bench_head_append,
    bench_commit_and_replay,
    bench_dedup
);
criterion_main!(benches);
