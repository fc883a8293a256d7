//! The container engine a test runs the wrapper on, driven through its CLI
//! only to inspect and clean up the task's container.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::command::{run_with_timeout, CommandOutput};
use super::tempdir::test_tmp_root;
use super::user::{HostUser, BOINC_USER};

const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// Debian's docker.io client; `/usr/local/bin/docker` on the project machines
/// is a newer client that does not match the daemon.
const DEBIAN_DOCKER_CLI: &str = "/usr/bin/docker";
/// What Podman needs on these hosts (cgroup v1: runc, explicit ulimits), given
/// to every podman call (ours and the wrapper's, through the client's
/// environment) with `CONTAINERS_CONF` when the caller did not set it.
const PODMAN_CONTAINERS_CONF: &str =
    "[engine]\nruntime = \"runc\"\n[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    Podman,
    Docker,
}

impl EngineKind {
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Podman => "podman",
            EngineKind::Docker => "docker",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Engine {
    kind: EngineKind,
    cli: PathBuf,
    /// Set for our CLI calls and in the client's environment (so the wrapper gets it).
    env: Vec<(OsString, OsString)>,
    /// The user the client (and so the wrapper) and our CLI calls run as;
    /// None: this process's (root).
    user: Option<HostUser>,
}

impl Engine {
    /// The engine, checked once per test process; panics with install/start
    /// instructions when it is missing: a test needing it must fail, not pass.
    pub fn require(kind: EngineKind) -> Engine {
        static PODMAN: OnceLock<Result<Engine, String>> = OnceLock::new();
        static DOCKER: OnceLock<Result<Engine, String>> = OnceLock::new();
        let found = match kind {
            EngineKind::Podman => PODMAN.get_or_init(find_podman),
            EngineKind::Docker => DOCKER.get_or_init(find_docker),
        };
        found.clone().unwrap_or_else(|e| panic!("{e}"))
    }

    /// The engine as the BOINC user sees it (rootless Podman, or Docker
    /// through the docker group), checked once per test process.
    pub fn require_unprivileged(kind: EngineKind) -> Engine {
        static PODMAN: OnceLock<Result<Engine, String>> = OnceLock::new();
        static DOCKER: OnceLock<Result<Engine, String>> = OnceLock::new();
        let cell = match kind {
            EngineKind::Podman => &PODMAN,
            EngineKind::Docker => &DOCKER,
        };
        let found = cell.get_or_init(|| {
            let engine = Engine { user: Some(HostUser::find(BOINC_USER)?), ..Engine::require(kind) };
            check_answers(&engine).map_err(|e| format!("{e}\nas user {BOINC_USER}: run `bash .ci/setup`"))?;
            Ok(engine)
        });
        found.clone().unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn kind(&self) -> EngineKind {
        self.kind
    }

    pub fn user(&self) -> Option<&HostUser> {
        self.user.as_ref()
    }

    /// "podman", "docker", "podman_as_boinc", ...: for reports.
    pub fn label(&self) -> String {
        match &self.user {
            Some(user) => format!("{}_as_{}", self.kind.name(), user.name),
            None => self.kind.name().to_string(),
        }
    }

    /// Rootless Podman here has no usable network (slirp4netns cannot open
    /// /dev/net/tun): its jobs and builds do without one.
    pub fn is_rootless_podman(&self) -> bool {
        self.kind == EngineKind::Podman && self.user.is_some()
    }

    /// `DOCKER_WRAPPER_ENGINE` for the wrapper: a 7.20 client reports no engine.
    /// Podman by name (found in the PATH the client passes on), Docker by the
    /// path of the client that matches the daemon.
    pub fn wrapper_engine_value(&self) -> OsString {
        match self.kind {
            EngineKind::Podman => OsString::from("podman"),
            EngineKind::Docker => self.cli.clone().into_os_string(),
        }
    }

    pub fn env(&self) -> &[(OsString, OsString)] {
        &self.env
    }

    pub fn run<I, S>(&self, args: I) -> Result<CommandOutput, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = match &self.user {
            Some(user) => user.command(&self.cli),
            None => Command::new(&self.cli),
        };
        cmd.args(args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        run_with_timeout(cmd, CLI_TIMEOUT)
    }

    /// Paused by the engine, or its processes stopped by the wrapper (where
    /// the engine cannot pause, e.g. rootless Podman on cgroup v1).
    pub fn is_suspended(&self, name: &str) -> bool {
        let state = self.run(["container", "inspect", "--format", "{{.State.Status}} {{.State.Pid}}", name]);
        state.is_ok_and(|out| out.success() && super::procfs::is_suspended(&out.stdout))
    }

    /// "running", "paused", "exited", ...; None when there is no such container.
    pub fn container_state(&self, name: &str) -> Option<String> {
        let out = self
            .run(["container", "inspect", "--format", "{{.State.Status}}", name])
            .ok()?;
        out.success().then(|| out.stdout.trim().to_string())
    }

    /// Removes the container in any state; Ok when it does not exist.
    pub fn remove_container(&self, name: &str) -> Result<(), String> {
        if self.container_state(name).is_none() {
            return Ok(());
        }
        if self.container_state(name).as_deref() == Some("paused") {
            // Some engine versions refuse to remove a frozen container.
            let _ = self.run(["unpause", name]);
        }
        let out = self.run(["rm", "-f", name])?;
        if out.success() || self.container_state(name).is_none() {
            Ok(())
        } else {
            Err(format!("{} rm -f {name}: {}", self.kind.name(), out.stderr.trim()))
        }
    }
}

fn find_podman() -> Result<Engine, String> {
    let install = "Install it with `apt-get install -y podman runc` (or run `bash .ci/setup`).";
    let cli = find_in_path("podman").ok_or_else(|| format!("podman is not in PATH. {install}"))?;
    let mut env = Vec::new();
    if std::env::var_os("CONTAINERS_CONF").is_none() {
        let path = test_tmp_root().join("docker_wrapper_real_client_containers.conf");
        write_atomically(&path, PODMAN_CONTAINERS_CONF).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        env.push((OsString::from("CONTAINERS_CONF"), path.into_os_string()));
    }
    let engine = Engine {
        kind: EngineKind::Podman,
        cli,
        env,
        user: None,
    };
    check_answers(&engine)
        .map_err(|e| format!("{e}\n{install} On cgroup v1 hosts it needs runtime \"runc\" and explicit ulimits."))?;
    Ok(engine)
}

fn find_docker() -> Result<Engine, String> {
    let cli = Some(PathBuf::from(DEBIAN_DOCKER_CLI))
        .filter(|p| p.is_file())
        .or_else(|| find_in_path("docker"))
        .ok_or_else(|| {
            "docker is not installed: `apt-get install -y docker.io` (or run `bash .ci/setup`).".to_string()
        })?;
    let engine = Engine {
        kind: EngineKind::Docker,
        cli,
        env: Vec::new(),
        user: None,
    };
    check_answers(&engine).map_err(|e| {
        format!(
            "{e}\nIs the Docker daemon running? Start it with `setsid dockerd >/tmp/dockerd.log 2>&1 &` \
             (or run `bash .ci/setup`) and wait until `{DEBIAN_DOCKER_CLI} info` answers."
        )
    })?;
    Ok(engine)
}

fn check_answers(engine: &Engine) -> Result<(), String> {
    let out = engine.run(["info"])?;
    if out.success() {
        Ok(())
    } else {
        Err(format!("`{} info` failed: {}", engine.cli.display(), out.stderr.trim()))
    }
}

fn write_atomically(path: &Path, contents: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    fs::write(&tmp, contents)?;
    fs::rename(&tmp, path)
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            fs::metadata(candidate)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}
