//! One interface over the Docker and Podman command-line tools.
//!
//! Every call is an argv vector with a timeout, run through the engine's
//! transport (a child process, or a line for the WSL shell); results come
//! from exit status and `--format` templates, never from human-readable text.
mod archive;
mod build_trace;
mod create;
mod exit_watch;
mod facts;
mod failure;
mod flags;
mod gpu;
mod host_user;
mod info;
mod macos;
mod mount_policy;
mod names;
mod policy;
mod probe;
mod process;
mod seam;
mod shell;
mod stats;
mod time;
mod transport;
mod wsl;

use std::cell::{Cell, RefCell};
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::boinc::init_data::WslDistro;
use build_trace::BuildTrace;
// The engine's face to the rest of the wrapper; its submodules are its own.
pub use build_trace::{BuildEvent, Leftover};
pub use create::CreateSpec;
pub use facts::{Facts, Known};
pub use failure::Failure;
pub use host_user::user_name;
#[cfg(test)]
pub(crate) use names::props as name_props;
pub use names::{
    component as name_component, task_container, RESULT_LABEL, SLOT_LABEL, WRAPPER_LABEL,
};
pub use policy::{is_host_capability, unsafe_setting};
#[cfg(test)]
pub use probe::EngineInfo;
pub use probe::{candidates, wsl_distros, Detection, Probe, DETECTION_IMAGE};
pub use process::terminate_orphan;
pub use seam::{ContainerEngine, ExitWatcher};
pub use stats::{CpuFigure, Stats};
#[cfg(test)]
pub mod fake;
use crate::boinc::init_data::DockerType;
use process::{Argv, Limits, Output, RunError};
use transport::Transport;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    Docker,
    Podman,
}

impl EngineKind {
    /// The engine the client detected and wrote to init_data.xml (BOINC
    /// 8.2); None when it names none (7.20 clients write no docker fields).
    pub fn from_client(docker_type: DockerType) -> Option<EngineKind> {
        match docker_type {
            DockerType::Docker => Some(EngineKind::Docker),
            DockerType::Podman => Some(EngineKind::Podman),
            DockerType::None => None,
        }
    }

    pub fn cli_name(self) -> &'static str {
        match self {
            EngineKind::Docker => "docker",
            EngineKind::Podman => "podman",
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EngineKind::Docker => "Docker",
            EngineKind::Podman => "Podman",
        })
    }
}

#[derive(Debug)]
pub enum EngineError {
    /// The engine cannot be used right now (missing, daemon down, hung):
    /// the task should be retried later, not failed.
    Unavailable(String),
    /// A command ran and failed.
    Failed { command: String, detail: String },
    /// A command did not finish in time and was killed: the engine hangs.
    TimedOut(String),
    /// The caller cancelled a long command (client quit/abort).
    Cancelled,
}

impl EngineError {
    /// Why the engine cannot be used now, when that is the error: the task
    /// is then retried later rather than failed.
    pub fn unavailable(&self) -> Option<&str> {
        match self {
            EngineError::Unavailable(why) | EngineError::TimedOut(why) => Some(why),
            _ => None,
        }
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Unavailable(why) | EngineError::TimedOut(why) => {
                write!(f, "container engine unavailable: {why}")
            }
            EngineError::Failed { command, detail } => write!(f, "'{command}' failed: {detail}"),
            EngineError::Cancelled => f.write_str("cancelled"),
        }
    }
}

impl std::error::Error for EngineError {}

impl From<RunError> for EngineError {
    fn from(err: RunError) -> Self {
        match err {
            RunError::Cancelled { .. } => EngineError::Cancelled,
            timed_out @ RunError::TimedOut { .. } => EngineError::TimedOut(timed_out.to_string()),
            other => EngineError::Unavailable(other.to_string()),
        }
    }
}

/// A container's status, in the words of neither engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerStatus {
    /// Made but never started (Podman also says configured, initialized).
    Created,
    Running,
    Paused,
    /// Exited or stopped: the process is gone and will not come back by itself.
    Exited,
    /// Anything else (restarting, removing, ...), as the engine named it.
    Other(String),
}

impl ContainerStatus {
    fn parse(engine_word: &str) -> ContainerStatus {
        match engine_word.trim().to_lowercase().as_str() {
            "created" | "configured" | "initialized" => ContainerStatus::Created,
            "running" => ContainerStatus::Running,
            "paused" => ContainerStatus::Paused,
            "exited" | "stopped" | "dead" => ContainerStatus::Exited,
            other => ContainerStatus::Other(other.to_string()),
        }
    }
}

/// The state of a container, from `inspect`.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerState {
    pub status: ContainerStatus,
    pub exit_code: i32,
    pub oom_killed: bool,
    /// Host pid of the container's init process; 0 when not running.
    pub pid: u32,
    /// Unix time of the last exit, when there was one.
    pub finished_at: Option<i64>,
    /// The engine's full container id.
    pub id: String,
    /// Unix time of the container's creation.
    pub created: Option<i64>,
    /// The image the container was created from, as named then.
    pub image: String,
    /// Whether docker_wrapper made it (its version label, `names::WRAPPER_LABEL`).
    pub made_by_wrapper: bool,
    /// The result recorded on the container (`names::RESULT_LABEL`); empty
    /// when it has none.
    pub result: String,
    /// The slot recorded on the container (`names::SLOT_LABEL`); empty for
    /// containers made without it.
    pub slot: String,
}

impl ContainerState {
    fn parse(line: &str) -> Option<ContainerState> {
        // The slot comes last and whole: a path may hold `|` or spaces.
        let line = line.trim_start();
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        let mut fields = line.splitn(11, '|');
        let status = ContainerStatus::parse(fields.next()?);
        let exit_code = fields.next()?.trim().parse().ok()?;
        let oom_killed = fields.next()?.trim() == "true";
        let pid = fields.next()?.trim().parse().unwrap_or(0);
        let finished_at = fields.next().and_then(time::parse_unix_time);
        let id = fields.next().unwrap_or_default().trim().to_string();
        let created = fields.next().and_then(time::parse_unix_time);
        let image = fields.next().unwrap_or_default().trim().to_string();
        let made_by_wrapper = !fields.next().unwrap_or_default().trim().is_empty();
        let result = fields.next().unwrap_or_default().trim().to_string();
        let slot = fields.next().unwrap_or_default().to_string();
        Some(ContainerState {
            status,
            exit_code,
            oom_killed,
            pid,
            finished_at,
            id,
            created,
            image,
            made_by_wrapper,
            result,
            slot,
        })
    }

    pub fn has_exited(&self) -> bool {
        self.status == ContainerStatus::Exited
    }
}

/// Labels are printed through `with`: Docker prints a missing one as
/// `<no value>`, Podman as nothing; `with` prints nothing for both.
const STATE_FORMAT: &str = concat!(
    "{{.State.Status}}|{{.State.ExitCode}}|{{.State.OOMKilled}}|{{.State.Pid}}|{{.State.FinishedAt}}|{{.Id}}|{{.Created}}",
    "|{{.Config.Image}}",
    "|{{with index .Config.Labels \"boinc.docker_wrapper\"}}{{.}}{{end}}",
    "|{{with index .Config.Labels \"boinc.result\"}}{{.}}{{end}}",
    "|{{with index .Config.Labels \"boinc.docker_wrapper.slot\"}}{{.}}{{end}}"
);

/// Output kept from ordinary commands; logs and builds choose their own.
const COMMAND_CAPTURE: usize = 64 * 1024;

pub struct Engine {
    pub kind: EngineKind,
    cli: PathBuf,
    /// The program that runs the CLI for us (BOINC's Run_Podman on macOS).
    helper: Option<PathBuf>,
    /// Whether the engine lives in a VM the CLI reaches (Docker Desktop,
    /// Podman's machine: macOS): its pids and cgroups are not this host's,
    /// and a Podman that cannot reach it may find its machine down.
    in_vm: bool,
    timeout: Duration,
    build_timeout: Duration,
    /// Whether `docker build` must use the classic builder (no buildx plugin).
    docker_classic_builder: Cell<Option<bool>>,
    transport: Transport,
    /// Where the host's tasks remember the engine's facts (`facts.rs`).
    facts_file: Option<PathBuf>,
}

impl Engine {
    /// An engine whose commands are child processes of the wrapper.
    pub fn new(
        kind: EngineKind,
        cli: PathBuf,
        timeout: Duration,
        build_timeout: Duration,
    ) -> Engine {
        Engine {
            kind,
            cli,
            helper: None,
            in_vm: false,
            timeout,
            build_timeout,
            docker_classic_builder: Cell::new(None),
            transport: Transport::Local,
            facts_file: None,
        }
    }

    /// Runs the commands through `transport` instead; `cli` is then the
    /// program as the transport's side names it.
    pub fn with_transport(self, transport: Transport) -> Engine {
        Engine { transport, ..self }
    }

    /// Runs the CLI through `helper` (its first argument is the CLI).
    pub fn with_helper(self, helper: PathBuf) -> Engine {
        Engine {
            helper: Some(helper),
            ..self
        }
    }

    /// The engine is in a VM (both engines on macOS).
    fn with_vm(self, in_vm: bool) -> Engine {
        Engine { in_vm, ..self }
    }

    /// Remembers the engine's facts in `dir`, shared by the host's tasks.
    pub fn with_facts_dir(self, dir: &Path) -> Engine {
        let file = dir.join(format!("engine_facts_{}.toml", self.kind.cli_name()));
        Engine {
            facts_file: Some(file),
            ..self
        }
    }

    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// A path of this host as the engine sees it (mount sources, archives).
    pub fn path_in_engine(&self, host: &Path) -> Result<PathBuf, wsl::PathError> {
        self.transport.path_in_engine(host)
    }

    pub fn cli(&self) -> &Path {
        &self.cli
    }

    /// Whether a container's pid is one of this host's processes: not
    /// through WSL, nor in the engine's VM on macOS.
    pub fn shares_host_pids(&self) -> bool {
        self.transport.is_local() && !self.in_vm
    }

    /// The program engine commands start: the helper, or the CLI itself.
    pub fn program(&self) -> &Path {
        self.helper.as_deref().unwrap_or(&self.cli)
    }

    fn argv<I, S>(&self, args: I) -> Argv
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        match &self.helper {
            Some(helper) => {
                let (program, lead) = macos::prefix(helper, &self.cli);
                Argv::new(program).args(lead).args(args)
            }
            None => Argv::new(self.cli.as_os_str()).args(args),
        }
    }

    fn run_argv(
        &self,
        argv: &Argv,
        limits: Limits,
        cancel: &mut dyn FnMut() -> bool,
    ) -> Result<Output, EngineError> {
        log::debug!("engine: {}", argv.display());
        Ok(self.transport.run(argv, limits, cancel)?)
    }

    /// Runs a command that must succeed.
    fn run<I, S>(&self, args: I) -> Result<Output, EngineError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let argv = self.argv(args);
        let out = self.run_argv(&argv, self.limits(), &mut || false)?;
        if out.success() {
            Ok(out)
        } else {
            Err(self.failed(&argv, &out))
        }
    }

    /// The error of a command that ran and failed. A CLI that cannot reach
    /// its engine (the daemon down, its socket not ours) makes the engine
    /// unavailable, whichever command found it out: the task is retried
    /// later, not failed.
    fn failed(&self, argv: &Argv, out: &Output) -> EngineError {
        let err = EngineError::Failed {
            command: argv.display(),
            detail: out.error_summary(),
        };
        if err.out_of_reach() {
            self.does_not_answer(&out.error_summary())
        } else {
            err
        }
    }

    /// "<cli> does not answer: <why>", with what the volunteer can do about it.
    fn does_not_answer(&self, detail: &str) -> EngineError {
        if self.in_vm && self.kind == EngineKind::Podman {
            if let Some(why) = self.machine_down(detail) {
                return EngineError::Unavailable(why);
            }
        }
        let why = format!("{} does not answer: {detail}", self.cli.display());
        match self.access_hint(&EngineError::Unavailable(why.clone())) {
            Some(hint) => EngineError::Unavailable(format!("{why}; {hint}")),
            None => EngineError::Unavailable(why),
        }
    }

    /// Why the engine cannot answer when its VM is down: None when a
    /// machine runs (or the CLI cannot say), so the error stays the CLI's.
    fn machine_down(&self, detail: &str) -> Option<String> {
        let argv = self.argv(macos::MACHINE_LIST_ARGS);
        let out = self.run_argv(&argv, self.limits(), &mut || false).ok()?;
        (out.success() && !macos::machine_running(&out.stdout))
            .then(|| macos::machine_not_running(detail))
    }

    fn limits(&self) -> Limits {
        Limits {
            timeout: self.timeout,
            capture: COMMAND_CAPTURE,
        }
    }

    /// The engine's version; fails when the CLI is missing or (Docker) the daemon is down.
    pub fn version(&self) -> Result<String, EngineError> {
        let format = match self.kind {
            EngineKind::Docker => "{{.Server.Version}}",
            EngineKind::Podman => "{{.Client.Version}}",
        };
        match self.run(["version", "--format", format]) {
            Ok(out) => Ok(out.stdout.trim().to_string()),
            Err(EngineError::Failed { detail, .. }) => Err(self.does_not_answer(&detail)),
            Err(other) => Err(other),
        }
    }

    pub fn image_exists(&self, image: &str) -> Result<bool, EngineError> {
        let argv = match self.kind {
            // 0 = present, 1 = absent, anything else is an engine error.
            EngineKind::Podman => self.argv(["image", "exists", image]),
            EngineKind::Docker => self.argv(["image", "inspect", "--format", "{{.Id}}", image]),
        };
        let out = self.run_argv(&argv, self.limits(), &mut || false)?;
        match out.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(self.failed(&argv, &out)),
        }
    }

    /// Builds `tag` from `dockerfile` (relative to `context`) in `context`.
    /// On failure the error carries the tail of the build output.
    /// `event` hears of the build's process and of each container and step
    /// image the build makes, as it makes them: what to stop and remove
    /// should the build not finish (see `remove_build_leftovers`).
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        &self,
        context: &Path,
        dockerfile: &Path,
        tag: &str,
        labels: &[(String, String)],
        build_args: &[String],
        cancel: &mut dyn FnMut() -> bool,
        event: &mut dyn FnMut(BuildEvent),
    ) -> Result<(), EngineError> {
        // Buildah names the working containers it creates only in its debug log.
        let global: &[&str] = if self.kind == EngineKind::Podman {
            &["--log-level=debug"]
        } else {
            &[]
        };
        // Run in the context with relative paths: Podman parses `-f` values as
        // CSV, so quotes in an absolute slot path would break it.
        let mut argv = self
            .argv(global.iter().chain(&["build", "-t", tag, "-f"]).copied())
            .arg(dockerfile.as_os_str())
            .current_dir(context);
        for (key, value) in labels {
            argv = argv.arg("--label").arg(format!("{key}={value}"));
        }
        if self.kind == EngineKind::Podman {
            // No registry retries: a FROM that cannot be pulled fails at once.
            // No intermediate images: the cache is by content of the whole
            // build, and a failed build then leaves no images behind.
            argv = argv.args(["--retry", "0", "--layers=false"]);
        }
        // Docker's classic builder keeps the container of a failed RUN step
        // unless told otherwise (Podman removes it by default).
        if self.kind == EngineKind::Docker {
            argv = argv.arg("--force-rm");
        }
        if self.kind == EngineKind::Docker && self.docker_needs_classic_builder() {
            argv = argv.env("DOCKER_BUILDKIT", "0");
        }
        argv = argv.args(build_args.iter().map(String::as_str)).arg(".");
        let limits = Limits {
            timeout: self.build_timeout,
            capture: 16 * 1024,
        };
        let mut trace = BuildTrace::new(self.kind);
        // Both callbacks report through `event`: one at a time.
        let event = RefCell::new(event);
        let mut line = |line: &str| {
            if let Some(made) = trace.line(line) {
                (event.borrow_mut())(BuildEvent::Made(made));
            }
        };
        let mut spawned = |process| (event.borrow_mut())(BuildEvent::Started(process));
        let watch = process::Watch {
            line: &mut line,
            keep: |line| !build_trace::is_debug_log(line),
            spawned: &mut spawned,
        };
        log::debug!("engine: {}", argv.display());
        let out = self.transport.run_watched(&argv, limits, cancel, watch)?;
        if out.success() {
            return Ok(());
        }
        let tail = process::last_lines(&format!("{}\n{}", out.stdout, out.stderr), 20);
        Err(EngineError::Failed {
            command: argv.display(),
            detail: format!("{}\n{tail}", out.status),
        })
    }

    /// Removes what an unfinished build left (its `leftover`s). Containers
    /// go by id, whatever their state; step images only while they are
    /// untagged, and without force, so an image that another image or a
    /// container now uses (a later build took it from the cache) stays.
    /// Fails only when the engine does not answer.
    pub fn remove_build_leftovers(&self, leftovers: &[Leftover]) -> Result<(), EngineError> {
        for leftover in leftovers {
            if let Leftover::Container(id) = leftover {
                // An absent one is fine: the engine may have removed it itself.
                let out =
                    self.run_argv(&self.argv(["rm", "-f", id]), self.limits(), &mut || false)?;
                if !out.success() {
                    log::debug!("build container {id}: {}", out.error_summary());
                }
            }
        }
        let images: Vec<&str> = leftovers
            .iter()
            .filter_map(|l| match l {
                Leftover::Image(id) => Some(id.as_str()),
                Leftover::Container(_) => None,
            })
            .collect();
        if images.is_empty() {
            return Ok(());
        }
        let dangling = match self.run([
            "images",
            "-a",
            "-q",
            "--no-trunc",
            "--filter",
            "dangling=true",
        ]) {
            Ok(out) => out.stdout,
            Err(EngineError::Failed { detail, .. }) => {
                log::debug!("build step images kept: cannot list untagged images: {detail}");
                return Ok(());
            }
            Err(err) => return Err(err),
        };
        let is_dangling = |id: &str| {
            dangling
                .lines()
                .any(|line| line.trim().trim_start_matches("sha256:").starts_with(id))
        };
        // Children before their parents: each step's image is the next one's parent.
        for id in images.into_iter().rev().filter(|id| is_dangling(id)) {
            let out = self.run_argv(&self.argv(["rmi", id]), self.limits(), &mut || false)?;
            if !out.success() {
                log::debug!("build step image {id}: {}", out.error_summary());
            }
        }
        Ok(())
    }

    /// Loads an image archive (`docker save` format, gzip or not).
    /// `scratch` names a file the archive may be decompressed into while
    /// it loads; it is removed afterwards.
    pub fn load(
        &self,
        archive: &Path,
        scratch: &Path,
        cancel: &mut dyn FnMut() -> bool,
    ) -> Result<(), EngineError> {
        let failed = |detail: String| EngineError::Failed {
            command: format!("{} load", self.cli.display()),
            detail,
        };
        // Podman 4 cannot load gzip-compressed docker archives.
        let unpack = self.kind == EngineKind::Podman && archive::is_gzip(archive);
        let loaded = if unpack {
            archive::gunzip(archive, scratch)
                .map_err(|err| failed(err.to_string()))
                .and_then(|()| self.load_file(scratch, cancel))
        } else {
            self.load_file(archive, cancel)
        };
        if unpack {
            let _ = std::fs::remove_file(scratch);
        }
        loaded
    }

    fn load_file(
        &self,
        archive: &Path,
        cancel: &mut dyn FnMut() -> bool,
    ) -> Result<(), EngineError> {
        let archive = self
            .path_in_engine(archive)
            .map_err(|err| EngineError::Failed {
                command: format!("{} load", self.cli.display()),
                detail: err.to_string(),
            })?;
        let argv = self.argv(["load", "-i"]).arg(archive.as_os_str());
        let limits = Limits {
            timeout: self.build_timeout,
            capture: 16 * 1024,
        };
        let out = self.run_argv(&argv, limits, cancel)?;
        if out.success() {
            Ok(())
        } else {
            Err(self.failed(&argv, &out))
        }
    }

    pub fn tag(&self, source: &str, target: &str) -> Result<(), EngineError> {
        self.run(["tag", source, target]).map(|_| ())
    }

    /// BuildKit is Docker's default builder but needs the buildx plugin,
    /// which Debian's docker.io lacks; the classic builder works everywhere.
    fn docker_needs_classic_builder(&self) -> bool {
        if std::env::var_os("DOCKER_BUILDKIT").is_some() {
            return false;
        }
        if let Some(known) = self.docker_classic_builder.get() {
            return known;
        }
        let has_buildx = self
            .run_argv(
                &self.argv(["buildx", "version"]),
                self.limits(),
                &mut || false,
            )
            .map(|out| out.success())
            .unwrap_or(false);
        self.docker_classic_builder.set(Some(!has_buildx));
        !has_buildx
    }

    /// Creates and starts the container in one command. When it fails, a
    /// container may be left created but not started (the start failed).
    pub fn run_container(&self, spec: &create::CreateSpec) -> Result<(), EngineError> {
        self.run(create::run_args(self.kind, spec)).map(|_| ())
    }

    /// None when no container has that name.
    pub fn inspect(&self, container: &str) -> Result<Option<ContainerState>, EngineError> {
        let argv = self.argv(["container", "inspect", "--format", STATE_FORMAT, container]);
        let out = self.run_argv(&argv, self.limits(), &mut || false)?;
        if !out.success() {
            let err = self.failed(&argv, &out);
            if err.unavailable().is_some() {
                return Err(err);
            }
            // Absent containers make inspect fail: the engine says so, or,
            // if it says something else, asking for the exact name tells.
            if err.failure() == Failure::NotFound || !self.container_exists(container)? {
                return Ok(None);
            }
            return Err(err);
        }
        ContainerState::parse(&out.stdout)
            .map(Some)
            .ok_or_else(|| EngineError::Failed {
                command: argv.display(),
                detail: format!(
                    "unexpected inspect output {:?}",
                    process::excerpt(out.stdout.trim(), process::MESSAGE_MAX_CHARS)
                ),
            })
    }

    /// Like `inspect`, but asks whether the container exists first: one
    /// command instead of two when it does not (every fresh start).
    pub fn find(&self, container: &str) -> Result<Option<ContainerState>, EngineError> {
        if self.container_exists(container)? {
            self.inspect(container)
        } else {
            Ok(None)
        }
    }

    fn container_exists(&self, container: &str) -> Result<bool, EngineError> {
        let out = self.run([
            "ps",
            "-a",
            "--format",
            "{{.Names}}",
            "--filter",
            &format!("name=^{container}$"),
        ])?;
        Ok(out.stdout.lines().any(|name| name.trim() == container))
    }

    pub fn start(&self, container: &str) -> Result<(), EngineError> {
        self.run(["start", container]).map(|_| ())
    }

    /// The loopback host port published for the container's `guest` port.
    pub fn published_port(&self, container: &str, guest: u16) -> Option<u16> {
        let out = self.run(["port", container, &guest.to_string()]).ok()?;
        out.stdout
            .lines()
            .find_map(|line| line.trim().rsplit_once(':')?.1.parse().ok())
    }

    /// Pauses the container; `cancel` is polled while the engine works, so
    /// a hanging `pause` does not keep the caller from the client's requests.
    pub fn pause(
        &self,
        container: &str,
        cancel: &mut dyn FnMut() -> bool,
    ) -> Result<(), EngineError> {
        let argv = self.argv(["pause", container]);
        let out = self.run_argv(&argv, self.limits(), cancel)?;
        if out.success() {
            Ok(())
        } else {
            Err(self.failed(&argv, &out))
        }
    }

    pub fn unpause(&self, container: &str) -> Result<(), EngineError> {
        self.run(["unpause", container]).map(|_| ())
    }

    /// Docker connects a paused container to a network; Podman must see
    /// it running.
    pub fn reconnects_paused_containers(&self) -> bool {
        self.kind == EngineKind::Docker
    }

    /// Names of the engine networks the container is attached to. Empty for
    /// network modes without one (Podman's none, host, slirp4netns, pasta);
    /// Docker lists its "none" and "host" modes as networks of those names,
    /// which nobody can leave: they are left out.
    pub fn networks(&self, container: &str) -> Result<Vec<String>, EngineError> {
        const MODES: &[&str] = &["none", "host"];
        let format = "{{range $name, $net := .NetworkSettings.Networks}}{{println $name}}{{end}}";
        let out = self.run(["container", "inspect", "--format", format, container])?;
        Ok(out
            .stdout
            .lines()
            .map(str::trim)
            .filter(|n| !n.is_empty() && !MODES.contains(n))
            .map(String::from)
            .collect())
    }

    pub fn network_disconnect(&self, container: &str, network: &str) -> Result<(), EngineError> {
        self.run(["network", "disconnect", network, container])
            .map(|_| ())
    }

    pub fn network_connect(&self, container: &str, network: &str) -> Result<(), EngineError> {
        self.run(["network", "connect", network, container])
            .map(|_| ())
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&self, container: &str, grace: Duration) -> Result<(), EngineError> {
        let grace_secs = grace.as_secs().to_string();
        let argv = self.argv(["stop", "-t", &grace_secs, container]);
        let limits = Limits {
            timeout: self.timeout + grace,
            capture: COMMAND_CAPTURE,
        };
        let out = self.run_argv(&argv, limits, &mut || false)?;
        if out.success() {
            Ok(())
        } else {
            Err(self.failed(&argv, &out))
        }
    }

    /// SIGKILL to the container's processes; one that is not running is fine.
    pub fn kill(&self, container: &str) {
        let argv = self.argv(["kill", container]);
        match self.run_argv(&argv, self.limits(), &mut || false) {
            Ok(out) if !out.success() => log::debug!("{}: {}", argv.display(), out.error_summary()),
            Ok(_) => {}
            Err(err) => log::warn!("{err}"),
        }
    }

    /// Removes the container, running or not; an absent one is fine.
    pub fn remove(&self, container: &str) -> Result<(), EngineError> {
        let argv = self.argv(["rm", "-f", container]);
        let out = self.run_argv(&argv, self.limits(), &mut || false)?;
        if out.success() {
            return Ok(());
        }
        let err = self.failed(&argv, &out);
        if err.unavailable().is_some() {
            return Err(err);
        }
        if err.failure() == Failure::NotFound || !self.container_exists(container)? {
            Ok(())
        } else {
            Err(err)
        }
    }

    /// Images of `repository` (any tag), with their sizes in bytes.
    pub fn images_in_repository(
        &self,
        repository: &str,
    ) -> Result<Vec<(String, u64)>, EngineError> {
        let tags = self.image_tags(repository)?;
        self.image_sizes(tags)
    }

    /// Tagged images whose reference matches `pattern` (a name, or a glob
    /// such as `repo/*`).
    pub fn image_tags(&self, pattern: &str) -> Result<Vec<String>, EngineError> {
        let filter = format!("reference={pattern}");
        let out = self.run([
            "images",
            "--filter",
            &filter,
            "--format",
            "{{.Repository}}:{{.Tag}}",
        ])?;
        Ok(out
            .stdout
            .lines()
            .map(str::trim)
            .filter(|t| !t.is_empty() && !t.contains("<none>"))
            .map(String::from)
            .collect())
    }

    /// Sizes in bytes of `images`, leaving out those removed since they were
    /// listed (another task's clean-up): one `inspect` for all of them, and
    /// one each only when that fails.
    pub fn image_sizes(&self, images: Vec<String>) -> Result<Vec<(String, u64)>, EngineError> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let size_args = |images: &[String]| {
            let mut args = vec![
                "image".to_string(),
                "inspect".into(),
                "--format".into(),
                "{{.Size}}".into(),
            ];
            args.extend(images.iter().cloned());
            args
        };
        let parse = |line: &str| line.trim().parse().unwrap_or(0);
        match self.run(size_args(&images)) {
            Ok(out) => Ok(images
                .into_iter()
                .zip(out.stdout.lines().map(parse))
                .collect()),
            Err(EngineError::Failed { .. }) if images.len() > 1 => Ok(images
                .into_iter()
                .filter_map(|image| {
                    let out = self.run(size_args(std::slice::from_ref(&image))).ok()?;
                    let size = out.stdout.lines().next().map(parse)?;
                    Some((image, size))
                })
                .collect()),
            Err(err) => Err(err),
        }
    }

    pub fn remove_image(&self, image: &str) -> Result<(), EngineError> {
        self.run(["image", "rm", image]).map(|_| ())
    }

    /// The last `max_bytes` of the container's output (stdout and stderr).
    pub fn logs_tail(&self, container: &str, max_bytes: usize) -> Result<String, EngineError> {
        // --tail bounds the engine's work; the capture bounds ours.
        let lines = (max_bytes / 16).clamp(100, 100_000).to_string();
        let argv = self.argv(["logs", "--tail", &lines, container]);
        let limits = Limits {
            timeout: self.timeout,
            capture: max_bytes,
        };
        let out = self.run_argv(&argv, limits, &mut || false)?;
        if !out.success() {
            return Err(self.failed(&argv, &out));
        }
        // The container's stdout and stderr arrive on our two pipes.
        let mut text = out.stdout;
        if !out.stderr.is_empty() {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&out.stderr);
        }
        Ok(text)
    }

    /// Starts `wait` as a long-lived child; its exit reports the container's.
    /// Local transport only: a shell runs one command at a time.
    pub fn spawn_wait(&self, container: &str) -> Result<std::process::Child, EngineError> {
        if !self.transport.is_local() {
            return Err(EngineError::Unavailable(
                "a long-lived 'wait' needs local engine commands".into(),
            ));
        }
        let mut argv = self.argv(["wait"]);
        if self.kind == EngineKind::Podman {
            // Podman's wait polls (250 ms by default); we learn of the exit from
            // the container's pid instead where we can, so poll rarely.
            argv = argv.args(["--interval", "2s"]);
        }
        let argv = argv.arg(container);
        log::debug!("engine: {}", argv.display());
        let mut cmd = argv.command();
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        cmd.spawn()
            .map_err(|e| EngineError::Unavailable(format!("cannot run {}: {e}", argv.display())))
    }

    /// Waits (bounded) for the container to exit and returns its exit code.
    pub fn wait(&self, container: &str) -> Result<i32, EngineError> {
        let out = self.run(["wait", container])?;
        out.stdout
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .next_back()
            .ok_or_else(|| EngineError::Failed {
                command: format!("{} wait {container}", self.cli.display()),
                detail: format!("unexpected output {:?}", out.stdout.trim()),
            })
    }
}

/// Chooses the engine: an explicit override, else what the client found
/// (BOINC 8 writes docker_type), else whichever CLI is installed, Podman first.
/// What decides which engine a task uses, and how long its commands may take.
pub struct Request<'a> {
    /// The engine the client detected (BOINC 8.2 writes it), if any.
    pub from_client: Option<EngineKind>,
    /// The client's WSL distros (Windows); None in standalone mode, which
    /// uses the default distro.
    pub wsl_distros: Option<&'a [WslDistro]>,
    pub timeout: Duration,
    pub build_timeout: Duration,
}

/// The engine to use and how to reach it: on Windows inside a WSL distro,
/// through one `wsl` shell; elsewhere the CLI in PATH, the one the client
/// detected, or the one `DOCKER_WRAPPER_ENGINE` names.
pub fn connect(request: &Request) -> Result<Engine, ConnectError> {
    let (kind, cli, transport) = if cfg!(windows) {
        let distro = match request.wsl_distros {
            Some(distros) => wsl::choose_distro(distros).map_err(ConnectError::NoDistro)?,
            None => wsl::standalone_distro(),
        };
        log::info!("using WSL distro {}", distro.name);
        let launcher = wsl::launcher(&distro);
        (
            distro.engine,
            PathBuf::from(distro.engine.cli_name()),
            Transport::wsl(launcher),
        )
    } else {
        let forced = std::env::var("DOCKER_WRAPPER_ENGINE").ok();
        let (kind, cli) = choose(forced.as_deref(), request.from_client, &|name| {
            find_cli(name, request.timeout)
        })?;
        (kind, cli, Transport::from_env())
    };
    let is_macos = cfg!(target_os = "macos");
    let engine = Engine::new(kind, cli, request.timeout, request.build_timeout)
        .with_transport(transport)
        .with_vm(is_macos);
    let helper_var = std::env::var_os(macos::HELPER_VAR);
    Ok(match macos::helper(kind, is_macos, helper_var.as_deref()) {
        Some(helper) => {
            log::info!("engine commands go through {}", helper.display());
            engine.with_helper(helper)
        }
        None => engine,
    })
}

/// The CLI named `name`: in PATH; on macOS also where the client looks
/// (apps it starts get a short PATH).
fn find_cli(name: &str, timeout: Duration) -> Option<PathBuf> {
    let in_path = which::which(name).ok();
    if !cfg!(target_os = "macos") {
        return in_path;
    }
    let exists = |path: &Path| path.is_file();
    match name {
        "podman" => {
            let in_terminal =
                terminal_path(timeout).and_then(|path| which::which_in(name, Some(path), "/").ok());
            let apple_silicon = cfg!(target_arch = "aarch64");
            macos::podman_path(in_terminal.or(in_path), &exists, apple_silicon)
        }
        "docker" => macos::docker_path(in_path, &exists),
        _ => in_path,
    }
}

/// The PATH Terminal gets, from `path_helper -s`.
fn terminal_path(timeout: Duration) -> Option<String> {
    let argv = Argv::new(macos::PATH_HELPER).arg("-s");
    let limits = Limits {
        timeout,
        capture: COMMAND_CAPTURE,
    };
    let out = process::run(&argv, limits, &mut || false).ok()?;
    out.success().then(|| macos::terminal_path(&out.stdout))?
}

/// Why no engine can be used.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectError {
    /// None of the CLIs tried is in PATH.
    NotFound { tried: Vec<EngineKind> },
    /// `DOCKER_WRAPPER_ENGINE` names neither engine.
    UnknownForced { forced: String },
    /// `DOCKER_WRAPPER_ENGINE` is a path to nothing.
    ForcedMissing { forced: String },
    /// `DOCKER_WRAPPER_ENGINE` names an engine whose CLI is not in PATH.
    ForcedNotInPath { forced: String, kind: EngineKind },
    /// Windows: no WSL distro has an engine.
    NoDistro(wsl::NoDistro),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::NotFound { tried } => {
                let names: Vec<&str> = tried.iter().map(|k| k.cli_name()).collect();
                write!(
                    f,
                    "no container engine found ({} not in PATH); install Podman or Docker",
                    names.join(" or ")
                )
            }
            ConnectError::UnknownForced { forced } => write!(
                f,
                "DOCKER_WRAPPER_ENGINE={forced:?}: expected docker, podman or a path to one of them"
            ),
            ConnectError::ForcedMissing { forced } => {
                write!(f, "DOCKER_WRAPPER_ENGINE: {forced} does not exist")
            }
            ConnectError::ForcedNotInPath { forced, kind } => write!(
                f,
                "DOCKER_WRAPPER_ENGINE={forced}: {} is not in PATH",
                kind.cli_name()
            ),
            ConnectError::NoDistro(err) => err.fmt(f),
        }
    }
}

impl std::error::Error for ConnectError {}

pub fn choose(
    forced: Option<&str>,
    from_client: Option<EngineKind>,
    find: &dyn Fn(&str) -> Option<PathBuf>,
) -> Result<(EngineKind, PathBuf), ConnectError> {
    if let Some(forced) = forced.filter(|f| !f.is_empty()) {
        return forced_engine(forced, find);
    }
    let order = match from_client {
        Some(kind) => vec![kind],
        None => vec![EngineKind::Podman, EngineKind::Docker],
    };
    for kind in &order {
        if let Some(path) = find(kind.cli_name()) {
            return Ok((*kind, path));
        }
    }
    Err(ConnectError::NotFound { tried: order })
}

/// `DOCKER_WRAPPER_ENGINE`: "docker", "podman", or a path to either CLI.
fn forced_engine(
    forced: &str,
    find: &dyn Fn(&str) -> Option<PathBuf>,
) -> Result<(EngineKind, PathBuf), ConnectError> {
    let path = PathBuf::from(forced);
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let kind = if file_name.contains("podman") {
        EngineKind::Podman
    } else if file_name.contains("docker") {
        EngineKind::Docker
    } else {
        return Err(ConnectError::UnknownForced {
            forced: forced.to_string(),
        });
    };
    if path.components().count() > 1 {
        return if path.is_file() {
            Ok((kind, path))
        } else {
            Err(ConnectError::ForcedMissing {
                forced: forced.to_string(),
            })
        };
    }
    find(kind.cli_name())
        .map(|p| (kind, p))
        .ok_or_else(|| ConnectError::ForcedNotInPath {
            forced: forced.to_string(),
            kind,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TestDir;

    #[test]
    fn parses_inspect_state() {
        let s = ContainerState::parse("exited|3|false|0|2026-11-23T12:00:00.1Z\n").unwrap();
        assert_eq!(s.finished_at, Some(1_795_435_200));
        assert_eq!(
            (&s.status, s.exit_code, s.oom_killed, s.pid),
            (&ContainerStatus::Exited, 3, false, 0)
        );
        assert!(s.has_exited());
        let s = ContainerState::parse("running|0|false|4242").unwrap();
        assert!(!s.has_exited());
        assert_eq!(s.pid, 4242);
        assert!(ContainerState::parse("garbage").is_none());
    }

    #[test]
    fn statuses_of_both_engines_map_to_one_set() {
        for (word, status) in [
            ("created", ContainerStatus::Created),
            ("Configured", ContainerStatus::Created),
            ("initialized", ContainerStatus::Created),
            ("running", ContainerStatus::Running),
            ("paused", ContainerStatus::Paused),
            ("exited", ContainerStatus::Exited),
            ("stopped", ContainerStatus::Exited),
            ("dead", ContainerStatus::Exited),
            (" restarting ", ContainerStatus::Other("restarting".into())),
        ] {
            assert_eq!(ContainerStatus::parse(word), status, "{word}");
        }
    }

    #[test]
    fn the_slot_label_is_read_whole() {
        for label in [names::SLOT_LABEL, names::RESULT_LABEL, names::WRAPPER_LABEL] {
            assert!(STATE_FORMAT.contains(&format!("\"{label}\"")), "{label}");
        }
        let s = ContainerState::parse("running|0|false|1||||||| /slots/a|b c \n").unwrap();
        assert_eq!(s.slot, " /slots/a|b c ");
        let s = ContainerState::parse("running|0|false|1|x|id|x|img|0.1.0|r_0|\n").unwrap();
        assert_eq!(s.slot, "");
        assert_eq!(
            (s.image.as_str(), s.made_by_wrapper, s.result.as_str()),
            ("img", true, "r_0")
        );
        let s = ContainerState::parse("running|0|false|1|x|id|x|img|||\n").unwrap();
        assert!(!s.made_by_wrapper && s.result.is_empty());
        assert_eq!(ContainerState::parse("running|0|false|1").unwrap().slot, "");
    }

    #[test]
    fn multibyte_garbage_is_no_state() {
        for garbage in [
            "€".repeat(5000),
            "ü|ü|ü|ü|ü|ü|ü|ü".into(),
            "running|€|false".into(),
            "\u{1F600}".repeat(11),
        ] {
            assert!(ContainerState::parse(&garbage).is_none(), "{garbage}");
        }
    }

    /// A CLI whose daemon is out of reach or not the user's to use, as
    /// Docker's says it for any command.
    #[cfg(unix)]
    #[test]
    fn a_daemon_out_of_reach_makes_the_engine_unavailable_whichever_command_finds_out() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = TestDir::new("unreachable");
        let dir = &tmp.0;
        let cli = dir.join("docker");
        let timeout = Duration::from_secs(10);
        let engine = Engine::new(EngineKind::Docker, cli.clone(), timeout, timeout);
        let unavailable = |err: EngineError| match err {
            EngineError::Unavailable(why) => why,
            other => panic!("{other:?}"),
        };
        for says in [
            "docker: Cannot connect to the Docker daemon at unix:///nonexistent.sock. Is the docker daemon running?.",
            "docker: permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock: \
             Post \"http://%2Fvar%2Frun%2Fdocker.sock/v1.24/containers/create?name=x\": dial unix /var/run/docker.sock: connect: permission denied.",
        ] {
            std::fs::write(
                &cli,
                format!(
                    "#!/bin/sh\necho '{says}' >&2\necho \"See 'docker run --help'.\" >&2\nexit 125\n"
                ),
            )
            .unwrap();
            std::fs::set_permissions(&cli, std::fs::Permissions::from_mode(0o755)).unwrap();
            let why = unavailable(engine.start("boinc__x").unwrap_err());
            assert!(why.contains(&format!("does not answer: {says}")), "{why}");
            // Not taken for an absent container.
            unavailable(engine.inspect("boinc__x").unwrap_err());
            unavailable(engine.remove("boinc__x").unwrap_err());
        }
    }

    /// macOS: a helper runs the CLI (its first argument); when the CLI
    /// cannot reach the machine, `machine list` says whether one runs.
    #[cfg(unix)]
    #[test]
    fn a_stopped_podman_machine_is_a_reason_to_wait() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = TestDir::new("podman machine");
        let dir = tmp.0.join("BOINC Data");
        std::fs::create_dir_all(&dir).unwrap();
        let helper = dir.join("Run_Podman");
        let cli = tmp.0.join("podman");
        let calls = tmp.0.join("calls");
        let script = |running: &str| {
            format!(
                "#!/bin/sh\ncase \"$1\" in\n  machine) echo false; echo {running}; exit 0;;\n  *) echo 'Cannot connect to Podman. Please verify your connection' >&2; exit 125;;\nesac\n"
            )
        };
        std::fs::write(&cli, script("false")).unwrap();
        // The helper records its argv (one argument a line), then runs it.
        std::fs::write(
            &helper,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$@\" >> '{}'\nexec \"$@\"\n",
                calls.display()
            ),
        )
        .unwrap();
        for file in [&helper, &cli] {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let timeout = Duration::from_secs(10);
        let engine = Engine::new(EngineKind::Podman, cli.clone(), timeout, timeout)
            .with_helper(helper.clone())
            .with_vm(true);
        assert_eq!(engine.program(), helper);
        let why = match engine.version().unwrap_err() {
            EngineError::Unavailable(why) => why,
            other => panic!("{other:?}"),
        };
        assert!(why.starts_with("Podman machine not running"), "{why}");
        assert!(why.contains("Cannot connect to Podman"), "{why}");
        let calls = std::fs::read_to_string(&calls).unwrap();
        let cli_line = format!("{}\n", cli.display());
        assert!(
            calls.starts_with(&format!("{cli_line}version\n")),
            "{calls}"
        );
        assert!(
            calls.contains(&format!("{cli_line}machine\nlist\n")),
            "{calls}"
        );
        // A running machine leaves the CLI's own error.
        std::fs::write(&cli, script("true")).unwrap();
        let why = engine.version().unwrap_err().to_string();
        assert!(!why.contains("machine not running"), "{why}");
        assert!(why.contains("does not answer"), "{why}");
    }

    fn only(names: &'static [&'static str]) -> impl Fn(&str) -> Option<PathBuf> {
        move |n| {
            names
                .contains(&n)
                .then(|| PathBuf::from(format!("/usr/bin/{n}")))
        }
    }

    #[test]
    fn engine_choice_order() {
        let both = only(&["docker", "podman"]);
        assert_eq!(choose(None, None, &both).unwrap().0, EngineKind::Podman);
        assert_eq!(
            choose(None, Some(EngineKind::Docker), &both).unwrap().0,
            EngineKind::Docker
        );
        assert_eq!(
            choose(Some("docker"), Some(EngineKind::Podman), &both)
                .unwrap()
                .0,
            EngineKind::Docker
        );
        assert_eq!(
            choose(None, None, &only(&["docker"])).unwrap().0,
            EngineKind::Docker
        );
        let err = choose(None, Some(EngineKind::Podman), &only(&["docker"])).unwrap_err();
        assert_eq!(
            err,
            ConnectError::NotFound {
                tried: vec![EngineKind::Podman]
            }
        );
        assert!(err.to_string().contains("podman"), "{err}");
        assert!(choose(None, None, &only(&[])).is_err());
        assert!(choose(Some("lxc"), None, &both).is_err());
    }
}
