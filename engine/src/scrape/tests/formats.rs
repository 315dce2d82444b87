//! Content negotiation (OpenMetrics, text, fallbacks), gzip with the body limit on the inflated
//! size, `params`, exemplars and the report series added for Prometheus' parity.

use std::io::Write as _;

use bytes::Bytes;

use super::*;
use crate::exemplars::ExemplarStore;
use crate::scrape::fetch::{self, Format, ACCEPT_HEADER};
use crate::scrape::ScrapeError;

/// A scrape time after the bodies' explicit timestamps, so report samples fit the head's range.
const NOW_MS: i64 = 1_700_000_010_000;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn any_series() -> Vec<Vec<Matcher>> {
    vec![vec![Matcher::new(MatchKind::Regex, "__name__", ".+").unwrap()]]
}

const OM_BODY: &str = r#"# TYPE request_seconds histogram
# UNIT request_seconds seconds
# HELP request_seconds Request latency.
request_seconds_bucket{le="0.1"} 1 # {trace_id="abc"} 0.05 1700000000.5
request_seconds_bucket{le="+Inf"} 2
request_seconds_count 2
request_seconds_sum 0.3
request_seconds_created 1699999000.25
# TYPE jobs counter
# HELP jobs Jobs with \"quotes\" and a \\ backslash.
jobs_total{kind="a"} 3 1700000001.5 # {trace_id="def"} 1
jobs_created{kind="a"} 1699999000 1700000001.5
# EOF
"#;

#[tokio::test]
async fn openmetrics_is_parsed_by_content_type_with_units_created_and_exemplars() {
    let store = Arc::new(ExemplarStore::new(100));
    let mut fixture = fixture(|scrape_loop| scrape_loop.exemplars = Some(store.clone()));
    fixture.network.serve_with(ADDRESS, 200, &[("content-type", OPENMETRICS)], Bytes::from(OM_BODY));
    fixture.scrape_at(NOW_MS).await;
    assert_eq!(fixture.last("up"), 1.0, "{:?}", fixture.state.last_error);
    // Timestamps in seconds become ms; `_created` samples are ordinary samples (Prometheus 2.42).
    assert_eq!(
        fixture.samples("jobs_total"),
        [("jobs_total{instance=\"target:9100\", job=\"node\", kind=\"a\"}".to_string(), 1_700_000_001_500, 3.0)]
    );
    let created = &fixture.samples("jobs_created")[0];
    assert_eq!((created.1, created.2), (1_700_000_001_500, 1_699_999_000.0));
    assert_eq!(fixture.samples("request_seconds_created")[0].1, NOW_MS);
    assert_eq!(fixture.samples("request_seconds_created")[0].2, 1_699_999_000.25);
    assert_eq!(fixture.samples("request_seconds_bucket").len(), 2);
    for (name, value) in
        [("scrape_samples_scraped", 7.0), ("scrape_samples_post_metric_relabeling", 7.0), ("scrape_series_added", 7.0)]
    {
        assert_eq!(fixture.last(name), value, "{name}");
    }
    let metadata = fixture.state.metadata.take_changed().unwrap();
    let latency = &metadata["request_seconds"];
    assert_eq!(
        (latency.type_name(), latency.unit.as_str(), latency.help()),
        ("histogram", "seconds", "Request latency.".to_string())
    );
    let jobs = &metadata["jobs"];
    assert_eq!((jobs.type_name(), jobs.help()), ("counter", "Jobs with \"quotes\" and a \\ backslash.".to_string()));

    let stored = store.select(i64::MIN, i64::MAX, &any_series());
    let summary: Vec<(String, String, i64, f64)> = stored
        .iter()
        .map(|result| {
            let exemplar = &result.exemplars[0];
            (result.series.to_string(), exemplar.labels.to_string(), exemplar.timestamp_ms, exemplar.value)
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "jobs_total{instance=\"target:9100\", job=\"node\", kind=\"a\"}".to_string(),
                "{trace_id=\"def\"}".to_string(),
                1_700_000_001_500, // the sample's timestamp: the exemplar has none
                1.0
            ),
            (
                "request_seconds_bucket{instance=\"target:9100\", job=\"node\", le=\"0.1\"}".to_string(),
                "{trace_id=\"abc\"}".to_string(),
                1_700_000_000_500,
                0.05
            ),
        ]
    );

    // The same body again: every series known (none added), the exemplars duplicates.
    fixture.scrape_at(NOW_MS + 10_000).await;
    assert_eq!(fixture.last("scrape_series_added"), 0.0);
    assert_eq!(fixture.last("scrape_samples_post_metric_relabeling"), 7.0);
    assert_eq!(store.len(), 2);
}

#[tokio::test]
async fn openmetrics_errors_fail_the_scrape_and_keep_no_exemplar() {
    let store = Arc::new(ExemplarStore::new(100));
    let mut fixture = fixture(|scrape_loop| scrape_loop.exemplars = Some(store.clone()));
    let without_eof = OM_BODY.replace("# EOF\n", "");
    fixture.network.serve_with(ADDRESS, 200, &[("content-type", OPENMETRICS)], Bytes::from(without_eof));
    fixture.scrape_at(10_000).await;
    assert_eq!(fixture.last("up"), 0.0);
    assert!(fixture.state.last_error.as_deref().unwrap().contains("# EOF"), "{:?}", fixture.state.last_error);
    assert!(fixture.samples("jobs_total").is_empty(), "the batch is rolled back");
    assert!(store.is_empty(), "exemplars of a failed scrape are not stored");
    // Text served as OpenMetrics is judged as OpenMetrics.
    fixture.network.serve_with(ADDRESS, 200, &[("content-type", OPENMETRICS)], Bytes::from("a 1\n"));
    fixture.scrape_at(11_000).await;
    assert_eq!(fixture.last("up"), 0.0);
    assert!(fixture.samples("a").is_empty());
}

#[tokio::test]
async fn the_content_type_picks_the_parser_and_unknown_types_fall_back_to_text() {
    // `a_total 1 100`: 100 s in OpenMetrics, 100 ms in the text format.
    let cases: [(Option<&str>, i64); 6] = [
        (Some(OPENMETRICS), 100_000),
        (Some("Application/OpenMetrics-Text;version=0.0.1"), 100_000),
        (Some("text/plain; version=0.0.4; charset=utf-8"), 100),
        (Some("application/json"), 100),
        (Some(";;not a media type"), 100),
        (None, 100),
    ];
    for (content_type, timestamp_ms) in cases {
        let mut fixture = fixture(|_| {});
        let headers: Vec<(&'static str, &str)> =
            content_type.map(|value| ("content-type", value)).into_iter().collect();
        fixture.network.serve_with(ADDRESS, 200, &headers, Bytes::from("a_total 1 100\n# EOF\n"));
        fixture.scrape_at(10_000).await;
        assert_eq!(fixture.last("up"), 1.0, "{content_type:?}: {:?}", fixture.state.last_error);
        assert_eq!(fixture.samples("a_total")[0].1, timestamp_ms, "{content_type:?}");
    }
    let mut fixture = fixture(|scrape_loop| scrape_loop.honor_timestamps = false);
    fixture.network.serve_with(ADDRESS, 200, &[("content-type", OPENMETRICS)], Bytes::from("a_total 1 100\n# EOF\n"));
    fixture.scrape_at(10_000).await;
    assert_eq!(fixture.samples("a_total")[0].1, 10_000, "honor_timestamps: false");
    assert_eq!(Format::from_content_type(Some("application/openmetrics-text")), Format::OpenMetrics);
    assert_eq!(Format::from_content_type(Some("text/openmetrics")), Format::Text);
}

#[tokio::test]
async fn requests_negotiate_as_prometheus_and_gzip_bodies_are_inflated() {
    let mut fixture = fixture(|scrape_loop| scrape_loop.target.metrics_path = "/probe?module=x".to_string());
    let compressed = gzip(OM_BODY.as_bytes());
    fixture.network.serve_with(
        ADDRESS,
        200,
        &[("content-type", OPENMETRICS), ("content-encoding", "gzip")],
        Bytes::from(compressed.clone()),
    );
    fixture.scrape_at(NOW_MS).await;
    assert_eq!(fixture.last("up"), 1.0, "{:?}", fixture.state.last_error);
    assert_eq!(fixture.last("scrape_samples_scraped"), 7.0);
    let (uri, headers) = fixture.network.last_request();
    assert_eq!(uri, "/probe?module=x");
    assert_eq!(headers["accept"], ACCEPT_HEADER);
    assert_eq!(
        ACCEPT_HEADER,
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    );
    assert_eq!(headers["accept-encoding"], "gzip");
    assert_eq!(headers["x-prometheus-scrape-timeout-seconds"], "0.5");

    // Two gzip members in one body are one body, as Go's gzip reader reads them.
    let mut two_members = gzip(b"a 1\n");
    two_members.extend(gzip(b"b 2\n"));
    fixture.network.serve_with(ADDRESS, 200, &[("content-encoding", "gzip")], Bytes::from(two_members));
    fixture.scrape_at(NOW_MS + 1000).await;
    assert_eq!((fixture.last("a"), fixture.last("b")), (1.0, 2.0));

    // A truncated or corrupt gzip body fails the scrape.
    for broken in [compressed[..compressed.len() - 12].to_vec(), b"not gzip at all".to_vec(), Vec::new()] {
        fixture.network.serve_with(ADDRESS, 200, &[("content-encoding", "gzip")], Bytes::from(broken.clone()));
        fixture.scrape_at(NOW_MS + 2000).await;
        assert_eq!(fixture.last("up"), 0.0, "{} bytes", broken.len());
        assert!(fixture.state.last_error.as_deref().unwrap().contains("gzip"), "{:?}", fixture.state.last_error);
    }
}

#[tokio::test]
async fn the_body_limit_applies_to_the_inflated_size_and_stops_a_gzip_bomb() {
    // One member inflating to 1 MiB of zeros, repeated: 1 GiB inflated from about 1 MiB sent.
    let member = gzip(&vec![0_u8; 1 << 20]);
    let bomb: Vec<u8> = member.iter().copied().cycle().take(member.len() * 1024).collect();
    assert!(bomb.len() < 2 << 20, "the bomb is small on the wire: {}", bomb.len());
    let fixture = fixture(|_| {});
    fixture.network.serve_with(ADDRESS, 200, &[("content-encoding", "gzip")], Bytes::from(bomb));
    let size_limit = 4 << 20;
    let mut body = Vec::new();
    let env = &fixture.scrape_loop.env;
    let result =
        fetch::fetch(env.net.as_ref(), env.spawner.as_ref(), &fixture.scrape_loop.target, 500, size_limit, &mut body)
            .await;
    assert!(matches!(result, Err(ScrapeError::BodyTooLarge { limit_size }) if limit_size == size_limit), "{result:?}");
    assert!(body.len() < size_limit, "inflation stopped at the limit: {} bytes", body.len());
    assert!(body.capacity() <= 2 * size_limit, "memory stays near the limit: {} bytes", body.capacity());

    // A compressed body under the limit that inflates past it is refused; one that fits is read.
    let text: String = (0..200).map(|index| format!("series_{index} {index}\n")).collect();
    let compressed = gzip(text.as_bytes());
    assert!(compressed.len() < 1000 && text.len() > 1000);
    let mut fixture = super::fixture(|scrape_loop| scrape_loop.limits.body_size_limit = 1000);
    fixture.network.serve_with(ADDRESS, 200, &[("content-encoding", "gzip")], Bytes::from(compressed.clone()));
    fixture.scrape_at(10_000).await;
    assert_eq!(fixture.last("up"), 0.0);
    assert_eq!(fixture.state.last_error.as_deref(), Some("body size limit exceeded: limit 1000 bytes"));
    fixture.scrape_loop.limits.body_size_limit = text.len() + 1;
    fixture.scrape_at(11_000).await;
    assert_eq!(fixture.last("up"), 1.0, "{:?}", fixture.state.last_error);
}

#[tokio::test]
async fn report_series_count_relabeled_and_added_samples() {
    let mut fixture = fixture(|scrape_loop| {
        scrape_loop.metric_relabel_configs = rules("[{source_labels: [__name__], regex: drop_me, action: drop}]")
    });
    let report = |fixture: &Fixture| {
        ["scrape_samples_scraped", "scrape_samples_post_metric_relabeling", "scrape_series_added"]
            .map(|name| fixture.last(name))
    };
    fixture.network.serve(ADDRESS, 200, "a 1\nb 1\ndrop_me 1\n");
    fixture.scrape_at(10_000).await;
    assert_eq!(report(&fixture), [3.0, 2.0, 2.0]);
    fixture.network.serve(ADDRESS, 200, "a 1\nb 1\nc 1\ndrop_me 1\n");
    fixture.scrape_at(11_000).await;
    assert_eq!(report(&fixture), [4.0, 3.0, 1.0], "only c is new");
    // A series that vanished and comes back is new to the cache again (upstream counts it).
    fixture.network.serve(ADDRESS, 200, "a 1\n");
    fixture.scrape_at(12_000).await;
    fixture.network.serve(ADDRESS, 200, "a 1\nb 1\n");
    fixture.scrape_at(13_000).await;
    assert_eq!(report(&fixture), [2.0, 2.0, 1.0]);
    // A failed fetch reports zeros; a parse failure the counts reached before it.
    fixture.network.serve(ADDRESS, 500, "");
    fixture.scrape_at(14_000).await;
    assert_eq!(report(&fixture), [0.0, 0.0, 0.0]);
    fixture.network.serve(ADDRESS, 200, "a 1\nnew 1\nbad{ 1\n");
    fixture.scrape_at(15_000).await;
    // The failed fetch left the cache empty (it evicts what that scrape did not see): both new.
    assert_eq!(report(&fixture), [2.0, 2.0, 2.0]);
    assert_eq!(fixture.last("up"), 0.0);
    // Past the sample limit the rest is counted, as upstream's `added`, except that a text the
    // cache does not know is not relabeled there: drop_me (evicted by the failed scrapes) counts.
    fixture.scrape_loop.limits.sample_count_limit = 1;
    fixture.network.serve(ADDRESS, 200, "a 1\nb 1\nc 1\ndrop_me 1\n");
    fixture.scrape_at(16_000).await;
    assert_eq!(fixture.last("up"), 0.0);
    assert_eq!(report(&fixture)[0..2], [4.0, 4.0]);
}

#[tokio::test(start_paused = true)]
async fn params_reach_the_url_and_every_report_series_ends_with_a_staleness_marker() {
    let fixture = fixture(|_| {});
    fixture.network.serve(ADDRESS, 200, "a 1\n");
    let config = |targets: &str| {
        crate::config::parse(&format!(
            "
global: {{scrape_interval: 1s}}
scrape_configs:
  - job_name: snmp
    metrics_path: /snmp
    params: {{module: [if_mib], target: [first, 'second value']}}
    relabel_configs:
      - {{source_labels: [__address__], target_label: __param_target}}
      - {{source_labels: [__param_module], target_label: module}}
    static_configs:
      - targets: [{targets}]
"
        ))
        .unwrap()
    };
    let env = fixture.scrape_loop.env.clone();
    let manager = crate::scrape::start(
        &env,
        &config("'target:9100'"),
        Arc::new(fixture.store.clone()),
        Arc::new(SelfMetrics::default()),
        1 << 20,
        None,
    );
    let targets = manager.targets();
    let active = &targets.active[0];
    assert_eq!(active.scrape_url, "http://target:9100/snmp?module=if_mib&target=target%3A9100&target=second+value");
    assert_eq!(active.discovered_labels.get("__param_target"), Some("first"), "discovered: the first value");
    assert_eq!(active.discovered_labels.get("__param_module"), Some("if_mib"));
    assert_eq!(active.labels, Labels::from_pairs([("instance", ADDRESS), ("job", "snmp"), ("module", "if_mib")]));
    for _ in 0..3 {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        fixture.clock.0.fetch_add(1000, Ordering::Relaxed);
    }
    assert_eq!(fixture.network.last_request().0, "/snmp?module=if_mib&target=target%3A9100&target=second+value");
    assert!(!fixture.samples("scrape_series_added").is_empty());
    manager.apply(&config(""));
    for _ in 0..2 {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        fixture.clock.0.fetch_add(1000, Ordering::Relaxed);
    }
    for name in [
        "a",
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    ] {
        let samples = fixture.samples(name);
        assert!(samples.last().is_some_and(|(_, _, value)| is_stale_nan(*value)), "{name}: {samples:?}");
    }
}
