//! The lock that makes concurrent tasks of a project build an image once:
//! an advisory lock on a file in the project dir, released by the kernel
//! even if its holder is killed. The host-wide sweep takes one the same way,
//! without waiting.
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::os;

/// How often a waiting task looks again (and at the client's requests).
const RETRY: Duration = Duration::from_millis(250);
/// How often a waiting task says so in stderr.txt.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub enum LockError {
    Open {
        path: PathBuf,
        source: io::Error,
    },
    Lock {
        path: PathBuf,
        source: io::Error,
    },
    /// Another task held the lock longer than any build may take.
    TimedOut(Duration),
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::Open { path, source } => {
                write!(f, "cannot open the build lock {}: {source}", path.display())
            }
            LockError::Lock { path, source } => {
                write!(f, "cannot lock {}: {source}", path.display())
            }
            LockError::TimedOut(after) => write!(
                f,
                "another task has been building an image for {}s",
                after.as_secs()
            ),
        }
    }
}

impl std::error::Error for LockError {}

pub struct BuildLock {
    _file: File,
}

impl BuildLock {
    /// Waits up to `max_wait` for the lock; None if `cancel` says stop first.
    pub fn acquire(
        path: &Path,
        max_wait: Duration,
        cancel: &mut dyn FnMut() -> bool,
    ) -> Result<Option<BuildLock>, LockError> {
        let file = open(path).map_err(|source| LockError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let started = Instant::now();
        let mut next_progress = started + PROGRESS_EVERY;
        loop {
            match os::try_lock_exclusive(&file) {
                Ok(true) => return Ok(Some(BuildLock { _file: file })),
                Ok(false) => {}
                Err(source) => {
                    return Err(LockError::Lock {
                        path: path.to_path_buf(),
                        source,
                    })
                }
            }
            if cancel() {
                return Ok(None);
            }
            if started.elapsed() >= max_wait {
                return Err(LockError::TimedOut(started.elapsed()));
            }
            if Instant::now() >= next_progress {
                log::info!(
                    "waiting for another task to build the image ({}s so far)",
                    started.elapsed().as_secs()
                );
                next_progress += PROGRESS_EVERY;
            }
            std::thread::sleep(RETRY);
        }
    }

    /// The lock if no one holds it now; None if someone does.
    pub fn try_acquire(path: &Path) -> io::Result<Option<BuildLock>> {
        let file = open(path)?;
        Ok(os::try_lock_exclusive(&file)?.then_some(BuildLock { _file: file }))
    }
}

/// Opens (creating) the lock file. Never through a symlink: the project dir
/// can be mounted writable into a job's container, which could plant one.
fn open(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    }
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TestDir;

    #[test]
    fn a_second_holder_waits_and_can_give_up() {
        let path = std::env::temp_dir().join(format!("dw-lock-{}", std::process::id()));
        let first = BuildLock::acquire(&path, Duration::from_secs(1), &mut || false)
            .ok()
            .flatten();
        assert!(first.is_some());
        let waited = BuildLock::acquire(&path, Duration::from_millis(300), &mut || false);
        assert!(matches!(waited, Err(LockError::TimedOut(_))));
        let mut calls = 0;
        let cancelled = BuildLock::acquire(&path, Duration::from_secs(10), &mut || {
            calls += 1;
            calls > 1
        });
        assert!(matches!(cancelled, Ok(None)));
        drop(first);
        assert!(matches!(
            BuildLock::acquire(&path, Duration::from_secs(1), &mut || false),
            Ok(Some(_))
        ));
        let _ = std::fs::remove_file(path);
    }

    #[cfg(unix)]
    #[test]
    fn try_acquire_never_waits_nor_follows_a_symlink() {
        let tmp = TestDir::new("try-lock");
        let dir = &tmp.0;
        let path = dir.join("lock");
        let held = BuildLock::try_acquire(&path).unwrap();
        assert!(held.is_some());
        assert!(BuildLock::try_acquire(&path).unwrap().is_none());
        drop(held);
        assert!(BuildLock::try_acquire(&path).unwrap().is_some());
        let target = dir.join("target");
        std::os::unix::fs::symlink(&target, dir.join("planted")).unwrap();
        assert!(BuildLock::try_acquire(&dir.join("planted")).is_err());
        assert!(!target.exists(), "the lock was created through the symlink");
    }
}
