//! The embedded alert manager's configuration: the subset of Alertmanager 0.25's YAML
//! (`config/config.go`, `config/notifiers.go`) the engine implements, read from a standalone
//! file ([`parse`]) or from a section nested in another document ([`from_value`]).
//!
//! The subset: `global` (`resolve_timeout`; `slack_api_url` and `pagerduty_url` as receiver
//! defaults; Alertmanager's other global keys are accepted and ignored), the `route` tree,
//! `inhibit_rules`, and `receivers` with `webhook_configs`, `slack_configs` and
//! `pagerduty_configs`. Any other key is an error naming it (as Alertmanager's strict
//! unmarshalling). One extension: `send_resolved_if_muted: bool` in `global` or on the root route.
//!
//! Invariants of a parsed [`AlertManagerConfig`]:
//! - The root route has a receiver, no matchers and no `continue`; every receiver a route names
//!   exists; receiver names are unique (`Config.UnmarshalYAML`, `checkReceiver`).
//! - Matchers, `match` names and `group_by` names are valid; regexes compile; route matchers are
//!   sorted (`config.Matchers.UnmarshalYAML`).
//! - Route timings stay as written (`None` when unset): [`crate::alert::route::Route`] applies
//!   the defaults below and the parent-to-child inheritance, as `dispatch.NewRoute` does.
//! - Receiver defaults are resolved: a Slack config has its `api_url`, a PagerDuty config its
//!   `url` (from `global` when not set), each config its `send_resolved`.
//!
//! Errors: the YAML's own errors (syntax, unknown key, bad value) carry a line and column when
//! parsed from text; cross-field errors name the path (`route.routes[1]`, `receivers[0]`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny};
use serde::Deserialize;

use crate::alert::matcher::{parse_matchers, MatchType, Matcher};
use crate::config::parse_duration_ms;

/// Alertmanager's default `global.resolve_timeout`.
pub const RESOLVE_TIMEOUT_MS_DEFAULT: i64 = 5 * 60_000;
/// Alertmanager's default `group_wait` of the root route (`dispatch.DefaultRouteOpts`).
pub const GROUP_WAIT_MS_DEFAULT: i64 = 30_000;
/// Alertmanager's default `group_interval` of the root route.
pub const GROUP_INTERVAL_MS_DEFAULT: i64 = 5 * 60_000;
/// Alertmanager's default `repeat_interval` of the root route.
pub const REPEAT_INTERVAL_MS_DEFAULT: i64 = 4 * 3_600_000;
/// Alertmanager's default `global.pagerduty_url` (Events API v2).
pub const PAGERDUTY_URL_DEFAULT: &str = "https://events.pagerduty.com/v2/enqueue";
/// The `group_by` entry that groups by all labels.
pub const GROUP_BY_ALL: &str = "...";

/// A parsed and validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertManagerConfig {
    /// The `global` section with its defaults.
    pub global: GlobalConfig,
    /// The root of the routing tree.
    pub route: RouteConfig,
    /// Inhibition rules in file order.
    pub inhibit_rules: Vec<InhibitRuleConfig>,
    /// Receivers in file order; names are unique.
    pub receivers: Vec<ReceiverConfig>,
    /// Extension: send the resolved notification for alerts that were silenced or inhibited
    /// while firing (Alertmanager sends none). Set in `global` or on the root route; the root
    /// route's value wins when both are set. Default false.
    pub send_resolved_if_muted: bool,
    /// The YAML this was read from (`/api/v2/status` shows it as `config.original`).
    pub original: String,
}

impl AlertManagerConfig {
    /// The receiver named `name`, if configured.
    pub fn receiver(&self, name: &str) -> Option<&ReceiverConfig> {
        self.receivers.iter().find(|receiver| receiver.name == name)
    }
}

/// The `global` section.
#[derive(Clone, Debug, PartialEq)]
pub struct GlobalConfig {
    /// How long after its last update an alert without an end time counts as resolved.
    pub resolve_timeout_ms: i64,
    /// Default `api_url` of Slack configs.
    pub slack_api_url: Option<String>,
    /// Default `url` of PagerDuty configs.
    pub pagerduty_url: String,
}

/// One node of the routing tree, as written.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteConfig {
    /// The receiver; `None` inherits the parent's (never `None` at the root).
    pub receiver: Option<String>,
    /// Explicit `group_by` label names (without `...`). Empty inherits the parent's grouping.
    pub group_by: Vec<String>,
    /// `group_by: ['...']`: group by all labels.
    pub group_by_all: bool,
    /// `matchers` (new style), sorted by name, value, type.
    pub matchers: Vec<Matcher>,
    /// `match` (legacy): equality matchers by label name.
    pub match_equal: BTreeMap<String, String>,
    /// `match_re` (legacy): regex matchers by label name (patterns as written; they compile).
    pub match_regex: BTreeMap<String, String>,
    /// `continue`: after this route matches, keep trying its siblings.
    pub continue_matching: bool,
    /// `group_wait`; `None` inherits.
    pub group_wait_ms: Option<i64>,
    /// `group_interval`; `None` inherits. Never zero.
    pub group_interval_ms: Option<i64>,
    /// `repeat_interval`; `None` inherits. Never zero.
    pub repeat_interval_ms: Option<i64>,
    /// Child routes in file order.
    pub routes: Vec<RouteConfig>,
}

impl RouteConfig {
    /// All matchers of the route: `match`, `match_re` and `matchers`, sorted by name, value,
    /// type (`dispatch.NewRoute`).
    pub fn all_matchers(&self) -> Vec<Matcher> {
        combine_matchers(&self.match_equal, &self.match_regex, &self.matchers)
    }
}

/// One inhibition rule, as written.
#[derive(Clone, Debug, PartialEq)]
pub struct InhibitRuleConfig {
    /// `source_matchers`.
    pub source_matchers: Vec<Matcher>,
    /// `source_match` (legacy).
    pub source_match_equal: BTreeMap<String, String>,
    /// `source_match_re` (legacy).
    pub source_match_regex: BTreeMap<String, String>,
    /// `target_matchers`.
    pub target_matchers: Vec<Matcher>,
    /// `target_match` (legacy).
    pub target_match_equal: BTreeMap<String, String>,
    /// `target_match_re` (legacy).
    pub target_match_regex: BTreeMap<String, String>,
    /// `equal`: label names whose values must agree between source and target.
    pub equal: Vec<String>,
}

impl InhibitRuleConfig {
    /// All source-side matchers (`source_match`, `source_match_re`, `source_matchers`), sorted.
    pub fn all_source_matchers(&self) -> Vec<Matcher> {
        combine_matchers(&self.source_match_equal, &self.source_match_regex, &self.source_matchers)
    }

    /// All target-side matchers (`target_match`, `target_match_re`, `target_matchers`), sorted.
    pub fn all_target_matchers(&self) -> Vec<Matcher> {
        combine_matchers(&self.target_match_equal, &self.target_match_regex, &self.target_matchers)
    }
}

fn combine_matchers(
    equal: &BTreeMap<String, String>,
    regex: &BTreeMap<String, String>,
    matchers: &[Matcher],
) -> Vec<Matcher> {
    let mut all: Vec<Matcher> = Vec::with_capacity(equal.len() + regex.len() + matchers.len());
    for (name, value) in equal {
        all.push(Matcher::new(MatchType::Equal, name, value).expect("an equality matcher always builds"));
    }
    for (name, pattern) in regex {
        all.push(Matcher::new(MatchType::Regex, name, pattern).expect("match_re patterns are checked at parse"));
    }
    all.extend(matchers.iter().cloned());
    all.sort();
    all
}

/// One receiver.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceiverConfig {
    /// The unique name routes refer to.
    pub name: String,
    /// Generic webhooks (Alertmanager's webhook payload).
    pub webhook_configs: Vec<WebhookConfig>,
    /// Slack incoming webhooks.
    pub slack_configs: Vec<SlackConfig>,
    /// PagerDuty Events API.
    pub pagerduty_configs: Vec<PagerdutyConfig>,
}

/// `webhook_configs` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookConfig {
    /// The http(s) URL to POST to.
    pub url: String,
    /// Notify resolved alerts too (default true).
    pub send_resolved: bool,
    /// Most alerts per message, the rest truncated; 0 for no limit.
    pub max_alerts: u64,
}

/// `slack_configs` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct SlackConfig {
    /// The incoming-webhook URL (this config's or `global.slack_api_url`).
    pub api_url: String,
    /// Channel override (`#other-channel`, `@user`).
    pub channel: Option<String>,
    /// Message title template; `None` for Alertmanager's `slack.default.title`.
    pub title: Option<String>,
    /// Message text template; `None` for Alertmanager's `slack.default.text`.
    pub text: Option<String>,
    /// Notify resolved alerts too (default false).
    pub send_resolved: bool,
}

/// `pagerduty_configs` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct PagerdutyConfig {
    /// The events URL (this config's or `global.pagerduty_url`).
    pub url: String,
    /// Events API v2 integration key; at least one of `routing_key` and `service_key` is set.
    pub routing_key: Option<String>,
    /// Events API v1 integration key.
    pub service_key: Option<String>,
    /// Severity template; `None` for PagerDuty's default (`error`).
    pub severity: Option<String>,
    /// Description template; `None` for Alertmanager's `pagerduty.default.description`.
    pub description: Option<String>,
    /// Notify resolved alerts too (default true).
    pub send_resolved: bool,
}

/// Why a configuration was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The YAML does not parse or does not fit the schema (unknown key, bad value).
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line; 0 when unknown (a nested section).
        line: usize,
        /// 1-based column; 0 when unknown.
        column: usize,
        /// What is wrong, naming the key.
        message: String,
    },
    /// Values that parse but do not fit together.
    #[error("{path}: {message}")]
    Invalid {
        /// Where, e.g. `route.routes[1]` or `receivers[0] ("team-x")`.
        path: String,
        /// What is wrong (Alertmanager's wording where it has one).
        message: String,
    },
}

/// Parses and validates an Alertmanager configuration file's text.
pub fn parse(yaml: &str) -> Result<AlertManagerConfig, ConfigError> {
    let raw: Option<RawConfig> = if yaml.trim().is_empty() {
        None
    } else {
        serde_yaml_ng::from_str::<Option<RawConfig>>(yaml).map_err(syntax_error)?
    };
    resolve(raw.unwrap_or_default(), yaml.to_string())
}

/// Parses and validates a configuration nested as a section of another YAML document (the
/// section's value, e.g. the `alerting_manager:` key of the engine's file). Errors carry no line.
pub fn from_value(value: serde_yaml_ng::Value) -> Result<AlertManagerConfig, ConfigError> {
    let original = serde_yaml_ng::to_string(&value).unwrap_or_default();
    let raw: Option<RawConfig> = serde_yaml_ng::from_value(value).map_err(syntax_error)?;
    resolve(raw.unwrap_or_default(), original)
}

fn syntax_error(error: serde_yaml_ng::Error) -> ConfigError {
    let (line, column) = error.location().map(|location| (location.line(), location.column())).unwrap_or((0, 0));
    let message = error.to_string();
    // serde_yaml_ng appends " at line L column C"; the location is reported separately.
    let message = match message.rfind(" at line ") {
        Some(index) => message[..index].to_string(),
        None => message,
    };
    ConfigError::Syntax { line, column, message }
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { path: path.into(), message: message.into() }
}

fn resolve(raw: RawConfig, original: String) -> Result<AlertManagerConfig, ConfigError> {
    let raw_global = raw.global.unwrap_or_default();
    let global = GlobalConfig {
        resolve_timeout_ms: raw_global.resolve_timeout.map_or(RESOLVE_TIMEOUT_MS_DEFAULT, |duration| duration.0),
        slack_api_url: raw_global.slack_api_url.map(|url| url.0),
        pagerduty_url: raw_global.pagerduty_url.map_or_else(|| PAGERDUTY_URL_DEFAULT.to_string(), |url| url.0),
    };
    if global.resolve_timeout_ms == 0 {
        return Err(invalid("global", "resolve_timeout must be greater than zero"));
    }

    let mut receivers = Vec::with_capacity(raw.receivers.len());
    let mut names: BTreeSet<String> = BTreeSet::new();
    for (index, raw_receiver) in raw.receivers.into_iter().enumerate() {
        let path = format!("receivers[{index}]");
        let receiver = resolve_receiver(raw_receiver, &global, raw_global.slack_api_url_file.is_some(), &path)?;
        if !names.insert(receiver.name.clone()) {
            return Err(invalid(path, format!("notification config name {:?} is not unique", receiver.name)));
        }
        receivers.push(receiver);
    }

    let raw_route = raw.route.ok_or_else(|| invalid("route", "no route provided in config"))?;
    if raw_route.continue_matching {
        return Err(invalid("route", "cannot have continue in root route"));
    }
    if raw_route.receiver.as_deref().unwrap_or("").is_empty() {
        return Err(invalid("route", "root route must specify a default receiver"));
    }
    if !raw_route.matchers.is_empty() || !raw_route.match_equal.is_empty() || !raw_route.match_regex.is_empty() {
        return Err(invalid("route", "root route must not have any matchers"));
    }
    let send_resolved_if_muted =
        raw_route.send_resolved_if_muted.or(raw_global.send_resolved_if_muted).unwrap_or(false);
    let route = resolve_route(raw_route, "route".to_string(), &names, true)?;

    let inhibit_rules = raw.inhibit_rules.into_iter().map(resolve_inhibit_rule).collect::<Vec<InhibitRuleConfig>>();

    Ok(AlertManagerConfig { global, route, inhibit_rules, receivers, send_resolved_if_muted, original })
}

fn resolve_route(
    raw: RawRoute,
    path: String,
    receivers: &BTreeSet<String>,
    is_root: bool,
) -> Result<RouteConfig, ConfigError> {
    if !is_root && raw.send_resolved_if_muted.is_some() {
        return Err(invalid(path, "send_resolved_if_muted is only allowed on the root route or in global"));
    }
    if let Some(receiver) = &raw.receiver {
        // An empty receiver inherits, as Alertmanager treats `receiver: ""` like no receiver.
        if !receiver.is_empty() && !receivers.contains(receiver) {
            return Err(invalid(path, format!("undefined receiver {receiver:?} used in route")));
        }
    }
    let mut group_by: Vec<String> = Vec::new();
    let mut group_by_all = false;
    for name in raw.group_by.unwrap_or_default() {
        if name == GROUP_BY_ALL {
            group_by_all = true;
            continue;
        }
        if !is_valid_label_name(&name) {
            return Err(invalid(path, format!("invalid label name {name:?} in group_by list")));
        }
        if group_by.contains(&name) {
            return Err(invalid(path, format!("duplicated label {name:?} in group_by")));
        }
        group_by.push(name);
    }
    if group_by_all && !group_by.is_empty() {
        return Err(invalid(
            path,
            "cannot have wildcard group_by (`...`) and other other labels at the same time".to_string(),
        ));
    }
    if raw.group_interval.is_some_and(|duration| duration.0 == 0) {
        return Err(invalid(path, "group_interval cannot be zero"));
    }
    if raw.repeat_interval.is_some_and(|duration| duration.0 == 0) {
        return Err(invalid(path, "repeat_interval cannot be zero"));
    }
    let mut routes = Vec::with_capacity(raw.routes.len());
    for (index, child) in raw.routes.into_iter().enumerate() {
        routes.push(resolve_route(child, format!("{path}.routes[{index}]"), receivers, false)?);
    }
    let mut matchers: Vec<Matcher> = raw.matchers.into_iter().flat_map(|line| line.0).collect();
    matchers.sort();
    Ok(RouteConfig {
        receiver: raw.receiver.filter(|receiver| !receiver.is_empty()),
        group_by,
        group_by_all,
        matchers,
        match_equal: raw.match_equal.into_iter().map(|(name, value)| (name.0, value)).collect(),
        match_regex: raw.match_regex.into_iter().map(|(name, pattern)| (name.0, pattern.0)).collect(),
        continue_matching: raw.continue_matching,
        group_wait_ms: raw.group_wait.map(|duration| duration.0),
        group_interval_ms: raw.group_interval.map(|duration| duration.0),
        repeat_interval_ms: raw.repeat_interval.map(|duration| duration.0),
        routes,
    })
}

fn resolve_inhibit_rule(raw: RawInhibitRule) -> InhibitRuleConfig {
    let lines = |lines: Vec<MatcherLine>| -> Vec<Matcher> {
        let mut matchers: Vec<Matcher> = lines.into_iter().flat_map(|line| line.0).collect();
        matchers.sort();
        matchers
    };
    let equal_map = |map: BTreeMap<LabelName, String>| map.into_iter().map(|(name, value)| (name.0, value)).collect();
    let regex_map = |map: BTreeMap<LabelName, RegexSource>| map.into_iter().map(|(name, re)| (name.0, re.0)).collect();
    let mut equal: Vec<String> = raw.equal.into_iter().map(|name| name.0).collect();
    equal.sort();
    equal.dedup();
    InhibitRuleConfig {
        source_matchers: lines(raw.source_matchers),
        source_match_equal: equal_map(raw.source_match),
        source_match_regex: regex_map(raw.source_match_re),
        target_matchers: lines(raw.target_matchers),
        target_match_equal: equal_map(raw.target_match),
        target_match_regex: regex_map(raw.target_match_re),
        equal,
    }
}

fn resolve_receiver(
    raw: RawReceiver,
    global: &GlobalConfig,
    global_has_slack_api_url_file: bool,
    path: &str,
) -> Result<ReceiverConfig, ConfigError> {
    if raw.name.is_empty() {
        return Err(invalid(path, "missing name in receiver"));
    }
    let path = format!("{path} ({:?})", raw.name);
    let webhook_configs = raw
        .webhook_configs
        .into_iter()
        .map(|webhook| WebhookConfig {
            url: webhook.url.0,
            send_resolved: webhook.send_resolved.unwrap_or(true),
            max_alerts: webhook.max_alerts,
        })
        .collect();
    let mut slack_configs = Vec::with_capacity(raw.slack_configs.len());
    for (index, slack) in raw.slack_configs.into_iter().enumerate() {
        let api_url = match (slack.api_url, &global.slack_api_url) {
            (Some(url), _) => url.0,
            (None, Some(url)) => url.clone(),
            (None, None) if global_has_slack_api_url_file => {
                return Err(invalid(
                    format!("{path}.slack_configs[{index}]"),
                    "global slack_api_url_file is not supported; set api_url or global slack_api_url",
                ));
            }
            (None, None) => {
                return Err(invalid(
                    format!("{path}.slack_configs[{index}]"),
                    "no global Slack API URL set either inline or in a file",
                ));
            }
        };
        slack_configs.push(SlackConfig {
            api_url,
            channel: slack.channel,
            title: slack.title,
            text: slack.text,
            send_resolved: slack.send_resolved.unwrap_or(false),
        });
    }
    let mut pagerduty_configs = Vec::with_capacity(raw.pagerduty_configs.len());
    for (index, pagerduty) in raw.pagerduty_configs.into_iter().enumerate() {
        let routing_key = pagerduty.routing_key.filter(|key| !key.is_empty());
        let service_key = pagerduty.service_key.filter(|key| !key.is_empty());
        if routing_key.is_none() && service_key.is_none() {
            return Err(invalid(
                format!("{path}.pagerduty_configs[{index}]"),
                "missing service or routing key in PagerDuty config",
            ));
        }
        pagerduty_configs.push(PagerdutyConfig {
            url: pagerduty.url.map_or_else(|| global.pagerduty_url.clone(), |url| url.0),
            routing_key,
            service_key,
            severity: pagerduty.severity,
            description: pagerduty.description,
            send_resolved: pagerduty.send_resolved.unwrap_or(true),
        });
    }
    Ok(ReceiverConfig { name: raw.name, webhook_configs, slack_configs, pagerduty_configs })
}

/// `[a-zA-Z_][a-zA-Z0-9_]*` (`model.LabelNameRE`).
pub(crate) fn is_valid_label_name(name: &str) -> bool {
    name.bytes().next().is_some_and(|byte| byte.is_ascii_alphabetic() || byte == b'_')
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

// ---- Raw (as written) forms. deny_unknown_fields gives unknown keys an error naming them.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    global: Option<RawGlobal>,
    #[serde(default)]
    route: Option<RawRoute>,
    #[serde(default)]
    inhibit_rules: Vec<RawInhibitRule>,
    #[serde(default)]
    receivers: Vec<RawReceiver>,
}

/// Alertmanager 0.25's global keys; the ones the engine does not use are accepted and ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
// The ignored keys are fields only so that deny_unknown_fields accepts them.
#[allow(dead_code)]
struct RawGlobal {
    resolve_timeout: Option<Duration>,
    slack_api_url: Option<HttpUrl>,
    pagerduty_url: Option<HttpUrl>,
    send_resolved_if_muted: Option<bool>,
    slack_api_url_file: Option<String>,
    http_config: Option<IgnoredAny>,
    smtp_from: Option<IgnoredAny>,
    smtp_hello: Option<IgnoredAny>,
    smtp_smarthost: Option<IgnoredAny>,
    smtp_auth_username: Option<IgnoredAny>,
    smtp_auth_password: Option<IgnoredAny>,
    smtp_auth_password_file: Option<IgnoredAny>,
    smtp_auth_secret: Option<IgnoredAny>,
    smtp_auth_identity: Option<IgnoredAny>,
    smtp_require_tls: Option<IgnoredAny>,
    opsgenie_api_url: Option<IgnoredAny>,
    opsgenie_api_key: Option<IgnoredAny>,
    opsgenie_api_key_file: Option<IgnoredAny>,
    wechat_api_url: Option<IgnoredAny>,
    wechat_api_secret: Option<IgnoredAny>,
    wechat_api_corp_id: Option<IgnoredAny>,
    victorops_api_url: Option<IgnoredAny>,
    victorops_api_key: Option<IgnoredAny>,
    victorops_api_key_file: Option<IgnoredAny>,
    telegram_api_url: Option<IgnoredAny>,
    webex_api_url: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    receiver: Option<String>,
    group_by: Option<Vec<String>>,
    #[serde(default, rename = "match")]
    match_equal: BTreeMap<LabelName, String>,
    #[serde(default, rename = "match_re")]
    match_regex: BTreeMap<LabelName, RegexSource>,
    #[serde(default)]
    matchers: Vec<MatcherLine>,
    #[serde(default, rename = "continue")]
    continue_matching: bool,
    #[serde(default)]
    routes: Vec<RawRoute>,
    group_wait: Option<Duration>,
    group_interval: Option<Duration>,
    repeat_interval: Option<Duration>,
    send_resolved_if_muted: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInhibitRule {
    #[serde(default)]
    source_match: BTreeMap<LabelName, String>,
    #[serde(default)]
    source_match_re: BTreeMap<LabelName, RegexSource>,
    #[serde(default)]
    source_matchers: Vec<MatcherLine>,
    #[serde(default)]
    target_match: BTreeMap<LabelName, String>,
    #[serde(default)]
    target_match_re: BTreeMap<LabelName, RegexSource>,
    #[serde(default)]
    target_matchers: Vec<MatcherLine>,
    #[serde(default)]
    equal: Vec<LabelName>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReceiver {
    name: String,
    #[serde(default)]
    webhook_configs: Vec<RawWebhook>,
    #[serde(default)]
    slack_configs: Vec<RawSlack>,
    #[serde(default)]
    pagerduty_configs: Vec<RawPagerduty>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: HttpUrl,
    send_resolved: Option<bool>,
    #[serde(default)]
    max_alerts: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlack {
    api_url: Option<HttpUrl>,
    channel: Option<String>,
    title: Option<String>,
    text: Option<String>,
    send_resolved: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPagerduty {
    url: Option<HttpUrl>,
    routing_key: Option<String>,
    service_key: Option<String>,
    severity: Option<String>,
    description: Option<String>,
    send_resolved: Option<bool>,
}

// ---- Scalars validated inside the deserializer, so the YAML error carries the position.

/// Runs `check` on a scalar; plain numbers are accepted as their text (YAML reads `0` as 0).
struct CheckedScalar<T> {
    expecting: &'static str,
    check: fn(&str) -> Result<T, String>,
}

impl<T> de::Visitor<'_> for CheckedScalar<T> {
    type Value = T;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        (self.check)(text).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, number: u64) -> Result<T, E> {
        self.visit_str(&number.to_string())
    }

    fn visit_i64<E: de::Error>(self, number: i64) -> Result<T, E> {
        self.visit_str(&number.to_string())
    }
}

fn deserialize_checked<'de, D: Deserializer<'de>, T>(
    deserializer: D,
    expecting: &'static str,
    check: fn(&str) -> Result<T, String>,
) -> Result<T, D::Error> {
    deserializer.deserialize_any(CheckedScalar { expecting, check })
}

/// A Prometheus duration such as `5m`, in ms.
#[derive(Debug, Clone, Copy)]
struct Duration(i64);

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_checked(deserializer, "a duration such as 5m", parse_duration_ms).map(Duration)
    }
}

/// A label name as `match` keys and `equal` entries need.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct LabelName(String);

impl<'de> Deserialize<'de> for LabelName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_checked(deserializer, "a label name", |name| {
            if is_valid_label_name(name) {
                Ok(name.to_string())
            } else {
                Err(format!("invalid label name {name:?}"))
            }
        })
        .map(LabelName)
    }
}

/// A `match_re` pattern that compiles anchored.
#[derive(Debug, Clone)]
struct RegexSource(String);

impl<'de> Deserialize<'de> for RegexSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_checked(deserializer, "a regular expression", |pattern| {
            Matcher::new(MatchType::Regex, "check", pattern).map(|_| pattern.to_string()).map_err(|e| e.to_string())
        })
        .map(RegexSource)
    }
}

/// One `matchers` entry: a matcher list in Alertmanager's syntax (`a="b", c=~"d"`).
#[derive(Debug, Clone)]
struct MatcherLine(Vec<Matcher>);

impl<'de> Deserialize<'de> for MatcherLine {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_checked(deserializer, "a matcher such as severity=\"critical\"", |line| {
            parse_matchers(line).map_err(|e| e.to_string())
        })
        .map(MatcherLine)
    }
}

/// An `http://` or `https://` URL with a host (`config.parseURL`).
#[derive(Debug, Clone)]
struct HttpUrl(String);

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_checked(deserializer, "an http(s) URL", check_http_url).map(HttpUrl)
    }
}

fn check_http_url(text: &str) -> Result<String, String> {
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(format!("unsupported scheme \"\" for URL {text:?}"));
    };
    if scheme != "http" && scheme != "https" {
        return Err(format!("unsupported scheme {scheme:?} for URL"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    if host.is_empty() {
        return Err("missing host for URL".to_string());
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
global:
  resolve_timeout: 1m
  smtp_smarthost: 'localhost:25'
  smtp_from: 'am@example.org'
  slack_api_url: 'https://hooks.slack.com/services/T/B/X'
  pagerduty_url: 'https://pd.example.org/v2/enqueue'
  http_config:
    follow_redirects: true
route:
  receiver: default
  group_by: ['alertname', 'cluster']
  group_wait: 10s
  send_resolved_if_muted: true
  routes:
    - matchers: ['severity="critical"', 'team=~"db|web"']
      receiver: pager
      continue: true
      repeat_interval: 1h
    - match:
        team: ops
      match_re:
        service: 'api.*'
      group_by: ['...']
      routes:
        - matchers: ['{env="prod", region!="eu"}']
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_match:
      severity: warning
    equal: ['cluster', 'alertname']
receivers:
  - name: default
    webhook_configs:
      - url: 'http://localhost:5001/hook'
        max_alerts: 10
  - name: pager
    pagerduty_configs:
      - routing_key: abc
        severity: critical
    slack_configs:
      - channel: '#alerts'
        title: 'T'
        send_resolved: true
"#;

    #[test]
    fn parses_the_subset_with_defaults() {
        let config = parse(FULL).expect("valid config");
        assert_eq!(config.global.resolve_timeout_ms, 60_000);
        assert!(config.send_resolved_if_muted);
        let route = &config.route;
        assert_eq!(route.receiver.as_deref(), Some("default"));
        assert_eq!(route.group_by, ["alertname", "cluster"]);
        assert_eq!(route.group_wait_ms, Some(10_000));
        assert_eq!(route.group_interval_ms, None);
        let first = &route.routes[0];
        assert!(first.continue_matching);
        assert_eq!(first.repeat_interval_ms, Some(3_600_000));
        let matchers: Vec<String> = first.matchers.iter().map(ToString::to_string).collect();
        assert_eq!(matchers, [r#"severity="critical""#, r#"team=~"db|web""#]);
        let second = &route.routes[1];
        assert!(second.group_by_all && second.group_by.is_empty());
        let all: Vec<String> = second.all_matchers().iter().map(ToString::to_string).collect();
        assert_eq!(all, [r#"service=~"api.*""#, r#"team="ops""#]);
        let nested: Vec<String> = second.routes[0].matchers.iter().map(ToString::to_string).collect();
        assert_eq!(nested, [r#"env="prod""#, r#"region!="eu""#]);
        assert_eq!(second.routes[0].receiver, None);

        let rule = &config.inhibit_rules[0];
        assert_eq!(rule.equal, ["alertname", "cluster"]);
        assert_eq!(rule.all_target_matchers()[0].to_string(), r#"severity="warning""#);

        let webhook = &config.receiver("default").expect("receiver").webhook_configs[0];
        assert_eq!(
            webhook,
            &WebhookConfig { url: "http://localhost:5001/hook".to_string(), send_resolved: true, max_alerts: 10 }
        );
        let pager = config.receiver("pager").expect("receiver");
        assert_eq!(pager.pagerduty_configs[0].url, "https://pd.example.org/v2/enqueue");
        assert_eq!(pager.pagerduty_configs[0].routing_key.as_deref(), Some("abc"));
        assert!(pager.pagerduty_configs[0].send_resolved);
        assert_eq!(pager.slack_configs[0].api_url, "https://hooks.slack.com/services/T/B/X");
        assert!(pager.slack_configs[0].send_resolved);
        assert_eq!(config.original, FULL);
    }

    #[test]
    fn minimal_config_takes_alertmanager_defaults() {
        let config = parse("route: {receiver: r}\nreceivers:\n  - name: r\n    slack_configs: [{api_url: 'https://x.example/h'}]\n    pagerduty_configs: [{service_key: k}]\n")
            .expect("valid");
        assert_eq!(config.global.resolve_timeout_ms, RESOLVE_TIMEOUT_MS_DEFAULT);
        assert_eq!(config.global.pagerduty_url, PAGERDUTY_URL_DEFAULT);
        assert!(!config.send_resolved_if_muted);
        let receiver = &config.receivers[0];
        assert!(!receiver.slack_configs[0].send_resolved, "slack defaults to send_resolved: false");
        assert_eq!(receiver.pagerduty_configs[0].url, PAGERDUTY_URL_DEFAULT);
        assert!(receiver.pagerduty_configs[0].send_resolved);
        // send_resolved_if_muted may come from global.
        let config = parse("global: {send_resolved_if_muted: true}\nroute: {receiver: r}\nreceivers: [{name: r}]\n")
            .expect("valid");
        assert!(config.send_resolved_if_muted);
    }

    #[test]
    fn rejects_as_alertmanager_does() {
        #[track_caller]
        fn check(yaml: &str, expected_fragment: &str) {
            let error = parse(yaml).expect_err(yaml).to_string();
            assert!(error.contains(expected_fragment), "{yaml:?}: got {error:?}, want {expected_fragment:?}");
        }
        let receivers = "receivers: [{name: r}]\n";
        check("", "no route provided in config");
        check(receivers, "no route provided in config");
        check(&format!("route: {{group_by: [a]}}\n{receivers}"), "root route must specify a default receiver");
        check(&format!("route: {{receiver: r, continue: true}}\n{receivers}"), "cannot have continue in root route");
        check(
            &format!("route: {{receiver: r, matchers: ['a=b']}}\n{receivers}"),
            "root route must not have any matchers",
        );
        check(
            &format!("route: {{receiver: r, match: {{a: b}}}}\n{receivers}"),
            "root route must not have any matchers",
        );
        check(&format!("route: {{receiver: x}}\n{receivers}"), "undefined receiver \"x\" used in route");
        check(
            &format!("route: {{receiver: r, routes: [{{routes: [{{receiver: y}}]}}]}}\n{receivers}"),
            "route.routes[0].routes[0]: undefined receiver \"y\" used in route",
        );
        check(
            "route: {receiver: r}\nreceivers: [{name: r}, {name: r}]\n",
            "notification config name \"r\" is not unique",
        );
        check("route: {receiver: r}\nreceivers: [{name: ''}]\n", "missing name in receiver");
        check(&format!("route: {{receiver: r, group_by: ['...', a]}}\n{receivers}"), "cannot have wildcard group_by");
        check(&format!("route: {{receiver: r, group_by: [a, a]}}\n{receivers}"), "duplicated label \"a\" in group_by");
        check(&format!("route: {{receiver: r, group_by: ['a-b']}}\n{receivers}"), "invalid label name \"a-b\"");
        check(&format!("route: {{receiver: r, group_interval: 0s}}\n{receivers}"), "group_interval cannot be zero");
        check(&format!("route: {{receiver: r, repeat_interval: 0}}\n{receivers}"), "repeat_interval cannot be zero");
        check(&format!("route: {{receiver: r, group_wait: 5x}}\n{receivers}"), "not a valid duration");
        check(
            &format!("route: {{receiver: r, routes: [{{matchers: ['a=\"b']}}]}}\n{receivers}"),
            "unescaped double quote",
        );
        check(&format!("route: {{receiver: r, routes: [{{match_re: {{a: '('}}}}]}}\n{receivers}"), "invalid regular");
        check(
            &format!("route: {{receiver: r, routes: [{{send_resolved_if_muted: true}}]}}\n{receivers}"),
            "only allowed on the root route",
        );
        check("route: {receiver: r}\nreceivers: [{name: r, slack_configs: [{}]}]\n", "no global Slack API URL set");
        check(
            "route: {receiver: r}\nreceivers: [{name: r, pagerduty_configs: [{}]}]\n",
            "missing service or routing key",
        );
        check("route: {receiver: r}\nreceivers: [{name: r, webhook_configs: [{}]}]\n", "missing field `url`");
        check(
            "route: {receiver: r}\nreceivers: [{name: r, webhook_configs: [{url: 'ftp://x'}]}]\n",
            "unsupported scheme",
        );
        check("route: {receiver: r}\nreceivers: [{name: r, webhook_configs: [{url: 'http://'}]}]\n", "missing host");
        // Unknown keys name the key, with its position.
        check(
            &format!("route: {{receiver: r, mute_time_intervals: [x]}}\n{receivers}"),
            "unknown field `mute_time_intervals`",
        );
        check(&format!("templates: []\nroute: {{receiver: r}}\n{receivers}"), "unknown field `templates`");
        check(&format!("global: {{smtp_bogus: 1}}\nroute: {{receiver: r}}\n{receivers}"), "unknown field `smtp_bogus`");
        check("route: {receiver: r}\nreceivers: [{name: r, email_configs: []}]\n", "unknown field `email_configs`");
        check(
            "route: {receiver: r}\nreceivers: [{name: r, webhook_configs: [{url: 'http://h', http_config: {}}]}]\n",
            "unknown field `http_config`",
        );
        match parse("route:\n  receiver: r\n  bogus: 1\nreceivers: [{name: r}]\n") {
            Err(ConfigError::Syntax { line, .. }) => assert_eq!(line, 3),
            other => panic!("expected a syntax error with a line, got {other:?}"),
        }
    }

    #[test]
    fn nested_section_parses_like_a_file() {
        let document: serde_yaml_ng::Value = serde_yaml_ng::from_str(
            "scrape_configs: []\nalert_manager:\n  route:\n    receiver: r\n  receivers:\n    - name: r\n",
        )
        .expect("yaml");
        let section = document.get("alert_manager").expect("section").clone();
        let config = from_value(section).expect("valid");
        assert_eq!(config.route.receiver.as_deref(), Some("r"));
        assert!(config.original.contains("receiver: r"));
        let bad: serde_yaml_ng::Value = serde_yaml_ng::from_str("route: {receiver: r, bogus: 1}").expect("yaml");
        assert!(from_value(bad).expect_err("unknown key").to_string().contains("unknown field `bogus`"));
    }
}
