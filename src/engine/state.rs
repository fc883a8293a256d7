//! A container's state as `inspect` prints it through one template, read
//! into types that speak neither engine's words: one command tells a
//! restarted task all it needs to pick up its container (status, exit,
//! pid, and the labels that say whose it is).
use super::time;

/// A container's status, in the words of neither engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerStatus {
    /// Made but never started (Podman also says configured, initialized).
    Created,
    Running,
    Paused,
    /// Exited or stopped: the process is gone and will not come back by itself.
    Exited,
    /// Anything else (restarting, removing, ...), as the engine named it.
    Other(String),
}

impl ContainerStatus {
    fn parse(engine_word: &str) -> ContainerStatus {
        match engine_word.trim().to_lowercase().as_str() {
            "created" | "configured" | "initialized" => ContainerStatus::Created,
            "running" => ContainerStatus::Running,
            "paused" => ContainerStatus::Paused,
            "exited" | "stopped" | "dead" => ContainerStatus::Exited,
            other => ContainerStatus::Other(other.to_string()),
        }
    }
}

/// The state of a container, from `inspect`.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerState {
    pub status: ContainerStatus,
    pub exit_code: i32,
    pub oom_killed: bool,
    /// Host pid of the container's init process, while it runs.
    pub pid: Option<u32>,
    /// Unix time of the last exit, when there was one.
    pub finished_at: Option<i64>,
    /// The engine's full container id.
    pub id: String,
    /// Unix time of the container's creation.
    pub created: Option<i64>,
    /// The image the container was created from, as named then.
    pub image: Option<String>,
    /// Whether docker_wrapper made it (its version label, `names::WRAPPER_LABEL`).
    pub made_by_wrapper: bool,
    /// The result recorded on the container (`names::RESULT_LABEL`).
    pub result: Option<String>,
    /// The slot recorded on the container (`names::SLOT_LABEL`); None for
    /// containers made without it.
    pub slot: Option<String>,
}

impl ContainerState {
    pub(super) fn parse(line: &str) -> Option<ContainerState> {
        // The slot comes last and whole: a path may hold `|` or spaces.
        let line = line.trim_start();
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        let mut fields = line.splitn(11, '|');
        let status = ContainerStatus::parse(fields.next()?);
        let exit_code = fields.next()?.trim().parse().ok()?;
        let oom_killed = fields.next()?.trim() == "true";
        let pid = fields.next()?.trim().parse().ok().filter(|pid| *pid > 0);
        let finished_at = fields.next().and_then(time::parse_unix_time);
        let id = fields.next().unwrap_or_default().trim().to_string();
        let created = fields.next().and_then(time::parse_unix_time);
        let image = present(fields.next().unwrap_or_default().trim());
        let made_by_wrapper = !fields.next().unwrap_or_default().trim().is_empty();
        let result = present(fields.next().unwrap_or_default().trim());
        let slot = present(fields.next().unwrap_or_default());
        Some(ContainerState {
            status,
            exit_code,
            oom_killed,
            pid,
            finished_at,
            id,
            created,
            image,
            made_by_wrapper,
            result,
            slot,
        })
    }

    pub fn has_exited(&self) -> bool {
        self.status == ContainerStatus::Exited
    }
}

/// A field the engine printed empty is one the container does not have.
fn present(field: &str) -> Option<String> {
    Some(field.to_string()).filter(|field| !field.is_empty())
}

/// Labels are printed through `with`: Docker prints a missing one as
/// `<no value>`, Podman as nothing; `with` prints nothing for both.
pub(super) const STATE_FORMAT: &str = concat!(
    "{{.State.Status}}|{{.State.ExitCode}}|{{.State.OOMKilled}}|{{.State.Pid}}|{{.State.FinishedAt}}|{{.Id}}|{{.Created}}",
    "|{{.Config.Image}}",
    "|{{with index .Config.Labels \"boinc.docker_wrapper\"}}{{.}}{{end}}",
    "|{{with index .Config.Labels \"boinc.result\"}}{{.}}{{end}}",
    "|{{with index .Config.Labels \"boinc.docker_wrapper.slot\"}}{{.}}{{end}}"
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::names;

    #[test]
    fn parses_inspect_state() {
        let s = ContainerState::parse("exited|3|false|0|2026-11-23T12:00:00.1Z\n").unwrap();
        assert_eq!(s.finished_at, Some(1_795_435_200));
        assert_eq!(
            (&s.status, s.exit_code, s.oom_killed, s.pid),
            (&ContainerStatus::Exited, 3, false, None)
        );
        assert!(s.has_exited());
        let s = ContainerState::parse("running|0|false|4242").unwrap();
        assert!(!s.has_exited());
        assert_eq!(s.pid, Some(4242));
        assert!(ContainerState::parse("garbage").is_none());
    }

    #[test]
    fn statuses_of_both_engines_map_to_one_set() {
        for (word, status) in [
            ("created", ContainerStatus::Created),
            ("Configured", ContainerStatus::Created),
            ("initialized", ContainerStatus::Created),
            ("running", ContainerStatus::Running),
            ("paused", ContainerStatus::Paused),
            ("exited", ContainerStatus::Exited),
            ("stopped", ContainerStatus::Exited),
            ("dead", ContainerStatus::Exited),
            (" restarting ", ContainerStatus::Other("restarting".into())),
        ] {
            assert_eq!(ContainerStatus::parse(word), status, "{word}");
        }
    }

    #[test]
    fn the_slot_label_is_read_whole() {
        for label in [names::SLOT_LABEL, names::RESULT_LABEL, names::WRAPPER_LABEL] {
            assert!(STATE_FORMAT.contains(&format!("\"{label}\"")), "{label}");
        }
        let s = ContainerState::parse("running|0|false|1||||||| /slots/a|b c \n").unwrap();
        assert_eq!(s.slot.as_deref(), Some(" /slots/a|b c "));
        let s = ContainerState::parse("running|0|false|1|x|id|x|img|0.1.0|r_0|\n").unwrap();
        assert_eq!(s.slot, None);
        assert_eq!(
            (s.image.as_deref(), s.made_by_wrapper, s.result.as_deref()),
            (Some("img"), true, Some("r_0"))
        );
        let s = ContainerState::parse("running|0|false|1|x|id|x|img|||\n").unwrap();
        assert!(!s.made_by_wrapper && s.result.is_none());
        assert_eq!(
            ContainerState::parse("running|0|false|1").unwrap().slot,
            None
        );
    }

    #[test]
    fn multibyte_garbage_is_no_state() {
        for garbage in [
            "€".repeat(5000),
            "ü|ü|ü|ü|ü|ü|ü|ü".into(),
            "running|€|false".into(),
            "\u{1F600}".repeat(11),
        ] {
            assert!(ContainerState::parse(&garbage).is_none(), "{garbage}");
        }
    }
}
