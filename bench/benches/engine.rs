//! Hot-path benchmarks: exposition parsing, XOR chunk encode/decode, storage commit (WAL write +
//! fsync on the real disk) and instant-selector queries. Quote ratios from one run side by side;
//! the machine is shared and noisy.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use engine::io::RealFileSystem;
use engine::model::Labels;
use engine::promql::{Engine, EngineOptions};
use engine::scrape::parse;
use engine::tsdb::chunk::XorChunk;
use engine::tsdb::{Appendable, Db, DbOptions};

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

fn open_db(name: &str) -> Db {
    let dir = std::env::temp_dir().join(format!("engine-bench-{name}-{}", std::process::id()));
    Db::open(Arc::new(RealFileSystem), &dir, DbOptions::default()).unwrap()
}

fn bench_commit_and_query(c: &mut Criterion) {
    let series: Vec<Labels> = (0..1000)
        .map(|index| {
            Labels::from_pairs([("__name__", "bench_metric"), ("instance", "i"), ("series", &index.to_string())])
        })
        .collect();
    let db = open_db("commit");
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
                    appender.append(labels, timestamp_ms, 1.0).unwrap();
                }
                appender.commit().unwrap()
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

criterion_group!(benches, bench_parse, bench_chunk, bench_commit_and_query);
criterion_main!(benches);
