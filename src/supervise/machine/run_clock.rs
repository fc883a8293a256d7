//! The job's running time: wall-clock time while it runs, stopped while it
//! is suspended, on top of what earlier runs of the task counted.
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    /// Running time up to the last stop (or the start of this run).
    before: Duration,
    /// When the clock last started, while it runs.
    since: Option<Instant>,
}

impl RunClock {
    /// A clock that has counted `before` and runs from `now`.
    pub fn started(before: Duration, now: Instant) -> RunClock {
        RunClock {
            before,
            since: Some(now),
        }
    }

    pub fn elapsed(&self, now: Instant) -> Duration {
        self.before
            + self
                .since
                .map_or(Duration::ZERO, |since| now.saturating_duration_since(since))
    }

    pub fn stop(&mut self, now: Instant) {
        self.before = self.elapsed(now);
        self.since = None;
    }

    pub fn start(&mut self, now: Instant) {
        if self.since.is_none() {
            self.since = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_stopped_does_not_count() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut clock = RunClock::started(s(100), t0);
        assert_eq!(clock.elapsed(t0 + s(5)), s(105));
        clock.stop(t0 + s(5));
        assert_eq!(clock.elapsed(t0 + s(50)), s(105));
        clock.start(t0 + s(50));
        // A second start does not move the clock's start.
        clock.start(t0 + s(55));
        assert_eq!(clock.elapsed(t0 + s(60)), s(115));
        clock.stop(t0 + s(60));
        clock.stop(t0 + s(70));
        assert_eq!(clock.elapsed(t0 + s(80)), s(115));
    }
}
