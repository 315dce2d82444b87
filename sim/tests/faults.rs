//! The fault timeline beyond crash and restart: WAL damage while an engine is down (checked
//! against what the damage must cost, for each kind of damage and several seeds), partitions
//! and link faults, and the scenario validation that refuses a timeline that cannot happen.

use sim::scenario::{self, FaultAction, Scenario};
use sim::wal_damage::DamageKind;

fn load(name: &str) -> Scenario {
    let path = format!("{}/../scenarios/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = engine::io::FileSystem::read(&engine::io::RealFileSystem, std::path::Path::new(&path)).unwrap();
    scenario::parse(&String::from_utf8(text).unwrap()).unwrap()
}

/// Runs `scenario` with `seed`; panics with the report and the replay command when it fails.
fn passes(scenario: &Scenario, seed: u64, what: &str) -> String {
    let result = sim::harness::run(scenario, seed).unwrap_or_else(|error| panic!("{what} SEED={seed}: {error:#}"));
    let report = sim::report::build(scenario, &result);
    assert!(report.failures.is_empty(), "{what} SEED={seed} failed:\n{}", report.deterministic);
    report.deterministic
}

#[test]
fn wal_corruption_loses_exactly_the_damaged_records_across_seeds() {
    let scenario = load("wal_corruption.toml");
    for seed in 1..=5 {
        let report = passes(&scenario, seed, "wal_corruption.toml");
        // The damage happened and cost something: the check is not vacuous.
        let line = report.lines().find(|line| line.starts_with("wal damage on engine")).expect(&report);
        assert!(!line.contains(" 0 of "), "no record lost: {line}");
        assert!(report.contains("engine reported 3 corruptions"), "{report}");
        if seed == 1 {
            assert_eq!(passes(&scenario, seed, "wal_corruption.toml again"), report, "same seed, same report");
        }
    }
}

#[test]
fn zeroed_ranges_and_truncation_are_repaired_with_the_same_accounting() {
    for (kind, bytes) in [(DamageKind::Zero, Some(5000)), (DamageKind::Truncate, None)] {
        let mut scenario = load("wal_corruption.toml");
        let fault = scenario.faults.iter_mut().find(|fault| fault.action == FaultAction::CorruptWal).unwrap();
        fault.damage = Some(kind);
        fault.bytes = bytes;
        for seed in 1..=3 {
            let report = passes(&scenario, seed, &format!("{kind:?}"));
            assert!(report.contains("engine reported 1 corruptions"), "{kind:?}: {report}");
        }
    }
}

const PARTITIONED: &str = r#"
name = "partitioned"
description = "the engine loses its targets for 5 s, then a slow link to the client"
seed = 3
duration_s = 30
epoch_ms = 1_700_000_000_000

[engine]
scrape_interval = "1s"
scrape_timeout = "500ms"

[[targets]]
job = "generated-a"
port = 9100
kind = "generated"
series_count = 5

[client]
query_interval_ms = 500
query_timeout_ms = 1000
queries = ['up']

[[faults]]
at_s = 10
action = "partition"
host = "engine"
peer = "generator"

[[faults]]
at_s = 15
action = "heal"
host = "engine"
peer = "generator"

[[faults]]
at_s = 20
action = "link_latency"
host = "engine"
peer = "client"
latency_ms_max = 200

[thresholds]
query_latency_p99_ms_max = 1000
committed_samples_missing_max = 0
committed_samples_min = 100
scrapes_down_max = 6
"#;

#[test]
fn a_partition_fails_scrapes_until_it_heals_and_link_latency_slows_queries() {
    let scenario = scenario::parse(PARTITIONED).unwrap();
    let report = passes(&scenario, 3, "partitioned");
    let line = report.lines().find(|line| line.starts_with("target generated-a:")).expect(&report);
    let (up, total) = line.split_once(": ").unwrap().1.split_once(" scrapes").unwrap().0.split_once('/').unwrap();
    let down = total.parse::<u64>().unwrap() - up.parse::<u64>().unwrap();
    assert!((3..=6).contains(&down), "a 5 s partition fails about 5 scrapes of a 1 s job, not {down}: {report}");
    assert!(report.contains("fault: Partition engine <-> generator at 10000 ms"), "{report}");
    // Queries before the slow link take at most ~20 ms; after it, up to 2 x 200 ms.
    let p99 = report.lines().find(|line| line.starts_with("queries:")).unwrap();
    let max_ms: f64 = p99.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(max_ms > 50.0, "the link latency did not reach the queries: {p99}");
}

#[test]
fn impossible_timelines_are_refused() {
    let base = PARTITIONED.split("[[faults]]").next().unwrap().to_string();
    let thresholds =
        "[thresholds]\nquery_latency_p99_ms_max = 1\ncommitted_samples_missing_max = 0\ncommitted_samples_min = 1\n";
    let cases = [
        ("at_s = 5\naction = \"corrupt_wal\"\nhost = \"engine\"\ndamage = \"zero\"\nbytes = 10\n", "crashed first"),
        ("at_s = 5\naction = \"partition\"\nhost = \"engine\"\n", "needs `peer`"),
        ("at_s = 5\naction = \"crash\"\nhost = \"engine\"\npeer = \"generator\"\n", "only applies to link faults"),
        ("at_s = 5\naction = \"crash\"\nhost = \"engine-b\"\n", "not one of this scenario's hosts"),
        (
            "at_s = 5\naction = \"link_loss\"\nhost = \"engine\"\npeer = \"client\"\nloss_rate = 1.5\n",
            "not within 0..1",
        ),
        ("at_s = 5\naction = \"crash\"\nhost = \"engine\"\nbogus = 1\n", "unknown field"),
    ];
    for (fault, expected) in cases {
        let text = format!("{base}[[faults]]\n{fault}\n{thresholds}");
        let error = scenario::parse(&text).expect_err(fault).to_string();
        assert!(error.contains(expected), "{fault}: {error}");
    }
    let truncate_with_bytes = format!(
        "{base}[[faults]]\nat_s = 5\naction = \"crash\"\nhost = \"engine\"\n\n[[faults]]\nat_s = 6\naction = \"corrupt_wal\"\nhost = \"engine\"\ndamage = \"truncate\"\nbytes = 3\n\n{thresholds}"
    );
    let error = scenario::parse(&truncate_with_bytes).unwrap_err().to_string();
    assert!(error.contains("refused by truncate"), "{error}");
}

#[test]
fn a_full_disk_loses_nothing_committed_and_the_engine_recovers_with_and_without_a_restart() {
    let scenario = load("disk_full.toml");
    for seed in 1..=3 {
        let report = passes(&scenario, seed, "disk_full.toml");
        // The fills cost scrapes: the check is not vacuous.
        let before_second_fill =
            report.lines().find(|line| line.starts_with("fault: DiskFull engine at 30000")).unwrap();
        let after_second_free =
            report.lines().find(|line| line.starts_with("fault: DiskFree engine at 35000")).unwrap();
        let committed = |line: &str| line.rsplit(' ').next().unwrap().trim_end_matches(')').parse::<u64>().unwrap();
        assert_eq!(committed(before_second_fill), committed(after_second_free), "nothing commits while full: {report}");
        assert!(report.contains("recovery: "), "{report}");
    }
}

#[test]
fn the_report_directory_has_the_thresholds_table_json_and_charts() {
    let scenario = load("disk_full.toml");
    let result = sim::harness::run(&scenario, 5).unwrap();
    let report = sim::report::build(&scenario, &result);
    let cost = sim::output::RealCost { wall_s: 1.0, speedup: 50.0 };
    let files = sim::output::render(&scenario, "scenarios/disk_full.toml", &result, &report, cost).unwrap();
    let file = |name: &str| String::from_utf8(files.iter().find(|(file, _)| *file == name).unwrap().1.clone()).unwrap();
    let md = file("report.md");
    assert!(md.contains("| samples committed after the last fault | >= 400 |"), "{md}");
    assert!(md.contains(&report.hash), "{md}");
    let json: serde_json::Value = serde_json::from_str(&file("report.json")).unwrap();
    assert_eq!(json["checks"].as_array().unwrap().len(), report.checks.len());
    assert!(json["checks"].as_array().unwrap().iter().all(|check| check["pass"] == true), "{json}");
    let per_second = json["virtual"]["samples_committed_per_second"].as_array().unwrap();
    assert_eq!(per_second.len(), 50);
    // Nothing commits while the disk is full (10-16 s, and 30-35 s) and writes resume after.
    assert_eq!(per_second[12], 0, "{per_second:?}");
    assert!(per_second[40].as_u64().unwrap() > 0, "{per_second:?}");
    for chart in ["latency.svg", "ingest.svg"] {
        assert!(file(chart).starts_with("<svg"), "{chart}");
    }
}
