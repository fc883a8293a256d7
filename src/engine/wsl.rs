//! Windows: the engine lives in a WSL distro that the client reported in
//! `init_data.xml` (`host_info/wsl`), chosen as the C++ wrapper chooses it,
//! and reached through one `wsl` shell. Pure functions, tested on any host.
use std::fmt;
use std::path::PathBuf;

use super::process::Argv;
use super::EngineKind;

/// The distro BOINC installs for container apps (`BOINC_WSL_DISTRO_NAME`
/// in BOINC's lib/wslinfo.h).
pub const BOINC_DISTRO: &str = "boinc-buda-runner";
/// Versions of BOINC's distro before this one have Podman set up for their
/// default user only; the C++ wrapper runs them without `-u root` too.
const BOINC_DISTRO_ROOT_SINCE: i32 = 4;

/// A WSL distro as the client reported it (BOINC's `WSL_DISTRO`, in
/// `init_data.xml`): what choosing the one to run the engine in needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WslDistro {
    pub name: String,
    /// The engine the client found in it, if any.
    pub engine: Option<EngineKind>,
    /// That engine's version; the client writes it only when it found
    /// the engine working.
    pub engine_version: String,
    /// The volunteer does not let BOINC use it.
    pub disallowed: bool,
    /// The version of BOINC's own distro (`BOINC_DISTRO`); 0 for others.
    pub boinc_runner_version: i32,
}

/// The distro to run the engine in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineDistro {
    pub name: String,
    pub engine: EngineKind,
    pub as_root: bool,
}

/// BOINC's distro if it has an engine, else the first allowed distro that
/// has one. Distros the volunteer disallowed are never used.
pub fn choose_distro(distros: &[WslDistro]) -> Result<EngineDistro, NoDistro> {
    let usable = |d: &&WslDistro| !d.disallowed && engine_of(d).is_some();
    let chosen = distros
        .iter()
        .filter(|d| d.name == BOINC_DISTRO)
        .find(usable)
        .or_else(|| distros.iter().find(usable));
    match chosen {
        Some(distro) => Ok(EngineDistro {
            name: distro.name.clone(),
            engine: engine_of(distro).expect("usable distros have an engine"),
            as_root: distro.name != BOINC_DISTRO
                || distro.boinc_runner_version >= BOINC_DISTRO_ROOT_SINCE,
        }),
        None => Err(NoDistro {
            seen: distros
                .iter()
                .map(|d| Unusable {
                    name: d.name.clone(),
                    disallowed: d.disallowed,
                })
                .collect(),
        }),
    }
}

/// Standalone runs (no client) assume BOINC's distro with Podman, as the C++ wrapper does.
pub fn standalone_distro() -> EngineDistro {
    EngineDistro {
        name: BOINC_DISTRO.into(),
        engine: EngineKind::Podman,
        as_root: true,
    }
}

/// The persistent shell: `/bin/sh` named explicitly, so the commands meet a
/// POSIX shell whatever the user's login shell is.
pub fn launcher(distro: &EngineDistro) -> Argv {
    let argv = Argv::new("wsl").args(["-d", distro.name.as_str()]);
    let argv = if distro.as_root {
        argv.args(["-u", "root"])
    } else {
        argv
    };
    argv.args(["--exec", "/bin/sh"])
}

fn engine_of(distro: &WslDistro) -> Option<EngineKind> {
    // The client fills in the version only when it found the engine working.
    if distro.engine_version.trim().is_empty() {
        return None;
    }
    distro.engine
}

/// No distro the engine can run in: what the client reported instead.
#[derive(Debug, Clone, PartialEq)]
pub struct NoDistro {
    pub seen: Vec<Unusable>,
}

/// A reported distro that cannot be used.
#[derive(Debug, Clone, PartialEq)]
pub struct Unusable {
    pub name: String,
    /// The volunteer disallowed it; otherwise it has no Docker or Podman.
    pub disallowed: bool,
}

impl fmt::Display for NoDistro {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.seen.is_empty() {
            return write!(
                f,
                "no WSL distro reported by the client: install WSL and BOINC's {BOINC_DISTRO} distro"
            );
        }
        let seen: Vec<String> = self
            .seen
            .iter()
            .map(|d| {
                let why = if d.disallowed {
                    "disallowed"
                } else {
                    "no Docker or Podman"
                };
                format!("{} ({why})", d.name)
            })
            .collect();
        write!(
            f,
            "no usable WSL distro with Docker or Podman: {}; install BOINC's {BOINC_DISTRO} distro",
            seen.join(", ")
        )
    }
}

impl std::error::Error for NoDistro {}

/// A host path that has no name inside WSL.
#[derive(Debug, Clone, PartialEq)]
pub enum PathError {
    NotUnicode(PathBuf),
    /// A network path: WSL mounts only local drives.
    Unc(String),
    NotAbsolute(String),
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::NotUnicode(path) => write!(f, "{} is not valid Unicode", path.display()),
            PathError::Unc(path) => write!(
                f,
                "{path} is a network (UNC) path, which WSL cannot mount: run BOINC with its data directory on a local drive"
            ),
            PathError::NotAbsolute(path) => write!(
                f,
                "{path} is not an absolute Windows path (like C:\\dir)"
            ),
        }
    }
}

impl std::error::Error for PathError {}

/// `C:\ProgramData\BOINC\slots\3` -> `/mnt/c/ProgramData/BOINC/slots/3`:
/// WSL mounts each drive at /mnt/<lower-case letter>. Network (UNC) paths
/// have no such mount and are refused.
pub fn windows_path_in_wsl(path: &str) -> Result<String, PathError> {
    // `\\?\C:\...` is the verbatim form canonicalize() returns.
    let plain = path.strip_prefix(r"\\?\").unwrap_or(path);
    if plain.starts_with(r"\\") || plain.starts_with("//") || plain.starts_with(r"UNC\") {
        return Err(PathError::Unc(path.to_string()));
    }
    let mut chars = plain.chars();
    let (Some(drive), Some(':')) = (chars.next(), chars.next()) else {
        return Err(PathError::NotAbsolute(path.to_string()));
    };
    let rest = chars.as_str();
    if !drive.is_ascii_alphabetic() || !(rest.is_empty() || rest.starts_with(['\\', '/'])) {
        return Err(PathError::NotAbsolute(path.to_string()));
    }
    Ok(format!(
        "/mnt/{}{}",
        drive.to_ascii_lowercase(),
        rest.replace('\\', "/")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distro(name: &str, engine: Option<EngineKind>, version: &str) -> WslDistro {
        WslDistro {
            name: name.into(),
            engine,
            engine_version: version.into(),
            ..WslDistro::default()
        }
    }

    fn boinc_distro(runner_version: i32) -> WslDistro {
        WslDistro {
            boinc_runner_version: runner_version,
            ..distro(BOINC_DISTRO, Some(EngineKind::Podman), "4.9.3")
        }
    }

    #[test]
    fn the_boinc_distro_is_preferred_when_it_has_an_engine() {
        let distros = [
            distro("Ubuntu", Some(EngineKind::Docker), "27.1"),
            boinc_distro(4),
        ];
        let chosen = choose_distro(&distros).unwrap();
        assert_eq!(
            chosen,
            EngineDistro {
                name: BOINC_DISTRO.into(),
                engine: EngineKind::Podman,
                as_root: true
            }
        );
    }

    #[test]
    fn another_distro_is_used_when_the_boinc_one_has_no_engine() {
        let mut boinc = boinc_distro(4);
        boinc.engine_version.clear();
        let distros = [
            boinc,
            distro("Debian", None, ""),
            distro("Ubuntu", Some(EngineKind::Docker), "27.1"),
        ];
        let chosen = choose_distro(&distros).unwrap();
        assert_eq!(
            (chosen.name.as_str(), chosen.engine, chosen.as_root),
            ("Ubuntu", EngineKind::Docker, true)
        );
    }

    #[test]
    fn disallowed_distros_are_skipped() {
        let mut boinc = boinc_distro(5);
        boinc.disallowed = true;
        let distros = [boinc, distro("Fedora", Some(EngineKind::Podman), "5.0")];
        assert_eq!(choose_distro(&distros).unwrap().name, "Fedora");
    }

    #[test]
    fn an_engine_type_without_a_version_does_not_count() {
        let distros = [distro("Ubuntu", Some(EngineKind::Docker), " ")];
        assert!(choose_distro(&distros).is_err());
    }

    #[test]
    fn no_usable_distro_says_what_was_seen() {
        let mut boinc = boinc_distro(4);
        boinc.disallowed = true;
        let err = choose_distro(&[boinc, distro("Ubuntu", None, "")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("boinc-buda-runner (disallowed)"), "{err}");
        assert!(err.contains("Ubuntu (no Docker or Podman)"), "{err}");
        assert!(choose_distro(&[])
            .unwrap_err()
            .to_string()
            .contains("no WSL distro"));
    }

    #[test]
    fn old_boinc_distros_run_as_their_default_user() {
        let chosen = choose_distro(&[boinc_distro(3)]).unwrap();
        assert!(!chosen.as_root);
        assert_eq!(
            launcher(&chosen).display(),
            "wsl -d boinc-buda-runner --exec /bin/sh"
        );
        let chosen = choose_distro(&[boinc_distro(4)]).unwrap();
        assert_eq!(
            launcher(&chosen).display(),
            "wsl -d boinc-buda-runner -u root --exec /bin/sh"
        );
    }

    #[test]
    fn standalone_uses_the_boinc_distro_with_podman() {
        let d = standalone_distro();
        assert_eq!(
            (d.name.as_str(), d.engine, d.as_root),
            (BOINC_DISTRO, EngineKind::Podman, true)
        );
    }

    #[test]
    fn windows_paths_map_to_the_drive_mounts() {
        let cases = [
            (
                r"C:\ProgramData\BOINC\slots\3",
                "/mnt/c/ProgramData/BOINC/slots/3",
            ),
            (
                r"D:\BOINC data\projects\example.org_x",
                "/mnt/d/BOINC data/projects/example.org_x",
            ),
            ("E:/mixed\\sep/ünïcode", "/mnt/e/mixed/sep/ünïcode"),
            (
                r"\\?\C:\ProgramData\BOINC\slots\0",
                "/mnt/c/ProgramData/BOINC/slots/0",
            ),
            (r"C:\", "/mnt/c/"),
            ("z:", "/mnt/z"),
        ];
        for (windows, wsl) in cases {
            assert_eq!(
                windows_path_in_wsl(windows).as_deref(),
                Ok(wsl),
                "{windows}"
            );
        }
    }

    #[test]
    fn unc_and_relative_paths_are_refused() {
        for unc in [
            r"\\server\share\BOINC\slots\1",
            "//server/share",
            r"\\?\UNC\server\share\x",
        ] {
            let err = windows_path_in_wsl(unc).unwrap_err().to_string();
            assert!(err.contains("UNC"), "{unc}: {err}");
        }
        for relative in [r"slots\3", r"C:slots\3", "/mnt/c/x", "", r"1:\x"] {
            let err = windows_path_in_wsl(relative).unwrap_err().to_string();
            assert!(
                err.contains("not an absolute Windows path"),
                "{relative}: {err}"
            );
        }
    }
}
