//! What an engine's failure means. Docker, Podman and their runtimes (runc,
//! crun) say it only in words; this is the one place that reads them, when
//! a command's output becomes an `EngineError`, so the rest of the wrapper
//! (the engine's own code included) decides on a kind, never on text.

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
    /// The container named does not exist.
    NotFound,
    /// The image to create a container from is not on the engine.
    ImageMissing,
    /// Another container has the name asked for.
    NameInUse,
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

/// How Docker and Podman say that a container does not exist.
const NOT_FOUND: &[&str] = &[
    "no such container",
    "no such object",
    "no container with name or id",
];

/// How they say that an image is not there: Docker and Podman asked not to
/// pull (`--pull never`), or an older Docker whose pull a registry refused.
const IMAGE_MISSING: &[&str] = &["no such image", "image not known", "pull access denied"];

/// Docker: `Conflict. The container name "/x" is already in use by
/// container "..."`; Podman: `the container name "x" is already in use by
/// ...`. Both phrases, so that a port in use ("bind: address already in
/// use") is never taken for it.
const NAME_IN_USE: &[&str] = &["the container name ", " is already in use"];

/// The CLI cannot reach its engine (the Docker daemon is down, its socket is
/// not ours to use, a remote Podman does not answer).
const UNREACHABLE: &[&str] = &[
    "cannot connect to the docker daemon",
    "while trying to connect to the docker daemon",
    "cannot connect to podman",
];

const PAUSE_REFUSALS: &[&str] = &[
    "does not have a cgroup",
    "rootless containers with cgroup v1",
];

/// What a failed command's words say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Reading {
    pub failure: Failure,
    /// The CLI did not reach its engine at all: whatever the command, the
    /// engine is unavailable (`Engine::failed`).
    pub out_of_reach: bool,
}

/// Reads what the engine said about a failed command.
pub(super) fn read(text: &str) -> Reading {
    let text = text.to_lowercase();
    let says = |phrases: &[&str]| phrases.iter().any(|phrase| text.contains(phrase));
    let denied = text.contains("permission denied");
    if says(UNREACHABLE) {
        let failure = if denied {
            Failure::PermissionDenied
        } else {
            Failure::Unavailable
        };
        return Reading {
            failure,
            out_of_reach: true,
        };
    }
    let failure = if says(PAUSE_REFUSALS) {
        Failure::CannotPause
    } else if NAME_IN_USE.iter().all(|phrase| text.contains(phrase)) {
        Failure::NameInUse
    } else if says(NOT_FOUND) {
        Failure::NotFound
    } else if says(IMAGE_MISSING) {
        Failure::ImageMissing
    } else if says(LIMIT_REFUSALS) {
        Failure::LimitsRefused
    } else if denied {
        Failure::PermissionDenied
    } else {
        Failure::Other
    };
    Reading {
        failure,
        out_of_reach: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(detail: &str) -> Failure {
        read(detail).failure
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
        ] {
            assert_eq!(failed(absent), Failure::NotFound, "{absent}");
        }
        assert_eq!(failed("Error: container is in use"), Failure::Other);
    }

    /// The words of Podman 4.3 and Docker 20.10 (the daemon) and 28 (the
    /// CLI) for `run --pull never` of an image they do not have.
    #[test]
    fn a_missing_image_is_told_apart() {
        for missing in [
            "Error: boinc_wrapper/x:1: image not known",
            "docker: Error response from daemon: No such image: boinc_wrapper/x:1.",
            "Error response from daemon: pull access denied for boinc_wrapper/x, repository does not exist or may require 'docker login'",
        ] {
            assert_eq!(failed(missing), Failure::ImageMissing, "{missing}");
        }
    }

    /// A second `run` under a name in use, as Podman 4.3 and Docker 20.10
    /// refuse it; a port in use is something else.
    #[test]
    fn a_name_in_use_is_told_apart() {
        for in_use in [
            "Error: creating container storage: the container name \"boinc__x\" is already in use by 38a7910e1b44. You have to remove that container to be able to reuse that name: that name is already in use",
            "docker: Error response from daemon: Conflict. The container name \"/boinc__x\" is already in use by container \"43412f65dde7\". You have to remove (or rename) that container to be able to reuse that name.",
        ] {
            assert_eq!(failed(in_use), Failure::NameInUse, "{in_use}");
        }
        let port = "docker: Error response from daemon: driver failed programming external connectivity on endpoint boinc__x: Error starting userland proxy: listen tcp4 127.0.0.1:8080: bind: address already in use.";
        assert_eq!(failed(port), Failure::Other);
    }

    #[test]
    fn an_engine_out_of_reach_is_told_apart() {
        assert_eq!(
            read("docker: Cannot connect to the Docker daemon at unix:///nonexistent/docker.sock. Is the docker daemon running?."),
            Reading { failure: Failure::Unavailable, out_of_reach: true }
        );
        assert_eq!(
            read("docker: Got permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock: Post \"http://%2Fvar%2Frun%2Fdocker.sock/v1.41/containers/create\": dial unix /var/run/docker.sock: connect: permission denied."),
            Reading { failure: Failure::PermissionDenied, out_of_reach: true }
        );
        // A file the job may not read is the job's failure, not the engine's.
        assert_eq!(
            read("Error: crun: open `/app/in`: Permission denied: OCI permission denied"),
            Reading {
                failure: Failure::PermissionDenied,
                out_of_reach: false
            }
        );
        assert!(!read("Error: no such container x").out_of_reach);
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
}
