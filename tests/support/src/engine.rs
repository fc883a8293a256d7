//! The container engines tests run against (through their CLIs, argv only, with timeouts).

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crate::command::{last_lines, run_with_timeout, CommandOutput};
use crate::init_data::{DockerHostInfo, DockerType};
use crate::jobs::BUSYBOX_PATH;
use crate::tempdir::{test_tmp_root, TempDir};
use crate::user::{HostUser, BOINC_USER};

const INFO_TIMEOUT: Duration = Duration::from_secs(20);
const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// A test image of a few steps; as long as a task may take.
const IMAGE_BUILD_TIMEOUT: Duration = Duration::from_secs(180);
/// Debian's docker.io client; `/usr/local/bin/docker` on the project machines is
/// a newer client without its daemon.
const DEBIAN_DOCKER_CLI: &str = "/usr/bin/docker";
/// Podman settings these hosts need (cgroup v1: runc, not crun; explicit ulimits),
/// applied through `CONTAINERS_CONF` when the environment does not set it.
const PODMAN_CONTAINERS_CONF: &str = "[engine]\nruntime = \"runc\"\n[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    Docker,
    Podman,
}

impl EngineKind {
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Docker => "docker",
            EngineKind::Podman => "podman",
        }
    }

    pub fn docker_type(self) -> DockerType {
        match self {
            EngineKind::Docker => DockerType::Docker,
            EngineKind::Podman => DockerType::Podman,
        }
    }
}

/// A container engine that answered `<cli> info`.
#[derive(Clone, Debug)]
pub struct TestEngine {
    kind: EngineKind,
    cli: PathBuf,
    version: String,
    /// Variables set for every CLI call here and for the wrapper under test.
    env: Vec<(OsString, OsString)>,
    /// The user the CLI and the wrapper run as; None: this process's (root).
    user: Option<HostUser>,
}

impl TestEngine {
    /// Podman, checked once per test process. Err says how to install or fix it.
    pub fn podman() -> Result<TestEngine, String> {
        static PODMAN: OnceLock<Result<TestEngine, String>> = OnceLock::new();
        PODMAN.get_or_init(find_podman).clone()
    }

    /// Docker (Debian's `/usr/bin/docker` preferred), checked once per test process.
    pub fn docker() -> Result<TestEngine, String> {
        static DOCKER: OnceLock<Result<TestEngine, String>> = OnceLock::new();
        DOCKER.get_or_init(find_docker).clone()
    }

    /// The engine as the BOINC user sees it: rootless Podman, or Docker
    /// through the docker group. Checked once per test process.
    pub fn unprivileged(kind: EngineKind) -> Result<TestEngine, String> {
        static PODMAN: OnceLock<Result<TestEngine, String>> = OnceLock::new();
        static DOCKER: OnceLock<Result<TestEngine, String>> = OnceLock::new();
        let cell = match kind {
            EngineKind::Docker => &DOCKER,
            EngineKind::Podman => &PODMAN,
        };
        cell.get_or_init(|| {
            let user = HostUser::find(BOINC_USER)?;
            let engine = TestEngine { user: Some(user), ..TestEngine::get(kind)? };
            check_answers(&engine).map_err(|e| {
                format!("{e}\n{} as user {BOINC_USER}: run `bash .ci/setup` (subordinate ids, docker group, runtime dir)", kind.name())
            })?;
            Ok(engine)
        })
        .clone()
    }

    /// `unprivileged`, or a panic that says what the host lacks.
    pub fn require_unprivileged(kind: EngineKind) -> TestEngine {
        TestEngine::unprivileged(kind).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn get(kind: EngineKind) -> Result<TestEngine, String> {
        match kind {
            EngineKind::Docker => TestEngine::docker(),
            EngineKind::Podman => TestEngine::podman(),
        }
    }

    /// The engine, or a panic carrying the install/start instructions: a test
    /// that needs an engine must fail when there is none, never pass.
    pub fn require(kind: EngineKind) -> TestEngine {
        TestEngine::get(kind).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn kind(&self) -> EngineKind {
        self.kind
    }

    pub fn cli(&self) -> &Path {
        &self.cli
    }

    /// As the BOINC client extracts it from `<cli> --version`.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn env(&self) -> &[(OsString, OsString)] {
        &self.env
    }

    pub fn user(&self) -> Option<&HostUser> {
        self.user.as_ref()
    }

    /// "podman", "docker", "podman_as_boinc", ...: for names and reports.
    pub fn label(&self) -> String {
        match &self.user {
            Some(user) => format!("{}_as_{}", self.kind.name(), user.name),
            None => self.kind.name().to_string(),
        }
    }

    /// This engine with `name=value` in its environment instead of any other value of `name`.
    pub fn with_env(mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> TestEngine {
        let name = name.as_ref().to_os_string();
        self.env.retain(|(k, _)| *k != name);
        self.env.push((name, value.as_ref().to_os_string()));
        self
    }

    /// Rootless Podman here has no usable network (slirp4netns cannot open
    /// /dev/net/tun): jobs and builds must do without one.
    pub fn lacks_network(&self) -> bool {
        self.kind == EngineKind::Podman && self.user.is_some()
    }

    /// Rootless Podman on this cgroup v1 host gives containers no cgroup to
    /// freeze: the wrapper stops their processes instead.
    pub fn cannot_pause(&self) -> bool {
        self.kind == EngineKind::Podman && self.user.is_some()
    }

    /// The docker fields an 8.x client would write into init_data.xml for this engine.
    pub fn docker_host_info(&self) -> DockerHostInfo {
        DockerHostInfo {
            version: self.version.clone(),
            docker_type: self.kind.docker_type(),
        }
    }

    /// A `Command` for the CLI with our environment applied.
    pub fn command<I, S>(&self, args: I) -> Command
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
        cmd
    }

    /// `wrapper --check` as this engine's user, with its environment and
    /// the engine forced (`DOCKER_WRAPPER_ENGINE`), with a 3 minute bound.
    pub fn wrapper_check(&self, wrapper: &str) -> CommandOutput {
        let mut cmd = match &self.user {
            Some(user) => user.command(wrapper),
            None => Command::new(wrapper),
        };
        cmd.arg("--check").env("DOCKER_WRAPPER_ENGINE", &self.cli);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        run_with_timeout(cmd, Duration::from_secs(180)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The engine as a BOINC client's unprivileged user has it set up on
    /// these hosts: rootless Podman without a network by default, so that
    /// the 8.2 client's `run --rm hello-world` works.
    pub fn as_the_clients_user(self) -> TestEngine {
        if self.kind != EngineKind::Podman
            || self.user.is_none()
            || std::env::var_os("CONTAINERS_CONF").is_some()
        {
            return self;
        }
        let conf = write_containers_conf(
            "docker_wrapper_real_client_containers_rootless.conf",
            ROOTLESS_PODMAN_CONTAINERS_CONF,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        self.with_env("CONTAINERS_CONF", conf)
    }

    /// Runs the CLI with a 60 s timeout.
    pub fn run<I, S>(&self, args: I) -> Result<CommandOutput, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_with_timeout(self.command(args), CLI_TIMEOUT)
    }

    /// `inspect --format <format>` of a container; None if it does not exist.
    pub fn inspect_container(&self, name: &str, format: &str) -> Option<String> {
        let out = self
            .run(["container", "inspect", "--format", format, name])
            .ok()?;
        out.success().then(|| out.stdout.trim().to_string())
    }

    /// Fails the test, with the task's logs, when its container is still there.
    #[track_caller]
    pub fn assert_no_container(&self, task: &crate::Task) {
        let name = task.container_name();
        let state = self.container_state(&name);
        assert!(
            state.is_none(),
            "container {name} was left behind ({})\n{}",
            state.unwrap_or_default(),
            task.logs_tail(40)
        );
    }

    /// Paused by the engine, or its processes stopped by the wrapper (where
    /// the engine cannot pause, e.g. rootless Podman on cgroup v1).
    pub fn is_suspended(&self, name: &str) -> bool {
        self.inspect_container(name, "{{.State.Status}} {{.State.Pid}}")
            .is_some_and(|state| crate::procfs::is_suspended(&state))
    }

    /// The container's ID; None if there is no such container.
    pub fn container_id(&self, name: &str) -> Option<String> {
        self.inspect_container(name, "{{.Id}}")
    }

    /// "created", "running", "paused", "exited", ...; None if there is no such container.
    pub fn container_state(&self, name: &str) -> Option<String> {
        self.inspect_container(name, "{{.State.Status}}")
    }

    /// Names of all containers (any state) whose name starts with `prefix`.
    pub fn containers_matching(&self, prefix: &str) -> Vec<String> {
        match self.run(["ps", "-a", "--format", "{{.Names}}"]) {
            Ok(out) if out.success() => out
                .stdout
                .lines()
                .map(str::trim)
                .filter(|name| name.starts_with(prefix))
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Removes a container in any state. Ok if it did not exist.
    pub fn remove_container(&self, name: &str) -> Result<(), String> {
        if self.container_state(name).as_deref() == Some("paused") {
            // Some engine versions refuse to remove (even force) a frozen container.
            let _ = self.run(["unpause", name]);
        }
        let out = self.run(["rm", "-f", name])?;
        if out.success() || self.container_state(name).is_none() {
            Ok(())
        } else {
            Err(format!(
                "{} rm -f {name} failed: {}",
                self.kind.name(),
                out.stderr.trim()
            ))
        }
    }

    pub fn image_exists(&self, name: &str) -> bool {
        self.run(["image", "inspect", "--format", "{{.Id}}", name])
            .map(|o| o.success())
            .unwrap_or(false)
    }

    /// Removes an image. Ok if it did not exist.
    pub fn remove_image(&self, name: &str) -> Result<(), String> {
        let out = self.run(["rmi", "-f", name])?;
        if out.success() || !self.image_exists(name) {
            Ok(())
        } else {
            Err(format!(
                "{} rmi -f {name} failed: {}",
                self.kind.name(),
                out.stderr.trim()
            ))
        }
    }

    /// Builds `tag` from `dockerfile`, with the static busybox in its context
    /// as `busybox` and these labels, through the classic builder (Debian's
    /// docker.io has no buildx). Fails the test with the engine's output.
    pub fn build_busybox_image(&self, tag: &str, dockerfile: &str, labels: &[(&str, &str)]) {
        self.try_build_busybox_image(tag, dockerfile, labels)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// `build_busybox_image`, returning what went wrong instead of failing.
    /// The context belongs to the engine's user; without a network
    /// (`lacks_network`) the build runs with none.
    pub fn try_build_busybox_image(
        &self,
        tag: &str,
        dockerfile: &str,
        labels: &[(&str, &str)],
    ) -> Result<(), String> {
        let dir = TempDir::new("busybox_image")
            .map_err(|e| format!("cannot create a build context: {e}"))?;
        fs::copy(BUSYBOX_PATH, dir.path().join("busybox")).map_err(|e| {
            format!("cannot copy {BUSYBOX_PATH} (`apt-get install -y busybox-static`): {e}")
        })?;
        fs::write(dir.path().join("Dockerfile"), dockerfile)
            .map_err(|e| format!("cannot write the Dockerfile: {e}"))?;
        if let Some(user) = &self.user {
            user.own_tree(dir.path())
                .map_err(|e| format!("cannot give the build context to {}: {e}", user.name))?;
        }
        let mut cmd = self.command(["build", "-t", tag]);
        for (key, value) in labels {
            cmd.arg("--label").arg(format!("{key}={value}"));
        }
        if self.lacks_network() {
            cmd.args(["--network", "none"]);
        }
        cmd.arg(dir.path()).env("DOCKER_BUILDKIT", "0");
        let out = run_with_timeout(cmd, IMAGE_BUILD_TIMEOUT)?;
        if out.success() {
            Ok(())
        } else {
            Err(format!(
                "cannot build {tag}: {}\n{}",
                out.stdout, out.stderr
            ))
        }
    }

    /// `(repository:tag, id)` of every image with `label` (`key=value`).
    /// Podman's listing fails ("image not known") when another test removes
    /// an image meanwhile: it is tried again.
    pub fn labelled_images(&self, label: &str) -> Result<Vec<(String, String)>, String> {
        let filter = format!("label={label}");
        let args = [
            "images",
            "--filter",
            &filter,
            "--format",
            "{{.Repository}}:{{.Tag}} {{.ID}}",
        ];
        let mut attempts = 0;
        let out = loop {
            let out = self.run(args)?;
            attempts += 1;
            if out.success() || attempts == 5 {
                break out;
            }
            thread::sleep(Duration::from_millis(200));
        };
        if !out.success() {
            return Err(format!(
                "listing the images failed {attempts} times: {}",
                out.stderr
            ));
        }
        Ok(out
            .stdout
            .lines()
            .filter_map(|line| line.split_once(' '))
            .map(|(name, id)| (name.to_string(), id.trim().to_string()))
            .collect())
    }

    /// Removes every image with `label`: tagged ones by name, then untagged
    /// ones by id. Returns the untagged ones it found.
    pub fn remove_labelled_images(&self, label: &str) -> Vec<(String, String)> {
        let images = self.labelled_images(label).unwrap_or_else(|e| {
            eprintln!("warning: {e}");
            Vec::new()
        });
        let (untagged, tagged): (Vec<_>, Vec<_>) = images
            .into_iter()
            .partition(|(name, _)| name.contains("<none>"));
        let references = tagged.into_iter().map(|(name, _)| name);
        for reference in references.chain(untagged.iter().map(|(_, id)| id.clone())) {
            if let Err(e) = self.remove_image(&reference) {
                eprintln!("warning: cannot remove test image {reference}: {e}");
            }
        }
        untagged
    }

    /// Polls `inspect` until the container reaches `state`; returns how long that took.
    pub fn wait_for_container_state(
        &self,
        name: &str,
        state: &str,
        timeout: Duration,
    ) -> Result<Duration, String> {
        let start = Instant::now();
        let mut last = None;
        while start.elapsed() < timeout {
            last = self.container_state(name);
            if last.as_deref() == Some(state) {
                return Ok(start.elapsed());
            }
            thread::sleep(Duration::from_millis(10));
        }
        Err(format!(
            "container {name} did not become {state} within {timeout:?} (last state: {last:?})"
        ))
    }
}

fn find_podman() -> Result<TestEngine, String> {
    let install = "Install it with `apt-get install -y podman runc` (see shared/ENGINES.md).";
    let cli = find_in_path("podman")
        .ok_or_else(|| format!("podman is not installed (not in PATH). {install}"))?;
    let env = podman_env()?;
    let engine = TestEngine {
        kind: EngineKind::Podman,
        version: String::new(),
        cli,
        env,
        user: None,
    };
    check_answers(&engine).map_err(|e| {
        format!(
            "{e}\nCheck the podman install ({install}); on cgroup v1 hosts it needs runtime \"runc\" \
             and explicit ulimits in the file named by CONTAINERS_CONF."
        )
    })?;
    finish_with_version(engine)
}

fn find_docker() -> Result<TestEngine, String> {
    let cli = Some(PathBuf::from(DEBIAN_DOCKER_CLI))
        .filter(|p| p.is_file())
        .or_else(|| find_in_path("docker"))
        .ok_or_else(|| format!("docker is not installed (no {DEBIAN_DOCKER_CLI}, none in PATH). Install it with `apt-get install -y docker.io`."))?;
    let engine = TestEngine {
        kind: EngineKind::Docker,
        version: String::new(),
        cli,
        env: Vec::new(),
        user: None,
    };
    check_answers(&engine).map_err(|e| {
        format!(
            "{e}\nIs the Docker daemon running? Start it with `setsid dockerd >/tmp/dockerd.log 2>&1 &` \
             and wait until `{DEBIAN_DOCKER_CLI} info` answers (see shared/ENGINES.md)."
        )
    })?;
    finish_with_version(engine)
}

fn check_answers(engine: &TestEngine) -> Result<(), String> {
    let out = run_with_timeout(engine.command(["info"]), INFO_TIMEOUT)?;
    if out.success() {
        Ok(())
    } else {
        Err(format!(
            "`{} info` failed: {}",
            engine.cli.display(),
            last_lines(&out.stderr, 5)
        ))
    }
}

fn finish_with_version(mut engine: TestEngine) -> Result<TestEngine, String> {
    let out = run_with_timeout(engine.command(["--version"]), INFO_TIMEOUT)?;
    engine.version = version_from_cli_output(&out.stdout).unwrap_or_default();
    Ok(engine)
}

/// The client's rule: the text after "version " up to ',', ' ' or end of line,
/// from the first line that has it ("podman version 4.3.1",
/// "Docker version 20.10.24+dfsg1, build 297e128").
pub fn version_from_cli_output(output: &str) -> Option<String> {
    output.lines().find_map(|line| {
        let (_, rest) = line.split_once("version ")?;
        let end = rest.find([',', ' ']).unwrap_or(rest.len());
        Some(rest[..end].trim_end().to_string())
    })
}

/// `CONTAINERS_CONF` for podman: the caller's if set, else our file with the host quirks.
fn podman_env() -> Result<Vec<(OsString, OsString)>, String> {
    if std::env::var_os("CONTAINERS_CONF").is_some() {
        return Ok(Vec::new());
    }
    let path = write_containers_conf(
        "docker_wrapper_tests_containers.conf",
        PODMAN_CONTAINERS_CONF,
    )?;
    Ok(vec![(
        OsString::from("CONTAINERS_CONF"),
        path.into_os_string(),
    )])
}

/// Rootless Podman here has no user-mode network (slirp4netns cannot open
/// /dev/net/tun): containers default to no network, so that a plain
/// `podman run` (the BOINC 8.2 client's `run --rm hello-world`) works. The
/// wrapper's jobs run with `network = false` there anyway.
const ROOTLESS_PODMAN_CONTAINERS_CONF: &str = "[engine]\nruntime = \"runc\"\n[containers]\n\
    default_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\nnetns = \"none\"\n";

/// Writes a containers.conf for Podman calls made by (and for) the tests into
/// the test temp root, where concurrent test processes share it.
pub fn write_containers_conf(file_name: &str, contents: &str) -> Result<PathBuf, String> {
    let path = test_tmp_root().join(file_name);
    write_atomically(&path, contents)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// Write + rename, so concurrent test processes never see a half-written file.
pub fn write_atomically(path: &Path, contents: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    fs::write(&tmp, contents)?;
    fs::rename(&tmp, path)
}

/// The executable `program` in PATH, as a shell would find it.
pub fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
