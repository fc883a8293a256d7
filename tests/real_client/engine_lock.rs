//! Which tests may share an engine's containers at a time.
//!
//! A BOINC 8.2 client removes, when it starts, every container named
//! `boinc__...` that belongs to none of its own active tasks
//! (CLIENT_STATE::docker_cleanup), as it would on a volunteer's host where it
//! is the only client. So while a test runs an 8.2 client, no other test may
//! have a task's container in the same engine namespace (see
//! `ClientEngine::namespace`): such a test holds the namespace's lock exclusively,
//! the 7.20 tests (whose client has no Docker code) hold it shared. The lock
//! is an flock(2) on a file in the test temp root, so concurrent test
//! processes respect it too; within the process, a waiting exclusive holder
//! goes before new shared ones. Every wait is bounded.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dw_test_support::tempdir::test_tmp_root;

const POLL: Duration = Duration::from_millis(200);

/// Exclusive holders waiting in this process, per namespace.
static WAITING_EXCLUSIVE: Mutex<Option<HashMap<String, usize>>> = Mutex::new(None);

pub struct EngineLock {
    // Closing the file releases the lock.
    _file: File,
}

impl EngineLock {
    /// Takes the namespace's lock, shared or exclusive, waiting at most `timeout`.
    pub fn acquire(
        namespace: &str,
        exclusive: bool,
        timeout: Duration,
    ) -> Result<EngineLock, String> {
        let path = lock_path(namespace);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| format!("cannot open the lock file {}: {e}", path.display()))?;
        let _queued = exclusive.then(|| Queued::new(namespace));
        let operation = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        } | libc::LOCK_NB;
        let start = Instant::now();
        loop {
            if exclusive || waiting_exclusive(namespace) == 0 {
                // SAFETY: flock on a descriptor this function owns.
                if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
                    return Ok(EngineLock { _file: file });
                }
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                    return Err(format!("flock {}: {err}", path.display()));
                }
            }
            if start.elapsed() >= timeout {
                return Err(format!(
                    "other tests kept the {namespace} containers for more than {timeout:?} \
                     (lock file {}; a BOINC 8.2 client test needs the engine to itself)",
                    path.display()
                ));
            }
            std::thread::sleep(POLL);
        }
    }
}

fn lock_path(namespace: &str) -> PathBuf {
    test_tmp_root().join(format!("docker_wrapper_real_client_{namespace}.lock"))
}

fn waiting_exclusive(namespace: &str) -> usize {
    let waiting = WAITING_EXCLUSIVE.lock().unwrap_or_else(|e| e.into_inner());
    waiting
        .as_ref()
        .and_then(|m| m.get(namespace).copied())
        .unwrap_or(0)
}

/// Counts an exclusive holder as waiting for as long as it lives.
struct Queued(String);

impl Queued {
    fn new(namespace: &str) -> Queued {
        let mut waiting = WAITING_EXCLUSIVE.lock().unwrap_or_else(|e| e.into_inner());
        *waiting
            .get_or_insert_with(HashMap::new)
            .entry(namespace.to_string())
            .or_default() += 1;
        Queued(namespace.to_string())
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        let mut waiting = WAITING_EXCLUSIVE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = waiting.as_mut().and_then(|m| m.get_mut(&self.0)) {
            *n -= 1;
        }
    }
}
