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

    /// Writes the job's files into `dir` (created if needed).
    pub fn write_to(&self, dir: &Path) -> Result<(), String> {
        let io = |what: &str, e: std::io::Error| {
            format!("cannot write {what} in {}: {e}", dir.display())
        };
        fs::create_dir_all(dir).map_err(|e| io("the job dir", e))?;
        copy_busybox(dir)?;
        fs::write(dir.join("Dockerfile"), self.dockerfile_text())
            .map_err(|e| io("Dockerfile", e))?;
        write_executable(
            &dir.join("main.sh"),
            &format!("#!/bin/sh\n{}\n", self.script),
        )
        .map_err(|e| io("main.sh", e))?;
        if let Some(toml) = &self.job_toml {
            fs::write(dir.join("job.toml"), toml).map_err(|e| io("job.toml", e))?;
        }
        for (name, contents) in &self.files {
            let path = dir.join(name);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(|e| io(name, e))?;
            }
            fs::write(&path, contents).map_err(|e| io(name, e))?;
        }
        Ok(())
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

fn copy_busybox(dir: &Path) -> Result<(), String> {
    if !Path::new(BUSYBOX_PATH).is_file() {
        return Err(format!(
            "{BUSYBOX_PATH} is missing: test images need a static busybox. Install it with `apt-get install -y busybox-static`."
        ));
    }
    if has_elf_interpreter(Path::new(BUSYBOX_PATH)) {
        return Err(format!(
            "{BUSYBOX_PATH} is dynamically linked and cannot run in a FROM scratch image. \
             Install the static one with `apt-get install -y busybox-static`."
        ));
    }
    fs::copy(BUSYBOX_PATH, dir.join("busybox"))
        .map_err(|e| format!("cannot copy {BUSYBOX_PATH} into {}: {e}", dir.display()))?;
    Ok(())
}

/// True for a 64-bit little-endian ELF with a PT_INTERP header (a dynamic executable).
fn has_elf_interpreter(path: &Path) -> bool {
    const PT_INTERP: u32 = 3;
    let Ok(bytes) = fs::read(path) else {
        return false;
    };
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

fn write_executable(path: &Path, text: &str) -> std::io::Result<()> {
    fs::write(path, text)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
}
