//! `docker_wrapper --check`: what this host offers a Docker app, as the
//! user running the check (run it as the BOINC client's user to see what
//! its tasks see). Prints a report and says, by its exit status, whether a
//! task could run here.
use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use crate::engine::{self, Detection, EngineKind, Probe, DETECTION_IMAGE};
use crate::os;

/// Bounds each engine command of the check.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Prints the report; true when a task could run.
pub fn run() -> bool {
    let mut found = Vec::new();
    for (kind, engine) in engine::candidates(TIMEOUT) {
        let probe = engine.map(|engine| (engine.cli().display().to_string(), engine.probe()));
        found.push((kind, probe));
    }
    let wsl = cfg!(windows).then(|| engine::wsl_distros(TIMEOUT));
    let report = report(&user(), cgroup_of_host(), wsl, &found);
    print!("{}", report.text);
    report.usable
}

struct Report {
    text: String,
    usable: bool,
}

/// One engine: its CLI and what it answered, or why there is none.
type Found = (EngineKind, Result<(String, Probe), String>);

fn report(
    user: &str,
    cgroup: Option<String>,
    wsl: Option<Result<(Vec<String>, &'static str), String>>,
    found: &[Found],
) -> Report {
    let mut lines = vec![format!("user: {user}")];
    if let Some(cgroup) = cgroup {
        lines.push(format!("host cgroups: {cgroup}"));
    }
    lines.extend(wsl.map(wsl_line));
    let mut usable = None;
    for (kind, probe) in found {
        let works = engine_lines(*kind, probe, user, &mut lines);
        if works && usable.is_none() {
            usable = Some(*kind);
        }
    }
    lines.push(match usable {
        Some(kind) => format!("a task could run here, on {kind}"),
        None => format!("no task can run here as {user}: no engine it can use"),
    });
    let mut text = String::new();
    for line in lines {
        let _ = writeln!(text, "{line}");
    }
    Report {
        text,
        usable: usable.is_some(),
    }
}

fn wsl_line(wsl: Result<(Vec<String>, &'static str), String>) -> String {
    match wsl {
        Ok((distros, preferred)) if distros.is_empty() => {
            format!("WSL distros: none (the BOINC client's installer offers {preferred})")
        }
        Ok((distros, preferred)) => format!(
            "WSL distros: {}; used: {}",
            distros.join(", "),
            if distros.iter().any(|d| d == preferred) {
                preferred.to_string()
            } else {
                "the first in which the BOINC client finds Podman or Docker".to_string()
            }
        ),
        Err(why) => format!("WSL distros: cannot list them: {why}"),
    }
}

/// What one engine is and whether this user can run a task on it.
fn engine_lines(
    kind: EngineKind,
    probe: &Result<(String, Probe), String>,
    user: &str,
    lines: &mut Vec<String>,
) -> bool {
    let (cli, probe) = match probe {
        Ok(found) => found,
        Err(why) => {
            lines.push(format!("{kind}: not found ({why})"));
            return false;
        }
    };
    let info = match &probe.reach {
        Ok(info) => info,
        Err(why) => {
            lines.push(format!(
                "{kind} ({cli}): cannot be reached by {user}: {why}"
            ));
            return false;
        }
    };
    let rootless = match info.rootless {
        Some(true) => "rootless",
        Some(false) => "rootful",
        None => "rootless or not: unknown",
    };
    let unknown = |s: &str| {
        if s.is_empty() {
            "unknown".to_string()
        } else {
            s.to_string()
        }
    };
    lines.push(format!(
        "{kind} ({cli}): version {}, {rootless}, cgroup v{} with the {} driver",
        info.version,
        unknown(&info.cgroup_version),
        unknown(&info.cgroup_driver)
    ));
    let (works, detection) = match &probe.detection_image {
        Some(Detection::Runs) => (
            true,
            format!("present and runs (the BOINC 8.2 client's detection will find {kind})"),
        ),
        Some(Detection::Absent) => (
            true,
            "not present; the BOINC 8.2 client's detection runs it and pulls it from Docker Hub first, which needs a registry".to_string(),
        ),
        Some(Detection::Fails(why)) => (false, format!("present but does not run: {why}")),
        None => (true, "cannot tell whether it is present".to_string()),
    };
    lines.push(format!("  {DETECTION_IMAGE}: {detection}"));
    works
}

fn user() -> String {
    let (uid, _) = os::user_and_group();
    if cfg!(windows) {
        return std::env::var("USERNAME").unwrap_or_else(|_| "this user".into());
    }
    match engine::user_name(uid) {
        Some(name) => format!("{name} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

/// The host's cgroup hierarchy, as the engines on it see it.
fn cgroup_of_host() -> Option<String> {
    if cfg!(windows) {
        return None;
    }
    let root = Path::new("/sys/fs/cgroup");
    Some(if root.join("cgroup.controllers").exists() {
        "v2 (unified)".into()
    } else if root.join("unified").is_dir() {
        "v1 (hybrid, with a v2 hierarchy beside it)".into()
    } else if root.is_dir() {
        "v1".into()
    } else {
        "none mounted at /sys/fs/cgroup".into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineInfo;

    fn info(rootless: Option<bool>) -> EngineInfo {
        EngineInfo {
            version: "4.3.1".into(),
            cgroup_driver: "cgroupfs".into(),
            cgroup_version: "1".into(),
            rootless,
        }
    }

    fn probe(
        reach: Result<EngineInfo, String>,
        image: Option<Detection>,
    ) -> Result<(String, Probe), String> {
        Ok((
            "/usr/bin/x".into(),
            Probe {
                reach,
                detection_image: image,
            },
        ))
    }

    #[test]
    fn a_reachable_engine_makes_the_host_usable() {
        let found = [
            (EngineKind::Podman, Err("podman is not in PATH".into())),
            (
                EngineKind::Docker,
                probe(Ok(info(Some(false))), Some(Detection::Absent)),
            ),
        ];
        let r = report("boinc (uid 102)", Some("v1".into()), None, &found);
        assert!(r.usable, "{}", r.text);
        assert!(r.text.contains("Podman: not found"), "{}", r.text);
        assert!(
            r.text.contains(
                "Docker (/usr/bin/x): version 4.3.1, rootful, cgroup v1 with the cgroupfs driver"
            ),
            "{}",
            r.text
        );
        assert!(
            r.text.contains("a task could run here, on Docker"),
            "{}",
            r.text
        );
    }

    #[test]
    fn no_reachable_engine_or_a_failing_detection_image_is_not_usable() {
        let found = [
            (
                EngineKind::Podman,
                probe(
                    Ok(info(Some(true))),
                    Some(Detection::Fails("no Hello".into())),
                ),
            ),
            (
                EngineKind::Docker,
                probe(Err("permission denied".into()), None),
            ),
        ];
        let r = report("boinc (uid 102)", None, None, &found);
        assert!(!r.usable, "{}", r.text);
        assert!(
            r.text
                .contains("cannot be reached by boinc (uid 102): permission denied"),
            "{}",
            r.text
        );
        assert!(
            r.text.contains("present but does not run: no Hello"),
            "{}",
            r.text
        );
        assert!(r.text.contains("no task can run here"), "{}", r.text);
    }

    #[test]
    fn wsl_distros_name_the_one_used() {
        let distros = Some(Ok((
            vec!["Ubuntu".into(), "boinc-buda-runner".into()],
            "boinc-buda-runner",
        )));
        let r = report("me", None, distros, &[]);
        assert!(
            r.text
                .contains("WSL distros: Ubuntu, boinc-buda-runner; used: boinc-buda-runner"),
            "{}",
            r.text
        );
        let r = report("me", None, Some(Err("wsl is not installed".into())), &[]);
        assert!(
            r.text.contains("cannot list them: wsl is not installed"),
            "{}",
            r.text
        );
        assert!(!r.usable);
    }
}
