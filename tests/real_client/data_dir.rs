//! A fresh BOINC client data dir written by hand: `client_state.xml` with one
//! project, app, app version (the wrapper as main program + Dockerfile,
//! job.toml, main.sh and busybox), workunit and result, plus the account
//! file, `cc_config.xml`, `global_prefs_override.xml` and `gui_rpc_auth.cfg`.
//! The formats follow the 7.20 client's parsers (client/cs_statefile.cpp,
//! client/client_types.cpp, client/result.cpp, client/project.cpp,
//! lib/cc_config.cpp), which the 8.2 client reads alike. The plan class
//! contains `docker`, as a real project's Docker app version does: the 8.2
//! client runs such an app only when it found Podman or Docker, and counts its
//! containers as a task's at startup.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dw_test_support::jobs::{JobFile, TestJob};
use dw_test_support::run_with_timeout;
use dw_test_support::tempdir::file_name_safe;

pub const PROJECT_URL: &str = "http://example.test/dw_real_client/";
/// `PROJECT_URL` escaped as the client names the project dir (lib/url.cpp
/// `escape_project_url`: scheme dropped, characters other than [A-Za-z0-9.-_]
/// become '_', a trailing '_' removed).
pub const PROJECT_DIR_NAME: &str = "example.test_dw_real_client";
pub const PROJECT_NAME: &str = "dw_real_client";
pub const APP_NAME: &str = "docker_app";
pub const PLATFORM: &str = "x86_64-pc-linux-gnu";
pub const VERSION_NUM: u32 = 100;
pub const PLAN_CLASS: &str = "docker";
/// The workunit's memory bound: the wrapper's `--memory`.
const MEMORY_BOUND: u64 = 512 << 20;

/// Every test's job.toml. The jobs use the default Dockerfile, so the
/// wrapper's content-addressed image cache builds one image per engine for
/// all of them; main.sh is not copied into the image: it reaches the
/// container through the slot (at /app).
pub const JOB_TOML: &str = "# real-client test job\nverbose = 1\n";
/// For engines without a usable network here (rootless Podman).
const NO_NETWORK_TOML: &str = "network = false\nbuild_args = \"--network none\"\n";

/// The workunit of one test: the job (its files become the app version's),
/// the command line, its input files and the result's output files (by open
/// name), and the one preference tests vary.
#[derive(Clone, Debug)]
pub struct Workunit {
    pub(super) job: TestJob,
    pub(super) command_line: Option<String>,
    pub(super) inputs: Vec<(String, Vec<u8>)>,
    pub(super) outputs: Vec<String>,
    pub(super) leave_apps_in_memory: bool,
    pub(super) no_network: bool,
    /// More job.toml lines.
    pub(super) job_toml: String,
}

impl Workunit {
    /// A workunit running `script` with busybox sh in /app (the slot).
    pub fn shell(script: &str) -> Workunit {
        Workunit {
            job: TestJob::shell(script),
            command_line: None,
            inputs: Vec::new(),
            outputs: Vec::new(),
            leave_apps_in_memory: false,
            no_network: false,
            job_toml: String::new(),
        }
    }

    /// A line for job.toml.
    pub fn job_toml(mut self, line: &str) -> Workunit {
        self.job_toml.push_str(line);
        self.job_toml.push('\n');
        self
    }

    /// The workunit's `<command_line>`: the job's `$ARGS`.
    pub fn command_line(mut self, line: &str) -> Workunit {
        self.command_line = Some(line.to_string());
        self
    }

    /// A workunit input file, delivered in the slot under `open_name`.
    pub fn input(mut self, open_name: &str, contents: impl Into<Vec<u8>>) -> Workunit {
        self.inputs.push((open_name.to_string(), contents.into()));
        self
    }

    /// A result output file the job writes as `open_name` in the slot.
    pub fn output(mut self, open_name: &str) -> Workunit {
        self.outputs.push(open_name.to_string());
        self
    }

    /// The "leave applications in memory" preference (default off, as on a
    /// fresh client: then a task that checkpointed is quit, not suspended).
    pub fn leave_apps_in_memory(mut self, on: bool) -> Workunit {
        self.leave_apps_in_memory = on;
        self
    }

    /// job.toml turns the container's network off, and the build's.
    pub fn without_network(mut self) -> Workunit {
        self.no_network = true;
        self
    }

    /// The app version's files: the job's, with the harness's job.toml.
    fn app_files(&self) -> Result<Vec<JobFile>, String> {
        let no_network = if self.no_network { NO_NETWORK_TOML } else { "" };
        self.job
            .clone()
            .job_toml(&format!("{JOB_TOML}{no_network}{}", self.job_toml))
            .files()
    }
}

/// Workunit and result names of one test.
#[derive(Clone, Debug)]
pub struct Names {
    pub wu: String,
    pub result: String,
}

impl Names {
    /// Unique per test and process, so concurrent runs never share a container name.
    pub fn new(label: &str) -> Names {
        let wu = format!("dwrc_{label}_{}", std::process::id());
        Names {
            result: format!("{wu}_0"),
            wu,
        }
    }

    /// The physical name of an output file in the project dir.
    pub fn output_file(&self, open_name: &str) -> String {
        format!("{}_{}", self.result, file_name_safe(open_name))
    }

    /// The physical name of an input file in the project dir.
    pub fn input_file(&self, open_name: &str) -> String {
        format!("{}_{}", self.wu, file_name_safe(open_name))
    }
}

/// An app-version or input file as client_state.xml describes it.
struct FileInfo {
    name: String,
    nbytes: u64,
    md5: String,
    executable: bool,
}

/// Writes the whole data dir into `data_dir` (which exists and is empty).
/// `allow_multiple_clients` goes into cc_config.xml.
pub fn write_data_dir(
    data_dir: &Path,
    workunit: &Workunit,
    names: &Names,
    wrapper_bin: &Path,
    gui_rpc_password: &str,
    allow_multiple_clients: bool,
) -> Result<(), String> {
    let project_dir = data_dir.join("projects").join(PROJECT_DIR_NAME);
    fs::create_dir_all(&project_dir)
        .map_err(|e| format!("cannot create {}: {e}", project_dir.display()))?;

    let wrapper_name = format!("docker_wrapper_{VERSION_NUM}_{PLATFORM}");
    let main_program = put_file(&project_dir, &wrapper_name, Source::Copy(wrapper_bin), true)?;
    let mut app_files = Vec::new();
    for file in workunit.app_files()? {
        let physical_name = versioned_name(&file.name);
        let info = put_file(
            &project_dir,
            &physical_name,
            Source::Bytes(&file.contents),
            file.executable,
        )?;
        app_files.push((info, file.name));
    }
    let mut inputs = Vec::new();
    for (open_name, contents) in &workunit.inputs {
        inputs.push((
            put_file(
                &project_dir,
                &names.input_file(open_name),
                Source::Bytes(contents),
                false,
            )?,
            open_name.as_str(),
        ));
    }

    let mut xml = String::from("<client_state>\n");
    // Static host facts only; the client detects the rest itself at startup.
    // p_fpops/p_iops stand in for the skipped benchmarks.
    xml.push_str(
        "<host_info>\n<p_fpops>1000000000</p_fpops>\n<p_iops>1000000000</p_iops>\n</host_info>\n",
    );
    // Run mode "always" (1): compute whatever the activity-based preferences say.
    // Network mode "never" (3): the client makes no HTTP request at all (no
    // master-file fetch for the made-up project, no scheduler RPC, no upload).
    xml.push_str(
        "<user_run_request>1</user_run_request>\n<user_network_request>3</user_network_request>\n",
    );
    let _ = write!(
        xml,
        "<project>\n<master_url>{PROJECT_URL}</master_url>\n<project_name>{PROJECT_NAME}</project_name>\n\
         <dont_request_more_work/>\n</project>\n\
         <app>\n<name>{APP_NAME}</name>\n<user_friendly_name>docker_wrapper real-client test</user_friendly_name>\n</app>\n"
    );
    for fi in std::iter::once(&main_program)
        .chain(app_files.iter().map(|(f, _)| f))
        .chain(inputs.iter().map(|(f, _)| f))
    {
        // status 1 = FILE_PRESENT. At startup the 7.20 client checks that each
        // present file exists with nbytes bytes (CLIENT_STATE::check_file_existence);
        // the MD5 is checked only when the project asks for verification on app start.
        let _ = write!(
            xml,
            "<file_info>\n<name>{}</name>\n<nbytes>{}</nbytes>\n<max_nbytes>0</max_nbytes>\n<md5_cksum>{}</md5_cksum>\n<status>1</status>\n{}</file_info>\n",
            fi.name,
            fi.nbytes,
            fi.md5,
            if fi.executable { "<executable/>\n" } else { "" }
        );
    }
    for open_name in &workunit.outputs {
        // No upload URL and <sticky/>: see `RealClient` on what "done" means.
        let _ = write!(
            xml,
            "<file_info>\n<name>{}</name>\n<max_nbytes>100000000</max_nbytes>\n<sticky/>\n</file_info>\n",
            names.output_file(open_name)
        );
    }
    let _ = write!(
        xml,
        "<app_version>\n<app_name>{APP_NAME}</app_name>\n<version_num>{VERSION_NUM}</version_num>\n\
         <platform>{PLATFORM}</platform>\n<avg_ncpus>1</avg_ncpus>\n<flops>1000000000</flops>\n\
         <api_version>7.20.0</api_version>\n<plan_class>{PLAN_CLASS}</plan_class>\n\
         <file_ref>\n<file_name>{}</file_name>\n<main_program/>\n</file_ref>\n",
        main_program.name
    );
    for (fi, open_name) in &app_files {
        let _ = write!(
            xml,
            "<file_ref>\n<file_name>{}</file_name>\n<open_name>{open_name}</open_name>\n</file_ref>\n",
            fi.name
        );
    }
    xml.push_str("</app_version>\n");

    let _ = write!(
        xml,
        "<workunit>\n<name>{}</name>\n<app_name>{APP_NAME}</app_name>\n<version_num>{VERSION_NUM}</version_num>\n",
        names.wu
    );
    if let Some(line) = &workunit.command_line {
        let _ = writeln!(xml, "<command_line>{}</command_line>", xml_escape(line));
    }
    // Bounds far above what a test needs: the client aborts a task that exceeds
    // rsc_fpops_bound / flops seconds, or (7.20) a working set above rsc_memory_bound.
    let _ = write!(
        xml,
        "<rsc_fpops_est>1e12</rsc_fpops_est>\n<rsc_fpops_bound>1e16</rsc_fpops_bound>\n\
         <rsc_memory_bound>{MEMORY_BOUND}</rsc_memory_bound>\n<rsc_disk_bound>1e9</rsc_disk_bound>\n"
    );
    for (fi, open_name) in &inputs {
        let _ = write!(
            xml,
            "<file_ref>\n<file_name>{}</file_name>\n<open_name>{open_name}</open_name>\n</file_ref>\n",
            fi.name
        );
    }
    xml.push_str("</workunit>\n");

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    // State 2 = RESULT_FILES_DOWNLOADED: ready to run.
    let _ = write!(
        xml,
        "<result>\n<name>{}</name>\n<wu_name>{}</wu_name>\n<received_time>{now}</received_time>\n\
         <report_deadline>{}</report_deadline>\n<state>2</state>\n<platform>{PLATFORM}</platform>\n\
         <version_num>{VERSION_NUM}</version_num>\n<plan_class>{PLAN_CLASS}</plan_class>\n",
        names.result,
        names.wu,
        now + 7 * 86400
    );
    for open_name in &workunit.outputs {
        let _ = write!(
            xml,
            "<file_ref>\n<file_name>{}</file_name>\n<open_name>{open_name}</open_name>\n</file_ref>\n",
            names.output_file(open_name)
        );
    }
    xml.push_str("</result>\n</client_state>\n");
    write(data_dir, "client_state.xml", &xml)?;

    write(
        data_dir,
        &format!("account_{PROJECT_DIR_NAME}.xml"),
        &format!(
            "<account>\n<master_url>{PROJECT_URL}</master_url>\n<authenticator>{}</authenticator>\n\
             <project_name>{PROJECT_NAME}</project_name>\n</account>\n",
            random_hex(16)?
        ),
    )?;
    write(
        data_dir,
        "cc_config.xml",
        &cc_config(allow_multiple_clients),
    )?;
    write(
        data_dir,
        "global_prefs_override.xml",
        &global_prefs(workunit.leave_apps_in_memory),
    )?;
    write(
        data_dir,
        "gui_rpc_auth.cfg",
        &format!("{gui_rpc_password}\n"),
    )?;
    // The client reads gui_rpc_auth.cfg; keep it private as the client would.
    let _ = fs::set_permissions(
        data_dir.join("gui_rpc_auth.cfg"),
        fs::Permissions::from_mode(0o600),
    );
    Ok(())
}

/// No GPU detection, no benchmarks, no network: the client only runs our task.
/// The log flags explain scheduling decisions (quit vs suspend, restarts) in
/// the client's output when a test fails. Docker stays allowed (no
/// `dont_use_docker`). `allow_multiple_clients` also turns off the 8.2
/// client's removal of other `boinc__` containers at startup.
fn cc_config(allow_multiple_clients: bool) -> String {
    format!(
        "<cc_config>\n\
<log_flags>\n<task/>\n<task_debug/>\n<cpu_sched/>\n<cpu_sched_debug/>\n<checkpoint_debug/>\n</log_flags>\n\
<options>\n\
<skip_cpu_benchmarks>1</skip_cpu_benchmarks>\n\
<unsigned_apps_ok>1</unsigned_apps_ok>\n\
<dont_contact_ref_site>1</dont_contact_ref_site>\n\
<no_info_fetch>1</no_info_fetch>\n\
<no_gpus>1</no_gpus>\n\
<dont_use_vbox>1</dont_use_vbox>\n\
<dont_use_wsl>1</dont_use_wsl>\n\
<allow_multiple_clients>{}</allow_multiple_clients>\n\
</options>\n</cc_config>\n",
        u8::from(allow_multiple_clients)
    )
}

/// Preferences that let the task run at once and stay running: no
/// activity-based suspension, no CPU throttling (the throttle applies even in
/// run mode "always").
fn global_prefs(leave_apps_in_memory: bool) -> String {
    format!(
        "<global_preferences>\n\
<run_on_batteries>1</run_on_batteries>\n\
<run_if_user_active>1</run_if_user_active>\n\
<run_gpu_if_user_active>1</run_gpu_if_user_active>\n\
<suspend_if_no_recent_input>0</suspend_if_no_recent_input>\n\
<suspend_cpu_usage>0</suspend_cpu_usage>\n\
<cpu_usage_limit>100</cpu_usage_limit>\n\
<max_ncpus_pct>100</max_ncpus_pct>\n\
<cpu_scheduling_period_minutes>60</cpu_scheduling_period_minutes>\n\
<leave_apps_in_memory>{}</leave_apps_in_memory>\n\
<work_buf_min_days>0</work_buf_min_days>\n\
<work_buf_additional_days>0</work_buf_additional_days>\n\
</global_preferences>\n",
        u8::from(leave_apps_in_memory)
    )
}

enum Source<'a> {
    Bytes(&'a [u8]),
    Copy(&'a Path),
}

/// Writes a project file and describes it (size and MD5 of what was written).
fn put_file(
    project_dir: &Path,
    name: &str,
    source: Source,
    executable: bool,
) -> Result<FileInfo, String> {
    let path = project_dir.join(name);
    match source {
        Source::Bytes(bytes) => {
            fs::write(&path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))?
        }
        Source::Copy(from) => {
            fs::copy(from, &path).map_err(|e| {
                format!("cannot copy {} to {}: {e}", from.display(), path.display())
            })?;
        }
    }
    let mode = if executable { 0o755 } else { 0o644 };
    fs::set_permissions(&path, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))?;
    let nbytes = fs::metadata(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    Ok(FileInfo {
        name: name.to_string(),
        nbytes,
        md5: md5_hex(&path)?,
        executable,
    })
}

fn write(dir: &Path, name: &str, text: &str) -> Result<(), String> {
    let path: PathBuf = dir.join(name);
    fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// MD5 as the client computes it (lib/md5_file.cpp), with coreutils' md5sum.
fn md5_hex(path: &Path) -> Result<String, String> {
    let mut cmd = Command::new("md5sum");
    cmd.arg(path);
    let out = run_with_timeout(cmd, Duration::from_secs(30))?;
    let sum = out
        .stdout
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    if out.success() && sum.len() == 32 {
        Ok(sum)
    } else {
        Err(format!(
            "md5sum {} failed: {}",
            path.display(),
            out.stderr.trim()
        ))
    }
}

pub fn random_hex(bytes: usize) -> Result<String, String> {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// An app-version file's physical name: the open name with the version
/// before its extension (`main.sh` -> `main_100.sh`, `busybox` -> `busybox_100`).
fn versioned_name(open_name: &str) -> String {
    let safe = file_name_safe(open_name);
    match safe.rsplit_once('.') {
        Some((stem, extension)) if !stem.is_empty() => {
            format!("{stem}_{VERSION_NUM}.{extension}")
        }
        _ => format!("{safe}_{VERSION_NUM}"),
    }
}
