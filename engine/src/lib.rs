//! A Prometheus-class monitoring engine: scrapes targets, stores samples in its own TSDB (head +
//! write-ahead log), and answers PromQL over Prometheus' HTTP API.
//!
//! Data flow: `scrape` -> `tsdb::Appender` -> `tsdb` (WAL, head) <- `promql` via `tsdb::Querier`
//! <- `api`. Everything that touches the operating system goes through [`io::Env`], so the same
//! code runs in the real server and in the deterministic simulator (`sim/`).
//! See `engine/ARCHITECTURE.md` for the code map and the determinism rules.

pub mod alert;
pub mod api;
pub mod calendar;
pub mod config;
pub mod exemplars;
pub mod exposition;
pub mod frontend;
pub mod io;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod notifier;
pub mod promql;
pub mod push;
pub mod relabel;
pub mod remote;
pub mod rules;
pub mod scrape;
pub mod server;
pub mod storage;
pub mod template;
pub mod tsdb;
