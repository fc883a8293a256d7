//! The container engine a test runs the wrapper on, driven through its CLI
//! to inspect and clean up the task's container and to give the BOINC 8.2
//! client what it needs to detect the engine (a local `hello-world` image).

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::command::{run_with_timeout, CommandOutput};
use super::data_dir::PROJECT_DIR_NAME;
use super::tempdir::{test_tmp_root, TempDir};
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
/// Rootless Podman here has no user-mode network (slirp4netns cannot open
/// /dev/net/tun): containers default to no network, so that a plain
/// `podman run` (the BOINC 8.2 client's `run --rm hello-world`) works. The
/// wrapper's jobs run with `network = false` there anyway.
const ROOTLESS_PODMAN_CONTAINERS_CONF: &str = "[engine]\nruntime = \"runc\"\n[containers]\n\
    default_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\nnetns = \"none\"\n";
/// The image the BOINC 8.2 client runs (`<engine> run --rm hello-world`) to
/// believe an engine works, under the names each engine resolves
/// `hello-world` to. No registry is reachable here, so the harness builds it.
const PODMAN_HELLO_WORLD: &str = "docker.io/library/hello-world:latest";
const DOCKER_HELLO_WORLD: &str = "hello-world:latest";
/// FROM scratch with the static busybox; the client looks for "Hello" in the output.
const HELLO_WORLD_DOCKERFILE: &str = "FROM scratch\n\
    COPY busybox /bin/busybox\n\
    CMD [\"/bin/busybox\", \"echo\", \"Hello from the local hello-world image of docker_wrapper's tests\"]\n";
/// Debian's busybox-static.
const BUSYBOX: &str = "/bin/busybox";

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
            let mut engine = Engine {
                user: Some(HostUser::find(BOINC_USER)?),
                ..Engine::require(kind)
            };
            if kind == EngineKind::Podman && std::env::var_os("CONTAINERS_CONF").is_none() {
                let conf = write_containers_conf("rootless", ROOTLESS_PODMAN_CONTAINERS_CONF)?;
                engine.env = vec![(OsString::from("CONTAINERS_CONF"), conf)];
            }
            check_answers(&engine)
                .map_err(|e| format!("{e}\nas user {BOINC_USER}: run `bash .ci/setup`"))?;
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

    /// The set of containers this engine's CLI sees: root's Podman, each
    /// user's rootless Podman, or the one Docker daemon (root and the docker
    /// group alike). A BOINC 8.2 client starting on it removes every
    /// `boinc__` container that is not one of its own tasks'.
    pub fn namespace(&self) -> String {
        match (self.kind, &self.user) {
            (EngineKind::Docker, _) => "docker".to_string(),
            (EngineKind::Podman, None) => "podman".to_string(),
            (EngineKind::Podman, Some(user)) => format!("podman_as_{}", user.name),
        }
    }

    /// `docker_type` as the BOINC 8.2 client writes it into host_info
    /// (lib/common_defs.h DOCKER_TYPE: 1 Docker, 2 Podman).
    pub fn docker_type(&self) -> u32 {
        match self.kind {
            EngineKind::Docker => 1,
            EngineKind::Podman => 2,
        }
    }

    /// The `PATH` for a BOINC 8.2 client that must find this engine, or None
    /// when the test process's own PATH does. The client tries `podman` first
    /// and takes `docker` only when Podman fails its check, both by name in
    /// PATH (client/hostinfo_unix.cpp), and the wrapper then runs the CLI the
    /// client reported, again by name. For Docker it is the PATH of this host
    /// without Podman: a directory of links to everything in /usr/bin but
    /// `podman*` (the client also runs `stat`, `lsb_release`, ...; `docker`
    /// there is Debian's client, which matches the daemon), then /usr/sbin
    /// and /sbin.
    pub fn client_path(&self) -> Result<Option<OsString>, String> {
        if self.kind == EngineKind::Podman {
            return Ok(None);
        }
        static WITHOUT_PODMAN: OnceLock<Result<OsString, String>> = OnceLock::new();
        let cli = self.cli.clone();
        WITHOUT_PODMAN
            .get_or_init(|| path_without_podman(&cli))
            .clone()
            .map(Some)
    }

    /// Makes `<engine> run --rm hello-world`, as this engine's user, print a
    /// line with "Hello", as the BOINC 8.2 client requires before it runs
    /// Docker apps: uses the image when it is there and works, else builds
    /// it (FROM scratch, the static busybox). Once per engine and process.
    pub fn ensure_hello_world(&self) -> Result<(), String> {
        static DONE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
        let key = self.label();
        let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
        if done.contains(&key) {
            return Ok(());
        }
        if self.hello_world_says_hello().is_err() {
            self.build_hello_world()?;
            self.hello_world_says_hello().map_err(|out| {
                format!(
                    "`{} run --rm hello-world` as {} does not print Hello after building the image, \
                     so the BOINC 8.2 client would not use this engine:\n{out}",
                    self.kind.name(),
                    self.user.as_ref().map_or("root", |u| u.name.as_str())
                )
            })?;
        }
        done.push(key);
        Ok(())
    }

    /// Ok when `run --rm hello-world` prints "Hello"; Err holds what it printed.
    fn hello_world_says_hello(&self) -> Result<(), String> {
        let out = self.run(["run", "--rm", "hello-world"])?;
        if out.stdout.lines().any(|l| l.contains("Hello")) {
            Ok(())
        } else {
            Err(format!(
                "{}\n{}\n{}",
                out.status,
                out.stdout.trim(),
                out.stderr.trim()
            ))
        }
    }

    fn build_hello_world(&self) -> Result<(), String> {
        if !Path::new(BUSYBOX).is_file() {
            return Err(format!("{BUSYBOX} is missing: `apt-get install -y busybox-static` (or run `bash .ci/setup`)"));
        }
        let context = TempDir::new("hello-world")
            .map_err(|e| format!("cannot create a build context: {e}"))?;
        fs::copy(BUSYBOX, context.path().join("busybox"))
            .map_err(|e| format!("cannot copy {BUSYBOX}: {e}"))?;
        fs::write(context.path().join("Dockerfile"), HELLO_WORLD_DOCKERFILE)
            .map_err(|e| format!("cannot write the Dockerfile: {e}"))?;
        if let Some(user) = &self.user {
            user.own_tree(context.path())
                .map_err(|e| format!("cannot give the build context to {}: {e}", user.name))?;
        }
        let tag = match self.kind {
            EngineKind::Podman => PODMAN_HELLO_WORLD,
            EngineKind::Docker => DOCKER_HELLO_WORLD,
        };
        let mut args: Vec<OsString> = vec!["build".into(), "--tag".into(), tag.into()];
        if self.kind == EngineKind::Podman {
            args.extend(["--network".into(), "none".into()]);
        }
        args.push(context.path().as_os_str().to_owned());
        // The classic builder: Debian's Docker 20.10 may have no buildx.
        let out = self.run_with_env(args, &[("DOCKER_BUILDKIT", "0")])?;
        if out.success() {
            Ok(())
        } else {
            Err(format!(
                "{} build of {tag} failed: {}\n{}",
                self.kind.name(),
                out.stdout.trim(),
                out.stderr.trim()
            ))
        }
    }

    pub fn run<I, S>(&self, args: I) -> Result<CommandOutput, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_with_env(args, &[])
    }

    fn run_with_env<I, S>(
        &self,
        args: I,
        extra_env: &[(&str, &str)],
    ) -> Result<CommandOutput, String>
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
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        run_with_timeout(cmd, CLI_TIMEOUT)
    }

    /// Containers named as BOINC tasks' (`boinc__...`) that are not of this
    /// harness's project: other test programs' tasks, or what they left.
    pub fn foreign_task_containers(&self) -> Result<Vec<String>, String> {
        let out = self.run(["ps", "--all", "--format", "{{.Names}}"])?;
        if !out.success() {
            return Err(format!(
                "{} ps --all: {}",
                self.kind.name(),
                out.stderr.trim()
            ));
        }
        let ours = format!("boinc__{PROJECT_DIR_NAME}__").to_lowercase();
        Ok(out
            .stdout
            .lines()
            .map(str::trim)
            .filter(|name| name.starts_with("boinc__") && !name.starts_with(&ours))
            .map(str::to_string)
            .collect())
    }

    /// The container's ID; None when there is no such container.
    pub fn container_id(&self, name: &str) -> Option<String> {
        let out = self
            .run(["container", "inspect", "--format", "{{.Id}}", name])
            .ok()?;
        out.success().then(|| out.stdout.trim().to_string())
    }

    /// Creates (does not start) a container named `name` from the hello-world image.
    pub fn create_idle_container(&self, name: &str) -> Result<(), String> {
        self.ensure_hello_world()?;
        let out = self.run(["create", "--name", name, "hello-world"])?;
        if out.success() {
            Ok(())
        } else {
            Err(format!(
                "{} create --name {name} hello-world: {}",
                self.kind.name(),
                out.stderr.trim()
            ))
        }
    }

    /// Paused by the engine, or its processes stopped by the wrapper (where
    /// the engine cannot pause, e.g. rootless Podman on cgroup v1).
    pub fn is_suspended(&self, name: &str) -> bool {
        let state = self.run([
            "container",
            "inspect",
            "--format",
            "{{.State.Status}} {{.State.Pid}}",
            name,
        ]);
        state.is_ok_and(|out| out.success() && super::procfs::is_suspended(&out.stdout))
    }

    /// "running", "paused", "exited", ...; None when there is no such container.
    pub fn container_state(&self, name: &str) -> Option<String> {
        let out = self
            .run([
                "container",
                "inspect",
                "--format",
                "{{.State.Status}}",
                name,
            ])
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
            Err(format!(
                "{} rm -f {name}: {}",
                self.kind.name(),
                out.stderr.trim()
            ))
        }
    }
}

fn find_podman() -> Result<Engine, String> {
    let install = "Install it with `apt-get install -y podman runc` (or run `bash .ci/setup`).";
    let cli = find_in_path("podman").ok_or_else(|| format!("podman is not in PATH. {install}"))?;
    let mut env = Vec::new();
    if std::env::var_os("CONTAINERS_CONF").is_none() {
        env.push((
            OsString::from("CONTAINERS_CONF"),
            write_containers_conf("root", PODMAN_CONTAINERS_CONF)?,
        ));
    }
    let engine = Engine {
        kind: EngineKind::Podman,
        cli,
        env,
        user: None,
    };
    check_answers(&engine).map_err(|e| {
        format!("{e}\n{install} On cgroup v1 hosts it needs runtime \"runc\" and explicit ulimits.")
    })?;
    Ok(engine)
}

fn find_docker() -> Result<Engine, String> {
    let cli = Some(PathBuf::from(DEBIAN_DOCKER_CLI))
        .filter(|p| p.is_file())
        .or_else(|| find_in_path("docker"))
        .ok_or_else(|| {
            "docker is not installed: `apt-get install -y docker.io` (or run `bash .ci/setup`)."
                .to_string()
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
        Err(format!(
            "`{} info` failed: {}",
            engine.cli.display(),
            out.stderr.trim()
        ))
    }
}

/// Writes a containers.conf for Podman calls made by (and for) the tests.
fn write_containers_conf(kind: &str, contents: &str) -> Result<OsString, String> {
    let name = match kind {
        "root" => "docker_wrapper_real_client_containers.conf".to_string(),
        other => format!("docker_wrapper_real_client_containers_{other}.conf"),
    };
    let path = test_tmp_root().join(name);
    write_atomically(&path, contents)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path.into_os_string())
}

/// See `Engine::client_path`. The directory is shared by test processes and
/// kept: links are added or replaced one by one, atomically.
fn path_without_podman(docker_cli: &Path) -> Result<OsString, String> {
    const BIN: &str = "/usr/bin";
    let sbins = [Path::new("/usr/sbin"), Path::new("/sbin")];
    if let Some(podman) = sbins.iter().map(|d| d.join("podman")).find(|p| p.exists()) {
        return Err(format!(
            "{} exists: a PATH without Podman cannot include its directory",
            podman.display()
        ));
    }
    let dir = test_tmp_root().join("docker_wrapper_real_client_bin_without_podman");
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let entries = fs::read_dir(BIN).map_err(|e| format!("cannot list {BIN}: {e}"))?;
    let mut links: Vec<(OsString, PathBuf)> = entries
        .flatten()
        .map(|e| (e.file_name(), e.path()))
        .filter(|(name, _)| !name.to_string_lossy().starts_with("podman"))
        .collect();
    links.push((OsString::from("docker"), docker_cli.to_path_buf()));
    for (name, target) in links {
        let link = dir.join(&name);
        if fs::read_link(&link).is_ok_and(|t| t == target) {
            continue;
        }
        symlink_atomically(&target, &link)
            .map_err(|e| format!("cannot link {}: {e}", link.display()))?;
    }
    std::env::join_paths([dir.as_path(), sbins[0], sbins[1]])
        .map_err(|e| format!("PATH without Podman: {e}"))
}

/// `link` -> `target`, replacing whatever `link` was in one step.
fn symlink_atomically(target: &Path, link: &Path) -> std::io::Result<()> {
    let mut tmp = link.as_os_str().to_owned();
    tmp.push(format!(".tmp.{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    fs::rename(&tmp, link)
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
