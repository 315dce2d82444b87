//! Push paths: `/metrics/job/<job>{/<label>/<value>}` and `/metrics/job@base64/<job>...`, with
//! `<label>@base64/<value>` for values in base64url (RFC 4648 §5, padding optional, `=` alone
//! for the empty value), as handler/push.go `splitLabels` and `decodeBase64` read them.
//!
//! The path is percent-decoded before it is split (Go's router matches the decoded
//! `URL.Path`). Label names are Prometheus' legacy names and may not start with `__`; a label
//! given twice keeps its last value; the job from the path always wins over a `job` label.
//! Pure functions.

use std::collections::BTreeMap;

use super::store::LabelPairs;

/// The prefix of every push path.
pub const PUSH_PATH_PREFIX: &str = "/metrics/job";

const BASE64_SUFFIX: &str = "@base64";

/// Why a push path was refused (400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    /// Not under `/metrics/job/` or `/metrics/job@base64/`.
    #[error("not a push path: {0:?}")]
    NotPushPath(String),
    /// Empty job name.
    #[error("job name is required")]
    JobRequired,
    /// The labels part has a name without a value.
    #[error("odd number of components in label string {0:?}")]
    OddComponents(String),
    /// A label name that is not a legacy Prometheus name or is reserved.
    #[error("improper label name {0:?}")]
    ImproperName(String),
    /// A base64 value that does not decode.
    #[error("invalid base64 encoding for {what}: {value:?}")]
    Base64 {
        /// Which value.
        what: String,
        /// As given.
        value: String,
    },
    /// Percent escapes or base64 that do not decode to UTF-8.
    #[error("path is not valid UTF-8 after decoding")]
    NotUtf8,
}

/// The grouping labels (sorted, `job` included) a push path names.
pub fn parse_grouping(path: &str) -> Result<LabelPairs, PathError> {
    let decoded = percent_decode(path)?;
    let rest = decoded.strip_prefix(PUSH_PATH_PREFIX).ok_or_else(|| PathError::NotPushPath(path.to_string()))?;
    let (job_base64, rest) = match rest.strip_prefix(BASE64_SUFFIX) {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    let rest = rest.strip_prefix('/').ok_or_else(|| PathError::NotPushPath(path.to_string()))?;
    let (job, labels_text) = match rest.find('/') {
        Some(index) => (&rest[..index], &rest[index..]),
        None => (rest, ""),
    };
    let job = if job_base64 { decode_base64(job).map_err(|_| base64_error("job name", job))? } else { job.to_string() };
    let mut labels = split_labels(labels_text)?;
    if job.is_empty() {
        return Err(PathError::JobRequired);
    }
    labels.insert("job".to_string(), job);
    Ok(labels.into_iter().collect())
}

fn base64_error(what: &str, value: &str) -> PathError {
    PathError::Base64 { what: what.to_string(), value: value.to_string() }
}

/// handler/push.go `splitLabels`: `labels` is empty or `/` or starts with `/`.
fn split_labels(labels: &str) -> Result<BTreeMap<String, String>, PathError> {
    let mut result = BTreeMap::new();
    if labels.len() <= 1 {
        return Ok(result);
    }
    let components: Vec<&str> = labels[1..].split('/').collect();
    if !components.len().is_multiple_of(2) {
        return Err(PathError::OddComponents(labels.to_string()));
    }
    for pair in components.chunks(2) {
        let (name, value) = (pair[0], pair[1]);
        let trimmed = name.strip_suffix(BASE64_SUFFIX).unwrap_or(name);
        if !is_legacy_label_name(trimmed) || trimmed.starts_with("__") {
            return Err(PathError::ImproperName(trimmed.to_string()));
        }
        let value = if trimmed.len() == name.len() {
            value.to_string()
        } else {
            decode_base64(value).map_err(|_| base64_error(&format!("label {trimmed}"), value))?
        };
        result.insert(trimmed.to_string(), value);
    }
    Ok(result)
}

fn is_legacy_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|first| first.is_ascii_alphabetic() || first == b'_')
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

/// handler/push.go `decodeBase64`: base64url without padding, trailing `=` ignored.
pub fn decode_base64(text: &str) -> Result<String, PathError> {
    let text = text.trim_end_matches('=');
    if text.len() % 4 == 1 {
        return Err(base64_error("value", text));
    }
    let mut bytes = Vec::with_capacity(text.len() * 3 / 4);
    let (mut accumulator, mut bit_count) = (0u32, 0u32);
    for byte in text.bytes() {
        let sextet = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return Err(base64_error("value", text)),
        };
        accumulator = (accumulator << 6) | u32::from(sextet);
        bit_count += 6;
        if bit_count >= 8 {
            bit_count -= 8;
            bytes.push((accumulator >> bit_count) as u8);
            accumulator &= (1 << bit_count) - 1;
        }
    }
    String::from_utf8(bytes).map_err(|_| PathError::NotUtf8)
}

/// `%XX` escapes decoded (no `+` for space: this is a path, not a form).
fn percent_decode(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = |byte: u8| (byte as char).to_digit(16);
        match (bytes[index], bytes.get(index + 1).copied().and_then(hex), bytes.get(index + 2).copied().and_then(hex)) {
            (b'%', Some(high), Some(low)) => {
                decoded.push((high * 16 + low) as u8);
                index += 3;
            }
            (byte, _, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(decoded).map_err(|_| PathError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(path: &str, expected: Result<&[(&str, &str)], PathError>) {
        let expected = expected.map(|pairs| {
            pairs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect::<LabelPairs>()
        });
        assert_eq!(parse_grouping(path), expected, "{path}");
    }

    #[test]
    fn grouping_labels_from_paths() {
        check("/metrics/job/batch", Ok(&[("job", "batch")]));
        check("/metrics/job/batch/", Ok(&[("job", "batch")]));
        check("/metrics/job/batch/zone/eu/instance/a", Ok(&[("instance", "a"), ("job", "batch"), ("zone", "eu")]));
        // The job of the path beats a `job` label; a repeated label keeps its last value.
        check("/metrics/job/a/job/b/x/1/x/2", Ok(&[("job", "a"), ("x", "2")]));
        check("/metrics/job/a%2Fb", Err(PathError::OddComponents("/b".to_string())));
        check("/metrics/job/a%20b/x/%C3%A9", Ok(&[("job", "a b"), ("x", "é")]));
        check("/metrics/job/", Err(PathError::JobRequired));
        check("/metrics/job", Err(PathError::NotPushPath("/metrics/job".to_string())));
        check("/metrics/jobs/a", Err(PathError::NotPushPath("/metrics/jobs/a".to_string())));
        check("/metrics/job/a/x", Err(PathError::OddComponents("/x".to_string())));
        check("/metrics/job/a/x/1/", Err(PathError::OddComponents("/x/1/".to_string())));
        check("/metrics/job/a/__x/1", Err(PathError::ImproperName("__x".to_string())));
        check("/metrics/job/a/1x/1", Err(PathError::ImproperName("1x".to_string())));
        check("/metrics/job/a/x-y/1", Err(PathError::ImproperName("x-y".to_string())));
    }

    #[test]
    fn base64_values_and_jobs() {
        // "foo/bar" and "/path/x" in base64url, with and without padding.
        check("/metrics/job/a/y@base64/Zm9vL2Jhcg", Ok(&[("job", "a"), ("y", "foo/bar")]));
        check("/metrics/job/a/y@base64/Zm9vL2Jhcg==", Ok(&[("job", "a"), ("y", "foo/bar")]));
        check("/metrics/job@base64/L3BhdGgveA/i/1", Ok(&[("i", "1"), ("job", "/path/x")]));
        // The empty value: `=` (or nothing).
        check("/metrics/job/a/x@base64/=", Ok(&[("job", "a"), ("x", "")]));
        check("/metrics/job/a/x@base64/", Ok(&[("job", "a"), ("x", "")]));
        check("/metrics/job@base64/=", Err(PathError::JobRequired));
        // URL-safe alphabet: `-` and `_`, not `+` and `/`.
        assert_eq!(decode_base64("Pj4_"), Ok(">>?".to_string()));
        assert_eq!(decode_base64("-_8"), Err(PathError::NotUtf8), "0xfb 0xff");
        assert_eq!(decode_base64("w6k"), Ok("é".to_string()));
        assert!(matches!(parse_grouping("/metrics/job/a/x@base64/!!"), Err(PathError::Base64 { .. })));
        assert!(matches!(parse_grouping("/metrics/job/a/x@base64/Zm9vL"), Err(PathError::Base64 { .. })));
        assert!(matches!(parse_grouping("/metrics/job/a/x@base64/a+b"), Err(PathError::Base64 { .. })));
        assert!(matches!(parse_grouping("/metrics/job@base64/!"), Err(PathError::Base64 { .. })));
    }
}
