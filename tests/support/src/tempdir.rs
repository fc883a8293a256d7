//! Temporary directories for tests, removed when dropped.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// When set (to anything), test directories are kept after the test for inspection.
pub const KEEP_DIRS_VAR: &str = "DW_KEEP_TEST_DIRS";
/// Parent directory of all test directories; defaults to the system temp dir.
pub const TEST_TMP_VAR: &str = "DW_TEST_TMP";

static NEXT_DIR_ID: AtomicU32 = AtomicU32::new(0);

/// Where test directories (and shared test files) are created.
pub fn test_tmp_root() -> PathBuf {
    std::env::var_os(TEST_TMP_VAR)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// A fresh, uniquely named directory that is removed (recursively) on drop,
/// unless `DW_KEEP_TEST_DIRS` is set.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `<test tmp root>/dw-<label>-<pid>-<n>`. The path is canonical, so it
    /// can be compared with paths the wrapper reports.
    pub fn new(label: &str) -> io::Result<TempDir> {
        let parent = test_tmp_root();
        fs::create_dir_all(&parent)?;
        loop {
            let n = NEXT_DIR_ID.fetch_add(1, Ordering::Relaxed);
            let name = format!("dw-{}-{}-{}", file_name_safe(label), std::process::id(), n);
            let candidate = parent.join(name);
            match fs::create_dir(&candidate) {
                Ok(()) => {
                    return Ok(TempDir {
                        path: candidate.canonicalize()?,
                    })
                }
                // Left over by an earlier run whose pid was the same: try the next number.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os(KEEP_DIRS_VAR).is_some() {
            eprintln!("{KEEP_DIRS_VAR} is set: keeping {}", self.path.display());
            return;
        }
        remove_dir_forcefully(&self.path);
    }
}

/// Removes a tree, even when a job made some of its directories read-only.
pub fn remove_dir_forcefully(path: &Path) {
    if fs::remove_dir_all(path).is_ok() || !path.exists() {
        return;
    }
    make_dirs_writable(path);
    if let Err(e) = fs::remove_dir_all(path) {
        eprintln!("warning: could not remove test dir {}: {e}", path.display());
    }
}

fn make_dirs_writable(dir: &Path) {
    let Ok(meta) = fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mut perms = meta.permissions();
    perms.set_mode(perms.mode() | 0o700);
    let _ = fs::set_permissions(dir, perms);
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            make_dirs_writable(&entry.path());
        }
    }
}

/// Keeps `[A-Za-z0-9_-]`, replaces anything else by `_` (for names derived from test names).
pub fn file_name_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
