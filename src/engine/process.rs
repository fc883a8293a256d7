//! Runs one engine command as a child process: argv only, a timeout with
//! TERM -> KILL escalation, and output capture bounded to its tail.
use std::ffi::OsString;
use std::fmt;
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::host::process_tree::{self, ProcessId};

/// Grace between SIGTERM and SIGKILL for a command that timed out.
const KILL_GRACE: Duration = Duration::from_secs(2);
#[cfg(windows)]
const CREATE_NO_WINDOW: u32 = 0x0800_0000;

/// A program and its arguments; never a shell string.
#[derive(Debug, Clone, PartialEq)]
pub struct Argv {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    pub cwd: Option<std::path::PathBuf>,
}

impl Argv {
    pub fn new(program: impl Into<OsString>) -> Self {
        Argv {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn current_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        // Its own process group, so a timeout can end the command and any
        // helper it started (which would otherwise hold our pipes open).
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        // The client runs us without a console; wsl.exe must not open one.
        #[cfg(windows)]
        std::os::windows::process::CommandExt::creation_flags(&mut cmd, CREATE_NO_WINDOW);
        cmd.args(&self.args);
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        cmd
    }

    /// For logs only: arguments joined with spaces, each quoted when needed.
    pub fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| {
                let s = a.to_string_lossy();
                if s.is_empty() || s.contains(|c: char| c.is_whitespace() || "'\"\\$`".contains(c))
                {
                    format!("'{}'", s.replace('\'', "'\\''"))
                } else {
                    s.into_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[derive(Debug, Clone)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The most useful single line to explain a failure.
    pub fn error_summary(&self) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty() && !is_usage_hint(l))
            .unwrap_or("");
        format!(
            "{} ({})",
            excerpt(last.trim(), MESSAGE_MAX_CHARS),
            self.status
        )
    }
}

/// The line Docker's CLI adds after a failed `run` or `create` ("See
/// 'docker run --help'.", "Run 'docker run --help' for more information"):
/// the error is the line before it.
fn is_usage_hint(line: &str) -> bool {
    let line = line.trim();
    (line.starts_with("See '") || line.starts_with("Run '")) && line.contains(" --help'")
}

#[derive(Debug)]
pub enum RunError {
    /// The program could not be started (missing, not executable).
    Spawn {
        program: String,
        source: std::io::Error,
    },
    /// The command ran longer than its timeout and was killed.
    TimedOut {
        command: String,
        after: Duration,
        stderr_tail: String,
    },
    /// The caller cancelled the command (e.g. the client asked us to quit).
    Cancelled { command: String },
    /// The shell that carries engine commands failed (see `transport`):
    /// the engine is out of reach, whatever the reason.
    Shell { command: String, why: String },
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Spawn { program, source } => write!(f, "cannot run {program}: {source}"),
            RunError::TimedOut {
                command,
                after,
                stderr_tail,
            } => {
                write!(
                    f,
                    "'{command}' did not finish within {}s and was killed",
                    after.as_secs()
                )?;
                if !stderr_tail.trim().is_empty() {
                    write!(f, "; its last output: {}", stderr_tail.trim())?;
                }
                Ok(())
            }
            RunError::Cancelled { command } => write!(f, "'{command}' was cancelled"),
            RunError::Shell { command, why } => write!(
                f,
                "cannot run '{command}' through the engine's shell: {why}"
            ),
        }
    }
}

impl std::error::Error for RunError {}

/// Limits of one run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    /// Bytes kept of each of stdout and stderr (the tail).
    pub capture: usize,
}

/// Runs `argv` to completion. `should_cancel` is polled while it runs, so a
/// long build can be abandoned when the client asks us to quit or abort.
pub fn run(
    argv: &Argv,
    limits: Limits,
    should_cancel: &mut dyn FnMut() -> bool,
) -> Result<Output, RunError> {
    run_inner(argv, limits, should_cancel, None)
}

/// Follows a command's output while it runs.
pub struct Watch<'a> {
    /// Gets every line of stdout and stderr, soon after the command writes it.
    pub line: &'a mut dyn FnMut(&str),
    /// Lines for which this is false are left out of the captured output.
    pub keep: fn(&str) -> bool,
    /// Gets the command's process as soon as it started.
    pub spawned: &'a mut dyn FnMut(ProcessId),
}

/// Like `run`, handing the output to `watch` line by line as it comes.
pub fn run_watched(
    argv: &Argv,
    limits: Limits,
    should_cancel: &mut dyn FnMut() -> bool,
    watch: Watch<'_>,
) -> Result<Output, RunError> {
    run_inner(argv, limits, should_cancel, Some(watch))
}

fn run_inner(
    argv: &Argv,
    limits: Limits,
    should_cancel: &mut dyn FnMut() -> bool,
    watch: Option<Watch<'_>>,
) -> Result<Output, RunError> {
    let mut cmd = argv.command();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| RunError::Spawn {
        program: argv.program.to_string_lossy().into_owned(),
        source,
    })?;
    let (stdout, stderr, outcome) = match watch {
        None => {
            let stdout = capture_tail(child.stdout.take(), limits.capture);
            let stderr = capture_tail(child.stderr.take(), limits.capture);
            let outcome = wait_until(&mut child, Instant::now() + limits.timeout, should_cancel);
            if outcome.is_none() {
                terminate(&mut child);
            }
            (stdout, stderr, outcome)
        }
        Some(Watch {
            line: on_line,
            keep,
            spawned,
        }) => {
            if let Some(process) = ProcessId::of(child.id()) {
                spawned(process);
            }
            let (lines, seen) = mpsc::channel();
            let stdout = capture_lines(child.stdout.take(), limits.capture, keep, lines.clone());
            let stderr = capture_lines(child.stderr.take(), limits.capture, keep, lines);
            let mut poll = || {
                seen.try_iter().for_each(|line| on_line(&line));
                should_cancel()
            };
            let outcome = wait_until(&mut child, Instant::now() + limits.timeout, &mut poll);
            if outcome.is_none() {
                terminate(&mut child);
            }
            // The rest, once the readers are done (bounded, as in `collect`).
            let deadline = Instant::now() + Duration::from_secs(2);
            while let Ok(line) =
                seen.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                on_line(&line);
            }
            (stdout, stderr, outcome)
        }
    };
    let stdout = collect(stdout);
    let stderr = collect(stderr);
    match outcome {
        Some(Ok(status)) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        Some(Err(())) => Err(RunError::Cancelled {
            command: argv.display(),
        }),
        None => Err(RunError::TimedOut {
            command: argv.display(),
            after: limits.timeout,
            stderr_tail: excerpt(&last_lines(&stderr, 3), MESSAGE_MAX_CHARS),
        }),
    }
}

/// Waits for the child; None on timeout, Some(Err) when cancelled.
fn wait_until(
    child: &mut Child,
    deadline: Instant,
    should_cancel: &mut dyn FnMut() -> bool,
) -> Option<Result<ExitStatus, ()>> {
    // Engine commands mostly take 10-100 ms: poll fast at first, then back off
    // so a 20-minute build costs nothing noticeable.
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(Ok(status)),
            Ok(None) => {}
            Err(_) => return Some(child.wait().map_err(|_| ())),
        }
        if should_cancel() {
            terminate(child);
            return Some(Err(()));
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// SIGTERM, a short grace, then SIGKILL; always reaps the child. Its
/// descendants that left its process group are killed too.
pub fn terminate(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    // Seen before the child ends, while they are still its descendants.
    let helpers = process_tree::descendants(child.id());
    terminate_group(child);
    process_tree::kill_each(&helpers);
}

fn terminate_group(child: &mut Child) {
    // The child is not reaped yet, so its pid (= its group id) cannot have been reused.
    let grace = if crate::os::signal_group(child.id(), false) {
        KILL_GRACE
    } else {
        Duration::ZERO
    };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    crate::os::signal_group(child.id(), true);
    let _ = child.kill();
    let _ = child.wait();
}

/// Ends a command an earlier wrapper started and did not see to its end
/// (it was killed): as `terminate`, for a process that is not our child.
/// Commands lead their own process group (see `Argv::command`).
pub fn terminate_orphan(process: ProcessId) {
    if !process.is_alive() {
        return;
    }
    let helpers = process_tree::descendants(process.pid);
    if crate::os::signal_group(process.pid, false) {
        let deadline = Instant::now() + KILL_GRACE;
        while process.is_alive() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
    }
    if process.is_alive() {
        crate::os::signal_group(process.pid, true);
    }
    process_tree::kill_each(&helpers);
}

/// Waits a little for a capture thread: a process that escaped the group
/// kill could hold the pipe open forever, and its output is not worth a hang.
fn collect(captured: mpsc::Receiver<String>) -> String {
    captured
        .recv_timeout(Duration::from_secs(2))
        .unwrap_or_default()
}

/// Reads a pipe to its end on a thread, keeping only the last `limit` bytes.
fn capture_tail<R: Read + Send + 'static>(pipe: Option<R>, limit: usize) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let _ = sender.send(read_tail(pipe, limit));
    });
    receiver
}

/// Like `capture_tail`, and sends each line to `lines` as it is read; lines
/// `keep` refuses are not captured. A line longer than `MAX_LINE` is cut.
fn capture_lines<R: Read + Send + 'static>(
    pipe: Option<R>,
    limit: usize,
    keep: fn(&str) -> bool,
    lines: mpsc::Sender<String>,
) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let _ = sender.send(read_lines(pipe, limit, keep, &lines));
    });
    receiver
}

const MAX_LINE: usize = 64 * 1024;

fn read_lines<R: Read>(
    pipe: Option<R>,
    limit: usize,
    keep: fn(&str) -> bool,
    lines: &mpsc::Sender<String>,
) -> String {
    let Some(pipe) = pipe else {
        return String::new();
    };
    let mut reader = std::io::BufReader::new(pipe);
    let mut kept = String::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        match std::io::BufRead::read_until(
            &mut (&mut reader).take(MAX_LINE as u64),
            b'\n',
            &mut line,
        ) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
        let text = String::from_utf8_lossy(&line);
        if keep(text.trim_end()) {
            kept.push_str(&text);
            if kept.len() > limit.saturating_mul(2).max(16384) {
                kept = tail_of(&kept, limit).to_string();
            }
        }
        let _ = lines.send(text.trim_end_matches(['\n', '\r']).to_string());
    }
    tail_of(&kept, limit).to_string()
}

/// The last `limit` bytes of `text` (or a little less, on a char boundary).
fn tail_of(text: &str, limit: usize) -> &str {
    let mut cut = text.len().saturating_sub(limit);
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    &text[cut..]
}

fn read_tail<R: Read>(pipe: Option<R>, limit: usize) -> String {
    {
        let Some(mut pipe) = pipe else {
            return String::new();
        };
        let mut kept: Vec<u8> = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    kept.extend_from_slice(&buf[..n]);
                    if kept.len() > limit.saturating_mul(2).max(16384) {
                        let cut = kept.len() - limit;
                        kept.drain(..cut);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        if kept.len() > limit {
            let cut = kept.len() - limit;
            kept.drain(..cut);
        }
        String::from_utf8_lossy(&kept).into_owned()
    }
}

/// The status of a command that exited with `code`, as a shell reports it.
pub fn exit_status(code: i32) -> ExitStatus {
    #[cfg(unix)]
    return std::os::unix::process::ExitStatusExt::from_raw((code & 0xff) << 8);
    #[cfg(windows)]
    return std::os::windows::process::ExitStatusExt::from_raw(code as u32);
}

/// Characters of engine output quoted in one message: enough for any real
/// error, while an engine that answers with megabytes of garbage cannot
/// flood stderr.txt.
pub const MESSAGE_MAX_CHARS: usize = 400;

/// `text`, or its last `max_chars` characters after an ellipsis.
pub fn excerpt(text: &str, max_chars: usize) -> String {
    match text.char_indices().rev().nth(max_chars) {
        // Cut after the character that is one too many: on a char boundary.
        Some((index, c)) => format!("…{}", &text[index + c.len_utf8()..]),
        None => text.to_string(),
    }
}

pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(ms: u64) -> Limits {
        Limits {
            timeout: Duration::from_millis(ms),
            capture: 1024,
        }
    }

    #[test]
    fn captures_output_and_status() {
        let argv = Argv::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]);
        let out = run(&argv, limits(5000), &mut || false).unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout.trim(), "out");
        assert_eq!(out.stderr.trim(), "err");
    }

    #[test]
    fn arguments_are_not_interpreted_by_a_shell() {
        let tricky = "a b 'c' \"d\" $(echo no) ; `x`";
        let out = run(
            &Argv::new("printf").args(["%s", tricky]),
            limits(5000),
            &mut || false,
        )
        .unwrap();
        assert_eq!(out.stdout, tricky);
    }

    #[test]
    fn a_hanging_command_is_killed_at_its_timeout() {
        let started = Instant::now();
        let err = run(&Argv::new("sleep").arg("30"), limits(200), &mut || false).unwrap_err();
        assert!(matches!(err, RunError::TimedOut { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_command_that_ignores_sigterm_is_killed() {
        let argv = Argv::new("sh").args(["-c", "trap '' TERM; sleep 30"]);
        let started = Instant::now();
        assert!(run(&argv, limits(100), &mut || false).is_err());
        assert!(started.elapsed() < Duration::from_secs(8));
    }

    #[test]
    fn cancel_stops_the_command() {
        let mut calls = 0;
        let err = run(&Argv::new("sleep").arg("30"), limits(30_000), &mut || {
            calls += 1;
            calls > 3
        })
        .unwrap_err();
        assert!(matches!(err, RunError::Cancelled { .. }));
    }

    #[test]
    fn output_is_bounded_to_its_tail() {
        let argv = Argv::new("sh").args([
            "-c",
            "i=0; while [ $i -lt 5000 ]; do echo line$i; i=$((i+1)); done",
        ]);
        let out = run(&argv, limits(10_000), &mut || false).unwrap();
        assert!(out.stdout.len() <= 1024);
        assert!(out.stdout.ends_with("line4999\n"));
    }

    #[test]
    fn watched_lines_arrive_and_unkept_ones_are_not_captured() {
        let argv = Argv::new("sh").args(["-c", "echo one; echo debug two >&2; echo three"]);
        let mut seen = Vec::new();
        let watch = Watch {
            line: &mut |line: &str| seen.push(line.to_string()),
            keep: |line| !line.starts_with("debug"),
            spawned: &mut |_| {},
        };
        let out = run_watched(&argv, limits(5000), &mut || false, watch).unwrap();
        seen.sort();
        assert_eq!(seen, ["debug two", "one", "three"]);
        assert_eq!(out.stdout, "one\nthree\n");
        assert_eq!(out.stderr, "");
    }

    #[test]
    fn watched_lines_before_a_cancel_are_seen() {
        let argv = Argv::new("sh").args(["-c", "echo started; exec sleep 30"]);
        let mut seen = Vec::new();
        let started = Instant::now();
        let watch = Watch {
            line: &mut |line: &str| seen.push(line.to_string()),
            keep: |_| true,
            spawned: &mut |_| {},
        };
        let err = run_watched(
            &argv,
            limits(30_000),
            &mut || started.elapsed() > Duration::from_millis(300),
            watch,
        )
        .unwrap_err();
        assert!(matches!(err, RunError::Cancelled { .. }), "{err}");
        assert_eq!(seen, ["started"]);
    }

    #[test]
    fn a_watched_output_is_bounded_to_its_tail() {
        let argv = Argv::new("sh").args([
            "-c",
            "i=0; while [ $i -lt 5000 ]; do echo line$i; i=$((i+1)); done",
        ]);
        let mut count = 0;
        let watch = Watch {
            line: &mut |_: &str| count += 1,
            keep: |_| true,
            spawned: &mut |_| {},
        };
        let out = run_watched(&argv, limits(10_000), &mut || false, watch).unwrap();
        assert_eq!(count, 5000);
        assert!(out.stdout.len() <= 1024);
        assert!(out.stdout.ends_with("line4999\n"));
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let err = run(&Argv::new("/nonexistent/engine"), limits(1000), &mut || {
            false
        })
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/engine"));
    }

    #[test]
    fn an_excerpt_keeps_the_tail_and_never_splits_a_character() {
        assert_eq!(excerpt("short", 10), "short");
        assert_eq!(excerpt("abcdef", 3), "…def");
        assert_eq!(excerpt("ééééé", 2), "…éé");
        let garbage = "€".repeat(100_000);
        assert_eq!(
            excerpt(&garbage, MESSAGE_MAX_CHARS).chars().count(),
            MESSAGE_MAX_CHARS + 1
        );
    }

    #[test]
    fn a_failure_summary_is_bounded() {
        let out = Output {
            status: exit_status(1),
            stdout: String::new(),
            stderr: "x".repeat(1 << 20),
        };
        assert!(
            out.error_summary().len() < MESSAGE_MAX_CHARS + 40,
            "{}",
            out.error_summary().len()
        );
    }

    #[test]
    fn a_failure_summary_is_the_error_not_the_usage_hint_after_it() {
        for hint in [
            "See 'docker run --help'.",
            "Run 'docker run --help' for more information",
        ] {
            let out = Output {
                status: exit_status(125),
                stdout: String::new(),
                stderr: format!(
                    "docker: Error response from daemon: No such image: x:1.\n{hint}\n\n"
                ),
            };
            assert!(
                out.error_summary()
                    .starts_with("docker: Error response from daemon: No such image"),
                "{}",
                out.error_summary()
            );
        }
    }

    #[test]
    fn exit_status_from_a_code() {
        assert_eq!(exit_status(3).code(), Some(3));
        assert!(exit_status(0).success());
        assert_eq!(exit_status(143).code(), Some(143));
    }

    #[test]
    fn display_quotes_what_needs_it() {
        let argv = Argv::new("podman").args(["run", "a b", "it's"]);
        assert_eq!(argv.display(), "podman run 'a b' 'it'\\''s'");
    }
}
