//! The BOINC data dir layout a task runs in: `projects/<project>/` and `slots/<n>/`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::tempdir::TempDir;

/// The escaped form of the project URL `http://example.org/test/`.
pub const DEFAULT_PROJECT_DIR_NAME: &str = "example.org_test";
pub const DEFAULT_DATA_DIR_NAME: &str = "boinc_data";
/// A data dir name with a space, quotes, `$` and parentheses: characters that
/// break commands built as shell strings. (`&` and `<` are left out: the real
/// client writes paths into init_data.xml unescaped, so they would make it malformed.)
pub const ODD_DATA_DIR_NAME: &str = "BOINC data $HOME 'q' \"d\" (1)";

/// How a file from the project dir appears in the slot dir.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkKind {
    /// The client's default: a small text file `<soft_link>../../projects/P/F</soft_link>`.
    SoftLinkFile,
    /// The project set `use_symlinks`: a real relative symlink.
    Symlink,
    /// `<copy_file/>`: a copy.
    Copy,
}

/// A fresh data dir with one project dir and one slot dir, removed on drop;
/// or (`in_shared_data_dir`) a new slot in a data dir other tasks use too.
#[derive(Debug)]
pub struct BoincDirs {
    data_dir: PathBuf,
    project_dir: PathBuf,
    slot_dir: PathBuf,
    project_dir_name: String,
    slot: u32,
    // Last field: dropped (removed) after everything that lives inside it.
    root: TempDir,
}

impl BoincDirs {
    pub fn create(
        label: &str,
        data_dir_name: &str,
        project_dir_name: &str,
        slot: u32,
    ) -> io::Result<BoincDirs> {
        let root = TempDir::new(label)?;
        let data_dir = root.path().join(data_dir_name);
        let project_dir = data_dir.join("projects").join(project_dir_name);
        let slot_dir = data_dir.join("slots").join(slot.to_string());
        fs::create_dir_all(&project_dir)?;
        fs::create_dir_all(&slot_dir)?;
        Ok(BoincDirs {
            data_dir,
            project_dir,
            slot_dir,
            project_dir_name: project_dir_name.to_string(),
            slot,
            root,
        })
    }

    /// A new slot in an existing data dir, as the client runs several tasks in
    /// one data dir: the project dir is created if missing and shared with the
    /// other tasks of that project (build lock, image cache markers); the slot
    /// is the first unused number from `first_slot` up. The data dir belongs to
    /// the caller, who removes it; `root()` is a fresh temp dir of this task's own.
    pub fn in_shared_data_dir(
        label: &str,
        data_dir: &Path,
        project_dir_name: &str,
        first_slot: u32,
    ) -> io::Result<BoincDirs> {
        let root = TempDir::new(label)?;
        let data_dir = data_dir.canonicalize()?;
        let project_dir = data_dir.join("projects").join(project_dir_name);
        fs::create_dir_all(&project_dir)?;
        let slots = data_dir.join("slots");
        fs::create_dir_all(&slots)?;
        let mut slot = first_slot;
        let slot_dir = loop {
            let candidate = slots.join(slot.to_string());
            match fs::create_dir(&candidate) {
                Ok(()) => break candidate,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => slot += 1,
                Err(e) => return Err(e),
            }
        };
        Ok(BoincDirs {
            data_dir,
            project_dir,
            slot_dir,
            project_dir_name: project_dir_name.to_string(),
            slot,
            root,
        })
    }

    /// The temp dir holding the data dir (this task's own temp dir when the
    /// data dir is shared); room for test files outside BOINC's tree.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn project_dir(&self) -> &Path {
        &self.project_dir
    }

    pub fn slot_dir(&self) -> &Path {
        &self.slot_dir
    }

    pub fn project_dir_name(&self) -> &str {
        &self.project_dir_name
    }

    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// Copies every file (recursively) of `from_dir` into the slot dir, as the
    /// client does for app files marked `<copy_file/>`.
    pub fn copy_into_slot(&self, from_dir: &Path) -> io::Result<()> {
        copy_tree(from_dir, &self.slot_dir)
    }

    /// Writes a file into the project dir (a downloaded input or app file).
    pub fn write_project_file(&self, physical_name: &str, contents: &[u8]) -> io::Result<PathBuf> {
        let path = self.project_dir.join(physical_name);
        fs::write(&path, contents)?;
        Ok(path)
    }

    /// Makes `open_name` in the slot refer to `projects/<project>/<physical_name>`.
    /// The project file need not exist (output files are linked before the app writes them).
    /// Like the client, the link text is relative to the slot dir even when
    /// `open_name` has a subdirectory (so such a `Symlink` dangles, as the client's does).
    pub fn link_into_slot(
        &self,
        open_name: &str,
        physical_name: &str,
        kind: LinkKind,
    ) -> io::Result<PathBuf> {
        let link_path = self.slot_dir.join(open_name);
        if let Some(parent) = link_path.parent() {
            fs::create_dir_all(parent)?;
        }
        let relative = relative_project_path(&self.project_dir_name, physical_name);
        match kind {
            LinkKind::SoftLinkFile => fs::write(&link_path, soft_link_text(&relative))?,
            LinkKind::Symlink => std::os::unix::fs::symlink(&relative, &link_path)?,
            LinkKind::Copy => {
                fs::copy(self.project_dir.join(physical_name), &link_path)?;
            }
        }
        Ok(link_path)
    }

    /// Moves every file of `from_dir` into the project dir and links it into the slot.
    pub fn install_via_project_dir(&self, from_dir: &Path, kind: LinkKind) -> io::Result<()> {
        for entry in fs::read_dir(from_dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_file() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            fs::copy(entry.path(), self.project_dir.join(&name))?;
            self.link_into_slot(&name, &name, kind)?;
        }
        Ok(())
    }

    pub fn slot_file(&self, name: &str) -> PathBuf {
        self.slot_dir.join(name)
    }
}

/// The path a slot file uses to reach a project file: slots/N -> ../../projects/P/F.
pub fn relative_project_path(project_dir_name: &str, physical_name: &str) -> String {
    format!("../../projects/{project_dir_name}/{physical_name}")
}

/// The content of a BOINC soft-link file (the client's `make_soft_link`).
pub fn soft_link_text(relative_path: &str) -> String {
    format!("<soft_link>{relative_path}</soft_link>\n")
}

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if file_type.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(entry.path())?, &target)?;
        } else {
            // fs::copy keeps the permission bits (main.sh stays executable).
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
