//! Background CPU priority for containers. The client runs apps at nice 19 /
//! SCHED_IDLE, but a container is a child of the engine, and a low
//! `--cpu-shares` only ranks it against other containers: the engine's
//! cgroup still competes with the volunteer's processes as an equal. A
//! parent cgroup marked idle (`cpu.idle`, or the lowest weight on kernels
//! without it) makes the container use only CPU time nobody else wants.
use std::fs;
use std::path::{Path, PathBuf};

/// Name of the parent cgroup (cgroupfs driver) or slice (systemd driver).
const PARENT: &str = "boinc_wrapper";
const ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupDriver {
    Cgroupfs,
    Systemd,
}

impl CgroupDriver {
    /// From `docker info {{.CgroupDriver}}` / `podman info {{.Host.CgroupManager}}`.
    pub fn parse(text: &str) -> Option<CgroupDriver> {
        match text.trim() {
            "cgroupfs" => Some(CgroupDriver::Cgroupfs),
            "systemd" => Some(CgroupDriver::Systemd),
            _ => None,
        }
    }
}

/// The `--cgroup-parent` value for an idle parent, creating and configuring
/// it where we may (root, cgroupfs driver); None when there is none to use.
pub fn idle_parent(driver: CgroupDriver) -> Option<String> {
    idle_parent_in(Path::new(ROOT), driver)
}

fn idle_parent_in(root: &Path, driver: CgroupDriver) -> Option<String> {
    let (name, value) = match driver {
        CgroupDriver::Cgroupfs => (PARENT.to_string(), format!("/{PARENT}")),
        CgroupDriver::Systemd => (format!("{PARENT}.slice"), format!("{PARENT}.slice")),
    };
    let dir = cpu_controller_dir(root)?.join(&name);
    if driver == CgroupDriver::Cgroupfs {
        // runc creates missing parents with default weights; ours must exist first.
        if let Err(err) = fs::create_dir_all(&dir) {
            log::debug!("cannot create {}: {err}", dir.display());
        }
    }
    if is_idle(&dir) || make_idle(&dir) {
        Some(value)
    } else {
        log::info!(
            "containers run at normal CPU priority: {} is missing or not idle (see README, Background priority)",
            dir.display()
        );
        None
    }
}

/// Where the cpu controller is: the v2 unified root, or the v1 cpu mount.
fn cpu_controller_dir(root: &Path) -> Option<PathBuf> {
    if root.join("cgroup.controllers").is_file() {
        return Some(root.to_path_buf());
    }
    ["cpu", "cpu,cpuacct", "cpuacct,cpu"]
        .iter()
        .map(|m| root.join(m))
        .find(|d| d.join("cpu.shares").is_file())
}

fn is_idle(dir: &Path) -> bool {
    let read = |file: &str| {
        fs::read_to_string(dir.join(file))
            .ok()
            .map(|s| s.trim().to_string())
    };
    read("cpu.idle").as_deref() == Some("1")
        || read("cpu.weight").as_deref() == Some("1")
        || read("cpu.shares").as_deref() == Some("2")
}

/// cpu.idle where the kernel has it (5.15+), else the lowest weight.
fn make_idle(dir: &Path) -> bool {
    let write = |file: &str, value: &str| fs::write(dir.join(file), value).is_ok();
    (dir.join("cpu.idle").exists() && write("cpu.idle", "1"))
        || (dir.join("cpu.weight").exists() && write("cpu.weight", "1"))
        || (dir.join("cpu.shares").exists() && write("cpu.shares", "2"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TestDir;

    fn fake_v1(name: &str) -> TestDir {
        let root = TestDir::new(&format!("bg-{name}"));
        fs::create_dir_all(root.0.join("cpu")).unwrap();
        fs::write(root.0.join("cpu/cpu.shares"), "1024").unwrap();
        root
    }

    #[test]
    fn cgroupfs_parent_is_created_and_made_idle() {
        let tmp = fake_v1("cgroupfs");
        let root = &tmp.0;
        // A fake cgroup fs has no kernel-made files in new dirs: pretend cpu.idle exists.
        fs::create_dir_all(root.join("cpu/boinc_wrapper")).unwrap();
        fs::write(root.join("cpu/boinc_wrapper/cpu.idle"), "0").unwrap();
        assert_eq!(
            idle_parent_in(root, CgroupDriver::Cgroupfs).as_deref(),
            Some("/boinc_wrapper")
        );
        assert_eq!(
            fs::read_to_string(root.join("cpu/boinc_wrapper/cpu.idle")).unwrap(),
            "1"
        );
    }

    #[test]
    fn a_systemd_slice_is_used_only_when_the_host_made_it_idle() {
        let tmp = fake_v1("systemd");
        let root = &tmp.0;
        assert_eq!(idle_parent_in(root, CgroupDriver::Systemd), None);
        fs::create_dir_all(root.join("cpu/boinc_wrapper.slice")).unwrap();
        fs::write(root.join("cpu/boinc_wrapper.slice/cpu.shares"), "2").unwrap();
        assert_eq!(
            idle_parent_in(root, CgroupDriver::Systemd).as_deref(),
            Some("boinc_wrapper.slice")
        );
    }

    #[test]
    fn drivers() {
        assert_eq!(
            CgroupDriver::parse("systemd\n"),
            Some(CgroupDriver::Systemd)
        );
        assert_eq!(
            CgroupDriver::parse("cgroupfs"),
            Some(CgroupDriver::Cgroupfs)
        );
        assert_eq!(CgroupDriver::parse(""), None);
    }
}
