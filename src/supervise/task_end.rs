//! Ending the task's container, as supervision does at the job's end and a
//! start does that finds the job ended while the wrapper was away: why in
//! stderr.txt, the container brought down, its log copied, the end
//! journalled, the outcome to report.
use std::time::Duration;

use crate::boinc::FinishMessage;
use crate::context::TaskContext;
use crate::engine::ContainerEngine;
use crate::outcome::Outcome;
use crate::slot::journal::Phase;
use crate::supervise::machine::{Ending, Kill};

/// Ending the task's container: what supervision does at the job's end,
/// and a start does that finds the job ended while the wrapper was away.
pub struct TaskEnd<'a> {
    pub ctx: &'a TaskContext,
    pub engine: &'a dyn ContainerEngine,
    /// The image the container ran, for the journal.
    pub image: Option<&'a str>,
}

impl TaskEnd<'_> {
    /// Why the job ends, in stderr.txt.
    pub fn say_why(&self, code: i32, why: &Ending) {
        match why {
            Ending::Exited => {}
            Ending::OutOfMemory => {
                let limit = self.ctx.init.rsc_memory_bound / (1024.0 * 1024.0);
                log::error!("the job was killed: out of memory (limit {limit:.0} MiB)");
            }
            Ending::OverDiskBound { used, bound } => {
                let mb = |bytes: u64| bytes / 1_000_000;
                log::error!(
                    "the job wrote at least {} MB into the slot, past the workunit's disk bound of {} MB: stopping it",
                    mb(*used),
                    mb(*bound)
                );
            }
            Ending::Hung {
                file,
                silent_secs,
                interval_secs,
            } => log::error!(
                "the job has not touched {file} for {silent_secs} s (minimum_heartbeat_interval {interval_secs} s): it is taken as hung and stopped"
            ),
            Ending::JobDuration { secs } => {
                log::info!("the job has run for its job_duration of {secs} s: stopping it")
            }
            Ending::Completed { .. } => {
                log::info!("the job wrote its completion file: code {code}")
            }
        }
    }

    /// Stops or kills the container, as the ending asks.
    pub fn bring_down(&self, kill: Kill) {
        let (engine, container) = (self.engine, &self.ctx.container);
        match kill {
            Kill::No => {}
            Kill::Now => engine.kill(container),
            Kill::Stop => {
                let grace = Duration::from_secs(self.ctx.config.stop_grace_secs);
                if let Err(err) = engine.stop(container, grace) {
                    log::warn!("the container could not be stopped ({err}); killing it");
                    engine.kill(container);
                }
            }
        }
    }

    /// Container log into stderr.txt, container removed (the image stays
    /// cached for the next workunit), the end journalled and reported.
    pub fn finish(
        &self,
        code: i32,
        why: &Ending,
        container_exists: bool,
        cpu_time: f64,
    ) -> Outcome {
        // Journalled first: if we die before boinc_finish, the next run reports
        // this code instead of rerunning the job.
        self.ctx
            .save_journal(self.image, Phase::Finished, cpu_time, Some(code));
        if container_exists {
            self.copy_container_log();
            if let Err(err) = self.engine.remove(&self.ctx.container) {
                log::error!("cannot remove the container: {err}");
            }
        }
        if *why != Ending::OutOfMemory {
            log::info!("the job exited with code {code}");
        }
        match why {
            Ending::Completed { message, notice } if !message.is_empty() => Outcome::Completed {
                code,
                message: FinishMessage {
                    text: message.clone(),
                    notice: *notice,
                },
            },
            _ => Outcome::Finished(code),
        }
    }

    fn copy_container_log(&self) {
        let max = usize::try_from(self.ctx.config.log_tail_bytes).unwrap_or(usize::MAX);
        if max == 0 {
            return;
        }
        match self.engine.logs_tail(&self.ctx.container, max) {
            Ok(log) => {
                eprintln!(
                    "---- container output (last {} KiB at most) ----",
                    max / 1024
                );
                eprint!("{log}");
                if !log.ends_with('\n') && !log.is_empty() {
                    eprintln!();
                }
                eprintln!("---- end of container output ----");
            }
            Err(err) => log::warn!("cannot read the container log: {err}"),
        }
    }
}
