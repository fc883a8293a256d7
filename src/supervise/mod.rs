//! Supervising a running container until the task ends. The state machine
//! (`machine`) decides and does no I/O; the loop (`run_loop`) gathers
//! events (the container's exit, the client's status, a signal, periodic
//! work that is due), hands each to the machine and performs the actions it
//! returns (`actions`), whose results go back to the machine as events.
//!
//! Beside them: the schedule of periodic work, the means of a pause
//! (`suspend`), the container's networks while the client forbids network
//! use (`network`), and the client as the task sees it (`client`).
use std::time::{Duration, Instant};

use crate::context::TaskContext;
use crate::engine::{ContainerEngine, ContainerState, ExitWatcher};
use crate::host::usage::Accounting;
use crate::outcome::{Outcome, TaskError};
use crate::slot::control_files::{self, ControlWatch};
use crate::slot::files as slot_files;
use crate::slot::usage::{self as slot_usage, DiskWatch};
use client::Client;
use machine::{Event, Periodic, Supervisor};
use network::ContainerNetwork;
use schedule::Schedule;
use suspend::Pauser;
use task_end::TaskEnd;

pub mod client;
pub mod machine;
pub mod network;
pub mod schedule;
pub mod suspend;
pub mod task_end;

mod actions;
mod run_loop;

/// How often CPU time, memory and fraction done go to the client, and the
/// grid every periodic job keeps to. The client reads them once a second;
/// every two seconds keeps the wrapper's own wake-ups at one every two
/// seconds beside the BOINC library's ten a second.
const REPORT_PERIOD: Duration = Duration::from_secs(2);

/// The task as supervision takes it over once its container runs.
pub struct Task<'a> {
    pub ctx: &'a TaskContext,
    pub engine: &'a dyn ContainerEngine,
    pub client: &'a dyn Client,
    /// The image the container runs, for the journal.
    pub image: Option<String>,
    /// Host pid of the container's init; None when it is not a pid of
    /// this host (the engine in WSL or a VM) or the container is gone.
    pub container_pid: Option<u32>,
}

/// Supervises the task's container (`container`, as the engine saw it at
/// the start) until the task ends. `client_cpu`: the task's CPU time
/// before this run; `fresh`: the container was started by this run, so
/// every second on its counters is this run's.
pub fn supervise(
    task: Task,
    container: &ContainerState,
    client_cpu: f64,
    fresh: bool,
) -> Result<Outcome, TaskError> {
    Supervision::new(task, container, client_cpu, fresh)?.run()
}

/// One container under supervision: the task, the machine that decides,
/// and what the loop watches, counts and schedules.
struct Supervision<'a> {
    task: Task<'a>,
    machine: Supervisor,
    exit: Box<dyn ExitWatcher + 'a>,
    accounting: Accounting<'a>,
    disk: Option<DiskWatch>,
    control: Option<ControlWatch>,
    /// Uploads asked for whose outcome the client has not told yet.
    pending_uploads: Vec<String>,
    /// The CPU time at the job's last checkpoint, when it tells of them
    /// (`checkpoint_file`); otherwise all CPU time is kept work.
    checkpoint_cpu: Option<f64>,
    network: ContainerNetwork<'a>,
    pauser: Pauser,
    schedule: Schedule<Periodic>,
}

/// What performing an action leads to.
enum Next {
    Continue,
    /// The action's results, for the machine.
    Then(Vec<Event>),
    /// The process ends so.
    End(Outcome),
}

impl<'a> Supervision<'a> {
    fn new(
        task: Task<'a>,
        container: &ContainerState,
        client_cpu: f64,
        fresh: bool,
    ) -> Result<Supervision<'a>, TaskError> {
        let (engine, ctx) = (task.engine, task.ctx);
        if task.container_pid.is_none() && engine.shares_host_pids() {
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
        let linked = slot_files::linked_files(&ctx.slot_dir).unwrap_or_default();
        let now = Instant::now();
        let control = ControlWatch::new(&ctx.slot_dir, &ctx.config.control, &linked, now);
        let linked_targets = linked.into_iter().map(|f| f.target).collect();
        Ok(Supervision {
            exit: engine.watch_exit(&ctx.container, container.pid)?,
            accounting: Accounting::new(
                task.container_pid,
                &container.id,
                client_cpu,
                fresh,
                read_stats,
            ),
            disk: DiskWatch::new(&ctx.slot_dir, linked_targets, ctx.init.rsc_disk_bound),
            schedule: first_schedule(now, control.is_some()),
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
            machine: machine_for(ctx, now),
            task,
        })
    }

    /// Ending the task, as the actions that end it do.
    fn end_of_task(&self) -> TaskEnd<'_> {
        TaskEnd {
            ctx: self.task.ctx,
            engine: self.task.engine,
            image: self.task.image.as_deref(),
        }
    }
}

/// A report at once, the disk and the control files after their intervals.
fn first_schedule(now: Instant, control_files: bool) -> Schedule<Periodic> {
    let mut schedule = Schedule::new(now, REPORT_PERIOD);
    schedule.set(Periodic::Report, now);
    schedule.set(Periodic::DiskCheck, now + slot_usage::MIN_INTERVAL);
    if control_files {
        schedule.set(Periodic::ControlFiles, now + control_files::POLL);
    }
    schedule
}

fn machine_for(ctx: &TaskContext, now: Instant) -> Supervisor {
    let machine = Supervisor::new(ctx.config.quit_action);
    match ctx.config.job_duration_secs {
        // The client's count of the task's running time: the journal
        // is the job's to write, the client's figure is not.
        Some(secs) => {
            let before = Duration::from_secs_f64(ctx.init.starting_elapsed_time.clamp(0.0, 1e9));
            machine.with_job_duration(Duration::from_secs(secs), before, now)
        }
        None => machine,
    }
}
