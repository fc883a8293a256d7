//! Learns that the container exited (`ExitWatcher`, what the supervision
//! loop holds), while the loop's own news can end a wait (`Wake`).
//!
//! Local commands: within milliseconds and at no CPU cost, through a pidfd
//! on the container's init process where we can see it, else a long-lived
//! `wait` child (whose own pidfd we watch).
//!
//! Through the engine's shell (WSL) neither the container's pid nor a
//! long-lived child is ours to watch: the container's state is read with
//! `inspect` once a second instead. That is one engine CLI call a second
//! (about 20 ms of CPU with Podman 4.3, i.e. 2% of one core, plus a few
//! forks in the shell), and an exit is seen within a second.
use std::io::Read;
#[cfg(unix)]
use std::os::fd::OwnedFd;
use std::process::Child;
use std::time::{Duration, Instant};

use super::{ContainerEngine, ContainerState, Engine, EngineError};
#[cfg(unix)]
use crate::os;

/// How often the container's state is read when there is nothing to watch.
const STATE_POLL: Duration = Duration::from_secs(1);
/// How often a `wait` child without a pidfd is asked whether it ended.
const CHILD_POLL: Duration = Duration::from_millis(100);
/// Failed state reads in a row after which the engine counts as gone; the
/// caller then learns why from `exit`.
const MAX_FAILED_POLLS: u32 = 30;

pub struct ExitWatch<'a> {
    engine: &'a Engine,
    container: &'a str,
    watch: Watch,
    wait_child: Option<Child>,
}

enum Watch {
    /// Readable once the process (container init or `wait` child) exited.
    #[cfg(unix)]
    Handle(OwnedFd),
    /// The `wait` child, polled (no pidfd for it).
    WaitChild,
    /// `inspect` every STATE_POLL; the exit code once seen.
    State {
        next_check: Instant,
        exit: Option<Exit>,
        failures: u32,
    },
    /// The container had exited before the watch began.
    #[cfg(unix)]
    AlreadyExited,
}

/// What a watch sleeps on besides the container: news for its caller (the
/// client's requests, a signal) end a wait early. The caller implements it
/// (the wrapper's wake-up pipe), so that the engine needs nothing of the
/// caller's but this.
pub trait Wake {
    /// Sleeps up to `timeout`, or until there is news.
    fn sleep(&self, timeout: Duration);
    /// Sleeps as `sleep` does, and also until `exit` (a process's exit
    /// handle, `os::process_exit_handle`) is readable: true when it is.
    #[cfg(unix)]
    fn sleep_until_exit(&self, exit: &OwnedFd, timeout: Duration) -> bool;
}

/// Learns that the container exited.
pub trait ExitWatcher {
    /// Waits up to `timeout`, or until `wake` has news; true once the
    /// container has exited.
    fn wait_exited(&mut self, timeout: Duration, wake: &dyn Wake) -> bool;
    /// Whether the exit is known already, without waiting and without an
    /// engine command (safe to ask while another engine command runs).
    fn exited_now(&mut self) -> bool;
    /// How the container ended, once `wait_exited` said so.
    fn exit(&mut self) -> Result<Exit, EngineError>;
}

/// How long to ask `inspect` for the exit the kernel already reported,
/// before falling back to `wait`: the engine records it a moment later.
const RECORD_WAIT: Duration = Duration::from_secs(5);

impl<'a> ExitWatch<'a> {
    /// Watches the container whose init process has host pid `pid`, when known.
    pub fn start(
        engine: &'a Engine,
        container: &'a str,
        pid: Option<u32>,
    ) -> Result<ExitWatch<'a>, EngineError> {
        let watch = |watch, wait_child| ExitWatch {
            engine,
            container,
            watch,
            wait_child,
        };
        if !engine.transport().is_local() {
            log::debug!(
                "watching the container's state every {}s",
                STATE_POLL.as_secs()
            );
            let state = Watch::State {
                next_check: Instant::now() + STATE_POLL,
                exit: None,
                failures: 0,
            };
            return Ok(watch(state, None));
        }
        // A VM's pid (Podman on macOS) means nothing here: the wait child then.
        #[cfg(unix)]
        if engine.shares_host_pids() {
            let Some(pid) =
                pid.filter(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
            else {
                // A job can end between `start` and the inspect that gave its pid.
                return Ok(watch(Watch::AlreadyExited, None));
            };
            if let Some(handle) = os::process_exit_handle(pid) {
                log::debug!("watching container pid {pid}");
                return Ok(watch(Watch::Handle(handle), None));
            }
        }
        // No pidfd (old kernel): the wait child covers it.
        #[cfg(not(unix))]
        let _ = pid;
        let child = engine.spawn_wait(container)?;
        log::debug!(
            "watching container through '{} wait'",
            engine.cli().display()
        );
        #[cfg(unix)]
        if let Some(handle) = os::process_exit_handle(child.id()) {
            return Ok(watch(Watch::Handle(handle), Some(child)));
        }
        Ok(watch(Watch::WaitChild, Some(child)))
    }
}

impl ExitWatcher for ExitWatch<'_> {
    fn wait_exited(&mut self, timeout: Duration, wake: &dyn Wake) -> bool {
        match &mut self.watch {
            #[cfg(unix)]
            Watch::AlreadyExited => true,
            #[cfg(unix)]
            Watch::Handle(handle) => wake.sleep_until_exit(handle, timeout),
            Watch::WaitChild => {
                wake.sleep(timeout.min(CHILD_POLL));
                self.wait_child
                    .as_mut()
                    .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
            }
            Watch::State {
                next_check,
                exit,
                failures,
            } => {
                let until_check = next_check.saturating_duration_since(Instant::now());
                wake.sleep(timeout.min(until_check));
                if Instant::now() < *next_check {
                    return false;
                }
                *next_check = Instant::now() + STATE_POLL;
                match self.engine.inspect(self.container) {
                    Ok(Some(state)) if state.has_exited() => {
                        *exit = Some(Exit::from(&state));
                        true
                    }
                    Ok(Some(_)) => {
                        *failures = 0;
                        false
                    }
                    // Removed behind our back: `exit` reports it.
                    Ok(None) => true,
                    Err(err) => {
                        *failures += 1;
                        log::warn!(
                            "cannot read the container's state ({} in a row): {err}",
                            failures
                        );
                        *failures >= MAX_FAILED_POLLS
                    }
                }
            }
        }
    }

    fn exited_now(&mut self) -> bool {
        match &mut self.watch {
            #[cfg(unix)]
            Watch::AlreadyExited => true,
            #[cfg(unix)]
            Watch::Handle(handle) => !os::wait_readable(&[&*handle], Duration::ZERO).is_empty(),
            Watch::WaitChild => self
                .wait_child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_)))),
            Watch::State { exit, .. } => exit.is_some(),
        }
    }

    fn exit(&mut self) -> Result<Exit, EngineError> {
        let (engine, container) = (self.engine, self.container);
        if let Watch::State {
            exit: Some(exit), ..
        } = self.watch
        {
            return Ok(exit);
        }
        if let Some(mut child) = self.wait_child.take() {
            let mut out = String::new();
            if let Some(mut stdout) = child.stdout.take() {
                let _ = stdout.read_to_string(&mut out);
            }
            let status = child.wait();
            if let (Ok(status), Some(code)) = (
                status,
                out.trim()
                    .lines()
                    .last()
                    .and_then(|l| l.trim().parse().ok()),
            ) {
                if status.success() {
                    return Ok(Exit {
                        code,
                        oom_killed: None,
                    });
                }
            }
        }
        // The pid is gone; the engine records the exit a moment later.
        // `inspect` shows it without `podman wait`'s polling delay.
        let deadline = Instant::now() + RECORD_WAIT;
        while Instant::now() < deadline {
            match engine.inspect(container)? {
                Some(state) if state.has_exited() => return Ok(Exit::from(&state)),
                Some(_) => std::thread::sleep(Duration::from_millis(20)),
                None => break,
            }
        }
        Ok(Exit {
            code: engine.wait(container)?,
            oom_killed: None,
        })
    }
}

/// The container's exit code, and the engine's OOM flag when the answer
/// came from `inspect` (saves asking again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub code: i32,
    pub oom_killed: Option<bool>,
}

impl From<&ContainerState> for Exit {
    fn from(state: &ContainerState) -> Exit {
        Exit {
            code: state.exit_code,
            oom_killed: Some(state.oom_killed),
        }
    }
}

impl Drop for ExitWatch<'_> {
    fn drop(&mut self) {
        if let Some(child) = &mut self.wait_child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
