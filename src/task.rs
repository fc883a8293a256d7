//! One BOINC task from start to end: read the inputs, pick the engine, get
//! the image and the container, then supervise until the job ends.
use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::background;
use crate::host_user;
use crate::boinc::{self, ClientStatus, TaskReport};
use crate::cli::Cli;
use crate::config::{JobConfig, QuitAction};
use crate::engine::create::CreateSpec;
use crate::engine::exit_watch::ExitWatch;
use crate::engine::{self, gpu, names, policy, ContainerState, Engine, EngineError, EngineKind};
use crate::image::{CacheLimits, ImageCache, ImageError};
use crate::init_data::{DockerType, InitData};
use crate::journal::{Journal, Phase};
use crate::network::ContainerNetwork;
use crate::os;
use crate::slot_files;
use crate::slot_usage::DiskWatch;
use crate::supervisor::{self, Action, Event, Found, StartPlan, State};
use crate::suspend::{self, Paused};
use crate::usage::Accounting;

/// How often the loop looks at the client's status. The API reads the
/// client's messages at 10 Hz; matching it keeps suspend -> paused near
/// 100 ms for about a millisecond of CPU a second.
const TICK: Duration = Duration::from_millis(100);
/// How often CPU time, memory and fraction done go to the client.
const REPORT_PERIOD: Duration = Duration::from_secs(1);
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

/// BOINC's exit code for a task whose set-up failed (error_numbers.h).
pub const EXIT_INIT_FAILURE: i32 = 206;
/// BOINC's exit code for a task that exceeded its memory limit.
pub const EXIT_MEM_LIMIT_EXCEEDED: i32 = 198;
/// BOINC's exit code for a task that exceeded its disk bound.
pub const EXIT_DISK_LIMIT_EXCEEDED: i32 = 196;

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
    /// Host pid of the container's init, once running.
    container_pid: Cell<u32>,
    /// How the container was paused, while it is.
    paused: Cell<Option<Paused>>,
}

/// Runs the task. Errors are set-up failures: the caller reports them and
/// finishes with EXIT_INIT_FAILURE.
pub fn run(cli: Cli, config: JobConfig, standalone: bool, terminated: Arc<AtomicBool>) -> Result<Outcome> {
    let slot_dir = std::env::current_dir().context("cannot read the current directory")?;
    // Checked before anything else so a broken app version fails at once.
    check_security(&config)?;
    let archive = image_archive(&slot_dir, &config)?;
    let dockerfile = slot_dir.join(&cli.dockerfile);
    if config.image_name.is_none() && archive.is_none() && !dockerfile.is_file() {
        anyhow::bail!(
            "Dockerfile not found: {} (ship it, or an image archive, with the app version or the workunit)",
            dockerfile.display()
        );
    }
    let init = if standalone {
        InitData { ncpus: 1.0, ..InitData::default() }
    } else {
        InitData::load(&slot_dir.join("init_data.xml")).map_err(anyhow::Error::new)?
    };
    let engine = match pick_engine(&init, &config, standalone) {
        Ok(engine) => engine,
        Err(why) => return Ok(Outcome::TemporaryExit(why)),
    };
    match engine.version() {
        Ok(version) => log::info!("using {} {version} ({})", engine.kind, engine.cli().display()),
        Err(err) => {
            let why = err.to_string();
            let hint = host_user::access_hint(engine.kind, &why).map(|h| format!("; {h}")).unwrap_or_default();
            return Ok(Outcome::TemporaryExit(format!("{why}{hint}")));
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
    };
    match task.run() {
        Err(err) => match err.downcast_ref::<EngineError>() {
            Some(EngineError::Unavailable(why)) => Ok(Outcome::TemporaryExit(why.clone())),
            _ => Err(err),
        },
        ok => ok,
    }
}

fn pick_engine(init: &InitData, config: &JobConfig, standalone: bool) -> Result<Engine, String> {
    let (kind, cli, transport) = if cfg!(windows) {
        // The engine lives in a WSL distro, reached through one `wsl` shell.
        let distro = if standalone {
            engine::wsl::standalone_distro()
        } else {
            engine::wsl::choose_distro(&init.host_info.wsl_distros)?
        };
        log::info!("using WSL distro {}", distro.name);
        let launcher = engine::wsl::launcher(&distro);
        (distro.engine, PathBuf::from(distro.engine.cli_name()), engine::transport::Transport::wsl(launcher))
    } else {
        let forced = std::env::var("DOCKER_WRAPPER_ENGINE").ok();
        let from_client = match init.host_info.docker_type {
            DockerType::Docker => Some(EngineKind::Docker),
            DockerType::Podman => Some(EngineKind::Podman),
            // BOINC 7.20 clients write no docker fields; standalone is Podman-first too.
            DockerType::None => None,
        };
        let from_client = if standalone { None } else { from_client };
        let (kind, cli) = engine::choose(forced.as_deref(), from_client, &|name| which::which(name).ok())?;
        (kind, cli, engine::transport::Transport::from_env())
    };
    let engine = Engine::new(
        kind,
        cli,
        Duration::from_secs(config.command_timeout_secs),
        Duration::from_secs(config.build_timeout_secs),
    );
    Ok(engine.with_transport(transport))
}

/// Refuses job.toml settings that undo the security defaults, unless
/// `allow_unsafe` says the project means it.
fn check_security(config: &JobConfig) -> Result<()> {
    if config.allow_unsafe {
        return Ok(());
    }
    let problem = policy::unsafe_arg(&config.create_args)
        .map(|why| format!("create_args: {why}"))
        .or_else(|| policy::unsafe_arg(&config.build_args).map(|why| format!("build_args: {why}")))
        .or_else(|| config.mounts.iter().find_map(|m| policy::unsafe_mount(m)).map(|why| format!("mount: {why}")));
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
        anyhow::ensure!(slot_dir.join(name).exists(), "image_archive {name} is not in the slot directory");
        return Ok(Some(PathBuf::from(name)));
    }
    Ok(DEFAULT_ARCHIVES.iter().map(PathBuf::from).find(|name| slot_dir.join(name).exists()))
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
        let found = found(self.engine.find(&self.container)?);
        let plan = supervisor::plan_start(journal.as_ref(), &found, os::boot_time());
        log::debug!("found {found:?}, journal {journal:?}: {plan:?}");
        let client_cpu = self.init.wu_cpu_time.max(journal.as_ref().map_or(0.0, |j| j.cpu_time));
        self.web_graphics_port.set(journal.as_ref().and_then(|j| j.web_graphics_port));
        match plan {
            StartPlan::CreateAndStart => {
                if let Some(outcome) = self.ensure_image()? {
                    return Ok(outcome);
                }
                self.create_and_start()?;
                log::info!("container started");
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
            StartPlan::ContinueStopped => log::info!("container processes were stopped for a quit: continuing them"),
            StartPlan::Report { code, oom_killed } => {
                log::info!("the job ended (code {code}) while the wrapper was away: reporting it");
                return Ok(self.finish(code, oom_killed, found != Found::Absent, client_cpu));
            }
        }
        self.announce_web_graphics();
        self.save_journal(Phase::Running, client_cpu, None);
        let state = self.engine.inspect(&self.container)?.context("the container vanished after start")?;
        if plan == StartPlan::ContinueStopped {
            suspend::continue_processes(state.pid);
        }
        self.container_pid.set(state.pid);
        self.supervise(&state, client_cpu)
    }

    /// Gets the image: from the cache, or built. Some(outcome) when the
    /// client (or a signal) interrupted the wait or the build.
    fn ensure_image(&self) -> Result<Option<Outcome>> {
        let mut interrupted = None;
        let result = {
            let mut cancel = || {
                interrupted = interruption(&boinc::status(), self.terminated.load(Ordering::Relaxed));
                interrupted.is_some()
            };
            let cache = self.image_cache();
            let (slot, dockerfile, args) = (&self.slot_dir, &self.cli.dockerfile, &self.config.build_args);
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
            Err(ImageError::Engine(EngineError::Failed { detail, .. })) => anyhow::bail!("image build failed: {detail}"),
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
        let project = if self.standalone { "standalone" } else { self.init.project_dir_name() };
        ImageCache::new(&self.engine, project, &state_dir, limits, build_timeout)
    }

    /// Creates and starts the container. An engine that refuses the cgroup
    /// limits (no delegated controllers for a rootless user, a kernel without
    /// them) gets the container without them, with one warning.
    fn create_and_start(&self) -> Result<()> {
        let spec = self.create_spec()?;
        let create_then_start = |spec: &CreateSpec| -> Result<()> {
            self.engine.create(spec).context("cannot create the container")?;
            self.engine.start(&self.container).context("cannot start the container")
        };
        let err = match create_then_start(&spec) {
            Ok(()) => return Ok(()),
            Err(err) => err,
        };
        if !refuses_limits(&format!("{err:#}")) {
            return Err(err);
        }
        log::warn!("the engine refused the resource limits, so the job runs without them: {err:#}");
        // A refusal at start leaves the created container in the way.
        if let Err(err) = self.engine.remove(&self.container) {
            log::debug!("{err}");
        }
        create_then_start(&CreateSpec { resource_limits: false, ..spec })
    }

    fn labels(&self) -> Vec<(String, String)> {
        vec![
            ("boinc.docker_wrapper".into(), env!("CARGO_PKG_VERSION").into()),
            ("boinc.project".into(), self.init.project_dir_name().into()),
            ("boinc.wu".into(), self.init.wu_name.clone()),
            ("boinc.result".into(), self.init.result_name.clone()),
        ]
    }

    fn create_spec(&self) -> Result<CreateSpec> {
        let mut env = vec![("ARGS".to_string(), self.cli.job_args.join(" "))];
        if self.engine.kind == EngineKind::Docker {
            // Podman passes the proxy variables of its environment on by itself.
            env.extend(self.init.proxy_env());
        }
        let project_mount = match &self.config.project_dir_mount {
            Some(guest) => Some((self.engine_path(&self.project_dir()?)?, guest.clone())),
            None => None,
        };
        let memory_bytes = (self.init.rsc_memory_bound > 0.0).then_some(self.init.rsc_memory_bound as u64);
        let mut mounts = self.config.mounts.clone();
        mounts.extend(self.linked_file_mounts()?);
        let mut portmaps = self.config.portmaps.clone();
        if let Some(guest) = self.config.web_graphics_guest_port {
            match boinc::free_port(false) {
                Ok(host) => {
                    log::info!("web graphics: host port {host} -> container port {guest}");
                    portmaps.push(format!("127.0.0.1:{host}:{guest}"));
                    self.web_graphics_port.set(Some(host));
                }
                Err(code) => log::warn!("no free port for web graphics (error {code}); continuing without"),
            }
        }
        Ok(CreateSpec {
            name: self.container.clone(),
            image: self.image.borrow().clone(),
            labels: self.labels(),
            slot_dir: self.engine_path(&self.slot_dir)?,
            workdir: self.config.workdir.clone(),
            project_mount,
            mounts,
            portmaps,
            env,
            resource_limits: true,
            // Docker refuses more CPUs than the host has; the client's ncpus
            // can exceed them (a volunteer's <ncpus> override).
            cpus: self.init.ncpus.min(host_cpus()),
            memory_bytes,
            cpu_shares: self.config.cpu_shares,
            pids_limit: self.config.pids_limit,
            network: self.config.network,
            log_max_bytes: 64 * 1024 * 1024,
            cgroup_parent: self.idle_cgroup_parent(),
            cap_add: self.config.cap_add.clone(),
            user: self.container_user(),
            gpu_args: self.gpu_args(),
            extra_args: self.config.create_args.clone(),
        })
    }

    /// The client leaves input and output files in the slot as soft-link
    /// files (or symlinks) unless the app version asks for copies; a job
    /// would read the link text. Mount each real file at its open name:
    /// inputs read-only, outputs read-write into the project file the client
    /// uploads (created empty first, as bind mounts need an existing source).
    fn linked_file_mounts(&self) -> Result<Vec<String>> {
        let linked = slot_files::linked_files(&self.slot_dir).map_err(anyhow::Error::msg)?;
        let mut mounts = Vec::new();
        for file in linked {
            let guest = format!("{}/{}", self.config.workdir.trim_end_matches('/'), file.name);
            let source = self.engine_path(&file.target)?;
            if file.name.contains(':') || source.to_string_lossy().contains(':') {
                log::warn!("{}: a ':' in the path cannot be mounted; the job sees the link file", file.name);
                continue;
            }
            let mode = if file.target.exists() {
                "ro"
            } else {
                std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&file.target)
                    .with_context(|| format!("cannot create output file {}", file.target.display()))?;
                "rw"
            };
            log::debug!("{} -> {} ({mode})", file.name, file.target.display());
            mounts.push(format!("{}:{guest}:{mode}", source.display()));
        }
        Ok(mounts)
    }

    fn idle_cgroup_parent(&self) -> Option<String> {
        if !self.config.idle_priority {
            return None;
        }
        // Rootless Podman has no cgroup hierarchy of its own to place us in.
        if self.engine.kind == EngineKind::Podman && os::user_and_group().0 != 0 {
            return None;
        }
        match self.engine.cgroup_driver() {
            Ok(Some(driver)) => background::idle_parent(driver),
            Ok(None) => None,
            Err(err) => {
                log::debug!("cgroup driver unknown ({err}): no idle parent cgroup");
                None
            }
        }
    }

    /// Docker runs containers as root by default, so files the job writes
    /// into the slot would belong to root; run as the wrapper's user instead.
    /// (Not when the wrapper is root itself: then the image's USER stands.)
    fn container_user(&self) -> Option<(u32, u32)> {
        let (uid, gid) = os::user_and_group();
        (self.engine.kind == EngineKind::Docker && self.config.run_as_wrapper_user && uid != 0).then_some((uid, gid))
    }

    fn gpu_args(&self) -> Vec<String> {
        if !self.config.use_gpu {
            return Vec::new();
        }
        let podman = self.engine.kind == EngineKind::Podman;
        gpu::gpu_args(podman, &self.init.gpu_type, self.init.gpu_device_num).unwrap_or_else(|why| {
            log::warn!("{why}: running without a GPU");
            Vec::new()
        })
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
            web_graphics_port: self.web_graphics_port.get(),
        };
        journal.save(&self.slot_dir);
    }

    /// A host path (slot, project dir, linked file) as the engine sees it:
    /// the same path locally, `/mnt/c/...` inside WSL.
    fn engine_path(&self, host: &Path) -> Result<PathBuf> {
        self.engine.path_in_engine(host).map_err(anyhow::Error::msg)
    }

    fn project_dir(&self) -> Result<PathBuf> {
        let dir = if self.standalone {
            self.slot_dir.join("project")
        } else {
            PathBuf::from(&self.init.project_dir)
        };
        anyhow::ensure!(dir.is_dir(), "project directory {} does not exist", dir.display());
        Ok(dir)
    }

    /// The main loop: client messages and container exit until the end.
    fn supervise(&self, container: &ContainerState, client_cpu: f64) -> Result<Outcome> {
        let mut watch = ExitWatch::start(&self.engine, &self.container, container.pid)?;
        // Through a shell into WSL, the pid is the distro's, not ours.
        let host_pid = self.engine.transport().is_local().then_some(container.pid);
        let read_stats = Box::new(|| self.engine.stats(&self.container).map_err(|err| log::debug!("{err}")).ok());
        let mut accounting = Accounting::new(host_pid, &container.id, client_cpu, read_stats);
        let mut state = State::Running;
        let mut network = ContainerNetwork::new(&self.engine, &self.container, self.config.network);
        let mut disk = DiskWatch::new(&self.slot_dir, self.init.rsc_disk_bound);
        let mut next_report = Instant::now();
        loop {
            let event = if watch.wait_exited(TICK) {
                // Read the cgroup's OOM counter at once, before the engine removes the cgroup.
                let cgroup_oom = accounting.oom_killed();
                let code = watch.exit_code(&self.engine, &self.container)?;
                let engine_oom = self.engine.inspect(&self.container)?.is_some_and(|s| s.oom_killed);
                Event::ContainerExited { code, oom_killed: engine_oom || (cgroup_oom && code == 137) }
            } else if self.terminated.load(Ordering::Relaxed) {
                Event::Terminated
            } else {
                Event::Client(boinc::status())
            };
            let (next, actions) = supervisor::transition(state, &event);
            // The next wrapper process would not know which networks were taken.
            if actions.iter().any(|a| matches!(a, Action::KeepForRestart { .. })) {
                network.restore();
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
                    fraction_done: if ended { 1.0 } else { read_fraction_done(&self.fraction_done()) },
                    working_set_size: accounting.memory_bytes(),
                });
                next_report = Instant::now() + REPORT_PERIOD;
            }
            if state == State::Running && actions.is_empty() {
                if let Some(disk) = disk.as_mut() {
                    if let Some(used) = disk.over_bound() {
                        return Ok(self.end_over_disk_bound(used, disk.bound(), accounting.cpu_time()));
                    }
                }
            }
            for action in actions {
                if let Some(outcome) = self.perform(&action, accounting.cpu_time())? {
                    return Ok(outcome);
                }
            }
            if let Event::Client(status) = &event {
                network.follow(status.network_suspended, state == State::Running);
            }
        }
    }

    fn perform(&self, action: &Action, cpu_time: f64) -> Result<Option<Outcome>> {
        match action {
            Action::Pause => {
                match self.pause() {
                    Ok(Paused::ByEngine) => log::info!("suspended: container paused"),
                    Ok(Paused::BySignals) => log::info!("suspended: container processes stopped"),
                    // Losing the task over it would be worse than a job running on.
                    Err(err) => log::warn!("the container could not be paused; it keeps running: {err}"),
                }
                Ok(None)
            }
            Action::Unpause => {
                let how = self.paused.take().unwrap_or(Paused::ByEngine);
                match suspend::resume(&self.engine, &self.container, self.container_pid.get(), how) {
                    Ok(()) => log::info!("resumed: container unpaused"),
                    Err(err) => log::warn!("unpause failed (the container may not have been paused): {err}"),
                }
                Ok(None)
            }
            Action::KeepForRestart { reason, already_paused } => {
                log::info!("{reason}: keeping the container for a restart");
                let phase = self.keep_for_restart(*already_paused);
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
            Action::Finish { code, oom_killed } => Ok(Some(self.finish(*code, *oom_killed, true, cpu_time))),
        }
    }

    fn pause(&self) -> Result<Paused, EngineError> {
        let how = suspend::pause(&self.engine, &self.container, self.container_pid.get())?;
        self.paused.set(Some(how));
        Ok(how)
    }

    /// Pauses or stops the container as job.toml says; the phase to journal.
    /// A container that cannot be paused is stopped, so it never runs on
    /// unsupervised while the task is suspended or the client is down.
    fn keep_for_restart(&self, already_paused: bool) -> Phase {
        let grace = Duration::from_secs(self.config.stop_grace_secs);
        let stop = || {
            // A stopped process would not see the SIGTERM until SIGKILL.
            if self.paused.get() == Some(Paused::BySignals) {
                suspend::continue_processes(self.container_pid.get());
            }
            self.stop_for_restart(grace)
        };
        match self.config.quit_action {
            QuitAction::Pause if already_paused => Phase::KeptPaused,
            QuitAction::Pause => match self.pause() {
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
        self.finish(EXIT_DISK_LIMIT_EXCEEDED, false, true, cpu_time)
    }

    /// Container log into stderr.txt, container removed (the image stays
    /// cached for the next workunit).
    fn finish(&self, code: i32, oom_killed: bool, container_exists: bool, cpu_time: f64) -> Outcome {
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
            return Outcome::Finished(EXIT_MEM_LIMIT_EXCEEDED);
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
                eprintln!("---- container output (last {} KiB at most) ----", max / 1024);
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

fn host_cpus() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

/// Whether an engine's error is about cgroup limits it cannot apply, as
/// Docker, Podman, runc and crun word it.
fn refuses_limits(error: &str) -> bool {
    let error = error.to_lowercase();
    ["cgroup", "controller", "does not support", "memory limit", "cpu limit", "pids limit", "nanocpus", "cpu cfs"]
        .iter()
        .any(|phrase| error.contains(phrase))
}

/// The container's state as the start plan sees it.
fn found(state: Option<ContainerState>) -> Found {
    let Some(state) = state else { return Found::Absent };
    match state.status.as_str() {
        "created" | "configured" | "initialized" => Found::Created,
        "running" => Found::Running,
        "paused" => Found::Paused,
        _ if state.has_exited() => Found::Exited {
            code: state.exit_code,
            oom_killed: state.oom_killed,
            finished_at: state.finished_at,
        },
        _ => Found::Other,
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

/// The first number in the job's fraction_done file, clamped to 0..1.
fn read_fraction_done(path: &Path) -> f64 {
    let Ok(text) = std::fs::read_to_string(path) else { return 0.0 };
    text.split_whitespace()
        .next()
        .and_then(|w| w.parse::<f64>().ok())
        .filter(|f| f.is_finite())
        .map_or(0.0, |f| f.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_refusals_are_told_apart_from_other_failures() {
        assert!(refuses_limits("crun: the requested cgroup controller `pids` is not available: OCI runtime error"));
        assert!(refuses_limits("Error response from daemon: NanoCPUs can not be set, as your kernel does not support CPU CFS scheduler or the cgroup is not mounted"));
        assert!(refuses_limits("Your kernel does not support memory limit capabilities or the cgroup is not mounted. Limitation discarded."));
        assert!(!refuses_limits("Error: image not known"));
        assert!(!refuses_limits("Error: creating container storage: the container name \"x\" is already in use"));
    }

    #[test]
    fn fraction_done_is_read_and_clamped() {
        let dir = std::env::temp_dir().join(format!("dw-fd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("fraction_done");
        assert_eq!(read_fraction_done(&file), 0.0);
        for (text, want) in [("0.25\n", 0.25), ("7", 1.0), ("-1", 0.0), ("nan", 0.0), ("abc", 0.0), ("0.5 extra", 0.5)] {
            std::fs::write(&file, text).unwrap();
            assert_eq!(read_fraction_done(&file), want, "{text:?}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn container_names_follow_the_cpp_wrapper() {
        let init = InitData {
            project_dir: "/var/lib/boinc/projects/example.org_test".into(),
            wu_name: "WU_1".into(),
            result_name: "WU_1_0".into(),
            ..InitData::default()
        };
        assert_eq!(container_name(&init, false), "boinc__example.org_test__wu_1_0");
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
