//! The task's life as a state machine: (state, event) -> (state, actions).
//! No I/O here; `task.rs` performs the actions.
use crate::boinc::ClientStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Running,
    /// Paused because the client suspended the task.
    Suspended,
    /// Nothing more to supervise; the process is about to exit.
    Done,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The client's latest status (read every tick).
    Client(ClientStatus),
    ContainerExited { code: i32, oom_killed: bool },
    /// SIGTERM/SIGINT reached the wrapper itself.
    Terminated,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Pause,
    Unpause,
    /// Keep the container's work and exit so the client can restart us:
    /// pause it (unless already paused) or stop it, as job.toml says.
    KeepForRestart { reason: &'static str, already_paused: bool },
    /// Kill and remove the container, then exit.
    Abort,
    /// Copy the log, remove the container, report the exit code.
    Finish { code: i32, oom_killed: bool },
}

pub fn transition(state: State, event: &Event) -> (State, Vec<Action>) {
    if state == State::Done {
        return (State::Done, vec![]);
    }
    let paused = state == State::Suspended;
    match event {
        Event::ContainerExited { code, oom_killed } => {
            (State::Done, vec![Action::Finish { code: *code, oom_killed: *oom_killed }])
        }
        Event::Terminated => (State::Done, vec![keep("the wrapper was terminated", paused)]),
        Event::Client(status) => client_transition(state, status),
    }
}

fn client_transition(state: State, status: &ClientStatus) -> (State, Vec<Action>) {
    let paused = state == State::Suspended;
    if status.abort_request {
        return (State::Done, vec![Action::Abort]);
    }
    if status.quit_request {
        return (State::Done, vec![keep("the client asked us to quit", paused)]);
    }
    if status.no_heartbeat {
        return (State::Done, vec![keep("no heartbeat from the client", paused)]);
    }
    match (state, status.suspended) {
        (State::Running, true) => (State::Suspended, vec![Action::Pause]),
        (State::Suspended, false) => (State::Running, vec![Action::Unpause]),
        _ => (state, vec![]),
    }
}

fn keep(reason: &'static str, already_paused: bool) -> Action {
    Action::KeepForRestart { reason, already_paused }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(f: impl FnOnce(&mut ClientStatus)) -> Event {
        let mut status = ClientStatus::default();
        f(&mut status);
        Event::Client(status)
    }

    #[test]
    fn suspend_pauses_and_resume_unpauses_once() {
        let (s, a) = transition(State::Running, &client(|c| c.suspended = true));
        assert_eq!((s, a), (State::Suspended, vec![Action::Pause]));
        let (s, a) = transition(State::Suspended, &client(|c| c.suspended = true));
        assert_eq!((s, a), (State::Suspended, vec![]));
        let (s, a) = transition(State::Suspended, &client(|_| {}));
        assert_eq!((s, a), (State::Running, vec![Action::Unpause]));
        let (s, a) = transition(State::Running, &client(|_| {}));
        assert_eq!((s, a), (State::Running, vec![]));
    }

    #[test]
    fn abort_wins_over_everything_else() {
        let e = client(|c| {
            c.abort_request = true;
            c.quit_request = true;
            c.suspended = true;
        });
        assert_eq!(transition(State::Suspended, &e), (State::Done, vec![Action::Abort]));
    }

    #[test]
    fn quit_and_lost_heartbeat_keep_the_work() {
        let (s, a) = transition(State::Running, &client(|c| c.quit_request = true));
        assert_eq!(s, State::Done);
        assert!(matches!(a[..], [Action::KeepForRestart { already_paused: false, .. }]));
        let (_, a) = transition(State::Suspended, &client(|c| c.no_heartbeat = true));
        assert!(matches!(a[..], [Action::KeepForRestart { already_paused: true, .. }]));
        let (_, a) = transition(State::Running, &Event::Terminated);
        assert!(matches!(a[..], [Action::KeepForRestart { .. }]));
    }

    #[test]
    fn container_exit_finishes_with_its_code() {
        let e = Event::ContainerExited { code: 3, oom_killed: false };
        assert_eq!(transition(State::Running, &e), (State::Done, vec![Action::Finish { code: 3, oom_killed: false }]));
        // A container can exit while paused only if killed from outside; still report it.
        assert_eq!(transition(State::Suspended, &e).0, State::Done);
    }

    #[test]
    fn done_ignores_further_events() {
        assert_eq!(transition(State::Done, &client(|c| c.abort_request = true)), (State::Done, vec![]));
    }
}
