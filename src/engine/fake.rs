//! A recording fake engine for unit tests: it keeps one container's state
//! as an engine would (a second `run` under its name is refused), records
//! every command, and fails or hangs where a test says so.
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use super::containers::ContainerEngine;
use super::exit_watch::Exit;
use super::exit_watch::{ExitWatcher, Wake};
use super::stats::{CpuFigure, Stats};
use super::{
    ContainerState, ContainerStatus, CreateSpec, EngineError, EngineKind, Facts, Known,
    RESULT_LABEL, SLOT_LABEL, WRAPPER_LABEL,
};
use crate::host::background::CgroupDriver;

#[derive(Default)]
pub struct FakeEngine {
    calls: RefCell<Vec<String>>,
    container: RefCell<Option<ContainerState>>,
    /// Errors the next commands of a kind return, in turn.
    failures: RefCell<HashMap<&'static str, VecDeque<EngineError>>>,
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
            pid: 0,
            finished_at: None,
            id: "0123456789ab".into(),
            created: None,
            image: String::new(),
            made_by_wrapper: true,
            result: String::new(),
            slot: String::new(),
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

    /// The next `command` (as recorded: "pause", "stop", ...) fails with `err`.
    pub fn fail_next(&self, command: &'static str, err: EngineError) {
        self.failures
            .borrow_mut()
            .entry(command)
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
    pub fn note(&self, call: &'static str) -> Result<(), EngineError> {
        self.record(call, "")
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
    pub fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }

    /// The commands that change something (no inspect, stats, logs, ...).
    pub fn changes(&self) -> Vec<String> {
        const READS: &[&str] = &[
            "info", "find", "inspect", "stats", "logs", "port", "networks",
        ];
        self.calls()
            .into_iter()
            .filter(|c| !READS.contains(&c.split(' ').next().unwrap_or_default()))
            .collect()
    }

    fn record(&self, call: &'static str, detail: &str) -> Result<(), EngineError> {
        let entry = if detail.is_empty() {
            call.to_string()
        } else {
            format!("{call} {detail}")
        };
        self.calls.borrow_mut().push(entry);
        match self
            .failures
            .borrow_mut()
            .get_mut(call)
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
        self.record("info", "")?;
        let facts = self.facts.borrow().clone().unwrap_or_else(podman_facts);
        self.remember_facts(Some(facts.clone()));
        Ok(Known {
            facts,
            remembered: false,
        })
    }
    fn run_container(&self, spec: &CreateSpec) -> Result<(), EngineError> {
        *self.last_spec.borrow_mut() = Some(spec.clone());
        let scripted = self.record("run", "");
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
            state.slot = label(SLOT_LABEL).unwrap_or_default();
            state.result = label(RESULT_LABEL).unwrap_or_default();
            state.made_by_wrapper = label(WRAPPER_LABEL).is_some();
            state.image = spec.image.clone();
            state.created = Some(crate::os::unix_time_now());
        });
        scripted
    }
    fn find(&self, _container: &str) -> Result<Option<ContainerState>, EngineError> {
        self.record("find", "")?;
        Ok(self.container())
    }
    fn inspect(&self, _container: &str) -> Result<Option<ContainerState>, EngineError> {
        self.record("inspect", "")?;
        Ok(self.container())
    }
    fn start(&self, _container: &str) -> Result<(), EngineError> {
        self.record("start", "")?;
        self.set_status(ContainerStatus::Running, 0);
        Ok(())
    }
    fn pause(
        &self,
        _container: &str,
        _cancel: &mut dyn FnMut() -> bool,
    ) -> Result<(), EngineError> {
        self.record("pause", "")?;
        self.set_status(ContainerStatus::Paused, 0);
        Ok(())
    }
    fn unpause(&self, _container: &str) -> Result<(), EngineError> {
        self.record("unpause", "")?;
        self.set_status(ContainerStatus::Running, 0);
        Ok(())
    }
    fn stop(&self, _container: &str, _grace: Duration) -> Result<(), EngineError> {
        self.record("stop", "")?;
        self.set_status(ContainerStatus::Exited, 143);
        Ok(())
    }
    fn kill(&self, _container: &str) {
        if self.record("kill", "").is_ok() {
            self.set_status(ContainerStatus::Exited, 137);
        }
    }
    fn remove(&self, _container: &str) -> Result<(), EngineError> {
        self.record("rm", "")?;
        self.set_container(None);
        Ok(())
    }
    fn logs_tail(&self, _container: &str, _max_bytes: usize) -> Result<String, EngineError> {
        self.record("logs", "")?;
        Ok("job output\n".into())
    }
    fn stats(&self, _container: &str) -> Result<Stats, EngineError> {
        self.record("stats", "")?;
        Ok(Stats {
            cpu: CpuFigure::Total(1.0),
            memory_bytes: 1e6,
        })
    }
    fn published_port(&self, _container: &str, guest: u16) -> Option<u16> {
        self.record("port", &guest.to_string()).ok()?;
        Some(40000 + guest % 1000)
    }
    fn networks(&self, _container: &str) -> Result<Vec<String>, EngineError> {
        self.record("networks", "")?;
        Ok(self.networks.borrow().clone())
    }
    fn network_disconnect(&self, _container: &str, network: &str) -> Result<(), EngineError> {
        self.record("disconnect", network)?;
        self.networks.borrow_mut().retain(|n| n != network);
        Ok(())
    }
    fn network_connect(&self, _container: &str, network: &str) -> Result<(), EngineError> {
        self.record("connect", network)?;
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
        _container: &'a str,
        _pid: u32,
    ) -> Result<Box<dyn ExitWatcher + 'a>, EngineError> {
        self.record("watch", "")?;
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
