//! A temporary directory removed on drop (kept when `DW_KEEP_TEST_DIRS` is set).

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// When set (to anything), test directories are kept for inspection.
pub const KEEP_DIRS_VAR: &str = "DW_KEEP_TEST_DIRS";
/// Parent of all test directories; the system temp dir when unset.
pub const TEST_TMP_VAR: &str = "DW_TEST_TMP";

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

pub fn test_tmp_root() -> PathBuf {
    std::env::var_os(TEST_TMP_VAR)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `<tmp root>/dw-rc-<label>-<pid>-<n>` (canonical path).
    pub fn new(label: &str) -> io::Result<TempDir> {
        let parent = test_tmp_root();
        fs::create_dir_all(&parent)?;
        loop {
            let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
            let candidate = parent.join(format!("dw-rc-{label}-{}-{n}", std::process::id()));
            match fs::create_dir(&candidate) {
                Ok(()) => {
                    return Ok(TempDir {
                        path: candidate.canonicalize()?,
                    })
                }
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
        if fs::remove_dir_all(&self.path).is_ok() || !self.path.exists() {
            return;
        }
        // A job may have left read-only directories behind.
        make_dirs_writable(&self.path);
        if let Err(e) = fs::remove_dir_all(&self.path) {
            eprintln!("warning: could not remove {}: {e}", self.path.display());
        }
    }
}

fn make_dirs_writable(dir: &Path) {
    let Ok(meta) = fs::symlink_metadata(dir) else { return };
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
