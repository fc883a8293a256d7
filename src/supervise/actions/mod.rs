//! What each of the machine's actions does, grouped by what it touches:
//! the pause and the quit (`pause_quit`), the reports to the client and the
//! periodic checks (`reports`), what the job asks through its control files
//! (`job_requests`), and the task's end (`endings`). An action's result goes
//! back to the machine as events.
use super::machine::Action;
use super::{Next, Supervision};
use crate::outcome::TaskError;

mod endings;
mod job_requests;
mod pause_quit;
mod reports;

impl Supervision<'_> {
    pub(super) fn perform(&mut self, action: &Action) -> Result<Next, TaskError> {
        Ok(match action {
            Action::Pause => self.pause(),
            Action::PauseForQuit => self.pause_for_quit(),
            Action::Unpause(how) => self.unpause(*how),
            Action::FollowNetwork { suspended } => {
                self.network.follow(*suspended, true);
                Next::Continue
            }
            Action::PrepareRestart { reason } => self.prepare_restart(reason),
            Action::StopForRestart { continue_first } => self.stop_for_restart(*continue_first),
            Action::KeepForRestart { phase, retry } => self.keep_for_restart(*phase, retry),
            Action::Report {
                sample,
                job_ended,
                time_share,
            } => self.report(*sample, *job_ended, *time_share),
            Action::CheckDisk => self.check_disk(),
            Action::Checkpoint => self.checkpoint(),
            Action::CheckControlFiles => self.check_control_files(),
            Action::SendTrickle { variety, content } => self.send_trickle(variety, content),
            Action::RequestUpload { name } => self.request_upload(name),
            Action::Abort => self.abort(),
            Action::End { code, why, kill } => self.end(*code, why, *kill),
            Action::GiveUp { why } => return Err(give_up(why)),
        })
    }
}

/// The engine is gone: the task is retried later, and the next run finds
/// the container by name.
fn give_up(why: &str) -> TaskError {
    log::error!("the engine cannot say how the container ended: {why}");
    TaskError::EngineLost(why.to_string())
}
