//! What went wrong with an engine command, in one type for the whole
//! wrapper: whether the engine can be used at all (the task is then retried
//! later), or a command ran and failed, hung, or was cancelled.
//!
//! The kind of a failure (`Failure`) is decided once, when the error is
//! made: from the engine's words where a command's output becomes an error
//! (`Engine::failed`, a build's failure; `failure::read`), from the variant
//! otherwise. Every later question reads that kind, never the text.
use std::fmt;
use std::io;

use super::process::RunError;
use super::Failure;

#[derive(Debug)]
pub enum EngineError {
    /// The engine cannot be used right now (missing, daemon down, hung):
    /// the task should be retried later, not failed.
    Unavailable(String),
    /// This user may not use the engine (Docker's socket without the
    /// `docker` group, a CLI that is not ours to run): as with
    /// `Unavailable`, the task is retried later.
    AccessDenied(String),
    /// A command ran and failed; `failure` is what its words meant.
    Failed {
        command: String,
        detail: String,
        failure: Failure,
    },
    /// A command did not finish in time and was killed: the engine hangs.
    TimedOut(String),
    /// The caller cancelled a long command (client quit/abort).
    Cancelled,
}

impl EngineError {
    /// A failure the wrapper found itself (output it cannot read, a file
    /// it cannot prepare): there are no engine words to read.
    pub(super) fn other(command: String, detail: String) -> EngineError {
        EngineError::Failed {
            command,
            detail,
            failure: Failure::Other,
        }
    }

    /// Why the engine cannot be used now, when that is the error: the task
    /// is then retried later rather than failed.
    pub fn unavailable(&self) -> Option<&str> {
        match self {
            EngineError::Unavailable(why)
            | EngineError::AccessDenied(why)
            | EngineError::TimedOut(why) => Some(why),
            EngineError::Failed { .. } | EngineError::Cancelled => None,
        }
    }

    /// What kind of failure this is, as decided when the error was made.
    pub fn failure(&self) -> Failure {
        match self {
            EngineError::Unavailable(_) => Failure::Unavailable,
            EngineError::AccessDenied(_) => Failure::PermissionDenied,
            EngineError::Failed { failure, .. } => *failure,
            EngineError::TimedOut(_) => Failure::TimedOut,
            EngineError::Cancelled => Failure::Cancelled,
        }
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Unavailable(why)
            | EngineError::AccessDenied(why)
            | EngineError::TimedOut(why) => {
                write!(f, "container engine unavailable: {why}")
            }
            EngineError::Failed {
                command, detail, ..
            } => write!(f, "'{command}' failed: {detail}"),
            EngineError::Cancelled => f.write_str("cancelled"),
        }
    }
}

impl std::error::Error for EngineError {}

impl From<RunError> for EngineError {
    fn from(err: RunError) -> Self {
        match err {
            RunError::Cancelled { .. } => EngineError::Cancelled,
            timed_out @ RunError::TimedOut { .. } => EngineError::TimedOut(timed_out.to_string()),
            RunError::Spawn { ref source, .. }
                if source.kind() == io::ErrorKind::PermissionDenied =>
            {
                EngineError::AccessDenied(err.to_string())
            }
            other => EngineError::Unavailable(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Errors made without the engine's words have their kind from
    /// their variant; their text is never read again.
    #[test]
    fn the_kind_is_the_one_decided_when_the_error_was_made() {
        let socket = "permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock";
        assert_eq!(
            EngineError::AccessDenied(socket.into()).failure(),
            Failure::PermissionDenied
        );
        assert_eq!(
            EngineError::Unavailable(socket.into()).failure(),
            Failure::Unavailable
        );
        assert_eq!(
            EngineError::other("x".into(), "no such container".into()).failure(),
            Failure::Other
        );
        assert_eq!(
            EngineError::TimedOut("'docker version' did not finish within 5s".into()).failure(),
            Failure::TimedOut
        );
        assert_eq!(EngineError::Cancelled.failure(), Failure::Cancelled);
        let not_ours = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let spawn = RunError::Spawn {
            program: "docker".into(),
            source: not_ours,
        };
        let err = EngineError::from(spawn);
        assert_eq!(err.failure(), Failure::PermissionDenied);
        assert!(err.unavailable().is_some());
    }
}
