//! Query limits in time and number: the deadline and cancel flag one query carries
//! ([`QueryControl`]), the evaluator's cheap poll of both ([`Poller`]), and the admission gate
//! that bounds how many queries evaluate at once ([`QueryGate`]), as Prometheus'
//! `promql.Engine` (`--query.timeout`, `contextDone`) and `ActiveQueryTracker`
//! (`--query.max-concurrency`, promql/query_logger.go `Insert`).
//!
//! Invariants:
//! - Evaluation is synchronous, so a query stops only where the evaluator polls: once before
//!   it opens the querier, then every [`POLL_INTERVAL_COUNT`] units of work (a series read is
//!   one, a `range_eval` step one per input series). A stop is [`QueryError::Timeout`] or [`QueryError::Canceled`], never a
//!   partial result.
//! - The deadline is a `tokio::time::Instant`. Under the turmoil simulator (and a paused tokio
//!   clock) time is virtual and evaluation itself takes no virtual time, so a simulated query
//!   never times out by its own work; only time spent waiting in the gate's queue (virtual too)
//!   or a deadline already past stops it there.
//! - At most `concurrency_max` permits exist; at most `queue_capacity_count` queries wait for
//!   one; the next is refused at once ([`QueryError::QueueFull`]). Time spent waiting counts
//!   against the query's deadline (Prometheus' queue context is the query's context).
//!
//! Concurrency: [`CancelFlag`] and [`QueryGate`] are shared across tasks and threads (atomics
//! and a tokio semaphore); a [`Poller`] belongs to one evaluation on one thread.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::QueryError;

/// Series reads between two polls of the deadline and cancel flag: reading and windowing 1,024
/// series takes well under a millisecond, and one poll (a clock read) costs tens of
/// nanoseconds, so polling is invisible in profiles and a query stops within milliseconds.
pub const POLL_INTERVAL_COUNT: u32 = 1024;

/// Queries that may wait for a permit, per permit: Prometheus has no queue bound (callers block
/// on a channel), but an unbounded queue lets a burst hold every connection; four rounds of
/// waiting is plenty before the client is better told to retry.
pub const QUERY_QUEUE_CAPACITY_PER_PERMIT_COUNT: usize = 4;

/// Where a query was when it stopped, worded as Prometheus' `contextDone(ctx, env)` arguments.
pub const STAGE_QUEUE: &str = "query queue";
/// See [`STAGE_QUEUE`].
pub const STAGE_EXECUTION: &str = "query execution";

/// A flag the client side sets and the evaluator polls; clones share the flag.
#[derive(Clone, Debug, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    /// A flag not yet set.
    pub fn new() -> Self {
        CancelFlag::default()
    }

    /// Asks every evaluation polling this flag to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`CancelFlag::cancel`] was called.
    pub fn is_canceled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// A guard that cancels the flag when dropped unless [`CancelGuard::disarm`] ran first: held
    /// by a request handler's future, it turns the future being dropped (the client went away)
    /// into a cancellation the evaluator sees.
    pub fn guard(&self) -> CancelGuard {
        CancelGuard { flag: Some(self.clone()) }
    }
}

/// Cancels its flag on drop; see [`CancelFlag::guard`].
#[derive(Debug)]
pub struct CancelGuard {
    flag: Option<CancelFlag>,
}

impl CancelGuard {
    /// The work finished normally: dropping the guard no longer cancels.
    pub fn disarm(mut self) {
        self.flag = None;
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if let Some(flag) = &self.flag {
            flag.cancel();
        }
    }
}

/// What may stop one query: a deadline and a cancel flag.
#[derive(Clone, Debug, Default)]
pub struct QueryControl {
    /// The query stops with [`QueryError::Timeout`] once `tokio::time::Instant::now()` reaches
    /// this; `None` never times out.
    pub deadline: Option<Instant>,
    /// The query stops with [`QueryError::Canceled`] once this is set.
    pub cancel: CancelFlag,
}

impl QueryControl {
    /// No deadline, a fresh flag: what the plain `instant_query` / `range_query` use.
    pub fn unbounded() -> Self {
        QueryControl::default()
    }

    /// A deadline `timeout_ms` from now (`tokio::time`, virtual under the simulator), and a
    /// fresh flag; a timeout too large to represent means no deadline.
    pub fn with_timeout_ms(timeout_ms: u64) -> Self {
        let deadline = Instant::now().checked_add(std::time::Duration::from_millis(timeout_ms));
        QueryControl { deadline, cancel: CancelFlag::new() }
    }

    /// The error to stop with at `stage`, if any: cancellation first (the client no longer
    /// wants any answer), then the deadline.
    pub fn check(&self, stage: &'static str) -> Result<(), QueryError> {
        if self.cancel.is_canceled() {
            return Err(QueryError::Canceled { stage });
        }
        match self.deadline {
            Some(deadline) if Instant::now() >= deadline => Err(QueryError::Timeout { stage }),
            _ => Ok(()),
        }
    }
}

/// The evaluator's view of a [`QueryControl`]: [`Poller::tick`] is a counter increment except
/// every [`POLL_INTERVAL_COUNT`]th call.
pub(super) struct Poller<'c> {
    control: &'c QueryControl,
    ticks: Cell<u32>,
}

impl<'c> Poller<'c> {
    pub(super) fn new(control: &'c QueryControl) -> Self {
        Poller { control, ticks: Cell::new(0) }
    }

    /// Polls now (before the querier opens).
    pub(super) fn check(&self) -> Result<(), QueryError> {
        self.control.check(STAGE_EXECUTION)
    }

    /// Counts one unit of work (a series read) and polls every [`POLL_INTERVAL_COUNT`] units.
    pub(super) fn tick(&self) -> Result<(), QueryError> {
        self.tick_by(1)
    }

    /// Counts `unit_count` units of work at once (a step over that many input series) and polls
    /// when they cross a multiple of [`POLL_INTERVAL_COUNT`]: a step over a million series polls
    /// every time, a step over one scalar every 1,024 steps, so cheap steps pay no clock read.
    pub(super) fn tick_by(&self, unit_count: usize) -> Result<(), QueryError> {
        let before = self.ticks.get();
        let units = u32::try_from(unit_count).unwrap_or(u32::MAX);
        let after = before.wrapping_add(units);
        self.ticks.set(after);
        if units >= POLL_INTERVAL_COUNT || after / POLL_INTERVAL_COUNT != before / POLL_INTERVAL_COUNT {
            self.check()
        } else {
            Ok(())
        }
    }
}

/// Counters of the gate and of evaluation, rendered on `/metrics`.
#[derive(Debug, Default)]
struct GateCounters {
    running_count: AtomicUsize,
    inner_eval_ns_total: AtomicU64,
    inner_eval_count: AtomicU64,
}

/// A snapshot of the engine's query metrics (Prometheus' `prometheus_engine_*` families).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EngineStats {
    /// Queries holding a permit now (`prometheus_engine_queries`).
    pub queries_running_count: usize,
    /// The permit count (`prometheus_engine_queries_concurrent_max`).
    pub queries_concurrent_max: usize,
    /// Seconds spent evaluating, all queries (`prometheus_engine_query_duration_seconds_sum{slice="inner_eval"}`).
    pub inner_eval_seconds_total: f64,
    /// Evaluations finished or stopped (`..._count{slice="inner_eval"}`).
    pub inner_eval_count: u64,
}

/// Bounds the queries evaluating at once, with a bounded queue in front (Prometheus
/// `ActiveQueryTracker.Insert`, which blocks on a channel of `--query.max-concurrency` slots).
#[derive(Debug)]
pub struct QueryGate {
    semaphore: Arc<Semaphore>,
    concurrency_max: usize,
    queue_capacity_count: usize,
    waiting_count: AtomicUsize,
    counters: Arc<GateCounters>,
}

impl QueryGate {
    /// A gate of `concurrency_max` permits (at least one) and a queue of
    /// [`QUERY_QUEUE_CAPACITY_PER_PERMIT_COUNT`] waiters per permit.
    pub fn new(concurrency_max: usize) -> Self {
        let concurrency_max = concurrency_max.clamp(1, Semaphore::MAX_PERMITS);
        QueryGate {
            semaphore: Arc::new(Semaphore::new(concurrency_max)),
            concurrency_max,
            queue_capacity_count: concurrency_max.saturating_mul(QUERY_QUEUE_CAPACITY_PER_PERMIT_COUNT),
            waiting_count: AtomicUsize::new(0),
            counters: Arc::new(GateCounters::default()),
        }
    }

    /// Waits for a permit until `control`'s deadline. Refuses at once when the queue is full;
    /// dropping the future leaves the queue (a client that went away waits no longer).
    pub async fn admit(&self, control: &QueryControl) -> Result<QueryPermit, QueryError> {
        control.check(STAGE_QUEUE)?;
        let permit = match self.semaphore.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let waiting_count = self.waiting_count.fetch_add(1, Ordering::Relaxed);
                let _leave = LeaveQueue(&self.waiting_count);
                if waiting_count >= self.queue_capacity_count {
                    return Err(QueryError::QueueFull {
                        concurrency_max: self.concurrency_max,
                        queue_capacity_count: self.queue_capacity_count,
                    });
                }
                let acquire = self.semaphore.clone().acquire_owned();
                let acquired = match control.deadline {
                    Some(deadline) => tokio::time::timeout_at(deadline, acquire)
                        .await
                        .map_err(|_| QueryError::Timeout { stage: STAGE_QUEUE })?,
                    None => acquire.await,
                };
                // The semaphore is never closed; should it be, the query is refused, not lost.
                acquired.map_err(|_| QueryError::QueueFull {
                    concurrency_max: self.concurrency_max,
                    queue_capacity_count: self.queue_capacity_count,
                })?
            }
        };
        self.counters.running_count.fetch_add(1, Ordering::Relaxed);
        Ok(QueryPermit { _permit: permit, counters: self.counters.clone() })
    }

    /// Records one evaluation's duration.
    pub(super) fn observe_inner_eval(&self, elapsed: std::time::Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.counters.inner_eval_ns_total.fetch_add(nanos, Ordering::Relaxed);
        self.counters.inner_eval_count.fetch_add(1, Ordering::Relaxed);
    }

    /// The gate's metrics now.
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            queries_running_count: self.counters.running_count.load(Ordering::Relaxed),
            queries_concurrent_max: self.concurrency_max,
            inner_eval_seconds_total: self.counters.inner_eval_ns_total.load(Ordering::Relaxed) as f64 / 1e9,
            inner_eval_count: self.counters.inner_eval_count.load(Ordering::Relaxed),
        }
    }
}

/// Leaves the queue however admission ends (permit, refusal, timeout, or the future dropped).
struct LeaveQueue<'a>(&'a AtomicUsize);

impl Drop for LeaveQueue<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The right to evaluate one query; the slot frees when this drops. Move it into the work that
/// evaluates, so the slot stays taken until evaluation really ends.
#[derive(Debug)]
pub struct QueryPermit {
    _permit: OwnedSemaphorePermit,
    counters: Arc<GateCounters>,
}

impl Drop for QueryPermit {
    fn drop(&mut self) {
        self.counters.running_count.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;

    /// Polls `future` once, as an executor would before it parks.
    fn poll_once<F: Future>(future: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        future.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn control_checks_cancel_before_deadline() {
        #[track_caller]
        fn check(canceled: bool, deadline_past: Option<bool>, expected: Result<(), QueryError>) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
            let _entered = runtime.enter();
            let now = Instant::now();
            let deadline = deadline_past.map(|past| {
                if past {
                    now.checked_sub(std::time::Duration::from_secs(1)).unwrap_or(now)
                } else {
                    now + std::time::Duration::from_secs(3600)
                }
            });
            let control = QueryControl { deadline, cancel: CancelFlag::new() };
            if canceled {
                control.cancel.cancel();
            }
            assert_eq!(control.check(STAGE_EXECUTION), expected);
        }
        check(false, None, Ok(()));
        check(false, Some(false), Ok(()));
        check(false, Some(true), Err(QueryError::Timeout { stage: STAGE_EXECUTION }));
        check(true, None, Err(QueryError::Canceled { stage: STAGE_EXECUTION }));
        check(true, Some(true), Err(QueryError::Canceled { stage: STAGE_EXECUTION }));
    }

    #[test]
    fn messages_are_prometheus_wording() {
        assert_eq!(QueryError::Timeout { stage: STAGE_EXECUTION }.to_string(), "query timed out in query execution");
        assert_eq!(QueryError::Timeout { stage: STAGE_QUEUE }.to_string(), "query timed out in query queue");
        assert_eq!(
            QueryError::Canceled { stage: STAGE_EXECUTION }.to_string(),
            "query was canceled in query execution"
        );
    }

    #[test]
    fn guard_cancels_on_drop_unless_disarmed() {
        let flag = CancelFlag::new();
        flag.guard().disarm();
        assert!(!flag.is_canceled());
        drop(flag.guard());
        assert!(flag.is_canceled());
    }

    #[test]
    fn poller_polls_every_interval() {
        let control = QueryControl::unbounded();
        let poller = Poller::new(&control);
        for _ in 0..POLL_INTERVAL_COUNT - 1 {
            poller.tick().unwrap();
        }
        control.cancel.cancel();
        // The cancel lands between polls: seen at the next interval, not before.
        assert_eq!(poller.tick(), Err(QueryError::Canceled { stage: STAGE_EXECUTION }));
        assert_eq!(poller.check(), Err(QueryError::Canceled { stage: STAGE_EXECUTION }));
    }

    #[test]
    fn weighted_ticks_poll_when_they_cross_an_interval() {
        #[track_caller]
        fn check(unit_counts: &[usize], expected_polls: usize) {
            let control = QueryControl::unbounded();
            control.cancel.cancel();
            let poller = Poller::new(&control);
            let polls = unit_counts.iter().filter(|units| poller.tick_by(**units).is_err()).count();
            assert_eq!(polls, expected_polls, "{unit_counts:?}");
        }
        check(&[1; 1023], 0);
        check(&[1; 1024], 1);
        check(&[1_000_000, 1_000_000, 5], 2);
        check(&[usize::MAX], 1);
        check(&[1000, 23, 1], 1);
        check(&[1000, 23], 0);
        check(&[0; 5000], 0);
    }

    #[tokio::test]
    async fn gate_queues_then_refuses_and_frees_permits() {
        let gate = QueryGate::new(2);
        let control = QueryControl::unbounded();
        let first = gate.admit(&control).await.unwrap();
        let second = gate.admit(&control).await.unwrap();
        assert_eq!(gate.stats().queries_running_count, 2);
        assert_eq!(gate.stats().queries_concurrent_max, 2);
        // Eight may wait (4 per permit); each parks in the queue.
        let mut waiters: Vec<_> = (0..8).map(|_| Box::pin(gate.admit(&control))).collect();
        for waiter in &mut waiters {
            assert!(poll_once(waiter.as_mut()).is_pending());
        }
        let refused = gate.admit(&control).await.unwrap_err();
        assert_eq!(refused, QueryError::QueueFull { concurrency_max: 2, queue_capacity_count: 8 });
        assert!(refused.to_string().contains("--query.max-concurrency=2"), "{refused}");
        // A waiter that gives up frees its queue place.
        drop(waiters.pop());
        let mut ninth = Box::pin(gate.admit(&control));
        assert!(poll_once(ninth.as_mut()).is_pending());
        // A freed permit goes to the first waiter.
        drop(first);
        let admitted = waiters.remove(0).await.unwrap();
        assert_eq!(gate.stats().queries_running_count, 2);
        drop((admitted, second, waiters, ninth));
        assert_eq!(gate.stats().queries_running_count, 0);
    }

    #[tokio::test]
    async fn gate_wait_counts_against_the_deadline() {
        let gate = QueryGate::new(1);
        let _held = gate.admit(&QueryControl::unbounded()).await.unwrap();
        let control = QueryControl::with_timeout_ms(0);
        let mut waiter = pin!(gate.admit(&control));
        // A deadline already reached: refused before queueing.
        assert_eq!(
            poll_once(waiter.as_mut()).map(|result| result.unwrap_err()),
            Poll::Ready(QueryError::Timeout { stage: STAGE_QUEUE })
        );
        // A deadline that passes while the query waits: the wait counted, the permit never came.
        let control = QueryControl::with_timeout_ms(20);
        assert_eq!(gate.admit(&control).await.unwrap_err(), QueryError::Timeout { stage: STAGE_QUEUE });
        assert_eq!(gate.stats().queries_running_count, 1);
    }
}
