//! Suspending the container: the engine's pause (the cgroup freezer), or,
//! where the engine cannot freeze it (rootless Podman on cgroup v1 gives the
//! container no cgroup), SIGSTOP to each of its processes.
use std::time::Duration;

use crate::engine::{ContainerEngine, EngineError, Failure};
use crate::host::process_tree;

/// Attempts at pausing: runc's freezer can fail transiently ("unable to
/// freeze") while the job's processes are forking.
const PAUSE_ATTEMPTS: u32 = 4;

/// How the container was suspended, so that resuming undoes the same thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paused {
    ByEngine,
    BySignals,
}

/// Pauses a container, remembering whether the engine can.
#[derive(Debug, Default)]
pub struct Pauser {
    /// Set once the engine said it can never pause this container.
    engine_cannot_pause: bool,
}

impl Pauser {
    /// Pauses the container whose init is host process `pid` (None when it
    /// is not a process of this host: then only the engine can). `cancel` ends
    /// the engine's attempt early (the client wants something else now).
    pub fn pause(
        &mut self,
        engine: &dyn ContainerEngine,
        container: &str,
        pid: Option<u32>,
        cancel: &mut dyn FnMut() -> bool,
    ) -> Result<Paused, EngineError> {
        let engine_error = if self.engine_cannot_pause {
            None
        } else {
            match pause_with_retries(engine, container, PAUSE_ATTEMPTS, cancel) {
                Ok(()) => return Ok(Paused::ByEngine),
                Err(EngineError::Cancelled) => return Err(EngineError::Cancelled),
                Err(err) => Some(err),
            }
        };
        let signalled = pid.map_or_else(Default::default, |pid| {
            process_tree::stop_or_continue(pid, true)
        });
        if signalled.done == 0 {
            return Err(engine_error.unwrap_or_else(|| EngineError::Failed {
                command: "SIGSTOP to the container's processes".into(),
                detail: "none could be stopped".into(),
                failure: Failure::Other,
            }));
        }
        if let Some(err) = engine_error {
            self.engine_cannot_pause = err.failure() == Failure::CannotPause;
            log::warn!("the engine cannot pause the container ({err}); its processes are stopped with SIGSTOP instead");
        }
        if signalled.refused > 0 {
            log::warn!(
                "{} of the container's processes are not ours to stop: they keep running",
                signalled.refused
            );
        }
        Ok(Paused::BySignals)
    }
}

/// Undoes `pause`.
pub fn resume(
    engine: &dyn ContainerEngine,
    container: &str,
    pid: Option<u32>,
    how: Paused,
) -> Result<(), EngineError> {
    match how {
        Paused::ByEngine => engine.unpause(container),
        Paused::BySignals => {
            continue_processes(pid);
            Ok(())
        }
    }
}

/// SIGCONT to the container's processes: also for a restarted wrapper that
/// finds a container an earlier run stopped this way.
pub fn continue_processes(pid: Option<u32>) {
    let Some(pid) = pid else {
        return;
    };
    let signalled = process_tree::stop_or_continue(pid, false);
    log::debug!("SIGCONT to {} processes", signalled.done);
}

/// The engine's pause, tried up to `attempts` times, backing off. Only a
/// refusal is retried: an engine that hung or is gone has had its chance.
pub fn pause_with_retries(
    engine: &dyn ContainerEngine,
    container: &str,
    attempts: u32,
    cancel: &mut dyn FnMut() -> bool,
) -> Result<(), EngineError> {
    let mut delay = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match engine.pause(container, cancel) {
            Ok(()) => return Ok(()),
            Err(err @ EngineError::Failed { .. })
                if attempt < attempts && err.failure() != Failure::CannotPause =>
            {
                log::debug!("pause attempt {attempt} failed: {err}")
            }
            Err(err) => return Err(err),
        }
        std::thread::sleep(delay);
        delay *= 3;
        attempt += 1;
    }
}
