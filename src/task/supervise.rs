//! Supervision: the loop that follows the client and the container until
//! the task ends, and the actions it performs.
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::{Outcome, Task};
use crate::boinc::{self, TaskReport};
use crate::config::QuitAction;
use crate::engine::exit_watch::ExitWatch;
use crate::engine::{ContainerState, EngineError};
use crate::exit_code::WrapperExit;
use crate::journal::Phase;
use crate::network::ContainerNetwork;
use crate::slot_files;
use crate::slot_io;
use crate::slot_usage::DiskWatch;
use crate::supervisor::{self, Action, Event, State};
use crate::suspend::{self, Paused};
use crate::usage::Accounting;

/// How often the loop looks at the client's status. The API reads the
/// client's messages at 10 Hz; matching it keeps suspend -> paused near
/// 100 ms for about a millisecond of CPU a second.
const TICK: Duration = Duration::from_millis(100);
/// How often CPU time, memory and fraction done go to the client.
const REPORT_PERIOD: Duration = Duration::from_secs(1);

impl Task {
    /// The main loop: client messages and container exit until the end.
    pub(super) fn supervise(&self, container: &ContainerState, client_cpu: f64) -> Result<Outcome> {
        let mut watch = ExitWatch::start(&self.engine, &self.container, container.pid)?;
        let host_pid = Some(self.container_pid.get()).filter(|pid| *pid > 0);
        let read_stats = Box::new(|| {
            self.engine
                .stats(&self.container)
                .map_err(|err| log::debug!("{err}"))
                .ok()
        });
        let mut accounting = Accounting::new(host_pid, &container.id, client_cpu, read_stats);
        let mut state = State::Running;
        let mut network = ContainerNetwork::new(&self.engine, &self.container, self.config.network);
        let linked = slot_files::linked_files(&self.slot_dir)
            .map(|files| files.into_iter().map(|f| f.target).collect());
        let mut disk = DiskWatch::new(
            &self.slot_dir,
            linked.unwrap_or_default(),
            self.init.rsc_disk_bound,
        );
        let mut next_report = Instant::now();
        loop {
            let event = if watch.wait_exited(TICK) {
                // Read the cgroup's OOM counter at once, before the engine removes the cgroup.
                let cgroup_oom = accounting.oom_killed();
                let exit = watch.exit(&self.engine, &self.container)?;
                let engine_oom = match exit.oom_killed {
                    Some(oom_killed) => oom_killed,
                    // The exit code is known: an engine that cannot say more
                    // must not cost the task its result.
                    None => {
                        match self.engine.inspect(&self.container) {
                            Ok(state) => state.is_some_and(|s| s.oom_killed),
                            Err(err) => {
                                log::warn!("cannot ask the engine whether the job ran out of memory: {err}");
                                false
                            }
                        }
                    }
                };
                Event::ContainerExited {
                    code: exit.code,
                    oom_killed: engine_oom || (cgroup_oom && exit.code == 137),
                }
            } else if self.terminated.load(Ordering::Relaxed) {
                Event::Terminated
            } else {
                Event::Client(boinc::status())
            };
            let (next, actions) = supervisor::transition(state, &event);
            // The next wrapper process would not know which networks were taken.
            if actions
                .iter()
                .any(|a| matches!(a, Action::KeepForRestart { .. }))
                && !network.restore()
            {
                // Unpaused to reconnect and not paused again: it runs.
                self.paused.set(None);
            }
            if next != state {
                log::debug!("{state:?} -> {next:?}");
            }
            state = next;
            if Instant::now() >= next_report || state == State::Done {
                if state == State::Running {
                    accounting.update();
                }
                // The final report (sent before the clean-up, so the client has
                // read it by the time we exit) says done, as boinc_finish does.
                let ended = matches!(event, Event::ContainerExited { .. });
                boinc::report(&TaskReport {
                    cpu_time: accounting.cpu_time(),
                    // The container keeps its state across quits: all CPU time so far is kept work.
                    checkpoint_cpu_time: accounting.cpu_time(),
                    fraction_done: if ended {
                        1.0
                    } else {
                        read_fraction_done(&self.fraction_done())
                    },
                    working_set_size: accounting.memory_bytes(),
                });
                next_report = Instant::now() + REPORT_PERIOD;
            }
            if state == State::Running && actions.is_empty() {
                if let Some(disk) = disk.as_mut() {
                    if let Some(used) = disk.over_bound() {
                        return Ok(self.end_over_disk_bound(
                            used,
                            disk.bound(),
                            accounting.cpu_time(),
                        ));
                    }
                }
            }
            for action in actions {
                // A pause the client no longer wants, or an exit, must not
                // wait for an engine that hangs.
                let mut moot = || watch.exited_now() || self.pause_is_moot();
                if let Some(outcome) = self.perform(&action, accounting.cpu_time(), &mut moot)? {
                    return Ok(outcome);
                }
            }
            if let Event::Client(status) = &event {
                network.follow(status.network_suspended, state == State::Running);
            }
        }
    }

    /// The client or a signal asks for something other than a suspended
    /// task: resume, quit, abort, lost heartbeat, SIGTERM.
    fn pause_is_moot(&self) -> bool {
        let status = boinc::status();
        !status.suspended
            || super::interruption(&status, self.terminated.load(Ordering::Relaxed)).is_some()
    }

    /// `moot` tells a pause in progress to give up.
    fn perform(
        &self,
        action: &Action,
        cpu_time: f64,
        moot: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Outcome>> {
        match action {
            Action::Pause => {
                match self.pause(moot) {
                    Ok(Paused::ByEngine) => log::info!("suspended: container paused"),
                    Ok(Paused::BySignals) => log::info!("suspended: container processes stopped"),
                    Err(EngineError::Cancelled) => {
                        log::info!("pause abandoned: the client or the job moved on")
                    }
                    // Losing the task over it would be worse than a job running on.
                    Err(err) => {
                        log::warn!("the container could not be paused; it keeps running: {err}")
                    }
                }
                Ok(None)
            }
            Action::Unpause => {
                let how = self.paused.take().unwrap_or(Paused::ByEngine);
                match suspend::resume(&self.engine, &self.container, self.container_pid.get(), how)
                {
                    Ok(()) => log::info!("resumed: container unpaused"),
                    Err(err) => {
                        log::warn!("unpause failed (the container may not have been paused): {err}")
                    }
                }
                Ok(None)
            }
            Action::KeepForRestart { reason } => {
                log::info!("{reason}: keeping the container for a restart");
                let phase = self.keep_for_restart();
                self.save_journal(phase, cpu_time, None);
                Ok(Some(Outcome::KeepForRestart))
            }
            Action::Abort => {
                log::info!("the client aborted the task: removing the container");
                // `podman rm -f` stops with SIGTERM and a 10 s grace; an abort needs no grace.
                self.engine.kill(&self.container);
                if let Err(err) = self.engine.remove(&self.container) {
                    log::error!("{err}");
                }
                Ok(Some(Outcome::Aborted))
            }
            Action::Finish { code, oom_killed } => {
                Ok(Some(self.finish(*code, *oom_killed, true, cpu_time)))
            }
        }
    }

    fn pause(&self, cancel: &mut dyn FnMut() -> bool) -> Result<Paused, EngineError> {
        let how = suspend::pause(
            &self.engine,
            &self.container,
            self.container_pid.get(),
            cancel,
        )?;
        self.paused.set(Some(how));
        Ok(how)
    }

    /// Pauses or stops the container as job.toml says; the phase to journal.
    /// A container that cannot be paused is stopped, so it never runs on
    /// unsupervised while the task is suspended or the client is down.
    fn keep_for_restart(&self) -> Phase {
        let grace = Duration::from_secs(self.config.stop_grace_secs);
        let stop = || {
            // A stopped process would not see the SIGTERM until SIGKILL.
            if self.paused.get() == Some(Paused::BySignals) {
                suspend::continue_processes(self.container_pid.get());
            }
            self.stop_for_restart(grace)
        };
        match self.config.quit_action {
            // Paused as far as we know: a failed pause or re-pause cleared it.
            QuitAction::Pause if self.paused.get().is_some() => Phase::KeptPaused,
            // Only an abort makes keeping the work pointless.
            QuitAction::Pause => match self.pause(&mut || boinc::status().abort_request) {
                Ok(_) => Phase::KeptPaused,
                Err(err) => {
                    log::warn!("the container could not be paused ({err}); stopping it instead");
                    stop()
                }
            },
            QuitAction::Stop => stop(),
        }
    }

    fn stop_for_restart(&self, grace: Duration) -> Phase {
        match self.engine.stop(&self.container, grace) {
            Ok(()) => Phase::KeptStopped,
            Err(err) => {
                // The restarted wrapper re-attaches to whatever state it finds.
                log::warn!("the container could not be stopped either: {err}");
                Phase::Running
            }
        }
    }

    /// Ends a job that filled the slot past the workunit's disk bound, as
    /// the client would (only much later).
    fn end_over_disk_bound(&self, used: u64, bound: u64, cpu_time: f64) -> Outcome {
        let mb = |bytes: u64| bytes / 1_000_000;
        log::error!(
            "the job wrote at least {} MB into the slot, past the workunit's disk bound of {} MB: stopping it",
            mb(used),
            mb(bound)
        );
        self.engine.kill(&self.container);
        self.finish(WrapperExit::DiskLimitExceeded.code(), false, true, cpu_time)
    }

    /// Container log into stderr.txt, container removed (the image stays
    /// cached for the next workunit).
    pub(super) fn finish(
        &self,
        code: i32,
        oom_killed: bool,
        container_exists: bool,
        cpu_time: f64,
    ) -> Outcome {
        // Journalled first: if we die before boinc_finish, the next run reports
        // this code instead of rerunning the job.
        self.save_journal(Phase::Finished, cpu_time, Some(code));
        if container_exists {
            self.copy_container_log();
            if let Err(err) = self.engine.remove(&self.container) {
                log::error!("cannot remove the container: {err}");
            }
        }
        if oom_killed {
            let limit = self.init.rsc_memory_bound / (1024.0 * 1024.0);
            log::error!("the job was killed: out of memory (limit {limit:.0} MiB)");
            return Outcome::Finished(WrapperExit::MemLimitExceeded.code());
        }
        log::info!("the job exited with code {code}");
        Outcome::Finished(code)
    }

    fn copy_container_log(&self) {
        let max = usize::try_from(self.config.log_tail_bytes).unwrap_or(usize::MAX);
        if max == 0 {
            return;
        }
        match self.engine.logs_tail(&self.container, max) {
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

    fn fraction_done(&self) -> PathBuf {
        self.slot_dir.join(&self.config.fraction_done_file)
    }
}

/// A number and some white space; the job may write anything, of any size.
const FRACTION_DONE_MAX_BYTES: u64 = 256;

/// The first number in the job's fraction_done file, clamped to 0..1.
fn read_fraction_done(path: &Path) -> f64 {
    let Ok(bytes) = slot_io::read_prefix(path, FRACTION_DONE_MAX_BYTES) else {
        return 0.0;
    };
    String::from_utf8_lossy(&bytes)
        .split_whitespace()
        .next()
        .and_then(|w| w.parse::<f64>().ok())
        .filter(|f| f.is_finite())
        .map_or(0.0, |f| f.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fraction_done_is_read_and_clamped() {
        let dir = std::env::temp_dir().join(format!("dw-fd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("fraction_done");
        assert_eq!(read_fraction_done(&file), 0.0);
        for (text, want) in [
            ("0.25\n", 0.25),
            ("7", 1.0),
            ("-1", 0.0),
            ("nan", 0.0),
            ("abc", 0.0),
            ("0.5 extra", 0.5),
        ] {
            std::fs::write(&file, text).unwrap();
            assert_eq!(read_fraction_done(&file), want, "{text:?}");
        }
        // Whatever the job puts there costs at most a short read.
        std::fs::write(&file, format!("0.75{}", " ".repeat(1 << 20))).unwrap();
        assert_eq!(read_fraction_done(&file), 0.75);
        std::fs::remove_file(&file).unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/dev/zero", &file).unwrap();
            assert_eq!(read_fraction_done(&file), 0.0);
            std::fs::remove_file(&file).unwrap();
            rustix::fs::mkfifoat(
                rustix::fs::CWD,
                &file,
                rustix::fs::Mode::from_raw_mode(0o644),
            )
            .unwrap();
            assert_eq!(read_fraction_done(&file), 0.0);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
