//! The record of a build in progress: a file in the project dir, written
//! before the build starts and added to as the build names each container
//! and step image it makes (`engine::build_trace`). A build that ends,
//! however it ends, removes what it must and then its record; a record the
//! next build finds means that build was killed, and lists exactly what it
//! left. Only the project's build lock holder touches it.
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::engine::EngineKind;
use crate::engine::Leftover;
use crate::host::process_tree::ProcessId;
use crate::slot::io as slot_io;

const FILE_NAME: &str = "docker_wrapper_build.record";
/// A build names a few dozen ids at most; anything longer is not ours.
const MAX_BYTES: u64 = 64 * 1024;

pub struct BuildRecord {
    path: PathBuf,
    file: Option<File>,
    leftovers: Vec<Leftover>,
}

/// What a record says of its build.
#[derive(Debug, Default, PartialEq)]
pub struct Recorded {
    /// The build command, which may outlive a killed wrapper.
    pub process: Option<ProcessId>,
    pub leftovers: Vec<Leftover>,
}

impl BuildRecord {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(FILE_NAME)
    }

    /// What the build that wrote the record at `path` left, when it used
    /// `kind`; None when there is no record or another engine wrote it.
    pub fn read(path: &Path, kind: EngineKind) -> Option<Recorded> {
        // The project dir may be mounted into a job's container: bounded,
        // never through a link, never blocking.
        let text = slot_io::read_text(path, MAX_BYTES).ok()?;
        parse(&text, kind)
    }

    /// Starts the record of a build with `kind`. Without a file (say, a
    /// read-only project dir) the build is still followed, but a killed
    /// one's leftovers go unnoticed.
    pub fn start(path: &Path, kind: EngineKind) -> BuildRecord {
        let file = slot_io::create_new(path)
            .and_then(|mut file| writeln!(file, "engine {}", kind.cli_name()).map(|()| file));
        let file = file
            .map_err(|err| log::warn!("cannot record the build in {}: {err}", path.display()))
            .ok();
        BuildRecord {
            path: path.to_path_buf(),
            file,
            leftovers: Vec::new(),
        }
    }

    /// Appends at once: the record must hold it even if we are killed next.
    pub fn add(&mut self, leftover: Leftover) {
        self.write(&leftover.to_string());
        self.leftovers.push(leftover);
    }

    pub fn started(&mut self, process: ProcessId) {
        self.write(&format!("process {process}"));
    }

    fn write(&mut self, line: &str) {
        if let Some(file) = &mut self.file {
            if let Err(err) = writeln!(file, "{line}") {
                log::warn!("cannot record the build in {}: {err}", self.path.display());
            }
        }
    }

    pub fn leftovers(&self) -> &[Leftover] {
        &self.leftovers
    }

    /// The build is over and cleaned up after.
    pub fn close(self) {
        remove(&self.path);
    }
}

pub fn remove(path: &Path) {
    if let Err(err) = fs::remove_file(path) {
        if err.kind() != std::io::ErrorKind::NotFound {
            log::warn!("cannot remove {}: {err}", path.display());
        }
    }
}

fn parse(text: &str, kind: EngineKind) -> Option<Recorded> {
    let mut lines = text.lines();
    if lines.next()?.trim() != format!("engine {}", kind.cli_name()) {
        return None;
    }
    let mut recorded = Recorded::default();
    for line in lines {
        match line.strip_prefix("process ") {
            Some(process) => recorded.process = ProcessId::parse(process),
            None => recorded.leftovers.extend(Leftover::parse(line)),
        }
    }
    Some(recorded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TestDir;

    #[test]
    fn a_record_lists_what_its_build_left_for_its_engine_only() {
        let text = "engine docker\nprocess 4242 777\ncontainer 3ca21ee4f2eb\nimage 7a30133db9aa\nnonsense\nimage 7a30\n";
        assert_eq!(
            parse(text, EngineKind::Docker),
            Some(Recorded {
                process: Some(ProcessId {
                    pid: 4242,
                    start_ticks: 777
                }),
                leftovers: vec![
                    Leftover::Container("3ca21ee4f2eb".into()),
                    Leftover::Image("7a30133db9aa".into())
                ],
            })
        );
        assert_eq!(parse(text, EngineKind::Podman), None);
        assert_eq!(parse("", EngineKind::Docker), None);
        assert_eq!(
            parse("engine docker\nprocess 1 5\n", EngineKind::Docker),
            Some(Recorded::default())
        );
    }

    #[test]
    fn a_record_is_written_as_the_build_goes_and_removed_at_its_end() {
        let tmp = TestDir::new("build-record");
        let dir = &tmp.0;
        let path = BuildRecord::path(dir);
        let mut record = BuildRecord::start(&path, EngineKind::Podman);
        let id = "717da5166fb5e16263695e6b9f822339bdf1889578efdfc8073c134ac114c17c";
        let me = ProcessId::of(std::process::id()).unwrap();
        record.started(me);
        record.add(Leftover::Container(id.into()));
        // What a killed build's successor would read.
        let recorded = Recorded {
            process: Some(me),
            leftovers: vec![Leftover::Container(id.into())],
        };
        assert_eq!(BuildRecord::read(&path, EngineKind::Podman), Some(recorded));
        assert_eq!(record.leftovers(), [Leftover::Container(id.into())]);
        record.close();
        assert!(!path.exists());
        assert_eq!(BuildRecord::read(&path, EngineKind::Podman), None);
    }
}
