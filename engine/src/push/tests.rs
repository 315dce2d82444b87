//! The gateway over an in-memory disk and a settable clock: Pushgateway semantics of PUT, POST
//! and DELETE, refusals that change nothing, persistence across a restart and a crash, and the
//! self-scrape's series.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use super::*;
use crate::io::mem_fs::MemFileSystem;
use crate::storage::{AppendError, Appender, CommitFuture, CommitStats};

struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

struct Fixture {
    fs: MemFileSystem,
    clock: Arc<TestClock>,
    gateway: PushGateway,
}

impl Fixture {
    fn new() -> Self {
        let fs = MemFileSystem::default();
        let clock = Arc::new(TestClock(AtomicI64::new(1_700_000_000_123)));
        let gateway = PushGateway::open(Arc::new(fs.clone()), clock.clone(), Path::new("data"));
        Fixture { fs, clock, gateway }
    }

    fn reopen(&self) -> PushGateway {
        PushGateway::open(Arc::new(self.fs.clone()), self.clock.clone(), Path::new("data"))
    }

    #[track_caller]
    fn send(&self, method: &str, path: &str, body: &str, status: u16) -> String {
        let response = self.gateway.handle(method, path, body.as_bytes());
        assert_eq!(response.status, status, "{method} {path}: {}", response.body);
        response.body
    }

    /// The exposition without the timestamp gauges' values (their lines are kept, value `T`).
    fn exposition(&self) -> String {
        masked(&self.gateway.exposition())
    }
}

fn masked(exposition: &str) -> String {
    exposition
        .lines()
        .map(|line| match line.strip_prefix("push_time_seconds") {
            Some(rest) if !rest.ends_with(" 0") => format!("push_time_seconds{} T", rest.rsplit_once(' ').unwrap().0),
            _ => line.to_string(),
        })
        .map(|line| match line.strip_prefix("push_failure_time_seconds") {
            Some(rest) if !rest.ends_with(" 0") => {
                format!("push_failure_time_seconds{} T", rest.rsplit_once(' ').unwrap().0)
            }
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

const TIMES_HEADER_FAILURE: &str = "# HELP push_failure_time_seconds Last Unix time when changing this group in the Pushgateway failed.\n# TYPE push_failure_time_seconds gauge\n";
const TIMES_HEADER_PUSH: &str =
    "# HELP push_time_seconds Last Unix time when changing this group in the Pushgateway succeeded.\n# TYPE push_time_seconds gauge\n";

#[test]
fn put_sanitizes_labels_and_adds_the_timestamp_gauges() {
    let fixture = Fixture::new();
    let body = "# HELP foo A foo.\n# TYPE foo counter\nfoo{bar=\"\",a=\"1\",job=\"other\"} 3\nfoo 1e6\n\
                # TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"1\"} 2.7\nh_sum 3\nh_count 3\n\
                # TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 2\ns_count 4\nuntyped_x{instance=\"i\"} 0.000001\n";
    fixture.send("PUT", "/metrics/job/j1/x@base64/=/y@base64/Zm9vL2Jhcg", body, 200);
    // The Pushgateway 1.5.1's answer to the same push (see engine/tests/pushgateway_compare.rs).
    let group = "instance=\"\",job=\"j1\",x=\"\",y=\"foo/bar\"";
    let expected = format!(
        "# HELP foo A foo.\n# TYPE foo counter\nfoo{{{group}}} 1e+06\nfoo{{a=\"1\",bar=\"\",{group}}} 3\n\
         # TYPE h histogram\nh_bucket{{{group},le=\"0.1\"}} 1\nh_bucket{{{group},le=\"1\"}} 2\n\
         h_bucket{{{group},le=\"+Inf\"}} 3\nh_sum{{{group}}} 3\nh_count{{{group}}} 3\n\
         {TIMES_HEADER_FAILURE}push_failure_time_seconds{{{group}}} 0\n\
         {TIMES_HEADER_PUSH}push_time_seconds{{{group}}} T\n\
         # TYPE s summary\ns{{{group},quantile=\"0.5\"}} 1\ns_sum{{{group}}} 2\ns_count{{{group}}} 4\n\
         # TYPE untyped_x untyped\nuntyped_x{{instance=\"i\",job=\"j1\",x=\"\",y=\"foo/bar\"}} 1e-06\n"
    );
    assert_eq!(fixture.exposition(), expected);
    assert!(fixture
        .gateway
        .exposition()
        .contains("push_time_seconds{instance=\"\",job=\"j1\",x=\"\",y=\"foo/bar\"} 1.700000000123e+09\n"));
}

#[test]
fn put_replaces_the_group_post_only_the_families_pushed_delete_the_group() {
    let fixture = Fixture::new();
    fixture.send("PUT", "/metrics/job/batch/i/a", "a 1\nb 2\n", 200);
    fixture.send("PUT", "/metrics/job/other", "a 7\n", 200);
    fixture.send("POST", "/metrics/job/batch/i/a", "b{x=\"1\"} 3\nc 4\n", 200);
    let text = fixture.exposition();
    assert!(text.contains("a{i=\"a\",instance=\"\",job=\"batch\"} 1\n"), "{text}");
    assert!(!text.contains("b{i=\"a\",instance=\"\",job=\"batch\"} 2\n"), "POST replaces family b whole: {text}");
    assert!(text.contains("b{i=\"a\",instance=\"\",job=\"batch\",x=\"1\"} 3\n"), "{text}");
    assert!(text.contains("c{i=\"a\",instance=\"\",job=\"batch\"} 4\n"), "{text}");
    fixture.send("PUT", "/metrics/job/batch/i/a", "d 5\n", 200);
    let text = fixture.exposition();
    assert!(!text.contains("job=\"batch\"} 1\n") && !text.contains("c{"), "PUT replaces the group: {text}");
    assert!(
        text.contains("d{i=\"a\",instance=\"\",job=\"batch\"} 5\n")
            && text.contains("a{instance=\"\",job=\"other\"} 7\n")
    );
    // An empty PUT keeps only the timestamp gauges.
    fixture.send("PUT", "/metrics/job/batch/i/a", "", 200);
    assert!(!fixture.exposition().contains("d{"));
    assert!(fixture.exposition().contains("push_time_seconds{i=\"a\",instance=\"\",job=\"batch\"} T\n"));
    fixture.send("DELETE", "/metrics/job/batch/i/a", "", 202);
    fixture.send("DELETE", "/metrics/job/never", "", 202);
    let text = fixture.exposition();
    assert!(!text.contains("job=\"batch\""), "{text}");
    assert!(text.contains("a{instance=\"\",job=\"other\"} 7\n"), "{text}");
}

#[test]
fn refused_pushes_change_nothing_but_inconsistent_ones_mark_the_failure() {
    let fixture = Fixture::new();
    fixture.send("PUT", "/metrics/job/c1", "# TYPE c counter\nc 1\n", 200);
    let before = fixture.gateway.exposition();
    // Parse errors, bad paths, bounds: 400 or 413, and nothing changes (no group, no time).
    fixture.send("PUT", "/metrics/job/c1", "a{ 1\n", 400);
    fixture.send("POST", "/metrics/job/p", "# TYPE x foo\nx 1\n", 400);
    fixture.send("PUT", "/metrics/job/q/a", "x 1\n", 400);
    fixture.send("PUT", "/metrics/job/q/__a/1", "x 1\n", 400);
    fixture.send("PUT", "/metrics/job@base64/=", "x 1\n", 400);
    fixture.send("GET", "/metrics/job/c1", "", 405);
    let big: String =
        (0..=crate::limits::PUSH_SAMPLE_COUNT_PER_PUSH_MAX).map(|index| format!("x{{i=\"{index}\"}} 1\n")).collect();
    fixture.send("PUT", "/metrics/job/big", &big, 413);
    assert_eq!(fixture.gateway.exposition(), before);
    // Inconsistent pushes: 400, the group's metrics stay, its failure time is set (a new
    // group is created holding only the two gauges), as storage/diskmetricstore.go.
    fixture.send("PUT", "/metrics/job/c1", "c 1 1000\n", 400);
    fixture.send("PUT", "/metrics/job/c2", "# TYPE c gauge\nc 1\n", 400);
    fixture.send("PUT", "/metrics/job/dup", "d 1\nd 2\n", 400);
    fixture.send("PUT", "/metrics/job/e", "e{x=\"1\"} 1\n", 200);
    fixture.send("PUT", "/metrics/job/e/x/1", "e 1\n", 400);
    fixture.send("PUT", "/metrics/job/h", "# TYPE c histogram\nc_bucket{le=\"1\"} 1\n", 400);
    fixture.send(
        "PUT",
        "/metrics/job/suffix",
        "# TYPE e_total summary\ne_total_count 1\n# TYPE e_total_sum gauge\ne_total_sum 2\n",
        400,
    );
    let text = fixture.exposition();
    assert!(text.contains("c{instance=\"\",job=\"c1\"} 1\n"), "{text}");
    for job in ["c1", "c2", "dup", "h", "suffix"] {
        assert!(
            text.contains(&format!("push_failure_time_seconds{{instance=\"\",job=\"{job}\"}} T\n")),
            "{job}: {text}"
        );
    }
    assert!(text.contains("push_time_seconds{instance=\"\",job=\"c2\"} 0\n"), "{text}");
    assert!(text.contains("push_time_seconds{instance=\"\",job=\"c1\"} T\n"), "{text}");
    assert!(!text.contains("job=\"c2\"} 1\n") && !text.contains("d{"), "{text}");
    // A later good push keeps the failure time.
    fixture.send("PUT", "/metrics/job/c2", "# TYPE c counter\nc 2\n", 200);
    assert!(fixture.exposition().contains("push_failure_time_seconds{instance=\"\",job=\"c2\"} T\n"));
}

#[test]
fn store_survives_a_restart_and_a_crash() {
    let fixture = Fixture::new();
    fixture.send(
        "PUT",
        "/metrics/job/a/x@base64/=",
        "# HELP g A \\\\ gauge\\n.\n# TYPE g gauge\ng{l=\"v\\\"\"} NaN\n",
        200,
    );
    fixture.send("PUT", "/metrics/job/b", "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_bucket{le=\"1\"} 1\nh_sum -Inf\nh_count 2\n# TYPE s summary\ns{quantile=\"0.9\"} 4\n", 200);
    fixture.send("PUT", "/metrics/job/c", "z 1\n", 200);
    fixture.send("DELETE", "/metrics/job/c", "", 202);
    fixture.send("PUT", "/metrics/job/d", "e 1 5\n", 400);
    let before = fixture.gateway.exposition();
    assert_eq!(fixture.reopen().exposition(), before);
    fixture.fs.crash();
    assert_eq!(fixture.reopen().exposition(), before, "every answered change was synced");
    // A corrupt file starts an empty store (logged), as the Pushgateway.
    let path = Path::new("data/pushgateway/groups");
    let mut bytes = fixture.fs.read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    fixture.fs.remove_file(path).unwrap();
    let mut file = fixture.fs.open_append(path).unwrap();
    file.write_all(&bytes).unwrap();
    file.sync().unwrap();
    assert_eq!(fixture.reopen().exposition(), "");
}

#[test]
fn persisted_bytes_decode_to_the_same_groups_and_garbage_is_an_error() {
    let fixture = Fixture::new();
    fixture.send(
        "PUT",
        "/metrics/job/a/i/1",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 2\nh_count 3\n# HELP u x\nu{k=\"\"} -2.5\n",
        200,
    );
    fixture.send("POST", "/metrics/job/b", "# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 2\ns_count 3\n", 200);
    let store = fixture.gateway.lock().clone();
    let bytes = persist::encode(store.groups());
    let decoded = persist::decode(&bytes).unwrap();
    assert_eq!(Store::from_groups(decoded), store);
    for size in 0..bytes.len() {
        assert!(persist::decode(&bytes[..size]).is_err(), "truncated to {size}");
    }
    for index in 0..bytes.len() {
        let mut flipped = bytes.clone();
        flipped[index] ^= 0x01;
        assert!(persist::decode(&flipped).is_err(), "bit flip at {index}");
    }
}

#[test]
fn a_failed_write_undoes_the_change() {
    // A store directory that is a file: every write fails.
    let fs = MemFileSystem::default();
    let mut file = fs.open_append(Path::new("data/pushgateway")).unwrap();
    file.write_all(b"x").unwrap();
    drop(file);
    let clock = Arc::new(TestClock(AtomicI64::new(1)));
    let gateway = PushGateway::open(Arc::new(fs), clock, Path::new("data"));
    let response = gateway.handle("PUT", "/metrics/job/a", b"a 1\n");
    if response.status == 500 {
        assert_eq!(gateway.exposition(), "", "the push was undone");
    } else {
        // This in-memory disk allows it; then the push must be served.
        assert_eq!(response.status, 200);
        assert!(gateway.exposition().contains("a{instance=\"\",job=\"a\"} 1\n"));
    }
}

#[derive(Clone, Default)]
struct Recorded(Arc<Mutex<Vec<(String, i64, u64)>>>);

impl Appendable for Recorded {
    fn appender(&self) -> Box<dyn Appender> {
        Box::new(RecordedAppender { recorded: self.clone(), batch: Vec::new(), refs: BTreeMap::new() })
    }
}

struct RecordedAppender {
    recorded: Recorded,
    batch: Vec<(String, i64, u64)>,
    refs: BTreeMap<u64, String>,
}

impl Appender for RecordedAppender {
    fn append(
        &mut self,
        _: Option<SeriesRef>,
        labels: &Labels,
        timestamp_ms: i64,
        value: f64,
    ) -> Result<SeriesRef, AppendError> {
        let text = labels.to_string();
        // A stable reference per label text, as a store gives.
        let series_ref = text.bytes().fold(7u64, |hash, byte| hash.wrapping_mul(31).wrapping_add(u64::from(byte)));
        self.refs.insert(series_ref, text.clone());
        self.batch.push((text, timestamp_ms, value.to_bits()));
        Ok(SeriesRef(series_ref))
    }

    fn append_by_ref(&mut self, series_ref: SeriesRef, timestamp_ms: i64, value: f64) -> Result<(), AppendError> {
        let text = self.refs.get(&series_ref.0).cloned().unwrap_or_else(|| format!("ref {}", series_ref.0));
        self.batch.push((text, timestamp_ms, value.to_bits()));
        Ok(())
    }

    fn commit(self: Box<Self>) -> CommitFuture {
        let count = self.batch.len();
        self.recorded.0.lock().unwrap().extend(self.batch);
        Box::pin(async move { Ok(CommitStats { sample_count: count, out_of_order_count: 0 }) })
    }

    fn rollback(self: Box<Self>) {}
}

#[tokio::test]
async fn self_scrape_appends_series_as_honor_labels_gives_and_marks_the_gone_stale() {
    let fixture = Fixture::new();
    fixture.send(
        "PUT",
        "/metrics/job/batch/x@base64/=",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 2\nh_count 3\nu{instance=\"i\"} 4\n",
        200,
    );
    let recorded = Recorded::default();
    let mut previous = BTreeMap::new();
    fixture.gateway.scrape_once(&recorded, &mut previous).await;
    let first: Vec<(String, i64, u64)> = std::mem::take(&mut *recorded.0.lock().unwrap());
    let texts: Vec<&str> = first.iter().map(|(text, _, _)| text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "h_bucket{job=\"batch\", le=\"1\"}",
            "h_bucket{job=\"batch\", le=\"+Inf\"}",
            "h_sum{job=\"batch\"}",
            "h_count{job=\"batch\"}",
            "push_failure_time_seconds{job=\"batch\"}",
            "push_time_seconds{job=\"batch\"}",
            "u{instance=\"i\", job=\"batch\"}",
        ]
    );
    assert!(first.iter().all(|(_, timestamp_ms, _)| *timestamp_ms == 1_700_000_000_123));
    assert_eq!(f64::from_bits(first[5].2), 1_700_000_000.123);
    fixture.clock.0.store(1_700_000_015_123, Ordering::Relaxed);
    fixture.send("DELETE", "/metrics/job/batch/x@base64/=", "", 202);
    fixture.gateway.scrape_once(&recorded, &mut previous).await;
    let second = std::mem::take(&mut *recorded.0.lock().unwrap());
    assert_eq!(second.len(), first.len(), "one staleness marker per series gone");
    assert!(second.iter().all(|(_, timestamp_ms, bits)| *timestamp_ms == 1_700_000_015_123 && *bits == STALE_NAN_BITS));
    fixture.gateway.scrape_once(&recorded, &mut previous).await;
    assert!(recorded.0.lock().unwrap().is_empty(), "markers only once");
}
