//! The query comparison behind `compare query`: the dataset every system holds ([`dataset`]), the
//! timed queries and their API requests ([`queries`]), reading and comparing answers
//! ([`result`]), and the figures and report ([`report`]). Everything here is pure (no I/O); the
//! `compare` binary writes the data, manages the processes and sends the requests.

pub mod dataset;
pub mod queries;
pub mod report;
pub mod result;
