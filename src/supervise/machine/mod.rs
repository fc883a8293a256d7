//! The task's life as a state machine: each event (the client's status, the
//! container's exit, a signal, periodic work falling due, the result of an
//! action) goes in, the actions to perform come out. No I/O here: the loop
//! (`supervise::run_loop`) gathers the events and performs the actions, and
//! feeds their results back in as events. `start` plans how a run begins
//! from what an earlier one left; `run_clock` counts the job's running time.
mod run_clock;
pub mod start;

use std::time::{Duration, Instant};

use crate::boinc::exit_code::WrapperExit;
use crate::boinc::ClientStatus;
use crate::config::QuitAction;
use crate::outcome::Retry;
use crate::slot::control_files::JobRequest;
use crate::slot::journal::Phase;
use crate::supervise::suspend::Paused;
use run_clock::RunClock;

pub use start::{
    owner, plan_from_journal, plan_start, recover, trusted_cpu_time, Attempt, Found, Identity,
    Owner, Recovery, StartPlan,
};

/// Where the task is, with what is known only there.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Running,
    /// The client suspended the task; `paused`: how the container is
    /// paused, None while the pause is under way or when it failed.
    Suspended {
        paused: Option<Paused>,
    },
    /// Keeping the container's work for a restart, step by step; `paused`:
    /// how it is paused, if it is; `retry`: the temporary exit the job
    /// asked for, if it did.
    Quitting {
        paused: Option<Paused>,
        retry: Option<Retry>,
    },
    /// Nothing more to supervise; the process is about to exit.
    Done,
}

/// Periodic work, as the loop's schedule says it is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Periodic {
    /// CPU time, memory and fraction done to the client.
    Report,
    /// The slot's size against the workunit's disk bound.
    DiskCheck,
    /// The files through which the job asks things of the client.
    ControlFiles,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The client's latest status.
    Client(ClientStatus),
    ContainerExited {
        code: i32,
        oom_killed: bool,
    },
    /// SIGTERM/SIGINT/SIGQUIT reached the wrapper itself.
    Terminated,
    Due(Periodic),
    /// The disk check found the slot past the workunit's bound.
    DiskOverBound {
        used: u64,
        bound: u64,
    },
    /// The engine cannot say how the container ended: it is gone or hangs.
    EngineLost {
        why: String,
    },
    /// What came of `Action::Pause` or `Action::PauseForQuit`.
    PauseDone(PauseResult),
    /// The networks are back; `running_again`: the container had to be
    /// unpaused for it and could not be paused again.
    NetworksRestored {
        running_again: bool,
    },
    /// What came of `Action::StopForRestart`.
    StopDone {
        stopped: bool,
    },
    /// The job asked for something through its control files.
    Job(JobRequest),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseResult {
    Paused(Paused),
    /// The client or the job moved on while the engine worked.
    Cancelled,
    /// Neither the engine nor signals could pause it; it runs.
    Failed,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Pause the container: by the engine, else by stopping its processes.
    Pause,
    /// Undo the pause, the way it was made.
    Unpause(Paused),
    /// Follow the client's network suspension (the container runs).
    FollowNetwork {
        suspended: bool,
    },
    /// The first step of keeping the work for a restart: log why and give
    /// the container its networks back (the next process would not know
    /// which were taken).
    PrepareRestart {
        reason: &'static str,
    },
    /// Pause for a restart; only an abort cancels it.
    PauseForQuit,
    /// Stop the container for a restart; `continue_first`: its processes
    /// are stopped by signals and must see the SIGTERM.
    StopForRestart {
        continue_first: bool,
    },
    /// Journal the phase the container was left in, and exit for a restart:
    /// after `retry`'s delay when the job asked for one.
    KeepForRestart {
        phase: Phase,
        retry: Option<Retry>,
    },
    /// Kill and remove the container, then exit.
    Abort,
    /// The end of the job: say why, bring the container down as `kill`
    /// says, copy its log, remove it and finish with `code`.
    End {
        code: i32,
        why: Ending,
        kill: Kill,
    },
    /// CPU time, memory and fraction done to the client; `sample`: read
    /// the container's counters first (it runs); `job_ended`: say done, as
    /// boinc_finish does (sent before the clean-up, so that the client has
    /// read it by the time the process exits); `time_share`: the share of
    /// `job_duration` run so far, the progress when the job writes none.
    Report {
        sample: bool,
        job_ended: bool,
        time_share: Option<f64>,
    },
    CheckDisk,
    CheckControlFiles,
    SendTrickle {
        variety: String,
        content: String,
    },
    RequestUpload {
        name: String,
    },
    /// The job checkpointed: its CPU time so far is kept work.
    Checkpoint,
    /// Give up supervising: the engine is gone, so the task is retried
    /// later and the next run finds the container by name.
    GiveUp {
        why: String,
    },
}

/// Why the job ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// It exited by itself.
    Exited,
    /// The kernel killed it at its memory limit.
    OutOfMemory,
    /// It wrote past the workunit's disk bound.
    OverDiskBound { used: u64, bound: u64 },
    /// It stopped touching its heartbeat file.
    Hung {
        file: String,
        silent_secs: u64,
        interval_secs: u64,
    },
    /// It has run for its `job_duration`.
    JobDuration { secs: u64 },
    /// It wrote its completion file; the message goes to the volunteer.
    Completed { message: String, notice: bool },
}

/// How the container is brought down at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    /// It has exited already.
    No,
    /// Asked to stop (SIGTERM, `stop_grace_secs`, then SIGKILL): the job
    /// may write its last files.
    Stop,
    /// At once: the job is past a limit or hangs.
    Now,
}

/// What the client (or a signal) asks that ends supervision, ranked: an
/// abort wins over everything, a quit over a suspension. The one place
/// that ranks them; the loop and the cancellation of engine commands ask it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interruption {
    /// Throw the work away.
    Abort,
    /// Keep the work for a restart, for this reason.
    Quit(&'static str),
}

const TERMINATED: &str = "the wrapper was terminated";

/// The interruption `status` asks for; `terminated`: a signal reached the
/// wrapper itself.
pub fn interruption(status: &ClientStatus, terminated: bool) -> Option<Interruption> {
    if status.abort_request {
        Some(Interruption::Abort)
    } else if status.quit_request {
        Some(Interruption::Quit("the client asked us to quit"))
    } else if status.no_heartbeat {
        Some(Interruption::Quit("no heartbeat from the client"))
    } else if terminated {
        Some(Interruption::Quit(TERMINATED))
    } else {
        None
    }
}

/// The exit code to report for a job that exited with `code`, and why.
pub fn job_exit(code: i32, oom_killed: bool) -> (i32, Ending) {
    if oom_killed {
        (WrapperExit::MemLimitExceeded.code(), Ending::OutOfMemory)
    } else {
        (code, Ending::Exited)
    }
}

/// Whether a job that exited with `code` was killed for its memory: the
/// engine says so, or the cgroup counted an OOM kill and the code is
/// SIGKILL's (a job that survived an OOM kill of one of its processes
/// ended for other reasons).
pub fn out_of_memory(code: i32, engine_says: bool, cgroup_counted: bool) -> bool {
    engine_says || (cgroup_counted && code == 137)
}

/// The machine: the task's state and what it knows of the container.
#[derive(Debug)]
pub struct Supervisor {
    state: State,
    quit_action: QuitAction,
    /// `job_duration`, when job.toml sets it.
    job_duration: Option<Duration>,
    /// The job's running time: the clock stops while it is suspended.
    clock: RunClock,
    /// When the event being decided on happened.
    now: Instant,
}

impl Supervisor {
    /// A supervisor for a running container; `quit_action`: job.toml's.
    pub fn new(quit_action: QuitAction) -> Supervisor {
        let now = Instant::now();
        Supervisor {
            state: State::Running,
            quit_action,
            job_duration: None,
            clock: RunClock::started(Duration::ZERO, now),
            now,
        }
    }

    /// Ends the job as a success once it has run for `limit`, counting
    /// `ran_before` (earlier runs of the task) and its running time from
    /// `now` on.
    pub fn with_job_duration(
        mut self,
        limit: Duration,
        ran_before: Duration,
        now: Instant,
    ) -> Self {
        self.job_duration = Some(limit);
        self.clock = RunClock::started(ran_before, now);
        self.now = now;
        self
    }

    #[cfg(test)]
    pub fn state(&self) -> State {
        self.state.clone()
    }

    /// What to do about `event`, which happened at `now`.
    pub fn on_at(&mut self, now: Instant, event: &Event) -> Vec<Action> {
        self.now = now.max(self.now);
        let before = self.state.clone();
        let mut actions = self.decide(event);
        match (&before, &self.state) {
            (State::Running, State::Running) => actions.extend(self.time_up()),
            (State::Running, _) => self.clock.stop(self.now),
            (State::Suspended { .. }, State::Running) => {
                self.clock.start(self.now);
                actions.extend(self.time_up());
            }
            _ => {}
        }
        if std::mem::discriminant(&self.state) != std::mem::discriminant(&before) {
            log::debug!("{before:?} -> {:?} on {event:?}", self.state);
        }
        actions
    }

    /// `on_at` with no time passing since the last event: for the tests
    /// whose paths do not depend on the clock.
    #[cfg(test)]
    pub fn on(&mut self, event: &Event) -> Vec<Action> {
        self.on_at(self.now, event)
    }

    /// The end of a job that has run for its `job_duration`.
    fn time_up(&mut self) -> Vec<Action> {
        let Some(limit) = self.job_duration else {
            return vec![];
        };
        if self.clock.elapsed(self.now) < limit {
            return vec![];
        }
        let end = vec![
            self.report(true, true),
            Action::End {
                code: 0,
                why: Ending::JobDuration {
                    secs: limit.as_secs(),
                },
                kill: Kill::Stop,
            },
        ];
        self.end(end)
    }

    fn report(&self, sample: bool, job_ended: bool) -> Action {
        Action::Report {
            sample,
            job_ended,
            time_share: self.job_duration.map(|limit| {
                (self.clock.elapsed(self.now).as_secs_f64() / limit.as_secs_f64()).min(1.0)
            }),
        }
    }

    /// The report before the process exits with the job still unfinished.
    fn last_report(&self) -> Action {
        self.report(false, false)
    }

    fn decide(&mut self, event: &Event) -> Vec<Action> {
        if self.state == State::Done {
            return vec![];
        }
        if matches!(self.state, State::Quitting { .. }) {
            return self.quitting(event);
        }
        match event {
            Event::ContainerExited { code, oom_killed } => {
                let (code, why) = job_exit(*code, *oom_killed);
                self.end(vec![
                    self.report(false, true),
                    Action::End {
                        code,
                        why,
                        kill: Kill::No,
                    },
                ])
            }
            Event::EngineLost { why } => self.end(vec![Action::GiveUp { why: why.clone() }]),
            Event::Terminated => self.interrupted(Interruption::Quit(TERMINATED)),
            Event::Client(status) => self.client(status),
            Event::Due(Periodic::Report) => vec![self.report(self.state == State::Running, false)],
            Event::Due(Periodic::DiskCheck) if self.state == State::Running => {
                vec![Action::CheckDisk]
            }
            Event::Due(Periodic::ControlFiles) if self.state == State::Running => {
                vec![Action::CheckControlFiles]
            }
            Event::Due(Periodic::DiskCheck | Periodic::ControlFiles) => vec![],
            Event::Job(request) => self.job(request),
            Event::DiskOverBound { used, bound } => self.end(vec![Action::End {
                code: WrapperExit::DiskLimitExceeded.code(),
                why: Ending::OverDiskBound {
                    used: *used,
                    bound: *bound,
                },
                kill: Kill::Now,
            }]),
            Event::PauseDone(result) => {
                // Asked only while suspended (a quit's pause is the
                // Quitting state's).
                if let State::Suspended { paused } = &mut self.state {
                    *paused = match result {
                        PauseResult::Paused(how) => Some(*how),
                        PauseResult::Cancelled | PauseResult::Failed => None,
                    };
                }
                vec![]
            }
            // Answers to steps of a quit, which only Quitting asks for.
            Event::NetworksRestored { .. } | Event::StopDone { .. } => vec![],
        }
    }

    fn client(&mut self, status: &ClientStatus) -> Vec<Action> {
        // A signal comes as an event of its own (`Terminated`).
        if let Some(asked) = interruption(status, false) {
            return self.interrupted(asked);
        }
        let mut actions = match (&self.state, status.suspended) {
            (State::Running, true) => {
                self.state = State::Suspended { paused: None };
                vec![Action::Pause]
            }
            (State::Suspended { paused }, false) => {
                // Undone as it was made; without a record, the engine's way
                // (a pause that timed out may have happened all the same).
                let how = paused.unwrap_or(Paused::ByEngine);
                self.state = State::Running;
                vec![Action::Unpause(how)]
            }
            _ => vec![],
        };
        if self.state == State::Running {
            actions.push(Action::FollowNetwork {
                suspended: status.network_suspended,
            });
        }
        actions
    }

    fn job(&mut self, request: &JobRequest) -> Vec<Action> {
        match request.clone() {
            JobRequest::Complete {
                code,
                message,
                notice,
            } => self.end(vec![
                self.report(true, true),
                Action::End {
                    code,
                    why: Ending::Completed { message, notice },
                    kill: Kill::Stop,
                },
            ]),
            JobRequest::TemporaryExit {
                delay_secs,
                reason,
                notice,
            } => {
                let retry = Retry {
                    delay_secs,
                    reason,
                    notice,
                };
                self.quit_to_retry("the job asked for a temporary exit", Some(retry))
            }
            JobRequest::Trickle { variety, content } => {
                vec![Action::SendTrickle { variety, content }]
            }
            JobRequest::Upload { name } => vec![Action::RequestUpload { name }],
            JobRequest::Checkpoint => vec![Action::Checkpoint],
            JobRequest::Silent {
                file,
                silent_secs,
                interval_secs,
            } => self.end(vec![Action::End {
                code: WrapperExit::JobHung.code(),
                why: Ending::Hung {
                    file,
                    silent_secs,
                    interval_secs,
                },
                kill: Kill::Now,
            }]),
        }
    }

    fn interrupted(&mut self, asked: Interruption) -> Vec<Action> {
        match asked {
            Interruption::Abort => self.end(vec![self.last_report(), Action::Abort]),
            Interruption::Quit(reason) => self.quit(reason),
        }
    }

    /// Keeping the work takes steps whose outcome decides the next one.
    fn quit(&mut self, reason: &'static str) -> Vec<Action> {
        self.quit_to_retry(reason, None)
    }

    /// `quit`, with the temporary exit to make at the end.
    fn quit_to_retry(&mut self, reason: &'static str, retry: Option<Retry>) -> Vec<Action> {
        let report = self.last_report();
        let paused = match self.state {
            State::Suspended { paused } => paused,
            _ => None,
        };
        self.state = State::Quitting { paused, retry };
        vec![report, Action::PrepareRestart { reason }]
    }

    fn quitting(&mut self, event: &Event) -> Vec<Action> {
        let State::Quitting { paused, .. } = &mut self.state else {
            return vec![];
        };
        match event {
            Event::NetworksRestored { running_again } => {
                if *running_again {
                    *paused = None;
                }
                match (self.quit_action, *paused) {
                    (QuitAction::Pause, Some(_)) => self.keep(Phase::KeptPaused),
                    (QuitAction::Pause, None) => vec![Action::PauseForQuit],
                    (QuitAction::Stop, paused) => vec![Action::StopForRestart {
                        continue_first: paused == Some(Paused::BySignals),
                    }],
                }
            }
            Event::PauseDone(PauseResult::Paused(_)) => self.keep(Phase::KeptPaused),
            // A container that cannot be paused is stopped, so it never runs
            // on unsupervised while the client is down.
            Event::PauseDone(_) => vec![Action::StopForRestart {
                continue_first: false,
            }],
            Event::StopDone { stopped: true } => self.keep(Phase::KeptStopped),
            // The restarted wrapper re-attaches to whatever state it finds.
            Event::StopDone { stopped: false } => self.keep(Phase::Running),
            // The job ending meanwhile is found by the next run, which
            // reports it; nothing else can interrupt the steps.
            _ => vec![],
        }
    }

    fn keep(&mut self, phase: Phase) -> Vec<Action> {
        let retry = match &mut self.state {
            State::Quitting { retry, .. } => retry.take(),
            _ => None,
        };
        self.end(vec![Action::KeepForRestart { phase, retry }])
    }

    fn end(&mut self, actions: Vec<Action>) -> Vec<Action> {
        self.state = State::Done;
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(f: impl FnOnce(&mut ClientStatus)) -> Event {
        let mut status = ClientStatus::default();
        f(&mut status);
        Event::Client(status)
    }

    fn running() -> Event {
        client(|_| {})
    }

    fn suspended() -> Event {
        client(|c| c.suspended = true)
    }

    fn follow(suspended: bool) -> Action {
        Action::FollowNetwork { suspended }
    }

    const FINAL_REPORT: Action = Action::Report {
        sample: false,
        job_ended: true,
        time_share: None,
    };

    /// The report before the process exits with the job still unfinished.
    const LAST_REPORT: Action = Action::Report {
        sample: false,
        job_ended: false,
        time_share: None,
    };

    #[test]
    fn an_oom_kill_counted_by_the_cgroup_ends_the_job_only_with_sigkills_code() {
        assert!(out_of_memory(137, true, false));
        assert!(out_of_memory(1, true, false), "the engine's word is enough");
        assert!(out_of_memory(137, false, true));
        // One process of the job was killed, and the job went on to exit
        // by itself.
        assert!(!out_of_memory(0, false, true));
        assert!(!out_of_memory(137, false, false));
    }

    #[test]
    fn suspend_pauses_and_resume_undoes_the_same_pause_once() {
        let mut s = Supervisor::new(QuitAction::Pause);
        assert_eq!(s.on(&suspended()), vec![Action::Pause]);
        assert!(matches!(s.state(), State::Suspended { .. }));
        assert_eq!(
            s.on(&Event::PauseDone(PauseResult::Paused(Paused::BySignals))),
            vec![]
        );
        assert_eq!(s.on(&suspended()), vec![]);
        assert_eq!(
            s.on(&running()),
            vec![Action::Unpause(Paused::BySignals), follow(false)]
        );
        assert_eq!(s.state(), State::Running);
        assert_eq!(s.on(&running()), vec![follow(false)]);
        // Without a record of the pause, resuming asks the engine.
        s.on(&suspended());
        s.on(&Event::PauseDone(PauseResult::Failed));
        assert_eq!(
            s.on(&running()),
            vec![Action::Unpause(Paused::ByEngine), follow(false)]
        );
    }

    #[test]
    fn the_network_follows_the_client_only_while_the_container_runs() {
        let mut s = Supervisor::new(QuitAction::Pause);
        assert_eq!(
            s.on(&client(|c| c.network_suspended = true)),
            vec![follow(true)]
        );
        assert_eq!(
            s.on(&client(|c| {
                c.network_suspended = true;
                c.suspended = true
            })),
            vec![Action::Pause]
        );
    }

    #[test]
    fn interruptions_are_ranked_in_one_place() {
        let status = |f: fn(&mut ClientStatus)| {
            let mut s = ClientStatus::default();
            f(&mut s);
            s
        };
        let all = status(|s| {
            s.abort_request = true;
            s.quit_request = true;
            s.no_heartbeat = true;
            s.suspended = true;
        });
        assert_eq!(interruption(&all, true), Some(Interruption::Abort));
        let quit_and_silent = status(|s| {
            s.quit_request = true;
            s.no_heartbeat = true;
        });
        assert_eq!(
            interruption(&quit_and_silent, true),
            Some(Interruption::Quit("the client asked us to quit"))
        );
        let silent = status(|s| s.no_heartbeat = true);
        assert_eq!(
            interruption(&silent, true),
            Some(Interruption::Quit("no heartbeat from the client"))
        );
        let suspended = status(|s| s.suspended = true);
        assert_eq!(
            interruption(&suspended, true),
            Some(Interruption::Quit(TERMINATED))
        );
        assert_eq!(interruption(&suspended, false), None);
    }

    #[test]
    fn abort_wins_over_everything_else() {
        let e = client(|c| {
            c.abort_request = true;
            c.quit_request = true;
            c.suspended = true;
        });
        let mut s = Supervisor::new(QuitAction::Pause);
        s.on(&suspended());
        assert_eq!(s.on(&e), vec![LAST_REPORT, Action::Abort]);
        assert_eq!(s.state(), State::Done);
    }

    /// Runs a quit through its steps; `answers` are the steps' results in turn.
    fn quit_with(s: &mut Supervisor, answers: &[Event]) -> Vec<Action> {
        let mut actions = s.on(&client(|c| c.quit_request = true));
        assert_eq!(
            actions,
            vec![
                LAST_REPORT,
                Action::PrepareRestart {
                    reason: "the client asked us to quit"
                }
            ]
        );
        for answer in answers {
            actions.extend(s.on(answer));
        }
        actions.drain(..2);
        actions
    }

    const RESTORED: Event = Event::NetworksRestored {
        running_again: false,
    };

    #[test]
    fn quit_keeps_a_paused_container_as_it_is() {
        let mut s = Supervisor::new(QuitAction::Pause);
        s.on(&suspended());
        s.on(&Event::PauseDone(PauseResult::Paused(Paused::ByEngine)));
        assert_eq!(
            quit_with(&mut s, &[RESTORED]),
            vec![Action::KeepForRestart {
                phase: Phase::KeptPaused,
                retry: None
            }]
        );
        assert_eq!(s.state(), State::Done);
    }

    #[test]
    fn quit_pauses_a_running_container_or_stops_it_when_the_pause_fails() {
        let mut s = Supervisor::new(QuitAction::Pause);
        let paused = Event::PauseDone(PauseResult::Paused(Paused::ByEngine));
        assert_eq!(
            quit_with(&mut s, &[RESTORED, paused]),
            vec![
                Action::PauseForQuit,
                Action::KeepForRestart {
                    phase: Phase::KeptPaused,
                    retry: None
                }
            ]
        );
        let mut s = Supervisor::new(QuitAction::Pause);
        let failed = Event::PauseDone(PauseResult::Failed);
        let stopped = Event::StopDone { stopped: true };
        assert_eq!(
            quit_with(&mut s, &[RESTORED, failed, stopped]),
            vec![
                Action::PauseForQuit,
                Action::StopForRestart {
                    continue_first: false
                },
                Action::KeepForRestart {
                    phase: Phase::KeptStopped,
                    retry: None
                }
            ]
        );
    }

    #[test]
    fn a_container_unpaused_to_give_its_networks_back_is_paused_again() {
        let mut s = Supervisor::new(QuitAction::Pause);
        s.on(&suspended());
        s.on(&Event::PauseDone(PauseResult::Paused(Paused::ByEngine)));
        let running_again = Event::NetworksRestored {
            running_again: true,
        };
        let actions = quit_with(&mut s, &[running_again]);
        assert_eq!(actions, vec![Action::PauseForQuit]);
    }

    #[test]
    fn quit_action_stop_continues_signal_stopped_processes_first() {
        let mut s = Supervisor::new(QuitAction::Stop);
        s.on(&suspended());
        s.on(&Event::PauseDone(PauseResult::Paused(Paused::BySignals)));
        let not_stopped = Event::StopDone { stopped: false };
        assert_eq!(
            quit_with(&mut s, &[RESTORED, not_stopped]),
            vec![
                Action::StopForRestart {
                    continue_first: true
                },
                Action::KeepForRestart {
                    phase: Phase::Running,
                    retry: None
                }
            ]
        );
    }

    #[test]
    fn lost_heartbeat_and_signals_keep_the_work_too() {
        for event in [client(|c| c.no_heartbeat = true), Event::Terminated] {
            let mut s = Supervisor::new(QuitAction::Pause);
            let actions = s.on(&event);
            assert!(
                matches!(actions[..], [_, Action::PrepareRestart { .. }]),
                "{actions:?}"
            );
            assert!(matches!(s.state(), State::Quitting { .. }));
            // Client statuses wait until the steps are done.
            assert_eq!(s.on(&client(|c| c.abort_request = true)), vec![]);
        }
    }

    #[test]
    fn container_exit_finishes_with_its_code_after_a_final_report() {
        let e = Event::ContainerExited {
            code: 3,
            oom_killed: false,
        };
        let finish = Action::End {
            code: 3,
            why: Ending::Exited,
            kill: Kill::No,
        };
        let mut s = Supervisor::new(QuitAction::Pause);
        assert_eq!(s.on(&e), vec![FINAL_REPORT, finish.clone()]);
        // A container can exit while paused only if killed from outside; still report it.
        let mut s = Supervisor::new(QuitAction::Pause);
        s.on(&suspended());
        assert_eq!(s.on(&e), vec![FINAL_REPORT, finish]);
        assert_eq!(s.state(), State::Done);
        // Killed at its memory limit: the memory error, whatever its code.
        let mut s = Supervisor::new(QuitAction::Pause);
        let oom = Event::ContainerExited {
            code: 137,
            oom_killed: true,
        };
        let end = Action::End {
            code: WrapperExit::MemLimitExceeded.code(),
            why: Ending::OutOfMemory,
            kill: Kill::No,
        };
        assert_eq!(s.on(&oom), vec![FINAL_REPORT, end]);
    }

    #[test]
    fn periodic_work_runs_as_the_state_allows() {
        let mut s = Supervisor::new(QuitAction::Pause);
        let report = |sample| Action::Report {
            sample,
            job_ended: false,
            time_share: None,
        };
        assert_eq!(s.on(&Event::Due(Periodic::Report)), vec![report(true)]);
        assert_eq!(
            s.on(&Event::Due(Periodic::DiskCheck)),
            vec![Action::CheckDisk]
        );
        s.on(&suspended());
        assert_eq!(s.on(&Event::Due(Periodic::Report)), vec![report(false)]);
        assert_eq!(s.on(&Event::Due(Periodic::DiskCheck)), vec![]);
    }

    #[test]
    fn a_full_slot_or_a_lost_engine_ends_supervision() {
        let mut s = Supervisor::new(QuitAction::Pause);
        let over = Event::DiskOverBound { used: 9, bound: 5 };
        assert_eq!(
            s.on(&over),
            vec![Action::End {
                code: WrapperExit::DiskLimitExceeded.code(),
                why: Ending::OverDiskBound { used: 9, bound: 5 },
                kill: Kill::Now,
            }]
        );
        let mut s = Supervisor::new(QuitAction::Pause);
        let lost = Event::EngineLost { why: "gone".into() };
        assert_eq!(s.on(&lost), vec![Action::GiveUp { why: "gone".into() }]);
        assert_eq!(s.state(), State::Done);
    }

    #[test]
    fn the_jobs_requests_are_acted_on_while_it_runs() {
        let mut s = Supervisor::new(QuitAction::Pause);
        assert_eq!(
            s.on(&Event::Due(Periodic::ControlFiles)),
            vec![Action::CheckControlFiles]
        );
        let trickle = JobRequest::Trickle {
            variety: "v".into(),
            content: "c".into(),
        };
        assert_eq!(
            s.on(&Event::Job(trickle)),
            vec![Action::SendTrickle {
                variety: "v".into(),
                content: "c".into()
            }]
        );
        assert_eq!(
            s.on(&Event::Job(JobRequest::Checkpoint)),
            vec![Action::Checkpoint]
        );
        // A paused job writes nothing: no looks while suspended.
        s.on(&suspended());
        assert_eq!(s.on(&Event::Due(Periodic::ControlFiles)), vec![]);
    }

    #[test]
    fn a_completion_file_ends_the_task_with_the_jobs_code() {
        let mut s = Supervisor::new(QuitAction::Pause);
        let done = JobRequest::Complete {
            code: 4,
            message: "m".into(),
            notice: true,
        };
        assert_eq!(
            s.on(&Event::Job(done)),
            vec![
                Action::Report {
                    sample: true,
                    job_ended: true,
                    time_share: None
                },
                Action::End {
                    code: 4,
                    why: Ending::Completed {
                        message: "m".into(),
                        notice: true
                    },
                    kill: Kill::Stop,
                }
            ]
        );
        assert_eq!(s.state(), State::Done);
    }

    #[test]
    fn a_temporary_exit_file_keeps_the_work_then_asks_for_the_delay() {
        let mut s = Supervisor::new(QuitAction::Pause);
        let later = JobRequest::TemporaryExit {
            delay_secs: 60,
            reason: "r".into(),
            notice: false,
        };
        let actions = s.on(&Event::Job(later));
        assert!(
            matches!(actions[..], [_, Action::PrepareRestart { .. }]),
            "{actions:?}"
        );
        s.on(&RESTORED);
        let kept = s.on(&Event::PauseDone(PauseResult::Paused(Paused::ByEngine)));
        assert_eq!(
            kept,
            vec![Action::KeepForRestart {
                phase: Phase::KeptPaused,
                retry: Some(Retry {
                    delay_secs: 60,
                    reason: "r".into(),
                    notice: false
                })
            }]
        );
    }

    #[test]
    fn a_silent_job_is_ended_as_hung() {
        let mut s = Supervisor::new(QuitAction::Pause);
        let silent = JobRequest::Silent {
            file: "beat".into(),
            silent_secs: 700,
            interval_secs: 600,
        };
        assert!(matches!(
            s.on(&Event::Job(silent))[..],
            [Action::End {
                code: 195,
                why: Ending::Hung {
                    silent_secs: 700,
                    ..
                },
                kill: Kill::Now,
            }]
        ));
        assert_eq!(s.state(), State::Done);
    }

    fn job_duration(limit: u64, before: u64, t0: Instant) -> Supervisor {
        Supervisor::new(QuitAction::Pause).with_job_duration(
            Duration::from_secs(limit),
            Duration::from_secs(before),
            t0,
        )
    }

    fn share(actions: &[Action]) -> Option<f64> {
        match actions {
            [Action::Report { time_share, .. }, ..] => *time_share,
            other => panic!("no report in {other:?}"),
        }
    }

    #[test]
    fn job_duration_ends_the_job_as_a_success_after_its_running_time() {
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        let mut s = job_duration(100, 20, t0);
        let report = Event::Due(Periodic::Report);
        // Progress is the share of the time run, earlier runs included.
        assert_eq!(share(&s.on_at(at(30), &report)), Some(0.5));
        // Suspended for 1000 s: that time does not count.
        assert_eq!(s.on_at(at(40), &suspended()), vec![Action::Pause]);
        assert_eq!(share(&s.on_at(at(500), &report)), Some(0.6));
        assert_eq!(
            s.on_at(at(1040), &running()),
            vec![Action::Unpause(Paused::ByEngine), follow(false)]
        );
        assert_eq!(share(&s.on_at(at(1060), &report)), Some(0.8));
        // Any event after the time is up ends the job, here the next report.
        let end = s.on_at(at(1080), &report);
        assert_eq!(
            end,
            vec![
                Action::Report {
                    sample: true,
                    job_ended: false,
                    time_share: Some(1.0)
                },
                Action::Report {
                    sample: true,
                    job_ended: true,
                    time_share: Some(1.0)
                },
                Action::End {
                    code: 0,
                    why: Ending::JobDuration { secs: 100 },
                    kill: Kill::Stop,
                }
            ]
        );
        assert_eq!(s.state(), State::Done);
    }

    #[test]
    fn job_duration_used_up_before_a_restart_ends_the_job_at_once() {
        let t0 = Instant::now();
        let mut s = job_duration(60, 61, t0);
        let actions = s.on_at(t0, &running());
        assert!(
            matches!(
                actions[..],
                [
                    _,
                    _,
                    Action::End {
                        code: 0,
                        why: Ending::JobDuration { secs: 60 },
                        ..
                    }
                ]
            ),
            "{actions:?}"
        );
        // Suspended a second short of the time: it runs out only after the
        // resume, however long the suspension.
        let at = |secs| t0 + Duration::from_secs(secs);
        let mut s = job_duration(60, 0, t0);
        s.on_at(at(59), &suspended());
        assert_eq!(s.on_at(at(500), &Event::Due(Periodic::Report)).len(), 1);
        assert_eq!(s.on_at(at(1000), &running()).len(), 2);
        assert_eq!(s.state(), State::Running);
        let actions = s.on_at(at(1001), &Event::Due(Periodic::Report));
        assert!(
            matches!(
                actions.last(),
                Some(Action::End {
                    why: Ending::JobDuration { secs: 60 },
                    ..
                })
            ),
            "{actions:?}"
        );
    }

    #[test]
    fn job_duration_gives_way_to_the_jobs_own_end_and_to_a_quit() {
        let t0 = Instant::now();
        let late = t0 + Duration::from_secs(100);
        let mut s = job_duration(60, 0, t0);
        let exited = Event::ContainerExited {
            code: 3,
            oom_killed: false,
        };
        let actions = s.on_at(late, &exited);
        assert!(
            matches!(
                actions[..],
                [
                    _,
                    Action::End {
                        code: 3,
                        why: Ending::Exited,
                        ..
                    }
                ]
            ),
            "{actions:?}"
        );
        let mut s = job_duration(60, 0, t0);
        let actions = s.on_at(late, &client(|c| c.quit_request = true));
        assert!(
            matches!(actions[..], [_, Action::PrepareRestart { .. }]),
            "{actions:?}"
        );
        assert!(matches!(s.state(), State::Quitting { .. }));
    }

    #[test]
    fn done_ignores_further_events() {
        let mut s = Supervisor::new(QuitAction::Pause);
        s.on(&client(|c| c.abort_request = true));
        assert_eq!(s.on(&client(|c| c.abort_request = true)), vec![]);
        assert_eq!(s.on(&Event::Due(Periodic::Report)), vec![]);
    }
}
