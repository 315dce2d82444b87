//! Notifier: delivers the alerts rules produce to alert managers (Alertmanager API v2, or the
//! embedded `alert` manager through the same API).

mod alert;

pub use alert::{Alert, AlertSink};
