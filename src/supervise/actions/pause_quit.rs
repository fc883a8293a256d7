//! Pausing for the client's suspend, and keeping the work for a restart
//! when it asks the wrapper to quit.
use std::time::Duration;

use crate::engine::EngineError;
use crate::outcome::{Outcome, Retry};
use crate::slot::journal::Phase;
use crate::supervise::client::{self, Client};
use crate::supervise::machine::{self, Event, Interruption, PauseResult};
use crate::supervise::suspend::{self, Paused, Pauser};
use crate::supervise::{Next, Supervision, Task};

impl Supervision<'_> {
    pub(super) fn pause(&mut self) -> Next {
        // A pause the client no longer wants, or an exit, must not wait for
        // an engine that hangs.
        let client = self.task.client;
        let exit = &mut self.exit;
        let mut moot = || exit.exited_now() || pause_is_moot(client);
        let result = pause_with(&self.task, &mut self.pauser, &mut moot);
        let result = pause_result(result, "suspended", "it keeps running");
        Next::Then(vec![Event::PauseDone(result)])
    }

    pub(super) fn pause_for_quit(&mut self) -> Next {
        // Only an abort makes keeping the work pointless.
        let client = self.task.client;
        let mut abort = || {
            let asked = machine::interruption(&client.latest(), client.terminated());
            asked == Some(Interruption::Abort)
        };
        let result = pause_with(&self.task, &mut self.pauser, &mut abort);
        let result = pause_result(result, "kept for a restart", "stopping it instead");
        Next::Then(vec![Event::PauseDone(result)])
    }

    pub(super) fn unpause(&mut self, how: Paused) -> Next {
        let task = &self.task;
        match suspend::resume(task.engine, &task.ctx.container, task.container_pid, how) {
            Ok(()) => log::info!("resumed: container unpaused"),
            Err(err) => {
                log::warn!("unpause failed (the container may not have been paused): {err}")
            }
        }
        Next::Continue
    }

    pub(super) fn prepare_restart(&mut self, reason: &str) -> Next {
        log::info!("{reason}: keeping the container for a restart");
        // The next wrapper process would not know which networks were taken.
        let running_again = !self.network.restore();
        Next::Then(vec![Event::NetworksRestored { running_again }])
    }

    pub(super) fn stop_for_restart(&mut self, continue_first: bool) -> Next {
        // A stopped process would not see the SIGTERM until SIGKILL.
        if continue_first {
            suspend::continue_processes(self.task.container_pid);
        }
        let grace = Duration::from_secs(self.task.ctx.config.stop_grace_secs);
        let stopped = match self.task.engine.stop(&self.task.ctx.container, grace) {
            Ok(()) => true,
            Err(err) => {
                log::warn!("the container could not be stopped: {err}");
                false
            }
        };
        Next::Then(vec![Event::StopDone { stopped }])
    }

    pub(super) fn keep_for_restart(&mut self, phase: Phase, retry: &Option<Retry>) -> Next {
        let image = self.task.image.as_deref();
        let cpu = self.accounting.cpu_time();
        self.task.ctx.save_journal(image, phase, cpu, None);
        Next::End(match retry {
            Some(retry) => Outcome::RetryLater(retry.clone()),
            None => Outcome::KeepForRestart,
        })
    }
}

/// Pauses the task's container; `cancel` is asked while the engine works.
fn pause_with(
    task: &Task,
    pauser: &mut Pauser,
    cancel: &mut dyn FnMut() -> bool,
) -> Result<Paused, EngineError> {
    pauser.pause(task.engine, &task.ctx.container, task.container_pid, cancel)
}

/// The client or a signal asks for something other than a suspended task:
/// resume, quit, abort, lost heartbeat, SIGTERM.
fn pause_is_moot(client: &dyn Client) -> bool {
    !client.latest().suspended || client::interruption(client).is_some()
}

/// The machine's view of a pause, logged on the way: `purpose` says what
/// the pause was for, `otherwise` what happens when it fails.
fn pause_result(
    result: Result<Paused, EngineError>,
    purpose: &str,
    otherwise: &str,
) -> PauseResult {
    match result {
        Ok(how) => {
            match how {
                Paused::ByEngine => log::info!("{purpose}: container paused"),
                Paused::BySignals => log::info!("{purpose}: container processes stopped"),
            }
            PauseResult::Paused(how)
        }
        Err(EngineError::Cancelled) => {
            log::info!("pause abandoned: the client or the job moved on");
            PauseResult::Cancelled
        }
        Err(err) => {
            log::warn!("the container could not be paused ({err}); {otherwise}");
            PauseResult::Failed
        }
    }
}
