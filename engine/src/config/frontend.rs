//! The `frontend` section (not a Prometheus key): the query frontend run inside `server`, on its
//! own listen address, in front of this server's API unless `downstream_url` names another.
//! `config` takes the keys of the `frontend --config.file` file inline.
//!
//! ```yaml
//! frontend:
//!   listen_address: 0.0.0.0:9092
//!   config:
//!     cache: {l1_ttl: 5s}
//!     limits: {user_requests_per_minute: 100}
//! ```

use serde::Deserialize;

use super::ConfigError;
use crate::frontend::config::FrontendConfig;

/// The resolved section.
#[derive(Debug, Clone, PartialEq)]
pub struct FrontendSection {
    /// `host:port` the frontend listens on.
    pub listen_address: String,
    /// The settings; an empty `downstream_url` means this server's own API.
    pub config: FrontendConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFrontendSection {
    #[serde(default)]
    listen_address: Option<String>,
    #[serde(default)]
    downstream_url: Option<String>,
    #[serde(default)]
    config: Option<serde_yaml_ng::Value>,
}

pub(super) fn resolve(raw: Option<RawFrontendSection>) -> Result<Option<FrontendSection>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let invalid = |message: String| ConfigError::Invalid { path: "frontend".to_string(), message };
    let listen_address = raw
        .listen_address
        .filter(|address| !address.is_empty())
        .ok_or_else(|| invalid("needs listen_address".to_string()))?;
    let mut config = FrontendConfig::new(String::new());
    if let Some(value) = raw.config {
        let yaml = serde_yaml_ng::to_string(&value).map_err(|error| invalid(format!("config: {error}")))?;
        config.apply_file(&yaml).map_err(|error| invalid(format!("config: {error}")))?;
    }
    if let Some(url) = raw.downstream_url {
        crate::io::http_client::HttpEndpoint::parse(&url)
            .map_err(|error| invalid(format!("downstream_url: {error}")))?;
        config.downstream_url = url;
    }
    Ok(Some(FrontendSection { listen_address, config }))
}

#[cfg(test)]
mod tests {
    use super::super::parse;

    #[test]
    fn section_resolves_and_refuses_bad_settings() {
        let config =
            parse("frontend:\n  listen_address: 127.0.0.1:9092\n  config:\n    cache: {l1_ttl: 2s}\n").unwrap();
        let section = config.frontend.unwrap();
        assert_eq!(section.listen_address, "127.0.0.1:9092");
        assert_eq!(section.config.cache.l1_ttl_ms, 2_000);
        assert!(section.config.downstream_url.is_empty());
        let error = parse("frontend:\n  config: {}\n").unwrap_err().to_string();
        assert!(error.contains("listen_address"), "{error}");
        let error =
            parse("frontend:\n  listen_address: a:1\n  config: {cache: {l1_ttl: soon}}\n").unwrap_err().to_string();
        assert!(error.contains("l1_ttl"), "{error}");
        let error = parse("frontend:\n  listen_address: a:1\n  downstream_url: https://x\n").unwrap_err().to_string();
        assert!(error.contains("https"), "{error}");
    }
}
