//! Deterministic simulation of the engine under turmoil: the engine's own code runs on a virtual
//! network, clock and disk, driven by a scenario file, and a report with a reproducible hash
//! comes out. See `scenarios/` and the README.

pub mod alerting;
pub mod chart;
pub mod client;
pub mod env;
pub mod generator;
pub mod harness;
pub mod herd;
pub mod http;
pub mod ledger;
pub mod output;
pub mod report;
pub mod scenario;
pub mod wal_damage;
