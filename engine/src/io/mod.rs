//! The environment seam: the only code that touches the operating system.
//!
//! Every component receives an [`Env`] and reaches the wall clock, randomness, the network, the
//! filesystem and task spawning only through it. The real server builds [`Env::real`]; the
//! simulator (`sim/`) builds one from turmoil's virtual network, virtual clock and simulated disk,
//! so the same engine code runs unchanged in both. Timers and elapsed time use `tokio::time`,
//! which turmoil virtualises; wall time (sample timestamps) comes only from [`Clock`].
//!
//! `clippy.toml` forbids the OS entry points (std clock, threads, std/tokio fs, std/tokio
//! sockets, OS randomness) everywhere; this module is the one place allowed to use them. Its
//! only threads are the real `Env`'s compute pool ([`ComputePool`]), which runs long synchronous
//! work (PromQL evaluation) off the tokio workers; the simulator's `Env` runs that work inline.

pub mod clock;
pub mod fs;
pub mod http_client;
pub mod mem_fs;
pub mod mem_net;
pub mod net;
pub mod rng;
pub mod spawn;

use std::sync::Arc;

pub use clock::{Clock, RealClock};
pub use fs::{AppendFile, FileLock, FileSystem, RealFileSystem};
pub use mem_fs::MemFileSystem;
pub use mem_net::MemNetwork;
pub use net::{BoxConnection, Connection, Listener, Network, RealNetwork};
pub use rng::RandomStreams;
pub use spawn::{ComputePool, PooledSpawner, Spawner, TokioSpawner, Work};

/// Handles to the outside world, cloned into every component.
#[derive(Clone)]
pub struct Env {
    /// Wall clock for sample timestamps and API defaults.
    pub clock: Arc<dyn Clock>,
    /// Filesystem for the WAL and blocks.
    pub fs: Arc<dyn FileSystem>,
    /// Listener and connector for the HTTP server and the scraper.
    pub net: Arc<dyn Network>,
    /// Starts background tasks.
    pub spawner: Arc<dyn Spawner>,
    /// Seeded random streams (jitter, sampling), reproducible from one seed.
    pub random: RandomStreams,
}

impl Env {
    /// The operating system's clock, disk and sockets, tokio's spawner with a compute pool of
    /// `promql::QUERY_CONCURRENCY_MAX_DEFAULT` threads, and random streams seeded from `seed`
    /// (the server takes it from the clock at start unless a flag pins it).
    pub fn real(seed: u64) -> Env {
        Env::real_with_compute(seed, crate::promql::QUERY_CONCURRENCY_MAX_DEFAULT)
    }

    /// [`Env::real`] with a compute pool of `compute_thread_count` threads (the server passes
    /// `--query.max-concurrency`, so every admitted query has a thread). Should the OS refuse
    /// the threads, compute work runs inline (logged), as before the pool existed.
    pub fn real_with_compute(seed: u64, compute_thread_count: usize) -> Env {
        let spawner: Arc<dyn Spawner> = match ComputePool::new(compute_thread_count) {
            Ok(pool) => Arc::new(PooledSpawner::new(pool)),
            Err(error) => {
                tracing::warn!(%error, "start compute pool; queries evaluate on the async workers");
                Arc::new(TokioSpawner)
            }
        };
        Env {
            clock: Arc::new(RealClock),
            fs: Arc::new(RealFileSystem),
            net: Arc::new(RealNetwork),
            spawner,
            random: RandomStreams::new(seed),
        }
    }
}
