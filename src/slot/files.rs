//! Files in the slot as the BOINC client delivers them: real files, real
//! symlinks (projects with `use_symlinks`), or small "soft-link" text files
//! `<soft_link>../../projects/URL/FILE</soft_link>` naming the real file.
use std::path::{Path, PathBuf};
use std::{fmt, fs, io};

use crate::slot::{host_path, io as slot_io};

/// Soft-link files are one short line; anything longer is real data.
const MAX_LINK_FILE: u64 = 1024;

/// Why a slot file cannot be used.
#[derive(Debug)]
pub enum SlotFileError {
    /// `path` (or a link on the way to it) cannot be read.
    Io {
        path: PathBuf,
        source: io::Error,
    },
    /// The link `name` leads out of the BOINC data directory.
    Outside {
        name: PathBuf,
        target: PathBuf,
        data_dir: PathBuf,
    },
    List {
        dir: PathBuf,
        source: io::Error,
    },
    TooLarge {
        name: PathBuf,
        max_bytes: u64,
    },
}

impl fmt::Display for SlotFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlotFileError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            SlotFileError::Outside {
                name,
                target,
                data_dir,
            } => write!(
                f,
                "{} leads to {}, outside the BOINC data directory {}: refused",
                name.display(),
                target.display(),
                data_dir.display()
            ),
            SlotFileError::List { dir, source } => {
                write!(f, "cannot list {}: {source}", dir.display())
            }
            SlotFileError::TooLarge { name, max_bytes } => {
                write!(f, "{} is larger than {max_bytes} bytes", name.display())
            }
        }
    }
}

impl std::error::Error for SlotFileError {}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> SlotFileError + '_ {
    move |source| SlotFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where the data of the slot file `name` really is. Soft-link files and
/// symlinks must lead inside the BOINC data dir (two levels above the slot),
/// judged on the real path: every symlink on the way is followed, since the
/// job can plant them in the slot and, with `project_dir_mount`, in the
/// project dir. A project dir the volunteer moved elsewhere with a symlink
/// is still the project dir.
pub fn resolve(slot_dir: &Path, name: &Path) -> Result<PathBuf, SlotFileError> {
    let path = slot_dir.join(name);
    let meta = fs::symlink_metadata(&path).map_err(io_error(&path))?;
    let written = if meta.file_type().is_symlink() {
        let link = fs::read_link(&path).map_err(io_error(&path))?;
        path.parent().unwrap_or(slot_dir).join(link)
    } else if let Some(link) = soft_link_target(&path, meta.len()) {
        slot_dir.join(link)
    } else {
        path.clone()
    };
    let target = host_path::resolve(slot_dir, &written).map_err(io_error(name))?;
    let data_dir = host_path::resolve(slot_dir, Path::new("../..")).map_err(io_error(name))?;
    let project_dir = project_dir_of(
        &host_path::normalize(&written),
        &host_path::normalize(&slot_dir.join("../..")),
    );
    let project_dir = project_dir
        .map(|dir| host_path::resolve(slot_dir, &dir))
        .transpose()
        .map_err(io_error(name))?;
    if !target.starts_with(&data_dir) && !project_dir.is_some_and(|dir| target.starts_with(dir)) {
        return Err(SlotFileError::Outside {
            name: name.to_path_buf(),
            target,
            data_dir,
        });
    }
    // A plain slot file keeps its name: the slot is mounted as a whole.
    Ok(if written == path { path } else { target })
}

/// `<data dir>/projects/<name>` when `written` (normalised) names a file in it.
fn project_dir_of(written: &Path, data_dir: &Path) -> Option<PathBuf> {
    let rest = written.strip_prefix(data_dir.join("projects")).ok()?;
    let name = rest.components().next()?;
    Some(data_dir.join("projects").join(name))
}

/// The path a slot entry links to, as written: a symlink's, or a
/// soft-link file's. None for anything else.
pub fn link_text(path: &Path) -> Option<PathBuf> {
    let meta = fs::symlink_metadata(path).ok()?;
    if meta.file_type().is_symlink() {
        fs::read_link(path).ok()
    } else if meta.is_file() {
        soft_link_target(path, meta.len()).map(PathBuf::from)
    } else {
        None
    }
}

/// The path in a soft-link file, if `path` is one.
fn soft_link_target(path: &Path, len: u64) -> Option<String> {
    if len > MAX_LINK_FILE {
        return None;
    }
    let text = String::from_utf8(slot_io::read_prefix(path, MAX_LINK_FILE).ok()?).ok()?;
    let rest = text.trim_start().strip_prefix("<soft_link>")?;
    let (target, _) = rest.split_once("</soft_link>")?;
    let target = target.trim();
    (!target.is_empty()).then(|| target.to_string())
}

/// A slot entry that stands for a file elsewhere (a soft-link file or a symlink).
#[derive(Debug, Clone, PartialEq)]
pub struct LinkedFile {
    /// The name the job opens, in the slot.
    pub name: String,
    /// The real file (in the project dir).
    pub target: PathBuf,
}

/// Every linked file at the top of the slot. A link leading outside the
/// BOINC data dir is an error.
pub fn linked_files(slot_dir: &Path) -> Result<Vec<LinkedFile>, SlotFileError> {
    let entries = fs::read_dir(slot_dir).map_err(|source| SlotFileError::List {
        dir: slot_dir.to_path_buf(),
        source,
    })?;
    let mut linked = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_boinc_own(&name)
            || !entry
                .file_type()
                .is_ok_and(|t| t.is_file() || t.is_symlink())
        {
            continue;
        }
        let target = resolve(slot_dir, Path::new(&name))?;
        if target != slot_dir.join(&name) {
            linked.push(LinkedFile { name, target });
        }
    }
    linked.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(linked)
}

/// Reads a (small) slot file through its link, e.g. job.toml or the Dockerfile.
pub fn read(slot_dir: &Path, name: &Path, max_bytes: u64) -> Result<Vec<u8>, SlotFileError> {
    let path = resolve(slot_dir, name)?;
    let bytes = slot_io::read_prefix(&path, max_bytes + 1).map_err(io_error(name))?;
    if bytes.len() as u64 > max_bytes {
        return Err(SlotFileError::TooLarge {
            name: name.to_path_buf(),
            max_bytes,
        });
    }
    Ok(bytes)
}

/// Files the BOINC client or the API put in every slot, and ours: never
/// part of an image's build context.
pub fn is_boinc_own(name: &str) -> bool {
    name.starts_with("boinc_")
        || name.starts_with("docker_wrapper_")
        || name.starts_with(".docker_wrapper")
        || matches!(
            name,
            "init_data.xml" | "stderr.txt" | "stdout.txt" | "wrapper_output.txt"
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TestDir;

    struct Dirs {
        root: TestDir,
        slot: PathBuf,
    }

    fn dirs(name: &str) -> Dirs {
        let root = TestDir::new(&format!("slotfiles-{name}"));
        let slot = root.0.join("slots/3");
        fs::create_dir_all(&slot).unwrap();
        fs::create_dir_all(root.0.join("projects/example.org")).unwrap();
        Dirs { root, slot }
    }

    #[test]
    fn soft_link_files_and_symlinks_resolve_to_the_project_file() {
        let d = dirs("links");
        fs::write(d.root.0.join("projects/example.org/in_1"), "data").unwrap();
        fs::write(
            d.slot.join("in.txt"),
            "<soft_link>../../projects/example.org/in_1</soft_link>\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("../../projects/example.org/in_1", d.slot.join("sym.txt"))
            .unwrap();
        fs::write(d.slot.join("plain.txt"), "plain").unwrap();
        let want = d.root.0.join("projects/example.org/in_1");
        assert_eq!(resolve(&d.slot, Path::new("in.txt")).unwrap(), want);
        assert_eq!(resolve(&d.slot, Path::new("sym.txt")).unwrap(), want);
        assert_eq!(read(&d.slot, Path::new("in.txt"), 100).unwrap(), b"data");
        assert_eq!(
            resolve(&d.slot, Path::new("plain.txt")).unwrap(),
            d.slot.join("plain.txt")
        );
    }

    #[test]
    fn links_outside_the_data_dir_are_refused() {
        let d = dirs("outside");
        fs::write(
            d.slot.join("evil"),
            "<soft_link>../../../../../etc/passwd</soft_link>",
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.slot.join("evil2")).unwrap();
        let err = resolve(&d.slot, Path::new("evil")).unwrap_err().to_string();
        assert!(err.contains("outside the BOINC data directory"), "{err}");
        assert!(resolve(&d.slot, Path::new("evil2")).is_err());
    }

    #[test]
    fn links_through_a_symlink_in_the_project_dir_are_refused() {
        let d = dirs("through");
        let project = d.root.0.join("projects/example.org");
        std::os::unix::fs::symlink("/etc", project.join("sub")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", project.join("file")).unwrap();
        fs::write(
            d.slot.join("a"),
            "<soft_link>../../projects/example.org/sub/passwd</soft_link>",
        )
        .unwrap();
        fs::write(
            d.slot.join("b"),
            "<soft_link>../../projects/example.org/file</soft_link>",
        )
        .unwrap();
        std::os::unix::fs::symlink("../../projects/example.org/sub/passwd", d.slot.join("c"))
            .unwrap();
        for name in ["a", "b", "c"] {
            let err = resolve(&d.slot, Path::new(name)).unwrap_err().to_string();
            assert!(
                err.contains("leads to /etc/passwd, outside the BOINC data directory"),
                "{name}: {err}"
            );
        }
        assert!(linked_files(&d.slot).is_err());
    }

    #[test]
    fn a_slot_dir_symlink_does_not_lead_out() {
        let d = dirs("slotdir");
        std::os::unix::fs::symlink("/etc", d.slot.join("conf")).unwrap();
        let err = resolve(&d.slot, Path::new("conf/passwd"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("outside the BOINC data directory"), "{err}");
    }

    #[test]
    fn a_project_dir_moved_elsewhere_by_the_volunteer_still_works() {
        let d = dirs("moved");
        let elsewhere_tmp = TestDir::new("slotfiles-elsewhere");
        let elsewhere = &elsewhere_tmp.0;
        fs::write(elsewhere.join("in_1"), "data").unwrap();
        fs::remove_dir(d.root.0.join("projects/example.org")).unwrap();
        std::os::unix::fs::symlink(elsewhere, d.root.0.join("projects/example.org")).unwrap();
        fs::write(
            d.slot.join("in.txt"),
            "<soft_link>../../projects/example.org/in_1</soft_link>",
        )
        .unwrap();
        assert_eq!(
            resolve(&d.slot, Path::new("in.txt")).unwrap(),
            elsewhere.join("in_1")
        );
    }

    #[test]
    fn linked_files_lists_links_only() {
        let d = dirs("listing");
        fs::write(d.root.0.join("projects/example.org/in_1"), "data").unwrap();
        fs::write(
            d.slot.join("in.txt"),
            "<soft_link>../../projects/example.org/in_1</soft_link>\n",
        )
        .unwrap();
        fs::write(
            d.slot.join("out.txt"),
            "<soft_link>../../projects/example.org/out_1</soft_link>\n",
        )
        .unwrap();
        fs::write(d.slot.join("plain.txt"), "plain").unwrap();
        fs::write(d.slot.join("init_data.xml"), "<app_init_data/>").unwrap();
        let linked = linked_files(&d.slot).unwrap();
        let names: Vec<_> = linked.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["in.txt", "out.txt"]);
        assert_eq!(
            linked[1].target,
            d.root.0.join("projects/example.org/out_1")
        );
        fs::write(d.slot.join("evil"), "<soft_link>/etc/passwd</soft_link>").unwrap();
        assert!(linked_files(&d.slot).is_err());
    }

    #[test]
    fn read_is_bounded() {
        let d = dirs("bounded");
        fs::write(d.slot.join("big"), vec![b'x'; 2000]).unwrap();
        assert!(read(&d.slot, Path::new("big"), 1000).is_err());
    }

    #[test]
    fn boinc_files_are_recognised() {
        for name in [
            "init_data.xml",
            "boinc_mmap_file",
            "boinc_lockfile",
            "stderr.txt",
            "docker_wrapper_journal.toml",
        ] {
            assert!(is_boinc_own(name), "{name}");
        }
        assert!(!is_boinc_own("main.sh"));
        assert!(!is_boinc_own("Dockerfile"));
    }
}
