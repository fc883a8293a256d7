//! A recording fake engine for unit tests: it keeps one container's state
//! as an engine would (a second `run` under its name is refused), records
//! every command as a typed `Call`, and fails or hangs where a test says so.
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::mem::{self, Discriminant};
use std::time::Duration;

use super::containers::ContainerEngine;
use super::exit_watch::{Exit, ExitWatcher, Wake};
use super::stats::{CpuFigure, Stats};
use super::{
    ContainerState, ContainerStatus, CreateSpec, EngineError, EngineKind, Facts, Known,
    RESULT_LABEL, SLOT_LABEL, WRAPPER_LABEL,
};
use crate::host::background::CgroupDriver;

/// A command the fake got, with the arguments a test may care about. All
/// container commands are on the one container the fake keeps, so its
/// name is checked as they come (`FakeEngine::record`), not recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `info`: the engine's facts.
    Info,
    /// `run -d` (its specification: `FakeEngine::last_spec`).
    Run,
    Find,
    Inspect,
    Start,
    Pause,
    Unpause,
    Stop {
        grace: Duration,
    },
    Kill,
    /// `rm -f`.
    Remove,
    Logs,
    Stats,
    /// The host port published for this guest port.
    Port(u16),
    Networks,
    Disconnect(String),
    Connect(String),
    /// The exit watch began.
    Watch,
    /// An image build, which a test's image supply records (`note`).
    Build,
}

impl Call {
    /// Whether the call only reads (the engine stays as it was).
    fn is_read(&self) -> bool {
        matches!(
            self,
            Call::Info
                | Call::Find
                | Call::Inspect
                | Call::Stats
                | Call::Logs
                | Call::Port(_)
                | Call::Networks
        )
    }
}

#[derive(Default)]
pub struct FakeEngine {
    calls: RefCell<Vec<Call>>,
    /// The name of the one container, as the first command on it named it.
    name: RefCell<Option<String>>,
    container: RefCell<Option<ContainerState>>,
    /// Errors the next calls of a kind return, in turn.
    failures: RefCell<HashMap<Discriminant<Call>, VecDeque<EngineError>>>,
    networks: RefCell<Vec<String>>,
    reconnects_paused: Cell<bool>,
    /// The job exits (code, OOM-killed) after this many waits of the watch.
    exit_after_waits: Cell<Option<(u32, i32, bool)>>,
    /// The engine is lost when the watch asks how the container ended.
    exit_unknown: Cell<bool>,
    /// What `info` answers.
    facts: RefCell<Option<Facts>>,
    /// What the host remembers of the facts (asked when None).
    remembered: RefCell<Option<Facts>>,
    /// The specification of the last `run`.
    last_spec: RefCell<Option<CreateSpec>>,
    /// A `run` that fails does so after creating the container (its start
    /// failed), as both engines do.
    failed_runs_create: Cell<bool>,
}

/// Podman 4.3's facts on a cgroupfs host.
pub fn podman_facts() -> Facts {
    Facts {
        kind: EngineKind::Podman,
        version: "4.3.1".into(),
        cgroup_driver: Some(CgroupDriver::Cgroupfs),
    }
}

/// A failure as the engine reports a command that ran and failed.
pub fn failed(detail: &str) -> EngineError {
    EngineError::Failed {
        command: "fake".into(),
        detail: detail.into(),
        failure: super::failure::read(detail).failure,
    }
}

/// A command that hung past its timeout.
pub fn hung() -> EngineError {
    EngineError::TimedOut("'fake' did not finish within 10s and was killed".into())
}

impl FakeEngine {
    /// An engine with the task's container in `status`, on network `bridge`.
    pub fn with_container(status: ContainerStatus) -> FakeEngine {
        let engine = FakeEngine::default();
        engine.set_container(Some(status));
        engine.networks.borrow_mut().push("bridge".into());
        engine
    }

    /// An engine without the task's container, whose facts the host
    /// remembers: a fresh start asks it only what it must.
    pub fn fresh() -> FakeEngine {
        let engine = FakeEngine::default();
        engine.networks.borrow_mut().push("bridge".into());
        engine.remember_facts(Some(podman_facts()));
        engine
    }

    pub fn set_container(&self, status: Option<ContainerStatus>) {
        *self.container.borrow_mut() = status.map(|status| ContainerState {
            status,
            exit_code: 0,
            oom_killed: false,
            pid: None,
            finished_at: None,
            id: "0123456789ab".into(),
            created: None,
            image: None,
            made_by_wrapper: true,
            result: None,
            slot: None,
        });
    }

    /// Changes the container's recorded state.
    pub fn edit_container(&self, edit: impl FnOnce(&mut ContainerState)) {
        if let Some(state) = self.container.borrow_mut().as_mut() {
            edit(state);
        }
    }

    pub fn container(&self) -> Option<ContainerState> {
        self.container.borrow().clone()
    }

    /// The next call of the kind of `call` (its arguments aside) fails
    /// with `err`.
    pub fn fail_next(&self, call: Call, err: EngineError) {
        self.failures
            .borrow_mut()
            .entry(mem::discriminant(&call))
            .or_default()
            .push_back(err);
    }

    /// The host remembers these facts (none: they are asked).
    pub fn remember_facts(&self, facts: Option<Facts>) {
        *self.remembered.borrow_mut() = facts;
    }

    /// The engine's facts from now on (Podman 4.3's on cgroupfs by default).
    pub fn set_facts(&self, facts: Facts) {
        *self.facts.borrow_mut() = Some(facts);
    }

    /// `run`s that fail leave the container they created.
    pub fn failed_runs_create(&self, yes: bool) {
        self.failed_runs_create.set(yes);
    }

    /// What the last `run` asked for.
    pub fn last_spec(&self) -> Option<CreateSpec> {
        self.last_spec.borrow().clone()
    }

    /// Records a command made outside this seam (an image build, say).
    pub fn note(&self, call: Call) -> Result<(), EngineError> {
        self.record(None, call)
    }

    pub fn reconnect_paused_containers(&self, yes: bool) {
        self.reconnects_paused.set(yes);
    }

    /// The job exits with `code` once the loop has waited `waits` times.
    pub fn exit_after_waits(&self, waits: u32, code: i32, oom_killed: bool) {
        self.exit_after_waits.set(Some((waits, code, oom_killed)));
    }

    /// The exit is seen, but the engine cannot say how it ended.
    pub fn lose_exit(&self) {
        self.exit_unknown.set(true);
    }

    /// Every command so far, reads included.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    /// The commands that change something (no inspect, stats, logs, ...).
    pub fn changes(&self) -> Vec<Call> {
        self.calls().into_iter().filter(|c| !c.is_read()).collect()
    }

    /// Records `call`, on `container` where it names one; the error a test
    /// scripted for it, if any.
    fn record(&self, container: Option<&str>, call: Call) -> Result<(), EngineError> {
        if let Some(container) = container {
            let mut name = self.name.borrow_mut();
            let name = name.get_or_insert_with(|| container.to_string());
            assert_eq!(name, container, "the fake engine keeps one container");
        }
        let kind = mem::discriminant(&call);
        self.calls.borrow_mut().push(call);
        match self
            .failures
            .borrow_mut()
            .get_mut(&kind)
            .and_then(VecDeque::pop_front)
        {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    fn set_status(&self, status: ContainerStatus, exit_code: i32) {
        self.edit_container(|state| {
            state.status = status;
            state.exit_code = exit_code;
        });
    }
}

impl ContainerEngine for FakeEngine {
    fn facts(&self, fresh: bool) -> Result<Known, EngineError> {
        if !fresh {
            if let Some(facts) = self.remembered.borrow().clone() {
                return Ok(Known {
                    facts,
                    remembered: true,
                });
            }
        }
        self.record(None, Call::Info)?;
        let facts = self.facts.borrow().clone().unwrap_or_else(podman_facts);
        self.remember_facts(Some(facts.clone()));
        Ok(Known {
            facts,
            remembered: false,
        })
    }
    fn run_container(&self, spec: &CreateSpec) -> Result<(), EngineError> {
        *self.last_spec.borrow_mut() = Some(spec.clone());
        let scripted = self.record(Some(&spec.name), Call::Run);
        let exists = self.container().is_some();
        if scripted.is_ok() && exists {
            return Err(failed(&format!(
                "Error: creating container storage: the container name \"{}\" is already in use by 0123456789ab. \
                 You have to remove that container to be able to reuse that name: that name is already in use",
                spec.name
            )));
        }
        if exists || (scripted.is_err() && !self.failed_runs_create.get()) {
            return scripted;
        }
        let status = match scripted {
            Ok(()) => ContainerStatus::Running,
            Err(_) => ContainerStatus::Created,
        };
        self.set_container(Some(status));
        let label = |name: &str| {
            spec.labels
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        self.edit_container(|state| {
            state.slot = label(SLOT_LABEL);
            state.result = label(RESULT_LABEL);
            state.made_by_wrapper = label(WRAPPER_LABEL).is_some();
            state.image = Some(spec.image.clone());
            state.created = Some(crate::os::unix_time_now());
        });
        scripted
    }
    fn find(&self, container: &str) -> Result<Option<ContainerState>, EngineError> {
        self.record(Some(container), Call::Find)?;
        Ok(self.container())
    }
    fn inspect(&self, container: &str) -> Result<Option<ContainerState>, EngineError> {
        self.record(Some(container), Call::Inspect)?;
        Ok(self.container())
    }
    fn start(&self, container: &str) -> Result<(), EngineError> {
        self.record(Some(container), Call::Start)?;
        self.set_status(ContainerStatus::Running, 0);
        Ok(())
    }
    fn pause(&self, container: &str, _cancel: &mut dyn FnMut() -> bool) -> Result<(), EngineError> {
        self.record(Some(container), Call::Pause)?;
        self.set_status(ContainerStatus::Paused, 0);
        Ok(())
    }
    fn unpause(&self, container: &str) -> Result<(), EngineError> {
        self.record(Some(container), Call::Unpause)?;
        self.set_status(ContainerStatus::Running, 0);
        Ok(())
    }
    fn stop(&self, container: &str, grace: Duration) -> Result<(), EngineError> {
        self.record(Some(container), Call::Stop { grace })?;
        self.set_status(ContainerStatus::Exited, 143);
        Ok(())
    }
    fn kill(&self, container: &str) {
        if self.record(Some(container), Call::Kill).is_ok() {
            self.set_status(ContainerStatus::Exited, 137);
        }
    }
    fn remove(&self, container: &str) -> Result<(), EngineError> {
        self.record(Some(container), Call::Remove)?;
        self.set_container(None);
        Ok(())
    }
    fn logs_tail(&self, container: &str, _max_bytes: usize) -> Result<String, EngineError> {
        self.record(Some(container), Call::Logs)?;
        Ok("job output\n".into())
    }
    fn stats(&self, container: &str) -> Result<Stats, EngineError> {
        self.record(Some(container), Call::Stats)?;
        Ok(Stats {
            cpu: CpuFigure::Total(1.0),
            memory_bytes: 1e6,
        })
    }
    fn published_port(&self, container: &str, guest: u16) -> Option<u16> {
        self.record(Some(container), Call::Port(guest)).ok()?;
        Some(40000 + guest % 1000)
    }
    fn networks(&self, container: &str) -> Result<Vec<String>, EngineError> {
        self.record(Some(container), Call::Networks)?;
        Ok(self.networks.borrow().clone())
    }
    fn network_disconnect(&self, container: &str, network: &str) -> Result<(), EngineError> {
        self.record(Some(container), Call::Disconnect(network.into()))?;
        self.networks.borrow_mut().retain(|n| n != network);
        Ok(())
    }
    fn network_connect(&self, container: &str, network: &str) -> Result<(), EngineError> {
        self.record(Some(container), Call::Connect(network.into()))?;
        self.networks.borrow_mut().push(network.into());
        Ok(())
    }
    fn reconnects_paused_containers(&self) -> bool {
        self.reconnects_paused.get()
    }
    fn shares_host_pids(&self) -> bool {
        true
    }
    fn watch_exit<'a>(
        &'a self,
        container: &'a str,
        _pid: Option<u32>,
    ) -> Result<Box<dyn ExitWatcher + 'a>, EngineError> {
        self.record(Some(container), Call::Watch)?;
        Ok(Box::new(FakeExitWatch {
            engine: self,
            waits: 0,
        }))
    }
}

struct FakeExitWatch<'a> {
    engine: &'a FakeEngine,
    waits: u32,
}

impl FakeExitWatch<'_> {
    fn exited(&self) -> bool {
        self.engine
            .container()
            .map_or(true, |state| state.status == ContainerStatus::Exited)
    }
}

impl ExitWatcher for FakeExitWatch<'_> {
    fn wait_exited(&mut self, timeout: Duration, _wake: &dyn Wake) -> bool {
        self.waits += 1;
        if let Some((waits, code, oom_killed)) = self.engine.exit_after_waits.get() {
            if self.waits >= waits && !self.exited() {
                self.engine.edit_container(|state| {
                    state.status = ContainerStatus::Exited;
                    state.exit_code = code;
                    state.oom_killed = oom_killed;
                });
            }
        }
        let exited = self.exited();
        if !exited {
            // As the real watch does: the loop's pace stays the real one.
            std::thread::sleep(timeout);
        }
        exited
    }
    fn exited_now(&mut self) -> bool {
        self.exited()
    }
    fn exit(&mut self) -> Result<Exit, EngineError> {
        if self.engine.exit_unknown.get() {
            return Err(EngineError::Unavailable(
                "the engine does not answer".into(),
            ));
        }
        let state = self
            .engine
            .container()
            .ok_or_else(|| failed("no such container"))?;
        Ok(Exit::from(&state))
    }
}
