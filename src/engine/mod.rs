//! One interface over the Docker and Podman command-line tools.
//!
//! Every call is an argv vector with a timeout, run through the engine's
//! transport (a child process, or a line for the WSL shell); results come
//! from exit status and `--format` templates, never from human-readable
//! text. The engine knows nothing of BOINC: its callers hand it what it
//! needs in its own types (`Request`, `WslDistro`, `Wake`).
//!
//! Here: `EngineKind`, `Engine`, and the core every command goes through
//! (its argv, its limits, and how a failed command becomes an error).
//!
//! * `connection.rs`: which engine a task uses, and how it is reached.
//! * `containers.rs`: `ContainerEngine`, the operations on a task's
//!   container; `exit_watch.rs`: learning that it exited.
//! * `state.rs`: a container's state from `inspect`; `stats.rs`: the
//!   engine's own CPU and memory figures.
//! * `images.rs`: building, loading, tagging, listing and removing images;
//!   `build_trace.rs`: what an interrupted build leaves; `archive.rs`:
//!   image archives.
//! * `facts.rs`: the engine's version and cgroup driver, remembered for the
//!   host; `info.rs`: what they mean for a container's flags;
//!   `host_user.rs`: what an unprivileged user needs of the host.
//! * `error.rs`: `EngineError`; `failure.rs`: what a failure's words mean,
//!   read once.
//! * `create.rs`: the argv of `run -d`; `names.rs`: names and labels;
//!   `gpu.rs`: the GPU the client assigned; `flags.rs`, `policy.rs`,
//!   `mount_policy.rs`: job.toml's own flags, parsed and judged.
//! * `process.rs`, `transport.rs`, `shell.rs`, `wsl.rs`, `macos.rs`: where
//!   commands run (a child process, a WSL shell, macOS's helper).
//! * `probe.rs`: what `--check` asks; `time.rs`: the engines' timestamps;
//!   `fake.rs`: a recording fake for unit tests.
mod archive;
mod build_trace;
mod connection;
mod containers;
mod create;
mod error;
mod exit_watch;
mod facts;
mod failure;
mod flags;
mod gpu;
mod host_user;
mod images;
mod info;
mod macos;
mod mount_policy;
mod names;
mod policy;
mod probe;
mod process;
mod shell;
mod state;
mod stats;
mod time;
mod transport;
mod wsl;

use std::cell::Cell;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

// The engine's face to the rest of the wrapper; its submodules are its own.
pub use build_trace::{BuildEvent, Leftover};
pub use connection::{connect, ConnectError, Request};
pub use containers::ContainerEngine;
pub use create::CreateSpec;
pub use error::EngineError;
pub use exit_watch::{ExitWatcher, Wake};
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
pub use state::{ContainerState, ContainerStatus};
pub use wsl::WslDistro;
#[cfg(test)]
pub mod fake;
use process::{Argv, Limits, Output};
use transport::Transport;

/// Which CLI: where the two engines differ, they differ by this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    Docker,
    Podman,
}

impl EngineKind {
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

/// Output kept from ordinary commands; logs and builds choose their own.
const COMMAND_CAPTURE: usize = 64 * 1024;

/// One engine as this task reaches it.
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
        self.run_checked(&argv, self.limits(), &mut || false)
    }

    /// Runs `argv`, which must succeed.
    fn run_checked(
        &self,
        argv: &Argv,
        limits: Limits,
        cancel: &mut dyn FnMut() -> bool,
    ) -> Result<Output, EngineError> {
        let out = self.run_argv(argv, limits, cancel)?;
        if out.success() {
            Ok(out)
        } else {
            Err(self.failed(argv, &out))
        }
    }

    /// The error of a command that ran and failed: the one place where
    /// an ordinary command's words are read (`failure::read`). A CLI that
    /// cannot reach its engine (the daemon down, its socket not ours) makes
    /// the engine unavailable, whichever command found it out: the task is
    /// retried later, not failed.
    fn failed(&self, argv: &Argv, out: &Output) -> EngineError {
        let detail = out.error_summary();
        let reading = failure::read(&detail);
        if reading.out_of_reach {
            return self.does_not_answer(&detail, reading.failure);
        }
        EngineError::Failed {
            command: argv.display(),
            detail,
            failure: reading.failure,
        }
    }

    /// "<cli> does not answer: <why>", with what the volunteer can do about
    /// it; `failure` is what the CLI's words said.
    fn does_not_answer(&self, detail: &str, failure: Failure) -> EngineError {
        if self.in_vm && self.kind == EngineKind::Podman {
            if let Some(why) = self.machine_down(detail) {
                return EngineError::Unavailable(why);
            }
        }
        let why = format!("{} does not answer: {detail}", self.cli.display());
        if failure != Failure::PermissionDenied {
            return EngineError::Unavailable(why);
        }
        match self.access_hint() {
            Some(hint) => EngineError::AccessDenied(format!("{why}; {hint}")),
            None => EngineError::AccessDenied(why),
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TestDir;

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
        let unavailable = |err: EngineError| match err.unavailable() {
            Some(why) => why.to_string(),
            None => panic!("{err:?}"),
        };
        for (says, kind) in [
            ("docker: Cannot connect to the Docker daemon at unix:///nonexistent.sock. Is the docker daemon running?.", Failure::Unavailable),
            ("docker: permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock: \
             Post \"http://%2Fvar%2Frun%2Fdocker.sock/v1.24/containers/create?name=x\": dial unix /var/run/docker.sock: connect: permission denied.", Failure::PermissionDenied),
        ] {
            std::fs::write(
                &cli,
                format!(
                    "#!/bin/sh\necho '{says}' >&2\necho \"See 'docker run --help'.\" >&2\nexit 125\n"
                ),
            )
            .unwrap();
            std::fs::set_permissions(&cli, std::fs::Permissions::from_mode(0o755)).unwrap();
            let err = engine.start("boinc__x").unwrap_err();
            assert_eq!(err.failure(), kind, "{err:?}");
            let why = unavailable(err);
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
}
