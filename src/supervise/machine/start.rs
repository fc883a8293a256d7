//! How a task starts, and starts again from what an earlier run left: the
//! start plan, how a refused creation goes on, whose a container under the
//! task's name is, and how much of the journal's CPU time to believe. No I/O
//! here.
use crate::engine::Failure;
use crate::slot::journal::{Journal, Phase};

/// How to get the container going at start, given what a previous run left.
#[derive(Debug, Clone, PartialEq)]
pub enum StartPlan {
    /// Nothing to continue: build/reuse the image, create, start.
    CreateAndStart,
    /// The container exists but is not running: start it.
    Start {
        reason: &'static str,
    },
    Unpause,
    /// Running already (the previous wrapper died, or the engine could not
    /// pause it and its processes were stopped with SIGSTOP): watch it.
    Reattach,
    /// The job already ended: report its exit code, never rerun it.
    Report {
        code: i32,
        oom_killed: bool,
    },
}

/// What `inspect` says of the task's container.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    Absent,
    Created,
    Running,
    Paused,
    Exited {
        code: i32,
        oom_killed: bool,
        /// Unix time of the exit, when the engine knows it.
        finished_at: Option<i64>,
    },
    /// Any other engine state (restarting, removing, ...).
    Other,
}

/// The plan when the journal alone decides it: a slot without a journal
/// never had a container of this wrapper's running (the journal is written
/// as soon as one runs), so the task creates its container at once, without
/// asking the engine first; if a container has the name after all (a
/// wrapper killed between `run` and the journal, a copied slot), the
/// engine refuses the name and `recover` says to look. None: look first.
pub fn plan_from_journal(journal: Option<&Journal>) -> Option<StartPlan> {
    journal.is_none().then_some(StartPlan::CreateAndStart)
}

/// What a start has tried so far to get its container created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// The container under the task's name was looked at and reconciled.
    pub looked: bool,
    /// The image was built or loaded in this start.
    pub made_image: bool,
    /// The engine facts the specification used were remembered from
    /// another task, not asked in this start.
    pub remembered_facts: bool,
    /// The specification has a cgroup parent, whose form a fact (the cgroup
    /// driver) decides.
    pub cgroup_parent: bool,
    /// The specification asks for cgroup limits.
    pub resource_limits: bool,
}

/// How to go on when the engine refused to create the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// The name is in use: look at that container and reconcile with it,
    /// as a restart does (it may be this slot's, another's, or an orphan).
    Reconcile,
    /// The image is not there: build or load it, then create again.
    MakeImage,
    /// Remembered facts may be stale (an engine changed in a way the key
    /// missed): ask them again, and create again only if they changed.
    RefreshFacts,
    /// The host cannot apply the cgroup limits: create without them.
    DropLimits,
    /// The name was free when looked at, and taken since: a task in
    /// another slot is starting; try again later.
    Later,
    /// Nothing more to try: the start fails with the engine's error.
    GiveUp,
}

/// Decides how to go on after the engine refused `attempt` with `failure`.
/// Each way is tried once: the same refusal again gives up.
pub fn recover(failure: Failure, attempt: &Attempt) -> Recovery {
    match failure {
        Failure::NameInUse if attempt.looked => Recovery::Later,
        Failure::NameInUse => Recovery::Reconcile,
        Failure::ImageMissing if !attempt.made_image => Recovery::MakeImage,
        // A cgroup parent of the wrong form can read as a cgroup refusal.
        Failure::LimitsRefused if attempt.remembered_facts && attempt.cgroup_parent => {
            Recovery::RefreshFacts
        }
        Failure::LimitsRefused if attempt.resource_limits => Recovery::DropLimits,
        Failure::Other if attempt.remembered_facts => Recovery::RefreshFacts,
        _ => Recovery::GiveUp,
    }
}

/// Decides how to continue from the journal and the container's state.
/// `boot_time` is when this host booted (Unix time).
pub fn plan_start(journal: Option<&Journal>, found: &Found, boot_time: Option<i64>) -> StartPlan {
    let phase = journal.map(|j| j.phase);
    match found {
        Found::Absent => match journal {
            // The container was removed after the job ended, but the report was lost.
            Some(j) if j.phase == Phase::Finished => StartPlan::Report {
                code: j.exit_code.unwrap_or(0),
                oom_killed: false,
            },
            _ => StartPlan::CreateAndStart,
        },
        Found::Created => StartPlan::Start {
            reason: "the container was created but never started",
        },
        Found::Running => StartPlan::Reattach,
        Found::Paused => StartPlan::Unpause,
        Found::Other => StartPlan::Start {
            reason: "the container is in an unexpected state",
        },
        Found::Exited {
            code,
            oom_killed,
            finished_at,
        } => {
            if phase == Some(Phase::KeptStopped) {
                return StartPlan::Start {
                    reason: "the container was stopped for a quit",
                };
            }
            if killed_by_shutdown(*code, *finished_at, boot_time) {
                return StartPlan::Start {
                    reason: "the container was killed when the host went down",
                };
            }
            StartPlan::Report {
                code: *code,
                oom_killed: *oom_killed,
            }
        }
    }
}

/// Whose a container with the task's name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// Not made by the wrapper for this task (no wrapper label, another
    /// result, an image the task would not run): it only has the name.
    Stranger,
    /// This slot's (or made before containers recorded their slot).
    ThisSlot,
    /// Another slot's task still holds it: a second wrapper for the same
    /// result (a client bug, a copied slot) must leave it alone.
    OtherSlot,
    /// Its slot no longer holds it: left behind, to be removed.
    Orphan,
}

/// A container younger than this may belong to a task that is still
/// starting in its slot, before its journal names the container.
pub const STARTING_UP_SECS: i64 = 120;

/// What a container found under the task's name says of itself.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    /// It carries the wrapper's label.
    pub by_wrapper: bool,
    /// The result on its label.
    pub result: Option<&'a str>,
    /// The slot on its label; None on containers made before the label.
    pub slot: Option<&'a str>,
    /// Its image is one the task runs.
    pub task_image: bool,
}

/// `this`: the task's own result and slot; `claimed_there`: whether the
/// found container's slot's journal names the container and the job has
/// not ended (asked only of another slot); `age_secs`: since the container
/// was created, when known.
pub fn owner(
    this_result: &str,
    this_slot: &str,
    found: &Identity,
    claimed_there: impl FnOnce() -> bool,
    age_secs: Option<i64>,
) -> Owner {
    if !found.by_wrapper || found.result != Some(this_result) || !found.task_image {
        Owner::Stranger
    } else if found.slot.map_or(true, |slot| slot == this_slot) {
        Owner::ThisSlot
    } else if claimed_there() || !age_secs.is_some_and(|age| age >= STARTING_UP_SECS) {
        Owner::OtherSlot
    } else {
        Owner::Orphan
    }
}

/// The task's CPU time so far, for a wrapper that starts again. The client's
/// own figure (`wu_cpu_time`) may lag the journal's by the time since its
/// last checkpoint, but the journal lies in the slot, where the job can
/// write: its figure counts only as far as the container could have used
/// CPU since it was created (`ncpus` times its age), and not at all
/// without a container to vouch for it.
pub fn trusted_cpu_time(
    client: f64,
    journal: Option<f64>,
    ncpus: f64,
    container_age_secs: Option<f64>,
) -> f64 {
    let (Some(journal), Some(age)) = (journal, container_age_secs) else {
        return client;
    };
    let possible = client + ncpus.max(1.0) * age.max(0.0);
    client.max(journal.min(possible))
}

/// A job that ended by a signal before this boot was ended by the shutdown,
/// not by itself. One that exited normally, or after boot, really finished.
fn killed_by_shutdown(code: i32, finished_at: Option<i64>, boot_time: Option<i64>) -> bool {
    let by_signal = !(0..128).contains(&code);
    match (finished_at, boot_time) {
        (Some(finished), Some(boot)) => by_signal && finished <= boot,
        _ => false,
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn attempt() -> Attempt {
        Attempt {
            looked: false,
            made_image: false,
            remembered_facts: true,
            cgroup_parent: true,
            resource_limits: true,
        }
    }

    #[test]
    fn without_a_journal_the_container_is_created_at_once() {
        assert_eq!(plan_from_journal(None), Some(StartPlan::CreateAndStart));
        assert_eq!(
            plan_from_journal(Some(&journal(Phase::Running, None))),
            None
        );
        // A finished job is reported from its journal, after a look.
        assert_eq!(
            plan_from_journal(Some(&journal(Phase::Finished, Some(0)))),
            None
        );
    }

    #[test]
    fn a_refused_creation_tries_each_way_once() {
        let first = attempt();
        assert_eq!(recover(Failure::NameInUse, &first), Recovery::Reconcile);
        let looked = Attempt {
            looked: true,
            ..first
        };
        assert_eq!(recover(Failure::NameInUse, &looked), Recovery::Later);
        assert_eq!(recover(Failure::ImageMissing, &first), Recovery::MakeImage);
        let made = Attempt {
            made_image: true,
            ..first
        };
        assert_eq!(recover(Failure::ImageMissing, &made), Recovery::GiveUp);
        // Remembered facts are asked again before anything else is blamed.
        assert_eq!(recover(Failure::Other, &first), Recovery::RefreshFacts);
        assert_eq!(
            recover(Failure::LimitsRefused, &first),
            Recovery::RefreshFacts
        );
        let fresh = Attempt {
            remembered_facts: false,
            ..first
        };
        assert_eq!(recover(Failure::Other, &fresh), Recovery::GiveUp);
        assert_eq!(
            recover(Failure::LimitsRefused, &fresh),
            Recovery::DropLimits
        );
        // Without a cgroup parent no fact shapes the limits (rootless Podman).
        let no_parent = Attempt {
            cgroup_parent: false,
            ..first
        };
        assert_eq!(
            recover(Failure::LimitsRefused, &no_parent),
            Recovery::DropLimits
        );
        let no_limits = Attempt {
            resource_limits: false,
            ..fresh
        };
        assert_eq!(
            recover(Failure::LimitsRefused, &no_limits),
            Recovery::GiveUp
        );
        // An engine that is down or hangs: the task is retried later as it is.
        for failure in [
            Failure::Unavailable,
            Failure::TimedOut,
            Failure::PermissionDenied,
        ] {
            assert_eq!(recover(failure, &first), Recovery::GiveUp, "{failure:?}");
        }
    }

    /// A container of this task's result found with `slot` on its label.
    fn ours(slot: &str) -> Identity<'_> {
        Identity {
            by_wrapper: true,
            result: Some("r_0"),
            slot: Some(slot).filter(|slot| !slot.is_empty()),
            task_image: true,
        }
    }

    #[test]
    fn a_container_of_another_slot_is_never_adopted() {
        let unasked = || panic!("this slot's own container needs no look at another slot");
        let owner = |found: &Identity, claimed: &dyn Fn() -> bool, age| {
            owner("r_0", "/s/1", found, claimed, age)
        };
        assert_eq!(owner(&ours("/s/1"), &unasked, Some(9999)), Owner::ThisSlot);
        // Containers made before the label existed.
        assert_eq!(owner(&ours(""), &unasked, Some(9999)), Owner::ThisSlot);
        assert_eq!(owner(&ours("/s/2"), &|| true, Some(9999)), Owner::OtherSlot);
        // Its task may still be starting there.
        assert_eq!(owner(&ours("/s/2"), &|| false, Some(10)), Owner::OtherSlot);
        assert_eq!(owner(&ours("/s/2"), &|| false, None), Owner::OtherSlot);
        assert_eq!(
            owner(&ours("/s/2"), &|| false, Some(STARTING_UP_SECS)),
            Owner::Orphan
        );
    }

    #[test]
    fn a_container_with_only_the_tasks_name_is_a_stranger() {
        let unasked = || panic!("a stranger's slot is not asked");
        let owner = |found: &Identity| owner("r_0", "/s/1", found, unasked, Some(10));
        for stranger in [
            // Made by another program (the C++ wrapper, a person).
            Identity {
                by_wrapper: false,
                ..ours("/s/1")
            },
            Identity {
                by_wrapper: false,
                slot: None,
                ..ours("")
            },
            // Labelled by the wrapper for another result.
            Identity {
                result: Some("r_1"),
                ..ours("/s/1")
            },
            Identity {
                result: None,
                ..ours("/s/1")
            },
            // Its labels copied onto another image.
            Identity {
                task_image: false,
                ..ours("/s/1")
            },
        ] {
            assert_eq!(owner(&stranger), Owner::Stranger, "{stranger:?}");
        }
    }

    fn journal(phase: Phase, exit_code: Option<i32>) -> Journal {
        Journal {
            container: "c".into(),
            image: Some("i".into()),
            phase,
            cpu_time: 0.0,
            exit_code,
        }
    }

    fn exited(code: i32, finished_at: i64) -> Found {
        Found::Exited {
            code,
            oom_killed: false,
            finished_at: Some(finished_at),
        }
    }

    #[test]
    fn start_plans_continue_the_same_container() {
        assert_eq!(
            plan_start(None, &Found::Absent, None),
            StartPlan::CreateAndStart
        );
        assert_eq!(plan_start(None, &Found::Running, None), StartPlan::Reattach);
        assert_eq!(
            plan_start(
                Some(&journal(Phase::KeptPaused, None)),
                &Found::Paused,
                None
            ),
            StartPlan::Unpause
        );
        let kept_by_signals = plan_start(
            Some(&journal(Phase::KeptPaused, None)),
            &Found::Running,
            None,
        );
        assert_eq!(kept_by_signals, StartPlan::Reattach);
        assert!(matches!(
            plan_start(None, &Found::Created, None),
            StartPlan::Start { .. }
        ));
    }

    #[test]
    fn a_job_that_finished_while_we_were_away_is_reported_not_rerun() {
        let boot = Some(1_000);
        let plan = plan_start(
            Some(&journal(Phase::Running, None)),
            &exited(0, 2_000),
            boot,
        );
        assert_eq!(
            plan,
            StartPlan::Report {
                code: 0,
                oom_killed: false
            }
        );
        // Exited on its own before a reboot: still a real result.
        assert_eq!(
            plan_start(None, &exited(3, 500), boot),
            StartPlan::Report {
                code: 3,
                oom_killed: false
            }
        );
        // Killed by a signal after boot (e.g. by the volunteer): reported too.
        assert_eq!(
            plan_start(None, &exited(137, 2_000), boot),
            StartPlan::Report {
                code: 137,
                oom_killed: false
            }
        );
        // Removed after finishing, report lost: the journal has the code.
        let plan = plan_start(
            Some(&journal(Phase::Finished, Some(5))),
            &Found::Absent,
            boot,
        );
        assert_eq!(
            plan,
            StartPlan::Report {
                code: 5,
                oom_killed: false
            }
        );
    }

    #[test]
    fn a_container_stopped_by_us_or_by_a_shutdown_is_started_again() {
        let boot = Some(1_000);
        let plan = plan_start(
            Some(&journal(Phase::KeptStopped, None)),
            &exited(143, 2_000),
            boot,
        );
        assert!(matches!(plan, StartPlan::Start { .. }));
        assert!(matches!(
            plan_start(None, &exited(137, 900), boot),
            StartPlan::Start { .. }
        ));
        assert!(matches!(
            plan_start(None, &exited(255, 900), boot),
            StartPlan::Start { .. }
        ));
        // Without times we cannot tell: report rather than rerun.
        assert!(matches!(
            plan_start(
                None,
                &Found::Exited {
                    code: 137,
                    oom_killed: false,
                    finished_at: None
                },
                boot
            ),
            StartPlan::Report { .. }
        ));
    }

    #[test]
    fn the_journal_cpu_time_counts_only_as_far_as_the_container_could_have_used() {
        assert_eq!(
            trusted_cpu_time(100.0, Some(130.0), 2.0, Some(3600.0)),
            130.0
        );
        assert_eq!(
            trusted_cpu_time(100.0, Some(1e9), 2.0, Some(60.0)),
            220.0,
            "a job-written figure is bounded"
        );
        assert_eq!(
            trusted_cpu_time(100.0, Some(50.0), 2.0, Some(60.0)),
            100.0,
            "never below the client's"
        );
        assert_eq!(
            trusted_cpu_time(100.0, Some(1e9), 2.0, None),
            100.0,
            "no container, no claim"
        );
        assert_eq!(trusted_cpu_time(100.0, None, 2.0, Some(60.0)), 100.0);
    }
}
