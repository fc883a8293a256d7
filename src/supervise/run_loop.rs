//! Supervision: the loop gathers events (the container's exit, the
//! client's status, a signal, periodic work that is due), hands each to the
//! state machine (`supervisor`) and performs the actions it returns
//! (`actions.rs`), whose results go back to the machine as events.
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::actions::Next;
use crate::engine::{ContainerState, ExitWatcher};
use crate::host::usage::Accounting;
use crate::outcome::Outcome;
use crate::slot::control_files::{self, ControlWatch};
use crate::slot::files as slot_files;
use crate::slot::usage::{self as slot_usage, DiskWatch};
use crate::supervise::machine::{Event, Periodic, Supervisor};
use crate::supervise::network::ContainerNetwork;
use crate::supervise::schedule::Schedule;
use crate::supervise::suspend::Pauser;
use crate::task::TaskRun;

/// How often CPU time, memory and fraction done go to the client, and the
/// grid every periodic job keeps to. The client reads them once a second;
/// every two seconds keeps the wrapper's own wake-ups at one every two
/// seconds beside the BOINC library's ten a second.
pub(super) const REPORT_PERIOD: Duration = Duration::from_secs(2);

/// What supervising one container needs besides the task: the exit watch,
/// the counters, the slot's size, the job's control files, the networks and
/// the pause's means.
pub(super) struct Watchers<'a> {
    pub(super) exit: Box<dyn ExitWatcher + 'a>,
    pub(super) accounting: Accounting<'a>,
    pub(super) disk: Option<DiskWatch>,
    pub(super) control: Option<ControlWatch>,
    /// Uploads asked for whose outcome the client has not told yet.
    pub(super) pending_uploads: Vec<String>,
    /// The CPU time at the job's last checkpoint, when it tells of them
    /// (`checkpoint_file`); otherwise all CPU time is kept work.
    pub(super) checkpoint_cpu: Option<f64>,
    pub(super) network: ContainerNetwork<'a>,
    pub(super) pauser: Pauser,
    pub(super) schedule: Schedule<Periodic>,
}

impl<'a> TaskRun<'a> {
    /// The main loop: events until the task ends.
    pub(crate) fn supervise(
        &mut self,
        container: &ContainerState,
        client_cpu: f64,
        fresh: bool,
    ) -> Result<Outcome> {
        let (engine, ctx) = (self.engine, self.ctx);
        let host_pid = self.container_pid;
        if host_pid.is_none() && engine.shares_host_pids() {
            // Started or unpaused, and gone before `inspect` gave its pid: a
            // job that ends at once, or one whose work was done by the time
            // it was unpaused. Its CPU time since then is not counted.
            log::info!("the container ended before the wrapper could look at its processes");
        }
        let read_stats = Box::new(move || {
            engine
                .stats(&ctx.container)
                .map_err(|err| log::debug!("{err}"))
                .ok()
        });
        let linked: Vec<(String, std::path::PathBuf)> = slot_files::linked_files(&ctx.slot_dir)
            .map(|files| files.into_iter().map(|f| (f.name, f.target)).collect())
            .unwrap_or_default();
        let now = Instant::now();
        let mut schedule = Schedule::new(now, REPORT_PERIOD);
        schedule.set(Periodic::Report, now);
        schedule.set(Periodic::DiskCheck, now + slot_usage::MIN_INTERVAL);
        let control = ControlWatch::new(&ctx.slot_dir, &ctx.config.control, &linked, now);
        if control.is_some() {
            schedule.set(Periodic::ControlFiles, now + control_files::POLL);
        }
        let mut watchers = Watchers {
            exit: engine.watch_exit(&ctx.container, container.pid)?,
            accounting: Accounting::new(host_pid, &container.id, client_cpu, fresh, read_stats),
            disk: DiskWatch::new(
                &ctx.slot_dir,
                linked.into_iter().map(|(_, target)| target).collect(),
                ctx.init.rsc_disk_bound,
            ),
            control,
            pending_uploads: Vec::new(),
            checkpoint_cpu: ctx
                .config
                .control
                .checkpoint_file
                .as_ref()
                .map(|_| client_cpu),
            network: ContainerNetwork::new(engine, &ctx.container, ctx.config.network),
            pauser: Pauser::default(),
            schedule,
        };
        let mut machine = Supervisor::new(ctx.config.quit_action);
        if let Some(secs) = ctx.config.job_duration_secs {
            // The client's count of the task's running time: the journal
            // is the job's to write, the client's figure is not.
            let before = Duration::from_secs_f64(ctx.init.starting_elapsed_time.clamp(0.0, 1e9));
            machine = machine.with_job_duration(Duration::from_secs(secs), before, now);
        }
        loop {
            let mut events = VecDeque::from([self.next_event(&mut watchers)?]);
            let due = watchers.schedule.take_due(Instant::now());
            events.extend(due.into_iter().map(Event::Due));
            while let Some(event) = events.pop_front() {
                for action in machine.on_at(Instant::now(), &event) {
                    match self.perform(&action, &mut watchers)? {
                        Next::Continue => {}
                        Next::Then(more) => events.extend(more),
                        Next::End(outcome) => return Ok(outcome),
                    }
                }
            }
        }
    }

    /// The container's exit, else a signal, else the client's status:
    /// sleeping until one of them has news or periodic work falls due.
    fn next_event(&mut self, watchers: &mut Watchers) -> Result<Event> {
        let client = self.client;
        let wait = watchers
            .schedule
            .wait_from(Instant::now(), client.longest_wait());
        if !watchers.exit.wait_exited(wait, client.wakeup()) {
            let status = client.poll();
            return Ok(if client.terminated() {
                Event::Terminated
            } else {
                Event::Client(status)
            });
        }
        // Read the cgroup at once, before the engine removes it (Docker does
        // within moments of the exit): the CPU time since the last periodic
        // reading, and the OOM counter.
        watchers.accounting.update_at_exit();
        let cgroup_oom = watchers.accounting.oom_killed();
        let exit = match watchers.exit.exit() {
            Ok(exit) => exit,
            Err(err) => match err.unavailable() {
                Some(why) => return Ok(Event::EngineLost { why: why.into() }),
                None => return Err(err.into()),
            },
        };
        let engine_oom = match exit.oom_killed {
            Some(oom_killed) => oom_killed,
            // The exit code is known: an engine that cannot say more must
            // not cost the task its result.
            None => match self.engine.inspect(&self.ctx.container) {
                Ok(state) => state.is_some_and(|s| s.oom_killed),
                Err(err) => {
                    log::warn!("cannot ask the engine whether the job ran out of memory: {err}");
                    false
                }
            },
        };
        Ok(Event::ContainerExited {
            code: exit.code,
            oom_killed: engine_oom || (cgroup_oom && exit.code == 137),
        })
    }
}
