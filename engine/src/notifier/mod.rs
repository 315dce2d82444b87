//! Notifier: delivers the alerts rules produce to alert managers (Alertmanager API v2, or the
//! embedded `alert` manager through the same API).

mod alert;
mod manager;

pub use alert::{Alert, AlertSink};
pub use manager::{encode_alerts, Notifier, BATCH_SIZE_MAX, QUEUE_CAPACITY_DEFAULT};
