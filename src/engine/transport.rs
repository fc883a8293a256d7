//! Where engine commands run: as child processes of the wrapper (Linux,
//! macOS), or inside one long-lived shell (Windows: a WSL distro, where the
//! engine and its view of the file system live).
//!
//! `DOCKER_WRAPPER_SHELL=sh` (or another POSIX shell) makes the wrapper send
//! every engine command through one persistent shell on Linux too, exactly
//! as on Windows: that is how the Windows path is tested.
use std::cell::RefCell;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::process::{self, Argv, Limits, Output, RunError};
use super::shell::{CommandId, Event, Lost, SendError, ShellSession, Unquotable};
use super::wsl::{self, PathError};

/// Names the shell that carries engine commands; unset: no shell.
pub const SHELL_VAR: &str = "DOCKER_WRAPPER_SHELL";

/// A cold WSL start boots a VM: give it time before calling the engine unavailable.
const SHELL_START_TIMEOUT: Duration = Duration::from_secs(60);
/// Between a signal to a timed-out command and the next, harder step.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// How often a running command's caller is asked whether to cancel it.
const CANCEL_POLL: Duration = Duration::from_millis(50);
/// Bound of the `kill` that stops a command through the control shell.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(10);

pub enum Transport {
    /// Each command is a child process of the wrapper.
    Local,
    /// Commands go to one long-lived shell.
    Shell(Box<ShellTransport>),
}

impl Transport {
    /// The local transport, or the shell `DOCKER_WRAPPER_SHELL` names.
    pub fn from_env() -> Transport {
        match std::env::var_os(SHELL_VAR).filter(|shell| !shell.is_empty()) {
            Some(shell) => Transport::Shell(Box::new(ShellTransport::new(
                Argv::new(shell),
                PathView::Same,
            ))),
            None => Transport::Local,
        }
    }

    /// Commands run as root inside a WSL distro, which sees Windows paths under /mnt.
    pub fn wsl(launcher: Argv) -> Transport {
        Transport::Shell(Box::new(ShellTransport::new(launcher, PathView::WslMount)))
    }

    /// Whether commands are our children, so the container's pid is in our system.
    pub fn is_local(&self) -> bool {
        matches!(self, Transport::Local)
    }

    pub fn run(
        &self,
        argv: &Argv,
        limits: Limits,
        cancel: &mut dyn FnMut() -> bool,
    ) -> Result<Output, RunError> {
        match self {
            Transport::Local => process::run(argv, limits, cancel),
            Transport::Shell(shell) => shell.run(argv, limits, cancel),
        }
    }

    /// Like `run`, handing the output to `watch` line by line: as it comes
    /// for a local command; all at the end through the shell, which returns
    /// a command's output only once it has finished.
    pub fn run_watched(
        &self,
        argv: &Argv,
        limits: Limits,
        cancel: &mut dyn FnMut() -> bool,
        watch: process::Watch<'_>,
    ) -> Result<Output, RunError> {
        match self {
            Transport::Local => process::run_watched(argv, limits, cancel, watch),
            Transport::Shell(shell) => {
                let mut out = shell.run(argv, limits, cancel)?;
                for text in [&mut out.stdout, &mut out.stderr] {
                    text.lines().for_each(|line| (watch.line)(line));
                    *text = text
                        .lines()
                        .filter(|line| (watch.keep)(line))
                        .map(|line| format!("{line}\n"))
                        .collect();
                }
                Ok(out)
            }
        }
    }

    /// A path of the wrapper's host as the engine sees it (for mounts, the
    /// build context, image archives).
    pub fn path_in_engine(&self, host: &Path) -> Result<PathBuf, PathError> {
        match self {
            Transport::Local => Ok(host.to_path_buf()),
            Transport::Shell(shell) => shell.paths.engine_path(host),
        }
    }
}

/// How the engine's side names the wrapper's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathView {
    /// The same file system (a local shell).
    Same,
    /// A WSL distro: `C:\dir` is `/mnt/c/dir`.
    WslMount,
}

impl PathView {
    pub fn engine_path(self, host: &Path) -> Result<PathBuf, PathError> {
        match self {
            PathView::Same => Ok(host.to_path_buf()),
            PathView::WslMount => {
                let text = host
                    .to_str()
                    .ok_or_else(|| PathError::NotUnicode(host.to_path_buf()))?;
                wsl::windows_path_in_wsl(text).map(PathBuf::from)
            }
        }
    }
}

/// Why a command could not go through the shell.
#[derive(Debug, Clone, PartialEq)]
pub enum ShellError {
    /// The command's directory has no name on the engine's side.
    Path(PathError),
    Unquotable(Unquotable),
    Lost(Lost),
    /// The shell died again as soon as it was started afresh.
    KeepsExiting {
        launcher: String,
    },
}

impl fmt::Display for ShellError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShellError::Path(err) => err.fmt(f),
            ShellError::Unquotable(err) => err.fmt(f),
            ShellError::Lost(err) => err.fmt(f),
            ShellError::KeepsExiting { launcher } => write!(f, "{launcher} keeps exiting"),
        }
    }
}

impl std::error::Error for ShellError {}

pub struct ShellTransport {
    launcher: Argv,
    paths: PathView,
    /// Started on the first command, and again after it died.
    session: RefCell<Option<ShellSession>>,
    /// A second shell that signals a command the first one is stuck in
    /// (the first one reads nothing while it waits for that command).
    control: RefCell<Option<ShellSession>>,
}

/// Why a command was stopped.
#[derive(Clone, Copy)]
enum Stop {
    TimedOut,
    Cancelled,
}

impl ShellTransport {
    pub fn new(launcher: Argv, paths: PathView) -> ShellTransport {
        ShellTransport {
            launcher,
            paths,
            session: RefCell::new(None),
            control: RefCell::new(None),
        }
    }

    fn run(
        &self,
        argv: &Argv,
        limits: Limits,
        cancel: &mut dyn FnMut() -> bool,
    ) -> Result<Output, RunError> {
        let failed = |why: ShellError| RunError::Shell {
            command: argv.display(),
            why: why.to_string(),
        };
        let cwd: Option<OsString> = match &argv.cwd {
            Some(dir) => Some(
                self.paths
                    .engine_path(dir)
                    .map_err(|err| failed(ShellError::Path(err)))?
                    .into_os_string(),
            ),
            None => None,
        };
        let mut slot = self.session.borrow_mut();
        let (session, id) = self
            .send(&mut slot, argv, cwd.as_deref(), limits.capture)
            .map_err(failed)?;
        let deadline = Instant::now() + limits.timeout;
        let mut pid = None;
        loop {
            let slice_end = deadline.min(Instant::now() + CANCEL_POLL);
            match wait_for_end(session, &id, slice_end, &mut pid) {
                Ok(Some(ended)) => {
                    return Ok(Output {
                        status: process::exit_status(ended.status),
                        stdout: String::from_utf8_lossy(&ended.stdout).into_owned(),
                        stderr: String::from_utf8_lossy(&ended.stderr).into_owned(),
                    });
                }
                Ok(None) => {}
                Err(lost) => {
                    *slot = None;
                    return Err(failed(ShellError::Lost(lost)));
                }
            }
            let stop = if cancel() {
                Stop::Cancelled
            } else if Instant::now() >= deadline {
                Stop::TimedOut
            } else {
                continue;
            };
            let stderr_tail = match self.stop(session, &id, pid) {
                Some(stderr) => process::last_lines(&String::from_utf8_lossy(&stderr), 3),
                None => {
                    // Unkillable, or the shell hangs: start afresh next time.
                    session.kill();
                    *slot = None;
                    String::new()
                }
            };
            return Err(match stop {
                Stop::Cancelled => RunError::Cancelled {
                    command: argv.display(),
                },
                Stop::TimedOut => RunError::TimedOut {
                    command: argv.display(),
                    after: limits.timeout,
                    stderr_tail,
                },
            });
        }
    }

    /// Sends the command to a live shell, starting one if there is none or
    /// the last one died while idle (then nothing of this command ran yet).
    fn send<'a>(
        &self,
        slot: &'a mut Option<ShellSession>,
        argv: &Argv,
        cwd: Option<&std::ffi::OsStr>,
        keep_bytes: usize,
    ) -> Result<(&'a mut ShellSession, CommandId), ShellError> {
        if slot.as_mut().is_some_and(|s| !s.is_alive()) {
            log::warn!(
                "the engine shell ({}) has exited; starting it again",
                self.launcher.display()
            );
            *slot = None;
        }
        for _attempt in 0..2 {
            if slot.is_none() {
                log::info!(
                    "engine commands go through one shell: {}",
                    self.launcher.display()
                );
                *slot = Some(self.start().map_err(ShellError::Lost)?);
            }
            match slot
                .as_mut()
                .expect("just started")
                .send(argv, cwd, keep_bytes)
            {
                Ok(id) => return Ok((slot.as_mut().expect("present"), id)),
                Err(SendError::Unquotable(err)) => return Err(ShellError::Unquotable(err)),
                Err(SendError::Lost(lost)) => {
                    log::warn!("the engine shell is gone ({lost}); starting it again");
                    *slot = None;
                }
            }
        }
        Err(ShellError::KeepsExiting {
            launcher: self.launcher.display(),
        })
    }

    fn start(&self) -> Result<ShellSession, Lost> {
        ShellSession::start(&self.launcher, SHELL_START_TIMEOUT)
    }

    /// TERM, a grace, KILL, a grace: the stopped command's stderr once it
    /// ended, None when it did not (the shell must then be discarded).
    fn stop(
        &self,
        session: &mut ShellSession,
        id: &CommandId,
        pid: Option<u32>,
    ) -> Option<Vec<u8>> {
        // Without a pid the shell never even started the command.
        let pid = pid?;
        let mut ignored = None;
        // It may have ended just now: then its pid must not be signalled (reuse).
        match wait_for_end(session, id, Instant::now(), &mut ignored) {
            Ok(Some(ended)) => return Some(ended.stderr),
            Ok(None) => {}
            Err(_) => return None,
        }
        for signal in ["TERM", "KILL"] {
            self.signal(pid, signal);
            let mut ignored = None;
            match wait_for_end(session, id, Instant::now() + KILL_GRACE, &mut ignored) {
                Ok(Some(ended)) => return Some(ended.stderr),
                Ok(None) => continue,
                Err(_) => return None,
            }
        }
        None
    }

    /// `kill -s <signal> <pid>` through the control shell.
    fn signal(&self, pid: u32, signal: &str) {
        let argv = Argv::new("kill").args(["-s", signal, &pid.to_string()]);
        let mut slot = self.control.borrow_mut();
        if slot.as_mut().is_some_and(|s| !s.is_alive()) {
            *slot = None;
        }
        if slot.is_none() {
            log::debug!(
                "starting a second shell to stop commands: {}",
                self.launcher.display()
            );
            match self.start() {
                Ok(session) => *slot = Some(session),
                Err(why) => return log::warn!("cannot signal {pid}: {why}"),
            }
        }
        let session = slot.as_mut().expect("just started");
        let id = match session.send(&argv, None, 4096) {
            Ok(id) => id,
            Err(err) => {
                *slot = None;
                return log::warn!("cannot signal {pid}: {err:?}");
            }
        };
        let mut ignored = None;
        match wait_for_end(session, &id, Instant::now() + SIGNAL_TIMEOUT, &mut ignored) {
            Ok(Some(ended)) if ended.status == 0 => log::debug!("sent {signal} to {pid}"),
            // Already gone: the end report is on its way.
            Ok(Some(ended)) => log::debug!(
                "kill -s {signal} {pid}: {}",
                String::from_utf8_lossy(&ended.stderr).trim()
            ),
            Ok(None) | Err(_) => {
                log::warn!("cannot signal {pid} through the control shell");
                if let Some(mut stuck) = slot.take() {
                    stuck.kill();
                }
            }
        }
    }
}

/// How a command in the shell ended.
struct Ended {
    status: i32,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Reads the command's reports until it ended or `until` passed; records its pid.
fn wait_for_end(
    session: &mut ShellSession,
    id: &CommandId,
    until: Instant,
    pid: &mut Option<u32>,
) -> Result<Option<Ended>, Lost> {
    loop {
        match session.next_event(id, until)? {
            Some(Event::Started { pid: started }) => *pid = Some(started),
            Some(Event::Ended {
                status,
                stdout,
                stderr,
            }) => {
                return Ok(Some(Ended {
                    status,
                    stdout,
                    stderr,
                }))
            }
            None => return Ok(None),
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::engine::shell::quote;
    use crate::test_dir::TestDir;
    use std::ffi::OsStr;

    fn sh() -> ShellTransport {
        ShellTransport::new(Argv::new("sh"), PathView::Same)
    }

    /// dash (Debian's sh), bash, and busybox's ash (Alpine-based distros):
    /// the shells a WSL distro may have as /bin/sh. `.ci/setup` installs busybox.
    fn every_shell() -> Vec<ShellTransport> {
        [
            Argv::new("sh"),
            Argv::new("bash"),
            Argv::new("busybox").arg("sh"),
        ]
        .into_iter()
        .map(|launcher| ShellTransport::new(launcher, PathView::Same))
        .collect()
    }

    fn limits(ms: u64) -> Limits {
        Limits {
            timeout: Duration::from_millis(ms),
            capture: 64 * 1024,
        }
    }

    fn run(shell: &ShellTransport, argv: Argv) -> Result<Output, RunError> {
        shell.run(&argv, limits(10_000), &mut || false)
    }

    /// Arguments that a shell would otherwise split, expand or run.
    const TRICKY: &[&str] = &[
        "plain",
        "",
        "with space",
        "it's",
        "'",
        "''",
        "\"double\"",
        "$(touch /tmp/dw-pwned)",
        "`id`",
        "${HOME}",
        "$0 $1 $@",
        "back\\slash\\",
        "line\nbreak\n",
        "carriage\rreturn\ttab",
        "; echo injected | cat && false || true &",
        "*",
        "~",
        "-n",
        "--",
        "ünïcödé ✓ 日本",
        "'\\''",
        "end with backslash \\",
    ];

    #[test]
    fn quoting_is_single_quotes_with_escaped_single_quotes() {
        assert_eq!(quote(OsStr::new("a b")).unwrap(), "'a b'");
        assert_eq!(quote(OsStr::new("it's")).unwrap(), r"'it'\''s'");
        assert_eq!(quote(OsStr::new("")).unwrap(), "''");
        assert_eq!(quote(OsStr::new("$(x)`y`\\")).unwrap(), "'$(x)`y`\\'");
        assert!(quote(OsStr::new("nul\0byte"))
            .unwrap_err()
            .to_string()
            .contains("NUL"));
    }

    #[test]
    fn non_utf8_arguments_are_refused() {
        use std::os::unix::ffi::OsStrExt;
        assert!(quote(OsStr::from_bytes(b"\xff\xfe"))
            .unwrap_err()
            .to_string()
            .contains("UTF-8"));
    }

    #[test]
    fn arguments_survive_the_round_trip() {
        for shell in every_shell() {
            let argv = Argv::new("printf")
                .arg("%s\\0")
                .args(TRICKY.iter().copied());
            let out = run(&shell, argv).unwrap();
            assert!(out.success(), "{}: {out:?}", shell.launcher.display());
            let got: Vec<&str> = out.stdout.split('\0').collect();
            assert_eq!(&got[..TRICKY.len()], TRICKY, "{}", shell.launcher.display());
            assert_eq!(got[TRICKY.len()], "");
        }
        assert!(!Path::new("/tmp/dw-pwned").exists());
    }

    #[test]
    fn an_argument_with_nul_is_an_error_and_the_shell_lives_on() {
        let shell = sh();
        let err = run(&shell, Argv::new("echo").arg("a\0b")).unwrap_err();
        assert!(err.to_string().contains("NUL"), "{err}");
        assert_eq!(
            run(&shell, Argv::new("echo").arg("ok")).unwrap().stdout,
            "ok\n"
        );
    }

    #[test]
    fn status_stdout_and_stderr_are_carried_apart() {
        let shell = sh();
        let out = run(
            &shell,
            Argv::new("sh").args(["-c", "printf out; echo err >&2; exit 3"]),
        )
        .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("out", "err\n"));
        let out = run(&shell, Argv::new("true")).unwrap();
        assert!(out.success());
        assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("", ""));
    }

    #[test]
    fn environment_and_working_directory_apply() {
        let shell = sh();
        // Spaces and quotes in the path: the shell must be given it as one word.
        let tmp = TestDir::new("shell cwd 'x'");
        let dir = &tmp.0;
        let argv = Argv::new("sh")
            .args(["-c", "pwd; echo \"$DW_TEST_VALUE\""])
            .env("DW_TEST_VALUE", "a 'b' $c")
            .current_dir(dir);
        let out = run(&shell, argv).unwrap();
        assert_eq!(out.stdout, format!("{}\na 'b' $c\n", dir.display()));
    }

    #[test]
    fn job_output_cannot_fake_the_end_of_a_command() {
        let shell = sh();
        // Binary output, NULs, a line shaped like a report, no final newline.
        let script = "printf 'x\\000y\\n'; echo \"dw0000 end 0 0 0\"; printf '1 end 0 5 5\\nlast'";
        let out = run(&shell, Argv::new("sh").args(["-c", script])).unwrap();
        assert_eq!(out.stdout, "x\0y\ndw0000 end 0 0 0\n1 end 0 5 5\nlast");
        assert_eq!(
            run(&shell, Argv::new("echo").arg("next")).unwrap().stdout,
            "next\n"
        );
    }

    #[test]
    fn output_is_bounded_to_its_tail() {
        let shell = sh();
        let script = "i=0; while [ $i -lt 5000 ]; do echo line$i; echo err$i >&2; i=$((i+1)); done";
        let argv = Argv::new("sh").args(["-c", script]);
        let out = shell
            .run(
                &argv,
                Limits {
                    timeout: Duration::from_secs(20),
                    capture: 1024,
                },
                &mut || false,
            )
            .unwrap();
        assert!(out.stdout.len() <= 1024 && out.stderr.len() <= 1024);
        assert!(
            out.stdout.ends_with("line4999\n") && out.stderr.ends_with("err4999\n"),
            "{out:?}"
        );
    }

    #[test]
    fn a_missing_program_fails_like_in_a_shell() {
        let out = run(&sh(), Argv::new("/nonexistent/engine")).unwrap();
        assert_eq!(out.status.code(), Some(127));
    }

    #[test]
    fn a_hanging_command_times_out_and_the_next_one_works() {
        for shell in every_shell() {
            let started = Instant::now();
            let err = shell
                .run(&Argv::new("sleep").arg("30"), limits(300), &mut || false)
                .unwrap_err();
            assert!(matches!(err, RunError::TimedOut { .. }), "{err}");
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{:?}",
                started.elapsed()
            );
            assert_eq!(
                run(&shell, Argv::new("echo").arg("alive")).unwrap().stdout,
                "alive\n"
            );
        }
    }

    #[test]
    fn a_command_that_ignores_sigterm_is_killed() {
        let shell = sh();
        let argv = Argv::new("sh").args([
            "-c",
            "trap '' TERM; echo stubborn >&2; while :; do sleep 1; done",
        ]);
        let started = Instant::now();
        let err = shell.run(&argv, limits(300), &mut || false).unwrap_err();
        assert!(
            matches!(&err, RunError::TimedOut { stderr_tail, .. } if stderr_tail.contains("stubborn")),
            "{err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            run(&shell, Argv::new("echo").arg("alive")).unwrap().stdout,
            "alive\n"
        );
    }

    #[test]
    fn cancel_stops_the_command() {
        let shell = sh();
        let mut calls = 0;
        let err = shell
            .run(&Argv::new("sleep").arg("30"), limits(30_000), &mut || {
                calls += 1;
                calls > 3
            })
            .unwrap_err();
        assert!(matches!(err, RunError::Cancelled { .. }), "{err}");
        assert_eq!(
            run(&shell, Argv::new("echo").arg("alive")).unwrap().stdout,
            "alive\n"
        );
    }

    #[test]
    fn a_shell_that_dies_during_a_command_is_restarted_for_the_next() {
        for shell in every_shell() {
            // The command's parent is the shell itself.
            let err = run(
                &shell,
                Argv::new("sh").args(["-c", "kill -KILL $PPID; sleep 5"]),
            )
            .unwrap_err();
            assert!(
                matches!(&err, RunError::Shell { why, .. } if why.contains("exited")),
                "{err}"
            );
            assert_eq!(
                run(&shell, Argv::new("echo").arg("again")).unwrap().stdout,
                "again\n"
            );
        }
    }

    #[test]
    fn a_shell_that_died_while_idle_is_restarted_transparently() {
        let shell = sh();
        let killer = "p=$PPID; (sleep 0.2; kill -KILL $p) >/dev/null 2>&1 &";
        assert!(run(&shell, Argv::new("sh").args(["-c", killer]))
            .unwrap()
            .success());
        std::thread::sleep(Duration::from_millis(800));
        assert_eq!(
            run(&shell, Argv::new("echo").arg("fresh")).unwrap().stdout,
            "fresh\n"
        );
    }

    #[test]
    fn a_shell_that_cannot_start_is_an_error() {
        let shell = ShellTransport::new(Argv::new("/nonexistent/sh"), PathView::Same);
        let err = run(&shell, Argv::new("true")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/sh"), "{err}");
    }

    #[test]
    fn paths_are_translated_for_wsl_only() {
        let windows = Path::new(r"C:\ProgramData\BOINC\slots\3");
        assert_eq!(PathView::Same.engine_path(windows).unwrap(), windows);
        assert_eq!(
            PathView::WslMount.engine_path(windows).unwrap(),
            Path::new("/mnt/c/ProgramData/BOINC/slots/3")
        );
        assert!(PathView::WslMount
            .engine_path(Path::new(r"\\nas\boinc"))
            .is_err());
    }
}
