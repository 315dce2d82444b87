//! Task spawning seam. Under turmoil each host runs its own tokio runtime, and tasks spawned on it
//! are cancelled when the host crashes, so tokio's spawner serves both the server and the
//! simulator; the seam exists so a future executor (or task accounting) changes one place.
//!
//! Long synchronous work (PromQL evaluation) goes through [`Spawner::spawn_compute`]. The
//! default runs it inline on the calling task, which is what the simulator wants (one thread,
//! deterministic). The real server's [`PooledSpawner`] hands it to a [`ComputePool`]: a fixed
//! set of OS threads fed by a bounded channel, so a long query never blocks a tokio worker and
//! the other connections. The pool is the one place in the engine where threads exist.
//!
//! Concurrency: the pool's threads share one receiver behind a mutex (held only to take a job);
//! a job that panics is caught, so its thread keeps serving, and the job's result channel is
//! dropped, which its awaiting task sees as an error.

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

/// A boxed, sendable background task.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A boxed unit of synchronous work (it reports its result through a channel it owns).
pub type Work = Box<dyn FnOnce() + Send + 'static>;

/// Most threads a [`ComputePool`] starts, whatever `--query.max-concurrency` says: each thread
/// reserves a stack, and more threads than cores only share the same cores.
pub const COMPUTE_THREAD_COUNT_MAX: usize = 64;

/// Stack of each pool thread: four times what the deepest admitted query needs (2 MiB, see
/// `promql::EXPRESSION_DEPTH_MAX_DEFAULT`).
pub const COMPUTE_THREAD_STACK_SIZE: usize = 8 << 20;

/// Jobs that may wait for a pool thread, per thread; the query gate already bounds how many
/// queries are admitted, so this only absorbs a burst from other callers.
pub const COMPUTE_QUEUE_CAPACITY_PER_THREAD_COUNT: usize = 4;

/// Starts background tasks.
pub trait Spawner: Send + Sync {
    /// Runs `task` in the background; `name` is for diagnostics.
    fn spawn(&self, name: &str, task: Task);

    /// Runs `work`, synchronous and possibly long, where it blocks no async task. The default
    /// runs it inline, right now, on the caller's thread (the simulator's choice: deterministic
    /// and single-threaded); the real server overrides it with a thread pool.
    fn spawn_compute(&self, name: &str, work: Work) {
        tracing::trace!(work = name, "compute inline");
        work();
    }
}

/// Spawns on the current tokio runtime; compute work runs inline.
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioSpawner;

impl Spawner for TokioSpawner {
    fn spawn(&self, name: &str, task: Task) {
        tracing::debug!(task = name, "spawn");
        tokio::spawn(task);
    }
}

/// A fixed number of OS threads running [`Work`] from a bounded queue. Dropping the pool closes
/// the queue; each thread finishes its current job and exits.
pub struct ComputePool {
    sender: SyncSender<Work>,
    thread_count: usize,
}

impl ComputePool {
    /// Starts `thread_count` threads (at least 1, at most [`COMPUTE_THREAD_COUNT_MAX`]).
    pub fn new(thread_count: usize) -> std::io::Result<Self> {
        let thread_count = thread_count.clamp(1, COMPUTE_THREAD_COUNT_MAX);
        let (sender, receiver) =
            std::sync::mpsc::sync_channel::<Work>(thread_count * COMPUTE_QUEUE_CAPACITY_PER_THREAD_COUNT);
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..thread_count {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("compute-{index}"))
                .stack_size(COMPUTE_THREAD_STACK_SIZE)
                .spawn(move || run_jobs(&receiver))?;
        }
        Ok(ComputePool { sender, thread_count })
    }

    /// Threads in the pool.
    pub fn thread_count(&self) -> usize {
        self.thread_count
    }

    /// Queues `work`; when the queue is full it comes back, for the caller to run elsewhere.
    pub fn submit(&self, work: Work) -> Result<(), Work> {
        match self.sender.try_send(work) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(work) | TrySendError::Disconnected(work)) => Err(work),
        }
    }
}

impl std::fmt::Debug for ComputePool {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("ComputePool").field("thread_count", &self.thread_count).finish()
    }
}

fn run_jobs(receiver: &Mutex<Receiver<Work>>) {
    loop {
        // The lock is held only to take one job; a poisoned lock still guards a valid receiver.
        let job = match receiver.lock() {
            Ok(guard) => guard.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(job) = job else {
            return;
        };
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
            tracing::error!("compute job panicked; its caller sees its result channel closed");
        }
    }
}

/// The real server's spawner: tasks on tokio, compute work on a [`ComputePool`].
#[derive(Debug)]
pub struct PooledSpawner {
    pool: ComputePool,
}

impl PooledSpawner {
    /// Tokio for tasks, `pool` for compute work.
    pub fn new(pool: ComputePool) -> Self {
        PooledSpawner { pool }
    }
}

impl Spawner for PooledSpawner {
    fn spawn(&self, name: &str, task: Task) {
        TokioSpawner.spawn(name, task);
    }

    fn spawn_compute(&self, name: &str, work: Work) {
        if let Err(work) = self.pool.submit(work) {
            // Only reachable when callers bypass the query gate: degrade to the old behaviour
            // (inline) rather than refuse or lose the work.
            tracing::warn!(work = name, threads = self.pool.thread_count(), "compute queue full, running inline");
            work();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_runs_jobs_off_thread_and_survives_a_panic() {
        let pool = ComputePool::new(2).unwrap();
        let spawner = PooledSpawner::new(pool);
        let caller = std::thread::current().id();
        let (sender, receiver) = std::sync::mpsc::channel();
        spawner.spawn_compute("panics", Box::new(|| panic!("job bug")));
        for index in 0..8 {
            let sender = sender.clone();
            spawner.spawn_compute(
                "job",
                Box::new(move || {
                    let _ = sender.send((index, std::thread::current().id()));
                }),
            );
        }
        drop(sender);
        let mut results: Vec<_> = receiver.iter().collect();
        results.sort_by_key(|(index, _)| *index);
        assert_eq!(results.iter().map(|(index, _)| *index).collect::<Vec<_>>(), (0..8).collect::<Vec<_>>());
        // Inline fallback could run on the caller when the queue is full; with 8 jobs and a
        // queue of 8 at least the jobs taken by threads ran elsewhere.
        assert!(results.iter().any(|(_, thread)| *thread != caller));
    }

    #[test]
    fn default_spawn_compute_runs_inline() {
        let ran = std::sync::atomic::AtomicBool::new(false);
        let ran = Arc::new(ran);
        let flag = ran.clone();
        TokioSpawner.spawn_compute("inline", Box::new(move || flag.store(true, std::sync::atomic::Ordering::SeqCst)));
        assert!(ran.load(std::sync::atomic::Ordering::SeqCst), "ran before spawn_compute returned");
    }

    #[test]
    fn pool_clamps_thread_count() {
        assert_eq!(ComputePool::new(0).unwrap().thread_count(), 1);
        assert_eq!(ComputePool::new(10_000).unwrap().thread_count(), COMPUTE_THREAD_COUNT_MAX);
    }
}
