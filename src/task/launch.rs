//! A new container in as few engine commands as the engine allows: `run -d`
//! at once, with the image named but not looked for and the engine's facts
//! as the host remembers them. The engine's refusal says what was wrong
//! (the name in use, the image missing, stale facts, cgroup limits the host
//! cannot apply), `machine::recover` decides what to do about it, and
//! only then is the engine asked more.
use super::provision::{self, Made, Prepared, Supply};
use super::TaskRun;
use crate::engine::{CreateSpec, EngineError, Known};
use crate::os;
use crate::outcome::{Outcome, TaskError};
use crate::supervise::machine::{self, Attempt, Recovery};

/// One launch between its attempts: what the container is made from and
/// what has been tried.
struct Launching<'s> {
    supply: &'s dyn Supply,
    prepared: Prepared,
    attempt: Attempt,
}

/// After a refused `run`: try again, or the launch is over.
enum Step {
    Again,
    Done(Launch),
}

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
        let mut launching = Launching {
            supply,
            prepared: supply.prepare(image, &known.facts)?,
            attempt: Attempt {
                looked,
                made_image: false,
                remembered_facts: known.remembered,
                cgroup_parent: false,
                resource_limits: true,
            },
        };
        let launch = loop {
            let began = os::unix_time_now();
            let err = match self.run_once(&mut launching) {
                Ok(()) => break Launch::Running,
                Err(err) => err,
            };
            match self.recover(&mut launching, known, err, began)? {
                Step::Again => {}
                Step::Done(launch) => break launch,
            }
        };
        if matches!(launch, Launch::Running) {
            self.owns_container = true;
            log::info!("container started");
            let found = !launching.attempt.made_image;
            supply.started(&launching.prepared.image, found);
        }
        Ok(launch)
    }

    /// One `run` of the container as prepared so far.
    fn run_once(&mut self, launching: &mut Launching) -> Result<(), EngineError> {
        let (prepared, attempt) = (&launching.prepared, &mut launching.attempt);
        let spec = CreateSpec {
            resource_limits: attempt.resource_limits,
            ..provision::container_spec(self.ctx, prepared, provision::host_cpus())
        };
        attempt.cgroup_parent = spec.cgroup_parent.is_some();
        self.image = Some(prepared.image.clone());
        self.web_graphics_port = prepared.web_graphics_port;
        self.engine.run_container(&spec)
    }

    /// What the engine's refusal of a `run` begun at `began` leads to, as
    /// `machine::recover` decides; the remembered facts are checked
    /// first when they may be the cause.
    fn recover(
        &mut self,
        launching: &mut Launching,
        known: &mut Known,
        err: EngineError,
        began: i64,
    ) -> Result<Step, TaskError> {
        let failure = err.failure();
        let mut recovery = machine::recover(failure, &launching.attempt);
        if recovery == Recovery::RefreshFacts {
            launching.attempt.remembered_facts = false;
            let fresh = self.engine.facts(true)?;
            if fresh.facts != known.facts {
                log::info!(
                    "the engine's remembered facts were out of date ({}; now {}): trying again",
                    known.facts,
                    fresh.facts
                );
                self.remove_leftover(began);
                *known = fresh;
                let image = std::mem::take(&mut launching.prepared.image);
                launching.prepared = launching.supply.prepare(image, &known.facts)?;
                return Ok(Step::Again);
            }
            // The facts were right: the refusal is something else.
            recovery = machine::recover(failure, &launching.attempt);
        }
        Ok(match recovery {
            Recovery::Reconcile => Step::Done(Launch::NameInUse),
            Recovery::Later => Step::Done(Launch::Ended(Outcome::TemporaryExit(format!(
                "container {} appeared while this task started; not adopting it now",
                self.ctx.container
            )))),
            Recovery::MakeImage => {
                log::info!("image {} is not on the engine", launching.prepared.image);
                launching.attempt.made_image = true;
                match launching.supply.make_image(self.client)? {
                    Made::Image(image) => {
                        launching.prepared.image = image;
                        Step::Again
                    }
                    Made::Interrupted(outcome) => Step::Done(Launch::Ended(outcome)),
                }
            }
            Recovery::DropLimits => {
                self.drop_limits(&err);
                launching.attempt.resource_limits = false;
                Step::Again
            }
            // (RefreshFacts cannot come twice: the facts are fresh now.)
            Recovery::RefreshFacts | Recovery::GiveUp => {
                self.claim_leftover(&err, began);
                return Err(TaskError::from(err).context("cannot start the container"));
            }
        })
    }

    /// The engine cannot apply the resource limits on this host: the job
    /// runs without them, rather than not at all.
    fn drop_limits(&self, err: &EngineError) {
        let why = match err {
            EngineError::Failed { detail, .. } => detail.clone(),
            other => other.to_string(),
        };
        log::warn!("the engine refused the resource limits, so the job runs without them: {why}");
        // The name was free (the engine did not refuse it), so what the
        // refused `run` left under it is its own.
        if let Err(err) = self.engine.remove(&self.ctx.container) {
            log::debug!("{err}");
        }
    }

    /// Whether the container under the task's name is one this start's
    /// `run` (begun at `began`) created: it records this slot and is no
    /// older. The engine's words do not say whether a refused `run` left a
    /// container, and a refusal read wrongly must never make another slot's
    /// container (or an earlier one of this slot) ours to remove.
    fn made_by_this_start(&self, began: i64) -> bool {
        match self.engine.inspect(&self.ctx.container) {
            Ok(Some(state)) => {
                state.slot == Some(self.ctx.slot_label())
                    && state.created.is_some_and(|c| c >= began)
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
