//! A small state file in the slot, so a restarted wrapper knows what the
//! previous one did with the container. Written atomically (temp + rename).
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::slot::io as slot_io;

pub const FILE_NAME: &str = "docker_wrapper_journal.toml";

/// Ours are a few hundred bytes; a larger one is not ours.
const MAX_BYTES: u64 = 64 * 1024;

/// What the wrapper last did with the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Created and started; being supervised.
    Running,
    /// Paused for a quit (or lost heartbeat, or SIGTERM): unpause on restart
    /// (or SIGCONT, where the engine could not pause it).
    KeptPaused,
    /// Stopped for a quit (`quit_action = "stop"`): start it again on restart.
    KeptStopped,
    /// The job ended with `exit_code`; only the report may be missing.
    Finished,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    pub container: String,
    /// The image the container runs, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    pub phase: Phase,
    /// CPU seconds of the task so far, as last reported to the client.
    pub cpu_time: f64,
    pub exit_code: Option<i32>,
}

impl Journal {
    pub fn path(slot_dir: &Path) -> PathBuf {
        slot_dir.join(FILE_NAME)
    }

    /// None when there is no journal; an unreadable one is reported and ignored
    /// (the container's own state is still inspected).
    pub fn load(slot_dir: &Path) -> Option<Journal> {
        let path = Self::path(slot_dir);
        let text = match slot_io::read_text(&path, MAX_BYTES) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
            Err(err) => {
                log::warn!("cannot read {}: {err}; ignoring it", path.display());
                return None;
            }
        };
        match toml::from_str(&text) {
            Ok(journal) => Some(journal),
            Err(err) => {
                log::warn!(
                    "{} is damaged ({}); ignoring it",
                    path.display(),
                    err.message()
                );
                None
            }
        }
    }

    pub fn save(&self, slot_dir: &Path) {
        if let Err(err) = self.try_save(slot_dir) {
            log::warn!("cannot write {}: {err}", Self::path(slot_dir).display());
        }
    }

    fn try_save(&self, slot_dir: &Path) -> std::io::Result<()> {
        let text = toml::to_string(self).map_err(std::io::Error::other)?;
        // The journal decides whether a job is rerun: it must survive a power cut.
        slot_io::replace(&Self::path(slot_dir), text.as_bytes(), true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TestDir;
    use std::fs;

    #[test]
    fn round_trip_and_damage() {
        let tmp = TestDir::new("journal");
        let dir = &tmp.0;
        assert_eq!(Journal::load(dir), None);
        let journal = Journal {
            container: "boinc__p__r".into(),
            image: Some("img".into()),
            phase: Phase::KeptPaused,
            cpu_time: 12.5,
            exit_code: None,
        };
        journal.save(dir);
        assert_eq!(Journal::load(dir), Some(journal));
        fs::write(Journal::path(dir), "phase = 7\n[[[").unwrap();
        assert_eq!(Journal::load(dir), None);
    }
}
