//! A new container in as few engine commands as the engine allows: `run -d`
//! at once, with the image named but not looked for and the engine's facts
//! as the host remembers them. The engine's refusal says what was wrong
//! (the name in use, the image missing, stale facts, cgroup limits the host
//! cannot apply), `supervisor::recover` decides what to do about it, and
//! only then is the engine asked more.
use super::provision::{self, Made, Supply};
use super::TaskRun;
use crate::engine::{CreateSpec, EngineError, Known};
use crate::os;
use crate::outcome::{Outcome, TaskError};
use crate::supervise::machine::{self as supervisor, Attempt, Recovery};

/// How an attempt to create the task's container ended.
pub(super) enum Launch {
    /// The container runs.
    Running,
    /// A container has the task's name: look at it and go on as a restart
    /// would.
    NameInUse,
    /// The task ends before a container runs (the client interrupted the
    /// image's build, or another slot's task is starting under the name).
    Ended(Outcome),
}

impl TaskRun<'_> {
    /// Creates and starts the task's container. `facts`: the engine's, as
    /// known so far in this run (asked when None, renewed when stale);
    /// `looked`: the name's container was looked at already in this start.
    pub(super) fn launch(
        &mut self,
        supply: &dyn Supply,
        facts: &mut Option<Known>,
        looked: bool,
    ) -> Result<Launch, TaskError> {
        let known = match facts {
            Some(known) => known,
            None => facts.insert(self.engine.facts(false)?),
        };
        let image = supply.image()?;
        let mut prepared = supply.prepare(image, &known.facts)?;
        let mut attempt = Attempt {
            looked,
            made_image: false,
            remembered_facts: known.remembered,
            cgroup_parent: false,
            resource_limits: true,
        };
        let result = loop {
            let spec = CreateSpec {
                resource_limits: attempt.resource_limits,
                ..provision::container_spec(self.ctx, &prepared, provision::host_cpus())
            };
            attempt.cgroup_parent = spec.cgroup_parent.is_some();
            self.image = Some(prepared.image.clone());
            self.web_graphics_port = prepared.web_graphics_port;
            let began = os::unix_time_now();
            let err = match self.engine.run_container(&spec) {
                Ok(()) => break Ok(Launch::Running),
                Err(err) => err,
            };
            let failure = err.failure();
            let mut recovery = supervisor::recover(failure, &attempt);
            if recovery == Recovery::RefreshFacts {
                attempt.remembered_facts = false;
                let fresh = self.engine.facts(true)?;
                if fresh.facts != known.facts {
                    log::info!(
                        "the engine's remembered facts were out of date ({}; now {}): trying again",
                        known.facts,
                        fresh.facts
                    );
                    self.remove_leftover(began);
                    *known = fresh;
                    prepared = supply.prepare(prepared.image, &known.facts)?;
                    continue;
                }
                // The facts were right: the refusal is something else.
                recovery = supervisor::recover(failure, &attempt);
            }
            match recovery {
                Recovery::Reconcile => break Ok(Launch::NameInUse),
                Recovery::Later => {
                    break Ok(Launch::Ended(Outcome::TemporaryExit(format!(
                        "container {} appeared while this task started; not adopting it now",
                        self.ctx.container
                    ))))
                }
                Recovery::MakeImage => {
                    log::info!("image {} is not on the engine", prepared.image);
                    attempt.made_image = true;
                    match supply.make_image(self.client)? {
                        Made::Image(image) => prepared.image = image,
                        Made::Interrupted(outcome) => break Ok(Launch::Ended(outcome)),
                    }
                }
                Recovery::DropLimits => {
                    let why = match &err {
                        EngineError::Failed { detail, .. } => detail.clone(),
                        other => other.to_string(),
                    };
                    log::warn!(
                        "the engine refused the resource limits, so the job runs without them: {why}"
                    );
                    attempt.resource_limits = false;
                    // The name was free (the engine did not refuse it), so
                    // what the refused `run` left under it is its own.
                    if let Err(err) = self.engine.remove(&self.ctx.container) {
                        log::debug!("{err}");
                    }
                }
                // (RefreshFacts cannot come twice: the facts are fresh now.)
                Recovery::RefreshFacts | Recovery::GiveUp => {
                    self.claim_leftover(&err, began);
                    break Err(TaskError::from(err).context("cannot start the container"));
                }
            }
        };
        if matches!(result, Ok(Launch::Running)) {
            self.owns_container = true;
            log::info!("container started");
            supply.started(&prepared.image, !attempt.made_image);
        }
        result
    }

    /// Whether the container under the task's name is one this start's
    /// `run` (begun at `began`) created: it records this slot and is no
    /// older. The engine's words do not say whether a refused `run` left a
    /// container, and a refusal read wrongly must never make another slot's
    /// container (or an earlier one of this slot) ours to remove.
    fn made_by_this_start(&self, began: i64) -> bool {
        match self.engine.inspect(&self.ctx.container) {
            Ok(Some(state)) => {
                state.slot == self.ctx.slot_label() && state.created.is_some_and(|c| c >= began)
            }
            Ok(None) => false,
            Err(err) => {
                log::debug!("{err}");
                false
            }
        }
    }

    /// A `run` that failed after creating (its start failed) leaves the
    /// container; before trying again it goes.
    fn remove_leftover(&self, began: i64) {
        if self.made_by_this_start(began) {
            if let Err(err) = self.engine.remove(&self.ctx.container) {
                log::debug!("{err}");
            }
        }
    }

    /// When the start fails for good, a container the failed `run` left
    /// is the task's to remove. An engine that is down or hangs cannot be
    /// asked, and what it may have made stays for the retry to find.
    fn claim_leftover(&mut self, err: &EngineError, began: i64) {
        if err.unavailable().is_none() && self.made_by_this_start(began) {
            self.owns_container = true;
        }
    }
}
