//! What an image is built from: the Dockerfile, the build arguments and the
//! slot files its COPY/ADD instructions use (soft-link files resolved).
//! Their content hash names the image, so every workunit with the same
//! inputs shares one image; they are staged into a clean build context so
//! BOINC's own slot files never reach the engine.
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::{fmt, fs, io};

use sha2::{Digest, Sha256};

use super::dockerfile;
use crate::slot::files::{self as slot_files, SlotFileError};

/// Name of the Dockerfile inside the staged context.
pub const STAGED_DOCKERFILE: &str = ".docker_wrapper.Dockerfile";
/// Dockerfiles are small; refuse anything absurd before reading it whole.
const MAX_DOCKERFILE: u64 = 1024 * 1024;
/// A bound on the walk of the slot, against runaway directory trees.
const MAX_FILES: usize = 100_000;

/// Why the build inputs cannot be collected, hashed or staged.
#[derive(Debug)]
pub enum ContextError {
    /// The Dockerfile or a source file, through its link.
    SlotFile(SlotFileError),
    /// A COPY/ADD source that matches nothing in the slot.
    Missing {
        pattern: String,
    },
    /// A COPY/ADD source with `..`.
    Escapes {
        pattern: String,
    },
    TooManyFiles {
        max: usize,
    },
    List {
        dir: PathBuf,
        source: io::Error,
    },
    /// A source file, by its path in the context.
    Metadata {
        path: PathBuf,
        source: io::Error,
    },
    Read {
        path: PathBuf,
        source: io::Error,
    },
    CreateStaging {
        dir: PathBuf,
        source: io::Error,
    },
    StageDockerfile(io::Error),
    /// A source file, by its path in the context.
    Stage {
        path: PathBuf,
        source: io::Error,
    },
}

impl fmt::Display for ContextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContextError::SlotFile(err) => err.fmt(f),
            ContextError::Missing { pattern } => write!(
                f,
                "the Dockerfile copies '{pattern}', which is not in the slot directory"
            ),
            ContextError::Escapes { pattern } => {
                write!(f, "COPY source '{pattern}' leaves the build context")
            }
            ContextError::TooManyFiles { max } => {
                write!(f, "the build context has more than {max} files")
            }
            ContextError::List { dir, source } => {
                write!(f, "cannot list {}: {source}", dir.display())
            }
            ContextError::Metadata { path, source } => write!(f, "{}: {source}", path.display()),
            ContextError::Read { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            ContextError::CreateStaging { dir, source } => {
                write!(f, "cannot create {}: {source}", dir.display())
            }
            ContextError::StageDockerfile(source) => {
                write!(f, "cannot stage the Dockerfile: {source}")
            }
            ContextError::Stage { path, source } => {
                write!(f, "cannot stage {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for ContextError {}

impl From<SlotFileError> for ContextError {
    fn from(err: SlotFileError) -> Self {
        ContextError::SlotFile(err)
    }
}

#[derive(Debug)]
struct SourceFile {
    path: PathBuf,
    executable: bool,
}

#[derive(Debug)]
pub struct BuildInputs {
    dockerfile: Vec<u8>,
    build_args: Vec<String>,
    /// Path in the context -> where the data is.
    files: BTreeMap<PathBuf, SourceFile>,
}

impl BuildInputs {
    pub fn collect(
        slot_dir: &Path,
        dockerfile_name: &Path,
        build_args: &[String],
    ) -> Result<BuildInputs, ContextError> {
        let dockerfile = slot_files::read(slot_dir, dockerfile_name, MAX_DOCKERFILE)?;
        let text = String::from_utf8_lossy(&dockerfile);
        let mut files = BTreeMap::new();
        let mut patterns = dockerfile::context_sources(&text);
        if slot_dir.join(".dockerignore").exists() {
            patterns.push(".dockerignore".into());
        }
        for pattern in &patterns {
            let before = files.len();
            add_matches(slot_dir, pattern, &mut files)?;
            if files.len() == before && !is_covered(pattern, &files) {
                return Err(ContextError::Missing {
                    pattern: pattern.clone(),
                });
            }
        }
        Ok(BuildInputs {
            dockerfile,
            build_args: build_args.to_vec(),
            files,
        })
    }

    /// SHA-256 of everything that goes into the build, in hex.
    pub fn hash(&self) -> Result<String, ContextError> {
        let mut hasher = Sha256::new();
        hasher.update(b"docker_wrapper image inputs v1\0");
        hasher.update((self.dockerfile.len() as u64).to_le_bytes());
        hasher.update(&self.dockerfile);
        for arg in &self.build_args {
            hasher.update(b"\0arg\0");
            hasher.update(arg.as_bytes());
        }
        for (name, source) in &self.files {
            hasher.update(b"\0file\0");
            hasher.update(name.to_string_lossy().as_bytes());
            hasher.update([u8::from(source.executable)]);
            hasher.update(file_digest(&source.path)?);
        }
        Ok(hex(&hasher.finalize()))
    }

    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Builds the context in `dir`: hard links where possible, copies otherwise.
    pub fn stage(&self, dir: &Path) -> Result<(), ContextError> {
        let _ = fs::remove_dir_all(dir);
        fs::create_dir_all(dir).map_err(|source| ContextError::CreateStaging {
            dir: dir.to_path_buf(),
            source,
        })?;
        fs::write(dir.join(STAGED_DOCKERFILE), &self.dockerfile)
            .map_err(ContextError::StageDockerfile)?;
        for (name, source) in &self.files {
            let target = dir.join(name);
            let failed = |err| ContextError::Stage {
                path: name.clone(),
                source: err,
            };
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).map_err(failed)?;
            }
            if fs::hard_link(&source.path, &target).is_err() {
                fs::copy(&source.path, &target).map_err(failed)?;
                crate::os::set_executable(&target, source.executable);
            }
        }
        Ok(())
    }
}

/// A pattern whose files an earlier pattern already added (e.g. `.` then `x`).
fn is_covered(pattern: &str, files: &BTreeMap<PathBuf, SourceFile>) -> bool {
    let prefix = Path::new(pattern.trim_start_matches("./"));
    files.keys().any(|k| k.starts_with(prefix))
}

/// Adds the slot files a COPY source matches (`*` and `?` wildcards per
/// path component; a directory brings everything under it).
fn add_matches(
    slot_dir: &Path,
    pattern: &str,
    files: &mut BTreeMap<PathBuf, SourceFile>,
) -> Result<(), ContextError> {
    let parts: Vec<&str> = pattern
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(ContextError::Escapes {
            pattern: pattern.to_string(),
        });
    }
    descend(slot_dir, PathBuf::new(), &parts, files)
}

fn descend(
    slot_dir: &Path,
    relative: PathBuf,
    parts: &[&str],
    files: &mut BTreeMap<PathBuf, SourceFile>,
) -> Result<(), ContextError> {
    let Some((first, rest)) = parts.split_first() else {
        return add_tree(slot_dir, relative, files);
    };
    for name in list_dir(slot_dir, &relative)? {
        if wildcard_match(first, &name) {
            let child = relative.join(&name);
            let is_dir = fs::metadata(slot_dir.join(&child))
                .map(|m| m.is_dir())
                .unwrap_or(false);
            if rest.is_empty() || is_dir {
                descend(slot_dir, child, rest, files)?;
            }
        }
    }
    Ok(())
}

/// Entry names of a context directory; at the top of the slot, BOINC's own files are left out.
fn list_dir(slot_dir: &Path, relative: &Path) -> Result<Vec<String>, ContextError> {
    let dir = slot_dir.join(relative);
    let entries = fs::read_dir(&dir).map_err(|source| ContextError::List {
        dir: dir.clone(),
        source,
    })?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !(relative.as_os_str().is_empty() && slot_files::is_boinc_own(name)))
        .collect();
    names.sort();
    Ok(names)
}

/// A file, or a directory with everything under it.
fn add_tree(
    slot_dir: &Path,
    relative: PathBuf,
    files: &mut BTreeMap<PathBuf, SourceFile>,
) -> Result<(), ContextError> {
    if files.len() >= MAX_FILES {
        return Err(ContextError::TooManyFiles { max: MAX_FILES });
    }
    let path = if relative.as_os_str().is_empty() {
        slot_dir.to_path_buf()
    } else {
        slot_files::resolve(slot_dir, &relative)?
    };
    let meta = fs::metadata(&path).map_err(|source| ContextError::Metadata {
        path: relative.clone(),
        source,
    })?;
    if meta.is_dir() {
        for name in list_dir(slot_dir, &relative)? {
            add_tree(slot_dir, relative.join(name), files)?;
        }
    } else if meta.is_file() {
        let executable = crate::os::is_executable(&meta);
        files.insert(relative, SourceFile { path, executable });
    }
    Ok(())
}

/// Go's filepath.Match for `*` and `?` (no character classes).
fn wildcard_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..])),
            Some(('?', rest)) => !n.is_empty() && go(rest, &n[1..]),
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

/// SHA-256 of one file, in hex.
pub fn file_hash(path: &Path) -> Result<String, ContextError> {
    file_digest(path).map(|d| hex(&d))
}

fn file_digest(path: &Path) -> Result<[u8; 32], ContextError> {
    let read_error = |source| ContextError::Read {
        path: path.to_path_buf(),
        source,
    };
    // Listed as a regular file, but the job may have swapped in a FIFO since.
    let mut file = crate::slot::io::open_regular(path).map_err(read_error)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        }
    }
    Ok(hasher.finalize().into())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TestDir;

    /// A BOINC data dir with project p and slot 0: the dir, and the slot in it.
    fn slot(name: &str) -> (TestDir, PathBuf) {
        let root = TestDir::new(&format!("context-{name}"));
        let slot = root.0.join("slots/0");
        fs::create_dir_all(slot.join("lib")).unwrap();
        fs::create_dir_all(root.0.join("projects/p")).unwrap();
        fs::write(
            slot.join("Dockerfile"),
            "FROM scratch\nCOPY main.sh lib/ /app/\n",
        )
        .unwrap();
        fs::write(slot.join("main.sh"), "echo hi").unwrap();
        fs::write(slot.join("lib/a.sh"), "a").unwrap();
        fs::write(slot.join("init_data.xml"), "<app_init_data/>").unwrap();
        fs::write(slot.join("input.dat"), "per-workunit input").unwrap();
        (root, slot)
    }

    #[test]
    fn only_copied_files_count_and_boinc_files_never() {
        let (_data_dir, slot) = slot("only");
        let inputs = BuildInputs::collect(&slot, Path::new("Dockerfile"), &[]).unwrap();
        let names: Vec<_> = inputs
            .files
            .keys()
            .map(|k| k.to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["lib/a.sh", "main.sh"]);
        let first = inputs.hash().unwrap();
        // A different workunit input and init_data.xml: same image.
        fs::write(slot.join("input.dat"), "other input").unwrap();
        fs::write(
            slot.join("init_data.xml"),
            "<app_init_data>2</app_init_data>",
        )
        .unwrap();
        assert_eq!(
            BuildInputs::collect(&slot, Path::new("Dockerfile"), &[])
                .unwrap()
                .hash()
                .unwrap(),
            first
        );
        // A changed copied file or build arg: a new image.
        fs::write(slot.join("lib/a.sh"), "b").unwrap();
        let changed = BuildInputs::collect(&slot, Path::new("Dockerfile"), &[])
            .unwrap()
            .hash()
            .unwrap();
        assert_ne!(changed, first);
        let with_arg =
            BuildInputs::collect(&slot, Path::new("Dockerfile"), &["--build-arg=X=1".into()])
                .unwrap();
        assert_ne!(with_arg.hash().unwrap(), changed);
    }

    #[test]
    fn whole_context_leaves_out_boinc_files_and_stages_real_data() {
        let (tmp, slot) = slot("whole");
        let root = &tmp.0;
        fs::write(slot.join("Dockerfile"), "FROM scratch\nCOPY . /app\n").unwrap();
        fs::write(root.join("projects/p/real_tool"), "tool bytes").unwrap();
        fs::write(
            slot.join("tool"),
            "<soft_link>../../projects/p/real_tool</soft_link>",
        )
        .unwrap();
        let inputs = BuildInputs::collect(&slot, Path::new("Dockerfile"), &[]).unwrap();
        assert!(!inputs.files.contains_key(Path::new("init_data.xml")));
        let staged = root.join("staged");
        inputs.stage(&staged).unwrap();
        assert_eq!(
            fs::read_to_string(staged.join("tool")).unwrap(),
            "tool bytes"
        );
        assert!(staged.join(STAGED_DOCKERFILE).is_file());
        assert!(!staged.join("init_data.xml").exists());
    }

    #[test]
    fn missing_sources_and_escapes_are_errors() {
        let (_data_dir, slot) = slot("missing");
        fs::write(
            slot.join("Dockerfile"),
            "FROM scratch\nCOPY nothere.sh /app/\n",
        )
        .unwrap();
        let err = BuildInputs::collect(&slot, Path::new("Dockerfile"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("nothere.sh"), "{err}");
        fs::write(
            slot.join("Dockerfile"),
            "FROM scratch\nCOPY ../../x /app/\n",
        )
        .unwrap();
        assert!(BuildInputs::collect(&slot, Path::new("Dockerfile"), &[]).is_err());
    }

    /// A link into the project dir whose target there is a symlinked
    /// directory outside: its files must not reach the build context.
    #[test]
    fn files_under_a_linked_directory_outside_are_refused() {
        let (tmp, slot) = slot("linked_dir");
        let root = &tmp.0;
        let outside_tmp = TestDir::new("context-linked-outside");
        let outside = &outside_tmp.0;
        fs::write(outside.join("secret"), "host secret").unwrap();
        std::os::unix::fs::symlink(outside, root.join("projects/p/data")).unwrap();
        std::os::unix::fs::symlink("../../projects/p/data", slot.join("data")).unwrap();
        fs::write(slot.join("Dockerfile"), "FROM scratch\nCOPY data /data\n").unwrap();
        let err = BuildInputs::collect(&slot, Path::new("Dockerfile"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("outside the BOINC data directory"), "{err}");
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*.sh", "main.sh"));
        assert!(wildcard_match("a?c", "abc"));
        assert!(!wildcard_match("*.sh", "main.py"));
        assert!(wildcard_match("*", ""));
    }
}
