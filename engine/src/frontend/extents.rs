//! Range-query answers kept as extents: for one (tenant, query, step) key, the matrices already
//! fetched for some time ranges. A request takes what its range shares with them and fetches
//! only the gaps, so a dashboard moving forward asks the downstream for its new tail alone
//! (Cortex' results cache, Trickster's delta caching).
//!
//! Points of a range query sit at `start + k * step`; the frontend aligns `start` and `end` to
//! the step, so every extent of a key lies on one grid (multiples of the step) and pieces from
//! different requests join without overlap or shift. An extent records its whole range even
//! where no series had points: "nothing there" is cached too.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::api::json::{write_string, write_timestamp};

/// Sorted label pairs of one series, as the matrix' `metric` object.
pub type SeriesLabels = Vec<(String, String)>;

/// Points of one series.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeriesPoints {
    /// `[t, "value"]` points: Unix milliseconds and the value as the downstream wrote it.
    pub values: Vec<(i64, String)>,
    /// `[t, {histogram}]` points of native histograms, kept as the downstream wrote them.
    pub histograms: Vec<(i64, Value)>,
}

/// A range query's answer: series in label order, as Prometheus sorts a matrix.
pub type Matrix = BTreeMap<SeriesLabels, SeriesPoints>;

/// A downstream answer read apart.
#[derive(Debug, PartialEq)]
pub struct RangeAnswer {
    /// The series.
    pub matrix: Matrix,
    /// The answer's warnings (an answer with any is not cached).
    pub warnings: Vec<String>,
}

/// Reads a successful `query_range` answer; `None` when it is anything else (an error, another
/// result type), which the caller passes on untouched.
pub fn parse_range_answer(body: &[u8]) -> Option<RangeAnswer> {
    let value: Value = serde_json::from_slice(body).ok()?;
    if value.get("status")?.as_str()? != "success" {
        return None;
    }
    let data = value.get("data")?;
    if data.get("resultType")?.as_str()? != "matrix" {
        return None;
    }
    let mut matrix = Matrix::new();
    for series in data.get("result")?.as_array()? {
        let mut labels: SeriesLabels = series
            .get("metric")?
            .as_object()?
            .iter()
            .map(|(name, value)| Some((name.clone(), value.as_str()?.to_string())))
            .collect::<Option<_>>()?;
        labels.sort();
        let mut points = SeriesPoints::default();
        for point in series.get("values").and_then(Value::as_array).into_iter().flatten() {
            let [time, value] = point.as_array()?.as_slice() else { return None };
            points.values.push((seconds_to_ms(time)?, value.as_str()?.to_string()));
        }
        for point in series.get("histograms").and_then(Value::as_array).into_iter().flatten() {
            let [time, histogram] = point.as_array()?.as_slice() else { return None };
            points.histograms.push((seconds_to_ms(time)?, histogram.clone()));
        }
        matrix.insert(labels, points);
    }
    let warnings = value
        .get("warnings")
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(|item| item.as_str().map(String::from)).collect())
        .unwrap_or_default();
    Some(RangeAnswer { matrix, warnings })
}

fn seconds_to_ms(time: &Value) -> Option<i64> {
    let seconds = time.as_f64()?;
    seconds.is_finite().then(|| (seconds * 1000.0).round() as i64)
}

/// Writes a `query_range` answer in Prometheus' shape, points of `[start_ms, end_ms]` only;
/// series without points there are left out, as Prometheus leaves them out.
pub fn render_range_answer(matrix: &Matrix, start_ms: i64, end_ms: i64, warnings: &[String]) -> String {
    let mut out = String::from(r#"{"status":"success","data":{"resultType":"matrix","result":["#);
    let mut first_series = true;
    for (labels, points) in matrix {
        let in_range = |t: &i64| (start_ms..=end_ms).contains(t);
        let values: Vec<_> = points.values.iter().filter(|(t, _)| in_range(t)).collect();
        let histograms: Vec<_> = points.histograms.iter().filter(|(t, _)| in_range(t)).collect();
        if values.is_empty() && histograms.is_empty() {
            continue;
        }
        if !first_series {
            out.push(',');
        }
        first_series = false;
        out.push_str(r#"{"metric":{"#);
        for (index, (name, value)) in labels.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            write_string(&mut out, name);
            out.push(':');
            write_string(&mut out, value);
        }
        out.push('}');
        write_points(&mut out, "values", &values, |out, value| write_string(out, value));
        write_points(&mut out, "histograms", &histograms, |out, histogram| out.push_str(&histogram.to_string()));
        out.push('}');
    }
    out.push_str("]}");
    if !warnings.is_empty() {
        out.push_str(r#","warnings":["#);
        for (index, warning) in warnings.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            write_string(&mut out, warning);
        }
        out.push(']');
    }
    out.push('}');
    out
}

/// Writes `,"<field>":[[t,value],...]` unless `points` is empty.
fn write_points<V>(out: &mut String, field: &str, points: &[&(i64, V)], write_value: impl Fn(&mut String, &V)) {
    if points.is_empty() {
        return;
    }
    out.push_str(",\"");
    out.push_str(field);
    out.push_str("\":[");
    for (index, (t, value)) in points.iter().map(|point| (&point.0, &point.1)).enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push('[');
        write_timestamp(out, *t);
        out.push(',');
        write_value(out, value);
        out.push(']');
    }
    out.push(']');
}

/// Adds `points` to `into`, keeping each series' points in time order; a point already
/// present at a timestamp is kept (pieces of one key never overlap, so this is only a guard).
pub fn merge_into(into: &mut Matrix, from: &Matrix) {
    for (labels, points) in from {
        let target = into.entry(labels.clone()).or_default();
        merge_points(&mut target.values, &points.values);
        merge_points(&mut target.histograms, &points.histograms);
    }
}

fn merge_points<V: Clone>(into: &mut Vec<(i64, V)>, from: &[(i64, V)]) {
    if from.is_empty() {
        return;
    }
    if into.last().is_none_or(|(last, _)| *last < from[0].0) {
        into.extend_from_slice(from);
        return;
    }
    let mut merged: BTreeMap<i64, V> = from.iter().cloned().collect();
    for (t, value) in into.drain(..) {
        merged.insert(t, value);
    }
    into.extend(merged);
}

/// The points of `matrix` within `[start_ms, end_ms]`.
pub fn slice(matrix: &Matrix, start_ms: i64, end_ms: i64) -> Matrix {
    let in_range = |t: i64| (start_ms..=end_ms).contains(&t);
    matrix
        .iter()
        .filter_map(|(labels, points)| {
            let values: Vec<_> = points.values.iter().filter(|(t, _)| in_range(*t)).cloned().collect();
            let histograms: Vec<_> = points.histograms.iter().filter(|(t, _)| in_range(*t)).cloned().collect();
            (!values.is_empty() || !histograms.is_empty())
                .then(|| (labels.clone(), SeriesPoints { values, histograms }))
        })
        .collect()
}

/// Bytes a matrix is counted as against the extents bound.
pub fn matrix_size_bytes(matrix: &Matrix) -> usize {
    matrix
        .iter()
        .map(|(labels, points)| {
            64 + labels.iter().map(|(name, value)| name.len() + value.len() + 48).sum::<usize>()
                + points.values.iter().map(|(_, value)| 32 + value.len()).sum::<usize>()
                + points.histograms.iter().map(|(_, histogram)| 64 + histogram.to_string().len()).sum::<usize>()
        })
        .sum()
}

/// One cached time range of one key: every point of the key's query in `[start_ms, end_ms]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Extent {
    /// First grid point covered.
    pub start_ms: i64,
    /// Last grid point covered.
    pub end_ms: i64,
    /// The points.
    pub matrix: Matrix,
}

/// The extents of every key, bounded by bytes; the least recently used key goes first.
pub struct ExtentCache {
    keys: HashMap<String, KeyExtents>,
    order: BTreeMap<u64, String>,
    sequence_next: u64,
    size_bytes: usize,
    size_bytes_max: usize,
}

struct KeyExtents {
    /// Sorted by start, disjoint, not adjacent (adjacent ones are joined).
    extents: Vec<Held>,
    size_bytes: usize,
    sequence: u64,
}

/// An extent and the bytes it is counted as, computed once when its points arrive.
struct Held {
    extent: Extent,
    size_bytes: usize,
}

/// Bytes counted per extent on top of its points.
const EXTENT_OVERHEAD_BYTES: usize = 48;
/// Bytes counted per key on top of its extents.
const KEY_OVERHEAD_BYTES: usize = 64;

/// What a request can take from the cache.
#[derive(Debug, PartialEq)]
pub struct Plan {
    /// The cached points within the request's range.
    pub cached: Matrix,
    /// Ranges (first and last grid point) to fetch, in order.
    pub gaps: Vec<(i64, i64)>,
}

impl ExtentCache {
    /// An empty cache of at most `size_bytes_max` bytes.
    pub fn new(size_bytes_max: usize) -> ExtentCache {
        ExtentCache { keys: HashMap::new(), order: BTreeMap::new(), sequence_next: 0, size_bytes: 0, size_bytes_max }
    }

    /// What of `[start_ms, end_ms]` (grid points `step_ms` apart) `key` holds, and the gaps.
    pub fn plan(&mut self, key: &str, start_ms: i64, end_ms: i64, step_ms: i64) -> Plan {
        let mut cached = Matrix::new();
        let mut gaps = Vec::new();
        let mut cursor = start_ms;
        self.sequence_next += 1;
        let sequence = self.sequence_next;
        if let Some(entry) = self.keys.get_mut(key) {
            self.order.remove(&entry.sequence);
            entry.sequence = sequence;
            self.order.insert(sequence, key.to_string());
            for extent in entry.extents.iter().map(|held| &held.extent) {
                if extent.end_ms < cursor || cursor > end_ms {
                    continue;
                }
                if extent.start_ms > end_ms {
                    break;
                }
                if extent.start_ms > cursor {
                    gaps.push((cursor, extent.start_ms - step_ms));
                }
                merge_into(&mut cached, &slice(&extent.matrix, cursor.max(extent.start_ms), end_ms));
                cursor = extent.end_ms + step_ms;
            }
        }
        if cursor <= end_ms {
            gaps.push((cursor, end_ms));
        }
        Plan { cached, gaps }
    }

    /// Records that `extent` holds every point of `key` in its range, joining it with the
    /// key's extents it overlaps or touches.
    pub fn insert(&mut self, key: &str, extent: Extent, step_ms: i64) {
        if extent.start_ms > extent.end_ms {
            return;
        }
        self.sequence_next += 1;
        let sequence = self.sequence_next;
        let entry = self.keys.entry(key.to_string()).or_insert_with(|| KeyExtents {
            extents: Vec::new(),
            size_bytes: 0,
            sequence,
        });
        self.order.remove(&entry.sequence);
        entry.sequence = sequence;
        self.order.insert(sequence, key.to_string());
        let mut joined = Held { size_bytes: EXTENT_OVERHEAD_BYTES + matrix_size_bytes(&extent.matrix), extent };
        let mut kept = Vec::with_capacity(entry.extents.len() + 1);
        for existing in entry.extents.drain(..) {
            let (held, new) = (&existing.extent, &joined.extent);
            let touches = held.start_ms <= new.end_ms + step_ms && new.start_ms <= held.end_ms + step_ms;
            if !touches {
                kept.push(existing);
                continue;
            }
            // The smaller goes into the larger: a dashboard's new tail costs the tail, not the
            // hours it joins. Sizes add up (points at a shared timestamp, a guard only, are
            // counted twice: the bound errs on the safe side).
            let (mut base, other) =
                if existing.size_bytes >= joined.size_bytes { (existing, joined) } else { (joined, existing) };
            base.extent.start_ms = base.extent.start_ms.min(other.extent.start_ms);
            base.extent.end_ms = base.extent.end_ms.max(other.extent.end_ms);
            merge_into(&mut base.extent.matrix, &other.extent.matrix);
            base.size_bytes += other.size_bytes - EXTENT_OVERHEAD_BYTES;
            joined = base;
        }
        kept.push(joined);
        kept.sort_by_key(|held| held.extent.start_ms);
        let size = key.len() + KEY_OVERHEAD_BYTES + kept.iter().map(|held| held.size_bytes).sum::<usize>();
        self.size_bytes = self.size_bytes - entry.size_bytes + size;
        entry.size_bytes = size;
        entry.extents = kept;
        while self.size_bytes > self.size_bytes_max {
            let Some((_, oldest)) = self.order.pop_first() else { break };
            if let Some(removed) = self.keys.remove(&oldest) {
                self.size_bytes -= removed.size_bytes;
            }
        }
    }

    /// Bytes held.
    pub fn size_bytes(&self) -> usize {
        self.size_bytes
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// `[start_ms, end_ms]` cut into pieces that do not cross a multiple of `interval_ms` (a day by
/// default), each starting and ending on the step grid.
pub fn split_by_interval(start_ms: i64, end_ms: i64, step_ms: i64, interval_ms: i64) -> Vec<(i64, i64)> {
    let mut pieces = Vec::new();
    let mut cursor = start_ms;
    while cursor <= end_ms {
        let boundary = cursor - cursor.rem_euclid(interval_ms) + interval_ms;
        // The last grid point before the boundary.
        let last_before = cursor + (boundary - 1 - cursor) / step_ms * step_ms;
        let piece_end = last_before.min(end_ms);
        pieces.push((cursor, piece_end));
        cursor = piece_end + step_ms;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, points: &[(i64, &str)]) -> (SeriesLabels, SeriesPoints) {
        (
            vec![("__name__".to_string(), name.to_string())],
            SeriesPoints { values: points.iter().map(|(t, v)| (*t, v.to_string())).collect(), histograms: Vec::new() },
        )
    }

    #[test]
    fn answers_round_trip() {
        let body = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"job":"a","__name__":"up"},"values":[[1.5,"1"],[3,"0"]]},
            {"metric":{},"histograms":[[2,{"count":"3","sum":"1"}]]}]}}"#;
        let answer = parse_range_answer(body.as_bytes()).unwrap();
        assert!(answer.warnings.is_empty());
        let rendered = render_range_answer(&answer.matrix, 0, 10_000, &[]);
        assert_eq!(
            rendered,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"histograms":[[2,{"count":"3","sum":"1"}]]},{"metric":{"__name__":"up","job":"a"},"values":[[1.500,"1"],[3,"0"]]}]}}"#
        );
        assert_eq!(
            render_range_answer(&answer.matrix, 2_500, 2_900, &["w".into()]),
            r#"{"status":"success","data":{"resultType":"matrix","result":[]},"warnings":["w"]}"#
        );
        assert!(parse_range_answer(br#"{"status":"error","error":"x"}"#).is_none());
        assert!(parse_range_answer(br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#).is_none());
    }

    #[test]
    fn a_forward_moving_window_fetches_only_its_tail() {
        let mut cache = ExtentCache::new(1 << 20);
        let plan = cache.plan("k", 0, 100, 10);
        assert_eq!(plan.gaps, [(0, 100)]);
        let first: Matrix = [series("up", &[(0, "1"), (50, "1"), (100, "1")])].into_iter().collect();
        cache.insert("k", Extent { start_ms: 0, end_ms: 100, matrix: first }, 10);
        let plan = cache.plan("k", 30, 130, 10);
        assert_eq!(plan.gaps, [(110, 130)]);
        assert_eq!(plan.cached, [series("up", &[(50, "1"), (100, "1")])].into_iter().collect());
        let tail: Matrix = [series("up", &[(120, "2")]), series("new", &[(130, "5")])].into_iter().collect();
        cache.insert("k", Extent { start_ms: 110, end_ms: 130, matrix: tail }, 10);
        let plan = cache.plan("k", 0, 130, 10);
        assert!(plan.gaps.is_empty());
        assert_eq!(plan.cached.len(), 2);
        assert_eq!(cache.keys["k"].extents.len(), 1, "touching extents are joined");
    }

    #[test]
    fn holes_between_extents_are_gaps() {
        let mut cache = ExtentCache::new(1 << 20);
        cache.insert("k", Extent { start_ms: 20, end_ms: 40, matrix: Matrix::new() }, 10);
        cache.insert("k", Extent { start_ms: 80, end_ms: 90, matrix: Matrix::new() }, 10);
        assert_eq!(cache.plan("k", 0, 120, 10).gaps, [(0, 10), (50, 70), (100, 120)]);
        assert_eq!(cache.plan("k", 20, 40, 10).gaps, []);
        assert_eq!(cache.plan("k", 30, 85, 5).gaps, [(45, 75)]);
        assert_eq!(cache.plan("other", 0, 10, 10).gaps, [(0, 10)]);
    }

    #[test]
    fn the_bound_evicts_least_recently_used_keys() {
        let points: Vec<(i64, String)> = (0..100).map(|i| (i * 10, "1".to_string())).collect();
        let matrix: Matrix = [(vec![], SeriesPoints { values: points, histograms: vec![] })].into_iter().collect();
        let one_key = matrix_size_bytes(&matrix) + EXTENT_OVERHEAD_BYTES + KEY_OVERHEAD_BYTES + 1;
        let mut cache = ExtentCache::new(one_key * 2);
        for key in ["a", "b"] {
            cache.insert(key, Extent { start_ms: 0, end_ms: 990, matrix: matrix.clone() }, 10);
        }
        cache.plan("a", 0, 10, 10);
        cache.insert("c", Extent { start_ms: 0, end_ms: 990, matrix: matrix.clone() }, 10);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.plan("b", 0, 990, 10).gaps, [(0, 990)]);
        assert!(cache.size_bytes() <= one_key * 2);
    }

    #[test]
    fn splits_follow_interval_and_grid() {
        assert_eq!(split_by_interval(0, 240, 30, 100), [(0, 90), (120, 180), (210, 240)]);
        assert_eq!(split_by_interval(90, 100, 10, 100), [(90, 90), (100, 100)]);
        assert_eq!(split_by_interval(5, 5, 10, 100), [(5, 5)]);
        assert_eq!(split_by_interval(0, 1_000, 500, 100), [(0, 0), (500, 500), (1_000, 1_000)]);
    }
}
