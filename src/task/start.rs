//! A task's container from the start to supervision: what an earlier run
//! left (the journal, a container under the task's name) decides whether
//! it is created, started, unpaused, re-attached or reported as ended; then
//! supervision takes over. What the run's result means for the container
//! is settled here too.
use std::path::Path;

use anyhow::Context;

use super::launch::Launch;
use crate::context::TaskContext;
use crate::engine::{ContainerEngine, ContainerState, ContainerStatus};
use crate::image;
use crate::os;
use crate::outcome::{Outcome, TaskError};
use crate::slot::journal::{Journal, Phase};
use crate::supervise::client::Client;
use crate::supervise::machine::{self, Found, Owner, StartPlan};
use crate::supervise::task_end::TaskEnd;
use crate::supervise::{self, suspend};

/// A task once its inputs are read: the context it runs in, the engine and
/// client it talks to, and what this run has learnt of its container.
/// Everything that changes while the task runs lives here, behind `&mut self`.
pub(super) struct TaskRun<'a> {
    pub(super) ctx: &'a TaskContext,
    pub(super) engine: &'a dyn ContainerEngine,
    pub(super) client: &'a dyn Client,
    /// The image the container runs, once known (from the cache or the journal).
    pub(super) image: Option<String>,
    /// Host port of the job's web graphics, once allocated or found.
    pub(super) web_graphics_port: Option<u16>,
    /// Host pid of the container's init, once running; None before, and
    /// when it is not a pid of this host (the engine in WSL).
    pub(super) container_pid: Option<u32>,
    /// Set once a container with the task's name exists and is this slot's
    /// (found so, or created here): only then may an error remove it.
    pub(super) owns_container: bool,
}

/// How a run begins, given what an earlier one left.
enum Begin {
    /// A container to continue, or none: `plan` says how.
    Plan { plan: StartPlan, client_cpu: f64 },
    /// Nothing to run here now.
    End(Outcome),
}

impl<'a> TaskRun<'a> {
    pub(super) fn new(
        ctx: &'a TaskContext,
        engine: &'a dyn ContainerEngine,
        client: &'a dyn Client,
    ) -> TaskRun<'a> {
        TaskRun {
            ctx,
            engine,
            client,
            image: None,
            web_graphics_port: None,
            container_pid: None,
            owns_container: false,
        }
    }

    /// Starts or continues the container and supervises it to the end.
    /// `launch` makes a new container (image, specification, engine
    /// commands) and says how that went; its bool: whether the name's
    /// container was looked at already.
    pub(super) fn start_and_supervise(
        &mut self,
        launch: &mut dyn FnMut(&mut Self, bool) -> Result<Launch, TaskError>,
    ) -> Result<Outcome, TaskError> {
        log::info!("container {}", self.ctx.container);
        let journal = self.load_journal();
        let (plan, client_cpu) = match self.follow_plan(journal.as_ref(), launch)? {
            Begin::Plan { plan, client_cpu } => (plan, client_cpu),
            Begin::End(outcome) => return Ok(outcome),
        };
        self.supervise(plan, client_cpu)
    }

    /// Carries out the start plan, made from the journal alone where it
    /// can be, else from the container found too; a new container whose
    /// name turns out to be taken sends it back to looking.
    fn follow_plan(
        &mut self,
        journal: Option<&Journal>,
        launch: &mut dyn FnMut(&mut Self, bool) -> Result<Launch, TaskError>,
    ) -> Result<Begin, TaskError> {
        let mut looked = false;
        let mut begin = match machine::plan_from_journal(journal) {
            Some(plan) => Begin::Plan {
                plan,
                client_cpu: self.cpu_time_so_far(None, None),
            },
            None => {
                looked = true;
                self.reconcile(journal)?
            }
        };
        while let Begin::Plan { plan, client_cpu } = &begin {
            match plan {
                StartPlan::CreateAndStart => match launch(self, looked)? {
                    Launch::Running => break,
                    Launch::Ended(outcome) => return Ok(Begin::End(outcome)),
                    Launch::NameInUse => {
                        log::info!(
                            "a container is named {} already: looking at it",
                            self.ctx.container
                        );
                        looked = true;
                        begin = self.reconcile(journal)?;
                    }
                },
                StartPlan::Start { reason } => {
                    log::info!("{reason}: starting it");
                    self.engine.start(&self.ctx.container)?;
                    break;
                }
                StartPlan::Unpause => {
                    log::info!("container is paused from an earlier run: resuming it");
                    self.engine.unpause(&self.ctx.container)?;
                    break;
                }
                StartPlan::Reattach => {
                    log::info!("container is already running: re-attaching");
                    break;
                }
                StartPlan::Report { code, oom_killed } => {
                    log::info!(
                        "the job ended (code {code}) while the wrapper was away: reporting it"
                    );
                    let (code, why) = machine::job_exit(*code, *oom_killed);
                    let end = self.end_of_task();
                    end.say_why(code, &why);
                    let outcome = end.finish(code, &why, self.owns_container, *client_cpu);
                    return Ok(Begin::End(outcome));
                }
            }
        }
        Ok(begin)
    }

    /// Hands the running container over to supervision.
    fn supervise(&mut self, plan: StartPlan, client_cpu: f64) -> Result<Outcome, TaskError> {
        if plan != StartPlan::CreateAndStart {
            // Asked of the engine, not of the job-writable journal.
            if let Some(guest) = self.ctx.config.web_graphics_guest_port {
                self.web_graphics_port = self.engine.published_port(&self.ctx.container, guest);
            }
        }
        if let Some(port) = self.web_graphics_port {
            self.client
                .announce_web_graphics(&format!("http://localhost:{port}"));
        }
        self.ctx
            .save_journal(self.image.as_deref(), Phase::Running, client_cpu, None);
        let state = self
            .engine
            .inspect(&self.ctx.container)?
            .context("the container vanished after start")?;
        // Through a shell into WSL, the pid is the distro's, out of our reach.
        self.container_pid = state.pid.filter(|_| self.engine.shares_host_pids());
        if plan == StartPlan::Reattach {
            // An earlier run may have stopped its processes (SIGSTOP, where the
            // engine cannot pause) and died before continuing them.
            suspend::continue_processes(self.container_pid);
        }
        // A container this run started has a new cgroup: every CPU second
        // on its counter is this run's, also those used before the first reading.
        let fresh = matches!(plan, StartPlan::CreateAndStart | StartPlan::Start { .. });
        let task = supervise::Task {
            ctx: self.ctx,
            engine: self.engine,
            client: self.client,
            image: self.image.clone(),
            container_pid: self.container_pid,
        };
        supervise::supervise(task, &state, client_cpu, fresh)
    }

    fn end_of_task(&self) -> TaskEnd<'_> {
        TaskEnd {
            ctx: self.ctx,
            engine: self.engine,
            image: self.image.as_deref(),
        }
    }

    /// The journal an earlier run left, if it is one to go on from (and
    /// the image it names).
    fn load_journal(&mut self) -> Option<Journal> {
        let mut journal = Journal::load(&self.ctx.slot_dir);
        // In a plain directory each standalone run is a new job; under the
        // client a finished task is never started again.
        if self.ctx.is_standalone() && journal.as_ref().is_some_and(|j| j.phase == Phase::Finished)
        {
            journal = None;
        }
        if let Some(journal) = &journal {
            // An earlier version wrote "" for an image it did not know.
            self.image = journal.image.clone().filter(|image| !image.is_empty());
        }
        journal
    }

    /// Looks at the container an earlier run may have left under the
    /// task's name, and decides with the journal how to go on.
    fn reconcile(&mut self, journal: Option<&Journal>) -> Result<Begin, TaskError> {
        let ctx = self.ctx;
        let existing = match self.engine.find(&ctx.container)? {
            Some(state) => match self.owner_of(&state) {
                // Another slot's: its label names it.
                Owner::ThisSlot => Some(state),
                Owner::OtherSlot => {
                    return Ok(Begin::End(Outcome::TemporaryExit(format!(
                        "container {} belongs to the task in {}; not adopting it",
                        ctx.container,
                        state.slot.unwrap_or_default()
                    ))))
                }
                Owner::Orphan => {
                    log::warn!(
                        "removing container {}, left behind by {}",
                        ctx.container,
                        state.slot.as_deref().unwrap_or_default()
                    );
                    self.engine.remove(&ctx.container)?;
                    None
                }
                Owner::Stranger => {
                    log::warn!(
                        "container {} ({}) was not made by docker_wrapper for this task: removing it and creating the task's own",
                        ctx.container,
                        describe_stranger(&state)
                    );
                    self.engine.kill(&ctx.container);
                    self.engine.remove(&ctx.container)?;
                    None
                }
            },
            None => None,
        };
        self.owns_container = existing.is_some();
        let client_cpu = self.cpu_time_so_far(journal, existing.as_ref());
        let found = found(existing);
        let plan = machine::plan_start(journal, &found, os::boot_time());
        log::debug!("found {found:?}, journal {journal:?}: {plan:?}");
        Ok(Begin::Plan { plan, client_cpu })
    }

    /// What a run's result means for the container: an engine that is
    /// down or hangs keeps it for the retry, which finds it by name; a task
    /// that fails for good has no more use for it.
    pub(super) fn settle(&self, result: Result<Outcome, TaskError>) -> Result<Outcome, TaskError> {
        if let Err(TaskError::SetUp(_)) = result {
            self.discard_container();
        }
        result
    }

    /// Whether a container found under the task's name is this slot's.
    fn owner_of(&self, state: &ContainerState) -> Owner {
        let recorded = state.slot.as_deref().map(Path::new);
        let claimed_there = || {
            recorded
                .and_then(Journal::load)
                .is_some_and(|j| j.container == self.ctx.container && j.phase != Phase::Finished)
        };
        let age = state.created.map(|created| os::unix_time_now() - created);
        // The journal names the image this task's container runs, else
        // it is one of the project's.
        let expected = self
            .image
            .as_deref()
            .or(self.ctx.config.image_name.as_deref());
        let task_image = state
            .image
            .as_deref()
            .is_some_and(|image| image::is_task_image(self.ctx.project_name(), expected, image));
        let found = machine::Identity {
            by_wrapper: state.made_by_wrapper,
            result: state.result.as_deref(),
            slot: state.slot.as_deref(),
            task_image,
        };
        let this_result = &self.ctx.init.result_name;
        machine::owner(
            this_result,
            &self.ctx.slot_label(),
            &found,
            claimed_there,
            age,
        )
    }

    /// Kills and removes this slot's container after a failure that ends
    /// the task: nothing is left running or forgotten, whatever the engine
    /// said before.
    fn discard_container(&self) {
        if !self.owns_container {
            return;
        }
        let container = &self.ctx.container;
        self.engine.kill(container);
        match self.engine.remove(container) {
            Ok(()) => log::info!("container {container} removed"),
            Err(err) => log::error!("cannot remove container {container}: {err}"),
        }
    }

    /// The task's CPU time when this run starts: the client's figure, or the
    /// journal's as far as the container can vouch for it.
    fn cpu_time_so_far(
        &self,
        journal: Option<&Journal>,
        container: Option<&ContainerState>,
    ) -> f64 {
        let age = container
            .and_then(|c| c.created)
            .map(|created| (os::unix_time_now() - created) as f64);
        let claimed = journal.map(|j| j.cpu_time);
        let init = &self.ctx.init;
        let trusted = machine::trusted_cpu_time(init.wu_cpu_time, claimed, init.ncpus, age);
        if let Some(claimed) = claimed.filter(|claimed| *claimed > trusted + 1.0) {
            log::warn!(
                "the journal claims {claimed:.0} s of CPU time, more than the container can have used: reporting {trusted:.0} s"
            );
        }
        trusted
    }
}

/// What a stranger under the task's name is, for the log.
fn describe_stranger(state: &ContainerState) -> String {
    let image = state.image.as_deref().unwrap_or("no image");
    if !state.made_by_wrapper {
        format!("image {image}, no docker_wrapper label")
    } else {
        let result = state.result.as_deref().unwrap_or("none");
        format!("image {image}, labelled for result {result}")
    }
}

/// The container's state as the start plan sees it.
fn found(state: Option<ContainerState>) -> Found {
    let Some(state) = state else {
        return Found::Absent;
    };
    match state.status {
        ContainerStatus::Created => Found::Created,
        ContainerStatus::Running => Found::Running,
        ContainerStatus::Paused => Found::Paused,
        ContainerStatus::Exited => Found::Exited {
            code: state.exit_code,
            oom_killed: state.oom_killed,
            finished_at: state.finished_at,
        },
        ContainerStatus::Other(_) => Found::Other,
    }
}
