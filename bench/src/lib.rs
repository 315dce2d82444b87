//! Benchmark support. The criterion hot-path benchmarks live in `benches/`; this library holds
//! the pure parts of the `compare` binary (ingest: workload generator, metric and `/proc`
//! readers, report; query: dataset, query set, answers, report), kept here so `cargo test`
//! covers them.

pub mod ingest;
pub mod query;
