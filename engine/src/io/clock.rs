//! Wall clock seam. Only sample timestamps and "now" defaults of the API read it; durations and
//! timers use `tokio::time` instead.

/// A source of wall-clock time in Unix milliseconds.
pub trait Clock: Send + Sync {
    /// Current wall-clock time, Unix milliseconds.
    fn now_ms(&self) -> i64;
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealClock;

impl Clock for RealClock {
    #[allow(clippy::disallowed_methods)] // The one sanctioned read of the OS clock.
    fn now_ms(&self) -> i64 {
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
    }
}

/// Reads the OS clock once, for seeding a real server's random streams.
#[allow(clippy::disallowed_methods)] // Startup-only read; never reaches a simulated run.
pub fn startup_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since_epoch| since_epoch.as_nanos() as u64)
        .unwrap_or(0)
}
