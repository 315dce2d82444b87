//! The alerting pipeline in the simulator (rules -> notifier -> embedded alert manager ->
//! webhook): over ten seeds each, the single engine's notification arrives within scrape
//! interval + evaluation interval + group_wait + 1 s of the condition, and an HA pair with random
//! delay on its links to the alert manager gives exactly one firing notification per group.
//! The full sweeps (`--seeds 1..100`) are in reports/; a failing seed becomes a pinned case here.

fn scenario(file: &str) -> sim::scenario::Scenario {
    let path = format!("{}/../scenarios/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = engine::io::FileSystem::read(&engine::io::RealFileSystem, std::path::Path::new(&path)).unwrap();
    sim::scenario::parse(&String::from_utf8(text).unwrap()).unwrap()
}

fn check(file: &str) {
    let scenario = scenario(file);
    let alerting = scenario.alerting.clone().expect("an alerting scenario");
    for seed in 1..=10 {
        let result = sim::harness::run(&scenario, seed).unwrap_or_else(|error| panic!("SEED={seed}: {error:#}"));
        let report = sim::report::build(&scenario, &result);
        let reproduce = format!("reproduce: cargo run --release --bin sim -- scenarios/{file} --seed {seed}");
        assert!(report.failures.is_empty(), "SEED={seed} failed; {reproduce}\n{}", report.deterministic);
        let outcome = result.alerting.expect("alerting outcome");
        let latency_ms = outcome.latency_ms().unwrap_or_else(|| panic!("SEED={seed}: no notification; {reproduce}"));
        // The HA pair's links to the alert manager add up to their delay.
        let bound_ms = sim::alerting::AlertingOutcome::latency_bound_ms(&scenario, &alerting)
            + alerting.sender_link_latency_ms_max;
        assert!(latency_ms <= bound_ms, "SEED={seed}: latency {latency_ms} ms > {bound_ms} ms; {reproduce}");
        assert_eq!(
            outcome.firing_per_group().iter().map(|(_, count)| *count).collect::<Vec<_>>(),
            [1],
            "SEED={seed}: {reproduce}"
        );
    }
}

#[test]
fn one_engine_notifies_within_the_bound() {
    check("alert_latency.toml");
}

#[test]
fn an_ha_pair_notifies_once_per_group() {
    check("alert_ha_pair.toml");
}
