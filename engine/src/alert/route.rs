//! The routing tree: which routes (and so receivers and timings) an alert's labels select, and
//! the group an alert joins on each (Alertmanager 0.25 `dispatch/route.go`, `dispatch.go`).
//!
//! Invariants of a built [`Route`] tree:
//! - Every node has its options resolved: receiver, `group_by`, `group_wait_ms`,
//!   `group_interval_ms`, `repeat_interval_ms` are the node's own or inherited from its parent,
//!   the root's defaulting to [`GROUP_WAIT_MS_DEFAULT`] and friends (`NewRoute`).
//! - A node's matchers are its `match`, `match_re` and `matchers`, sorted (name, value, type).
//! - [`Route::key`] is `parent_key/{matchers}` (`Route.Key`; not unique: siblings with equal
//!   matchers share it) and the group key is `{route key}:{group labels}` (`aggrGroup.GroupKey`),
//!   e.g. `{}:{alertname="X"}` on the root. [`Route::id`] adds the child index and is unique
//!   (`Route.ID`, Alertmanager 0.27).
//!
//! Concurrency: an immutable tree once built; `Send + Sync`. Rebuild it on configuration reload.

use crate::alert::config::{
    AlertManagerConfig, RouteConfig, GROUP_INTERVAL_MS_DEFAULT, GROUP_WAIT_MS_DEFAULT, REPEAT_INTERVAL_MS_DEFAULT,
};
use crate::alert::matcher::Matchers;
use crate::model::{Label, Labels};

/// One node of the routing tree with its options resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    /// The receiver notifications for this route go to.
    pub receiver: String,
    /// Label names alerts are grouped by, sorted; ignored when `group_by_all`.
    pub group_by: Vec<String>,
    /// Group by all labels (`group_by: ['...']`).
    pub group_by_all: bool,
    /// How long a new group waits for more alerts before its first notification.
    pub group_wait_ms: i64,
    /// How long a group waits before notifying about alerts added to it.
    pub group_interval_ms: i64,
    /// How long before a notification that did not change is sent again.
    pub repeat_interval_ms: i64,
    /// Matchers an alert must satisfy for this node, sorted.
    pub matchers: Matchers,
    /// Whether an alert that matched this node keeps trying the following siblings.
    pub continue_matching: bool,
    /// Children in configuration order.
    pub routes: Vec<Route>,
    key: String,
    id: String,
}

/// The options a child inherits from its parent.
struct Inherited<'a> {
    receiver: &'a str,
    group_by: &'a [String],
    group_by_all: bool,
    group_wait_ms: i64,
    group_interval_ms: i64,
    repeat_interval_ms: i64,
    key: &'a str,
    id: &'a str,
    index: usize,
}

impl Route {
    /// Builds the tree of a validated configuration.
    pub fn from_config(config: &AlertManagerConfig) -> Route {
        Route::new(&config.route)
    }

    /// Builds the tree rooted at `root`, which (as the configuration guarantees) has a receiver.
    pub fn new(root: &RouteConfig) -> Route {
        assert!(root.receiver.is_some(), "root route without a receiver: expected a validated configuration");
        Route::build(root, None)
    }

    fn build(config: &RouteConfig, parent: Option<Inherited<'_>>) -> Route {
        let (
            mut receiver,
            mut group_by,
            mut group_by_all,
            mut group_wait_ms,
            mut group_interval_ms,
            mut repeat_interval_ms,
        ) = match &parent {
            Some(parent) => (
                parent.receiver.to_string(),
                parent.group_by.to_vec(),
                parent.group_by_all,
                parent.group_wait_ms,
                parent.group_interval_ms,
                parent.repeat_interval_ms,
            ),
            None => (
                String::new(),
                Vec::new(),
                false,
                GROUP_WAIT_MS_DEFAULT,
                GROUP_INTERVAL_MS_DEFAULT,
                REPEAT_INTERVAL_MS_DEFAULT,
            ),
        };
        if let Some(own) = &config.receiver {
            receiver = own.clone();
        }
        // As NewRoute: explicit names replace the inherited grouping; `...` alone turns on
        // grouping by all labels (keeping the inherited names, which are then unused); an empty
        // or missing list inherits both.
        if !config.group_by.is_empty() {
            group_by = config.group_by.clone();
            group_by.sort();
            group_by_all = false;
        } else if config.group_by_all {
            group_by_all = true;
        }
        group_wait_ms = config.group_wait_ms.unwrap_or(group_wait_ms);
        group_interval_ms = config.group_interval_ms.unwrap_or(group_interval_ms);
        repeat_interval_ms = config.repeat_interval_ms.unwrap_or(repeat_interval_ms);
        let matchers = Matchers::new(config.all_matchers());
        let (key, id) = match &parent {
            Some(parent) => {
                (format!("{}/{matchers}", parent.key), format!("{}/{matchers}/{}", parent.id, parent.index))
            }
            None => (matchers.to_string(), matchers.to_string()),
        };
        let mut route = Route {
            receiver,
            group_by,
            group_by_all,
            group_wait_ms,
            group_interval_ms,
            repeat_interval_ms,
            matchers,
            continue_matching: config.continue_matching,
            routes: Vec::new(),
            key,
            id,
        };
        route.routes = config
            .routes
            .iter()
            .enumerate()
            .map(|(index, child)| {
                Route::build(
                    child,
                    Some(Inherited {
                        receiver: &route.receiver,
                        group_by: &route.group_by,
                        group_by_all: route.group_by_all,
                        group_wait_ms: route.group_wait_ms,
                        group_interval_ms: route.group_interval_ms,
                        repeat_interval_ms: route.repeat_interval_ms,
                        key: &route.key,
                        id: &route.id,
                        index,
                    }),
                )
            })
            .collect();
        route
    }

    /// The nodes an alert with `labels` is routed to, depth-first and left to right
    /// (`Route.Match`): none when this node's matchers fail; otherwise the matches of the
    /// children, trying siblings after a match only when the matching child has `continue`;
    /// this node itself when no child matched.
    pub fn matching(&self, labels: &Labels) -> Vec<&Route> {
        let mut all = Vec::new();
        self.collect_matching(labels, &mut all);
        all
    }

    /// Appends this subtree's matches; returns whether this node matched at all.
    fn collect_matching<'a>(&'a self, labels: &Labels, all: &mut Vec<&'a Route>) -> bool {
        if !self.matchers.matches(labels) {
            return false;
        }
        let before = all.len();
        for child in &self.routes {
            if child.collect_matching(labels, all) && !child.continue_matching {
                break;
            }
        }
        if all.len() == before {
            all.push(self);
        }
        true
    }

    /// The route key, `{}` for the root and `{}/{severity="critical"}` for a child
    /// (`Route.Key`). Siblings with the same matchers share a key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// A unique identifier: the key with each child's index appended, e.g.
    /// `{}/{severity="critical"}/0` (`Route.ID`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The labels an alert is grouped by on this route: all of them with `group_by_all`, else
    /// those named in `group_by` that the alert has (`getGroupLabels`).
    pub fn group_labels(&self, labels: &Labels) -> Labels {
        if self.group_by_all {
            return labels.clone();
        }
        let kept: Vec<Label> =
            labels.iter().filter(|label| self.group_by.binary_search(&label.name).is_ok()).cloned().collect();
        Labels::from_sorted_unchecked(kept)
    }

    /// The key of the group the alert joins on this route: `{route key}:{group labels}`, the
    /// labels printed as Go's `model.LabelSet.String` (`{a="1", b="2"}`).
    pub fn group_key(&self, labels: &Labels) -> String {
        format!("{}:{}", self.key, format_label_set(&self.group_labels(labels)))
    }

    /// Every node, depth-first, parents before children (`Route.Walk`).
    pub fn walk(&self) -> Vec<&Route> {
        let mut nodes = vec![self];
        let mut index = 0;
        // Pre-order without recursion: insert each node's children right after it.
        while index < nodes.len() {
            let node = nodes[index];
            for (offset, child) in node.routes.iter().enumerate() {
                nodes.insert(index + 1 + offset, child);
            }
            index += 1;
        }
        nodes
    }
}

/// Formats labels as Go's `model.LabelSet.String`: `{a="1", b="x\"y"}`, names sorted, values
/// quoted as `strconv.Quote` does for printable text.
pub fn format_label_set(labels: &Labels) -> String {
    let mut out = String::from("{");
    for (index, label) in labels.iter().enumerate() {
        if index > 0 {
            out.push_str(", ");
        }
        out.push_str(&label.name);
        out.push('=');
        push_go_quoted(&mut out, &label.value);
    }
    out.push('}');
    out
}

/// Appends `value` quoted as Go's `strconv.Quote`: `\"`, `\\`, the C escapes, `\xNN` for other
/// ASCII control bytes and `\uNNNN`/`\UNNNNNNNN` for other control characters. (Go also escapes
/// unassigned and some format code points; label values rarely hold those.)
fn push_go_quoted(out: &mut String, value: &str) {
    out.push('"');
    for character in value.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0C' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0B' => out.push_str("\\v"),
            control if (control as u32) < 0x20 || control == '\x7F' => {
                out.push_str(&format!("\\x{:02x}", control as u32));
            }
            control if control.is_control() => {
                let code = control as u32;
                if code < 0x10000 {
                    out.push_str(&format!("\\u{code:04x}"));
                } else {
                    out.push_str(&format!("\\U{code:08x}"));
                }
            }
            printable => out.push(printable),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::config::parse;

    const CONFIG: &str = r#"
route:
  receiver: default
  group_by: [alertname]
  routes:
    - matchers: ['team="db"']
      receiver: db
      group_wait: 1s
      routes:
        - matchers: ['severity="critical"']
          receiver: db-pager
          group_by: ['...']
          repeat_interval: 1h
        - matchers: ['severity=~"warning|info"']
          group_by: [alertname, instance]
    - matchers: ['team="web"']
      receiver: web
      continue: true
    - matchers: ['team=~"web|api"']
      receiver: api
      group_interval: 1m
    - matchers: ['team="web"']
      receiver: never
receivers:
  - name: default
  - name: db
  - name: db-pager
  - name: web
  - name: api
  - name: never
"#;

    fn tree() -> Route {
        Route::from_config(&parse(CONFIG).expect("valid config"))
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn matching_follows_depth_first_and_continue() {
        #[track_caller]
        fn check(tree: &Route, pairs: &[(&str, &str)], expected: &[&str]) {
            let got: Vec<&str> = tree.matching(&labels(pairs)).iter().map(|route| route.receiver.as_str()).collect();
            assert_eq!(got, expected, "labels {pairs:?}");
        }
        let tree = tree();
        check(&tree, &[("alertname", "A")], &["default"]);
        check(&tree, &[("team", "db")], &["db"]);
        check(&tree, &[("team", "db"), ("severity", "critical")], &["db-pager"]);
        check(&tree, &[("team", "db"), ("severity", "info")], &["db"]);
        // `continue` on the web route lets the api route match too; the api route stops there,
        // so the last sibling is never reached.
        check(&tree, &[("team", "web")], &["web", "api"]);
        check(&tree, &[("team", "api")], &["api"]);
    }

    #[test]
    fn options_are_inherited_as_new_route_does() {
        let tree = tree();
        assert_eq!(
            (tree.group_wait_ms, tree.group_interval_ms, tree.repeat_interval_ms),
            (GROUP_WAIT_MS_DEFAULT, GROUP_INTERVAL_MS_DEFAULT, REPEAT_INTERVAL_MS_DEFAULT)
        );
        let db = &tree.routes[0];
        assert_eq!((db.group_wait_ms, db.group_by.as_slice()), (1_000, ["alertname".to_string()].as_slice()));
        let pager = &db.routes[0];
        assert_eq!(pager.group_wait_ms, 1_000);
        assert_eq!(pager.repeat_interval_ms, 3_600_000);
        assert!(pager.group_by_all);
        let warning = &db.routes[1];
        assert_eq!(warning.receiver, "db", "receiver inherited");
        assert_eq!(warning.group_by, ["alertname", "instance"]);
        assert!(!warning.group_by_all);
        assert_eq!(tree.routes[2].group_interval_ms, 60_000);
    }

    #[test]
    fn keys_and_ids_as_alertmanager_forms_them() {
        let tree = tree();
        assert_eq!(tree.key(), "{}");
        assert_eq!(tree.id(), "{}");
        let pager = &tree.routes[0].routes[0];
        assert_eq!(pager.key(), r#"{}/{team="db"}/{severity="critical"}"#);
        assert_eq!(pager.id(), r#"{}/{team="db"}/0/{severity="critical"}/0"#);
        // Siblings with equal matchers share a key but not an id.
        assert_eq!(tree.routes[1].key(), tree.routes[3].key());
        assert_ne!(tree.routes[1].id(), tree.routes[3].id());
        let ids: std::collections::BTreeSet<&str> = tree.walk().iter().map(|route| route.id()).collect();
        assert_eq!(ids.len(), tree.walk().len(), "ids are unique");
    }

    #[test]
    fn group_labels_and_keys() {
        let tree = tree();
        let alert = labels(&[("alertname", "X"), ("instance", "a:1"), ("team", "db"), ("severity", "warning")]);
        assert_eq!(tree.group_key(&labels(&[("alertname", "X"), ("job", "j")])), r#"{}:{alertname="X"}"#);
        let warning = &tree.routes[0].routes[1];
        assert_eq!(warning.group_labels(&alert), labels(&[("alertname", "X"), ("instance", "a:1")]));
        assert_eq!(
            warning.group_key(&alert),
            r#"{}/{team="db"}/{severity=~"warning|info"}:{alertname="X", instance="a:1"}"#
        );
        let pager = &tree.routes[0].routes[0];
        assert_eq!(pager.group_labels(&alert), alert, "`...` groups by every label");
        // No group_by at all: every alert of the route lands in one group.
        let flat = Route::new(&parse("route: {receiver: r}\nreceivers: [{name: r}]").expect("valid").route);
        assert_eq!(flat.group_key(&alert), "{}:{}");
    }

    #[test]
    fn walk_is_pre_order() {
        let tree = tree();
        let receivers: Vec<&str> = tree.walk().iter().map(|route| route.receiver.as_str()).collect();
        assert_eq!(receivers, ["default", "db", "db-pager", "db", "web", "api", "never"]);
    }

    #[test]
    fn label_values_quoted_as_go() {
        let set = labels(&[("a", "x\"y\\z"), ("b", "line\nnext\t\u{1}"), ("c", "ünï")]);
        assert_eq!(format_label_set(&set), r#"{a="x\"y\\z", b="line\nnext\t\x01", c="ünï"}"#);
        assert_eq!(format_label_set(&Labels::empty()), "{}");
    }
}
