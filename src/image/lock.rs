//! The lock that makes concurrent tasks of a project build an image once:
//! an advisory lock on a file in the project dir, released by the kernel
//! even if its holder is killed.
use std::fs::{File, OpenOptions};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::os;

/// How often a waiting task looks again (and at the client's requests).
const RETRY: Duration = Duration::from_millis(250);
/// How often a waiting task says so in stderr.txt.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

pub enum LockError {
    Failed(String),
    /// Another task held the lock longer than any build may take.
    TimedOut(Duration),
}

pub struct BuildLock {
    _file: File,
}

impl BuildLock {
    /// Waits up to `max_wait` for the lock; None if `cancel` says stop first.
    pub fn acquire(path: &Path, max_wait: Duration, cancel: &mut dyn FnMut() -> bool) -> Result<Option<BuildLock>, LockError> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| LockError::Failed(format!("cannot open the build lock {}: {e}", path.display())))?;
        let started = Instant::now();
        let mut next_progress = started + PROGRESS_EVERY;
        loop {
            match os::try_lock_exclusive(&file) {
                Ok(true) => return Ok(Some(BuildLock { _file: file })),
                Ok(false) => {}
                Err(err) => return Err(LockError::Failed(format!("cannot lock {}: {err}", path.display()))),
            }
            if cancel() {
                return Ok(None);
            }
            if started.elapsed() >= max_wait {
                return Err(LockError::TimedOut(started.elapsed()));
            }
            if Instant::now() >= next_progress {
                log::info!("waiting for another task to build the image ({}s so far)", started.elapsed().as_secs());
                next_progress += PROGRESS_EVERY;
            }
            std::thread::sleep(RETRY);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_waits_and_can_give_up() {
        let path = std::env::temp_dir().join(format!("dw-lock-{}", std::process::id()));
        let first = BuildLock::acquire(&path, Duration::from_secs(1), &mut || false).ok().flatten();
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
        assert!(matches!(BuildLock::acquire(&path, Duration::from_secs(1), &mut || false), Ok(Some(_))));
        let _ = std::fs::remove_file(path);
    }
}
