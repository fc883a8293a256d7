//! Learns that the container exited within milliseconds and at no CPU cost:
//! a pidfd on the container's init process where we can see it, else a
//! long-lived `wait` child (whose own pidfd we watch).
use std::io::Read;
use std::os::fd::OwnedFd;
use std::process::Child;
use std::time::Duration;

use super::{Engine, EngineError};
use crate::os;

pub struct ExitWatch {
    handle: Option<OwnedFd>,
    wait_child: Option<Child>,
}

impl ExitWatch {
    /// Watches the container whose init process has host pid `pid` (0 = unknown).
    pub fn start(engine: &Engine, container: &str, pid: u32) -> Result<ExitWatch, EngineError> {
        if pid > 0 {
            if let Some(handle) = os::process_exit_handle(pid) {
                log::debug!("watching container pid {pid}");
                return Ok(ExitWatch { handle: Some(handle), wait_child: None });
            }
            // Already gone, or no pidfd: the wait child covers both.
        }
        let child = engine.spawn_wait(container)?;
        let handle = os::process_exit_handle(child.id());
        log::debug!("watching container through '{} wait'", engine.cli().display());
        Ok(ExitWatch { handle, wait_child: Some(child) })
    }

    /// Waits up to `timeout`; true once the container has exited.
    pub fn wait_exited(&mut self, timeout: Duration) -> bool {
        match &self.handle {
            Some(handle) => !os::wait_readable(&[handle], timeout).is_empty(),
            None => {
                // No pidfd for the wait child either (old kernel): poll it.
                std::thread::sleep(timeout);
                self.wait_child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
            }
        }
    }

    /// The container's exit code, once `wait_exited` said so.
    pub fn exit_code(&mut self, engine: &Engine, container: &str) -> Result<i32, EngineError> {
        if let Some(mut child) = self.wait_child.take() {
            let mut out = String::new();
            if let Some(mut stdout) = child.stdout.take() {
                let _ = stdout.read_to_string(&mut out);
            }
            let status = child.wait();
            if let (Ok(status), Some(code)) = (status, out.trim().lines().last().and_then(|l| l.trim().parse().ok())) {
                if status.success() {
                    return Ok(code);
                }
            }
        }
        // The pid is gone; the engine records the exit a moment later, and
        // `wait` returns as soon as it has.
        engine.wait(container)
    }
}

impl Drop for ExitWatch {
    fn drop(&mut self) {
        if let Some(child) = &mut self.wait_child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
