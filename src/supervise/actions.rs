//! What each of the state machine's actions does: engine commands, the
//! client's API, the journal; an action's result goes back to the machine
//! as events.
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::run_loop::{Watchers, REPORT_PERIOD};
use crate::boinc::{FinishMessage, TaskReport};
use crate::engine::EngineError;
use crate::outcome::Outcome;
use crate::slot::control_files;
use crate::slot::io as slot_io;
use crate::slot::journal::Phase;
use crate::supervise::machine::{
    self as supervisor, Action, Ending, Event, Interruption, Kill, PauseResult, Periodic,
};
use crate::supervise::suspend;
use crate::task::TaskRun;

/// What performing an action leads to.
pub(super) enum Next {
    Continue,
    /// The action's results, for the machine.
    Then(Vec<Event>),
    /// The process ends so.
    End(Outcome),
}

impl TaskRun<'_> {
    pub(super) fn perform(&mut self, action: &Action, watchers: &mut Watchers) -> Result<Next> {
        let (engine, container) = (self.engine, &self.ctx.container);
        Ok(match action {
            Action::Pause => {
                // A pause the client no longer wants, or an exit, must not
                // wait for an engine that hangs.
                let client = self.client;
                let exit = &mut watchers.exit;
                let mut moot = || exit.exited_now() || pause_is_moot(client);
                let result =
                    watchers
                        .pauser
                        .pause(engine, container, self.container_pid, &mut moot);
                let result = pause_result(result, "suspended", "it keeps running");
                Next::Then(vec![Event::PauseDone(result)])
            }
            Action::PauseForQuit => {
                // Only an abort makes keeping the work pointless.
                let client = self.client;
                let mut abort = || {
                    let asked = supervisor::interruption(&client.latest(), client.terminated());
                    asked == Some(Interruption::Abort)
                };
                let result =
                    watchers
                        .pauser
                        .pause(engine, container, self.container_pid, &mut abort);
                let result = pause_result(result, "kept for a restart", "stopping it instead");
                Next::Then(vec![Event::PauseDone(result)])
            }
            Action::Unpause(how) => {
                match suspend::resume(engine, container, self.container_pid, *how) {
                    Ok(()) => log::info!("resumed: container unpaused"),
                    Err(err) => {
                        log::warn!("unpause failed (the container may not have been paused): {err}")
                    }
                }
                Next::Continue
            }
            Action::FollowNetwork { suspended } => {
                watchers.network.follow(*suspended, true);
                Next::Continue
            }
            Action::PrepareRestart { reason } => {
                log::info!("{reason}: keeping the container for a restart");
                // The next wrapper process would not know which networks were taken.
                let running_again = !watchers.network.restore();
                Next::Then(vec![Event::NetworksRestored { running_again }])
            }
            Action::StopForRestart { continue_first } => {
                // A stopped process would not see the SIGTERM until SIGKILL.
                if *continue_first {
                    suspend::continue_processes(self.container_pid);
                }
                let grace = Duration::from_secs(self.ctx.config.stop_grace_secs);
                let stopped = match engine.stop(container, grace) {
                    Ok(()) => true,
                    Err(err) => {
                        log::warn!("the container could not be stopped: {err}");
                        false
                    }
                };
                Next::Then(vec![Event::StopDone { stopped }])
            }
            Action::KeepForRestart { phase, retry } => {
                self.save_journal(*phase, watchers.accounting.cpu_time(), None);
                Next::End(match retry {
                    Some(retry) => Outcome::RetryLater(retry.clone()),
                    None => Outcome::KeepForRestart,
                })
            }
            Action::Abort => {
                log::info!("the client aborted the task: removing the container");
                // `podman rm -f` stops with SIGTERM and a 10 s grace; an abort needs no grace.
                engine.kill(container);
                if let Err(err) = engine.remove(container) {
                    log::error!("{err}");
                }
                Next::End(Outcome::Aborted)
            }
            Action::End { code, why, kill } => {
                self.say_why(*code, why);
                self.bring_down(*kill);
                let cpu = watchers.accounting.cpu_time();
                Next::End(self.finish(*code, why, true, cpu))
            }
            Action::Report {
                sample,
                job_ended,
                time_share,
            } => {
                if *sample {
                    watchers.accounting.update();
                } else if *job_ended {
                    watchers.accounting.update_at_exit();
                }
                let cpu_time = watchers.accounting.cpu_time();
                self.client.report(&TaskReport {
                    cpu_time,
                    // The container keeps its state across quits: all CPU
                    // time so far is kept work, unless the job says when it
                    // checkpoints.
                    checkpoint_cpu_time: watchers.checkpoint_cpu.unwrap_or(cpu_time),
                    fraction_done: if *job_ended {
                        1.0
                    } else {
                        read_fraction_done(&self.ctx.fraction_done_file())
                            .or(*time_share)
                            .unwrap_or(0.0)
                    },
                    working_set_size: watchers.accounting.memory_bytes(),
                });
                watchers
                    .schedule
                    .set(Periodic::Report, Instant::now() + REPORT_PERIOD);
                Next::Continue
            }
            Action::CheckDisk => match &watchers.disk {
                None => Next::Continue,
                Some(disk) => {
                    let measured = disk.measure();
                    watchers
                        .schedule
                        .set(Periodic::DiskCheck, Instant::now() + measured.next_in);
                    match measured.over_bound {
                        Some(used) => Next::Then(vec![Event::DiskOverBound {
                            used,
                            bound: disk.bound(),
                        }]),
                        None => Next::Continue,
                    }
                }
            },
            Action::CheckControlFiles => {
                watchers
                    .schedule
                    .set(Periodic::ControlFiles, Instant::now() + control_files::POLL);
                self.follow_uploads(&mut watchers.pending_uploads);
                let requests = match &mut watchers.control {
                    Some(control) => control.look(Instant::now()),
                    None => Vec::new(),
                };
                return Ok(Next::Then(requests.into_iter().map(Event::Job).collect()));
            }
            Action::SendTrickle { variety, content } => {
                match self.client.send_trickle_up(variety, content) {
                    Ok(()) => log::info!(
                        "trickle-up message '{variety}' sent ({} bytes)",
                        content.len()
                    ),
                    Err(code) => {
                        log::warn!("cannot send trickle-up message '{variety}' (error {code})")
                    }
                }
                Next::Continue
            }
            Action::RequestUpload { name } => {
                match self.client.upload_file(name) {
                    Ok(()) => {
                        log::info!("{name}: upload requested");
                        watchers.pending_uploads.push(name.clone());
                    }
                    Err(code) => log::warn!("{name}: cannot request its upload (error {code})"),
                }
                Next::Continue
            }
            Action::Checkpoint => {
                watchers.accounting.update();
                let cpu = watchers.accounting.cpu_time();
                watchers.checkpoint_cpu = Some(cpu);
                self.client.checkpoint_completed();
                log::debug!("the job checkpointed at {cpu:.0} s of CPU time");
                Next::Continue
            }
            Action::GiveUp { why } => {
                log::error!("the engine cannot say how the container ended: {why}");
                return Err(EngineError::Unavailable(why.clone()).into());
            }
        })
    }

    /// Logs how the uploads asked for went, once each.
    fn follow_uploads(&self, pending: &mut Vec<String>) {
        pending.retain(|name| match self.client.upload_status(name) {
            None => true,
            Some(Ok(())) => {
                log::info!("{name}: uploaded");
                false
            }
            Some(Err(code)) => {
                log::warn!("{name}: the upload failed (error {code})");
                false
            }
        });
    }

    /// Why the job ends, in stderr.txt.
    pub(crate) fn say_why(&self, code: i32, why: &Ending) {
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

    fn bring_down(&self, kill: Kill) {
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
    pub(crate) fn finish(
        &mut self,
        code: i32,
        why: &Ending,
        container_exists: bool,
        cpu_time: f64,
    ) -> Outcome {
        // Journalled first: if we die before boinc_finish, the next run reports
        // this code instead of rerunning the job.
        self.save_journal(Phase::Finished, cpu_time, Some(code));
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

/// The client or a signal asks for something other than a suspended task:
/// resume, quit, abort, lost heartbeat, SIGTERM.
fn pause_is_moot(client: &dyn super::client::Client) -> bool {
    !client.latest().suspended || super::client::interruption(client).is_some()
}

/// The machine's view of a pause, logged on the way: `purpose` says what
/// the pause was for, `otherwise` what happens when it fails.
fn pause_result(
    result: Result<suspend::Paused, EngineError>,
    purpose: &str,
    otherwise: &str,
) -> PauseResult {
    match result {
        Ok(how) => {
            match how {
                suspend::Paused::ByEngine => log::info!("{purpose}: container paused"),
                suspend::Paused::BySignals => {
                    log::info!("{purpose}: container processes stopped")
                }
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

/// A number and some white space; the job may write anything, of any size.
const FRACTION_DONE_MAX_BYTES: u64 = 256;

/// The first number in the job's fraction_done file, clamped to 0..1 (0
/// when the file holds none); None when there is no such file to read.
fn read_fraction_done(path: &Path) -> Option<f64> {
    let bytes = slot_io::read_prefix(path, FRACTION_DONE_MAX_BYTES).ok()?;
    Some(
        String::from_utf8_lossy(&bytes)
            .split_whitespace()
            .next()
            .and_then(|w| w.parse::<f64>().ok())
            .filter(|f| f.is_finite())
            .map_or(0.0, |f| f.clamp(0.0, 1.0)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TestDir;

    #[test]
    fn fraction_done_is_read_and_clamped() {
        let tmp = TestDir::new("fraction-done");
        let dir = &tmp.0;
        let file = dir.join("fraction_done");
        assert_eq!(read_fraction_done(&file), None);
        for (text, want) in [
            ("0.25\n", 0.25),
            ("7", 1.0),
            ("-1", 0.0),
            ("nan", 0.0),
            ("abc", 0.0),
            ("0.5 extra", 0.5),
        ] {
            std::fs::write(&file, text).unwrap();
            assert_eq!(read_fraction_done(&file), Some(want), "{text:?}");
        }
        // Whatever the job puts there costs at most a short read.
        std::fs::write(&file, format!("0.75{}", " ".repeat(1 << 20))).unwrap();
        assert_eq!(read_fraction_done(&file), Some(0.75));
        std::fs::remove_file(&file).unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/dev/zero", &file).unwrap();
            assert_eq!(read_fraction_done(&file), None);
            std::fs::remove_file(&file).unwrap();
            rustix::fs::mkfifoat(
                rustix::fs::CWD,
                &file,
                rustix::fs::Mode::from_raw_mode(0o644),
            )
            .unwrap();
            assert_eq!(read_fraction_done(&file), None);
        }
    }
}
