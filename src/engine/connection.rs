//! Which engine a task uses and how it reaches it: the CLI in PATH (or the
//! one the client detected, or the one `DOCKER_WRAPPER_ENGINE` names), run
//! as a child process, through macOS's helper, or through a `wsl` shell on
//! Windows.
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::process::{self, Argv, Limits};
use super::transport::Transport;
use super::wsl::{self, WslDistro};
use super::{macos, Engine, EngineKind, COMMAND_CAPTURE};

/// What decides which engine a task uses, and how long its commands may take.
pub struct Request {
    /// The engine the client detected (BOINC 8.2 writes it), if any.
    pub from_client: Option<EngineKind>,
    /// The client's WSL distros (Windows); None in standalone mode, which
    /// uses the default distro.
    pub wsl_distros: Option<Vec<WslDistro>>,
    pub timeout: Duration,
    pub build_timeout: Duration,
}

/// The engine to use and how to reach it: on Windows inside a WSL distro,
/// through one `wsl` shell; elsewhere the CLI in PATH, the one the client
/// detected, or the one `DOCKER_WRAPPER_ENGINE` names.
pub fn connect(request: &Request) -> Result<Engine, ConnectError> {
    let (kind, cli, transport) = if cfg!(windows) {
        let distro = match &request.wsl_distros {
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
/// Chooses the engine: an explicit override, else what the client found
/// (BOINC 8 writes docker_type), else whichever CLI is installed, Podman first.
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
