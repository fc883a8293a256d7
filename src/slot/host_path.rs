//! Where a host path really leads. Rules about host paths (mount sources,
//! soft-link targets, image archives, the build context) must judge the
//! file the kernel would open, not the spelling: `/.`, `//etc`,
//! `/etc/../etc`, `/proc/self/root` and a symlink in a directory the job or
//! the project can write all name other files than their text suggests.
use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Symlinks followed before giving up, as the kernel's ELOOP limit.
const MAX_LINKS: usize = 40;

/// `path` with every symlink followed and `.`/`..` applied to the real
/// directories, like `realpath`, except that a missing tail is kept as
/// written (normalised): an output file or a mount source may not exist yet,
/// and what matters is where it would be created. Relative paths are taken
/// from `base`.
pub fn resolve(base: &Path, path: &Path) -> io::Result<PathBuf> {
    let full = if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    };
    if cfg!(windows) {
        // The engine runs in WSL: its paths are not this host's to follow.
        return Ok(normalize(&full));
    }
    let mut todo: VecDeque<OsString> = parts(&full);
    let mut resolved = PathBuf::from("/");
    let mut links = 0;
    let mut missing = false;
    while let Some(part) = todo.pop_front() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&part);
        if missing {
            resolved = candidate;
            continue;
        }
        match fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(io::Error::other(format!(
                        "{}: too many symlinks",
                        full.display()
                    )));
                }
                let target = fs::read_link(&candidate)?;
                if target.is_absolute() {
                    resolved = PathBuf::from("/");
                }
                for (i, p) in parts(&target).into_iter().enumerate() {
                    todo.insert(i, p);
                }
            }
            Ok(_) => resolved = candidate,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing = true;
                resolved = candidate;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(resolved)
}

/// The path's names, with `.` and the root dropped.
fn parts(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// Removes `.` and `..` without touching the file system.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TestDir;
    use std::os::unix::fs::symlink;

    /// A scratch dir and its canonical path (resolve's results are canonical).
    fn temp(name: &str) -> (TestDir, PathBuf) {
        let tmp = TestDir::new(&format!("hostpath-{name}"));
        let dir = tmp.0.canonicalize().unwrap();
        (tmp, dir)
    }

    fn r(path: &str) -> PathBuf {
        resolve(Path::new("/"), Path::new(path)).unwrap()
    }

    #[test]
    fn spellings_of_the_root_and_etc_resolve_to_them() {
        assert_eq!(r("/."), Path::new("/"));
        assert_eq!(r("//"), Path::new("/"));
        assert_eq!(r("/etc/.."), Path::new("/"));
        assert_eq!(r("//etc"), Path::new("/etc"));
        assert_eq!(r("/etc/../etc/"), Path::new("/etc"));
        assert_eq!(r("/proc/self/root"), Path::new("/"));
        assert_eq!(r("/proc/self/root/etc"), Path::new("/etc"));
        // Enough `..` to climb out of any working directory the test runs in.
        let up = "../".repeat(64);
        assert_eq!(r(&format!("/proc/self/cwd/{up}etc")), Path::new("/etc"));
    }

    #[test]
    fn symlinks_are_followed_and_a_missing_tail_kept() {
        let (_tmp, dir) = temp("links");
        fs::create_dir(dir.join("real")).unwrap();
        symlink(dir.join("real"), dir.join("abs")).unwrap();
        symlink("real/../..", dir.join("up")).unwrap();
        symlink("/etc", dir.join("etc")).unwrap();
        assert_eq!(
            resolve(&dir, Path::new("abs/x")).unwrap(),
            dir.join("real/x")
        );
        assert_eq!(
            resolve(&dir, Path::new("up")).unwrap(),
            dir.parent().unwrap()
        );
        assert_eq!(
            resolve(&dir, Path::new("etc/not-there/../shadow")).unwrap(),
            Path::new("/etc/shadow")
        );
        assert_eq!(
            resolve(&dir, Path::new("new/file")).unwrap(),
            dir.join("new/file")
        );
        symlink("loop", dir.join("loop")).unwrap();
        assert!(resolve(&dir, Path::new("loop")).is_err());
    }

    #[test]
    fn a_dangling_symlink_resolves_to_where_it_points() {
        let (_tmp, dir) = temp("dangling");
        symlink("/etc/no-such-dir/x", dir.join("d")).unwrap();
        assert_eq!(
            resolve(&dir, Path::new("d")).unwrap(),
            Path::new("/etc/no-such-dir/x")
        );
    }
}
