//! Benchmark support. The criterion hot-path benchmarks live in `benches/`; this library holds
//! the pure parts of the `compare` binary (workload generator, metric and `/proc` readers,
//! report), kept here so `cargo test` covers them.

pub mod ingest;
