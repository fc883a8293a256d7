//! The task's side of the BOINC client: its status, the reports sent to it,
//! and the signals that ask the wrapper to stop. A trait, so that unit tests
//! can play the client.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::boinc::{self, ClientStatus, TaskReport};

pub trait Client {
    /// The client's status as the loop reads it, once per round.
    fn poll(&self) -> ClientStatus;
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
pub struct BoincClient {
    /// Set by SIGTERM/SIGINT/SIGQUIT.
    pub terminated: Arc<AtomicBool>,
}

impl Client for BoincClient {
    fn poll(&self) -> ClientStatus {
        boinc::status()
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

/// What the client's status (or a signal) asks of a task that is not
/// supervising a container yet: whether to stop setting it up.
pub fn interruption(client: &dyn Client) -> Option<super::Outcome> {
    let status = client.latest();
    if status.abort_request {
        Some(super::Outcome::Aborted)
    } else if status.quit_request || status.no_heartbeat || client.terminated() {
        Some(super::Outcome::KeepForRestart)
    } else {
        None
    }
}

#[cfg(test)]
pub mod fake {
    use std::cell::{Cell, RefCell};
    use std::collections::VecDeque;

    use super::*;

    /// A client that answers each poll with the next scripted status (the
    /// last one repeats) and records the reports.
    #[derive(Default)]
    pub struct FakeClient {
        script: RefCell<VecDeque<ClientStatus>>,
        latest: Cell<ClientStatus>,
        pub reports: RefCell<Vec<TaskReport>>,
        pub web_graphics: RefCell<Option<String>>,
        /// Trickles, uploads and checkpoints, in order.
        pub requests: RefCell<Vec<String>>,
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
    fn interruptions_follow_the_client() {
        assert_eq!(interruption(&FakeClient::default()), None);
        let quit = FakeClient::scripted(&[|s| s.quit_request = true]);
        quit.poll();
        assert_eq!(
            interruption(&quit),
            Some(crate::task::Outcome::KeepForRestart)
        );
        let abort = FakeClient::scripted(&[|s| {
            s.abort_request = true;
            s.quit_request = true
        }]);
        abort.poll();
        assert_eq!(interruption(&abort), Some(crate::task::Outcome::Aborted));
    }
}
