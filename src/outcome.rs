//! How the process ends. A task's run comes to an `Outcome` or a
//! `TaskError`; `end_process` is the one place that turns either into what
//! the client is told (boinc_finish with a code, a temporary exit, or a
//! plain exit that keeps the work).
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::boinc::exit_code::WrapperExit;
use crate::boinc::init_data::InitData;
use crate::boinc::{self, FinishMessage};
use crate::engine::EngineError;
use crate::slot::handover;

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
    Completed { code: i32, message: FinishMessage },
    /// The job asked to be restarted later (its temporary-exit file); its
    /// container is kept.
    RetryLater(Retry),
}

/// A temporary exit the job asked for (its temporary-exit file): the
/// client restarts the task then.
#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    pub delay_secs: u32,
    pub reason: String,
    pub notice: bool,
}

/// Why a task cannot go on, decided where it happened.
#[derive(Debug)]
pub enum TaskError {
    /// The task cannot be set up or run, and trying again would not help
    /// (bad job.toml, missing Dockerfile, failed build, an engine that
    /// refuses the container): it ends with `WrapperExit::InitFailure`.
    SetUp(anyhow::Error),
    /// The engine is down, hangs or is busy: the client retries later,
    /// and the container stays for the retry to find.
    EngineLost(String),
}

impl TaskError {
    /// A set-up failure with this message.
    pub fn set_up(message: impl std::fmt::Display) -> TaskError {
        TaskError::SetUp(anyhow::anyhow!("{message}"))
    }

    /// Says what was being done when set-up failed; an engine that is lost
    /// needs no more words.
    pub fn context(self, context: &'static str) -> TaskError {
        match self {
            TaskError::SetUp(err) => TaskError::SetUp(err.context(context)),
            lost => lost,
        }
    }
}

/// The engine's own word decides: its kind was fixed when it was built.
impl From<EngineError> for TaskError {
    fn from(err: EngineError) -> TaskError {
        match err.unavailable() {
            Some(why) => TaskError::EngineLost(why.to_string()),
            None => TaskError::SetUp(err.into()),
        }
    }
}

impl From<anyhow::Error> for TaskError {
    fn from(err: anyhow::Error) -> TaskError {
        TaskError::SetUp(err)
    }
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskError::SetUp(err) => write!(f, "{err:#}"),
            TaskError::EngineLost(why) => f.write_str(why),
        }
    }
}

/// How long to wait for the client to read the final status report.
const FINAL_REPORT_WAIT: Duration = Duration::from_secs(2);

/// Tells the client how the task ended, and ends the process.
pub fn end_process(result: Result<Outcome, TaskError>) -> ExitCode {
    match result {
        Ok(Outcome::Finished(code)) => finish(code, None),
        Ok(Outcome::Completed { code, message }) => finish(code, Some(&message)),
        Ok(Outcome::RetryLater(retry)) => {
            log::info!(
                "the job asked to be restarted in {} s: {}",
                retry.delay_secs,
                retry.reason
            );
            boinc::temporary_exit(retry.delay_secs as i32, &retry.reason, retry.notice)
        }
        Ok(Outcome::TemporaryExit(reason)) | Err(TaskError::EngineLost(reason)) => {
            log::warn!("{reason}; asking the client to retry later");
            boinc::temporary_exit(RETRY_DELAY_SECS, &reason, false)
        }
        Ok(Outcome::KeepForRestart) | Ok(Outcome::Aborted) => ExitCode::SUCCESS,
        Err(TaskError::SetUp(err)) => {
            log::error!("{err:#}");
            hand_over_slot();
            boinc::finish(WrapperExit::InitFailure.code())
        }
    }
}

/// Hands the slot to the client and reports the task finished.
fn finish(code: i32, message: Option<&FinishMessage>) -> ! {
    hand_over_slot();
    boinc::finish_promptly(code, message, FINAL_REPORT_WAIT)
}

/// Before the client takes the outputs: nothing the job left in a client's
/// slot may lead out of it (a standalone directory is the admin's own).
fn hand_over_slot() {
    let Ok(slot) = std::env::current_dir() else {
        return;
    };
    let init_data = slot.join("init_data.xml");
    if !init_data.exists() {
        return;
    }
    for refused in handover::clear_slot(&slot, project_dir(&init_data).as_deref()) {
        log::error!("{refused}");
    }
}

fn project_dir(init_data: &Path) -> Option<PathBuf> {
    InitData::load(init_data)
        .ok()
        .map(|init| PathBuf::from(init.project_dir))
        .filter(|dir| !dir.as_os_str().is_empty())
}
