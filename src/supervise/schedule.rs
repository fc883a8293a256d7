//! One schedule for the supervision loop's periodic work: each job has its
//! next due time; the loop asks which are due and how long it may wait.
//!
//! Due times snap to the nearest point of a grid (the report period), so
//! that jobs falling due close together share one wake-up of the loop
//! instead of waking it each in turn.
use std::time::{Duration, Instant};

pub struct Schedule<J> {
    jobs: Vec<(J, Instant)>,
    origin: Instant,
    grid: Duration,
}

impl<J: Copy + PartialEq> Schedule<J> {
    /// A grid of `grid` from `origin`.
    pub fn new(origin: Instant, grid: Duration) -> Schedule<J> {
        Schedule {
            jobs: Vec::new(),
            origin,
            grid,
        }
    }

    /// Makes `job` due at the grid point nearest `at` (replacing an
    /// earlier time).
    pub fn set(&mut self, job: J, at: Instant) {
        let at = self.snap(at);
        match self.jobs.iter_mut().find(|(j, _)| *j == job) {
            Some(entry) => entry.1 = at,
            None => self.jobs.push((job, at)),
        }
    }

    fn snap(&self, at: Instant) -> Instant {
        let grid = self.grid.as_nanos().max(1);
        let since = at.saturating_duration_since(self.origin).as_nanos();
        let nearest = (since + grid / 2) / grid * grid;
        self.origin + Duration::from_nanos(u64::try_from(nearest).unwrap_or(u64::MAX))
    }

    /// The jobs due at `now`, earliest first; each is taken off until set again.
    pub fn take_due(&mut self, now: Instant) -> Vec<J> {
        let mut due: Vec<(J, Instant)> = self
            .jobs
            .iter()
            .copied()
            .filter(|(_, at)| *at <= now)
            .collect();
        due.sort_by_key(|(_, at)| *at);
        self.jobs.retain(|(_, at)| *at > now);
        due.into_iter().map(|(job, _)| job).collect()
    }

    /// How long from `now` until the next job is due, at most `max`.
    pub fn wait_from(&self, now: Instant, max: Duration) -> Duration {
        self.jobs
            .iter()
            .map(|(_, at)| at.saturating_duration_since(now))
            .fold(max, Duration::min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_jobs_come_out_in_order_once() {
        let now = Instant::now();
        let mut schedule = Schedule::new(now, Duration::from_millis(1));
        schedule.set('b', now + Duration::from_secs(2));
        schedule.set('a', now + Duration::from_secs(1));
        schedule.set('c', now + Duration::from_secs(9));
        assert_eq!(schedule.take_due(now), vec![]);
        assert_eq!(
            schedule.wait_from(now, Duration::from_secs(5)),
            Duration::from_secs(1)
        );
        let later = now + Duration::from_secs(3);
        assert_eq!(schedule.take_due(later), vec!['a', 'b']);
        assert_eq!(schedule.take_due(later), vec![]);
        assert_eq!(
            schedule.wait_from(later, Duration::from_secs(60)),
            Duration::from_secs(6)
        );
        schedule.set('c', later);
        assert_eq!(schedule.take_due(later), vec!['c']);
        assert_eq!(
            schedule.wait_from(later, Duration::from_millis(100)),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn jobs_due_close_together_share_a_wake_up() {
        let origin = Instant::now();
        let second = Duration::from_secs(1);
        let mut schedule = Schedule::new(origin, second);
        // Set a little after a round of work, as the loop does.
        let after_work = origin + Duration::from_millis(3);
        schedule.set('r', after_work + second);
        schedule.set('c', after_work + Duration::from_millis(2) + second);
        schedule.set('d', after_work + Duration::from_millis(1900));
        assert_eq!(
            schedule.wait_from(after_work, Duration::MAX),
            second - Duration::from_millis(3)
        );
        assert_eq!(schedule.take_due(origin + second), vec!['r', 'c']);
        assert_eq!(schedule.wait_from(origin + second, Duration::MAX), second);
        assert_eq!(schedule.take_due(origin + 2 * second), vec!['d']);
    }
}
