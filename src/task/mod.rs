//! One BOINC task from start to end: read the inputs, pick the engine, get
//! the image and the container, then supervise until the job ends.
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::boinc;
use crate::boinc::host_limits;
use crate::boinc::init_data::InitData;
use crate::boinc::wakeup::Wakeup;
use crate::cli::Cli;
use crate::config::JobConfig;
use crate::engine::{
    self, ContainerEngine, ContainerState, ContainerStatus, Engine, EngineError, EngineKind, Known,
};
use crate::image;
use crate::os;
use crate::slot::files as slot_files;
use crate::slot::journal::{Journal, Phase};
use crate::supervise::machine::{self as supervisor, Found, Owner, StartPlan};
use crate::supervise::suspend;

mod launch;
mod provision;
#[cfg(test)]
mod tests;

pub use crate::context::{SlotKind, TaskContext};
pub use crate::outcome::Outcome;
use crate::supervise::client::{self, BoincClient, Client};
use launch::Launch;

/// Runs the task. Errors are set-up failures: the caller reports them and
/// finishes with `WrapperExit::InitFailure`.
pub fn run(
    cli: Cli,
    config: JobConfig,
    slot: SlotKind,
    terminated: Arc<AtomicBool>,
    wakeup: &Wakeup,
) -> Result<Outcome> {
    let slot_dir = std::env::current_dir().context("cannot read the current directory")?;
    let archive = image_archive(&slot_dir, &config)?;
    let dockerfile = slot_dir.join(&cli.dockerfile);
    if config.image_name.is_none() && archive.is_none() && !dockerfile.is_file() {
        anyhow::bail!(
            "Dockerfile not found: {} (ship it, or an image archive, with the app version or the workunit)",
            dockerfile.display()
        );
    }
    let mut init = match slot {
        SlotKind::Standalone => InitData {
            ncpus: 1.0,
            ..InitData::default()
        },
        SlotKind::Client => {
            InitData::load(&slot_dir.join("init_data.xml")).map_err(anyhow::Error::new)?
        }
    };
    for note in host_limits::clamp(&mut init, &host_limits::Host::measure(&slot_dir)) {
        log::warn!("{note}");
    }
    if slot == SlotKind::Client && boinc::is_standalone() {
        // init_data.xml reads well, yet the library could not attach to the
        // client (its shared memory): running on would be deaf to suspend,
        // quit and abort.
        return Ok(Outcome::TemporaryExit(
            "the BOINC library could not attach to the client's shared memory".into(),
        ));
    }
    let engine = match pick_engine(&init, &config, slot) {
        Ok(engine) => engine,
        Err(why) => return Ok(Outcome::TemporaryExit(why.to_string())),
    };
    // Before the engine is asked anything: a broken app version fails at
    // once. The flags are read as this engine reads them.
    check_security(&config, engine.kind, &slot_dir)?;
    warn_of_a_replaced_user(&config, &engine, &slot_dir, &cli.dockerfile);
    let ctx = TaskContext {
        container: crate::context::container_name(&init, slot),
        slot_dir,
        slot,
        config,
        cli,
        init,
        archive,
    };
    let engine = match ctx.engine_facts_dir() {
        Some(dir) if std::fs::create_dir_all(&dir).is_ok() => engine.with_facts_dir(&dir),
        _ => engine,
    };
    // Remembered by the host's tasks: no command unless the engine changed.
    // An engine that is down shows here when they are asked, else in the
    // first command that needs the engine (`EngineError::Unavailable`).
    let facts = match engine.facts(false) {
        Ok(known) => known,
        Err(err) => return Ok(Outcome::TemporaryExit(err.to_string())),
    };
    log::info!(
        "using {} {} ({})",
        engine.kind,
        facts.facts.version,
        engine.cli().display()
    );
    let source = if facts.remembered {
        "remembered"
    } else {
        "asked"
    };
    log::debug!("engine facts ({source}): {}", facts.facts);
    engine.check_host_user();
    let client = BoincClient {
        terminated,
        wakeup,
        timer: client::TimerTicks::new(std::time::Instant::now()),
    };
    let supply = provision::EngineSupply {
        ctx: &ctx,
        engine: &engine,
    };
    let mut task = TaskRun::new(&ctx, &engine, &client);
    task.facts = Some(facts);
    let result = task.start_and_supervise(&mut |task, looked| task.launch(&supply, looked));
    task.settle(result)
}

fn pick_engine(
    init: &InitData,
    config: &JobConfig,
    slot: SlotKind,
) -> Result<Engine, engine::ConnectError> {
    // Standalone is Podman-first, as a client that names no engine.
    let standalone = slot == SlotKind::Standalone;
    engine::connect(&engine::Request {
        from_client: if standalone {
            None
        } else {
            init.host_info.docker_type.engine_kind()
        },
        wsl_distros: if standalone {
            None
        } else {
            Some(init.host_info.engine_distros())
        },
        timeout: Duration::from_secs(config.command_timeout_secs),
        build_timeout: Duration::from_secs(config.build_timeout_secs),
    })
}

/// Refuses job.toml settings that undo the security defaults, unless
/// `allow_unsafe` says the project means it.
fn check_security(config: &JobConfig, kind: EngineKind, slot_dir: &Path) -> Result<()> {
    if config.allow_unsafe {
        return Ok(());
    }
    let (create, build, mounts) = (&config.create_args, &config.build_args, &config.mounts);
    match engine::unsafe_setting(kind, create, build, mounts, slot_dir) {
        Some(why) => anyhow::bail!("job.toml {why}; refused (set allow_unsafe = true to allow it)"),
        None => Ok(()),
    }
}

/// Images written for the C++ wrapper may need their `USER`, which the
/// job does not get where it runs as the wrapper's user (Docker, the
/// client not root): say so, and which key gives it back.
fn warn_of_a_replaced_user(
    config: &JobConfig,
    engine: &Engine,
    slot_dir: &Path,
    dockerfile: &Path,
) {
    let Some((uid, gid)) = engine.job_user(config.run_as_wrapper_user) else {
        return;
    };
    let Ok(text) = slot_files::read(slot_dir, dockerfile, 1024 * 1024) else {
        return;
    };
    if let Some(user) = image::dockerfile::user(&String::from_utf8_lossy(&text)) {
        log::warn!(
            "the Dockerfile's USER {user} is replaced: the job runs as the wrapper's user {uid}:{gid} \
             (run_as_wrapper_user = false runs it as {user})"
        );
    }
}

/// Archive names looked for when job.toml names none.
const DEFAULT_ARCHIVES: &[&str] = &["image.tar", "image.tar.gz", "image.tgz"];

/// The image archive to load: job.toml's `image_archive` (which must exist),
/// else one of the default names if the slot has it.
fn image_archive(slot_dir: &Path, config: &JobConfig) -> Result<Option<PathBuf>> {
    if let Some(name) = &config.image_archive {
        anyhow::ensure!(
            slot_dir.join(name).exists(),
            "image_archive {name} is not in the slot directory"
        );
        return Ok(Some(PathBuf::from(name)));
    }
    Ok(DEFAULT_ARCHIVES
        .iter()
        .map(PathBuf::from)
        .find(|name| slot_dir.join(name).exists()))
}

/// A task once its inputs are read: the context it runs in, the engine and
/// client it talks to, and what this run has learnt of its container.
/// Everything that changes while the task runs lives here, behind `&mut self`.
pub(crate) struct TaskRun<'a> {
    pub(crate) ctx: &'a TaskContext,
    pub(crate) engine: &'a dyn ContainerEngine,
    pub(crate) client: &'a dyn Client,
    /// The image the container runs, once known (from the cache or the journal).
    pub(crate) image: Option<String>,
    /// Host port of the job's web graphics, once allocated or found.
    pub(crate) web_graphics_port: Option<u16>,
    /// Host pid of the container's init, once running; None before, and
    /// when it is not a pid of this host (the engine in WSL).
    pub(crate) container_pid: Option<u32>,
    /// Set once a container with the task's name exists and is this slot's
    /// (found so, or created here): only then may an error remove it.
    pub(crate) owns_container: bool,
    /// The engine's facts, once asked or read from the host's record.
    pub(crate) facts: Option<Known>,
}

/// How a run begins, given what an earlier one left.
enum Begin {
    /// A container to continue, or none: `plan` says how.
    Plan { plan: StartPlan, client_cpu: f64 },
    /// Nothing to run here now.
    End(Outcome),
}

impl<'a> TaskRun<'a> {
    fn new(
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
            facts: None,
        }
    }

    /// Starts or continues the container and supervises it to the end.
    /// `launch` makes a new container (image, specification, engine
    /// commands) and says how that went; its bool: whether the name's
    /// container was looked at already.
    fn start_and_supervise(
        &mut self,
        launch: &mut dyn FnMut(&mut Self, bool) -> Result<Launch>,
    ) -> Result<Outcome> {
        log::info!("container {}", self.ctx.container);
        let journal = self.load_journal();
        let mut looked = false;
        let (mut plan, mut client_cpu) = match supervisor::plan_from_journal(journal.as_ref()) {
            Some(plan) => (plan, self.cpu_time_so_far(None, None)),
            None => {
                looked = true;
                match self.reconcile(journal.as_ref())? {
                    Begin::Plan { plan, client_cpu } => (plan, client_cpu),
                    Begin::End(outcome) => return Ok(outcome),
                }
            }
        };
        loop {
            match &plan {
                StartPlan::CreateAndStart => match launch(self, looked)? {
                    Launch::Running => {}
                    Launch::Ended(outcome) => return Ok(outcome),
                    Launch::NameInUse => {
                        log::info!(
                            "a container is named {} already: looking at it",
                            self.ctx.container
                        );
                        looked = true;
                        (plan, client_cpu) = match self.reconcile(journal.as_ref())? {
                            Begin::Plan { plan, client_cpu } => (plan, client_cpu),
                            Begin::End(outcome) => return Ok(outcome),
                        };
                        continue;
                    }
                },
                StartPlan::Start { reason } => {
                    log::info!("{reason}: starting it");
                    self.engine.start(&self.ctx.container)?;
                }
                StartPlan::Unpause => {
                    log::info!("container is paused from an earlier run: resuming it");
                    self.engine.unpause(&self.ctx.container)?;
                }
                StartPlan::Reattach => log::info!("container is already running: re-attaching"),
                StartPlan::Report { code, oom_killed } => {
                    log::info!(
                        "the job ended (code {code}) while the wrapper was away: reporting it"
                    );
                    let exists = self.owns_container;
                    let (code, why) = supervisor::job_exit(*code, *oom_killed);
                    self.say_why(code, &why);
                    return Ok(self.finish(code, &why, exists, client_cpu));
                }
            }
            break;
        }
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
        self.save_journal(Phase::Running, client_cpu, None);
        let state = self
            .engine
            .inspect(&self.ctx.container)?
            .context("the container vanished after start")?;
        // Through a shell into WSL, the pid is the distro's, out of our reach.
        self.container_pid =
            Some(state.pid).filter(|pid| *pid > 0 && self.engine.shares_host_pids());
        if plan == StartPlan::Reattach {
            // An earlier run may have stopped its processes (SIGSTOP, where the
            // engine cannot pause) and died before continuing them.
            suspend::continue_processes(self.container_pid);
        }
        // A container this run started has a new cgroup: every CPU second
        // on its counter is this run's, also those used before the first reading.
        let fresh = matches!(plan, StartPlan::CreateAndStart | StartPlan::Start { .. });
        self.supervise(&state, client_cpu, fresh)
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
            self.image = Some(journal.image.clone()).filter(|image| !image.is_empty());
        }
        journal
    }

    /// Looks at the container an earlier run may have left under the
    /// task's name, and decides with the journal how to go on.
    fn reconcile(&mut self, journal: Option<&Journal>) -> Result<Begin> {
        let ctx = self.ctx;
        let existing = match self.engine.find(&ctx.container)? {
            Some(state) => match self.owner_of(&state) {
                Owner::ThisSlot => Some(state),
                Owner::OtherSlot => {
                    return Ok(Begin::End(Outcome::TemporaryExit(format!(
                        "container {} belongs to the task in {}; not adopting it",
                        ctx.container, state.slot
                    ))))
                }
                Owner::Orphan => {
                    log::warn!(
                        "removing container {}, left behind by {}",
                        ctx.container,
                        state.slot
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
        let plan = supervisor::plan_start(journal, &found, os::boot_time());
        log::debug!("found {found:?}, journal {journal:?}: {plan:?}");
        Ok(Begin::Plan { plan, client_cpu })
    }

    /// What a run's result means for the process: an engine that is down or
    /// hangs keeps the container for the retry, which finds it by name; a
    /// task that fails for good has no more use for its container.
    fn settle(&self, result: Result<Outcome>) -> Result<Outcome> {
        match result {
            Err(err) => match err
                .downcast_ref::<EngineError>()
                .and_then(EngineError::unavailable)
            {
                Some(why) => Ok(Outcome::TemporaryExit(why.into())),
                None => {
                    self.discard_container();
                    Err(err)
                }
            },
            ok => ok,
        }
    }

    /// Whether a container found under the task's name is this slot's.
    fn owner_of(&self, state: &ContainerState) -> Owner {
        let recorded = Path::new(&state.slot);
        let claimed_there = || {
            Journal::load(recorded)
                .is_some_and(|j| j.container == self.ctx.container && j.phase != Phase::Finished)
        };
        let age = state.created.map(|created| os::unix_time_now() - created);
        // The journal names the image this task's container runs, else
        // it is one of the project's.
        let expected = self
            .image
            .as_deref()
            .or(self.ctx.config.image_name.as_deref());
        let task_image = image::is_task_image(self.ctx.project_name(), expected, &state.image);
        let found = supervisor::Identity {
            by_wrapper: state.made_by_wrapper,
            result: &state.result,
            slot: &state.slot,
            task_image,
        };
        let this_result = &self.ctx.init.result_name;
        supervisor::owner(
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
        let trusted = supervisor::trusted_cpu_time(init.wu_cpu_time, claimed, init.ncpus, age);
        if let Some(claimed) = claimed.filter(|claimed| *claimed > trusted + 1.0) {
            log::warn!(
                "the journal claims {claimed:.0} s of CPU time, more than the container can have used: reporting {trusted:.0} s"
            );
        }
        trusted
    }

    pub(crate) fn save_journal(&self, phase: Phase, cpu_time: f64, exit_code: Option<i32>) {
        let journal = Journal {
            container: self.ctx.container.clone(),
            image: self.image.clone().unwrap_or_default(),
            phase,
            cpu_time,
            exit_code,
        };
        journal.save(&self.ctx.slot_dir);
    }
}

/// What a stranger under the task's name is, for the log.
fn describe_stranger(state: &ContainerState) -> String {
    let image = if state.image.is_empty() {
        "no image"
    } else {
        &state.image
    };
    if !state.made_by_wrapper {
        format!("image {image}, no docker_wrapper label")
    } else {
        let result = if state.result.is_empty() {
            "none"
        } else {
            &state.result
        };
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
