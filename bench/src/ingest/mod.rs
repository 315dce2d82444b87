//! The ingest comparison behind `compare ingest`: the synthetic exporter fleet ([`workload`]),
//! readers for the peers' `/metrics` ([`exposition`]) and for `/proc` ([`procfs`]), and the
//! figures and report ([`report`]). Everything here is pure (no I/O); the `compare` binary does
//! the serving, the process management and the reading of files.

pub mod exposition;
pub mod procfs;
pub mod report;
pub mod rules;
pub mod workload;
