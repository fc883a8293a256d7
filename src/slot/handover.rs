//! What the client takes from the slot after the job wrote it: the output
//! files at the end of the task (renamed from the slot when the app version
//! says `<copy_file/>`, else read from the project file a slot link names),
//! the files of intermediate uploads, and `stderr.txt`. The job can leave
//! anything there, a link to a host file among them, and the client would
//! follow it and send whatever it leads to (the account keys of every
//! attached project, other projects' data) to the project's server.
//!
//! So before the client takes them, whatever is not a regular file of the
//! slot, or of the project dir for the files the slot links to, is removed
//! and said once in stderr.txt: an output that was a link is then missing,
//! which the client reports and the server sees.
use std::collections::VecDeque;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use crate::slot::{files as slot_files, host_path};

/// Entries looked at, at most: a job can make millions. The top of the
/// slot, where outputs are, comes first.
const MAX_ENTRIES: usize = 100_000;
/// Directory levels looked into, at most.
const MAX_DEPTH: usize = 16;

/// A file refused and removed.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub path: PathBuf,
    /// What it was: "a link to /etc/passwd", "a FIFO".
    pub what: String,
    /// Why it is still there, if removing it failed.
    pub kept: Option<String>,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is {}: not handed to the client, ",
            self.path.display(),
            self.what
        )?;
        match &self.kept {
            None => write!(f, "removed"),
            Some(err) => write!(f, "and it cannot be removed ({err})"),
        }
    }
}

/// Clears the slot for the end of the task: every link in it that does not
/// lead to a regular file of the project dir (the client's own links to
/// the task's files, where the project uses symlinks), every FIFO, socket
/// and device, and behind the slot's links to project files, any of those
/// that is not a regular file. `project_dir`: None when unknown, then no
/// link is kept.
pub fn clear_slot(slot_dir: &Path, project_dir: Option<&Path>) -> Vec<Refused> {
    let project = project_dir.and_then(|dir| fs::canonicalize(dir).ok());
    let mut refused = project
        .as_deref()
        .map(|project| clear_project_files(slot_dir, project))
        .unwrap_or_default();
    let mut dirs = VecDeque::from([(slot_dir.to_path_buf(), 0)]);
    let mut seen = 0;
    while let Some((dir, depth)) = dirs.pop_front() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            seen += 1;
            if seen > MAX_ENTRIES {
                log::warn!(
                    "the slot holds more than {MAX_ENTRIES} files: the rest are not checked for links"
                );
                return refused;
            }
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if depth < MAX_DEPTH {
                    dirs.push_back((path, depth + 1));
                }
            } else if kind.is_symlink() {
                let keep = depth == 0 && project.as_deref().is_some_and(|p| leads_into(&path, p));
                if !keep {
                    refused.push(refuse(path));
                }
            } else if !kind.is_file() {
                refused.push(refuse(path));
            }
        }
    }
    refused
}

/// Checks a file the client is about to upload (`path`, in the slot or the
/// project dir): refused and removed unless it is a regular file reached
/// without a link on the way from `slot_dir` (a linked subdirectory).
pub fn check_upload(slot_dir: &Path, path: &Path) -> Result<(), Refused> {
    if let Ok(rest) = path.strip_prefix(slot_dir) {
        let mut on_the_way = slot_dir.to_path_buf();
        let parents: Vec<_> = rest
            .parent()
            .map(|p| p.components().collect())
            .unwrap_or_default();
        for part in parents {
            on_the_way.push(part);
            if fs::symlink_metadata(&on_the_way).is_ok_and(|m| !m.is_dir()) {
                return Err(refuse(on_the_way));
            }
        }
    }
    match fs::symlink_metadata(path) {
        Ok(meta) if !meta.is_file() => Err(refuse(path.to_path_buf())),
        _ => Ok(()),
    }
}

/// The project files the slot's links name (the client uploads outputs from
/// there) must be regular files: with `project_dir_mount` the job can put a
/// link there too.
fn clear_project_files(slot_dir: &Path, project: &Path) -> Vec<Refused> {
    let Ok(entries) = fs::read_dir(slot_dir) else {
        return Vec::new();
    };
    let mut refused = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let Some(text) = slot_files::link_text(&entry.path()) else {
            continue;
        };
        let target = host_path::normalize(&slot_dir.join(text));
        let in_project = target
            .parent()
            .and_then(|dir| fs::canonicalize(dir).ok())
            .is_some_and(|dir| dir == project);
        let irregular =
            fs::symlink_metadata(&target).is_ok_and(|meta| !meta.is_file() && !meta.is_dir());
        if in_project && irregular {
            refused.push(refuse(target));
        }
    }
    refused
}

/// Whether the link at `path` leads (every link followed) to a regular file
/// right in `project`.
fn leads_into(path: &Path, project: &Path) -> bool {
    fs::canonicalize(path).is_ok_and(|real| real.parent() == Some(project) && real.is_file())
}

/// Removes what `path` is (never what it leads to) and says what it was.
fn refuse(path: PathBuf) -> Refused {
    let what = match fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_symlink() => match fs::read_link(&path) {
            Ok(to) => format!("a link to {}", to.display()),
            Err(_) => "a link".to_string(),
        },
        Ok(meta) => format!("not a regular file ({})", kind_name(&meta.file_type())),
        Err(_) => "gone".to_string(),
    };
    let kept = fs::remove_file(&path).err().map(|err| err.to_string());
    Refused { path, what, kept }
}

fn kind_name(kind: &fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_socket() {
            return "a socket";
        }
        if kind.is_block_device() || kind.is_char_device() {
            return "a device";
        }
    }
    if kind.is_dir() {
        "a directory"
    } else {
        "of an unknown kind"
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::test_dir::TestDir;
    use std::os::unix::fs::symlink;

    /// A data dir with a project dir and a slot, as the client lays them out.
    struct Data {
        _root: TestDir,
        slot: PathBuf,
        project: PathBuf,
        host_file: PathBuf,
    }

    fn data(name: &str) -> Data {
        let root = TestDir::new(&format!("handover-{name}"));
        let slot = root.0.join("slots/0");
        let project = root.0.join("projects/example.org_p");
        fs::create_dir_all(&slot).unwrap();
        fs::create_dir_all(&project).unwrap();
        let host_file = root.0.join("account_example.org_p.xml");
        fs::write(&host_file, "<authenticator>secret</authenticator>").unwrap();
        Data {
            _root: root,
            slot,
            project,
            host_file,
        }
    }

    fn names(refused: &[Refused]) -> Vec<String> {
        let mut names: Vec<_> = refused
            .iter()
            .map(|r| r.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn links_the_job_left_are_removed_and_the_clients_own_kept() {
        let d = data("links");
        // The client's: a soft-link file and a symlink to project files.
        fs::write(d.project.join("in_1"), "input").unwrap();
        fs::write(d.project.join("out_1"), "").unwrap();
        let soft_link = "<soft_link>../../projects/example.org_p/out_1</soft_link>\n";
        fs::write(d.slot.join("out"), soft_link).unwrap();
        symlink("../../projects/example.org_p/in_1", d.slot.join("in")).unwrap();
        // The job's: a copied output as a link to a host file, a link to a
        // directory, a link inside a subdirectory, a linked subdirectory,
        // a FIFO; and plain results.
        symlink(&d.host_file, d.slot.join("result.dat")).unwrap();
        symlink("/etc", d.slot.join("etc")).unwrap();
        fs::create_dir_all(d.slot.join("sub/deeper")).unwrap();
        symlink(&d.host_file, d.slot.join("sub/deeper/key")).unwrap();
        symlink(d.host_file.parent().unwrap(), d.slot.join("linked_dir")).unwrap();
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            d.slot.join("fifo"),
            rustix::fs::Mode::from_raw_mode(0o644),
        )
        .unwrap();
        fs::write(d.slot.join("sub/plain.txt"), "data").unwrap();
        fs::write(d.slot.join("stderr.txt"), "log").unwrap();

        let refused = clear_slot(&d.slot, Some(&d.project));
        assert_eq!(
            names(&refused),
            ["etc", "fifo", "key", "linked_dir", "result.dat"]
        );
        assert!(refused.iter().all(|r| r.kept.is_none()), "{refused:?}");
        let result = refused
            .iter()
            .find(|r| r.path.ends_with("result.dat"))
            .unwrap();
        assert_eq!(
            result.to_string(),
            format!(
                "{} is a link to {}: not handed to the client, removed",
                result.path.display(),
                d.host_file.display()
            )
        );
        for gone in ["result.dat", "etc", "sub/deeper/key", "linked_dir", "fifo"] {
            assert!(fs::symlink_metadata(d.slot.join(gone)).is_err(), "{gone}");
        }
        for kept in ["out", "in", "sub/plain.txt", "stderr.txt"] {
            assert!(fs::symlink_metadata(d.slot.join(kept)).is_ok(), "{kept}");
        }
        // Never what a link leads to.
        assert!(d.host_file.is_file());
        assert!(d.project.join("in_1").is_file());
        // A second look finds nothing more: each is said once.
        assert!(clear_slot(&d.slot, Some(&d.project)).is_empty());
    }

    #[test]
    fn a_link_into_the_data_dir_but_out_of_the_project_is_refused() {
        let d = data("data-dir");
        // The client's links are checked on where they lead, not on their text.
        symlink("../../account_example.org_p.xml", d.slot.join("in")).unwrap();
        symlink(
            "../../projects/example.org_p/../../account_example.org_p.xml",
            d.slot.join("in2"),
        )
        .unwrap();
        assert_eq!(names(&clear_slot(&d.slot, Some(&d.project))), ["in", "in2"]);
    }

    #[test]
    fn without_a_project_dir_no_link_is_kept() {
        let d = data("no-project");
        fs::write(d.project.join("in_1"), "input").unwrap();
        symlink("../../projects/example.org_p/in_1", d.slot.join("in")).unwrap();
        assert_eq!(names(&clear_slot(&d.slot, None)), ["in"]);
    }

    #[test]
    fn a_project_file_replaced_by_a_link_is_refused() {
        // With project_dir_mount, the job can replace the output file the
        // client uploads from.
        let d = data("project-file");
        let soft_link = "<soft_link>../../projects/example.org_p/out_1</soft_link>";
        fs::write(d.slot.join("out"), soft_link).unwrap();
        symlink(&d.host_file, d.project.join("out_1")).unwrap();
        let refused = clear_slot(&d.slot, Some(&d.project));
        assert_eq!(names(&refused), ["out_1"]);
        assert!(fs::symlink_metadata(d.project.join("out_1")).is_err());
        assert!(d.slot.join("out").is_file() && d.host_file.is_file());
    }

    #[test]
    fn an_upload_is_checked_on_the_way_and_at_the_end() {
        let d = data("upload");
        fs::write(d.slot.join("ok"), "data").unwrap();
        assert_eq!(check_upload(&d.slot, &d.slot.join("ok")), Ok(()));
        // Not there yet: nothing to refuse (the client reports it missing).
        assert_eq!(check_upload(&d.slot, &d.slot.join("absent")), Ok(()));
        symlink(&d.host_file, d.slot.join("link")).unwrap();
        let refused = check_upload(&d.slot, &d.slot.join("link")).unwrap_err();
        assert!(refused.what.starts_with("a link to"), "{refused}");
        assert!(fs::symlink_metadata(d.slot.join("link")).is_err());
        // Through a linked subdirectory: the link on the way is removed.
        symlink(d.host_file.parent().unwrap(), d.slot.join("dir")).unwrap();
        let refused =
            check_upload(&d.slot, &d.slot.join("dir/account_example.org_p.xml")).unwrap_err();
        assert_eq!(refused.path, d.slot.join("dir"));
        assert!(d.host_file.is_file());
        // A project file (the output a slot link names).
        symlink(&d.host_file, d.project.join("out_1")).unwrap();
        assert!(check_upload(&d.slot, &d.project.join("out_1")).is_err());
        fs::create_dir(d.slot.join("a_dir")).unwrap();
        let refused = check_upload(&d.slot, &d.slot.join("a_dir")).unwrap_err();
        assert!(
            refused.kept.is_some(),
            "a directory is not removed: {refused}"
        );
    }
}
