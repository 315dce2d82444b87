//! Exposition formats: the text bodies targets serve and tools backfill from.
//!
//! - [`openmetrics`]: OpenMetrics 1.0 text (`application/openmetrics-text; version=1.0.0`), a
//!   validating pull parser that borrows from the body.
//!
//! The Prometheus text format 0.0.4 parser lives with the scrape loop (`scrape::parse`); both
//! parsers have the same shape (`next() -> Option<Result<Entry<'a>, ParseError>>`, the series
//! text borrowed, labels parsed only on demand), so the scrape cache can key on the series
//! bytes of either.
//!
//! Concurrency: parsers are plain values owned by one task.

pub mod openmetrics;
