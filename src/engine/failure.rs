//! What an engine's failure means. Docker, Podman and their runtimes (runc,
//! crun) say it only in words; this is the one place that reads them, so
//! the rest of the wrapper decides on a kind, never on text.
use super::EngineError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The engine can never pause this container (rootless Podman on cgroup
    /// v1 gives it no cgroup to freeze): retrying cannot help.
    CannotPause,
    /// The host cannot apply the cgroup limits asked for (no delegated
    /// controllers for a rootless user, a kernel without them).
    LimitsRefused,
    /// The user may not use the engine (Docker's socket without the group).
    PermissionDenied,
    /// The container or image named does not exist.
    NotFound,
    /// The engine is missing or down.
    Unavailable,
    /// A command did not finish in time: the engine hangs.
    TimedOut,
    /// The caller gave up on the command.
    Cancelled,
    /// A command failed for any other reason.
    Other,
}

/// Only these exact refusals drop the limits; any other failure of
/// `create` or `start` stays a failure.
const LIMIT_REFUSALS: &[&str] = &[
    "requested cgroup controller",
    "could not join or create cgroup",
    "cgroup is not mounted",
    "kernel does not support",
    "nanocpus can not be set",
];

/// How Docker and Podman say that a container or image does not exist.
const NOT_FOUND: &[&str] = &[
    "no such container",
    "no such object",
    "no container with name or id",
    "no such image",
    "image not known",
];

const PAUSE_REFUSALS: &[&str] = &[
    "does not have a cgroup",
    "rootless containers with cgroup v1",
];

impl EngineError {
    pub fn failure(&self) -> Failure {
        let text = match self {
            EngineError::Cancelled => return Failure::Cancelled,
            EngineError::Unavailable(why) if why.to_lowercase().contains("permission denied") => {
                return Failure::PermissionDenied
            }
            EngineError::Unavailable(_) => return Failure::Unavailable,
            EngineError::TimedOut(_) => return Failure::TimedOut,
            EngineError::Failed { detail, .. } => detail.to_lowercase(),
        };
        let says = |phrases: &[&str]| phrases.iter().any(|phrase| text.contains(phrase));
        if says(PAUSE_REFUSALS) {
            Failure::CannotPause
        } else if says(NOT_FOUND) {
            Failure::NotFound
        } else if says(LIMIT_REFUSALS) {
            Failure::LimitsRefused
        } else if text.contains("permission denied") {
            Failure::PermissionDenied
        } else {
            Failure::Other
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(detail: &str) -> Failure {
        EngineError::Failed {
            command: "podman x".into(),
            detail: detail.into(),
        }
        .failure()
    }

    #[test]
    fn limit_refusals_are_told_apart_from_other_failures() {
        for refusal in [
            "crun: the requested cgroup controller `pids` is not available: OCI runtime error",
            "Error response from daemon: NanoCPUs can not be set, as your kernel does not support CPU CFS scheduler or the cgroup is not mounted",
            "Your kernel does not support memory limit capabilities or the cgroup is not mounted. Limitation discarded.",
        ] {
            assert_eq!(failed(refusal), Failure::LimitsRefused, "{refusal}");
        }
        for other in [
            "Error: invalid reference format",
            "Error: invalid device cgroup rule 'bogus'",
            "Error: the cgroup controller is mentioned but nothing was refused",
            "Error: creating container storage: the container name \"x\" is already in use",
        ] {
            assert_eq!(failed(other), Failure::Other, "{other}");
        }
    }

    #[test]
    fn absence_is_told_apart() {
        for absent in [
            "Error: No such container: boinc__x",
            "Error response from daemon: No such container: boinc__x",
            "Error: No such object: boinc__x",
            "Error: no container with name or ID \"boinc__x\" found: no such container",
            "Error: boinc_wrapper/x:1: image not known",
        ] {
            assert_eq!(failed(absent), Failure::NotFound, "{absent}");
        }
        assert_eq!(failed("Error: container is in use"), Failure::Other);
    }

    #[test]
    fn podman_without_a_cgroup_can_never_pause() {
        assert_eq!(
            failed("Error: this container does not have a cgroup"),
            Failure::CannotPause
        );
        assert_eq!(
            failed("Error: pause is not supported for rootless containers with cgroup V1"),
            Failure::CannotPause
        );
        assert_eq!(failed("Error: unable to freeze"), Failure::Other);
    }

    #[test]
    fn access_and_availability() {
        let socket = "permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock";
        assert_eq!(
            EngineError::Unavailable(socket.into()).failure(),
            Failure::PermissionDenied
        );
        assert_eq!(
            EngineError::Unavailable("'docker version' did not finish within 5s".into()).failure(),
            Failure::Unavailable
        );
        assert_eq!(EngineError::Cancelled.failure(), Failure::Cancelled);
    }
}
