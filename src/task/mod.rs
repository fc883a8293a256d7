//! One BOINC task from start to end: read the inputs, pick the engine, get
//! the image and the container, then supervise until the job ends.
use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::boinc::{self, ClientStatus};
use crate::cli::Cli;
use crate::config::JobConfig;
use crate::engine::flags::Command;
use crate::engine::host_user;
use crate::engine::{
    self, names, policy, ContainerState, ContainerStatus, Engine, EngineError, EngineKind,
};
use crate::host_limits;
use crate::image::{CacheLimits, ImageCache, ImageError};
use crate::init_data::{DockerType, InitData};
use crate::journal::{Journal, Phase};
use crate::os;
use crate::supervisor::{self, Found, Owner, StartPlan};
use crate::suspend::{self, Paused};

mod container_spec;
mod supervise;

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
}

/// Names and paths of this task.
struct Task {
    slot_dir: PathBuf,
    config: JobConfig,
    cli: Cli,
    init: InitData,
    standalone: bool,
    container: String,
    /// Image archive to load instead of building, if the app version has one.
    archive: Option<PathBuf>,
    /// The image the container runs, once known (from the cache or the journal).
    image: RefCell<String>,
    engine: Engine,
    /// Set by SIGTERM/SIGINT/SIGQUIT.
    terminated: Arc<AtomicBool>,
    /// Host port of the job's web graphics, once allocated.
    web_graphics_port: Cell<Option<u16>>,
    /// Host pid of the container's init, once running; 0 when it is not a
    /// pid of this host (the engine in WSL).
    container_pid: Cell<u32>,
    /// How the container was paused, while it is.
    paused: Cell<Option<Paused>>,
    /// Set once a container with the task's name exists and is this slot's
    /// (found so, or created here): only then may an error remove it.
    owns_container: Cell<bool>,
}

/// Runs the task. Errors are set-up failures: the caller reports them and
/// finishes with `WrapperExit::InitFailure`.
pub fn run(
    cli: Cli,
    config: JobConfig,
    standalone: bool,
    terminated: Arc<AtomicBool>,
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
    let mut init = if standalone {
        InitData {
            ncpus: 1.0,
            ..InitData::default()
        }
    } else {
        InitData::load(&slot_dir.join("init_data.xml")).map_err(anyhow::Error::new)?
    };
    for note in host_limits::clamp(&mut init, &host_limits::Host::measure(&slot_dir)) {
        log::warn!("{note}");
    }
    if !standalone && boinc::is_standalone() {
        // init_data.xml reads well, yet the library could not attach to the
        // client (its shared memory): running on would be deaf to suspend,
        // quit and abort.
        return Ok(Outcome::TemporaryExit(
            "the BOINC library could not attach to the client's shared memory".into(),
        ));
    }
    let engine = match pick_engine(&init, &config, standalone) {
        Ok(engine) => engine,
        Err(why) => return Ok(Outcome::TemporaryExit(why.to_string())),
    };
    // Before the engine is asked anything: a broken app version fails at
    // once. The flags are read as this engine reads them.
    check_security(&config, engine.kind, &slot_dir)?;
    match engine.version() {
        Ok(version) => log::info!(
            "using {} {version} ({})",
            engine.kind,
            engine.cli().display()
        ),
        Err(err) => {
            let hint = host_user::access_hint(engine.kind, &err)
                .map(|h| format!("; {h}"))
                .unwrap_or_default();
            return Ok(Outcome::TemporaryExit(format!("{err}{hint}")));
        }
    }
    host_user::check(engine.kind);
    let container = container_name(&init, standalone);
    let task = Task {
        slot_dir,
        config,
        cli,
        init,
        standalone,
        container,
        archive,
        image: RefCell::new(String::new()),
        engine,
        terminated,
        web_graphics_port: Cell::new(None),
        container_pid: Cell::new(0),
        paused: Cell::new(None),
        owns_container: Cell::new(false),
    };
    match task.run() {
        Err(err) => match err.downcast_ref::<EngineError>() {
            // The engine is down or hangs: the container, if any, is kept
            // for the retry, which finds it by name.
            Some(EngineError::Unavailable(why)) => Ok(Outcome::TemporaryExit(why.clone())),
            _ => {
                // The task fails for good: its container is of no more use.
                task.discard_container();
                Err(err)
            }
        },
        ok => ok,
    }
}

fn pick_engine(
    init: &InitData,
    config: &JobConfig,
    standalone: bool,
) -> Result<Engine, engine::ConnectError> {
    let from_client = match init.host_info.docker_type {
        DockerType::Docker => Some(EngineKind::Docker),
        DockerType::Podman => Some(EngineKind::Podman),
        // BOINC 7.20 clients write no docker fields; standalone is Podman-first too.
        DockerType::None => None,
    };
    engine::connect(&engine::Request {
        from_client: if standalone { None } else { from_client },
        wsl_distros: if standalone {
            None
        } else {
            Some(&init.host_info.wsl_distros)
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
    let problem = policy::unsafe_args(kind, Command::Create, &config.create_args, slot_dir)
        .map(|why| format!("create_args: {why}"))
        .or_else(|| {
            policy::unsafe_args(kind, Command::Build, &config.build_args, slot_dir)
                .map(|why| format!("build_args: {why}"))
        })
        .or_else(|| {
            config
                .mounts
                .iter()
                .find_map(|m| policy::unsafe_mount(m, slot_dir))
                .map(|why| format!("mount {why}"))
        });
    match problem {
        Some(why) => anyhow::bail!("job.toml {why}; refused (set allow_unsafe = true to allow it)"),
        None => Ok(()),
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

/// C++-compatible container name; standalone mode uses "boinc", as C++ does.
fn container_name(init: &InitData, standalone: bool) -> String {
    if standalone {
        "boinc".into()
    } else {
        names::task_container(init.project_dir_name(), &init.result_name)
    }
}

impl Task {
    fn run(&self) -> Result<Outcome> {
        log::info!("container {}", self.container);
        let mut journal = Journal::load(&self.slot_dir);
        // In a plain directory each standalone run is a new job; under the
        // client a finished task is never started again.
        if self.standalone && journal.as_ref().is_some_and(|j| j.phase == Phase::Finished) {
            journal = None;
        }
        if let Some(journal) = &journal {
            *self.image.borrow_mut() = journal.image.clone();
        }
        let existing = match self.engine.find(&self.container)? {
            Some(state) => match self.owner_of(&state) {
                Owner::ThisSlot => Some(state),
                Owner::OtherSlot => {
                    return Ok(Outcome::TemporaryExit(format!(
                        "container {} belongs to the task in {}; not adopting it",
                        self.container, state.slot
                    )))
                }
                Owner::Orphan => {
                    log::warn!(
                        "removing container {}, left behind by {}",
                        self.container,
                        state.slot
                    );
                    self.engine.remove(&self.container)?;
                    None
                }
            },
            None => None,
        };
        self.owns_container.set(existing.is_some());
        let client_cpu = self.cpu_time_so_far(journal.as_ref(), existing.as_ref());
        let found = found(existing);
        let plan = supervisor::plan_start(journal.as_ref(), &found, os::boot_time());
        log::debug!("found {found:?}, journal {journal:?}: {plan:?}");
        match plan {
            StartPlan::CreateAndStart => {
                if let Some(outcome) = self.ensure_image()? {
                    return Ok(outcome);
                }
                self.create_and_start()?;
                log::info!("container started");
                crate::image::sweep::after_start(
                    &self.engine,
                    &self.init,
                    &self.image.borrow(),
                    self.standalone,
                );
            }
            StartPlan::Start { reason } => {
                log::info!("{reason}: starting it");
                self.engine.start(&self.container)?;
            }
            StartPlan::Unpause => {
                log::info!("container is paused from an earlier run: resuming it");
                self.engine.unpause(&self.container)?;
            }
            StartPlan::Reattach => log::info!("container is already running: re-attaching"),
            StartPlan::Report { code, oom_killed } => {
                log::info!("the job ended (code {code}) while the wrapper was away: reporting it");
                return Ok(self.finish(code, oom_killed, found != Found::Absent, client_cpu));
            }
        }
        if plan != StartPlan::CreateAndStart {
            // Asked of the engine, not of the job-writable journal.
            if let Some(guest) = self.config.web_graphics_guest_port {
                self.web_graphics_port
                    .set(self.engine.published_port(&self.container, guest));
            }
        }
        self.announce_web_graphics();
        self.save_journal(Phase::Running, client_cpu, None);
        let state = self
            .engine
            .inspect(&self.container)?
            .context("the container vanished after start")?;
        // Through a shell into WSL, the pid is the distro's, out of our reach.
        let host_pid = if self.engine.transport().is_local() {
            state.pid
        } else {
            0
        };
        self.container_pid.set(host_pid);
        if plan == StartPlan::Reattach && host_pid > 0 {
            // An earlier run may have stopped its processes (SIGSTOP, where the
            // engine cannot pause) and died before continuing them.
            suspend::continue_processes(host_pid);
        }
        self.supervise(&state, client_cpu)
    }

    /// Whether a container found under the task's name is this slot's.
    fn owner_of(&self, state: &ContainerState) -> Owner {
        let recorded = Path::new(&state.slot);
        let claimed_there = || {
            Journal::load(recorded)
                .is_some_and(|j| j.container == self.container && j.phase != Phase::Finished)
        };
        let age = state.created.map(|created| os::unix_time_now() - created);
        supervisor::owner(&self.slot_label(), &state.slot, claimed_there, age)
    }

    /// This slot, as recorded on the container.
    fn slot_label(&self) -> String {
        self.slot_dir.to_string_lossy().into_owned()
    }

    /// Kills and removes this slot's container after a failure that ends
    /// the task: nothing is left running or forgotten, whatever the engine
    /// said before.
    fn discard_container(&self) {
        if !self.owns_container.get() {
            return;
        }
        self.engine.kill(&self.container);
        match self.engine.remove(&self.container) {
            Ok(()) => log::info!("container {} removed", self.container),
            Err(err) => log::error!("cannot remove container {}: {err}", self.container),
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
        let trusted =
            supervisor::trusted_cpu_time(self.init.wu_cpu_time, claimed, self.init.ncpus, age);
        if let Some(claimed) = claimed.filter(|claimed| *claimed > trusted + 1.0) {
            log::warn!(
                "the journal claims {claimed:.0} s of CPU time, more than the container can have used: reporting {trusted:.0} s"
            );
        }
        trusted
    }

    /// Gets the image: from the cache, or built. Some(outcome) when the
    /// client (or a signal) interrupted the wait or the build.
    fn ensure_image(&self) -> Result<Option<Outcome>> {
        let mut interrupted = None;
        let result = {
            let mut cancel = || {
                interrupted =
                    interruption(&boinc::status(), self.terminated.load(Ordering::Relaxed));
                interrupted.is_some()
            };
            let cache = self.image_cache();
            let (slot, dockerfile, args) = (
                &self.slot_dir,
                &self.cli.dockerfile,
                &self.config.build_args,
            );
            match (&self.config.image_name, &self.archive) {
                (Some(name), _) => cache.ensure_named(name, slot, dockerfile, args, &mut cancel),
                (None, Some(archive)) => cache.ensure_archive(slot, archive, &mut cancel),
                (None, None) => cache.ensure(slot, dockerfile, args, &mut cancel),
            }
        };
        match result {
            Ok(Some(image)) => {
                *self.image.borrow_mut() = image;
                Ok(None)
            }
            Ok(None) => Ok(Some(interrupted.unwrap_or(Outcome::KeepForRestart))),
            Err(ImageError::Busy(why)) => Err(EngineError::Unavailable(why).into()),
            Err(ImageError::Engine(EngineError::Failed { detail, .. })) => {
                anyhow::bail!("image build failed: {detail}")
            }
            Err(ImageError::Engine(err)) => Err(err.into()),
            Err(ImageError::Inputs(why)) => anyhow::bail!("cannot build the image: {why}"),
        }
    }

    fn image_cache(&self) -> ImageCache<'_> {
        let limits = CacheLimits {
            max_images: self.config.image_cache_max_images as usize,
            max_bytes: self.config.image_cache_max_mb.saturating_mul(1024 * 1024),
        };
        // The project dir is shared by all of the project's tasks on this host.
        let state_dir = match &self.init.project_dir {
            dir if !self.standalone && Path::new(dir).is_dir() => PathBuf::from(dir),
            _ => self.slot_dir.clone(),
        };
        let build_timeout = Duration::from_secs(self.config.build_timeout_secs);
        let project = if self.standalone {
            "standalone"
        } else {
            self.init.project_dir_name()
        };
        ImageCache::new(&self.engine, project, &state_dir, limits, build_timeout)
    }

    fn announce_web_graphics(&self) {
        if let Some(port) = self.web_graphics_port.get() {
            boinc::web_graphics_url(&format!("http://localhost:{port}"));
        }
    }

    fn save_journal(&self, phase: Phase, cpu_time: f64, exit_code: Option<i32>) {
        let journal = Journal {
            container: self.container.clone(),
            image: self.image.borrow().clone(),
            phase,
            cpu_time,
            exit_code,
        };
        journal.save(&self.slot_dir);
    }

    /// A host path (slot, project dir, linked file) as the engine sees it:
    /// the same path locally, `/mnt/c/...` inside WSL.
    fn engine_path(&self, host: &Path) -> Result<PathBuf> {
        Ok(self.engine.path_in_engine(host)?)
    }

    fn project_dir(&self) -> Result<PathBuf> {
        let dir = if self.standalone {
            self.slot_dir.join("project")
        } else {
            PathBuf::from(&self.init.project_dir)
        };
        anyhow::ensure!(
            dir.is_dir(),
            "project directory {} does not exist",
            dir.display()
        );
        Ok(dir)
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

/// What the client's status (or a signal) asks of a task still being set up.
fn interruption(status: &ClientStatus, terminated: bool) -> Option<Outcome> {
    if status.abort_request {
        Some(Outcome::Aborted)
    } else if status.quit_request || status.no_heartbeat || terminated {
        Some(Outcome::KeepForRestart)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_follow_the_cpp_wrapper() {
        let init = InitData {
            project_dir: "/var/lib/boinc/projects/example.org_test".into(),
            wu_name: "WU_1".into(),
            result_name: "WU_1_0".into(),
            ..InitData::default()
        };
        assert_eq!(
            container_name(&init, false),
            "boinc__example.org_test__wu_1_0"
        );
        assert_eq!(container_name(&init, true), "boinc");
    }

    #[test]
    fn client_requests_interrupt_set_up() {
        let mut s = ClientStatus::default();
        assert_eq!(interruption(&s, false), None);
        assert_eq!(interruption(&s, true), Some(Outcome::KeepForRestart));
        s.quit_request = true;
        assert_eq!(interruption(&s, false), Some(Outcome::KeepForRestart));
        s.abort_request = true;
        assert_eq!(interruption(&s, false), Some(Outcome::Aborted));
    }
}
