//! Rule evaluation over a real `Db` on an in-memory disk, in virtual time: recording rules and
//! their chaining, the alert state machine and what reaches the sink, `ALERTS` series,
//! staleness markers, limits, the `for` restore across a restart, reload, the group task's
//! timestamps and the API bodies.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::*;
use crate::io::{Env, MemFileSystem, RandomStreams, TokioSpawner};
use crate::model::{is_stale_nan, Labels, MatchKind, Matcher};
use crate::notifier::Alert;
use crate::promql::EngineOptions;
use crate::storage::{collect_series, Appendable, Queryable};
use crate::tsdb::{Db, DbOptions};

/// Base of every test's wall time: 2026-12-02T07:00:00Z.
const BASE_MS: i64 = 1_796_194_800_000;

/// Wall time that follows tokio's (virtual) clock from `BASE_MS`.
struct TestClock {
    start: tokio::time::Instant,
}

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        BASE_MS + self.start.elapsed().as_millis() as i64
    }
}

#[derive(Default)]
struct CollectSink(Mutex<Vec<Alert>>);

impl CollectSink {
    fn take(&self) -> Vec<Alert> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl crate::notifier::AlertSink for CollectSink {
    fn send(&self, alerts: Vec<Alert>) {
        self.0.lock().unwrap().extend(alerts);
    }
}

struct Fixture {
    fs: Arc<MemFileSystem>,
    db: Db,
    sink: Arc<CollectSink>,
    context: Arc<EvalContext>,
}

fn open_db(fs: &Arc<MemFileSystem>) -> Db {
    let options = DbOptions { background_compaction: false, ..DbOptions::default() };
    Db::open(fs.clone(), &TokioSpawner, Path::new("/db"), options).unwrap()
}

fn fixture_on(fs: Arc<MemFileSystem>) -> Fixture {
    let db = open_db(&fs);
    let sink = Arc::new(CollectSink::default());
    let context = Arc::new(EvalContext {
        engine: crate::promql::Engine::new(Arc::new(db.clone()), EngineOptions::default()),
        appendable: Arc::new(db.clone()),
        queryable: Arc::new(db.clone()),
        sink: sink.clone(),
        clock: Arc::new(TestClock { start: tokio::time::Instant::now() }),
        external_labels: BTreeMap::from([("dc".to_string(), "eu".to_string())]),
        external_url: "http://engine:9090".to_string(),
        resend_delay_ms: RESEND_DELAY_MS_DEFAULT,
        outage_tolerance_ms: OUTAGE_TOLERANCE_MS_DEFAULT,
        for_grace_period_ms: FOR_GRACE_PERIOD_MS_DEFAULT,
    });
    Fixture { fs, db, sink, context }
}

fn fixture() -> Fixture {
    fixture_on(Arc::new(MemFileSystem::default()))
}

fn group_of(fixture: &Fixture, yaml: &str, restored: bool) -> Group {
    let file = file::parse_rule_file("rules.yml", yaml).unwrap();
    let spec = file.groups.into_iter().next().unwrap();
    let interval_ms = spec.interval_ms.unwrap_or(10_000);
    Group::new(spec, interval_ms, spec_offset(yaml), fixture.context.clone(), restored)
}

fn spec_offset(yaml: &str) -> i64 {
    file::parse_rule_file("rules.yml", yaml).unwrap().groups[0].query_offset_ms.unwrap_or(0)
}

async fn put(db: &Db, pairs: &[(&str, &str)], time_ms: i64, value: f64) {
    let mut appender = db.appender();
    appender.append(None, &Labels::from_pairs(pairs.iter().copied()), time_ms, value).unwrap();
    appender.commit().await.unwrap();
}

/// Every sample of series matching `name`, as (labels, [(t, v or "stale")]).
fn dump(db: &Db, name: &str) -> Vec<(String, Vec<(i64, String)>)> {
    let querier = db.querier(i64::MIN / 2, i64::MAX / 2).unwrap();
    let matchers = [Matcher::new(MatchKind::Equal, "__name__", name).unwrap()];
    collect_series(querier.select(None, &matchers))
        .unwrap()
        .into_iter()
        .map(|series| {
            let samples = series
                .samples
                .iter()
                .map(|sample| {
                    let value = if is_stale_nan(sample.value) { "stale".to_string() } else { sample.value.to_string() };
                    (sample.timestamp_ms - BASE_MS, value)
                })
                .collect();
            (series.labels.to_string(), samples)
        })
        .collect()
}

#[track_caller]
fn check_series(db: &Db, name: &str, expected: &[(&str, &[(i64, &str)])]) {
    let want: Vec<(String, Vec<(i64, String)>)> = expected
        .iter()
        .map(|(labels, samples)| (labels.to_string(), samples.iter().map(|(t, v)| (*t, v.to_string())).collect()))
        .collect();
    assert_eq!(dump(db, name), want, "series {name}");
}

#[tokio::test(start_paused = true)]
async fn recording_rules_write_at_evaluation_timestamps_and_chain() {
    let f = fixture();
    let group = group_of(
        &f,
        "groups:\n- name: g\n  rules:\n  - record: a\n    expr: vector(1)\n    labels:\n      team: t\n  - record: b\n    expr: a * 2\n",
        true,
    );
    group.eval_at(BASE_MS).await;
    group.eval_at(BASE_MS + 10_000).await;
    check_series(&f.db, "a", &[("a{team=\"t\"}", &[(0, "1"), (10_000, "1")])]);
    // `b` sees `a` of the same evaluation: the first rule committed before the second ran.
    check_series(&f.db, "b", &[("b{team=\"t\"}", &[(0, "2"), (10_000, "2")])]);
    let snapshot = group.snapshot();
    assert!(snapshot.rules.iter().all(|rule| rule.health == Health::Good), "{snapshot:?}");
    assert_eq!(snapshot.rules[1].query, "a * 2");
}

#[tokio::test(start_paused = true)]
async fn query_offset_shifts_query_and_sample_times() {
    let f = fixture();
    put(&f.db, &[("__name__", "m")], BASE_MS - 60_000, 5.0).await;
    put(&f.db, &[("__name__", "m")], BASE_MS, 7.0).await;
    let group = group_of(&f, "groups:\n- name: g\n  query_offset: 1m\n  rules:\n  - record: r\n    expr: m\n", true);
    group.eval_at(BASE_MS).await;
    check_series(&f.db, "r", &[("r{}", &[(-60_000, "5")])]);
}

#[tokio::test(start_paused = true)]
async fn vanished_series_get_staleness_markers() {
    let f = fixture();
    let group = group_of(&f, "groups:\n- name: g\n  rules:\n  - record: r\n    expr: m > 0\n", true);
    put(&f.db, &[("__name__", "m"), ("job", "a")], BASE_MS, 1.0).await;
    put(&f.db, &[("__name__", "m"), ("job", "b")], BASE_MS, 1.0).await;
    group.eval_at(BASE_MS).await;
    put(&f.db, &[("__name__", "m"), ("job", "b")], BASE_MS + 10_000, 0.0).await;
    group.eval_at(BASE_MS + 10_000).await;
    check_series(
        &f.db,
        "r",
        &[("r{job=\"a\"}", &[(0, "1"), (10_000, "1")]), ("r{job=\"b\"}", &[(0, "1"), (10_000, "stale")])],
    );
}

#[tokio::test(start_paused = true)]
async fn limits_and_duplicate_label_sets_are_rule_errors() {
    #[track_caller]
    fn check(group: &Group, rule_index: usize, expected: &str) {
        let snapshot = group.snapshot();
        let rule = &snapshot.rules[rule_index];
        assert_eq!((rule.health, rule.last_error.as_deref()), (Health::Bad, Some(expected)));
    }
    let f = fixture();
    put(&f.db, &[("__name__", "m"), ("job", "a")], BASE_MS, 1.0).await;
    put(&f.db, &[("__name__", "m"), ("job", "b")], BASE_MS, 1.0).await;
    let group = group_of(
        &f,
        "groups:\n- name: g\n  limit: 1\n  rules:\n  - record: r\n    expr: m\n  - alert: A\n    expr: m\n",
        true,
    );
    group.eval_at(BASE_MS).await;
    check(&group, 0, "exceeded limit of 1 with 2 series");
    check(&group, 1, "exceeded limit of 1 with 2 alerts");
    assert!(dump(&f.db, "r").is_empty());
    let group = group_of(
        &f,
        "groups:\n- name: g\n  rules:\n  - record: r\n    expr: m\n    labels:\n      job: x\n  - alert: A\n    expr: m\n    labels:\n      job: x\n  - record: s\n    expr: '\"text\"'\n",
        true,
    );
    group.eval_at(BASE_MS).await;
    check(&group, 0, "vector contains metrics with the same labelset after applying rule labels");
    check(&group, 1, "vector contains metrics with the same labelset after applying alert labels");
    check(&group, 2, "rule result is not a vector or scalar");
    assert_eq!(group.lock().counters.evaluation_failures_total, 3);
}

/// (state, starts_at, ends_at) of each alert sent, times relative to `BASE_MS`.
fn sent(sink: &CollectSink) -> Vec<(i64, i64)> {
    sink.take().into_iter().map(|alert| (alert.starts_at_ms - BASE_MS, alert.ends_at_ms - BASE_MS)).collect()
}

#[tokio::test(start_paused = true)]
async fn alert_pends_fires_resends_resolves_and_is_kept_fifteen_minutes() {
    let f = fixture();
    let group = group_of(
        &f,
        "groups:\n- name: g\n  rules:\n  - alert: High\n    expr: m > 0\n    for: 30s\n    labels:\n      severity: page\n    annotations:\n      summary: 'value {{ $value }} on {{ $labels.job }} in {{ $externalLabels.dc }}'\n",
        true,
    );
    let m = [("__name__", "m"), ("job", "a")];
    let mut expect_sent: Vec<(i64, Vec<(i64, i64)>)> = Vec::new();
    let mut got_sent = Vec::new();
    for step in 0..=120 {
        let time_ms = BASE_MS + step * 10_000;
        put(&f.db, &m, time_ms, if step <= 10 { 1.0 } else { 0.0 }).await;
        group.eval_at(time_ms).await;
        let alerts = sent(&f.sink);
        if !alerts.is_empty() {
            got_sent.push((step * 10_000, alerts));
        }
        let snapshot = group.snapshot();
        let expected_state = match step {
            0..=2 => AlertState::Pending,
            3..=10 => AlertState::Firing,
            _ => AlertState::Inactive,
        };
        assert_eq!(snapshot.rules[0].state, expected_state, "step {step}");
        if step == 3 {
            let alert = &snapshot.rules[0].alerts[0];
            assert_eq!(alert.labels.to_string(), "{alertname=\"High\", job=\"a\", severity=\"page\"}");
            assert_eq!(alert.annotations.get("summary"), Some("value 1 on a in eu"));
            assert_eq!(alert.active_at_ms, BASE_MS);
        }
    }
    // Fires at 30 s (valid for 4 x the 1 min resend delay), re-sent once the delay has passed
    // (after 90 s: at 100 s), resolved at 110 s and re-sent every minute while kept.
    expect_sent.push((30_000, vec![(30_000, 270_000)]));
    expect_sent.push((100_000, vec![(30_000, 340_000)]));
    expect_sent.push((110_000, vec![(30_000, 110_000)]));
    let mut time_ms = 180_000;
    while time_ms <= 110_000 + RESOLVED_RETENTION_MS {
        expect_sent.push((time_ms, vec![(30_000, 110_000)]));
        time_ms += 70_000;
    }
    assert_eq!(got_sent, expect_sent);
    assert!(group.lock().rules[0].alerting.active.is_empty(), "dropped after the retention");
    let alerts = dump(&f.db, "ALERTS");
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[0].0, "ALERTS{alertname=\"High\", alertstate=\"firing\", job=\"a\", severity=\"page\"}");
    assert_eq!(alerts[0].1.first(), Some(&(30_000, "1".to_string())));
    assert_eq!(alerts[0].1.last(), Some(&(110_000, "stale".to_string())));
    assert_eq!(
        alerts[1].1,
        [(0, "1"), (10_000, "1"), (20_000, "1"), (30_000, "stale")].map(|(t, v)| (t, v.to_string()))
    );
    let for_state = dump(&f.db, "ALERTS_FOR_STATE");
    assert_eq!(for_state.len(), 1);
    assert!(for_state[0].1[..11].iter().all(|(_, value)| *value == (BASE_MS / 1000).to_string()), "{for_state:?}");
    assert_eq!(for_state[0].1[11], (110_000, "stale".to_string()));
}

#[tokio::test(start_paused = true)]
async fn keep_firing_for_holds_a_cleared_alert() {
    let f = fixture();
    let group =
        group_of(&f, "groups:\n- name: g\n  rules:\n  - alert: K\n    expr: m > 0\n    keep_firing_for: 20s\n", true);
    let m = [("__name__", "m")];
    let mut states = Vec::new();
    for step in 0..5 {
        let time_ms = BASE_MS + step * 10_000;
        put(&f.db, &m, time_ms, if step == 0 { 1.0 } else { 0.0 }).await;
        group.eval_at(time_ms).await;
        let snapshot = group.snapshot();
        states.push(snapshot.rules[0].state);
        if step == 1 {
            assert_eq!(snapshot.rules[0].alerts[0].keep_firing_since_ms, Some(BASE_MS + 10_000));
        }
    }
    use AlertState::*;
    assert_eq!(states, [Firing, Firing, Firing, Inactive, Inactive]);
    // Sent firing at 0 s, then resolved at 30 s.
    assert_eq!(sent(&f.sink), [(0, 240_000), (0, 30_000)]);
}

#[tokio::test(start_paused = true)]
async fn for_state_is_restored_after_a_restart() {
    const MINUTE_MS: i64 = 60_000;
    let fs = Arc::new(MemFileSystem::default());
    let yaml = "groups:\n- name: g\n  interval: 1m\n  rules:\n  - alert: Slow\n    expr: vector(1)\n    for: 1h\n";
    {
        let f = fixture_on(fs.clone());
        let group = group_of(&f, yaml, true);
        for minute in 0..=20 {
            group.eval_at(BASE_MS + minute * MINUTE_MS).await;
        }
        assert_eq!(group.snapshot().rules[0].state, AlertState::Pending);
    }
    // Down for ten minutes; the new engine's first evaluation finds the alert pending anew.
    let f = fixture_on(fs);
    let group = group_of(&f, yaml, false);
    let restart_ms = BASE_MS + 30 * MINUTE_MS;
    group.eval_at(restart_ms).await;
    assert_eq!(group.snapshot().rules[0].alerts[0].active_at_ms, restart_ms);
    group.restore_for_state(restart_ms);
    // 20 min were spent pending before the outage; the outage does not count: 40 min to go.
    let active_at_ms = group.snapshot().rules[0].alerts[0].active_at_ms;
    assert_eq!(active_at_ms, BASE_MS + 10 * MINUTE_MS);
    group.eval_at(BASE_MS + 69 * MINUTE_MS).await;
    assert_eq!(group.snapshot().rules[0].state, AlertState::Pending);
    group.eval_at(BASE_MS + 70 * MINUTE_MS).await;
    assert_eq!(group.snapshot().rules[0].state, AlertState::Firing);
    // Nearly due when the engine went down: fires no sooner than the grace period after restart.
    let f2 = fixture_on(Arc::new(MemFileSystem::default()));
    let group = group_of(&f2, yaml, true);
    for minute in 0..=55 {
        group.eval_at(BASE_MS + minute * MINUTE_MS).await;
    }
    let group2 = group_of(&f2, yaml, false);
    group2.eval_at(BASE_MS + 57 * MINUTE_MS).await;
    group2.restore_for_state(BASE_MS + 57 * MINUTE_MS);
    assert_eq!(
        group2.snapshot().rules[0].alerts[0].active_at_ms,
        BASE_MS + 57 * MINUTE_MS + 10 * MINUTE_MS - 60 * MINUTE_MS
    );
}

fn env(fs: Arc<MemFileSystem>, clock: Arc<dyn Clock>) -> Env {
    Env {
        clock,
        fs,
        net: Arc::new(crate::io::RealNetwork),
        spawner: Arc::new(TokioSpawner),
        random: RandomStreams::new(1),
    }
}

fn specs(yaml: &str) -> Vec<GroupSpec> {
    file::parse_rule_file("rules.yml", yaml).unwrap().groups
}

#[tokio::test(start_paused = true)]
async fn group_task_evaluates_on_its_grid_and_reload_keeps_unchanged_groups() {
    let f = fixture();
    let manager = Manager::new(
        env(f.fs.clone(), f.context.clock.clone()),
        (*f.context).clone(),
        ManagerOptions { evaluation_interval_ms: 10_000, ..ManagerOptions::default() },
    );
    let keep = "- name: keep\n  rules:\n  - alert: A\n    expr: vector(1)\n    for: 1h\n";
    let change = "- name: change\n  rules:\n  - alert: B\n    expr: vector(2)\n    for: 1h\n";
    let remove = "- name: remove\n  rules:\n  - record: r\n    expr: vector(3)\n";
    let options = ManagerOptions { evaluation_interval_ms: 10_000, ..ManagerOptions::default() };
    manager.update(options.clone(), specs(&format!("groups:\n{keep}{change}{remove}")));
    tokio::time::sleep(std::time::Duration::from_millis(35_000)).await;
    let groups = manager.groups();
    assert_eq!(groups.len(), 3);
    for group in &groups {
        let state = group.lock();
        let last = state.last_eval_timestamp_ms.expect("evaluated");
        assert_eq!(last, group.eval_timestamp(last), "on the group's grid");
        let first = group.eval_timestamp(BASE_MS) + 10_000;
        let expected = (BASE_MS + 35_000 - first) / 10_000 + 1;
        assert_eq!(state.counters.iterations_total as i64, expected, "{}", group.spec().name);
        assert_eq!(last, first + (expected - 1) * 10_000);
    }
    let active_at = |group: &Group| group.snapshot().rules[0].alerts[0].active_at_ms;
    let (keep_active, change_active) = (active_at(&groups[0]), active_at(&groups[1]));
    let changed = format!("groups:\n{keep}{}", change.replace("vector(2)", "vector(2) + 0"));
    manager.update(options, specs(&changed));
    let after = manager.groups();
    assert!(Arc::ptr_eq(&after[0], &groups[0]), "an unchanged group keeps running");
    assert!(!Arc::ptr_eq(&after[1], &groups[1]), "a changed group is replaced");
    assert_eq!(active_at(&after[0]), keep_active);
    assert_eq!(active_at(&after[1]), change_active, "its alert state is copied over");
    tokio::time::sleep(std::time::Duration::from_millis(20_000)).await;
    assert_eq!(active_at(&after[1]), change_active, "still the same alert after evaluations");
    let recorded = dump(&f.db, "r");
    assert_eq!(recorded.len(), 1);
    assert_eq!(
        recorded[0].1.last().map(|(_, value)| value.as_str()),
        Some("stale"),
        "removed group's series: {recorded:?}"
    );
    let mut out = String::new();
    crate::metrics::MetricsSource::render(&manager, &mut out);
    assert!(out.contains("prometheus_rule_group_rules{rule_group=\"rules.yml;keep\"} 1\n"), "{out}");
    assert!(out.contains("prometheus_rule_group_interval_seconds{rule_group=\"rules.yml;change\"} 10\n"), "{out}");
    manager.stop();
}

#[test]
fn evaluation_timestamps_are_stable_and_aligned() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let _guard = runtime.enter();
    let f = runtime.block_on(async { fixture() });
    let group =
        group_of(&f, "groups:\n- name: g\n  interval: 1m\n  rules:\n  - record: r\n    expr: vector(1)\n", true);
    let offset = (fnv1a64(&["g", "rules.yml"]) % 60_000) as i64;
    #[track_caller]
    fn check(group: &Group, now_ms: i64, expected_ms: i64) {
        assert_eq!(group.eval_timestamp(now_ms), expected_ms, "now {now_ms}");
    }
    check(&group, BASE_MS + offset, BASE_MS + offset);
    check(&group, BASE_MS + offset + 59_999, BASE_MS + offset);
    check(&group, BASE_MS + offset - 1, BASE_MS + offset - 60_000);
    assert_eq!(fnv1a64(&["a"]), 0xaf63_dc4c_8601_ec8c, "FNV-1a of \"a\"");
}

#[test]
fn formatting_helpers_match_go() {
    #[track_caller]
    fn check(got: String, expected: &str) {
        assert_eq!(got, expected);
    }
    check(go_time_json(None), "0001-01-01T00:00:00Z");
    check(go_time_json(Some(BASE_MS)), "2026-12-02T07:00:00Z");
    check(go_time_json(Some(BASE_MS + 120)), "2026-12-02T07:00:00.12Z");
    check(go_format_e(1.0), "1e+00");
    check(go_format_e(0.25), "2.5e-01");
    check(go_format_e(-1234.5), "-1.2345e+03");
    check(go_format_e(1e100), "1e+100");
    check(go_format_e(f64::INFINITY), "+Inf");
    check(
        generator_url("http://h:9090", "rate(x{a=\"b\"}[5m]) > 0.5"),
        "http://h:9090/graph?g0.expr=rate%28x%7Ba%3D%22b%22%7D%5B5m%5D%29+%3E+0.5&g0.tab=1",
    );
}

#[tokio::test(start_paused = true)]
async fn api_bodies_have_prometheus_shape() {
    let f = fixture();
    let group = group_of(
        &f,
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: vector(1)\n    for: 1m\n    labels:\n      severity: page\n    annotations:\n      summary: s\n  - record: r\n    expr: vector(2)\n",
        true,
    );
    group.eval_at(BASE_MS).await;
    let snapshots = vec![group.snapshot()];
    let body = api::rules_body(&snapshots, &api::RulesFilter::default());
    assert_eq!(
        body,
        concat!(
            r#"{"status":"success","data":{"groups":[{"name":"g","file":"rules.yml","rules":["#,
            r#"{"state":"pending","name":"A","query":"vector(1)","duration":60.0,"keepFiringFor":0.0,"labels":{"severity":"page"},"annotations":{"summary":"s"},"#,
            r#""alerts":[{"labels":{"alertname":"A","severity":"page"},"annotations":{"summary":"s"},"state":"pending","activeAt":"2026-12-02T07:00:00Z","value":"1e+00"}],"#,
            r#""health":"ok","evaluationTime":0.0,"lastEvaluation":"2026-12-02T07:00:00Z","type":"alerting"},"#,
            r#"{"name":"r","query":"vector(2)","labels":{},"health":"ok","evaluationTime":0.0,"lastEvaluation":"2026-12-02T07:00:00Z","type":"recording"}],"#,
            r#""interval":10.0,"limit":0,"evaluationTime":0.0,"lastEvaluation":"2026-12-02T07:00:00Z"}]}}"#
        )
    );
    let only_recording = api::RulesFilter::from_pairs(&[("type".to_string(), "record".to_string())]).unwrap();
    assert!(!api::rules_body(&snapshots, &only_recording).contains("alerting"));
    let by_name = api::RulesFilter::from_pairs(&[("rule_name[]".to_string(), "nope".to_string())]).unwrap();
    assert_eq!(api::rules_body(&snapshots, &by_name), r#"{"status":"success","data":{"groups":[]}}"#);
    assert!(api::RulesFilter::from_pairs(&[("type".to_string(), "x".to_string())]).is_err());
    assert_eq!(
        api::alerts_body(&snapshots),
        r#"{"status":"success","data":{"alerts":[{"labels":{"alertname":"A","severity":"page"},"annotations":{"summary":"s"},"state":"pending","activeAt":"2026-12-02T07:00:00Z","value":"1e+00"}]}}"#
    );
}
