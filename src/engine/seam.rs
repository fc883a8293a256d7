//! What running and supervising one container asks of an engine: the seam
//! between the task and the engine. `Engine` implements it with CLI
//! commands; unit tests of the supervision paths use a recording fake
//! (`engine::fake`).
use std::time::Duration;

use super::exit_watch::{Exit, ExitWatch};
use super::stats::Stats;
use super::{ContainerState, CreateSpec, Engine, EngineError, Known};
use crate::boinc::wakeup::Wakeup;

/// Learns that the container exited.
pub trait ExitWatcher {
    /// Waits up to `timeout`, or until `wakeup` has news; true once the
    /// container has exited.
    fn wait_exited(&mut self, timeout: Duration, wakeup: &Wakeup) -> bool;
    /// Whether the exit is known already, without waiting and without an
    /// engine command (safe to ask while another engine command runs).
    fn exited_now(&mut self) -> bool;
    /// How the container ended, once `wait_exited` said so.
    fn exit(&mut self) -> Result<Exit, EngineError>;
}

/// The engine's operations on a named container. Errors are typed
/// (`EngineError::failure`): callers never read the engine's text.
pub trait ContainerEngine {
    /// The engine's version and cgroup driver: remembered for the host
    /// unless `fresh` (see `facts.rs`).
    fn facts(&self, fresh: bool) -> Result<Known, EngineError>;
    /// Creates and starts a container (`run -d`).
    fn run_container(&self, spec: &CreateSpec) -> Result<(), EngineError>;
    /// The container's state; None when no container has that name.
    fn find(&self, container: &str) -> Result<Option<ContainerState>, EngineError>;
    /// Like `find`, for a container known to exist (one command fewer).
    fn inspect(&self, container: &str) -> Result<Option<ContainerState>, EngineError>;
    fn start(&self, container: &str) -> Result<(), EngineError>;
    /// `cancel` is polled while the engine works: a hanging pause must not
    /// keep the caller from the client's requests.
    fn pause(&self, container: &str, cancel: &mut dyn FnMut() -> bool) -> Result<(), EngineError>;
    fn unpause(&self, container: &str) -> Result<(), EngineError>;
    /// SIGTERM, then SIGKILL after `grace`.
    fn stop(&self, container: &str, grace: Duration) -> Result<(), EngineError>;
    /// SIGKILL to the container's processes; failures are only logged.
    fn kill(&self, container: &str);
    /// Removes the container, running or not; an absent one is fine.
    fn remove(&self, container: &str) -> Result<(), EngineError>;
    /// The last `max_bytes` of the container's output.
    fn logs_tail(&self, container: &str, max_bytes: usize) -> Result<String, EngineError>;
    fn stats(&self, container: &str) -> Result<Stats, EngineError>;
    /// The loopback host port published for the container's `guest` port.
    fn published_port(&self, container: &str, guest: u16) -> Option<u16>;
    /// The engine networks the container is on, leaving out network modes
    /// nobody can leave.
    fn networks(&self, container: &str) -> Result<Vec<String>, EngineError>;
    fn network_disconnect(&self, container: &str, network: &str) -> Result<(), EngineError>;
    fn network_connect(&self, container: &str, network: &str) -> Result<(), EngineError>;
    /// Whether a paused container can be connected to a network.
    fn reconnects_paused_containers(&self) -> bool;
    /// Whether the container's pids are this host's (not inside WSL's VM).
    fn shares_host_pids(&self) -> bool;
    /// Starts watching for the container's exit; `pid`: its init's host pid
    /// (0 when unknown).
    fn watch_exit<'a>(
        &'a self,
        container: &'a str,
        pid: u32,
    ) -> Result<Box<dyn ExitWatcher + 'a>, EngineError>;
}

impl ContainerEngine for Engine {
    fn facts(&self, fresh: bool) -> Result<Known, EngineError> {
        Engine::facts(self, fresh)
    }
    fn run_container(&self, spec: &CreateSpec) -> Result<(), EngineError> {
        Engine::run_container(self, spec)
    }
    fn find(&self, container: &str) -> Result<Option<ContainerState>, EngineError> {
        Engine::find(self, container)
    }
    fn inspect(&self, container: &str) -> Result<Option<ContainerState>, EngineError> {
        Engine::inspect(self, container)
    }
    fn start(&self, container: &str) -> Result<(), EngineError> {
        Engine::start(self, container)
    }
    fn pause(&self, container: &str, cancel: &mut dyn FnMut() -> bool) -> Result<(), EngineError> {
        Engine::pause(self, container, cancel)
    }
    fn unpause(&self, container: &str) -> Result<(), EngineError> {
        Engine::unpause(self, container)
    }
    fn stop(&self, container: &str, grace: Duration) -> Result<(), EngineError> {
        Engine::stop(self, container, grace)
    }
    fn kill(&self, container: &str) {
        Engine::kill(self, container)
    }
    fn remove(&self, container: &str) -> Result<(), EngineError> {
        Engine::remove(self, container)
    }
    fn logs_tail(&self, container: &str, max_bytes: usize) -> Result<String, EngineError> {
        Engine::logs_tail(self, container, max_bytes)
    }
    fn stats(&self, container: &str) -> Result<Stats, EngineError> {
        Engine::stats(self, container)
    }
    fn published_port(&self, container: &str, guest: u16) -> Option<u16> {
        Engine::published_port(self, container, guest)
    }
    fn networks(&self, container: &str) -> Result<Vec<String>, EngineError> {
        Engine::networks(self, container)
    }
    fn network_disconnect(&self, container: &str, network: &str) -> Result<(), EngineError> {
        Engine::network_disconnect(self, container, network)
    }
    fn network_connect(&self, container: &str, network: &str) -> Result<(), EngineError> {
        Engine::network_connect(self, container, network)
    }
    fn reconnects_paused_containers(&self) -> bool {
        Engine::reconnects_paused_containers(self)
    }
    fn shares_host_pids(&self) -> bool {
        Engine::shares_host_pids(self)
    }
    fn watch_exit<'a>(
        &'a self,
        container: &'a str,
        pid: u32,
    ) -> Result<Box<dyn ExitWatcher + 'a>, EngineError> {
        Ok(Box::new(ExitWatch::start(self, container, pid)?))
    }
}

impl ExitWatcher for ExitWatch<'_> {
    fn wait_exited(&mut self, timeout: Duration, wakeup: &Wakeup) -> bool {
        ExitWatch::wait_exited(self, timeout, wakeup)
    }
    fn exited_now(&mut self) -> bool {
        ExitWatch::exited_now(self)
    }
    fn exit(&mut self) -> Result<Exit, EngineError> {
        ExitWatch::exit(self)
    }
}
