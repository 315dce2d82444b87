//! The embedded alert manager's pure logic, with Prometheus Alertmanager 0.25's semantics: what
//! the dispatcher, the HTTP API (Alertmanager API v2) and the notifiers are built on.
//!
//! No I/O, no tasks, no clock reads and no OS randomness: every instant is an `i64` Unix-ms
//! argument (`now_ms`) and every new id derives from a caller-supplied random `u64`, so the same
//! calls give the same results in the server and in the simulator.
//!
//! The pieces, in the order an alert meets them:
//! - [`config`]: the YAML subset (`global`, `route`, `inhibit_rules`, `receivers` with webhook,
//!   Slack and PagerDuty configs), validated as `config.Load` does; unknown keys are errors.
//!   Extension: `send_resolved_if_muted`.
//! - [`matcher`]: `name="v"`, `!=`, `=~`, `!~`; the text syntax of routes, rules and API filters;
//!   the API v2 JSON shape. A missing label matches as "".
//! - [`route`]: the routing tree built from `config.route` with inherited options;
//!   [`route::Route::matching`] picks the nodes (depth-first, `continue`), and the group key
//!   `{route key}:{group labels}` names the aggregation group an alert joins on each.
//! - [`inhibit`]: [`inhibit::Inhibitor`] holds the alerts matching each rule's source side and
//!   answers whether an alert is inhibited now.
//! - [`silence`]: [`silence::Silences`] stores silences (bounded, collected after retention,
//!   snapshotted as JSON) and answers which silences mute an alert now.
//! - [`store`]: the alerts held, by fingerprint, merged when the same alert arrives again (a
//!   resend, or the other replica of an HA pair).
//! - [`nflog`]: what each receiver was last told about each group, so an unchanged group is not
//!   notified again before its repeat interval, nor after a restart.
//!
//! Invariants shared by the pieces:
//! - A parsed [`config::AlertManagerConfig`] is internally consistent (receivers exist and are
//!   unique, the root route has a receiver and no matchers), so building a route tree or an
//!   inhibitor from it cannot fail.
//! - Everything iterates in a defined order (configuration order, label order, id order): no
//!   hash order reaches an answer, a listing or a snapshot.
//! - An alert is muted when it is inhibited or silenced; a muted alert's notifications are
//!   suppressed, and its resolved notification too unless `send_resolved_if_muted` is set.
//!
//! Concurrency: plain values. The dispatcher owns them and serialises changes (`&mut self`);
//! on a configuration reload it builds a new route tree and inhibitor and keeps the silences.

pub mod api;
pub mod config;
pub mod inhibit;
pub mod manager;
pub mod matcher;
pub mod nflog;
pub mod receiver;
pub mod route;
pub mod silence;
pub mod store;
