//! One schedule for the supervision loop's periodic work: each job has its
//! next due time; the loop asks which are due and how long it may wait.
use std::time::{Duration, Instant};

pub struct Schedule<J> {
    jobs: Vec<(J, Instant)>,
}

impl<J: Copy + PartialEq> Schedule<J> {
    pub fn new() -> Schedule<J> {
        Schedule { jobs: Vec::new() }
    }

    /// Makes `job` due at `at` (replacing an earlier time).
    pub fn set(&mut self, job: J, at: Instant) {
        match self.jobs.iter_mut().find(|(j, _)| *j == job) {
            Some(entry) => entry.1 = at,
            None => self.jobs.push((job, at)),
        }
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
        let mut schedule = Schedule::new();
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
}
