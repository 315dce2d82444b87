//! The embedded alert manager's pure logic (Prometheus Alertmanager 0.25 semantics): matchers.
//! No I/O, no tasks and no clock reads: every time is an `i64` Unix-ms argument.

pub mod config;
pub mod inhibit;
pub mod matcher;
pub mod route;
pub mod silence;
