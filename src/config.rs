//! `job.toml`: the per-job settings a project ships next to the Dockerfile.
//!
//! The keys of the C++ wrapper keep their names, meaning and defaults; our
//! extensions add limits, timeouts and the container's fate on quit. Every
//! key is listed once, in [`KEYS`], together with how its value is checked.
//! Values are validated here so that a bad job.toml is reported by key name
//! before any engine command runs. Unknown keys are warnings, never errors, so
//! that a job.toml written for a newer wrapper still runs.

use std::fmt;
use std::ops::RangeInclusive;
use std::path::Path;

use toml::{Table, Value};

use crate::argv;
pub use crate::slot::control_files::ControlFiles;

/// What to do with the container when the client asks the wrapper to quit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuitAction {
    /// Pause it; the restarted wrapper unpauses it (no work lost).
    Pause,
    /// Stop it (SIGTERM, then SIGKILL after the grace period); the restarted
    /// wrapper starts it again, so the job must be able to resume.
    Stop,
}

/// The validated contents of job.toml.
#[derive(Debug, Clone, PartialEq)]
pub struct JobConfig {
    // Keys of the C++ wrapper, same meaning and defaults.
    /// Where the slot directory is mounted in the container.
    pub workdir: String,
    /// Where the project directory is mounted in the container, if at all.
    pub project_dir_mount: Option<String>,
    /// A fixed image name, used as is and never deleted.
    pub image_name: Option<String>,
    /// Give the container the GPU the client assigned to the task.
    pub use_gpu: bool,
    /// Container port of the job's web graphics server.
    pub web_graphics_guest_port: Option<u16>,
    /// Extra bind mounts, `host:container[:opts]`.
    pub mounts: Vec<String>,
    /// Extra port mappings, `host:container`.
    pub portmaps: Vec<String>,
    /// Extra arguments of the image build command.
    pub build_args: Vec<String>,
    /// Extra arguments of the container create command.
    pub create_args: Vec<String>,
    /// 0 quiet, 1 standard, 2 everything.
    pub verbose: u8,

    // Extensions.
    /// File in the slot directory where the job writes its fraction done.
    pub fraction_done_file: String,
    /// CPU weight of the container.
    pub cpu_shares: u32,
    /// Put the container in an idle parent cgroup, so it only gets CPU time
    /// nobody else wants (as the client's own apps at SCHED_IDLE).
    pub idle_priority: bool,
    /// Maximum number of processes in the container.
    pub pids_limit: u32,
    /// false: the container gets no network at all.
    pub network: bool,
    /// What to do with the container when the client asks us to quit.
    pub quit_action: QuitAction,
    /// Grace period between SIGTERM and SIGKILL when stopping.
    pub stop_grace_secs: u64,
    /// Timeout of every engine command except the image build.
    pub command_timeout_secs: u64,
    /// Timeout of the image build.
    pub build_timeout_secs: u64,
    /// How many bytes of the end of the container log go into stderr.txt.
    pub log_tail_bytes: u64,
    /// Allow create_args/build_args/mounts that undo the security defaults.
    pub allow_unsafe: bool,
    /// Capabilities given back to the container (all are dropped by default).
    pub cap_add: Vec<String>,
    /// Docker: run the job as the wrapper's uid:gid, so files it writes in
    /// the slot belong to the BOINC user.
    pub run_as_wrapper_user: bool,
    /// An image archive (`docker save`) in the slot to load instead of
    /// building; None: `image.tar`, `image.tar.gz` or `image.tgz` if present.
    pub image_archive: Option<String>,
    /// Most images of this project the wrapper keeps (least recently used go first).
    pub image_cache_max_images: u32,
    /// Most MiB those images may take together.
    pub image_cache_max_mb: u64,
    /// Files through which the job talks to the client (vboxwrapper's keys).
    pub control: ControlFiles,
    /// vboxwrapper's `job_duration`: seconds of running time after which
    /// the job is stopped and the task succeeds.
    pub job_duration_secs: Option<u64>,
    /// Mount each linked file's real file at its name under the workdir;
    /// false leaves the client's link files as they are, for images that
    /// resolve them themselves.
    pub mount_linked_files: bool,
}

impl Default for JobConfig {
    fn default() -> Self {
        JobConfig {
            workdir: "/app".to_string(),
            project_dir_mount: None,
            image_name: None,
            use_gpu: false,
            web_graphics_guest_port: None,
            mounts: Vec::new(),
            portmaps: Vec::new(),
            build_args: Vec::new(),
            create_args: Vec::new(),
            verbose: 1,
            fraction_done_file: "fraction_done".to_string(),
            // The lowest weight: the client runs apps at idle priority, but a
            // container is a child of the engine, not of the wrapper, so
            // without this the job would compete with the volunteer's work.
            cpu_shares: 2,
            idle_priority: true,
            pids_limit: 4096,
            network: true,
            quit_action: QuitAction::Pause,
            stop_grace_secs: 30,
            command_timeout_secs: 120,
            build_timeout_secs: 3600,
            log_tail_bytes: 64 * 1024,
            allow_unsafe: false,
            cap_add: Vec::new(),
            run_as_wrapper_user: true,
            image_archive: None,
            image_cache_max_images: 8,
            image_cache_max_mb: 10 * 1024,
            control: ControlFiles {
                // vboxwrapper's default.
                minimum_heartbeat_interval_secs: 600,
                ..ControlFiles::default()
            },
            job_duration_secs: None,
            mount_linked_files: true,
        }
    }
}

/// Why job.toml could not be used.
#[derive(Debug)]
pub enum ConfigError {
    /// The file exists (or is required) but cannot be read.
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The file is not valid TOML (or not UTF-8 text).
    Syntax { path: String, message: String },
    /// A key has a value of the wrong type or out of range.
    BadValue {
        key: String,
        expected: String,
        found: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Io { path, source } => write!(f, "{path}: cannot read: {source}"),
            ConfigError::Syntax { path, message } => write!(f, "{path}: invalid TOML: {message}"),
            ConfigError::BadValue {
                key,
                expected,
                found,
            } => {
                write!(f, "job.toml: key '{key}' must be {expected}, found {found}")
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// job.toml is a few lines; anything bigger is a mistake, not a config.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The name used in messages when parsing text that came from no file.
#[cfg(test)]
const DEFAULT_NAME: &str = "job.toml";

/// Stores one key's value into the config, or says why it is unacceptable.
type Apply = fn(&mut JobConfig, &Entry<'_>) -> Result<(), ConfigError>;

// What the value of each key must look like; used in error messages.
const CONTAINER_PATH: &str =
    "an absolute path in the container (starting with '/', not '/' itself, no ':' or control characters)";
const IMAGE_NAME: &str =
    "an image name (letters, digits and . _ - / : @ only, not starting with '-', at most 255 characters)";
const MOUNT_SPEC: &str =
    "an array of mount specs \"host_path:container_path[:options]\" (not starting with '-', no control characters)";
const PORT_SPEC: &str =
    "an array of port maps \"host_port:container_port\" (digits, letters and . : [ ] / - only, not starting with '-')";
const PORT: &str = "an integer port from 1 to 65535 (0 means none)";
/// The longest `job_duration`: a year of running time.
const JOB_DURATION_MAX: i64 = 31_536_000;
const FILE_NAME: &str =
    "a plain file name (not empty, not '.' or '..', no '/', '\\' or control characters, at most 255 characters)";
const QUIT_ACTION: &str = "\"pause\" or \"stop\"";
const FILE_NAMES: &str =
    "an array of plain file names (not empty, not '.' or '..', no '/', '\\' or control characters, at most 255 characters)";
const CAPABILITY: &str = "an array of capability names like \"NET_BIND_SERVICE\" (letters and '_'; not ALL, SYS_ADMIN, SYS_MODULE, SYS_RAWIO, DAC_READ_SEARCH, SYS_PTRACE or SYS_BOOT)";

/// Every key job.toml may contain: the C++ wrapper's keys first, then ours.
const KEYS: &[(&str, Apply)] = &[
    ("workdir", |c, e| {
        c.workdir = e
            .string_where(CONTAINER_PATH, is_container_path)?
            .to_string();
        Ok(())
    }),
    ("project_dir_mount", |c, e| {
        // An empty string means "don't mount", as in the C++ wrapper.
        c.project_dir_mount = e.optional_string_where(CONTAINER_PATH, is_container_path)?;
        Ok(())
    }),
    ("image_name", |c, e| {
        c.image_name = e.optional_string_where(IMAGE_NAME, is_image_name)?;
        Ok(())
    }),
    ("use_gpu", |c, e| {
        c.use_gpu = e.boolean()?;
        Ok(())
    }),
    ("web_graphics_guest_port", |c, e| {
        let port: u16 = e.integer_in(0..=65535, PORT)?;
        c.web_graphics_guest_port = (port != 0).then_some(port);
        Ok(())
    }),
    ("mount", |c, e| {
        c.mounts = e.string_array_where(MOUNT_SPEC, is_mount_spec)?;
        Ok(())
    }),
    ("portmap", |c, e| {
        c.portmaps = e.string_array_where(PORT_SPEC, is_port_spec)?;
        Ok(())
    }),
    ("build_args", |c, e| {
        c.build_args = e.words()?;
        Ok(())
    }),
    ("create_args", |c, e| {
        c.create_args = e.words()?;
        Ok(())
    }),
    ("verbose", |c, e| {
        c.verbose = e.integer_in(0..=2, "an integer 0, 1 or 2")?;
        Ok(())
    }),
    ("fraction_done_file", |c, e| {
        c.fraction_done_file = e.string_where(FILE_NAME, is_plain_file_name)?.to_string();
        Ok(())
    }),
    ("cpu_shares", |c, e| {
        c.cpu_shares = e.integer_in(2..=262_144, "an integer from 2 to 262144")?;
        Ok(())
    }),
    ("idle_priority", |c, e| {
        c.idle_priority = e.boolean()?;
        Ok(())
    }),
    ("pids_limit", |c, e| {
        // The upper bound is the kernel's largest possible pid_max.
        c.pids_limit = e.integer_in(16..=4_194_304, "an integer from 16 to 4194304")?;
        Ok(())
    }),
    ("network", |c, e| {
        c.network = e.boolean()?;
        Ok(())
    }),
    ("quit_action", |c, e| {
        c.quit_action = match e.string_where(QUIT_ACTION, |s| s == "pause" || s == "stop")? {
            "stop" => QuitAction::Stop,
            _ => QuitAction::Pause,
        };
        Ok(())
    }),
    ("stop_grace_secs", |c, e| {
        c.stop_grace_secs =
            e.integer_in(1..=3600, "an integer number of seconds from 1 to 3600")?;
        Ok(())
    }),
    ("command_timeout_secs", |c, e| {
        c.command_timeout_secs =
            e.integer_in(5..=3600, "an integer number of seconds from 5 to 3600")?;
        Ok(())
    }),
    ("build_timeout_secs", |c, e| {
        c.build_timeout_secs =
            e.integer_in(10..=86_400, "an integer number of seconds from 10 to 86400")?;
        Ok(())
    }),
    ("allow_unsafe", |c, e| {
        c.allow_unsafe = e.boolean()?;
        Ok(())
    }),
    ("cap_add", |c, e| {
        c.cap_add = e.string_array_where(CAPABILITY, is_capability)?;
        Ok(())
    }),
    ("run_as_wrapper_user", |c, e| {
        c.run_as_wrapper_user = e.boolean()?;
        Ok(())
    }),
    ("image_archive", |c, e| {
        c.image_archive =
            match e.string_where(FILE_NAME, |s| s.is_empty() || is_plain_file_name(s))? {
                "" => None,
                name => Some(name.to_string()),
            };
        Ok(())
    }),
    ("image_cache_max_images", |c, e| {
        c.image_cache_max_images = e.integer_in(1..=1000, "an integer from 1 to 1000")?;
        Ok(())
    }),
    ("image_cache_max_mb", |c, e| {
        c.image_cache_max_mb = e.integer_in(
            64..=100_000_000,
            "an integer number of MiB from 64 to 100000000",
        )?;
        Ok(())
    }),
    ("completion_trigger_file", |c, e| {
        c.control.completion_trigger_file =
            e.optional_string_where(FILE_NAME, is_plain_file_name)?;
        Ok(())
    }),
    ("temporary_exit_trigger_file", |c, e| {
        c.control.temporary_exit_trigger_file =
            e.optional_string_where(FILE_NAME, is_plain_file_name)?;
        Ok(())
    }),
    ("trickle_trigger_files", |c, e| {
        c.control.trickle_trigger_files = e.string_array_where(FILE_NAMES, is_plain_file_name)?;
        Ok(())
    }),
    ("intermediate_upload_files", |c, e| {
        c.control.intermediate_upload_files =
            e.string_array_where(FILE_NAMES, is_plain_file_name)?;
        Ok(())
    }),
    ("heartbeat_filename", |c, e| {
        c.control.heartbeat_filename = e.optional_string_where(FILE_NAME, is_plain_file_name)?;
        Ok(())
    }),
    ("minimum_heartbeat_interval", |c, e| {
        c.control.minimum_heartbeat_interval_secs = e.integer_in(
            10..=2_592_000,
            "an integer number of seconds from 10 to 2592000 (30 days)",
        )?;
        Ok(())
    }),
    ("checkpoint_file", |c, e| {
        c.control.checkpoint_file = e.optional_string_where(FILE_NAME, is_plain_file_name)?;
        Ok(())
    }),
    ("mount_linked_files", |c, e| {
        c.mount_linked_files = e.boolean()?;
        Ok(())
    }),
    ("job_duration", |c, e| {
        let secs: u64 = e.integer_in(
            0..=JOB_DURATION_MAX,
            "an integer number of seconds from 0 (none) to 31536000 (a year)",
        )?;
        c.job_duration_secs = (secs != 0).then_some(secs);
        Ok(())
    }),
    ("log_tail_bytes", |c, e| {
        c.log_tail_bytes = e.integer_in(
            0..=16 * 1024 * 1024,
            "an integer number of bytes from 0 to 16777216 (16 MiB)",
        )?;
        Ok(())
    }),
];

impl JobConfig {
    /// Parses job.toml text. Returns warnings (one per unknown key, naming it)
    /// alongside the config.
    #[cfg(test)]
    pub fn from_toml(text: &str) -> Result<(JobConfig, Vec<String>), ConfigError> {
        parse(text, DEFAULT_NAME)
    }

    /// Loads a file. A missing file is fine when `!required` (defaults, with a
    /// warning, as in the C++ wrapper); an error when required (an explicit
    /// `--config`). Files over 1 MiB are refused.
    pub fn load(path: &Path, required: bool) -> Result<(JobConfig, Vec<String>), ConfigError> {
        let name = path.display().to_string();
        let bytes = match read_small_file(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok((
                    JobConfig::default(),
                    vec![format!("no {name}: using defaults")],
                ));
            }
            Err(source) => return Err(ConfigError::Io { path: name, source }),
        };
        let text = String::from_utf8(bytes).map_err(|e| ConfigError::Syntax {
            path: name.clone(),
            message: format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        })?;
        parse(&text, &name)
    }

    /// Multi-line human summary of the config for stderr.txt.
    pub fn describe(&self) -> String {
        let mut lines = vec!["docker_wrapper config:".to_string()];
        let mut add = |label: &str, value: String| lines.push(format!("   {label}: {value}"));
        self.describe_container(&mut add);
        self.describe_running(&mut add);
        lines.join("\n")
    }

    /// What the container is made of and given.
    fn describe_container(&self, add: &mut dyn FnMut(&str, String)) {
        add("workdir", self.workdir.clone());
        if let Some(dir) = &self.project_dir_mount {
            add("project dir mounted at", dir.clone());
        }
        if let Some(image) = &self.image_name {
            add("image name (kept)", image.clone());
        }
        add("use GPU", yes_no(self.use_gpu));
        if let Some(port) = self.web_graphics_guest_port {
            add("web graphics guest port", port.to_string());
        }
        for mount in &self.mounts {
            add("mount", mount.clone());
        }
        for portmap in &self.portmaps {
            add("portmap", portmap.clone());
        }
        if !self.build_args.is_empty() {
            add("build args", argv::join_words(&self.build_args));
        }
        if !self.create_args.is_empty() {
            add("create args", argv::join_words(&self.create_args));
        }
    }

    /// How the wrapper runs and watches it.
    fn describe_running(&self, add: &mut dyn FnMut(&str, String)) {
        add("verbose", self.verbose.to_string());
        add("fraction done file", self.fraction_done_file.clone());
        add("CPU shares", self.cpu_shares.to_string());
        add("pids limit", self.pids_limit.to_string());
        add(
            "network",
            (if self.network {
                "engine default"
            } else {
                "none"
            })
            .to_string(),
        );
        add(
            "on quit",
            match self.quit_action {
                QuitAction::Pause => "pause the container".to_string(),
                QuitAction::Stop => {
                    format!("stop the container (grace {} s)", self.stop_grace_secs)
                }
            },
        );
        add(
            "command timeout",
            format!("{} s", self.command_timeout_secs),
        );
        add("build timeout", format!("{} s", self.build_timeout_secs));
        add("log tail", format!("{} bytes", self.log_tail_bytes));
        add("idle CPU priority", yes_no(self.idle_priority));
        if !self.cap_add.is_empty() {
            add("capabilities added", self.cap_add.join(", "));
        }
        add(
            "run as the wrapper's user (Docker)",
            yes_no(self.run_as_wrapper_user),
        );
        if self.allow_unsafe {
            add("allow unsafe engine arguments", yes_no(true));
        }
        if let Some(archive) = &self.image_archive {
            add("image archive", archive.clone());
        }
        add(
            "image cache",
            format!(
                "at most {} images, {} MiB",
                self.image_cache_max_images, self.image_cache_max_mb
            ),
        );
        for (key, name) in self.control.names() {
            add(key, name.to_string());
        }
        if !self.mount_linked_files {
            add("mount linked files", yes_no(false));
        }
        if let Some(secs) = self.job_duration_secs {
            add("job duration", format!("{secs} s of running time"));
        }
        if self.control.heartbeat_filename.is_some() {
            add(
                "minimum_heartbeat_interval",
                format!("{} s", self.control.minimum_heartbeat_interval_secs),
            );
        }
    }
}

fn yes_no(b: bool) -> String {
    (if b { "yes" } else { "no" }).to_string()
}

/// Parses `text`; `name` is the file name used in warnings and syntax errors.
fn parse(text: &str, name: &str) -> Result<(JobConfig, Vec<String>), ConfigError> {
    let table: Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: name.to_string(),
            message: syntax_message(text, &e),
        })?;

    let mut config = JobConfig::default();
    let mut warnings = Vec::new();
    for (key, value) in &table {
        match KEYS.iter().find(|(known, _)| known == key) {
            Some((known, apply)) => apply(&mut config, &Entry { key: known, value })?,
            None => warnings.push(unknown_key_warning(name, key)),
        }
    }
    check_consistency(&config)?;
    Ok((config, warnings))
}

/// Checks that need more than one key.
fn check_consistency(config: &JobConfig) -> Result<(), ConfigError> {
    if let Some(dir) = &config.project_dir_mount {
        if dir.trim_end_matches('/') == config.workdir.trim_end_matches('/') {
            return Err(ConfigError::BadValue {
                key: "project_dir_mount".to_string(),
                expected: format!("a path other than workdir ({})", shorten(&config.workdir)),
                found: describe_value(&Value::String(dir.clone())),
            });
        }
    }
    // One file, one meaning: the job's word must not be read two ways, nor
    // taken for the progress the wrapper reads.
    let names = config.control.names();
    for (index, (key, name)) in names.iter().enumerate() {
        let taken = names[..index]
            .iter()
            .map(|(_, other)| *other)
            .chain([config.fraction_done_file.as_str()])
            .any(|other| other == *name);
        if taken {
            return Err(ConfigError::BadValue {
                key: key.to_string(),
                expected: "a file name no other control file or fraction_done_file uses".into(),
                found: describe_value(&Value::String(name.to_string())),
            });
        }
    }
    Ok(())
}

/// "line L, column C: what toml says", both 1-based.
fn syntax_message(text: &str, error: &toml::de::Error) -> String {
    let Some(span) = error.span() else {
        return one_line(error.message());
    };
    let before: String = text
        .char_indices()
        .take_while(|(index, _)| *index < span.start)
        .map(|(_, c)| c)
        .collect();
    let line = before.matches('\n').count() + 1;
    let column = before.chars().rev().take_while(|c| *c != '\n').count() + 1;
    format!(
        "line {line}, column {column}: {}",
        one_line(error.message())
    )
}

/// toml's messages may span lines ("invalid array\nexpected `]`").
fn one_line(message: &str) -> String {
    message.trim().lines().collect::<Vec<_>>().join("; ")
}

fn unknown_key_warning(name: &str, key: &str) -> String {
    let mut warning = format!("{name}: unknown key '{}' ignored", shorten(key));
    if let Some(known) = closest_known_key(key) {
        warning.push_str(&format!(" (did you mean '{known}'?)"));
    }
    warning
}

/// A known key within two edits of `key` (catches `mounts`, `Verbose`, ...).
fn closest_known_key(key: &str) -> Option<&'static str> {
    // Long keys are never typos of ours; skipping them bounds the work.
    if key.chars().count() > 40 {
        return None;
    }
    let key = key.to_lowercase();
    KEYS.iter()
        .map(|(known, _)| (edit_distance(&key, known), *known))
        .filter(|(distance, _)| *distance <= 2)
        .min()
        .map(|(_, known)| known)
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// Reads a regular file of at most [`MAX_FILE_BYTES`] (job.toml may sit in
/// the slot, where the job of an earlier run could have replaced it).
fn read_small_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let bytes = crate::slot::io::read_prefix(path, MAX_FILE_BYTES + 1)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "file is larger than 1 MiB",
        ));
    }
    Ok(bytes)
}

/// One `key = value` of job.toml, converted to typed values with errors that
/// name the key.
struct Entry<'a> {
    key: &'a str,
    value: &'a Value,
}

impl Entry<'_> {
    fn bad(&self, expected: &str, found: String) -> ConfigError {
        ConfigError::BadValue {
            key: self.key.to_string(),
            expected: expected.to_string(),
            found,
        }
    }

    fn wrong(&self, expected: &str) -> ConfigError {
        self.bad(expected, describe_value(self.value))
    }

    fn boolean(&self) -> Result<bool, ConfigError> {
        self.value
            .as_bool()
            .ok_or_else(|| self.wrong("true or false"))
    }

    /// An integer in `range`, converted to the field's type.
    fn integer_in<T: TryFrom<i64>>(
        &self,
        range: RangeInclusive<i64>,
        expected: &str,
    ) -> Result<T, ConfigError> {
        match self.value.as_integer() {
            Some(n) if range.contains(&n) => T::try_from(n).map_err(|_| self.wrong(expected)),
            _ => Err(self.wrong(expected)),
        }
    }

    /// A string for which `ok` holds. NUL characters are refused everywhere:
    /// no argv element or path can carry one.
    fn string_where(&self, expected: &str, ok: fn(&str) -> bool) -> Result<&str, ConfigError> {
        match self.value.as_str() {
            Some(s) if !s.contains('\0') && ok(s) => Ok(s),
            _ => Err(self.wrong(expected)),
        }
    }

    /// Like [`Entry::string_where`], but an empty string means "not set".
    fn optional_string_where(
        &self,
        expected: &str,
        ok: fn(&str) -> bool,
    ) -> Result<Option<String>, ConfigError> {
        if self.value.as_str() == Some("") {
            return Ok(None);
        }
        self.string_where(expected, ok).map(|s| Some(s.to_string()))
    }

    /// An array whose elements are all strings for which `ok` holds.
    fn string_array_where(
        &self,
        expected: &str,
        ok: fn(&str) -> bool,
    ) -> Result<Vec<String>, ConfigError> {
        let Some(array) = self.value.as_array() else {
            return Err(self.wrong("an array of strings"));
        };
        let mut strings = Vec::with_capacity(array.len());
        for (index, element) in array.iter().enumerate() {
            let position = index + 1;
            match element.as_str() {
                None => {
                    return Err(self.bad(
                        "an array of strings",
                        format!("{} (element {position})", describe_value(element)),
                    ))
                }
                Some(s) if s.contains('\0') || !ok(s) => {
                    return Err(self.bad(
                        expected,
                        format!("{} (element {position})", describe_value(element)),
                    ))
                }
                Some(s) => strings.push(s.to_string()),
            }
        }
        Ok(strings)
    }

    /// A string of extra engine arguments, split into words without a shell.
    fn words(&self) -> Result<Vec<String>, ConfigError> {
        const EXPECTED: &str = "a string of arguments with shell-like quoting";
        let text = self.string_where(EXPECTED, |_| true)?;
        argv::split_words(text).map_err(|e| {
            self.bad(
                "a string of arguments with balanced quotes",
                format!("{}: {e}", describe_value(self.value)),
            )
        })
    }
}

/// How a value looks in an error message: its TOML type and (short) value.
fn describe_value(value: &Value) -> String {
    match value {
        Value::String(s) => format!("string \"{}\"", shorten(s)),
        Value::Integer(n) => format!("integer {n}"),
        Value::Float(x) => format!("float {x}"),
        Value::Boolean(b) => format!("boolean {b}"),
        Value::Datetime(d) => format!("date-time {d}"),
        Value::Array(a) => format!("an array of {} element(s)", a.len()),
        Value::Table(_) => "a table".to_string(),
    }
}

/// Escapes control characters and quotes and cuts long text, so that any
/// input makes a one-line, readable message.
fn shorten(text: &str) -> String {
    const MAX_CHARS: usize = 80;
    let mut shown = String::new();
    for c in text.chars().take(MAX_CHARS) {
        if c.is_control() || c == '"' || c == '\\' {
            shown.extend(c.escape_debug());
        } else {
            shown.push(c);
        }
    }
    if text.chars().nth(MAX_CHARS).is_some() {
        shown.push_str("...");
    }
    shown
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// An absolute container path. `:` is refused because engines use it to
/// separate the parts of a volume spec.
fn is_container_path(s: &str) -> bool {
    s.starts_with('/') && !s.trim_end_matches('/').is_empty() && !s.contains(':') && !has_control(s)
}

/// A plausible image reference. It must not start with '-' because it becomes
/// an argument of the engine, where it would be read as an option.
fn is_image_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c))
}

fn is_mount_spec(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('-') && !has_control(s)
}

fn is_port_spec(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".:[]/-".contains(c))
}

/// A file name directly in the slot directory: it must not reach outside it.
fn is_plain_file_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s != "."
        && s != ".."
        && !s.contains(['/', '\\'])
        && !has_control(s)
}

/// A Linux capability name, with or without the CAP_ prefix; those that
/// amount to the host (`engine::is_host_capability`) are not accepted here.
fn is_capability(s: &str) -> bool {
    let name = s.trim_start_matches("CAP_");
    !name.is_empty()
        && name.len() <= 32
        && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        && !crate::engine::is_host_capability(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TestDir;

    fn parse_ok(text: &str) -> (JobConfig, Vec<String>) {
        JobConfig::from_toml(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    fn config(text: &str) -> JobConfig {
        let (config, warnings) = parse_ok(text);
        assert!(
            warnings.is_empty(),
            "unexpected warnings for {text:?}: {warnings:?}"
        );
        config
    }

    fn error(text: &str) -> String {
        match JobConfig::from_toml(text) {
            Ok(c) => panic!("{text:?} should be refused, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(config(""), JobConfig::default());
        assert_eq!(config("# only a comment\n\n"), JobConfig::default());
    }

    #[test]
    fn defaults_match_the_cpp_wrapper_and_the_design() {
        let d = JobConfig::default();
        assert_eq!(d.workdir, "/app");
        assert_eq!((d.project_dir_mount, d.image_name), (None, None));
        assert!(!d.use_gpu);
        assert_eq!(d.web_graphics_guest_port, None);
        assert!(d.mounts.is_empty() && d.portmaps.is_empty());
        assert!(d.build_args.is_empty() && d.create_args.is_empty());
        assert_eq!(d.verbose, 1);
        assert_eq!(d.fraction_done_file, "fraction_done");
        assert_eq!((d.cpu_shares, d.pids_limit), (2, 4096));
        assert!(d.network);
        assert_eq!(d.quit_action, QuitAction::Pause);
        assert_eq!(
            (
                d.stop_grace_secs,
                d.command_timeout_secs,
                d.build_timeout_secs
            ),
            (30, 120, 3600)
        );
        assert_eq!(d.log_tail_bytes, 65536);
    }

    #[test]
    fn every_key_with_a_good_value() {
        let c = config(
            r#"
            workdir = "/work dir"
            project_dir_mount = "/project"
            image_name = "registry.example.org:5000/sci/app:1.2"
            use_gpu = true
            web_graphics_guest_port = 8080
            mount = ["/data:/data:ro", "/tmp/a b:/b"]
            portmap = ["8000:80", "127.0.0.1:9000:90/udp"]
            build_args = "--build-arg 'X=a b' --pull"
            create_args = "--label \"a b\" -e 'X=$(rm -rf /)'"
            verbose = 2
            fraction_done_file = "progress.txt"
            cpu_shares = 1024
            idle_priority = false
            pids_limit = 100
            network = false
            quit_action = "stop"
            stop_grace_secs = 5
            command_timeout_secs = 60
            build_timeout_secs = 600
            log_tail_bytes = 0
            allow_unsafe = true
            cap_add = ["CHOWN", "NET_BIND_SERVICE"]
            run_as_wrapper_user = false
            image_archive = "app.tar.gz"
            image_cache_max_images = 2
            image_cache_max_mb = 500
            completion_trigger_file = "done"
            temporary_exit_trigger_file = "later"
            trickle_trigger_files = ["status", "result"]
            intermediate_upload_files = ["out_1"]
            heartbeat_filename = "beat"
            minimum_heartbeat_interval = 60
            checkpoint_file = "ckpt"
            job_duration = 3600
            mount_linked_files = false
            "#,
        );
        let expected = JobConfig {
            workdir: "/work dir".into(),
            project_dir_mount: Some("/project".into()),
            image_name: Some("registry.example.org:5000/sci/app:1.2".into()),
            use_gpu: true,
            web_graphics_guest_port: Some(8080),
            mounts: vec!["/data:/data:ro".into(), "/tmp/a b:/b".into()],
            portmaps: vec!["8000:80".into(), "127.0.0.1:9000:90/udp".into()],
            build_args: vec!["--build-arg".into(), "X=a b".into(), "--pull".into()],
            create_args: vec![
                "--label".into(),
                "a b".into(),
                "-e".into(),
                "X=$(rm -rf /)".into(),
            ],
            verbose: 2,
            fraction_done_file: "progress.txt".into(),
            cpu_shares: 1024,
            idle_priority: false,
            pids_limit: 100,
            network: false,
            quit_action: QuitAction::Stop,
            stop_grace_secs: 5,
            command_timeout_secs: 60,
            build_timeout_secs: 600,
            log_tail_bytes: 0,
            allow_unsafe: true,
            cap_add: vec!["CHOWN".into(), "NET_BIND_SERVICE".into()],
            run_as_wrapper_user: false,
            image_archive: Some("app.tar.gz".into()),
            image_cache_max_images: 2,
            image_cache_max_mb: 500,
            control: ControlFiles {
                completion_trigger_file: Some("done".into()),
                temporary_exit_trigger_file: Some("later".into()),
                trickle_trigger_files: vec!["status".into(), "result".into()],
                intermediate_upload_files: vec!["out_1".into()],
                heartbeat_filename: Some("beat".into()),
                minimum_heartbeat_interval_secs: 60,
                checkpoint_file: Some("ckpt".into()),
            },
            job_duration_secs: Some(3600),
            mount_linked_files: false,
        };
        assert_eq!(c, expected);
    }

    #[test]
    fn control_files_are_plain_names_each_with_one_meaning() {
        for (key, value) in [
            ("completion_trigger_file", "\"../done\""),
            ("trickle_trigger_files", "[\"/etc/passwd\"]"),
            ("intermediate_upload_files", "\"out\""),
            ("minimum_heartbeat_interval", "0"),
            ("checkpoint_file", "\".\""),
        ] {
            assert!(
                JobConfig::from_toml(&format!("{key} = {value}")).is_err(),
                "{key} = {value}"
            );
        }
        for clash in [
            "completion_trigger_file = \"x\"\ntemporary_exit_trigger_file = \"x\"",
            "trickle_trigger_files = [\"a\", \"a\"]",
            "checkpoint_file = \"fraction_done\"",
        ] {
            let message = JobConfig::from_toml(clash).unwrap_err().to_string();
            assert!(
                message.contains("no other control file"),
                "{clash}: {message}"
            );
        }
    }

    #[test]
    fn empty_strings_mean_unset_like_the_cpp_wrapper() {
        let c = config(
            "project_dir_mount = \"\"\nimage_name = \"\"\nbuild_args = \"\"\ncreate_args = \"  \"",
        );
        assert_eq!(c, JobConfig::default());
        assert_eq!(
            config("web_graphics_guest_port = 0").web_graphics_guest_port,
            None
        );
        assert_eq!(
            config("quit_action = \"pause\"").quit_action,
            QuitAction::Pause
        );
        assert_eq!(config("mount = []").mounts, Vec::<String>::new());
    }

    #[test]
    fn range_limits_are_inclusive() {
        let c = config(
            "verbose = 0\ncpu_shares = 262144\npids_limit = 16\nstop_grace_secs = 3600\n\
             command_timeout_secs = 5\nbuild_timeout_secs = 86400\nlog_tail_bytes = 16777216\n\
             web_graphics_guest_port = 65535",
        );
        assert_eq!(c.verbose, 0);
        assert_eq!(c.cpu_shares, 262_144);
        assert_eq!(c.pids_limit, 16);
        assert_eq!(c.stop_grace_secs, 3600);
        assert_eq!(c.command_timeout_secs, 5);
        assert_eq!(c.build_timeout_secs, 86_400);
        assert_eq!(c.log_tail_bytes, 16 * 1024 * 1024);
        assert_eq!(c.web_graphics_guest_port, Some(65535));
        assert_eq!(
            config("cpu_shares = 2\nstop_grace_secs = 1\nbuild_timeout_secs = 10").cpu_shares,
            2
        );
    }

    #[test]
    fn capabilities_that_amount_to_the_host_are_refused() {
        for cap in [
            "ALL",
            "SYS_ADMIN",
            "CAP_SYS_ADMIN",
            "DAC_READ_SEARCH",
            "CAP_DAC_READ_SEARCH",
            "SYS_MODULE",
            "SYS_RAWIO",
            "SYS_PTRACE",
        ] {
            let err = error(&format!("cap_add = [\"{cap}\"]"));
            assert!(
                err.contains("'cap_add'") && err.contains(cap),
                "{cap}: {err}"
            );
        }
        assert_eq!(
            config("cap_add = [\"CAP_CHOWN\", \"NET_RAW\"]").cap_add,
            ["CAP_CHOWN", "NET_RAW"]
        );
    }

    #[test]
    fn error_messages_name_key_expectation_and_value() {
        assert_eq!(
            error("verbose = \"yes\""),
            "job.toml: key 'verbose' must be an integer 0, 1 or 2, found string \"yes\""
        );
        assert_eq!(
            error("mount = 3"),
            "job.toml: key 'mount' must be an array of strings, found integer 3"
        );
        assert_eq!(
            error("mount = [\"/a:/a\", 3]"),
            "job.toml: key 'mount' must be an array of strings, found integer 3 (element 2)"
        );
        assert_eq!(
            error("use_gpu = \"yes\""),
            "job.toml: key 'use_gpu' must be true or false, found string \"yes\""
        );
    }

    #[test]
    fn every_key_with_a_wrong_type() {
        for (key, bad) in [
            ("workdir", "1"),
            ("project_dir_mount", "true"),
            ("image_name", "[\"a\"]"),
            ("use_gpu", "1"),
            ("web_graphics_guest_port", "\"80\""),
            ("mount", "\"/a:/a\""),
            ("portmap", "{ a = 1 }"),
            ("build_args", "[\"--pull\"]"),
            ("create_args", "2"),
            ("verbose", "1.0"),
            ("fraction_done_file", "false"),
            ("cpu_shares", "\"2\""),
            ("pids_limit", "1979-05-27"),
            ("network", "\"none\""),
            ("quit_action", "true"),
            ("stop_grace_secs", "\"30\""),
            ("command_timeout_secs", "[]"),
            ("build_timeout_secs", "3600.0"),
            ("log_tail_bytes", "\"64k\""),
        ] {
            let message = error(&format!("{key} = {bad}"));
            assert!(
                message.starts_with(&format!("job.toml: key '{key}' must be "))
                    && message.contains(", found "),
                "{key} = {bad}: {message}"
            );
        }
        assert!(error("network = \"none\"").ends_with("found string \"none\""));
        assert!(error("portmap = { a = 1 }").ends_with("found a table"));
        assert!(error("pids_limit = 1979-05-27").ends_with("found date-time 1979-05-27"));
        assert!(error("verbose = 1.0").ends_with("found float 1"));
        assert!(error("image_name = [\"a\"]").ends_with("found an array of 1 element(s)"));
    }

    #[test]
    fn out_of_range_values_are_refused() {
        for (key, bad) in [
            ("web_graphics_guest_port", "-1"),
            ("web_graphics_guest_port", "65536"),
            ("job_duration", "-1"),
            ("job_duration", "31536001"),
            ("verbose", "3"),
            ("verbose", "-1"),
            ("cpu_shares", "1"),
            ("cpu_shares", "262145"),
            ("pids_limit", "15"),
            ("pids_limit", "9223372036854775807"),
            ("stop_grace_secs", "0"),
            ("stop_grace_secs", "3601"),
            ("command_timeout_secs", "4"),
            ("command_timeout_secs", "3601"),
            ("build_timeout_secs", "9"),
            ("build_timeout_secs", "86401"),
            ("log_tail_bytes", "-1"),
            ("log_tail_bytes", "16777217"),
        ] {
            let message = error(&format!("{key} = {bad}"));
            assert!(
                message.starts_with(&format!("job.toml: key '{key}' must be an integer"))
                    && message.ends_with(&format!("found integer {bad}")),
                "{key} = {bad}: {message}"
            );
        }
    }

    #[test]
    fn bad_string_values_are_refused() {
        for (key, bad) in [
            ("workdir", "\"app\""),
            ("workdir", "\"\""),
            ("workdir", "\"/\""),
            ("workdir", "\"/a:/b\""),
            ("workdir", "\"/a\\u0000b\""),
            ("workdir", "\"/a\\nb\""),
            ("project_dir_mount", "\"project\""),
            ("image_name", "\"--privileged\""),
            ("image_name", "\"a b\""),
            ("image_name", "\"a;rm\""),
            ("mount", "[\"-v\"]"),
            ("mount", "[\"\"]"),
            ("mount", "[\"/a:/b\\n\"]"),
            ("portmap", "[\"80 :80\"]"),
            ("portmap", "[\"--net=host\"]"),
            ("fraction_done_file", "\"\""),
            ("fraction_done_file", "\"..\""),
            ("fraction_done_file", "\".\""),
            ("fraction_done_file", "\"../x\""),
            ("fraction_done_file", "\"/etc/passwd\""),
            ("fraction_done_file", "\"a\\\\b\""),
            ("quit_action", "\"kill\""),
            ("quit_action", "\"Pause\""),
            ("build_args", "\"'unterminated\""),
            ("create_args", "\"--label \\\"a\""),
            ("create_args", "\"trailing\\\\\""),
        ] {
            let message = error(&format!("{key} = {bad}"));
            assert!(
                message.starts_with(&format!("job.toml: key '{key}' must be ")),
                "{key} = {bad}: {message}"
            );
        }
        assert_eq!(
            error("build_args = \"--x 'a\""),
            "job.toml: key 'build_args' must be a string of arguments with balanced quotes, \
             found string \"--x 'a\": unterminated single quote (opened at character 5)"
        );
        assert!(error("create_args = \"\\\"x\"").contains("unterminated double quote"));
        assert!(error("create_args = \"x\\\\\"").contains("trailing backslash"));
        assert!(error("mount = [\"/a:/a\", \"-x\"]").ends_with("found string \"-x\" (element 2)"));
    }

    #[test]
    fn project_dir_must_not_hide_the_slot_dir() {
        let message = error("workdir = \"/data\"\nproject_dir_mount = \"/data/\"");
        assert!(
            message.contains("'project_dir_mount'") && message.contains("other than workdir"),
            "{message}"
        );
    }

    #[test]
    fn unknown_keys_are_warnings_naming_each_key() {
        let (c, warnings) = parse_ok("foo = 1\nverbose = 2\nbar = \"x\"\n[section]\nx = 1\n");
        assert_eq!(c.verbose, 2);
        assert_eq!(
            warnings,
            [
                "job.toml: unknown key 'bar' ignored",
                "job.toml: unknown key 'foo' ignored",
                "job.toml: unknown key 'section' ignored",
            ]
        );
    }

    #[test]
    fn unknown_keys_close_to_known_ones_get_a_suggestion() {
        let (_, warnings) = parse_ok("mounts = []\nVerbose = 1\nworkdirr = \"/x\"");
        assert_eq!(
            warnings,
            [
                "job.toml: unknown key 'Verbose' ignored (did you mean 'verbose'?)",
                "job.toml: unknown key 'mounts' ignored (did you mean 'mount'?)",
                "job.toml: unknown key 'workdirr' ignored (did you mean 'workdir'?)",
            ]
        );
    }

    #[test]
    fn odd_unknown_keys_make_one_line_warnings() {
        let long = "k".repeat(10_000);
        let (_, warnings) = parse_ok(&format!("\"a\\nb\" = 1\n{long} = 2"));
        assert_eq!(warnings.len(), 2);
        assert!(
            warnings.iter().all(|w| !w.contains('\n') && w.len() < 200),
            "{warnings:?}"
        );
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        let message = error("verbose = 1\nworkdir = \"/app\"\nmount = [\"a\"\n");
        assert!(
            message.starts_with("job.toml: invalid TOML: line 4, column 1: "),
            "{message}"
        );
        assert!(!message.contains('\n'), "{message}");
        let message = error("verbose = 1\n\n  = 3\n");
        assert!(message.contains("line 3, column 3"), "{message}");
        let message = error("verbose = 1\nverbose = 2\n");
        assert!(
            message.contains("line 2") && message.contains("duplicate"),
            "{message}"
        );
    }

    #[test]
    fn hostile_inputs_never_panic() {
        let deep_arrays = format!("x = {}{}", "[".repeat(5000), "]".repeat(5000));
        let deep_tables = format!("x = {}{}", "{a=".repeat(5000), "}".repeat(5000));
        let dotted = format!("{} = 1", vec!["a"; 5000].join("."));
        let header = format!("[{}]", vec!["a"; 5000].join("."));
        for text in [
            deep_arrays,
            deep_tables,
            dotted,
            header,
            "\u{feff}verbose = 1".into(),
            "\0".into(),
        ] {
            let _ = JobConfig::from_toml(&text);
        }
        // Cheap deterministic mutation fuzzing of the example file.
        let example = include_str!("../examples/job.toml").as_bytes().to_vec();
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = b"=\"'[]{}#\\\n .,0-9aeZ\x00\xff";
        for _ in 0..2000 {
            let mut bytes = example.clone();
            for _ in 0..(next() % 8 + 1) {
                let at = (next() % bytes.len() as u64) as usize;
                bytes[at] = alphabet[(next() % alphabet.len() as u64) as usize];
            }
            if let Ok(text) = std::str::from_utf8(&bytes) {
                if let Ok((c, _)) = JobConfig::from_toml(text) {
                    let _ = c.describe();
                }
            }
        }
    }

    #[test]
    fn example_file_is_valid_and_documents_every_key() {
        let text = include_str!("../examples/job.toml");
        let (c, warnings) = parse_ok(text);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(c.workdir, "/app");
        assert_eq!(c.verbose, 1);
        for (key, _) in KEYS {
            let documented = text
                .lines()
                .map(|line| line.trim_start_matches(['#', ' ']))
                .any(|line| line.starts_with(&format!("{key} =")));
            assert!(documented, "examples/job.toml does not show key '{key}'");
        }
    }

    #[test]
    fn describe_lists_the_settings() {
        let text = describe_sample();
        assert!(text.starts_with("docker_wrapper config:\n"));
        for expected in [
            "workdir: /app",
            "project dir mounted at: /project",
            "use GPU: yes",
            "web graphics guest port: 80",
            "mount: /a:/b",
            "create args: --label 'a b'",
            "verbose: 2",
            "network: none",
            "on quit: stop the container (grace 7 s)",
            "command timeout: 120 s",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert!(!JobConfig::default().describe().contains("project dir"));
    }

    fn describe_sample() -> String {
        config(
            "project_dir_mount = \"/project\"\nuse_gpu = true\nweb_graphics_guest_port = 80\n\
             mount = [\"/a:/b\"]\ncreate_args = \"--label 'a b'\"\nverbose = 2\nnetwork = false\n\
             quit_action = \"stop\"\nstop_grace_secs = 7",
        )
        .describe()
    }

    #[test]
    fn load_handles_missing_required_big_and_odd_files() {
        let tmp = TestDir::new("job-toml");
        let dir = &tmp.0;
        let missing = dir.join("job.toml");

        let (c, warnings) = JobConfig::load(&missing, false).unwrap();
        assert_eq!(c, JobConfig::default());
        assert_eq!(
            warnings,
            [format!("no {}: using defaults", missing.display())]
        );
        assert!(matches!(
            JobConfig::load(&missing, true),
            Err(ConfigError::Io { .. })
        ));

        let good = dir.join("good.toml");
        std::fs::write(&good, "verbose = 0\nextra = 1\n").unwrap();
        let (c, warnings) = JobConfig::load(&good, true).unwrap();
        assert_eq!(c.verbose, 0);
        assert_eq!(
            warnings,
            [format!("{}: unknown key 'extra' ignored", good.display())]
        );

        let big = dir.join("big.toml");
        std::fs::write(&big, format!("# {}\n", "x".repeat(1024 * 1024))).unwrap();
        let message = JobConfig::load(&big, false).unwrap_err().to_string();
        assert!(message.contains("larger than 1 MiB"), "{message}");

        let binary = dir.join("binary.toml");
        std::fs::write(&binary, b"verbose = 1\n\xff\xfe").unwrap();
        let message = JobConfig::load(&binary, false).unwrap_err().to_string();
        assert!(message.contains("not UTF-8"), "{message}");

        let broken = dir.join("broken.toml");
        std::fs::write(&broken, "verbose = \n").unwrap();
        let message = JobConfig::load(&broken, false).unwrap_err().to_string();
        assert!(
            message.starts_with(&format!("{}: invalid TOML: line 1", broken.display())),
            "{message}"
        );

        // A directory where the file should be is an error, required or not.
        assert!(matches!(
            JobConfig::load(dir, false),
            Err(ConfigError::Io { .. })
        ));
    }
}

/// Property tests: any text gives a config or an error naming the key, never
/// a panic; every valid value of every key reads back as written.
#[cfg(test)]
mod props {
    use super::*;
    use crate::property_tests::{check_message, config};
    use proptest::collection::{btree_set, vec};
    use proptest::prelude::*;
    use proptest::sample::select;
    use std::rc::Rc;

    /// The TOML type a key wants.
    #[derive(Debug, Clone)]
    enum Kind {
        Boolean,
        Integer(RangeInclusive<i64>),
        String,
        StringArray,
    }

    impl Kind {
        /// Whether `value` has this type (valid or not).
        fn has_type(&self, value: &Value) -> bool {
            match (self, value) {
                (Kind::Boolean, Value::Boolean(_))
                | (Kind::Integer(_), Value::Integer(_))
                | (Kind::String, Value::String(_)) => true,
                (Kind::StringArray, Value::Array(a)) => a.iter().all(Value::is_str),
                _ => false,
            }
        }
    }

    /// One `key = value` line and its effect on the config.
    #[derive(Clone)]
    struct Setting {
        key: &'static str,
        value: Value,
        set: Rc<dyn Fn(&mut JobConfig)>,
    }

    impl fmt::Debug for Setting {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{} = {}", self.key, self.value)
        }
    }

    /// A key, its type, and its valid values.
    struct KeyGen {
        key: &'static str,
        kind: Kind,
        settings: BoxedStrategy<Setting>,
    }

    fn key_gen<T, S>(
        key: &'static str,
        kind: Kind,
        values: S,
        to_value: fn(&T) -> Value,
        set: fn(&mut JobConfig, T),
    ) -> KeyGen
    where
        T: Clone + fmt::Debug + 'static,
        S: Strategy<Value = T> + 'static,
    {
        let settings = values
            .prop_map(move |v| Setting {
                key,
                value: to_value(&v),
                set: Rc::new(move |c| set(c, v.clone())),
            })
            .boxed();
        KeyGen {
            key,
            kind,
            settings,
        }
    }

    fn boolean(name: &'static str, set: fn(&mut JobConfig, bool)) -> KeyGen {
        key_gen(
            name,
            Kind::Boolean,
            any::<bool>(),
            |b| Value::Boolean(*b),
            set,
        )
    }

    fn integer(
        name: &'static str,
        range: RangeInclusive<i64>,
        set: fn(&mut JobConfig, i64),
    ) -> KeyGen {
        // The limits themselves are the likeliest to be wrong.
        let values = prop_oneof![Just(*range.start()), Just(*range.end()), range.clone()];
        key_gen(
            name,
            Kind::Integer(range),
            values,
            |n| Value::Integer(*n),
            set,
        )
    }

    fn text<S: Strategy<Value = String> + 'static>(
        name: &'static str,
        values: S,
        set: fn(&mut JobConfig, String),
    ) -> KeyGen {
        key_gen(
            name,
            Kind::String,
            values,
            |s| Value::String(s.clone()),
            set,
        )
    }

    /// A string where "" means unset.
    fn optional<S: Strategy<Value = String> + 'static>(
        name: &'static str,
        values: S,
        set: fn(&mut JobConfig, Option<String>),
    ) -> KeyGen {
        let values =
            prop_oneof![Just(String::new()), values].prop_map(|s| (!s.is_empty()).then_some(s));
        key_gen(
            name,
            Kind::String,
            values,
            |s| Value::String(s.clone().unwrap_or_default()),
            set,
        )
    }

    fn array<S: Strategy<Value = String> + 'static>(
        name: &'static str,
        element: S,
        set: fn(&mut JobConfig, Vec<String>),
    ) -> KeyGen {
        let to_value =
            |v: &Vec<String>| Value::Array(v.iter().cloned().map(Value::String).collect());
        key_gen(name, Kind::StringArray, vec(element, 0..4), to_value, set)
    }

    /// Control file names of one key: their own prefix and no repeats, as
    /// each file may have one meaning only.
    fn control_names(
        name: &'static str,
        prefix: &'static str,
        set: fn(&mut JobConfig, Vec<String>),
    ) -> KeyGen {
        let to_value =
            |v: &Vec<String>| Value::Array(v.iter().cloned().map(Value::String).collect());
        let names = prop::collection::btree_set(control_name(prefix), 0..4)
            .prop_map(|names| names.into_iter().collect::<Vec<_>>());
        key_gen(name, Kind::StringArray, names, to_value, set)
    }

    fn control_name(prefix: &'static str) -> impl Strategy<Value = String> {
        "[a-z0-9_.-]{1,12}".prop_map(move |s| format!("{prefix}{s}"))
    }

    /// Arguments with everything a shell would interpret (except NUL), as one
    /// string in the wrapper's own quoting.
    fn args(name: &'static str, set: fn(&mut JobConfig, Vec<String>)) -> KeyGen {
        let special = vec![
            ' ', '\t', '\n', '\r', '\'', '"', '\\', '$', '`', '(', ')', ';', '*', '#', '~',
        ];
        let c = prop_oneof![
            3 => any::<char>(),
            3 => select(special),
            4 => prop::char::range('a', 'z'),
        ]
        .prop_filter("no NUL", |c| *c != '\0');
        let words = vec(vec(c, 0..12).prop_map(|w| w.into_iter().collect()), 0..6);
        let to_value = |w: &Vec<String>| Value::String(argv::join_words(w));
        key_gen(name, Kind::String, words, to_value, set)
    }

    // Valid values, written from the rules each key documents.

    fn container_path() -> impl Strategy<Value = String> {
        prop_oneof![
            "/[a-z0-9_. -]{0,10}[a-z0-9]/?([a-z0-9_. -]{0,10}/?){0,3}",
            "/[^:/\\p{Cc}]{1,20}(/[^:\\p{Cc}]{0,20}){0,3}",
        ]
    }

    fn image_name() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9._/:@][a-zA-Z0-9._/:@-]{0,200}"
    }

    fn mount_spec() -> impl Strategy<Value = String> {
        prop_oneof![
            "/[a-z/ ]{1,20}:/[a-z/]{1,20}(:ro)?",
            "[^-\\p{Cc}][^\\p{Cc}]{0,40}",
        ]
    }

    fn port_spec() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9]{1,5}:[0-9]{1,5}(/udp)?",
            "[a-zA-Z0-9.:\\[\\]/][a-zA-Z0-9.:\\[\\]/-]{0,20}",
        ]
    }

    fn file_name() -> impl Strategy<Value = String> {
        prop_oneof!["[a-z0-9_.-]{1,20}", "[^/\\\\\\p{Cc}]{1,40}"]
            .prop_filter("not . or ..", |s| s != "." && s != "..")
    }

    fn capability() -> impl Strategy<Value = String> {
        "(CAP_)?[A-Z_]{1,28}".prop_filter("a capability that may be added", |s| {
            let name = s.trim_start_matches("CAP_");
            !name.is_empty() && !crate::engine::is_host_capability(name)
        })
    }

    /// Every key of [`KEYS`], in its order (`every_key_has_a_generator`).
    fn keys() -> Vec<KeyGen> {
        vec![
            text("workdir", container_path(), |c, s| c.workdir = s),
            optional("project_dir_mount", container_path(), |c, s| {
                c.project_dir_mount = s
            }),
            optional("image_name", image_name(), |c, s| c.image_name = s),
            boolean("use_gpu", |c, b| c.use_gpu = b),
            integer("web_graphics_guest_port", 0..=65535, |c, n| {
                c.web_graphics_guest_port = (n != 0).then_some(n as u16)
            }),
            array("mount", mount_spec(), |c, v| c.mounts = v),
            array("portmap", port_spec(), |c, v| c.portmaps = v),
            args("build_args", |c, w| c.build_args = w),
            args("create_args", |c, w| c.create_args = w),
            integer("verbose", 0..=2, |c, n| c.verbose = n as u8),
            text("fraction_done_file", file_name(), |c, s| {
                c.fraction_done_file = s
            }),
            integer("cpu_shares", 2..=262_144, |c, n| c.cpu_shares = n as u32),
            boolean("idle_priority", |c, b| c.idle_priority = b),
            integer("pids_limit", 16..=4_194_304, |c, n| c.pids_limit = n as u32),
            boolean("network", |c, b| c.network = b),
            text("quit_action", "pause|stop", |c, s| {
                c.quit_action = if s == "stop" {
                    QuitAction::Stop
                } else {
                    QuitAction::Pause
                }
            }),
            integer("stop_grace_secs", 1..=3600, |c, n| {
                c.stop_grace_secs = n as u64
            }),
            integer("command_timeout_secs", 5..=3600, |c, n| {
                c.command_timeout_secs = n as u64
            }),
            integer("build_timeout_secs", 10..=86_400, |c, n| {
                c.build_timeout_secs = n as u64
            }),
            boolean("allow_unsafe", |c, b| c.allow_unsafe = b),
            array("cap_add", capability(), |c, v| c.cap_add = v),
            boolean("run_as_wrapper_user", |c, b| c.run_as_wrapper_user = b),
            optional("image_archive", file_name(), |c, s| c.image_archive = s),
            integer("image_cache_max_images", 1..=1000, |c, n| {
                c.image_cache_max_images = n as u32
            }),
            integer("image_cache_max_mb", 64..=100_000_000, |c, n| {
                c.image_cache_max_mb = n as u64
            }),
            optional("completion_trigger_file", control_name("done:"), |c, s| {
                c.control.completion_trigger_file = s
            }),
            optional(
                "temporary_exit_trigger_file",
                control_name("later:"),
                |c, s| c.control.temporary_exit_trigger_file = s,
            ),
            control_names("trickle_trigger_files", "trickle:", |c, v| {
                c.control.trickle_trigger_files = v
            }),
            control_names("intermediate_upload_files", "upload:", |c, v| {
                c.control.intermediate_upload_files = v
            }),
            optional("heartbeat_filename", control_name("beat:"), |c, s| {
                c.control.heartbeat_filename = s
            }),
            integer("minimum_heartbeat_interval", 10..=2_592_000, |c, n| {
                c.control.minimum_heartbeat_interval_secs = n as u64
            }),
            optional("checkpoint_file", control_name("checkpoint:"), |c, s| {
                c.control.checkpoint_file = s
            }),
            boolean("mount_linked_files", |c, b| c.mount_linked_files = b),
            integer("job_duration", 0..=JOB_DURATION_MAX, |c, n| {
                c.job_duration_secs = (n != 0).then_some(n as u64)
            }),
            integer("log_tail_bytes", 0..=16 * 1024 * 1024, |c, n| {
                c.log_tail_bytes = n as u64
            }),
        ]
    }

    /// Some keys, each at most once, in any order.
    fn settings() -> impl Strategy<Value = Vec<Setting>> {
        let each: Vec<_> = keys()
            .into_iter()
            .map(|k| prop::option::of(k.settings))
            .collect();
        each.prop_map(|s| s.into_iter().flatten().collect::<Vec<_>>())
            .prop_shuffle()
    }

    fn expected(settings: &[Setting]) -> JobConfig {
        let mut c = JobConfig::default();
        for s in settings {
            (s.set)(&mut c);
        }
        c
    }

    /// A TOML basic string, used as a quoted key.
    fn quoted(key: &str) -> String {
        let mut out = String::from("\"");
        for c in key.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    fn render(settings: &[Setting], quote_keys: bool) -> String {
        let line = |s: &Setting| {
            let key = if quote_keys {
                quoted(s.key)
            } else {
                s.key.to_string()
            };
            format!("{key} = {}\n# comment\n", s.value)
        };
        settings.iter().map(line).collect()
    }

    /// Values of every TOML type.
    fn any_value() -> impl Strategy<Value = Value> {
        let datetime: toml::value::Datetime = "1979-05-27T07:32:00Z".parse().unwrap();
        prop_oneof![
            any::<bool>().prop_map(Value::Boolean),
            any::<i64>().prop_map(Value::Integer),
            any::<f64>().prop_map(Value::Float),
            "\\PC{0,20}".prop_map(Value::String),
            Just(Value::Datetime(datetime)),
            vec(any::<i64>().prop_map(Value::Integer), 0..3).prop_map(Value::Array),
            ("\\PC{0,5}", any::<bool>())
                .prop_map(|(s, b)| Value::Array(vec![Value::String(s), Value::Boolean(b)])),
            Just(Value::Table(Table::new())),
        ]
    }

    /// A key and a value it refuses: of another type, or out of range.
    fn refused_value() -> impl Strategy<Value = (&'static str, Value)> {
        let kinds: Vec<(&'static str, Kind)> =
            keys().into_iter().map(|k| (k.key, k.kind)).collect();
        (select(kinds), any_value()).prop_filter_map(
            "a value the key takes",
            |((key, kind), value)| {
                let out_of_range = matches!(
                    (&kind, &value),
                    (Kind::Integer(range), Value::Integer(n)) if !range.contains(n)
                );
                (out_of_range || !kind.has_type(&value)).then_some((key, value))
            },
        )
    }

    /// Pieces of TOML syntax, so that random input gets past the first line.
    const TOKENS: &[&str] = &[
        "=",
        "\"",
        "'",
        "\"\"\"",
        "'''",
        "[",
        "]",
        "[[",
        "]]",
        "{",
        "}",
        ",",
        ".",
        "#",
        "\\",
        "\\u",
        "\n",
        "\r\n",
        " ",
        "\t",
        "true",
        "1",
        "-0",
        "1.5e3",
        "inf",
        "nan",
        "0x1F",
        "1979-05-27",
        "07:32:00",
        "T",
        "Z",
        "_",
        "verbose",
        "mount",
        "workdir",
        "build_args",
        "\0",
        "\u{feff}",
        "é",
    ];

    // Case counts from each block's measured cost (see `config`).
    proptest! {
        #![proptest_config(config(4096))]

        #[test]
        fn arbitrary_text_never_panics(text in prop_oneof![
            any::<String>(),
            vec(select(TOKENS), 0..80).prop_map(|t| t.concat()),
        ]) {
            match JobConfig::from_toml(&text) {
                Ok((c, warnings)) => {
                    for w in &warnings {
                        check_message(w)?;
                    }
                    let _ = c.describe();
                }
                Err(e) => check_message(&e.to_string())?,
            }
        }

        #[test]
        fn refused_values_name_the_key((key, value) in refused_value()) {
            let text = format!("{key} = {value}");
            let message = JobConfig::from_toml(&text).unwrap_err().to_string();
            check_message(&message)?;
            prop_assert!(
                message.starts_with(&format!("job.toml: key '{key}' must be "))
                    && message.contains(", found "),
                "{} gave {}", text, message
            );
        }
    }

    proptest! {
        #![proptest_config(config(1024))]

        #[test]
        fn valid_settings_read_back(settings in settings(), quote_keys in any::<bool>()) {
            let text = render(&settings, quote_keys);
            let want = expected(&settings);
            match (check_consistency(&want), JobConfig::from_toml(&text)) {
                (Ok(()), Ok((got, warnings))) => {
                    prop_assert_eq!(got, want, "from {}", text);
                    prop_assert!(warnings.is_empty(), "{:?}", warnings);
                }
                // project_dir_mount happened to be workdir.
                (Err(_), Err(e)) => {
                    let message = e.to_string();
                    check_message(&message)?;
                    prop_assert!(message.contains("'project_dir_mount'"), "{}", message);
                }
                (want, got) => {
                    prop_assert!(false, "expected {:?}, got {:?} from {}", want, got, text)
                }
            }
        }

        #[test]
        fn unknown_keys_are_warnings_naming_the_key(
            unknown in btree_set(prop_oneof!["[a-z_]{1,12}", any::<String>()], 1..4),
            settings in settings()
                .prop_filter("consistent", |s| check_consistency(&expected(s)).is_ok()),
        ) {
            let unknown: Vec<String> = unknown
                .into_iter()
                .filter(|k| !KEYS.iter().any(|(known, _)| known == k))
                .collect();
            let mut text = render(&settings, false);
            for key in &unknown {
                text.push_str(&format!("{} = 1\n", quoted(key)));
            }
            let (got, warnings) = JobConfig::from_toml(&text)
                .map_err(|e| TestCaseError::fail(format!("{e} from {text}")))?;
            prop_assert_eq!(got, expected(&settings));
            // Warnings come in key order, as the (sorted) set of keys does.
            prop_assert_eq!(warnings.len(), unknown.len(), "{:?}", warnings);
            for (key, warning) in unknown.iter().zip(&warnings) {
                check_message(warning)?;
                let named = format!("'{}'", shorten(key));
                prop_assert!(warning.contains(&named), "{}: {}", key, warning);
            }
        }

        #[test]
        fn project_dir_mount_over_workdir_names_the_key(path in prop_oneof![
            container_path(),
            "/[a-z]{2000,3000}",
        ]) {
            let text = format!(
                "workdir = {}\nproject_dir_mount = {}",
                Value::String(path.clone()),
                Value::String(format!("{path}/"))
            );
            let message = JobConfig::from_toml(&text).unwrap_err().to_string();
            check_message(&message)?;
            prop_assert!(message.contains("'project_dir_mount'"), "{}", message);
        }
    }

    /// The input that once made a message quote all of workdir.
    #[test]
    fn a_long_workdir_is_shortened_in_messages() {
        let path = format!("/{}", "w".repeat(5000));
        let text = format!("workdir = \"{path}\"\nproject_dir_mount = \"{path}/\"");
        let message = JobConfig::from_toml(&text).unwrap_err().to_string();
        check_message(&message).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn every_key_has_a_generator() {
        let generated: Vec<&str> = keys().iter().map(|k| k.key).collect();
        let known: Vec<&str> = KEYS.iter().map(|(key, _)| *key).collect();
        assert_eq!(generated, known);
    }
}
