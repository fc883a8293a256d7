//! The container engine a run's client uses, and what the client needs to
//! find it: the BOINC 8.2 client looks for `podman`, then `docker`, by name
//! in its PATH, and believes one only if `<engine> run --rm hello-world`
//! prints "Hello". No registry is reachable here, so the images the client
//! and the jobs start from are built locally from a static busybox.
use crate::run::run_logged;
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Podman,
    Docker,
}

/// The sample Dockerfile's base (`xtask/templates/Dockerfile`), as each
/// engine names it.
const BUSYBOX: [&str; 2] = ["docker.io/library/busybox:1.36", "busybox:1.36"];
const HELLO_WORLD: [&str; 2] = ["docker.io/library/hello-world:latest", "hello-world:latest"];
const STATIC_BUSYBOX: &str = "/bin/busybox";

impl Engine {
    pub fn parse(name: &str) -> Result<Engine> {
        match name {
            "podman" => Ok(Engine::Podman),
            "docker" => Ok(Engine::Docker),
            other => bail!("unknown engine {other:?} (podman or docker)"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Engine::Podman => "podman",
            Engine::Docker => "docker",
        }
    }

    /// The Debian CLI (`/usr/local/bin/docker` may be another one).
    pub fn cli(self) -> &'static str {
        match self {
            Engine::Podman => "/usr/bin/podman",
            Engine::Docker => "/usr/bin/docker",
        }
    }

    /// `<docker_type>` in host_info and init_data.xml.
    pub fn docker_type(self) -> u32 {
        match self {
            Engine::Docker => 1,
            Engine::Podman => 2,
        }
    }

    fn index(self) -> usize {
        match self {
            Engine::Podman => 0,
            Engine::Docker => 1,
        }
    }

    /// Builds the local base images when missing: hello-world for the
    /// client's probe, busybox for the sample Dockerfile.
    pub fn prepare_images(self, work: &Path) -> Result<()> {
        if !Path::new(STATIC_BUSYBOX).exists() {
            bail!("{STATIC_BUSYBOX} is missing: run `bash .ci/setup` (busybox-static)");
        }
        let hello = "FROM scratch\nCOPY busybox /bin/busybox\n\
                     CMD [\"/bin/busybox\", \"echo\", \"Hello from a local hello-world image\"]\n";
        let busybox = "FROM scratch\nCOPY busybox /bin/busybox\n\
                       RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nCMD [\"/bin/sh\"]\n";
        self.build_if_missing(HELLO_WORLD[self.index()], hello, work)?;
        self.build_if_missing(BUSYBOX[self.index()], busybox, work)
    }

    fn build_if_missing(self, tag: &str, dockerfile: &str, work: &Path) -> Result<()> {
        let present = Command::new(self.cli())
            .args(["image", "inspect", tag])
            .output()
            .is_ok_and(|out| out.status.success());
        if present {
            return Ok(());
        }
        let context = work.join(format!("image-{}", self.name()));
        let _ = fs::remove_dir_all(&context);
        fs::create_dir_all(&context)?;
        fs::copy(STATIC_BUSYBOX, context.join("busybox"))?;
        fs::write(context.join("Dockerfile"), dockerfile)?;
        run_logged(
            Command::new(self.cli())
                .env("DOCKER_BUILDKIT", "0")
                .args(["build", "-t", tag])
                .arg(&context),
            &work.join(format!("image-{}.log", self.name())),
        )
        .with_context(|| format!("building the local image {tag}"))
    }
}

/// A PATH for a client that must find only `keep` (or no engine at all):
/// a directory of links to /usr/bin's programs without the other engines,
/// then /usr/sbin and /sbin.
pub fn client_path(dir: &Path, keep: Option<Engine>) -> Result<OsString> {
    for sbin in ["/usr/sbin", "/sbin"] {
        for engine in [Engine::Podman, Engine::Docker] {
            if Path::new(sbin).join(engine.name()).exists() {
                bail!("{sbin}/{} exists: no PATH can hide it", engine.name());
            }
        }
    }
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir)?;
    let hidden: Vec<&str> = [Engine::Podman, Engine::Docker]
        .into_iter()
        .filter(|e| Some(*e) != keep)
        .map(Engine::name)
        .collect();
    for entry in fs::read_dir("/usr/bin")?.flatten() {
        let name = entry.file_name();
        let text = name.to_string_lossy();
        if hidden.iter().any(|h| text.starts_with(h)) {
            continue;
        }
        std::os::unix::fs::symlink(entry.path(), dir.join(&name))?;
    }
    let dirs: Vec<PathBuf> = vec![dir.to_path_buf(), "/usr/sbin".into(), "/sbin".into()];
    std::env::join_paths(dirs).context("a PATH from the client's directories")
}
