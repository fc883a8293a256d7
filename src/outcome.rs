//! How the process ends: what a task's run comes to.
use crate::boinc;
use crate::supervise::machine::Retry;

/// Delay before the client restarts us after a temporary exit.
pub const RETRY_DELAY_SECS: i32 = 300;

/// How the process ends.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// The job ran to its end: report this exit code with boinc_finish.
    Finished(i32),
    /// The task cannot run now; the client should retry later.
    TemporaryExit(String),
    /// The work is kept (container paused or stopped); exit without
    /// finishing so the client restarts us.
    KeepForRestart,
    /// The client aborted the task; the container is gone.
    Aborted,
    /// The job said it is done (its completion file): finish with this
    /// code and pass its message on to the volunteer.
    Completed {
        code: i32,
        message: boinc::FinishMessage,
    },
    /// The job asked to be restarted later (its temporary-exit file); its
    /// container is kept.
    RetryLater(Retry),
}
