//! The task's side of the BOINC client: its status, the reports sent to it,
//! and the signals that ask the wrapper to stop. A trait, so that unit tests
//! can play the client.
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::boinc::wakeup::{Wakeup, POLL_WITHOUT_NEWS};
use crate::boinc::{self, ClientStatus, TaskReport};
use crate::supervise::machine::{self, Interruption};

pub trait Client {
    /// The client's status as the loop reads it, once per round; takes the
    /// news that woke the loop.
    fn poll(&self) -> ClientStatus;
    /// What the library and the signal handlers wake the loop with.
    fn wakeup(&self) -> &Wakeup;
    /// How long the loop may sleep without looking at the status itself.
    fn longest_wait(&self) -> Duration;
    /// The latest status again (while an engine command runs).
    fn latest(&self) -> ClientStatus;
    /// SIGTERM, SIGINT or SIGQUIT reached the wrapper.
    fn terminated(&self) -> bool;
    fn report(&self, report: &TaskReport);
    fn announce_web_graphics(&self, url: &str);
    fn send_trickle_up(&self, variety: &str, content: &str) -> Result<(), i32>;
    fn upload_file(&self, name: &str) -> Result<(), i32>;
    /// None while the client has not said how the upload went.
    fn upload_status(&self, name: &str) -> Option<Result<(), i32>>;
    fn checkpoint_completed(&self);
}

/// The real client, through the BOINC library.
pub struct BoincClient<'a> {
    /// Set by SIGTERM/SIGINT/SIGQUIT.
    pub terminated: Arc<AtomicBool>,
    pub wakeup: &'a Wakeup,
    pub timer: TimerTicks,
}

impl Client for BoincClient<'_> {
    fn poll(&self) -> ClientStatus {
        self.wakeup.take_news();
        boinc::status()
    }
    fn wakeup(&self) -> &Wakeup {
        self.wakeup
    }
    fn longest_wait(&self) -> Duration {
        self.timer
            .longest_wait(boinc::timer_ticks(), Instant::now())
    }
    fn latest(&self) -> ClientStatus {
        boinc::status()
    }
    fn terminated(&self) -> bool {
        self.terminated.load(Ordering::Relaxed)
    }
    fn report(&self, report: &TaskReport) {
        boinc::report(report)
    }
    fn announce_web_graphics(&self, url: &str) {
        boinc::web_graphics_url(url)
    }
    fn send_trickle_up(&self, variety: &str, content: &str) -> Result<(), i32> {
        boinc::send_trickle_up(variety, content)
    }
    fn upload_file(&self, name: &str) -> Result<(), i32> {
        boinc::upload_file(name)
    }
    fn upload_status(&self, name: &str) -> Option<Result<(), i32>> {
        boinc::upload_status(name)
    }
    fn checkpoint_completed(&self) {
        boinc::checkpoint_completed()
    }
}

/// How long the loop may sleep when the library's timer thread tells it of
/// status changes: the periodic report wakes it sooner anyway.
const LONG_WAIT: Duration = Duration::from_secs(10);
/// Without a tick for this long, the timer thread is not telling anything.
const TICKS_STALLED: Duration = Duration::from_millis(1500);

/// Whether the library's timer thread tells of status changes: its ticks
/// move. Where they do not (a library the shim cannot hook, as BOINC's
/// Windows one, or a thread that stopped), the loop looks at the status
/// every `POLL_WITHOUT_NEWS` itself.
pub struct TimerTicks {
    /// The last count seen and when it last moved.
    seen: Cell<(u64, Instant)>,
    stall_reported: Cell<bool>,
}

impl TimerTicks {
    pub fn new(now: Instant) -> TimerTicks {
        TimerTicks {
            seen: Cell::new((0, now)),
            stall_reported: Cell::new(false),
        }
    }

    /// The loop's longest sleep, given the tick count now.
    pub fn longest_wait(&self, ticks: u64, now: Instant) -> Duration {
        if ticks == 0 {
            return POLL_WITHOUT_NEWS;
        }
        let (seen, moved_at) = self.seen.get();
        if ticks != seen {
            self.seen.set((ticks, now));
            return LONG_WAIT;
        }
        if now.saturating_duration_since(moved_at) < TICKS_STALLED {
            return LONG_WAIT;
        }
        if !self.stall_reported.replace(true) {
            log::warn!(
                "the BOINC library's timer thread stopped ticking: looking at the client's status every {} ms",
                POLL_WITHOUT_NEWS.as_millis()
            );
        }
        POLL_WITHOUT_NEWS
    }
}

/// What the client's status (or a signal) asks of a task that is not
/// supervising a container yet: whether to stop setting it up.
pub fn interruption(client: &dyn Client) -> Option<crate::outcome::Outcome> {
    machine::interruption(&client.latest(), client.terminated()).map(|asked| match asked {
        Interruption::Abort => crate::outcome::Outcome::Aborted,
        Interruption::Quit(_) => crate::outcome::Outcome::KeepForRestart,
    })
}

#[cfg(test)]
pub mod fake {
    use std::cell::{Cell, RefCell};
    use std::collections::VecDeque;

    use super::*;

    /// A client that answers each poll with the next scripted status (the
    /// last one repeats) and records the reports.
    pub struct FakeClient {
        wakeup: Wakeup,
        script: RefCell<VecDeque<ClientStatus>>,
        latest: Cell<ClientStatus>,
        pub reports: RefCell<Vec<TaskReport>>,
        pub web_graphics: RefCell<Option<String>>,
        /// Trickles, uploads and checkpoints, in order.
        pub requests: RefCell<Vec<String>>,
    }

    impl Default for FakeClient {
        fn default() -> FakeClient {
            FakeClient {
                wakeup: Wakeup::new().expect("a pipe for the fake client"),
                script: RefCell::default(),
                latest: Cell::default(),
                reports: RefCell::default(),
                web_graphics: RefCell::default(),
                requests: RefCell::default(),
            }
        }
    }

    impl FakeClient {
        /// Statuses built by `edit` on a default one, one per poll.
        pub fn scripted(edits: &[fn(&mut ClientStatus)]) -> FakeClient {
            let client = FakeClient::default();
            for edit in edits {
                let mut status = ClientStatus::default();
                edit(&mut status);
                client.script.borrow_mut().push_back(status);
            }
            client
        }
    }

    impl Client for FakeClient {
        fn wakeup(&self) -> &Wakeup {
            &self.wakeup
        }
        /// One scripted status per tick, as a library without news.
        fn longest_wait(&self) -> Duration {
            POLL_WITHOUT_NEWS
        }
        fn poll(&self) -> ClientStatus {
            let mut script = self.script.borrow_mut();
            if script.len() > 1 {
                self.latest.set(script.pop_front().unwrap_or_default());
            } else if let Some(last) = script.front() {
                self.latest.set(*last);
            }
            self.latest.get()
        }
        fn latest(&self) -> ClientStatus {
            self.latest.get()
        }
        fn terminated(&self) -> bool {
            false
        }
        fn report(&self, report: &TaskReport) {
            self.reports.borrow_mut().push(*report);
        }
        fn announce_web_graphics(&self, url: &str) {
            *self.web_graphics.borrow_mut() = Some(url.into());
        }
        fn send_trickle_up(&self, variety: &str, content: &str) -> Result<(), i32> {
            self.requests
                .borrow_mut()
                .push(format!("trickle {variety}: {content}"));
            Ok(())
        }
        fn upload_file(&self, name: &str) -> Result<(), i32> {
            self.requests.borrow_mut().push(format!("upload {name}"));
            Ok(())
        }
        fn upload_status(&self, _name: &str) -> Option<Result<(), i32>> {
            Some(Ok(()))
        }
        fn checkpoint_completed(&self) {
            self.requests.borrow_mut().push("checkpoint".into());
        }
    }

    #[test]
    fn the_loop_sleeps_long_only_while_the_timer_ticks() {
        let start = Instant::now();
        let ticks = TimerTicks::new(start);
        // A library the shim cannot hook never ticks.
        assert_eq!(ticks.longest_wait(0, start), POLL_WITHOUT_NEWS);
        assert_eq!(ticks.longest_wait(5, start), LONG_WAIT);
        let later = start + Duration::from_millis(900);
        assert_eq!(ticks.longest_wait(14, later), LONG_WAIT);
        // No tick for a while yet: not stalled.
        assert_eq!(
            ticks.longest_wait(14, later + Duration::from_secs(1)),
            LONG_WAIT
        );
        // Stalled: the loop looks for itself, until the ticks move again.
        let stalled = later + TICKS_STALLED;
        assert_eq!(ticks.longest_wait(14, stalled), POLL_WITHOUT_NEWS);
        assert_eq!(
            ticks.longest_wait(14, stalled + Duration::from_secs(5)),
            POLL_WITHOUT_NEWS
        );
        assert_eq!(
            ticks.longest_wait(15, stalled + Duration::from_secs(6)),
            LONG_WAIT
        );
    }

    #[test]
    fn interruptions_follow_the_client() {
        assert_eq!(interruption(&FakeClient::default()), None);
        let quit = FakeClient::scripted(&[|s| s.quit_request = true]);
        quit.poll();
        assert_eq!(
            interruption(&quit),
            Some(crate::outcome::Outcome::KeepForRestart)
        );
        let abort = FakeClient::scripted(&[|s| {
            s.abort_request = true;
            s.quit_request = true
        }]);
        abort.poll();
        assert_eq!(interruption(&abort), Some(crate::outcome::Outcome::Aborted));
    }
}
