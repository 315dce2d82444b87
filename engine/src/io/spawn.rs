//! Task spawning seam. Under turmoil each host runs its own tokio runtime, and tasks spawned on it
//! are cancelled when the host crashes, so tokio's spawner serves both the server and the
//! simulator; the seam exists so a future executor (or task accounting) changes one place.

use std::future::Future;
use std::pin::Pin;

/// A boxed, sendable background task.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Starts background tasks.
pub trait Spawner: Send + Sync {
    /// Runs `task` in the background; `name` is for diagnostics.
    fn spawn(&self, name: &str, task: Task);
}

/// Spawns on the current tokio runtime.
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioSpawner;

impl Spawner for TokioSpawner {
    fn spawn(&self, name: &str, task: Task) {
        tracing::debug!(task = name, "spawn");
        tokio::spawn(task);
    }
}
