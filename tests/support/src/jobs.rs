//! Test jobs: a Dockerfile `FROM scratch` + static busybox, and a shell script.
//!
//! No registry is reachable from the test machines, so every image is built
//! from scratch with Debian's static busybox. The slot dir is mounted at the
//! workdir, so `main.sh` is read from the slot at run time: every test job with
//! the default Dockerfile shares one image.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// A job that writes a growing counter to count.txt every 0.2 s until the
/// file `go` appears in the slot; "start" in starts.txt marks each time the
/// job itself started. See `Task::counter` and `Task::release_and_wait`.
pub const COUNTER_JOB: &str = "echo start >> starts.txt; i=0; \
    while [ ! -f go ]; do i=$((i+1)); echo $i > count.txt; sleep 0.2; done; echo finished";

/// Debian's `busybox-static` installs a static binary here.
pub const BUSYBOX_PATH: &str = "/bin/busybox";
/// The smallest test image: the static busybox and nothing else.
pub const BUSYBOX_ONLY_DOCKERFILE: &str =
    "FROM scratch\nCOPY busybox /bin/busybox\nCMD [\"/bin/busybox\", \"true\"]\n";
pub const DEFAULT_WORKDIR: &str = "/app";

/// A job directory to be written out: Dockerfile, busybox, main.sh, job.toml, extra files.
#[derive(Clone, Debug)]
pub struct TestJob {
    script: String,
    workdir: String,
    dockerfile: Option<String>,
    job_toml: Option<String>,
    files: Vec<(String, Vec<u8>)>,
}

impl TestJob {
    /// A job running `script` with busybox `sh`. The job's command-line arguments
    /// (the wrapper's `ARGS`) are the script's `$1 $2 ...`; `$ARGS` holds them unsplit.
    pub fn shell(script: &str) -> TestJob {
        TestJob {
            script: script.to_string(),
            workdir: DEFAULT_WORKDIR.to_string(),
            dockerfile: None,
            job_toml: None,
            files: Vec::new(),
        }
    }

    /// The `WORKDIR` of the default Dockerfile; pair it with `workdir = "..."` in job.toml.
    pub fn workdir(mut self, dir: &str) -> TestJob {
        self.workdir = dir.to_string();
        self
    }

    /// Replaces the default Dockerfile. busybox is still copied into the job dir.
    pub fn dockerfile(mut self, text: &str) -> TestJob {
        self.dockerfile = Some(text.to_string());
        self
    }

    pub fn job_toml(mut self, text: &str) -> TestJob {
        self.job_toml = Some(text.to_string());
        self
    }

    /// An extra file next to main.sh (relative name).
    pub fn file(mut self, name: &str, contents: impl Into<Vec<u8>>) -> TestJob {
        self.files.push((name.to_string(), contents.into()));
        self
    }

    pub fn dockerfile_text(&self) -> String {
        self.dockerfile
            .clone()
            .unwrap_or_else(|| default_dockerfile(&self.workdir))
    }

    /// The job's files: Dockerfile, job.toml (if given), main.sh, busybox and
    /// the extra files. Err when the host has no static busybox.
    pub fn files(&self) -> Result<Vec<JobFile>, String> {
        let mut files = vec![JobFile::new("Dockerfile", self.dockerfile_text(), false)];
        if let Some(toml) = &self.job_toml {
            files.push(JobFile::new("job.toml", toml.as_str(), false));
        }
        files.push(JobFile::new(
            "main.sh",
            format!("#!/bin/sh\n{}\n", self.script),
            true,
        ));
        files.push(JobFile::new("busybox", static_busybox()?, true));
        for (name, contents) in &self.files {
            files.push(JobFile::new(name, contents.as_slice(), false));
        }
        Ok(files)
    }

    /// Writes the job's files into `dir` (created if needed).
    pub fn write_to(&self, dir: &Path) -> Result<(), String> {
        let io = |what: &str, e: std::io::Error| {
            format!("cannot write {what} in {}: {e}", dir.display())
        };
        fs::create_dir_all(dir).map_err(|e| io("the job dir", e))?;
        for file in self.files()? {
            let path = dir.join(&file.name);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(|e| io(&file.name, e))?;
            }
            fs::write(&path, &file.contents).map_err(|e| io(&file.name, e))?;
            if file.executable {
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                    .map_err(|e| io(&file.name, e))?;
            }
        }
        Ok(())
    }
}

/// A file of a job directory: its name there (relative), contents and mode.
#[derive(Clone, Debug)]
pub struct JobFile {
    pub name: String,
    pub contents: Vec<u8>,
    pub executable: bool,
}

impl JobFile {
    fn new(name: &str, contents: impl Into<Vec<u8>>, executable: bool) -> JobFile {
        JobFile {
            name: name.to_string(),
            contents: contents.into(),
            executable,
        }
    }
}

/// The Dockerfile every default test job uses. `sh -c` word-splits `$ARGS`
/// into the script's arguments, as BUDA's `CMD ./main.sh ${ARGS}` does.
pub fn default_dockerfile(workdir: &str) -> String {
    format!(
        "FROM scratch\n\
         COPY busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         WORKDIR {workdir}\n\
         ENV ARGS=\"\"\n\
         CMD [\"/bin/sh\", \"-c\", \"exec /bin/sh ./main.sh $ARGS\"]\n"
    )
}

/// The host's static busybox, which every test image is built with.
fn static_busybox() -> Result<Vec<u8>, String> {
    if !Path::new(BUSYBOX_PATH).is_file() {
        return Err(format!(
            "{BUSYBOX_PATH} is missing: test images need a static busybox. Install it with `apt-get install -y busybox-static`."
        ));
    }
    let bytes = fs::read(BUSYBOX_PATH).map_err(|e| format!("cannot read {BUSYBOX_PATH}: {e}"))?;
    if has_elf_interpreter(&bytes) {
        return Err(format!(
            "{BUSYBOX_PATH} is dynamically linked and cannot run in a FROM scratch image. \
             Install the static one with `apt-get install -y busybox-static`."
        ));
    }
    Ok(bytes)
}

/// True for a 64-bit little-endian ELF with a PT_INTERP header (a dynamic executable).
fn has_elf_interpreter(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return false;
    }
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().unwrap()) as usize;
    let (entry_size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).any(|i| {
        let at = phoff + i * entry_size;
        bytes
            .get(at..at + 4)
            .map(|t| u32::from_le_bytes(t.try_into().unwrap()))
            == Some(PT_INTERP)
    })
}
