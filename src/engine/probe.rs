//! What `--check` asks an engine: whether this user reaches it, its
//! version, cgroup driver and version, whether it runs rootless, and
//! whether the image the BOINC 8.2 client's detection runs is there and
//! runs. Every question is one command with the engine's timeout.
use std::time::Duration;

use super::process::{self, Argv, Limits};
use super::{connect, wsl, Engine, EngineError, EngineKind, Request};

/// The image the BOINC 8.2 client runs (`run --rm hello-world`) to decide
/// whether an engine works; it believes the engine only if the output
/// says "Hello".
pub const DETECTION_IMAGE: &str = "hello-world";

/// An engine as this user finds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// Err: the user cannot reach the engine, and why.
    pub reach: Result<EngineInfo, String>,
    /// None when the engine could not be asked.
    pub detection_image: Option<Detection>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineInfo {
    pub version: String,
    /// As the engine names them ("systemd", "cgroupfs"); empty if unknown.
    pub cgroup_driver: String,
    pub cgroup_version: String,
    /// None when the engine does not say.
    pub rootless: Option<bool>,
}

/// The detection image: absent, or present and how its run went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detection {
    Absent,
    Runs,
    /// Present, but its run failed or printed no greeting: why.
    Fails(String),
}

/// The engines a task of this host could use, in the order the BOINC 8.2
/// client tries them (Podman first), each with its CLI or why there is
/// none; only the one `DOCKER_WRAPPER_ENGINE` names, when it names one. On
/// Windows, the engine of the WSL distro a standalone task uses.
pub fn candidates(timeout: Duration) -> Vec<(EngineKind, Result<Engine, String>)> {
    let request = |from_client| Request {
        from_client,
        wsl_distros: None,
        timeout,
        build_timeout: timeout,
    };
    if cfg!(windows) {
        let engine = connect(&request(None)).map_err(|err| err.to_string());
        let kind = engine.as_ref().map_or(EngineKind::Podman, |e| e.kind);
        return vec![(kind, engine)];
    }
    // The engine the variable forces is the only one a task would use.
    if std::env::var_os("DOCKER_WRAPPER_ENGINE").is_some_and(|v| !v.is_empty()) {
        let engine = connect(&request(None)).map_err(|err| err.to_string());
        let kind = engine.as_ref().map_or(EngineKind::Podman, |e| e.kind);
        return vec![(kind, engine)];
    }
    [EngineKind::Podman, EngineKind::Docker]
        .into_iter()
        .map(|kind| {
            (
                kind,
                connect(&request(Some(kind))).map_err(|err| err.to_string()),
            )
        })
        .collect()
}

/// Windows: the WSL distros installed for this user (`wsl --list
/// --quiet`), and the one the wrapper prefers when the client finds an
/// engine in it.
pub fn wsl_distros(timeout: Duration) -> Result<(Vec<String>, &'static str), String> {
    let argv = Argv::new("wsl").args(["--list", "--quiet"]);
    let limits = Limits {
        timeout,
        capture: 64 * 1024,
    };
    let out = process::run(&argv, limits, &mut || false).map_err(|err| err.to_string())?;
    if !out.success() {
        return Err(out.error_summary());
    }
    Ok((parse_distro_list(&out.stdout), wsl::BOINC_DISTRO))
}

/// `wsl --list` writes UTF-16: ASCII names come with a NUL after each
/// character (and a byte-order mark, sometimes).
fn parse_distro_list(text: &str) -> Vec<String> {
    text.replace(['\0', '\u{feff}'], "")
        .lines()
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_string)
        .collect()
}

impl Engine {
    /// Asks the engine what `--check` reports, as the user running it.
    pub fn probe(&self) -> Probe {
        let info = match self.info() {
            Ok(info) => info,
            Err(err) => {
                return Probe {
                    reach: Err(err.to_string()),
                    detection_image: None,
                }
            }
        };
        let detection_image = match self.image_exists(DETECTION_IMAGE) {
            Ok(false) => Some(Detection::Absent),
            Ok(true) => Some(self.run_detection_image()),
            Err(_) => None,
        };
        Probe {
            reach: Ok(info),
            detection_image,
        }
    }

    fn info(&self) -> Result<EngineInfo, EngineError> {
        // The version first: it says best why an engine cannot be reached
        // (the daemon down, its socket not this user's).
        let version = self.version()?;
        let format = match self.kind {
            EngineKind::Docker => {
                "{{.CgroupDriver}}|{{.CgroupVersion}}|{{range .SecurityOptions}}{{.}} {{end}}"
            }
            EngineKind::Podman => {
                "{{.Host.CgroupManager}}|{{.Host.CgroupsVersion}}|{{.Host.Security.Rootless}}"
            }
        };
        let out = self.run(["info", "--format", format])?;
        Ok(parse_info(self.kind, version, out.stdout.trim()))
    }

    /// Runs the detection image as the client does (never pulling it).
    fn run_detection_image(&self) -> Detection {
        let mut args = vec!["run", "--rm"];
        if self.kind == EngineKind::Podman {
            args.extend(["--pull", "never"]);
        }
        args.push(DETECTION_IMAGE);
        match self.run(args) {
            Ok(out) if out.stdout.contains("Hello") => Detection::Runs,
            Ok(_) => Detection::Fails("it printed no \"Hello\"".into()),
            Err(err) => Detection::Fails(err.to_string()),
        }
    }
}

/// `info`'s answer to the format above: driver, cgroup version, and (Docker)
/// the security options, where "rootless" says how the daemon runs.
fn parse_info(kind: EngineKind, version: String, text: &str) -> EngineInfo {
    let mut fields = text.splitn(3, '|').map(str::trim);
    let cgroup_driver = fields.next().unwrap_or_default().to_string();
    let cgroup_version = fields
        .next()
        .unwrap_or_default()
        .trim_start_matches('v')
        .to_string();
    let third = fields.next().unwrap_or_default();
    let rootless = match kind {
        EngineKind::Podman => third.parse::<bool>().ok(),
        EngineKind::Docker => Some(third.contains("rootless")),
    };
    EngineInfo {
        version,
        cgroup_driver,
        cgroup_version,
        rootless,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wsl_lists_its_distros_in_utf16() {
        let text = "\u{feff}U\0b\0u\0n\0t\0u\0\r\0\n\0b\0o\0i\0n\0c\0-\0b\0u\0d\0a\0-\0r\0u\0n\0n\0e\0r\0\r\0\n\0";
        assert_eq!(parse_distro_list(text), ["Ubuntu", "boinc-buda-runner"]);
        assert!(parse_distro_list("").is_empty());
    }

    #[test]
    fn info_answers_are_read_per_engine() {
        let podman = parse_info(EngineKind::Podman, "4.3.1".into(), "cgroupfs|v1|false");
        assert_eq!(
            podman,
            EngineInfo {
                version: "4.3.1".into(),
                cgroup_driver: "cgroupfs".into(),
                cgroup_version: "1".into(),
                rootless: Some(false),
            }
        );
        let docker = parse_info(
            EngineKind::Docker,
            "24.0".into(),
            "systemd|2|name=seccomp,profile=default name=rootless name=cgroupns ",
        );
        assert_eq!(docker.cgroup_driver, "systemd");
        assert_eq!(docker.cgroup_version, "2");
        assert_eq!(docker.rootless, Some(true));
        let odd = parse_info(EngineKind::Podman, "5".into(), "garbage");
        assert_eq!(odd.cgroup_driver, "garbage");
        assert_eq!(odd.rootless, None);
    }
}
