//! What a build creates that outlives it when it is interrupted, read from
//! the build's own output while it runs, so that exactly those things (and
//! nobody else's) can be removed afterwards.
//!
//! * Podman (Buildah) keeps a "working container" per build stage; a build
//!   killed mid-way leaves it in storage (`podman ps --external`). Its only
//!   mark is a random id, which Buildah's debug log names when it creates it.
//! * Docker's classic builder runs each step in an intermediate container
//!   and commits an image per step; the daemon removes the container of an
//!   abandoned build, but the images of the steps that finished stay,
//!   untagged. Its output names both ("Running in <id>", "---> <id>").
//! * BuildKit keeps its steps in its own cache, which it prunes itself.
use std::fmt;

use super::EngineKind;
use crate::host::process_tree::ProcessId;

/// What a build reports while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildEvent {
    /// The build command started (a local one: its process is ours).
    Started(ProcessId),
    /// The build made something that is litter unless the build finishes.
    Made(Leftover),
}

/// Something a build made that is ours to remove if the build does not finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leftover {
    /// A build container: Buildah's working container, Docker's intermediate one.
    Container(String),
    /// The image of a step the build itself committed (not one from the cache).
    Image(String),
}

impl Leftover {
    /// The inverse of `Display`; None for anything else, ids included that
    /// are not plain hex (the record lives in a directory jobs may write).
    pub fn parse(line: &str) -> Option<Leftover> {
        let (what, id) = line.trim().split_once(' ')?;
        if !is_id(id) {
            return None;
        }
        match what {
            "container" => Some(Leftover::Container(id.to_string())),
            "image" => Some(Leftover::Image(id.to_string())),
            _ => None,
        }
    }
}

impl fmt::Display for Leftover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Leftover::Container(id) => write!(f, "container {id}"),
            Leftover::Image(id) => write!(f, "image {id}"),
        }
    }
}

/// An engine id, short (12 hex digits) or full (64): never a name, so it
/// cannot match anything but what it was given for.
fn is_id(id: &str) -> bool {
    (12..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Follows one build's output, a line at a time.
pub struct BuildTrace {
    kind: EngineKind,
    /// Docker said the next step image comes from its cache: not ours.
    cached: bool,
}

impl BuildTrace {
    pub fn new(kind: EngineKind) -> BuildTrace {
        BuildTrace {
            kind,
            cached: false,
        }
    }

    /// The leftover this line of output announces, if any.
    pub fn line(&mut self, line: &str) -> Option<Leftover> {
        match self.kind {
            EngineKind::Podman => podman_container(line).map(Leftover::Container),
            EngineKind::Docker => self.docker_line(line.trim()),
        }
    }

    fn docker_line(&mut self, line: &str) -> Option<Leftover> {
        let step = line.strip_prefix("---> ")?.trim();
        if step == "Using cache" {
            self.cached = true;
            return None;
        }
        if let Some(id) = step.strip_prefix("Running in ") {
            return is_id(id).then(|| Leftover::Container(id.to_string()));
        }
        if !is_id(step) {
            return None;
        }
        let from_cache = std::mem::replace(&mut self.cached, false);
        (!from_cache).then(|| Leftover::Image(step.to_string()))
    }
}

/// `time="..." level=debug msg="Container ID: <64 hex>"`, which Buildah logs
/// right after it creates a working container.
fn podman_container(line: &str) -> Option<String> {
    if !line.contains("level=debug") {
        return None;
    }
    let (_, rest) = line.split_once("msg=\"Container ID: ")?;
    let id = rest.strip_suffix('"')?;
    (id.len() == 64 && is_id(id)).then(|| id.to_string())
}

/// Whether a line is the engine's debug log (Podman builds run with
/// `--log-level=debug` to learn the container ids): kept out of the output
/// a failed build reports.
pub fn is_debug_log(line: &str) -> bool {
    (line.starts_with("time=\"") && line.contains(" level=debug ")) || line.starts_with("[DEBUG ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PODMAN_ID: &str = "717da5166fb5e16263695e6b9f822339bdf1889578efdfc8073c134ac114c17c";

    fn trace(kind: EngineKind, output: &str) -> Vec<Leftover> {
        let mut trace = BuildTrace::new(kind);
        output.lines().filter_map(|line| trace.line(line)).collect()
    }

    #[test]
    fn podman_working_containers_come_from_the_debug_log() {
        let output = format!(
            "STEP 1/3: FROM scratch\n\
             time=\"2026-12-01T00:37:25Z\" level=debug msg=\"Container ID: {PODMAN_ID}\"\n\
             time=\"2026-12-01T00:37:25Z\" level=debug msg=\"Resources: &define.CommonBuildOptions{{}}\"\n\
             [DEBUG netavark::network::bridge] Container interface name: eth0\n\
             STEP 2/3: RUN echo Container ID: {PODMAN_ID}\n\
             Container ID: {PODMAN_ID}\n\
             time=\"2026-12-01T00:37:26Z\" level=debug msg=\"Container ID: not-an-id\"\n"
        );
        assert_eq!(
            trace(EngineKind::Podman, &output),
            vec![Leftover::Container(PODMAN_ID.into())]
        );
    }

    #[test]
    fn docker_steps_it_built_but_not_those_from_its_cache() {
        let output = "Step 1/5 : FROM scratch\n ---> \n\
                      Step 2/5 : COPY busybox /bin/busybox\n ---> Using cache\n ---> 618e7878ffaf\n\
                      Step 3/5 : ENV H19=repro3\n ---> Running in f0d90dcfc352\n\
                      Removing intermediate container f0d90dcfc352\n ---> 7a30133db9aa\n\
                      Step 4/5 : RUN sleep 60\n ---> Running in 3ca21ee4f2eb\n\
                      ---> deadbeef\n ---> Running in NOT-HEX-ID!\n";
        assert_eq!(
            trace(EngineKind::Docker, output),
            vec![
                Leftover::Container("f0d90dcfc352".into()),
                Leftover::Image("7a30133db9aa".into()),
                Leftover::Container("3ca21ee4f2eb".into()),
            ]
        );
    }

    #[test]
    fn buildkit_output_names_nothing() {
        let output =
            "#5 [2/3] RUN sleep 60\n#5 DONE 60.1s\n#6 writing image sha256:7a30133db9aa done\n";
        assert!(trace(EngineKind::Docker, output).is_empty());
    }

    #[test]
    fn record_lines_round_trip_and_refuse_anything_else() {
        for leftover in [
            Leftover::Container(PODMAN_ID.into()),
            Leftover::Image("7a30133db9aa".into()),
        ] {
            assert_eq!(Leftover::parse(&leftover.to_string()), Some(leftover));
        }
        for line in [
            "container my-build",
            "container --all",
            "image 7a30",
            "image 7A30133DB9AA",
            "volume 7a30133db9aa",
            "container",
            "",
        ] {
            assert_eq!(Leftover::parse(line), None, "{line:?}");
        }
    }

    #[test]
    fn debug_log_lines_are_told_from_build_output() {
        assert!(is_debug_log(&format!(
            "time=\"2026-12-01T00:37:25Z\" level=debug msg=\"Container ID: {PODMAN_ID}\""
        )));
        assert!(is_debug_log(
            "[DEBUG netavark::network::bridge] Container interface name: eth0"
        ));
        assert!(!is_debug_log("STEP 2/3: RUN make"));
        assert!(!is_debug_log(
            "time=\"2026-12-01T00:37:25Z\" level=error msg=\"building at STEP\""
        ));
        assert!(!is_debug_log(
            "Error: building at STEP \"RUN false\": exit status 1"
        ));
    }
}
