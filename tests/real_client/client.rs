//! The real BOINC client (Debian's 7.20 `boinc`, or 8.2.15) running one
//! task of the wrapper in a data dir of its own, driven with `boinccmd`.
//!
//! What "done" means here: the result's output files have no upload URL and
//! are `<sticky/>`. When the app finishes with status 0 the client
//! (CLIENT_STATE::app_finished) sets the result to FILES_UPLOADING (4) and, in
//! the same poll, since no output file is uploadable, to FILES_UPLOADED (5),
//! "ready to report"; the output stays in the project dir because it is
//! sticky (a non-uploadable, non-sticky output is deleted at once). With an
//! upload URL instead, the result stays in state 4 with the upload pending
//! for as long as the network is off (checked with 7.20.5), so state 5 with
//! exit_status 0 is the only "done" a server-less client reaches. Reporting
//! needs a scheduler, so 3 (compute error), 5 and 6 (aborted) are final here.

use std::fs::{self, OpenOptions};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use dw_test_support::builder::wrapper_from_env;
use dw_test_support::command::{
    last_lines, run_with_timeout, wait_or_kill, wait_until, CommandOutput,
};
use dw_test_support::tempdir::TempDir;
use dw_test_support::{wrapper_path, TestEngine};

use super::data_dir::{random_hex, write_data_dir, Names, Workunit, PROJECT_DIR_NAME, PROJECT_URL};
use super::engine::ClientEngine;
use super::engine_lock::EngineLock;
use super::state::{find_result, ResultRecord};
use super::variant::{ClientVersion, Variant};

/// How many clients (tasks) run at once in this test process (default 2), so
/// that a larger `--test-threads` does not crowd the machine.
pub const PARALLEL_VAR: &str = "DW_REAL_CLIENT_PARALLEL";

const BOINCCMD_TIMEOUT: Duration = Duration::from_secs(15);
const RPC_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The client asks apps to quit and waits for them before it exits.
const QUIT_TIMEOUT: Duration = Duration::from_secs(40);
/// How long a test waits for other tests to leave its engine's containers
/// (see `engine_lock`): about the longest a whole run keeps one engine busy.
const ENGINE_LOCK_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// An app notices that its client died (client_pid gone) within seconds,
/// or after the 30 s heartbeat timeout at the latest.
const ORPHAN_EXIT_TIMEOUT: Duration = Duration::from_secs(45);
/// How long an 8.2 client's start waits for other programs' task containers
/// to go (see `wait_for_foreign_containers`).
const FOREIGN_CONTAINERS_TIMEOUT: Duration = Duration::from_secs(180);
const CLIENT_STDOUT: &str = "client_stdout.txt";
const CLIENT_STDERR: &str = "client_stderr.txt";

pub struct RealClient {
    engine: TestEngine,
    client_version: ClientVersion,
    client_bin: PathBuf,
    boinccmd_bin: PathBuf,
    names: Names,
    data_dir: PathBuf,
    password: String,
    port: u16,
    child: Option<Child>,
    starts: u32,
    created: Instant,
    _permit: Permit,
    _engine_lock: EngineLock,
    // Last: removed after the client stopped and the container is gone.
    _root: TempDir,
}

impl RealClient {
    /// Writes a fresh data dir for `workunit` and starts the variant's client on it.
    pub fn start(
        label: &str,
        variant: &Variant,
        workunit: &Workunit,
    ) -> Result<RealClient, String> {
        let (client_bin, boinccmd_bin) = variant.client.programs()?;
        let engine = &variant.engine;
        if variant.client == ClientVersion::V8_2 {
            // Without it the client reports no engine and never runs a Docker app.
            engine.ensure_hello_world()?;
        }
        // Other tests' containers must be safe from an 8.2 client's startup cleanup.
        let engine_lock = EngineLock::acquire(
            &engine.namespace(),
            variant.client == ClientVersion::V8_2,
            ENGINE_LOCK_TIMEOUT,
        )?;
        let permit = Permit::acquire();
        let created = Instant::now();
        let root = TempDir::new(&format!("{label}-{}", variant.name_part()))
            .map_err(|e| format!("cannot create a temp dir: {e}"))?;
        let data_dir = root.path().join("boinc_data");
        fs::create_dir(&data_dir)
            .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
        let names = Names::new(&format!("{label}_{}", variant.name_part()));
        let password = random_hex(16)?;
        write_data_dir(
            &data_dir,
            workunit,
            &names,
            &wrapper_program(),
            &password,
            variant.client.allow_multiple_clients(),
        )?;
        if let Some(user) = engine.user() {
            user.own_tree(&data_dir)
                .map_err(|e| format!("cannot give the data dir to {}: {e}", user.name))?;
        }
        let mut client = RealClient {
            engine: engine.clone(),
            client_version: variant.client,
            client_bin,
            boinccmd_bin,
            names,
            data_dir,
            password,
            port: 0,
            child: None,
            starts: 0,
            created,
            _permit: permit,
            _engine_lock: engine_lock,
            _root: root,
        };
        client.launch()?;
        Ok(client)
    }

    /// Starts the client again on the same data dir (after `quit`).
    pub fn restart(&mut self) -> Result<(), String> {
        if self.is_running() {
            return Err("the client is still running".into());
        }
        self.launch()
    }

    /// `boinc --dir <data dir> --gui_rpc_port <free loopback port>` in the
    /// foreground (no --daemon), output appended to files in the data dir; the
    /// GUI RPC socket binds 127.0.0.1 only (no --allow_remote_gui_rpc, no
    /// remote_hosts.cfg). Returns once `boinccmd` gets answers (the 8.2
    /// client has detected the engine and cleaned up containers by then:
    /// it does both before it opens the GUI RPC socket).
    fn launch(&mut self) -> Result<(), String> {
        let client_path = match self.client_version {
            ClientVersion::V7_20 => None,
            ClientVersion::V8_2 => {
                self.wait_for_foreign_containers();
                self.engine.client_path()?
            }
        };
        let mut last_error = String::new();
        for _attempt in 0..3 {
            self.port = free_loopback_port()?;
            self.starts += 1;
            let log = |name: &str| {
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.data_dir.join(name))
                    .map_err(|e| format!("cannot open {name}: {e}"))
            };
            let mut cmd = match self.engine.user() {
                Some(user) => user.command(&self.client_bin),
                None => Command::new(&self.client_bin),
            };
            cmd.arg("--dir")
                .arg(&self.data_dir)
                .arg("--gui_rpc_port")
                .arg(self.port.to_string())
                .current_dir(&self.data_dir)
                .stdin(Stdio::null())
                .stdout(log(CLIENT_STDOUT)?)
                .stderr(log(CLIENT_STDERR)?);
            if self.client_version.allow_multiple_clients() {
                cmd.arg("--allow_multiple_clients");
            }
            match self.client_version {
                // A 7.20 client reports no container engine: the wrapper takes it from here.
                ClientVersion::V7_20 => {
                    cmd.env("DOCKER_WRAPPER_ENGINE", self.engine.wrapper_engine_value());
                }
                // The 8.2 client reports the engine it found (docker_type): the
                // wrapper must take it from there, as on a volunteer's host.
                ClientVersion::V8_2 => {
                    cmd.env_remove("DOCKER_WRAPPER_ENGINE");
                    if let Some(path) = &client_path {
                        cmd.env("PATH", path);
                    }
                }
            }
            for (k, v) in self.engine.env() {
                cmd.env(k, v);
            }
            let child = cmd
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", self.client_bin.display()))?;
            self.child = Some(child);
            match self.wait_rpc_ready() {
                Ok(()) => return Ok(()),
                Err(e) => {
                    last_error = e;
                    self.kill();
                    // Another process took the port between our probe and the client's bind: retry.
                    if !self
                        .client_log()
                        .contains(&format!("bind to port {} failed", self.port))
                    {
                        break;
                    }
                }
            }
        }
        Err(format!("{last_error}\n{}", self.diagnostics()))
    }

    /// The 8.2 client removes at startup every `boinc__` container that is
    /// none of its tasks'. The engine lock keeps this harness's other tests
    /// out of its way; other test programs on the same engine (run at the
    /// same time on a shared machine) take no such lock, so their task
    /// containers are waited for, for a bounded time, after which they are
    /// taken for leftovers (and left to the client, once per process).
    fn wait_for_foreign_containers(&self) {
        static GIVEN_UP: Mutex<Vec<String>> = Mutex::new(Vec::new());
        let start = Instant::now();
        let mut said = false;
        loop {
            let foreign: Vec<String> = match self.engine.foreign_task_containers() {
                Ok(names) => {
                    let given_up = GIVEN_UP.lock().unwrap_or_else(|e| e.into_inner());
                    names
                        .into_iter()
                        .filter(|n| !given_up.contains(n))
                        .collect()
                }
                Err(e) => {
                    eprintln!(
                        "warning: cannot list the {} containers: {e}",
                        self.engine.label()
                    );
                    return;
                }
            };
            if foreign.is_empty() {
                return;
            }
            if start.elapsed() >= FOREIGN_CONTAINERS_TIMEOUT {
                eprintln!(
                    "warning: after {FOREIGN_CONTAINERS_TIMEOUT:?} these {} containers are still there; \
                     the BOINC 8.2 client will remove them: {foreign:?}",
                    self.engine.label()
                );
                GIVEN_UP
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(foreign);
                return;
            }
            if !said {
                eprintln!(
                    "{}: waiting for other programs' task containers to go before starting a BOINC 8.2 client \
                     (it would remove them): {foreign:?}",
                    self.names.result
                );
                said = true;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    fn wait_rpc_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + RPC_READY_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!("the client exited at startup ({status})"));
            }
            if let Ok(out) = self.boinccmd(&["--get_cc_status"]) {
                if out.success() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the client's GUI RPC on 127.0.0.1:{} did not answer within {RPC_READY_TIMEOUT:?}",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `boinccmd --host 127.0.0.1:PORT --passwd PW <args>` with a timeout.
    pub fn boinccmd(&self, args: &[&str]) -> Result<CommandOutput, String> {
        let mut cmd = Command::new(&self.boinccmd_bin);
        cmd.arg("--host")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--passwd")
            .arg(&self.password)
            .args(args);
        run_with_timeout(cmd, BOINCCMD_TIMEOUT)
    }

    /// `boinccmd --task URL RESULT op` (suspend, resume, abort, ...); Err unless it succeeded.
    pub fn task_op(&self, op: &str) -> Result<(), String> {
        let out = self.boinccmd(&["--task", PROJECT_URL, &self.names.result, op])?;
        if out.success() {
            Ok(())
        } else {
            Err(format!(
                "boinccmd --task {op} failed: {} {}",
                out.stdout.trim(),
                out.stderr.trim()
            ))
        }
    }

    /// Stops the client with `boinccmd --quit` and waits for it to exit (it
    /// asks the app to quit first). Returns how long that took; after
    /// `QUIT_TIMEOUT` the client is killed and that is an error.
    pub fn quit(&mut self) -> Result<Duration, String> {
        let Some(mut child) = self.child.take() else {
            return Ok(Duration::ZERO);
        };
        let start = Instant::now();
        let sent = self.boinccmd(&["--quit"]);
        match wait_or_kill(&mut child, QUIT_TIMEOUT) {
            Some(_) => Ok(start.elapsed()),
            None => Err(format!(
                "the client did not exit within {QUIT_TIMEOUT:?} of --quit ({sent:?}); killed"
            )),
        }
    }

    /// SIGKILL for the client and for the apps it started (processes whose
    /// working directory is in our data dir: the wrapper in its slot).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            kill_processes_in(&self.data_dir);
        }
    }

    /// SIGKILL for the client alone, as in a crash: its apps run on until
    /// they notice (see `wait_apps_gone`).
    pub fn kill_client_only(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits (bounded) until no app the client started runs any more (no
    /// process runs a program from the data dir: the wrapper runs from the
    /// project dir; the engine's container monitor, which lives on with the
    /// container, runs in the slot but not from it); returns how long that took.
    pub fn wait_apps_gone(&self) -> Result<Duration, String> {
        let start = Instant::now();
        wait_until(ORPHAN_EXIT_TIMEOUT, || {
            apps_from(&self.data_dir).is_empty().then_some(())
        })
        .map(|()| start.elapsed())
        .ok_or_else(|| {
            format!(
                "processes {:?} still run {ORPHAN_EXIT_TIMEOUT:?} after the client died",
                apps_from(&self.data_dir)
            )
        })
    }

    /// Time since this client's data dir was made (the scenario's wall time).
    pub fn age(&self) -> Duration {
        self.created.elapsed()
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The result as client_state.xml records it now.
    pub fn result(&self) -> Option<ResultRecord> {
        let xml = fs::read_to_string(self.data_dir.join("client_state.xml")).ok()?;
        find_result(&xml, &self.names.result)
    }

    /// Waits (bounded) until the result reaches a final state.
    pub fn wait_final(&self, timeout: Duration) -> Result<ResultRecord, String> {
        self.wait_result(timeout, ResultRecord::is_final)
    }

    /// Waits (bounded) until `accept` holds for the recorded result.
    pub fn wait_result(
        &self,
        timeout: Duration,
        accept: impl Fn(&ResultRecord) -> bool,
    ) -> Result<ResultRecord, String> {
        wait_until(timeout, || self.result().filter(|r| accept(r))).ok_or_else(|| {
            format!(
                "the result did not reach the expected state within {timeout:?}; now: {:?}\n{}",
                self.result(),
                self.diagnostics()
            )
        })
    }

    /// `active_task_state` of our task in `boinccmd --get_tasks` ("EXECUTING",
    /// "SUSPENDED", "UNINITIALIZED" when no app process exists, ...).
    pub fn active_task_state(&self) -> Option<String> {
        let out = self
            .boinccmd(&["--get_tasks"])
            .ok()
            .filter(CommandOutput::success)?;
        let wanted = format!("name: {}", self.names.result);
        let mut in_ours = false;
        for line in out.stdout.lines().map(str::trim) {
            if line.starts_with("name: ") {
                in_ours = line == wanted;
            } else if in_ours {
                if let Some(state) = line.strip_prefix("active_task_state: ") {
                    return Some(state.trim().to_string());
                }
            }
        }
        None
    }

    /// The slot the client runs our task in (the one whose init_data.xml names the result).
    pub fn slot_dir(&self) -> Option<PathBuf> {
        let wanted = format!("<result_name>{}</result_name>", self.names.result);
        fs::read_dir(self.data_dir.join("slots"))
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|slot| {
                fs::read_to_string(slot.join("init_data.xml"))
                    .map(|t| t.contains(&wanted))
                    .unwrap_or(false)
            })
    }

    pub fn read_slot_file(&self, name: &str) -> Option<String> {
        fs::read_to_string(self.slot_dir()?.join(name)).ok()
    }

    /// Creates a file in the slot (the job sees it in /app).
    pub fn write_slot_file(&self, name: &str, contents: &str) -> Result<(), String> {
        let slot = self.slot_dir().ok_or("the task has no slot")?;
        fs::write(slot.join(name), contents)
            .map_err(|e| format!("cannot write {name} in {}: {e}", slot.display()))
    }

    pub fn project_dir(&self) -> PathBuf {
        self.data_dir.join("projects").join(PROJECT_DIR_NAME)
    }

    /// The project-dir file behind the output file the job writes as `open_name`.
    pub fn output_path(&self, open_name: &str) -> PathBuf {
        self.project_dir().join(self.names.output_file(open_name))
    }

    /// The wrapper's container: `boinc__<project dir>__<result>`, lower-cased,
    /// as the wrapper (and the C++ wrapper) names it.
    pub fn container_name(&self) -> String {
        format!("boinc__{PROJECT_DIR_NAME}__{}", self.names.result).to_lowercase()
    }

    /// True once the client logged a checkpoint of our task (the app reported
    /// a new checkpoint CPU time; needs the `checkpoint_debug` log flag).
    pub fn has_checkpointed(&self) -> bool {
        self.client_log().contains(&format!(
            "[checkpoint] result {} checkpointed",
            self.names.result
        ))
    }

    /// See `TestEngine::is_suspended`.
    pub fn is_suspended(&self) -> bool {
        self.engine.is_suspended(&self.container_name())
    }

    pub fn container_state(&self) -> Option<String> {
        self.engine.container_state(&self.container_name())
    }

    pub fn container_id(&self) -> Option<String> {
        self.engine.container_id(&self.container_name())
    }

    /// `host_info/docker_type` in the slot's init_data.xml (None: not there).
    pub fn slot_docker_type(&self) -> Option<u32> {
        let xml = self.read_slot_file("init_data.xml")?;
        let host_info = &xml[xml.find("<host_info>")?..];
        let start = host_info.find("<docker_type>")? + "<docker_type>".len();
        let len = host_info[start..].find("</docker_type>")?;
        host_info[start..start + len].trim().parse().ok()
    }

    /// The client's log line for a container its startup cleanup removed.
    pub fn removed_by_cleanup(&self, container: &str) -> bool {
        self.client_log().lines().any(|l| {
            l.trim_end()
                .ends_with(&format!("Removed unused Docker container: {container}"))
        })
    }

    /// Everything the client printed so far.
    pub fn client_log(&self) -> String {
        let mut text = fs::read_to_string(self.data_dir.join(CLIENT_STDOUT)).unwrap_or_default();
        text.push_str(&fs::read_to_string(self.data_dir.join(CLIENT_STDERR)).unwrap_or_default());
        text
    }

    /// For failure messages: the end of the client's log (without the
    /// scheduler's chatter, which stays in the file), of the slot's stderr.txt
    /// and the recorded result.
    pub fn diagnostics(&self) -> String {
        let log: String = self
            .client_log()
            .lines()
            .filter(|l| !l.contains("[cpu_sched_debug]") && !l.contains("[checkpoint]"))
            .map(|l| format!("{l}\n"))
            .collect();
        let slot_stderr = self
            .read_slot_file("stderr.txt")
            .unwrap_or_else(|| "(no slot stderr.txt)".into());
        format!(
            "---- client log (last 40 lines) ----\n{}\n---- slot stderr.txt (last 30 lines) ----\n{}\n---- result ----\n{:?}\n---- data dir: {} (set DW_KEEP_TEST_DIRS=1 to keep it)",
            last_lines(&log, 40),
            last_lines(&slot_stderr, 30),
            self.result(),
            self.data_dir.display()
        )
    }
}

impl Drop for RealClient {
    /// Stops the client (quit, then SIGKILL after a bound) and removes the
    /// task's container; nothing else is touched.
    fn drop(&mut self) {
        if self.is_running() {
            if let Err(e) = self.quit() {
                eprintln!("warning: {e}");
            }
        }
        self.kill();
        if let Err(e) = self.engine.remove_container(&self.container_name()) {
            eprintln!(
                "warning: cannot remove container {}: {e}",
                self.container_name()
            );
        }
    }
}

/// The wrapper under test: `DW_WRAPPER_BIN`, else the binary cargo built for this test.
fn wrapper_program() -> PathBuf {
    wrapper_from_env().unwrap_or_else(|| PathBuf::from(wrapper_path!()))
}

/// SIGKILL to every process whose working directory lies in `dir`. Only apps
/// our own client started there can have one: `dir` is a fresh temp dir.
fn kill_processes_in(dir: &Path) {
    for pid in processes_in(dir) {
        // SAFETY: kill(2) with a pid read from /proc and a valid signal number.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// The processes whose working directory lies in `dir`.
fn processes_in(dir: &Path) -> Vec<i32> {
    processes_with(|proc_dir| {
        fs::read_link(proc_dir.join("cwd")).is_ok_and(|cwd| cwd.starts_with(dir))
    })
}

/// The processes running a program from `dir`, with its path.
fn apps_from(dir: &Path) -> Vec<(i32, PathBuf)> {
    processes_with(|proc_dir| {
        fs::read_link(proc_dir.join("exe")).is_ok_and(|exe| exe.starts_with(dir))
    })
    .into_iter()
    .map(|pid| {
        (
            pid,
            fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default(),
        )
    })
    .collect()
}

fn processes_with(wanted: impl Fn(&Path) -> bool) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<i32>().ok()?;
            wanted(&entry.path()).then_some(pid)
        })
        .collect()
}

/// A place among the `DW_REAL_CLIENT_PARALLEL` clients that may run at once.
struct Permit;

static RUNNING: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

impl Permit {
    fn acquire() -> Permit {
        let max = std::env::var(PARALLEL_VAR)
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(2);
        let (count, freed) = &RUNNING;
        let mut running = count.lock().unwrap_or_else(|e| e.into_inner());
        while *running >= max {
            running = freed.wait(running).unwrap_or_else(|e| e.into_inner());
        }
        *running += 1;
        Permit
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let (count, freed) = &RUNNING;
        *count.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        freed.notify_one();
    }
}

/// A port nothing listens on now (the client binds it a moment later).
fn free_loopback_port() -> Result<u16, String> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| format!("cannot bind a loopback port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}
