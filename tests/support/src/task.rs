//! A running task: the wrapper started in its slot as the client starts an app,
//! the client's side of the protocol, and how each run ended.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::builder::TaskBuilder;
use crate::client::{AppStatus, ClientThread};
use crate::command::{last_lines, wait_or_kill, wait_until};
use crate::engine::TestEngine;
use crate::init_data::{InitData, INIT_DATA_FILE_NAME};
use crate::shm::{Channel, SharedMemory, MMAP_FILE_NAME};
use crate::slot::BoincDirs;

pub const WRAPPER_OUTPUT_FILE: &str = "wrapper_output.txt";
pub const STDERR_FILE: &str = "stderr.txt";
pub const FINISH_FILE: &str = "boinc_finish_called";
pub const TEMPORARY_EXIT_FILE: &str = "boinc_temporary_exit";
const CONTROL_SEND_TIMEOUT: Duration = Duration::from_secs(10);
const LOG_TAIL_LINES: usize = 40;

/// The process-control messages the client sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Suspend,
    Resume,
    Quit,
    Abort,
}

impl Control {
    pub fn message(self) -> &'static str {
        match self {
            Control::Suspend => "<suspend/>",
            Control::Resume => "<resume/>",
            Control::Quit => "<quit/>",
            Control::Abort => "<abort/>",
        }
    }
}

/// How one run of the wrapper ended, with everything the client would look at.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// None when the wrapper was killed by a signal.
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// `boinc_finish_called` exists in the slot.
    pub finished: bool,
    /// Its content: the status given to `boinc_finish`, then an optional message.
    pub finish_file: Option<String>,
    /// Content of `boinc_temporary_exit`: delay in seconds, then the reason.
    pub temporary_exit: Option<String>,
    pub stderr_txt: String,
    pub wrapper_output: String,
    /// From the start of this run to its exit being seen.
    pub elapsed: Duration,
    /// Said first in every failure message (see `noted`).
    note: Option<String>,
}

impl Outcome {
    /// The status the wrapper passed to `boinc_finish`.
    pub fn finish_code(&self) -> Option<i32> {
        self.finish_file
            .as_deref()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    pub fn temporary_exit_delay(&self) -> Option<u32> {
        self.temporary_exit
            .as_deref()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    pub fn temporary_exit_reason(&self) -> Option<&str> {
        self.temporary_exit
            .as_deref()?
            .lines()
            .nth(1)
            .map(str::trim)
    }

    /// Fails the test, with the outcome told once, unless the wrapper
    /// called `boinc_finish(code)`.
    #[track_caller]
    pub fn assert_finished(&self, code: i32) {
        assert_eq!(self.finish_code(), Some(code), "{}", self.describe());
    }

    /// Fails the test, with the outcome told once, if the wrapper called
    /// `boinc_finish` (after a quit, an abort or a signal the task is not over).
    #[track_caller]
    pub fn assert_not_finished(&self) {
        assert!(
            !self.finished,
            "the wrapper called boinc_finish\n{}",
            self.describe()
        );
    }

    /// Fails the test, with the outcome told once, unless the wrapper made
    /// a temporary exit (without `boinc_finish`) whose reason has `reason`.
    #[track_caller]
    pub fn assert_temporary_exit(&self, reason: &str) {
        let given = self.temporary_exit_reason();
        assert!(
            !self.finished && given.is_some_and(|given| given.contains(reason)),
            "expected a temporary exit because {reason:?}, not {given:?}\n{}",
            self.describe()
        );
    }

    /// Fails the test, with the outcome told once, unless stderr.txt has
    /// each of `lines`.
    #[track_caller]
    pub fn assert_said(&self, lines: &[&str]) {
        let missing: Vec<_> = lines
            .iter()
            .filter(|line| !self.stderr_txt.contains(*line))
            .collect();
        assert!(
            missing.is_empty(),
            "stderr.txt lacks {missing:?}\n{}",
            self.describe()
        );
    }

    /// Fails the test, with the outcome told once, if stderr.txt has any of `lines`.
    #[track_caller]
    pub fn assert_not_said(&self, lines: &[&str]) {
        let present: Vec<_> = lines
            .iter()
            .filter(|line| self.stderr_txt.contains(*line))
            .collect();
        assert!(
            present.is_empty(),
            "stderr.txt has {present:?}\n{}",
            self.describe()
        );
    }

    /// Fails the test, with the outcome told once, unless stderr.txt has
    /// `text` exactly `times` times.
    #[track_caller]
    pub fn assert_said_times(&self, text: &str, times: usize) {
        let found = self.stderr_txt.matches(text).count();
        assert_eq!(
            found,
            times,
            "stderr.txt has {text:?} {found} times, not {times}\n{}",
            self.describe()
        );
    }

    /// This outcome with `note` said first in every failure message: which
    /// input of a loop it comes from, or what a failure would mean.
    pub fn noted(&self, note: impl std::fmt::Display) -> Outcome {
        let note = match &self.note {
            Some(earlier) => format!("{earlier}\n{note}"),
            None => note.to_string(),
        };
        Outcome {
            note: Some(note),
            ..self.clone()
        }
    }

    /// A readable account for assertion messages.
    pub fn describe(&self) -> String {
        let note = self
            .note
            .as_ref()
            .map(|note| format!("{note}\n"))
            .unwrap_or_default();
        format!(
            "{note}exit_code={:?} signal={:?} finish_file={:?} temporary_exit={:?} elapsed={:?}\n{}",
            self.exit_code,
            self.signal,
            self.finish_file,
            self.temporary_exit,
            self.elapsed,
            logs_section(&self.stderr_txt, &self.wrapper_output, LOG_TAIL_LINES)
        )
    }
}

/// How the wrapper is started (kept for restarts).
pub(super) struct Launch {
    pub(super) program: PathBuf,
    pub(super) runner: Option<PathBuf>,
    pub(super) args: Vec<OsString>,
    pub(super) env: Vec<(OsString, Option<OsString>)>,
    pub(super) client_priority: bool,
}

/// A task in its slot. Dropping it kills the wrapper, removes the task's
/// container from the engine and deletes the temp dirs.
pub struct Task {
    client: ClientThread,
    child: Option<Child>,
    /// Status and run time of the last run, once it has been reaped.
    last_exit: Option<(ExitStatus, Duration)>,
    run_started: Instant,
    runs: u32,
    shm: Arc<SharedMemory>,
    init_data: InitData,
    raw_init_data: Option<String>,
    launch: Launch,
    engine: Option<TestEngine>,
    // Last: removed after the wrapper is gone.
    dirs: BoincDirs,
}

impl Task {
    pub fn builder(test_name: &str, wrapper_bin: impl AsRef<Path>) -> TaskBuilder {
        TaskBuilder::new(test_name, wrapper_bin)
    }

    /// A prepared, not yet started task; the client thread runs from now on.
    pub(super) fn new(
        dirs: BoincDirs,
        init_data: InitData,
        raw_init_data: Option<String>,
        shm: SharedMemory,
        heartbeats: bool,
        launch: Launch,
        engine: Option<TestEngine>,
    ) -> Task {
        let shm = Arc::new(shm);
        Task {
            client: ClientThread::start(Arc::clone(&shm), heartbeats),
            child: None,
            last_exit: None,
            run_started: Instant::now(),
            runs: 0,
            shm,
            init_data,
            raw_init_data,
            launch,
            engine,
            dirs,
        }
    }

    /// Starts the wrapper as the client starts an app: (re)writes init_data.xml,
    /// clears the channels and the temporary-exit file, runs it in the slot dir.
    pub fn start(&mut self) -> Result<(), String> {
        if self.is_running() {
            return Err("the wrapper is still running".to_string());
        }
        self.write_init_data()?;
        self.shm
            .clear_all()
            .map_err(|e| format!("cannot clear {MMAP_FILE_NAME}: {e}"))?;
        let _ = fs::remove_file(self.dirs.slot_file(TEMPORARY_EXIT_FILE));
        self.spawn()
    }

    /// Starts the wrapper again in the same slot after it exited (quit/restart
    /// tests). Like the client, passes the last reported checkpoint CPU time as `wu_cpu_time`.
    pub fn restart(&mut self) -> Result<(), String> {
        if let Some(status) = self.client.last_status() {
            self.init_data.wu_cpu_time = status.checkpoint_cpu_time;
        }
        self.start()
    }

    fn write_init_data(&self) -> Result<(), String> {
        let text = self.init_data_xml();
        fs::write(self.dirs.slot_file(INIT_DATA_FILE_NAME), text)
            .map_err(|e| format!("cannot write init_data.xml: {e}"))
    }

    /// The init_data.xml the next start writes.
    pub fn init_data_xml(&self) -> String {
        self.raw_init_data
            .clone()
            .unwrap_or_else(|| self.init_data.to_xml())
    }

    fn spawn(&mut self) -> Result<(), String> {
        let output = self.open_output_file()?;
        let output_too = output
            .try_clone()
            .map_err(|e| format!("cannot dup {WRAPPER_OUTPUT_FILE}: {e}"))?;
        let first = self.launch.runner.as_ref().unwrap_or(&self.launch.program);
        let mut cmd = match self.engine.as_ref().and_then(TestEngine::user) {
            Some(user) => user.command(first),
            None => Command::new(first),
        };
        if self.launch.runner.is_some() {
            cmd.arg(&self.launch.program);
        }
        cmd.args(&self.launch.args)
            .current_dir(self.dirs.slot_dir())
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(output_too)
            .env(
                "LD_LIBRARY_PATH",
                client_library_path(self.dirs.project_dir_name()),
            );
        for (name, value) in self.engine.iter().flat_map(|e| e.env()) {
            cmd.env(name, value);
        }
        for (name, value) in &self.launch.env {
            match value {
                Some(value) => cmd.env(name, value),
                None => cmd.env_remove(name),
            };
        }
        if self.launch.client_priority {
            // SAFETY: the hook only makes async-signal-safe syscalls.
            unsafe { cmd.pre_exec(lower_priority_like_client) };
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.launch.program.display()))?;
        self.client.set_app_pid(Some(child.id()));
        self.child = Some(child);
        self.last_exit = None;
        self.run_started = Instant::now();
        self.runs += 1;
        Ok(())
    }

    /// `wrapper_output.txt`, opened for appending, with a line marking this run.
    fn open_output_file(&self) -> Result<File, String> {
        let path = self.dirs.slot_file(WRAPPER_OUTPUT_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let _ = writeln!(
            file,
            "=== emulator: run {} of {}",
            self.runs + 1,
            self.launch.program.display()
        );
        Ok(file)
    }

    /// Reaps the wrapper if it has exited.
    fn poll_exit(&mut self) -> Option<ExitStatus> {
        if let Some((status, _)) = self.last_exit {
            return Some(status);
        }
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.record_exit(status);
        Some(status)
    }

    fn record_exit(&mut self, status: ExitStatus) {
        self.child = None;
        self.client.set_app_pid(None);
        self.last_exit = Some((status, self.run_started.elapsed()));
    }

    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.poll_exit().is_none()
    }

    /// pid of the running wrapper.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits for the wrapper to exit. On timeout kills it and returns the logs' tails.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Outcome, String> {
        if self.child.is_none() && self.last_exit.is_none() {
            return Err("the wrapper was never started".to_string());
        }
        let deadline = Instant::now() + timeout;
        while self.poll_exit().is_none() {
            if Instant::now() >= deadline {
                let pid = self.pid();
                self.kill();
                return Err(format!(
                    "the wrapper (pid {pid:?}) did not exit within {timeout:?}; killed it.\n{}",
                    self.logs_tail(LOG_TAIL_LINES)
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
        Ok(self.outcome())
    }

    /// SIGKILLs the wrapper if it runs (as the client does after an unanswered
    /// quit/abort) and returns how the run ended.
    pub fn kill(&mut self) -> Option<Outcome> {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            if let Some(status) = wait_or_kill(child, Duration::from_secs(10)) {
                self.record_exit(status);
            }
        }
        self.last_exit.is_some().then(|| self.outcome())
    }

    /// Sends a signal (e.g. `libc::SIGTERM`) to the running wrapper.
    pub fn signal(&self, signal: i32) -> Result<(), String> {
        let pid = self.pid().ok_or("the wrapper is not running")?;
        // SAFETY: kill has no memory-safety preconditions.
        let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
        if rc == 0 {
            Ok(())
        } else {
            Err(format!(
                "kill({pid}, {signal}): {}",
                std::io::Error::last_os_error()
            ))
        }
    }

    fn outcome(&self) -> Outcome {
        let (status, elapsed) = self
            .last_exit
            .unwrap_or((ExitStatus::from_raw(0), Duration::ZERO));
        let finish_file = self.read_slot_file(FINISH_FILE);
        Outcome {
            exit_code: status.code(),
            signal: status.signal(),
            finished: finish_file.is_some(),
            finish_file,
            temporary_exit: self.read_slot_file(TEMPORARY_EXIT_FILE),
            stderr_txt: self.stderr_txt(),
            wrapper_output: self.wrapper_output(),
            elapsed,
            note: None,
        }
    }

    /// Writes a control message; returns when it was written. Panics (failing the
    /// test, with the logs) if the app leaves the previous one unread for 10 s.
    pub fn send_control(&self, control: Control) -> Instant {
        self.try_send_control(control, CONTROL_SEND_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_send_control(&self, control: Control, timeout: Duration) -> Result<Instant, String> {
        self.send_raw(Channel::ProcessControlRequest, control.message(), timeout)
    }

    /// Any message on any client -> app channel.
    pub fn send_raw(
        &self,
        channel: Channel,
        text: &str,
        timeout: Duration,
    ) -> Result<Instant, String> {
        match self.shm.send(channel, text, timeout) {
            Ok(Some(at)) => Ok(at),
            Ok(None) => Err(format!(
                "could not send {text} on {channel:?}: the app left the previous message unread for {timeout:?}\n{}",
                self.logs_tail(LOG_TAIL_LINES)
            )),
            Err(e) => Err(format!("cannot write {MMAP_FILE_NAME}: {e}")),
        }
    }

    /// See `TaskBuilder::heartbeats`.
    pub fn set_heartbeats(&self, on: bool) {
        self.client.set_heartbeats(on);
    }

    /// Marks the network suspended in the heartbeats, in both spellings: the
    /// client's `<network_suspended/>` (which API libraries from 8.2 on read)
    /// and `<suspend_network/>` (which 7.20 and 8.0 read).
    pub fn set_network_suspended(&self, on: bool) {
        self.client.set_network_suspended(on);
    }

    /// For a sporadic app: the client's state in the heartbeats (BOINC 8's
    /// `<sporadic_ca>`: 1 don't compute, 2 could compute, 3 computing).
    pub fn set_sporadic_ca(&self, state: i32) {
        self.client.set_sporadic_ca(state);
    }

    pub fn heartbeats_sent(&self) -> u64 {
        self.client.heartbeats_sent()
    }

    pub fn last_status(&self) -> Option<AppStatus> {
        self.client.last_status()
    }

    /// Every status message received (all runs), with when the emulator read it.
    pub fn status_history(&self) -> Vec<(Instant, AppStatus)> {
        self.client.status_history()
    }

    pub fn web_graphics_url(&self) -> Option<String> {
        self.client.web_graphics_url()
    }

    /// The URL last received, which is then forgotten (to see a new one arrive).
    pub fn take_web_graphics_url(&self) -> Option<String> {
        self.client.take_web_graphics_url()
    }

    pub fn trickle_up_messages(&self) -> Vec<String> {
        self.client.trickle_up_messages()
    }

    /// Waits for a status message satisfying `accept` (checks the latest one every 50 ms).
    pub fn wait_for_status(
        &self,
        timeout: Duration,
        accept: impl Fn(&AppStatus) -> bool,
    ) -> Result<AppStatus, String> {
        let found = wait_until(timeout, || self.last_status().filter(|s| accept(s)));
        found.ok_or_else(|| {
            format!(
                "no matching status within {timeout:?} (last: {:?})\n{}",
                self.last_status(),
                self.logs_tail(LOG_TAIL_LINES)
            )
        })
    }

    /// The task's container name, as the C++ wrapper forms it:
    /// `boinc__<project_dir_name>__<result_name>`, lower-cased.
    pub fn container_name(&self) -> String {
        container_name(self.dirs.project_dir_name(), &self.init_data.result_name)
    }

    pub fn slot_dir(&self) -> &Path {
        self.dirs.slot_dir()
    }

    pub fn project_dir(&self) -> &Path {
        self.dirs.project_dir()
    }

    pub fn data_dir(&self) -> &Path {
        self.dirs.data_dir()
    }

    pub fn dirs(&self) -> &BoincDirs {
        &self.dirs
    }

    pub fn project_dir_name(&self) -> &str {
        self.dirs.project_dir_name()
    }

    pub fn wu_name(&self) -> &str {
        &self.init_data.wu_name
    }

    pub fn result_name(&self) -> &str {
        &self.init_data.result_name
    }

    pub fn init_data(&self) -> &InitData {
        &self.init_data
    }

    /// Changes apply at the next `start`/`restart`.
    pub fn init_data_mut(&mut self) -> &mut InitData {
        &mut self.init_data
    }

    pub fn engine(&self) -> Option<&TestEngine> {
        self.engine.as_ref()
    }

    pub fn shared_memory(&self) -> &SharedMemory {
        &self.shm
    }

    /// How many times the wrapper has been started.
    pub fn runs(&self) -> u32 {
        self.runs
    }

    pub fn read_slot_file(&self, name: &str) -> Option<String> {
        read_lossy(&self.dirs.slot_file(name))
    }

    /// The value a `COUNTER_JOB` last wrote (0 before its first).
    pub fn counter(&self) -> u64 {
        self.read_slot_file("count.txt")
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Waits until the counter passes `above`; returns its value. Panics with
    /// the logs when it does not within `timeout`.
    pub fn wait_for_counter_above(&self, above: u64, timeout: Duration) -> u64 {
        wait_until(timeout, || Some(self.counter()).filter(|c| *c > above))
            .unwrap_or_else(|| panic!("count stayed at {}\n{}", self.counter(), self.logs_tail(30)))
    }

    /// Creates the slot file `go` (which ends a `COUNTER_JOB`), then waits for the wrapper's exit.
    pub fn release_and_wait(&mut self, timeout: Duration) -> Outcome {
        fs::write(self.dirs.slot_file("go"), "").expect("cannot write the slot file go");
        self.wait_exit(timeout).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn read_project_file(&self, name: &str) -> Option<Vec<u8>> {
        fs::read(self.dirs.project_dir().join(name)).ok()
    }

    pub fn stderr_txt(&self) -> String {
        self.read_slot_file(STDERR_FILE).unwrap_or_default()
    }

    pub fn wrapper_output(&self) -> String {
        self.read_slot_file(WRAPPER_OUTPUT_FILE).unwrap_or_default()
    }

    /// The last `n` lines of stderr.txt and of wrapper_output.txt, labelled.
    pub fn logs_tail(&self, n: usize) -> String {
        logs_section(&self.stderr_txt(), &self.wrapper_output(), n)
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.kill();
        if let Some(engine) = &self.engine {
            let _ = engine.remove_container(&self.container_name());
        }
    }
}

/// `boinc__<project>__<result>`, lower-cased, characters outside `[a-z0-9_.-]` replaced by `_`.
pub fn container_name(project_dir_name: &str, result_name: &str) -> String {
    let clean = |s: &str| -> String {
        s.to_lowercase()
            .chars()
            .map(|c| {
                if c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("boinc__{}__{}", clean(project_dir_name), clean(result_name))
}

/// The client prepends the project dir, the slot dir and the data dir.
fn client_library_path(project_dir_name: &str) -> OsString {
    let mut path = OsString::from(format!("../../projects/{project_dir_name}:.:../.."));
    if let Some(existing) = std::env::var_os("LD_LIBRARY_PATH").filter(|v| !v.is_empty()) {
        path.push(":");
        path.push(existing);
    }
    path
}

/// Runs in the child between fork and exec: nice 19 and SCHED_IDLE, errors ignored.
fn lower_priority_like_client() -> std::io::Result<()> {
    // SAFETY: plain syscalls on the calling process.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
        let param = libc::sched_param { sched_priority: 0 };
        libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
    }
    Ok(())
}

fn read_lossy(path: &Path) -> Option<String> {
    fs::read(path)
        .ok()
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

fn logs_section(stderr_txt: &str, wrapper_output: &str, n: usize) -> String {
    format!(
        "--- {STDERR_FILE} (last {n} lines) ---\n{}\n--- {WRAPPER_OUTPUT_FILE} (last {n} lines) ---\n{}",
        last_lines(stderr_txt, n),
        last_lines(wrapper_output, n)
    )
}
