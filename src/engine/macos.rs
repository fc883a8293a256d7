//! macOS: the BOINC 8.2 client never runs `podman` directly. It runs it
//! through its setuid helper, `Run_Podman` in BOINC's data dir, which
//! switches to the sandbox user and points HOME and the XDG dirs at the
//! client's own Podman machine (made with `/Library` shared, so the slot's
//! absolute path is the same inside the VM). The wrapper calls Podman the
//! same way: the helper, then the Podman path, then Podman's arguments, as
//! argv (the helper's path has spaces).
//!
//! The decisions are plain functions of the OS facts, so they are tested
//! on any host; `DOCKER_WRAPPER_RUN_PODMAN` names another helper, which
//! also makes Linux use one (how the path is tested end to end).
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use super::EngineKind;

/// Names the helper that runs Podman; unset: BOINC's own on macOS, none elsewhere.
pub const HELPER_VAR: &str = "DOCKER_WRAPPER_RUN_PODMAN";
/// Where the BOINC installer puts the helper (setuid root).
pub const HELPER: &str = "/Library/Application Support/BOINC Data/Run_Podman";
/// Podman's own installer.
const INSTALLER_PODMAN: &str = "/opt/podman/bin/podman";
/// Homebrew's prefix differs between the two CPUs.
const HOMEBREW_PODMAN_ARM: &str = "/opt/homebrew/bin/podman";
const HOMEBREW_PODMAN_INTEL: &str = "/usr/local/bin/podman";
/// Docker Desktop's CLI link, for when the wrapper's PATH lacks it (apps
/// started by the client get a minimal PATH).
const DOCKER_DESKTOP_CLI: &str = "/usr/local/bin/docker";
/// Prints the PATH that Terminal gets (from /etc/paths and /etc/paths.d).
pub const PATH_HELPER: &str = "/usr/libexec/path_helper";

/// The helper for this engine: Podman goes through one on macOS, or
/// wherever `DOCKER_WRAPPER_RUN_PODMAN` names one; Docker never does.
pub fn helper(kind: EngineKind, is_macos: bool, var: Option<&OsStr>) -> Option<PathBuf> {
    if kind != EngineKind::Podman {
        return None;
    }
    match var.filter(|v| !v.is_empty()) {
        Some(path) => Some(PathBuf::from(path)),
        None => is_macos.then(|| PathBuf::from(HELPER)),
    }
}

/// The value of PATH in `path_helper -s` output (`PATH="a:b"; export PATH;`).
pub fn terminal_path(path_helper_output: &str) -> Option<String> {
    path_helper_output.lines().find_map(|line| {
        let value = line.trim().strip_prefix("PATH=\"")?;
        let end = value.find('"')?;
        Some(value[..end].to_string())
    })
}

/// The Podman the client uses: the one Terminal's PATH finds, else the
/// installer's, else Homebrew's for this CPU.
pub fn podman_path(
    in_terminal_path: Option<PathBuf>,
    exists: &dyn Fn(&Path) -> bool,
    apple_silicon: bool,
) -> Option<PathBuf> {
    let homebrew = if apple_silicon {
        HOMEBREW_PODMAN_ARM
    } else {
        HOMEBREW_PODMAN_INTEL
    };
    in_terminal_path
        .into_iter()
        .chain([INSTALLER_PODMAN, homebrew].map(PathBuf::from))
        .find(|path| exists(path))
}

/// Docker Desktop's CLI where PATH has none.
pub fn docker_path(in_path: Option<PathBuf>, exists: &dyn Fn(&Path) -> bool) -> Option<PathBuf> {
    in_path.or_else(|| {
        let desktop = PathBuf::from(DOCKER_DESKTOP_CLI);
        exists(&desktop).then_some(desktop)
    })
}

/// The program and the arguments that come before Podman's own: the
/// helper, then the Podman CLI.
pub fn prefix(helper: &Path, podman: &Path) -> (OsString, Vec<OsString>) {
    (
        helper.as_os_str().to_os_string(),
        vec![podman.as_os_str().to_os_string()],
    )
}

/// The arguments that list the machines, one `true`/`false` a line.
pub const MACHINE_LIST_ARGS: [&str; 4] = ["machine", "list", "--format", "{{.Running}}"];

/// Whether `machine list` (in the format above) shows a running machine.
pub fn machine_running(machine_list: &str) -> bool {
    machine_list
        .lines()
        .any(|line| line.trim().eq_ignore_ascii_case("true"))
}

/// The reason a task waits when the machine is down: the client starts
/// it, so a later try finds it running.
pub fn machine_not_running(detail: &str) -> String {
    format!("Podman machine not running ({detail}); the BOINC client starts it")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn podman_goes_through_the_helper_on_macos_or_when_named() {
        let named = OsStr::new("/tmp/stand in/Run_Podman");
        assert_eq!(
            helper(EngineKind::Podman, true, None),
            Some(PathBuf::from(HELPER))
        );
        assert_eq!(
            helper(EngineKind::Podman, true, Some(named)),
            Some(PathBuf::from(named))
        );
        assert_eq!(
            helper(EngineKind::Podman, false, Some(named)),
            Some(PathBuf::from(named))
        );
        assert_eq!(helper(EngineKind::Podman, false, None), None);
        assert_eq!(
            helper(EngineKind::Podman, false, Some(OsStr::new(""))),
            None
        );
        // Docker Desktop's CLI needs no helper, on a Mac either.
        assert_eq!(helper(EngineKind::Docker, true, None), None);
        assert_eq!(helper(EngineKind::Docker, false, Some(named)), None);
    }

    #[test]
    fn terminal_path_is_read_from_path_helper() {
        let out = "PATH=\"/usr/local/bin:/usr/bin:/bin:/opt/podman/bin\"; export PATH;\n\
                   MANPATH=\"/usr/share/man:\"; export MANPATH;\n";
        assert_eq!(
            terminal_path(out).as_deref(),
            Some("/usr/local/bin:/usr/bin:/bin:/opt/podman/bin")
        );
        assert_eq!(terminal_path("setenv PATH nothing"), None);
        assert_eq!(terminal_path(""), None);
    }

    #[test]
    fn podman_is_found_where_the_client_finds_it() {
        let only = |present: &'static [&'static str]| {
            move |path: &Path| present.iter().any(|p| Path::new(p) == path)
        };
        let found = Some(PathBuf::from("/Users/me/bin/podman"));
        let all = only(&[
            "/Users/me/bin/podman",
            INSTALLER_PODMAN,
            HOMEBREW_PODMAN_ARM,
            HOMEBREW_PODMAN_INTEL,
        ]);
        assert_eq!(podman_path(found.clone(), &all, true), found);
        assert_eq!(
            podman_path(None, &all, true).as_deref(),
            Some(Path::new(INSTALLER_PODMAN))
        );
        let brew = only(&[HOMEBREW_PODMAN_ARM, HOMEBREW_PODMAN_INTEL]);
        assert_eq!(
            podman_path(None, &brew, true).as_deref(),
            Some(Path::new(HOMEBREW_PODMAN_ARM))
        );
        assert_eq!(
            podman_path(None, &brew, false).as_deref(),
            Some(Path::new(HOMEBREW_PODMAN_INTEL))
        );
        // A hit that vanished is not trusted.
        assert_eq!(podman_path(found, &only(&[]), true), None);
    }

    #[test]
    fn docker_desktop_is_found_outside_a_short_path() {
        let desktop = |p: &Path| p == Path::new(DOCKER_DESKTOP_CLI);
        assert_eq!(
            docker_path(None, &desktop).as_deref(),
            Some(Path::new(DOCKER_DESKTOP_CLI))
        );
        let hit = Some(PathBuf::from("/Applications/Docker.app/bin/docker"));
        assert_eq!(docker_path(hit.clone(), &desktop), hit);
        assert_eq!(docker_path(None, &|_| false), None);
    }

    #[test]
    fn the_prefix_keeps_paths_with_spaces_whole() {
        let (program, args) = prefix(Path::new(HELPER), Path::new("/opt/podman/bin/podman"));
        assert_eq!(program, OsString::from(HELPER));
        assert_eq!(args, [OsString::from("/opt/podman/bin/podman")]);
    }

    #[test]
    fn a_running_machine_is_seen_in_machine_list() {
        assert!(machine_running("false\ntrue\n"));
        assert!(machine_running(" True \n"));
        assert!(!machine_running("false\n"));
        assert!(!machine_running(""));
        let why = machine_not_running("no machine");
        assert!(why.starts_with("Podman machine not running"), "{why}");
    }
}
