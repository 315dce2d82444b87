//! Circuit breaker on the downstream: closed while it answers, open after `consecutive_failures`
//! failures in a row or `failure_ratio` of the last `ratio_window` requests failing, open for
//! `open_ms`, then half-open: exactly one probe goes through; its success closes the breaker, its
//! failure opens it for another period. While open, requests are not sent at all (the frontend
//! answers from stale copies instead), so a struggling downstream gets room to recover.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::config::BreakerSettings;

/// The breaker's state, as exported (`frontend_breaker_state`: 0 closed, 1 open, 2 half-open).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Requests go through.
    Closed,
    /// Requests are refused until the instant.
    Open,
    /// One probe is out, the rest are refused.
    HalfOpen,
}

impl State {
    /// The gauge value.
    pub fn code(self) -> u8 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        }
    }
}

/// Whether a request may go downstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Yes; report its outcome with [`Breaker::record`].
    Allowed,
    /// Yes, as the half-open probe; report its outcome.
    Probe,
    /// No: the breaker is open.
    Refused,
}

/// The breaker.
pub struct Breaker {
    settings: BreakerSettings,
    state: State,
    open_until: Instant,
    consecutive_failures: u32,
    /// Outcomes of the latest requests, `true` for a failure.
    recent: VecDeque<bool>,
    opened_count: u64,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(settings: BreakerSettings, now: Instant) -> Breaker {
        Breaker {
            settings,
            state: State::Closed,
            open_until: now,
            consecutive_failures: 0,
            recent: VecDeque::new(),
            opened_count: 0,
        }
    }

    /// Asks to send one request now.
    pub fn admit(&mut self, now: Instant) -> Admission {
        match self.state {
            State::Closed => Admission::Allowed,
            State::Open if now >= self.open_until => {
                self.state = State::HalfOpen;
                Admission::Probe
            }
            State::Open | State::HalfOpen => Admission::Refused,
        }
    }

    /// Reports how an admitted request went.
    pub fn record(&mut self, admission: Admission, failed: bool, now: Instant) {
        match admission {
            Admission::Refused => {}
            Admission::Probe => {
                if failed {
                    self.open(now);
                } else {
                    self.close();
                }
            }
            Admission::Allowed => {
                if self.state != State::Closed {
                    return; // An answer from before the breaker opened.
                }
                self.recent.push_back(failed);
                if self.recent.len() > self.settings.ratio_window {
                    self.recent.pop_front();
                }
                self.consecutive_failures = if failed { self.consecutive_failures + 1 } else { 0 };
                let failure_count = self.recent.iter().filter(|failed| **failed).count();
                let ratio_tripped = self.recent.len() >= self.settings.ratio_window
                    && failure_count as f64 >= self.settings.failure_ratio * self.recent.len() as f64;
                if self.consecutive_failures >= self.settings.consecutive_failures || ratio_tripped {
                    self.open(now);
                }
            }
        }
    }

    /// The state as of `now` (an open breaker past its period reads half-open-ready as open
    /// until a request probes).
    pub fn state(&self) -> State {
        self.state
    }

    /// Times the breaker opened.
    pub fn opened_count(&self) -> u64 {
        self.opened_count
    }

    fn open(&mut self, now: Instant) {
        self.state = State::Open;
        self.open_until = now + Duration::from_millis(self.settings.open_ms.max(0) as u64);
        self.opened_count += 1;
        self.consecutive_failures = 0;
        self.recent.clear();
    }

    fn close(&mut self) {
        self.state = State::Closed;
        self.consecutive_failures = 0;
        self.recent.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(now: Instant) -> Breaker {
        Breaker::new(BreakerSettings::default(), now)
    }

    #[test]
    fn opens_after_five_failures_in_a_row_and_probes_once() {
        let start = Instant::now();
        let mut breaker = breaker(start);
        for _ in 0..4 {
            assert_eq!(breaker.admit(start), Admission::Allowed);
            breaker.record(Admission::Allowed, true, start);
        }
        breaker.record(Admission::Allowed, false, start); // a success resets the run
        for _ in 0..5 {
            breaker.record(Admission::Allowed, true, start);
        }
        assert_eq!(breaker.state(), State::Open);
        assert_eq!(breaker.admit(start + Duration::from_secs(59)), Admission::Refused);
        let after = start + Duration::from_secs(60);
        assert_eq!(breaker.admit(after), Admission::Probe);
        assert_eq!(breaker.admit(after), Admission::Refused, "one probe at a time");
        breaker.record(Admission::Probe, true, after);
        assert_eq!(breaker.state(), State::Open);
        assert_eq!(breaker.admit(after + Duration::from_secs(59)), Admission::Refused);
        let later = after + Duration::from_secs(60);
        assert_eq!(breaker.admit(later), Admission::Probe);
        breaker.record(Admission::Probe, false, later);
        assert_eq!(breaker.state(), State::Closed);
        assert_eq!(breaker.admit(later), Admission::Allowed);
        assert_eq!(breaker.opened_count(), 2);
    }

    #[test]
    fn opens_on_the_failure_ratio() {
        let now = Instant::now();
        let mut breaker = breaker(now);
        // Alternating failures never make five in a row, but half of 20 failed.
        for index in 0..19 {
            breaker.record(Admission::Allowed, index % 2 == 1, now);
            assert_eq!(breaker.state(), State::Closed, "request {index}");
        }
        breaker.record(Admission::Allowed, false, now);
        assert_eq!(breaker.state(), State::Closed, "9 of 20 failed");
        breaker.record(Admission::Allowed, true, now);
        assert_eq!(breaker.state(), State::Open, "10 of the last 20 failed");
    }
}
