//! `enginectl check config` as a user runs it: valid files pass with a summary, invalid ones
//! fail with the key and line, and the exit status says which.
#![allow(clippy::disallowed_methods)] // Tests write fixture files and run the binary.

use std::process::Command;

fn check(name: &str, yaml: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("enginectl-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.yml");
    std::fs::write(&path, yaml).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_enginectl")).args(["check", "config"]).arg(&path).output().unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn valid_config_passes_with_summary() {
    let (ok, stdout) = check(
        "good",
        "scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:9100']\n",
    );
    assert!(ok, "{stdout}");
    assert!(stdout.contains("SUCCESS: 1 scrape configs, 1 targets (node every 1m)"), "{stdout}");
}

#[test]
fn invalid_config_fails_naming_key_and_line() {
    let (ok, stdout) = check("bad", "global:\n  scrape_interval: 15s\n  scrape_intreval: 5s\n");
    assert!(!ok, "{stdout}");
    assert!(stdout.contains("FAILED: line 3") && stdout.contains("scrape_intreval"), "{stdout}");
}

#[test]
fn usage_errors_exit_2() {
    let output = Command::new(env!("CARGO_BIN_EXE_enginectl")).arg("frobnicate").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}
