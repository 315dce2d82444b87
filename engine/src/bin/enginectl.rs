//! Command-line tool for the engine, in the role promtool plays for Prometheus.
//!
//! `enginectl check config FILE...` validates configuration files and exits non-zero on the
//! first invalid one.

use std::process::ExitCode;

use engine::config;
use engine::io::{FileSystem, RealFileSystem};

const USAGE: &str = "usage: enginectl check config FILE...";

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    match arguments.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["check", "config", files @ ..] if !files.is_empty() => check_config(files),
        ["-h" | "--help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn check_config(files: &[&str]) -> ExitCode {
    let mut failed = false;
    for file in files {
        println!("Checking {file}");
        let text = RealFileSystem
            .read(std::path::Path::new(file))
            .map_err(|error| format!("read {file}: {error}"))
            .and_then(|bytes| String::from_utf8(bytes).map_err(|error| format!("{file} is not UTF-8: {error}")));
        match text.and_then(|text| config::parse(&text).map_err(|error| error.to_string())) {
            Ok(config) => println!("  SUCCESS: {}", config.summary()),
            Err(error) => {
                println!("  FAILED: {error}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
