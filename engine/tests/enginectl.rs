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
fn the_embedded_alert_managers_config_file_is_checked() {
    let dir = std::env::temp_dir().join(format!("enginectl-{}-am", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("good.yml"), "route: {receiver: team}\nreceivers: [{name: team}]\n").unwrap();
    std::fs::write(dir.join("bad.yml"), "route: {receiver: nobody}\nreceivers: [{name: team}]\n").unwrap();
    let (ok, stdout) =
        check("am-good", &format!("alert_manager:\n  config_file: {}\n", dir.join("good.yml").display()));
    assert!(ok && stdout.contains("SUCCESS: alert manager config"), "{stdout}");
    let (ok, stdout) = check("am-bad", &format!("alert_manager:\n  config_file: {}\n", dir.join("bad.yml").display()));
    assert!(!ok && stdout.contains("FAILED: alert manager config") && stdout.contains("nobody"), "{stdout}");
}

#[test]
fn usage_errors_exit_2() {
    let output = Command::new(env!("CARGO_BIN_EXE_enginectl")).arg("frobnicate").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}

/// `enginectl tsdb dump` prints exactly what `promtool tsdb dump` prints for blocks promtool
/// wrote; `list` and `analyze` describe them. Runs when promtool is installed (required under
/// `ENGINE_PEER_TESTS=1`).
#[test]
fn tsdb_dump_matches_promtool_on_promtool_blocks() {
    if Command::new("promtool").arg("--version").output().is_err() {
        assert_ne!(std::env::var("ENGINE_PEER_TESTS").as_deref(), Ok("1"), "promtool is required");
        eprintln!("skipped: promtool not installed");
        return;
    }
    let dir = std::env::temp_dir().join(format!("enginectl-tsdb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut text = String::from("# TYPE requests counter\n# TYPE temperature gauge\n");
    for index in 0..400_i64 {
        let time_s = 1_700_000_000 + index * 37; // Spans more than one 2 h block.
        text.push_str(&format!("requests_total{{job=\"api\",code=\"200\"}} {} {time_s}\n", index * 1_000_003));
        text.push_str(&format!("temperature{{room=\"a\"}} {} {time_s}\n", -0.00001 * index as f64 + 21.5));
    }
    text.push_str("# EOF\n");
    std::fs::write(dir.join("input.om"), text).unwrap();
    let data = dir.join("data");
    let status = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(dir.join("input.om"))
        .arg(&data)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    std::fs::create_dir_all(data.join("wal")).unwrap(); // promtool's dump opens the directory as a database.
    let run = |program: &str, command: &str| {
        let output = Command::new(program).args(["tsdb", command]).arg(&data).output().unwrap();
        assert!(output.status.success(), "{program} tsdb {command}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let ours = run(env!("CARGO_BIN_EXE_enginectl"), "dump");
    let theirs = run("promtool", "dump");
    let sorted = |text: &str| {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    assert_eq!(sorted(&ours).len(), 800);
    assert_eq!(sorted(&ours), sorted(&theirs), "the same samples in the same notation");
    let list = run(env!("CARGO_BIN_EXE_enginectl"), "list");
    assert!(list.lines().count() >= 3, "a header and at least two blocks:\n{list}");
    let analyze = run(env!("CARGO_BIN_EXE_enginectl"), "analyze");
    assert!(analyze.contains("Total Series: 2") || analyze.contains("Total Series: 1"), "{analyze}");
    assert!(analyze.contains("Highest cardinality labels:"), "{analyze}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `enginectl check rules` and `check config` with rule files: promtool's wording and exit
/// codes; compared with promtool itself when it is installed.
#[test]
fn check_rules_as_promtool() {
    let dir = std::env::temp_dir().join(format!("enginectl-rules-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    let good = dir.join("rules/good.yml");
    std::fs::write(
        &good,
        "groups:\n  - name: g\n    rules:\n      - record: job:up:sum\n        expr: sum by (job) (up)\n      - alert: Down\n        expr: up == 0\n        for: 5m\n",
    )
    .unwrap();
    let bad = dir.join("bad.yml");
    std::fs::write(&bad, "groups:\n  - name: g\n    rules:\n      - record: 'a b'\n        expr: up\n").unwrap();
    let config = dir.join("config.yml");
    std::fs::write(&config, "rule_files:\n  - 'rules/*.yml'\n").unwrap();
    let run = |program: &str, args: &[&std::path::Path], command: &str| {
        let output = Command::new(program).args(["check", command]).args(args).output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let engine = env!("CARGO_BIN_EXE_enginectl");
    let (code, stdout, _) = run(engine, &[&good], "rules");
    assert_eq!(
        (code, stdout.as_str()),
        (Some(0), format!("Checking {}\n  SUCCESS: 2 rules found\n\n", good.display()).as_str())
    );
    let (code, stdout, stderr) = run(engine, &[&bad], "rules");
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("  FAILED:\n") && stderr.contains("invalid recording rule name: a b"), "{stderr}");
    let (code, stdout, _) = run(engine, &[&config], "config");
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("  SUCCESS: 1 rule files found\n") && stdout.contains("  SUCCESS: 2 rules found"),
        "{stdout}"
    );
    if Command::new("promtool").arg("--version").output().is_err() {
        eprintln!("promtool comparison skipped: promtool not installed");
        return;
    }
    let (code, promtool_stdout, _) = run("promtool", &[&good], "rules");
    assert_eq!(code, Some(0));
    let (_, engine_stdout, _) = run(engine, &[&good], "rules");
    assert_eq!(engine_stdout, promtool_stdout);
    let (code, _, promtool_stderr) = run("promtool", &[&bad], "rules");
    assert_eq!(code, Some(1));
    assert!(promtool_stderr.contains("invalid recording rule name: a b"), "{promtool_stderr}");
}
