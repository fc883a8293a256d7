//! Which host paths a job may have mounted: judged on where the path really
//! leads (see `host_path`), for job.toml's `mount` entries and the `-v` and
//! `--mount` flags of `create_args`/`build_args`.
use std::path::{Path, PathBuf};

use crate::slot::host_path;

/// Host directories whose contents would give a job the host: system
/// configuration and secrets, the kernel's views, the engines' state and
/// sockets, and the volunteer's own files. A mount of one of them, of
/// anything inside one, or of a directory holding one is refused.
const SENSITIVE: &[&str] = &[
    "/etc",
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/root",
    "/home",
    "/run",
    "/var/run",
    "/var/lib/docker",
    "/var/lib/containers",
];

/// Why mounting the host path `source` (relative paths are from `base`, the
/// slot) is unsafe, or None.
pub fn unsafe_source(source: &str, base: &Path) -> Option<String> {
    if source.contains("docker.sock") || source.contains("podman.sock") {
        return Some(format!("'{source}' is a container engine's socket"));
    }
    let written = host_path::normalize(&base.join(source));
    // The kernel's per-process views (root, cwd, fd, ns, ...) lead anywhere.
    if written.starts_with("/proc") {
        return Some(format!("'{source}' is under the host's /proc"));
    }
    let resolved = match host_path::resolve(base, Path::new(source)) {
        Ok(path) => path,
        Err(e) => return Some(format!("'{source}' cannot be resolved on the host ({e})")),
    };
    if in_slot(&resolved, base) {
        return None;
    }
    let shown = if resolved == Path::new(source) {
        String::new()
    } else {
        format!(" (it leads to {})", resolved.display())
    };
    if resolved == Path::new("/") {
        return Some(format!("'{source}' is the host's root directory{shown}"));
    }
    for dir in SENSITIVE.iter().map(Path::new) {
        if resolved.starts_with(dir) {
            return Some(format!(
                "'{source}' exposes the host's {}{shown}",
                dir.display()
            ));
        }
        if dir.starts_with(&resolved) {
            return Some(format!(
                "'{source}' holds the host's {}{shown}",
                dir.display()
            ));
        }
    }
    if is_socket(&resolved) {
        return Some(format!("'{source}' is a socket on the host{shown}"));
    }
    None
}

/// The slot is the job's own (it is mounted whole), wherever the volunteer
/// keeps the BOINC data directory, even under /home.
fn in_slot(resolved: &Path, base: &Path) -> bool {
    let slot = host_path::resolve(base, Path::new("."))
        .ok()
        .filter(|slot| slot != Path::new("/"));
    slot.is_some_and(|slot| resolved.starts_with(slot))
}

/// Mount options that change the host's files rather than the container's
/// view of them: Podman's `U` chowns the source to the container's user,
/// `z`/`Z` relabel it for SELinux (outside the slot, files other software
/// relies on); shared propagation carries mounts made in the container
/// back into the host's mount table.
fn unsafe_option(source: &str, option: &str, base: &Path) -> Option<String> {
    let (key, value) = option.split_once('=').unwrap_or((option, "true"));
    let key = key.trim();
    let on = !value.trim().eq_ignore_ascii_case("false");
    let propagation = if key.eq_ignore_ascii_case("bind-propagation") {
        value.trim()
    } else {
        key
    };
    if matches!(propagation, "shared" | "rshared") {
        return Some(format!(
            "option '{option}' would carry mounts made in the container back to the host at '{source}'"
        ));
    }
    if on && (key == "U" || key.eq_ignore_ascii_case("chown")) {
        return Some(format!(
            "option '{option}' would give the host's files at '{source}' to the container's user"
        ));
    }
    let relabel = key == "z" || key == "Z" || (key.eq_ignore_ascii_case("relabel") && on);
    let in_the_slot = || {
        host_path::resolve(base, Path::new(source)).is_ok_and(|resolved| in_slot(&resolved, base))
    };
    if relabel && !in_the_slot() {
        return Some(format!(
            "option '{option}' would relabel the host's files at '{source}'"
        ));
    }
    None
}

#[cfg(unix)]
fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

#[cfg(not(unix))]
fn is_socket(_: &Path) -> bool {
    false
}

/// A `-v`/`--volume` value or a job.toml `mount` entry:
/// `[source:]target[:options]`. A source that is not a path names an
/// engine volume, which holds no host files.
pub fn unsafe_volume(spec: &str, base: &Path) -> Option<String> {
    let (source, rest) = spec.split_once(':')?;
    if !is_host_path(source) {
        return None;
    }
    let options = rest.split_once(':').map_or("", |(_, options)| options);
    unsafe_source(source, base).or_else(|| {
        options
            .split(',')
            .filter(|o| !o.is_empty())
            .find_map(|o| unsafe_option(source, o, base))
    })
}

/// A `--mount` value: `type=bind,source=/x,target=/y,...` (type volume by default).
pub fn unsafe_mount_flag(spec: &str, base: &Path) -> Option<String> {
    let mut kind = "volume";
    let mut source = None;
    let mut options = Vec::new();
    for field in spec.split(',') {
        let (key, value) = field.split_once('=').unwrap_or((field, ""));
        match key.trim().to_ascii_lowercase().as_str() {
            "type" => kind = value,
            "source" | "src" => source = Some(value),
            "u" | "chown" | "relabel" | "bind-propagation" => options.push(field),
            // The local volume driver binds any host path given as its device.
            key if key.starts_with("volume-opt") || key == "volume-driver" => {
                return Some(format!("'{field}' lets the volume driver mount host paths"));
            }
            _ => {}
        }
    }
    match kind.to_ascii_lowercase().as_str() {
        "bind" => {
            let source = source.unwrap_or("");
            unsafe_source(source, base)
                .or_else(|| options.iter().find_map(|o| unsafe_option(source, o, base)))
        }
        // Podman: every host file a pattern matches; judge the fixed part.
        "glob" => unsafe_source(&glob_prefix(source.unwrap_or("")), base),
        "volume" | "tmpfs" | "ramfs" | "devpts" | "image" => None,
        other => Some(format!(
            "mount type '{other}' is not one this wrapper knows"
        )),
    }
}

/// The directory part of a glob before its first wildcard.
fn glob_prefix(pattern: &str) -> String {
    let fixed: PathBuf = Path::new(pattern)
        .components()
        .take_while(|c| !c.as_os_str().to_string_lossy().contains(['*', '?', '[']))
        .collect();
    fixed.to_string_lossy().into_owned()
}

/// Engines read a source as a host path when it is absolute or starts with
/// `.`; anything else names a volume.
fn is_host_path(source: &str) -> bool {
    source.starts_with('/') || source.starts_with('.') || source.starts_with('~')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TestDir;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn slot() -> PathBuf {
        PathBuf::from("/nonexistent-slot/slots/1")
    }

    #[test]
    fn spellings_of_root_and_system_dirs_are_refused() {
        for source in [
            "/",
            "/.",
            "//",
            "/./",
            "/etc/..",
            "/proc/self/root",
            "/proc/1/root",
            "/proc/self/cwd",
            "/proc/self/fd/3",
            "/proc/1/ns/net",
            "//etc",
            "/etc/../etc",
            "/etc/",
            "/etc/shadow",
            "/sys/fs/cgroup",
            "/dev/sda",
            "/var/run/docker.sock",
            "/run/podman/podman.sock",
            "/var",
            "/var/lib",
            "/var/lib/docker/volumes",
            "/root/.ssh",
            "/home",
            "/boot",
            "/run/user/1000",
            "../../../../../../etc",
        ] {
            assert!(
                unsafe_source(source, &slot()).is_some(),
                "{source} was allowed"
            );
        }
    }

    #[test]
    fn ordinary_dirs_pass() {
        for source in [
            "/opt/data",
            "/tmp/ref",
            "/usr/share/dict",
            "/var/tmp/x",
            "/data/set 1",
        ] {
            assert_eq!(unsafe_source(source, &slot()), None, "{source}");
        }
    }

    #[test]
    fn a_symlink_is_judged_by_its_target() {
        let tmp = TestDir::new("mountpolicy");
        let dir = &tmp.0;
        fs::create_dir_all(dir.join("data")).unwrap();
        symlink("/etc", dir.join("cfg")).unwrap();
        symlink("/", dir.join("root")).unwrap();
        assert!(unsafe_source(&format!("{}/cfg", dir.display()), dir).is_some());
        assert!(unsafe_source("root/etc/../", dir).is_some());
        assert!(unsafe_volume("./cfg:/x:ro", dir).is_some());
        assert_eq!(unsafe_volume("./data:/x:ro", dir), None);
        let why = unsafe_source(&format!("{}/cfg/passwd", dir.display()), dir).unwrap();
        assert!(why.contains("leads to /etc/passwd"), "{why}");
    }

    #[test]
    fn paths_in_the_slot_pass_wherever_the_slot_is() {
        let slot = Path::new("/home/volunteer/BOINC/slots/2");
        assert_eq!(unsafe_volume("./data:/data", slot), None);
        assert_eq!(unsafe_source("/home/volunteer/BOINC/slots/2/x", slot), None);
        assert!(unsafe_source("../../gui_rpc_auth.cfg", slot).is_some());
        assert!(unsafe_source("/home/volunteer", slot).is_some());
        assert!(
            unsafe_source("/etc", Path::new("/")).is_some(),
            "a slot at / must not allow everything"
        );
    }

    #[test]
    fn volume_specs() {
        for bad in [
            "/:/host",
            "/etc/:/x:ro",
            "/.:/x",
            "/proc/self/root:/x:rw,z",
            "//etc:/e",
        ] {
            assert!(unsafe_volume(bad, &slot()).is_some(), "{bad}");
        }
        for good in [
            "/opt/data:/data:ro",
            "/data",
            "myvolume:/data",
            "cache:/var/cache",
        ] {
            assert_eq!(unsafe_volume(good, &slot()), None, "{good}");
        }
    }

    #[test]
    fn options_that_change_host_files_are_refused() {
        let tmp = TestDir::new("mountopts");
        let slot = &tmp.0;
        fs::create_dir_all(slot.join("data")).unwrap();
        for bad in [
            "/opt/data:/d:U",
            "/opt/data:/d:ro,z",
            "/opt/data:/d:Z",
            "./data:/d:rw,U",
            "./data:/d:rshared",
            "/opt/data:/d:ro,shared",
        ] {
            assert!(unsafe_volume(bad, slot).is_some(), "{bad}");
        }
        for good in [
            "./data:/d:z",
            "./data:/d:Z,ro",
            "/opt/data:/d:ro,noexec",
            "/opt/data:/d:rslave",
            "./data:/d:private",
            "vol:/d:U",
        ] {
            assert_eq!(unsafe_volume(good, slot), None, "{good}");
        }
        for bad in [
            "type=bind,src=/opt/data,dst=/d,U=true",
            "type=bind,src=/opt/data,dst=/d,relabel=private",
            "type=bind,src=./data,dst=/d,chown",
            "type=bind,src=./data,dst=/d,bind-propagation=rshared",
        ] {
            assert!(unsafe_mount_flag(bad, slot).is_some(), "{bad}");
        }
        for good in [
            "type=bind,src=./data,dst=/d,relabel=shared",
            "type=bind,src=/opt/data,dst=/d,U=false",
            "type=bind,src=./data,dst=/d,bind-propagation=rslave",
        ] {
            assert_eq!(unsafe_mount_flag(good, slot), None, "{good}");
        }
    }

    #[test]
    fn mount_flag_specs() {
        for bad in [
            "type=bind,source=/,target=/host",
            "type=bind,src=/etc/shadow,dst=/s,ro",
            "src=/proc/self/root,type=bind,target=/x",
            "type=BIND,source=//etc,target=/x",
            "type=volume,dst=/x,volume-opt=type=none,volume-opt=o=bind,volume-opt=device=/",
            "type=glob,src=/etc/*,dst=/x",
            "type=proc,dst=/x",
        ] {
            assert!(unsafe_mount_flag(bad, &slot()).is_some(), "{bad}");
        }
        for good in [
            "type=bind,source=/opt/data,target=/d,readonly",
            "type=tmpfs,dst=/scratch",
            "type=volume,src=v,dst=/v",
            "dst=/anon",
        ] {
            assert_eq!(unsafe_mount_flag(good, &slot()), None, "{good}");
        }
    }
}
