//! Running as the unprivileged BOINC user: the BOINC client on a volunteer's
//! Linux host runs as `boinc`, so the wrapper and its engine CLI do too
//! (rootless Podman, Docker through the `docker` group).

use std::fs;
use std::os::unix::fs::lchown;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's boinc-client package creates this user.
pub const BOINC_USER: &str = "boinc";

/// A host user to run commands as, with what rootless Podman needs of its
/// environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    /// `XDG_RUNTIME_DIR`: no login session creates it for a service user.
    pub runtime_dir: PathBuf,
}

impl HostUser {
    /// The user from /etc/passwd, checked for what rootless engines need;
    /// Err says what is missing and how `.ci/setup` provides it.
    pub fn find(name: &str) -> Result<HostUser, String> {
        let setup = "run `bash .ci/setup` (it installs boinc-client, adds subordinate ids and the docker group)";
        if !is_root() {
            return Err(format!(
                "tests as user {name} need to start as root (to switch user with setpriv)"
            ));
        }
        let passwd = fs::read_to_string("/etc/passwd")
            .map_err(|e| format!("cannot read /etc/passwd: {e}"))?;
        let fields: Vec<&str> = passwd
            .lines()
            .map(|line| line.split(':').collect::<Vec<_>>())
            .find(|f| f.first() == Some(&name) && f.len() >= 6)
            .ok_or_else(|| format!("there is no user {name}: {setup}"))?;
        let number = |text: &str| {
            text.parse::<u32>()
                .map_err(|_| format!("bad /etc/passwd line for {name}"))
        };
        let (uid, gid) = (number(fields[2])?, number(fields[3])?);
        let runtime_dir = PathBuf::from(format!("/run/user/{uid}"));
        if !runtime_dir.is_dir() {
            return Err(format!("{} is missing: {setup}", runtime_dir.display()));
        }
        let subuids = fs::read_to_string("/etc/subuid").unwrap_or_default();
        if !subuids
            .lines()
            .any(|line| line.starts_with(&format!("{name}:")))
        {
            return Err(format!(
                "{name} has no subordinate uids in /etc/subuid: {setup}"
            ));
        }
        Ok(HostUser {
            name: name.to_string(),
            uid,
            gid,
            home: PathBuf::from(fields[5]),
            runtime_dir,
        })
    }

    /// `program args...` as this user: setpriv execs it (same pid, so the
    /// emulator's signals reach the program itself), with its groups.
    pub fn command(&self, program: impl AsRef<Path>) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid",
            &self.uid.to_string(),
            "--regid",
            &self.gid.to_string(),
            "--init-groups",
            "--",
        ])
        .arg(program.as_ref())
        .env("HOME", &self.home)
        .env("XDG_RUNTIME_DIR", &self.runtime_dir)
        .env("USER", &self.name)
        .env("LOGNAME", &self.name)
        // Root's Podman settings must not leak into the user's.
        .env_remove("CONTAINERS_STORAGE_CONF")
        .env_remove("TMPDIR");
        cmd
    }

    /// Gives `dir` and everything in it to this user, as the client's data
    /// dir belongs to it.
    pub fn own_tree(&self, dir: &Path) -> std::io::Result<()> {
        lchown(dir, Some(self.uid), Some(self.gid))?;
        if fs::symlink_metadata(dir)?.is_dir() {
            for entry in fs::read_dir(dir)? {
                self.own_tree(&entry?.path())?;
            }
        }
        Ok(())
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
