//! What went wrong with an engine command, in one type for the whole
//! wrapper: whether the engine can be used at all (the task is then retried
//! later), or a command ran and failed, hung, or was cancelled.
use std::fmt;

use super::process::RunError;

#[derive(Debug)]
pub enum EngineError {
    /// The engine cannot be used right now (missing, daemon down, hung):
    /// the task should be retried later, not failed.
    Unavailable(String),
    /// A command ran and failed.
    Failed { command: String, detail: String },
    /// A command did not finish in time and was killed: the engine hangs.
    TimedOut(String),
    /// The caller cancelled a long command (client quit/abort).
    Cancelled,
}

impl EngineError {
    /// Why the engine cannot be used now, when that is the error: the task
    /// is then retried later rather than failed.
    pub fn unavailable(&self) -> Option<&str> {
        match self {
            EngineError::Unavailable(why) | EngineError::TimedOut(why) => Some(why),
            _ => None,
        }
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Unavailable(why) | EngineError::TimedOut(why) => {
                write!(f, "container engine unavailable: {why}")
            }
            EngineError::Failed { command, detail } => write!(f, "'{command}' failed: {detail}"),
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
            other => EngineError::Unavailable(other.to_string()),
        }
    }
}
