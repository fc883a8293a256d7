//! What the engine is on this host: its version (for the log, and for the
//! flags it knows) and its cgroup driver (for the idle parent cgroup). Both
//! change only with the engine, so they are asked once and remembered for
//! every task of the host in a small file, under a key read from the file
//! system without running a command: the CLI's file, the Docker daemon's
//! socket and pid file, Podman's configuration files, the environment that
//! points either elsewhere, the boot and the user. A task whose key matches
//! asks the engine nothing for them; anything that could change an answer
//! changes the key, and a stale answer that slips through is caught where it
//! matters (a refused `run` asks again, see `supervisor::recover`).
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Engine, EngineError, EngineKind};
use crate::host::background::CgroupDriver;
use crate::os;
use crate::slot::io as slot_io;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub kind: EngineKind,
    pub version: String,
    /// None where it is not asked (see `Engine::cgroup_driver_unused`) or the
    /// engine names a driver we do not know.
    pub cgroup_driver: Option<CgroupDriver>,
}

/// Facts, and whether they were remembered (not asked in this run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub facts: Facts,
    pub remembered: bool,
}

impl std::fmt::Display for Facts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let driver = match driver_name(self.cgroup_driver) {
            "" => "unknown",
            name => name,
        };
        write!(f, "{} {}, cgroup driver {driver}", self.kind, self.version)
    }
}

impl Facts {
    /// Whether `run --pull never` is understood: Docker since 20.10, Podman
    /// since 2.0. A version we cannot read is taken for a recent one (a
    /// build from source names itself "dev").
    pub fn knows_pull_never(&self) -> bool {
        let since = match self.kind {
            EngineKind::Docker => (20, 10),
            EngineKind::Podman => (2, 0),
        };
        major_minor(&self.version).map_or(true, |version| version >= since)
    }
}

/// As the engines name it (`CgroupDriver::parse` reads it back); "" for none.
fn driver_name(driver: Option<CgroupDriver>) -> &'static str {
    match driver {
        Some(CgroupDriver::Cgroupfs) => "cgroupfs",
        Some(CgroupDriver::Systemd) => "systemd",
        None => "",
    }
}

/// "20.10.24+dfsg1" -> (20, 10).
fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// A version as engines print it; anything else in the file is not ours.
fn plausible_version(version: &str) -> bool {
    (1..=64).contains(&version.len())
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+~-".contains(&b))
}

/// Ours are well under 1 KiB.
const MAX_FILE_BYTES: u64 = 16 * 1024;

/// The file as written: the key it was asked under, and the answers.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    key: Vec<String>,
    version: String,
    /// "" when none.
    cgroup_driver: String,
}

impl Engine {
    /// The engine's version; fails when the CLI is missing or (Docker) the daemon is down.
    pub fn version(&self) -> Result<String, EngineError> {
        let format = match self.kind {
            EngineKind::Docker => "{{.Server.Version}}",
            EngineKind::Podman => "{{.Client.Version}}",
        };
        match self.run(["version", "--format", format]) {
            Ok(out) => Ok(out.stdout.trim().to_string()),
            Err(EngineError::Failed {
                detail, failure, ..
            }) => Err(self.does_not_answer(&detail, failure)),
            Err(other) => Err(other),
        }
    }

    /// Why the cgroup driver is of no use, if it is not: rootless Podman
    /// has no cgroup hierarchy of its own to place us in, and on Windows the
    /// engine's cgroups are inside WSL's VM, not under this host's
    /// /sys/fs/cgroup.
    pub(super) fn cgroup_driver_unused(&self) -> Option<&'static str> {
        if cfg!(windows) {
            return Some("the engine runs in WSL");
        }
        if self.in_vm {
            return Some("the engine runs in a VM");
        }
        // A helper runs Podman as its own (unprivileged) user.
        let rootless_podman = self.kind == EngineKind::Podman
            && (self.helper.is_some() || os::user_and_group().0 != 0);
        rootless_podman.then_some("rootless Podman")
    }

    /// One command: `info` for both facts where the driver is of use, else
    /// `version` (Podman's `info` is slow: it asks the package manager).
    /// The bool: whether the answers are whole (worth recording).
    pub(super) fn ask_facts(&self) -> Result<(Facts, bool), EngineError> {
        let version_only = |complete| {
            Ok((
                Facts {
                    kind: self.kind,
                    version: self.version()?,
                    cgroup_driver: None,
                },
                complete,
            ))
        };
        if self.cgroup_driver_unused().is_some() {
            return version_only(true);
        }
        let format = match self.kind {
            EngineKind::Docker => "{{.ServerVersion}}|{{.CgroupDriver}}",
            EngineKind::Podman => "{{.Version.Version}}|{{.Host.CgroupManager}}",
        };
        match self.run(["info", "--format", format]) {
            Ok(out) => match out.stdout.trim().split_once('|') {
                Some((version, driver)) if plausible_version(version) => Ok((
                    Facts {
                        kind: self.kind,
                        version: version.to_string(),
                        cgroup_driver: CgroupDriver::parse(driver),
                    },
                    true,
                )),
                _ => version_only(false),
            },
            // Docker's `info` with the daemon out of reach says only that
            // its template failed; `version` says why.
            Err(EngineError::Failed { .. }) => version_only(false),
            Err(err) => Err(err),
        }
    }

    /// What the facts depend on, as the file system shows it now; None where
    /// the engine's files are not this host's (a shell into WSL).
    pub(super) fn facts_key(&self) -> Option<Vec<String>> {
        if !self.transport.is_local() {
            return None;
        }
        // The CLI as resolved: a symlink switched to another engine build
        // changes the target, an upgrade in place its inode or times.
        let cli = fs::canonicalize(&self.cli).ok()?;
        let mut key = vec![
            format!("engine {}", self.kind.cli_name()),
            format!("uid {}", os::user_and_group().0),
            format!("boot {}", boot_id()),
            format!("cli {} {}", cli.display(), stamp(&cli)),
        ];
        // Another helper may run the engine as another user, with other storage.
        if let Some(helper) = &self.helper {
            key.push(format!("helper {} {}", helper.display(), stamp(helper)));
        }
        let env = |name: &str| std::env::var_os(name).map(PathBuf::from);
        let (vars, files) = match self.kind {
            EngineKind::Docker => (DOCKER_VARS, docker_files(&env)),
            EngineKind::Podman => (PODMAN_VARS, podman_files(&env)),
        };
        for var in vars {
            let value = env(var).unwrap_or_default();
            key.push(format!("env {var}={}", value.display()));
        }
        for file in files {
            key.push(format!("file {} {}", file.display(), stamp(&file)));
        }
        Some(key)
    }
}

/// Variables that point the CLI at another engine or configuration.
const DOCKER_VARS: &[&str] = &["DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG"];
const PODMAN_VARS: &[&str] = &[
    "CONTAINER_HOST",
    "CONTAINER_CONNECTION",
    "CONTAINERS_CONF",
    "CONTAINERS_CONF_OVERRIDE",
];

/// The daemon's socket and the pid file beside it: dockerd writes its pid
/// file at each start, and a restarted daemon (maybe upgraded, maybe with
/// another cgroup driver) makes a new socket unless systemd holds it. The
/// CLI's config names the current context.
fn docker_files(env: &dyn Fn(&str) -> Option<PathBuf>) -> Vec<PathBuf> {
    let socket = env("DOCKER_HOST")
        .and_then(|host| host.to_str()?.strip_prefix("unix://").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"));
    let pid_file = socket.with_file_name("docker.pid");
    let config = env("DOCKER_CONFIG")
        .or_else(|| env("HOME").map(|home| home.join(".docker")))
        .map(|dir| dir.join("config.json"));
    [Some(socket), Some(pid_file), config]
        .into_iter()
        .flatten()
        .collect()
}

/// The containers.conf files (and drop-in dirs) Podman reads, system-wide
/// and the user's: they decide its cgroup manager.
fn podman_files(env: &dyn Fn(&str) -> Option<PathBuf>) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = [
        "/usr/share/containers/containers.conf",
        "/usr/share/containers/containers.conf.d",
        "/etc/containers/containers.conf",
        "/etc/containers/containers.conf.d",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    let user = env("XDG_CONFIG_HOME").or_else(|| env("HOME").map(|home| home.join(".config")));
    if let Some(dir) = user {
        files.push(dir.join("containers/containers.conf"));
        files.push(dir.join("containers/containers.conf.d"));
    }
    files.extend(env("CONTAINERS_CONF"));
    files.extend(env("CONTAINERS_CONF_OVERRIDE"));
    files
}

/// Changes at every boot (a new kernel, cgroup layout or engine service).
fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_string())
        .unwrap_or_default()
}

/// A file's identity and times: replaced, rewritten or touched, it differs.
fn stamp(path: &Path) -> String {
    let Ok(meta) = fs::metadata(path) else {
        return "absent".into();
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        format!(
            "{}:{} {} {}.{} {}.{}",
            meta.dev(),
            meta.ino(),
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec()
        )
    }
    #[cfg(not(unix))]
    {
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .unwrap_or_default();
        format!("{} {}", meta.len(), modified.as_nanos())
    }
}

/// The facts recorded under `key`; None when there are none, they were
/// recorded under another key, or the file is not one we wrote (it is read
/// as any file another program could have written: bounded, a regular file
/// only, every field checked).
pub(super) fn load(file: &Path, key: &[String], kind: EngineKind) -> Option<Facts> {
    let text = slot_io::read_text(file, MAX_FILE_BYTES).ok()?;
    let stored: Stored = toml::from_str(&text).ok()?;
    let cgroup_driver = match stored.cgroup_driver.as_str() {
        "" => None,
        driver => Some(CgroupDriver::parse(driver)?),
    };
    if stored.key != key || !plausible_version(&stored.version) {
        return None;
    }
    Some(Facts {
        kind,
        version: stored.version,
        cgroup_driver,
    })
}

/// Records the facts for the host's other tasks. A file of its own under a
/// name no other process uses, renamed into place: a concurrent task reads
/// the old record or the new one, never half of one. Failing costs only
/// the next task a question, so it is only logged.
pub(super) fn store(file: &Path, key: &[String], facts: &Facts) {
    let stored = Stored {
        key: key.to_vec(),
        version: facts.version.clone(),
        cgroup_driver: driver_name(facts.cgroup_driver).into(),
    };
    let mut temp = file.as_os_str().to_os_string();
    temp.push(format!(".{}.tmp", std::process::id()));
    let temp = PathBuf::from(temp);
    // One a process of the same pid left when it died.
    let _ = fs::remove_file(&temp);
    let written = toml::to_string(&stored)
        .map_err(std::io::Error::other)
        .and_then(|text| {
            // create_new: never through a link planted under that name.
            let mut out = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)?;
            out.write_all(text.as_bytes())
        })
        .and_then(|()| fs::rename(&temp, file));
    if let Err(err) = written {
        let _ = fs::remove_file(&temp);
        log::debug!(
            "cannot record the engine's facts in {}: {err}",
            file.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TestDir;

    fn facts(version: &str, driver: Option<CgroupDriver>) -> Facts {
        Facts {
            kind: EngineKind::Podman,
            version: version.into(),
            cgroup_driver: driver,
        }
    }

    fn key(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn facts_are_read_back_only_under_the_same_key() {
        let dir = TestDir::new("facts-key");
        let file = dir.0.join("facts.toml");
        let asked = facts("4.3.1", Some(CgroupDriver::Cgroupfs));
        let key_now = key(&["engine podman", "cli /usr/bin/podman 1:2 3 4.5 6.7"]);
        assert_eq!(load(&file, &key_now, EngineKind::Podman), None);
        store(&file, &key_now, &asked);
        assert_eq!(
            load(&file, &key_now, EngineKind::Podman),
            Some(asked.clone())
        );
        let upgraded = key(&["engine podman", "cli /usr/bin/podman 1:9 3 8.5 8.7"]);
        assert_eq!(load(&file, &upgraded, EngineKind::Podman), None);
        let none = facts("4.3.1", None);
        store(&file, &upgraded, &none);
        assert_eq!(load(&file, &upgraded, EngineKind::Podman), Some(none));
        assert_eq!(load(&file, &key_now, EngineKind::Podman), None);
        // Nothing is left beside it.
        assert_eq!(fs::read_dir(&dir.0).unwrap().count(), 1);
    }

    #[test]
    fn a_file_we_did_not_write_is_no_record() {
        let dir = TestDir::new("facts-hostile");
        let file = dir.0.join("facts.toml");
        let key_now = key(&["k"]);
        let bad = [
            "garbage [[[".to_string(),
            "key = [\"k\"]\nversion = \"4.3.1\"\n".into(),
            "key = [\"k\"]\nversion = \"$(rm -rf /)\"\ncgroup_driver = \"\"\n".into(),
            "key = [\"k\"]\nversion = \"\"\ncgroup_driver = \"\"\n".into(),
            "key = [\"k\"]\nversion = \"4.3.1\"\ncgroup_driver = \"/sys/fs/cgroup\"\n".into(),
            format!(
                "key = [\"k\"]\nversion = \"4.3.1\"\ncgroup_driver = \"\"\n#{}\n",
                "x".repeat(MAX_FILE_BYTES as usize)
            ),
        ];
        for text in &bad {
            fs::write(&file, text).unwrap();
            assert_eq!(
                load(&file, &key_now, EngineKind::Podman),
                None,
                "{text:.80}"
            );
        }
        fs::write(
            &file,
            "key = [\"k\"]\nversion = \"4.3.1\"\ncgroup_driver = \"systemd\"\n",
        )
        .unwrap();
        assert_eq!(
            load(&file, &key_now, EngineKind::Podman),
            Some(facts("4.3.1", Some(CgroupDriver::Systemd)))
        );
        // A link planted under the name is not followed.
        fs::remove_file(&file).unwrap();
        let elsewhere = dir.0.join("elsewhere");
        fs::write(
            &elsewhere,
            "key = [\"k\"]\nversion = \"4.3.1\"\ncgroup_driver = \"\"\n",
        )
        .unwrap();
        std::os::unix::fs::symlink(&elsewhere, &file).unwrap();
        assert_eq!(load(&file, &key_now, EngineKind::Podman), None);
        // ... and writing replaces the link, not the file it points to.
        store(&file, &key_now, &facts("5.0.0", None));
        assert!(fs::read_to_string(&elsewhere).unwrap().contains("4.3.1"));
        assert_eq!(
            load(&file, &key_now, EngineKind::Podman),
            Some(facts("5.0.0", None))
        );
    }

    fn engine(kind: EngineKind, cli: &Path) -> Engine {
        let timeout = std::time::Duration::from_secs(5);
        Engine::new(kind, cli.to_path_buf(), timeout, timeout)
    }

    #[test]
    fn the_key_changes_with_the_cli() {
        let dir = TestDir::new("facts-cli");
        let cli = dir.0.join("podman");
        fs::write(&cli, "#!/bin/sh\n").unwrap();
        let before = engine(EngineKind::Podman, &cli).facts_key().unwrap();
        assert_eq!(
            engine(EngineKind::Podman, &cli).facts_key().unwrap(),
            before
        );
        // An upgrade: a new file renamed over the old one.
        let new = dir.0.join("podman.new");
        fs::write(&new, "#!/bin/sh\n# 5.0\n").unwrap();
        fs::rename(&new, &cli).unwrap();
        assert_ne!(
            engine(EngineKind::Podman, &cli).facts_key().unwrap(),
            before
        );
        assert!(before.iter().any(|part| part.starts_with("boot ")));
    }

    #[test]
    fn the_key_follows_the_docker_daemon() {
        let dir = TestDir::new("facts-daemon");
        let socket = dir.0.join("docker.sock");
        let env = |name: &str| {
            (name == "DOCKER_HOST").then(|| PathBuf::from(format!("unix://{}", socket.display())))
        };
        let files = docker_files(&env);
        assert_eq!(files[..2], [socket.clone(), dir.0.join("docker.pid")]);
        // A restarted daemon writes its pid file anew.
        let stamps = || files.iter().map(|f| stamp(f)).collect::<Vec<_>>();
        let down = stamps();
        fs::write(dir.0.join("docker.pid"), "123\n").unwrap();
        let up = stamps();
        assert_ne!(down, up);
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::remove_file(dir.0.join("docker.pid")).unwrap();
        fs::write(dir.0.join("docker.pid"), "456\n").unwrap();
        assert_ne!(stamps(), up);
        // Without DOCKER_HOST: the default socket.
        assert_eq!(
            docker_files(&|_| None)[0],
            PathBuf::from("/var/run/docker.sock")
        );
    }

    #[test]
    fn podman_configuration_is_in_the_key() {
        let env = |name: &str| match name {
            "HOME" => Some(PathBuf::from("/home/boinc")),
            "CONTAINERS_CONF" => Some(PathBuf::from("/opt/conf")),
            _ => None,
        };
        let files = podman_files(&env);
        for expected in [
            "/etc/containers/containers.conf",
            "/usr/share/containers/containers.conf",
            "/home/boinc/.config/containers/containers.conf",
            "/opt/conf",
        ] {
            assert!(
                files.contains(&PathBuf::from(expected)),
                "{expected}: {files:?}"
            );
        }
    }

    #[test]
    fn pull_never_by_version() {
        let docker = |version: &str| Facts {
            kind: EngineKind::Docker,
            version: version.into(),
            cgroup_driver: None,
        };
        assert!(docker("20.10.24+dfsg1").knows_pull_never());
        assert!(docker("28.2.2").knows_pull_never());
        assert!(!docker("19.03.15").knows_pull_never());
        assert!(docker("dev").knows_pull_never());
        assert!(facts("4.3.1", None).knows_pull_never());
        assert!(!facts("1.6.4", None).knows_pull_never());
    }
}
