//! What the real-client harness needs of a container engine beyond the
//! tests' `TestEngine`: a local `hello-world` image and a PATH for the BOINC
//! 8.2 client to detect the engine with, and the `boinc__` containers that
//! are not this harness's.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use dw_test_support::tempdir::test_tmp_root;
use dw_test_support::{EngineKind, TestEngine};

use super::data_dir::PROJECT_DIR_NAME;

/// The image the BOINC 8.2 client runs (`<engine> run --rm hello-world`) to
/// believe an engine works, under the names each engine resolves
/// `hello-world` to. No registry is reachable here, so the harness builds it.
const PODMAN_HELLO_WORLD: &str = "docker.io/library/hello-world:latest";
const DOCKER_HELLO_WORLD: &str = "hello-world:latest";
/// FROM scratch with the static busybox; the client looks for "Hello" in the output.
const HELLO_WORLD_DOCKERFILE: &str = "FROM scratch\n\
    COPY busybox /bin/busybox\n\
    CMD [\"/bin/busybox\", \"echo\", \"Hello from the local hello-world image of docker_wrapper's tests\"]\n";

/// The engine as root uses it; panics with install/start instructions when
/// it is missing: a test needing it must fail, not pass.
pub fn as_root(kind: EngineKind) -> TestEngine {
    TestEngine::require(kind)
}

/// The engine as the BOINC user sees it (rootless Podman, or Docker through
/// the docker group). Rootless Podman gets a containers.conf without network.
pub fn as_boinc(kind: EngineKind) -> TestEngine {
    TestEngine::require_unprivileged(kind).as_the_clients_user()
}

/// The real-client harness's side of an engine.
pub trait ClientEngine {
    /// `DOCKER_WRAPPER_ENGINE` for the wrapper: a 7.20 client reports no engine.
    /// Podman by name (found in the PATH the client passes on), Docker by the
    /// path of the client that matches the daemon.
    fn wrapper_engine_value(&self) -> OsString;

    /// The set of containers this engine's CLI sees: root's Podman, each
    /// user's rootless Podman, or the one Docker daemon (root and the docker
    /// group alike). A BOINC 8.2 client starting on it removes every
    /// `boinc__` container that is not one of its own tasks'.
    fn namespace(&self) -> String;

    /// The `PATH` for a BOINC 8.2 client that must find this engine, or None
    /// when the test process's own PATH does. The client tries `podman` first
    /// and takes `docker` only when Podman fails its check, both by name in
    /// PATH (client/hostinfo_unix.cpp), and the wrapper then runs the CLI the
    /// client reported, again by name. For Docker it is the PATH of this host
    /// without Podman: a directory of links to everything in /usr/bin but
    /// `podman*` (the client also runs `stat`, `lsb_release`, ...; `docker`
    /// there is Debian's client, which matches the daemon), then /usr/sbin
    /// and /sbin.
    fn client_path(&self) -> Result<Option<OsString>, String>;

    /// Makes `<engine> run --rm hello-world`, as this engine's user, print a
    /// line with "Hello", as the BOINC 8.2 client requires before it runs
    /// Docker apps: uses the image when it is there and works, else builds
    /// it (FROM scratch, the static busybox). Once per engine and process.
    fn ensure_hello_world(&self) -> Result<(), String>;

    /// Containers named as BOINC tasks' (`boinc__...`) that are not of this
    /// harness's project: other test programs' tasks, or what they left.
    fn foreign_task_containers(&self) -> Result<Vec<String>, String>;

    /// Creates (does not start) a container named `name` from the hello-world image.
    fn create_idle_container(&self, name: &str) -> Result<(), String>;
}

impl ClientEngine for TestEngine {
    fn wrapper_engine_value(&self) -> OsString {
        match self.kind() {
            EngineKind::Podman => OsString::from("podman"),
            EngineKind::Docker => self.cli().as_os_str().to_owned(),
        }
    }

    fn namespace(&self) -> String {
        match (self.kind(), self.user()) {
            (EngineKind::Docker, _) => "docker".to_string(),
            (EngineKind::Podman, None) => "podman".to_string(),
            (EngineKind::Podman, Some(user)) => format!("podman_as_{}", user.name),
        }
    }

    fn client_path(&self) -> Result<Option<OsString>, String> {
        if self.kind() == EngineKind::Podman {
            return Ok(None);
        }
        static WITHOUT_PODMAN: OnceLock<Result<OsString, String>> = OnceLock::new();
        WITHOUT_PODMAN
            .get_or_init(|| path_without_podman(self.cli()))
            .clone()
            .map(Some)
    }

    fn ensure_hello_world(&self) -> Result<(), String> {
        static DONE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
        let key = self.label();
        let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
        if done.contains(&key) {
            return Ok(());
        }
        if hello_world_says_hello(self).is_err() {
            build_hello_world(self)?;
            hello_world_says_hello(self).map_err(|out| {
                format!(
                    "`{} run --rm hello-world` as {} does not print Hello after building the image, \
                     so the BOINC 8.2 client would not use this engine:\n{out}",
                    self.kind().name(),
                    self.user().map_or("root", |u| u.name.as_str())
                )
            })?;
        }
        done.push(key);
        Ok(())
    }

    fn foreign_task_containers(&self) -> Result<Vec<String>, String> {
        let out = self.run(["ps", "--all", "--format", "{{.Names}}"])?;
        if !out.success() {
            return Err(format!(
                "{} ps --all: {}",
                self.kind().name(),
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

    fn create_idle_container(&self, name: &str) -> Result<(), String> {
        self.ensure_hello_world()?;
        let out = self.run(["create", "--name", name, "hello-world"])?;
        if out.success() {
            Ok(())
        } else {
            Err(format!(
                "{} create --name {name} hello-world: {}",
                self.kind().name(),
                out.stderr.trim()
            ))
        }
    }
}

/// Ok when `run --rm hello-world` prints "Hello"; Err holds what it printed.
fn hello_world_says_hello(engine: &TestEngine) -> Result<(), String> {
    let out = engine.run(["run", "--rm", "hello-world"])?;
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

fn build_hello_world(engine: &TestEngine) -> Result<(), String> {
    let tag = match engine.kind() {
        EngineKind::Podman => PODMAN_HELLO_WORLD,
        EngineKind::Docker => DOCKER_HELLO_WORLD,
    };
    engine.try_build_busybox_image(tag, HELLO_WORLD_DOCKERFILE, &[])
}

/// See `ClientEngine::client_path`. The directory is shared by test processes and
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
