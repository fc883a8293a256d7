//! The Windows build, run under Wine on Linux: the self-contained
//! `docker_wrapper_<version>_windows_x86_64.exe` that `cargo xtask dist`
//! puts into `dist/` (`DW_DIST_DIR` names another directory).
//!
//! * `--version` and `--help` run and print what they should.
//! * A standalone job (no init_data.xml, as a project admin runs it) goes all
//!   the way through the WSL transport: the .exe starts
//!   `wsl -d boinc-buda-runner -u root --exec /bin/sh` and writes every engine
//!   command to that shell (one shell for the whole task), which runs Podman
//!   on this host; the image is built (or found cached), the container runs
//!   with the slot mounted by its WSL path (`Z:\tmp\...` as
//!   `/mnt/z/tmp/...`) and without an idle parent cgroup, its exit is seen
//!   by `inspect`, the output file appears, the exit code is 0 and the
//!   container is removed.
//!
//! What stands in for Windows here:
//!
//! * Each test gets its own Wine prefix (`WINEPREFIX` in its temporary
//!   directory), made by `wineboot --init` (several seconds) and removed with
//!   it; `wineserver -k` ends the prefix's processes first.
//! * `bcryptprimitives.dll` (tests/wine/bcryptprimitives.c): Rust's standard
//!   library imports `ProcessPrng` from it, which Windows 10 and later have
//!   and Wine 8 lacks. Compiled with MinGW into the prefix's system32.
//! * `wsl.exe` (tests/wine/wsl.c), also in system32, where Windows has it:
//!   a Windows program that starts the Unix program after `--exec` with a
//!   loopback socket as its stdin and stdout and copies bytes between that
//!   socket and its own stdin/stdout. A Unix script named `wsl.exe` does not
//!   work: Wine does start a Unix executable from a Windows process (fork and
//!   exec, for a file that is not a PE image), but gives it /dev/null as
//!   stdin and stdout, because Wine's pipes have no Unix file descriptor
//!   (wineserver answers `get_handle_fd` with BAD_DEVICE_TYPE) and because
//!   the wrapper starts wsl with CREATE_NO_WINDOW; and the caller gets a NULL
//!   process handle for it. The wrapper then fails its first command with
//!   "cannot write to wsl -d boinc-buda-runner -u root --exec /bin/sh: Pipe
//!   closed. (os error 232)" and makes a temporary exit. The file's comment
//!   has the details.
//! * WSL shows drive Z: at `/mnt/z`; Wine's Z: is this host's `/`. The job
//!   test makes the symlink `/mnt/z -> /` when there is none (as root) and
//!   removes it afterwards.
//!
//! Not covered: the client (init_data.xml with WSL distros, shared memory:
//! suspend, resume, quit, abort), timeouts and kills through the second
//! shell, which `tests/suite/wsl_transport.rs` covers on Linux through
//! `DOCKER_WRAPPER_SHELL=sh`; Docker; a real WSL VM.
//!
//! Needs: `wine` (Debian 12: `apt-get install wine wine64`, Wine 8.0),
//! `x86_64-w64-mingw32-gcc` (`apt-get install gcc-mingw-w64-x86-64`), Podman
//! (`bash .ci/setup`) and the .exe (`cargo xtask dist`). A test that lacks
//! one fails and says so.
#![cfg(target_os = "linux")]

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Instant;

use dw_test_support::command::wait_or_kill;
use dw_test_support::release;
use dw_test_support::*;

/// The BOINC release whose Windows libraries `cargo xtask dist` links.
const BOINC_API_VERSION: &str = "8.2.15";
const EXE_SUFFIX: &str = "_windows_x86_64.exe";
const COMPILER: &str = "x86_64-w64-mingw32-gcc";
const WINE_INSTALL: &str = "apt-get install wine wine64 (Debian 12: Wine 8.0)";
const COMPILER_INSTALL: &str = "apt-get install gcc-mingw-w64-x86-64";
/// A new prefix takes several seconds; more when the machine is busy.
const PREFIX_TIMEOUT: Duration = Duration::from_secs(180);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
const COMPILE_TIMEOUT: Duration = Duration::from_secs(60);
const JOB_TIMEOUT: Duration = Duration::from_secs(300);
/// The distro and launcher a standalone run on Windows uses (src/engine/wsl.rs).
const WSL_ARGS: &str = "-d boinc-buda-runner -u root --exec /bin/sh";

#[test]
fn version_prints_the_version_line() {
    let _claim = Claim::no_engine();
    let exe = windows_exe();
    let wine = Wine::new("version");
    let run = wine.run(wine.command(&exe.path).arg("--version"), COMMAND_TIMEOUT);
    assert_eq!(run.status.code(), Some(0), "{run}");
    let line = run.stdout.trim_end();
    let start = format!("docker_wrapper {} (", exe.version);
    let end = format!("; BOINC API {BOINC_API_VERSION})");
    assert!(
        line.starts_with(&start) && line.ends_with(&end),
        "expected `{start}...{end}`:\n{run}"
    );
    assert_eq!(run.stdout.lines().count(), 1, "{run}");
}

#[test]
fn help_prints_the_usage() {
    let _claim = Claim::no_engine();
    let exe = windows_exe();
    let wine = Wine::new("help");
    let run = wine.run(wine.command(&exe.path).arg("--help"), COMMAND_TIMEOUT);
    assert_eq!(run.status.code(), Some(0), "{run}");
    assert!(
        run.stdout
            .starts_with("Usage: docker_wrapper [OPTIONS] [JOB ARGUMENTS...]"),
        "{run}"
    );
    for option in [
        "--config FILE",
        "--dockerfile FILE",
        "--verbose",
        "--sporadic",
        "--version",
    ] {
        assert!(run.stdout.contains(option), "no {option}:\n{run}");
    }
}

#[test]
fn a_standalone_job_runs_through_the_wsl_shell() {
    let _claim = Claim::shared(EngineKind::Podman);
    let exe = windows_exe();
    let engine = TestEngine::require(EngineKind::Podman);
    // Its container is `boinc`, as is every standalone run's (standalone.rs).
    let _name = claim::standalone_container(EngineKind::Podman);
    let _drive_z = DriveZ::mount();
    let wine = Wine::new("standalone_job");
    let slot = wine.dir().join("slot");
    fs::create_dir(&slot).unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello");
    for entry in fs::read_dir(&example).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), slot.join(entry.file_name())).unwrap();
    }
    fs::copy("/bin/busybox", slot.join("busybox"))
        .expect("/bin/busybox: apt-get install busybox-static");
    let wsl_log = wine.dir().join("wsl.log");

    let mut command = wine.command(&exe.path);
    command
        .arg("2")
        .current_dir(&slot)
        .env("DW_WSL_LOG", windows_path(&wsl_log));
    for (key, value) in engine.env() {
        command.env(key, value);
    }
    let run = wine.run(&mut command, JOB_TIMEOUT);

    let stderr_txt = fs::read_to_string(slot.join("stderr.txt")).unwrap_or_default();
    let context = format!("{run}\n--- stderr.txt ---\n{stderr_txt}");
    assert_eq!(run.status.code(), Some(0), "{context}");
    for expected in [
        "standalone mode".to_string(),
        "using WSL distro boinc-buda-runner".to_string(),
        format!("engine commands go through one shell: wsl {WSL_ARGS}"),
        // The slot, mounted by its path inside WSL.
        format!("-v /mnt/z{}:/app", slot.display()),
        "hello from the container: 2 steps".to_string(),
        "the job exited with code 0".to_string(),
        "called boinc_finish(0)".to_string(),
    ] {
        assert!(
            stderr_txt.contains(&expected),
            "stderr.txt lacks `{expected}`:\n{context}"
        );
    }
    // This host's cgroups are not the engine's on Windows (they are in WSL's VM).
    assert!(
        stderr_txt.contains("no idle parent cgroup: the engine runs in WSL"),
        "{context}"
    );
    assert!(!stderr_txt.contains("--cgroup-parent"), "{context}");
    let output = fs::read_to_string(slot.join("output.txt")).unwrap_or_default();
    assert_eq!(output, "done after 2 steps\n", "{context}");
    // One shell for the life of the task.
    let launches = fs::read_to_string(&wsl_log).unwrap_or_default();
    assert_eq!(
        launches,
        format!("{WSL_ARGS}\n"),
        "wsl.exe launches (one line each):\n{context}"
    );
    assert_eq!(
        engine.container_state("boinc"),
        None,
        "the standalone container was left behind:\n{context}"
    );
}

/// The .exe in the dist directory and the version its name carries.
struct WindowsExe {
    path: PathBuf,
    version: String,
}

/// `docker_wrapper_<version>_windows_x86_64.exe` in `DW_DIST_DIR`, else in
/// `dist/`: this crate's version if it is there, else the only one.
fn windows_exe() -> WindowsExe {
    let path = release::release_file(EXE_SUFFIX, env!("CARGO_PKG_VERSION"))
        .unwrap_or_else(|e| panic!("{e}"));
    let version = release::version_of(&path, EXE_SUFFIX).expect("a release file's name");
    WindowsExe { path, version }
}

/// A private Wine prefix with the stand-ins installed, in a temporary
/// directory removed on drop (after its processes are ended).
struct Wine {
    wine: PathBuf,
    prefix: PathBuf,
    // Dropped after `drop` has ended the prefix's processes.
    dir: TempDir,
}

impl Wine {
    fn new(label: &str) -> Wine {
        let wine = dw_test_support::engine::find_in_path("wine")
            .unwrap_or_else(|| panic!("wine is not installed: {WINE_INSTALL}"));
        let compiler = dw_test_support::engine::find_in_path(COMPILER)
            .unwrap_or_else(|| panic!("{COMPILER} is not installed: {COMPILER_INSTALL}"));
        let dir = TempDir::new(&format!("wine_{label}")).unwrap();
        let build = dir.path().join("build");
        fs::create_dir(&build).unwrap();
        let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wine");
        let dll = build.join("bcryptprimitives.dll");
        compile(
            &compiler,
            &sources.join("bcryptprimitives.c"),
            &dll,
            &["-shared"],
            &["-ladvapi32"],
        );
        let wsl = build.join("wsl.exe");
        compile(
            &compiler,
            &sources.join("wsl.c"),
            &wsl,
            &["-municode"],
            &["-lws2_32"],
        );

        let wine = Wine {
            wine,
            prefix: dir.path().join("prefix"),
            dir,
        };
        let started = Instant::now();
        let run = wine.run(wine.command("wineboot").arg("--init"), PREFIX_TIMEOUT);
        assert!(run.status.success(), "cannot make a Wine prefix: {run}");
        eprintln!(
            "{label}: Wine prefix made in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        let system32 = wine.prefix.join("drive_c/windows/system32");
        for file in [&dll, &wsl] {
            let target = system32.join(file.file_name().unwrap());
            fs::copy(file, &target).unwrap_or_else(|e| {
                panic!(
                    "cannot copy {} to {}: {e}",
                    file.display(),
                    target.display()
                )
            });
        }
        wine
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `wine <program>` in this prefix, quiet, with no display and without
    /// the Mono, Gecko and menu helpers a new prefix would otherwise start.
    fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new(&self.wine);
        command
            .arg(program)
            .env("WINEPREFIX", &self.prefix)
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml,winemenubuilder.exe=d")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY");
        command
    }

    /// Runs `command` with its output in files (Wine's own processes may
    /// outlive it and would hold pipes open); killed after `timeout`.
    fn run(&self, command: &mut Command, timeout: Duration) -> Run {
        static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out_path = self.dir().join(format!("run{n}.stdout"));
        let err_path = self.dir().join(format!("run{n}.stderr"));
        let shown = dw_test_support::command::describe(command);
        command
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out_path).unwrap())
            .stderr(fs::File::create(&err_path).unwrap());
        let started = Instant::now();
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
        let status = wait_or_kill(&mut child, timeout);
        let elapsed = started.elapsed();
        let read = |path: &Path| fs::read_to_string(path).unwrap_or_default();
        let run = Run {
            shown,
            status: status.unwrap_or_default(),
            stdout: read(&out_path),
            stderr: read(&err_path),
            elapsed,
        };
        assert!(
            status.is_some(),
            "did not finish within {timeout:?}, killed: {run}"
        );
        eprintln!("{} took {:.1}s", run.shown, elapsed.as_secs_f64());
        run
    }
}

impl Drop for Wine {
    fn drop(&mut self) {
        let mut kill = Command::new("wineserver");
        kill.arg("-k")
            .env("WINEPREFIX", &self.prefix)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Ok(mut child) = kill.spawn() {
            wait_or_kill(&mut child, Duration::from_secs(30));
        }
    }
}

/// What a command under Wine did.
struct Run {
    shown: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}, {:.1}s)\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.shown,
            self.status,
            self.elapsed.as_secs_f64(),
            self.stdout,
            self.stderr
        )
    }
}

/// The symlink `/mnt/z -> /`: where WSL shows drive Z:, which is Wine's
/// name for this host's root. Removed on drop if this test made it.
struct DriveZ {
    made: bool,
}

impl DriveZ {
    const PATH: &'static str = "/mnt/z";

    fn mount() -> DriveZ {
        let link = Path::new(Self::PATH);
        if fs::symlink_metadata(link).is_ok() {
            let target = fs::canonicalize(link).ok();
            assert_eq!(
                target.as_deref(),
                Some(Path::new("/")),
                "{} exists and is not the host's root: the job test needs it as WSL's view of Wine's drive Z:",
                link.display()
            );
            return DriveZ { made: false };
        }
        fs::create_dir_all("/mnt").expect("cannot create /mnt (run the tests as root)");
        match std::os::unix::fs::symlink("/", link) {
            Ok(()) => DriveZ { made: true },
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => DriveZ { made: false },
            Err(e) => panic!(
                "cannot create the symlink {} -> / (run the tests as root): {e}",
                link.display()
            ),
        }
    }
}

impl Drop for DriveZ {
    fn drop(&mut self) {
        if self.made {
            let _ = fs::remove_file(Self::PATH);
        }
    }
}

/// Wine's name for a host path: drive Z: is the root.
fn windows_path(path: &Path) -> String {
    format!("Z:{}", path.display()).replace('/', "\\")
}

fn compile(compiler: &Path, source: &Path, output: &Path, flags: &[&str], libraries: &[&str]) {
    let mut command = Command::new(compiler);
    command
        .args(["-O2", "-Wall", "-o"])
        .arg(output)
        .args(flags)
        .arg(source)
        .args(libraries);
    let out = run_with_timeout(command, COMPILE_TIMEOUT).unwrap();
    assert!(
        out.success(),
        "cannot compile {}:\n{}{}",
        source.display(),
        out.stdout,
        out.stderr
    );
}
