//! Prometheus' JSON envelope for query results (web/api/v1/api.go `response`, and
//! util/jsonutil `MarshalTimestamp`/`MarshalFloat`). Written by hand rather than through serde
//! so that number formatting matches Prometheus byte for byte and output order is fixed.

use std::fmt::Write as _;

use crate::model::{Labels, Sample};
use crate::promql::Value;

/// `{"status":"success","data":{"resultType":...,"result":...}}`.
pub fn success(value: &Value) -> String {
    success_annotated(value, &crate::promql::Annotations::default())
}

/// [`success`] with the query's warnings and infos as Prometheus 3 adds them (`"warnings"`,
/// `"infos"` next to `"data"`, left out when empty).
pub fn success_annotated(value: &Value, annotations: &crate::promql::Annotations) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("{\"status\":\"success\",\"data\":{\"resultType\":\"");
    out.push_str(value.type_name());
    out.push_str("\",\"result\":");
    match value {
        Value::Scalar(sample) => write_point(&mut out, sample.timestamp_ms, sample.value),
        Value::String(timestamp_ms, text) => {
            out.push('[');
            write_timestamp(&mut out, *timestamp_ms);
            out.push(',');
            write_string(&mut out, text);
            out.push(']');
        }
        Value::Vector(samples) => {
            out.push('[');
            for (index, sample) in samples.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                write_labels(&mut out, &sample.labels);
                out.push_str(",\"value\":");
                write_point(&mut out, sample.timestamp_ms, sample.value);
                out.push('}');
            }
            out.push(']');
        }
        Value::Matrix(series) => {
            out.push('[');
            for (index, series) in series.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                write_labels(&mut out, &series.labels);
                out.push_str(",\"values\":[");
                for (point_index, Sample { timestamp_ms, value }) in series.samples.iter().enumerate() {
                    if point_index > 0 {
                        out.push(',');
                    }
                    write_point(&mut out, *timestamp_ms, *value);
                }
                out.push_str("]}");
            }
            out.push(']');
        }
    }
    out.push('}');
    for (key, messages) in [("warnings", &annotations.warnings), ("infos", &annotations.infos)] {
        if messages.is_empty() {
            continue;
        }
        out.push_str(",\"");
        out.push_str(key);
        out.push_str("\":[");
        for (index, message) in messages.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            write_string(&mut out, message);
        }
        out.push(']');
    }
    out.push('}');
    out
}

/// `/api/v1/status/tsdb`'s envelope, with Prometheus' field names.
pub fn tsdb_status(status: &crate::tsdb::TsdbStatus) -> String {
    let mut out = String::with_capacity(1024);
    let (min_time_ms, max_time_ms) = status.time_range_ms.unwrap_or((i64::MAX, i64::MIN));
    let _ = write!(
        out,
        "{{\"status\":\"success\",\"data\":{{\"headStats\":{{\"numSeries\":{},\"numLabelPairs\":{},\"chunkCount\":{},\"minTime\":{},\"maxTime\":{}}}",
        status.series_count, status.label_pair_count, status.chunk_count, min_time_ms, max_time_ms
    );
    let lists = [
        ("seriesCountByMetricName", &status.series_count_by_metric_name),
        ("labelValueCountByLabelName", &status.label_value_count_by_label_name),
        ("memoryInBytesByLabelName", &status.memory_in_bytes_by_label_name),
        ("seriesCountByLabelValuePair", &status.series_count_by_label_value_pair),
    ];
    for (key, entries) in lists {
        let _ = write!(out, ",\"{key}\":[");
        for (index, (name, value)) in entries.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            out.push_str("{\"name\":");
            write_string(&mut out, name);
            let _ = write!(out, ",\"value\":{value}}}");
        }
        out.push(']');
    }
    out.push_str("}}");
    out
}

/// `{"status":"error","errorType":...,"error":...}`.
pub fn error(error_type: &str, message: &str) -> String {
    let mut out = String::from("{\"status\":\"error\",\"errorType\":");
    write_string(&mut out, error_type);
    out.push_str(",\"error\":");
    write_string(&mut out, message);
    out.push('}');
    out
}

pub(crate) fn write_labels(out: &mut String, labels: &Labels) {
    out.push('{');
    for (index, label) in labels.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        write_string(out, &label.name);
        out.push(':');
        write_string(out, &label.value);
    }
    out.push('}');
}

fn write_point(out: &mut String, timestamp_ms: i64, value: f64) {
    out.push('[');
    write_timestamp(out, timestamp_ms);
    out.push_str(",\"");
    out.push_str(&format_value(value));
    out.push_str("\"]");
}

/// Seconds with up to three decimals, trailing fraction omitted when zero (`MarshalTimestamp`).
pub(crate) fn write_timestamp(out: &mut String, timestamp_ms: i64) {
    if timestamp_ms < 0 {
        out.push('-');
    }
    let magnitude_ms = timestamp_ms.unsigned_abs();
    let _ = write!(out, "{}", magnitude_ms / 1000);
    let fraction_ms = magnitude_ms % 1000;
    if fraction_ms != 0 {
        let _ = write!(out, ".{fraction_ms:03}");
    }
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)` with Prometheus' spellings of the specials.
pub fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value == f64::INFINITY {
        "+Inf".to_string()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        // Rust's Display is the shortest round-trip decimal without exponent, as Go's 'f', -1.
        value.to_string()
    }
}

pub(crate) fn write_string(out: &mut String, text: &str) {
    // serde_json escapes exactly what JSON requires; it cannot fail for a &str.
    out.push_str(&serde_json::to_string(text).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::InstantSample;

    #[test]
    fn vector_envelope_matches_prometheus() {
        let value = Value::Vector(vec![InstantSample {
            labels: Labels::from_pairs([("__name__", "up"), ("job", "node")]),
            timestamp_ms: 1_435_781_451_781,
            value: 1.0,
        }]);
        assert_eq!(
            success(&value),
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"node"},"value":[1435781451.781,"1"]}]}}"#
        );
    }

    #[test]
    fn timestamps_and_values_format_like_go() {
        let mut out = String::new();
        write_timestamp(&mut out, 1500);
        assert_eq!(out, "1.500");
        out.clear();
        write_timestamp(&mut out, -5);
        assert_eq!(out, "-0.005");
        out.clear();
        write_timestamp(&mut out, 7000);
        assert_eq!(out, "7");
        assert_eq!(format_value(0.1), "0.1");
        assert_eq!(format_value(1e21), "1000000000000000000000");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(-2.5), "-2.5");
    }

    #[test]
    fn error_envelope_escapes_message() {
        assert_eq!(
            error("bad_data", "parse \"x\""),
            r#"{"status":"error","errorType":"bad_data","error":"parse \"x\""}"#
        );
    }
}
