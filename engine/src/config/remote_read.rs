//! The `remote_read` section (Prometheus config.go `RemoteReadConfig`): stores the engine reads
//! through their remote-read endpoint when it answers a query, merged with its own storage.
//!
//! Defaults are Prometheus 2.42's (`DefaultRemoteReadConfig`: `remote_timeout` 1 m,
//! `read_recent` false, `filter_external_labels` true). Keys the engine does not implement (TLS,
//! OAuth 2, SigV4, Azure AD, proxies) are errors saying so.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::alerting::{authorization_header, RawAuthorization, RawBasicAuth};
use super::{ConfigError, DurationMs};

/// Prometheus' remote read `remote_timeout` default.
const REMOTE_READ_TIMEOUT_MS_DEFAULT: i64 = 60_000;

/// One resolved `remote_read` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteReadConfig {
    /// The store's remote-read endpoint (`url`), an `http://` URL.
    pub url: String,
    /// Name (`name`, else 6 hex digits of the URL's SHA-256), in warnings and logs.
    pub name: String,
    /// Longest one read may take (`remote_timeout`).
    pub remote_timeout_ms: i64,
    /// Extra request headers (`headers`).
    pub headers: BTreeMap<String, String>,
    /// `Authorization` header value (from `basic_auth` or `authorization`), if any.
    pub authorization: Option<String>,
    /// Equality matchers a selector must carry for this store to be asked
    /// (`required_matchers`).
    pub required_matchers: BTreeMap<String, String>,
    /// Ask the store also for times the local storage holds (`read_recent`); otherwise only
    /// for what lies before the oldest local sample.
    pub read_recent: bool,
    /// Send the engine's external labels as equality matchers (`filter_external_labels`), so a
    /// store shared by several servers answers this one's series only.
    pub filter_external_labels: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRemoteRead {
    url: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    remote_timeout: Option<DurationMs>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    required_matchers: BTreeMap<String, String>,
    #[serde(default)]
    read_recent: Option<bool>,
    #[serde(default)]
    filter_external_labels: Option<bool>,
    #[serde(default)]
    basic_auth: Option<RawBasicAuth>,
    #[serde(default)]
    authorization: Option<RawAuthorization>,
    #[serde(default)]
    follow_redirects: Option<bool>,
    #[serde(default)]
    enable_http2: Option<bool>,
    #[serde(default)]
    tls_config: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    oauth2: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    sigv4: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    azuread: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    proxy_url: Option<serde_yaml_ng::Value>,
}

pub(super) fn resolve(raw: Vec<RawRemoteRead>) -> Result<Vec<RemoteReadConfig>, ConfigError> {
    let mut configs: Vec<RemoteReadConfig> = Vec::new();
    for (index, entry) in raw.into_iter().enumerate() {
        let path = format!("remote_read[{index}]");
        let invalid = |message: String| ConfigError::Invalid { path: path.clone(), message };
        let unsupported = [
            ("tls_config", entry.tls_config.is_some()),
            ("oauth2", entry.oauth2.is_some()),
            ("sigv4", entry.sigv4.is_some()),
            ("azuread", entry.azuread.is_some()),
            ("proxy_url", entry.proxy_url.is_some()),
        ];
        let _ = (entry.follow_redirects, entry.enable_http2);
        let taken: Vec<(&str, &str)> =
            configs.iter().map(|config| (config.name.as_str(), config.url.as_str())).collect();
        let name = super::remote_write::entry_identity(
            &path,
            "remote read",
            &unsupported,
            &entry.url,
            entry.name,
            &taken,
            false,
        )?;
        let authorization = authorization_header(entry.basic_auth, entry.authorization).map_err(invalid)?;
        // A zero duration is refused while parsing.
        let remote_timeout_ms = entry.remote_timeout.map_or(REMOTE_READ_TIMEOUT_MS_DEFAULT, |duration| duration.0);
        configs.push(RemoteReadConfig {
            url: entry.url,
            name,
            remote_timeout_ms,
            headers: entry.headers,
            authorization,
            required_matchers: entry.required_matchers,
            read_recent: entry.read_recent.unwrap_or(false),
            filter_external_labels: entry.filter_external_labels.unwrap_or(true),
        });
    }
    Ok(configs)
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    #[test]
    fn remote_read_resolves_with_prometheus_defaults() {
        let config = parse(
            "remote_read:\n  - url: http://store:9090/api/v1/read\n  - url: http://other:9090/api/v1/read\n    name: other\n    \
             read_recent: true\n    filter_external_labels: false\n    remote_timeout: 5s\n    \
             required_matchers: {tier: cold}\n    basic_auth: {username: u, password: p}\n",
        )
        .unwrap();
        let [first, second] = config.remote_read.as_slice() else { panic!("{:?}", config.remote_read) };
        assert_eq!(first.remote_timeout_ms, 60_000);
        assert!(!first.read_recent && first.filter_external_labels);
        assert_eq!(first.name.len(), 6);
        assert_eq!(second.name, "other");
        assert!(second.read_recent && !second.filter_external_labels);
        assert_eq!(second.remote_timeout_ms, 5_000);
        assert_eq!(second.required_matchers.get("tier").map(String::as_str), Some("cold"));
        assert_eq!(second.authorization.as_deref(), Some("Basic dTpw"));
    }

    #[test]
    fn bad_remote_read_entries_are_refused() {
        for (text, expected) in [
            ("remote_read:\n  - url: ftp://x/\n", "remote_read[0]"),
            ("remote_read:\n  - url: http://x/\n    tls_config: {}\n", "tls_config is not supported yet"),
            ("remote_read:\n  - url: http://x/\n  - url: http://x/\n", "multiple remote read configs"),
            ("remote_read:\n  - url: http://x/\n    nonsense: 1\n", "nonsense"),
            ("remote_read:\n  - url: http://x/\n    remote_timeout: 0s\n", "greater than zero"),
        ] {
            let error = parse(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }
}
