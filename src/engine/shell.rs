//! One long-lived POSIX shell that runs engine commands one at a time: on
//! Windows `wsl -d <distro> -u root --exec /bin/sh`, elsewhere any `sh`.
//!
//! Each command is one line written to the shell's stdin, every argument
//! quoted by [`quote`] (the only place in the wrapper that turns data into
//! shell text). The shell runs it in the background with stdin from
//! /dev/null and stdout/stderr into temporary files, prints
//! `<id> pid <pid>` at once and, when it ends, `<id> end <status> <n> <m>`
//! followed by exactly the last `n` bytes of stdout and `m` of stderr.
//! The id is a random per-process marker plus a sequence number, and the
//! output is read by length, never scanned, so nothing a job prints can end
//! a command early or pass for the end of another one.
use std::collections::hash_map::RandomState;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::process::Argv;

/// Defines `dw_run` in the shell. Fixed text: commands reach it only as
/// quoted arguments. `tail -c` bounds what crosses the pipe, as the local
/// transport bounds what it keeps.
const PRELUDE: &str = r#"
dw_tmp=$(mktemp -d 2>/dev/null || { d=/tmp/docker_wrapper.$$; mkdir -m 700 "$d" && echo "$d"; })
[ -d "$dw_tmp" ] || exit 97
trap 'rm -rf "$dw_tmp"' EXIT
dw_keep() {
    if [ -s "$dw_tmp/$1" ]; then
        tail -c "$2" "$dw_tmp/$1" > "$dw_tmp/$1.kept"; wc -c < "$dw_tmp/$1.kept"
    else
        : > "$dw_tmp/$1.kept"; echo 0
    fi
}
dw_run() {
    dw_id=$1; dw_dir=$2; dw_limit=$3; shift 3
    (cd "${dw_dir:-.}" && exec "$@") </dev/null >"$dw_tmp/out" 2>"$dw_tmp/err" &
    dw_pid=$!
    printf '%s pid %s\n' "$dw_id" "$dw_pid"
    wait "$dw_pid"
    dw_status=$?
    printf '%s end %s %s %s\n' "$dw_id" "$dw_status" "$(dw_keep out "$dw_limit")" "$(dw_keep err "$dw_limit")"
    cat "$dw_tmp/out.kept" "$dw_tmp/err.kept"
}
"#;

/// Bytes of the shell's own stderr kept to explain a failure.
const SHELL_STDERR_KEPT: usize = 4096;

/// Quotes one argument for POSIX sh: inside single quotes nothing is
/// special, and a single quote is written as `'\''`. NUL cannot be passed
/// in an argument at all, and the shell reads UTF-8.
pub fn quote(arg: &OsStr) -> Result<String, Unquotable> {
    let text = arg
        .to_str()
        .ok_or_else(|| Unquotable::NotUtf8(arg.to_os_string()))?;
    if text.contains('\0') {
        return Err(Unquotable::Nul(text.to_string()));
    }
    Ok(format!("'{}'", text.replace('\'', r"'\''")))
}

/// An argument that cannot be written on the shell's command line.
#[derive(Debug, Clone, PartialEq)]
pub enum Unquotable {
    NotUtf8(OsString),
    Nul(String),
}

impl fmt::Display for Unquotable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unquotable::NotUtf8(arg) => write!(f, "argument {arg:?} is not valid UTF-8"),
            Unquotable::Nul(text) => write!(f, "argument {text:?} contains a NUL byte"),
        }
    }
}

impl std::error::Error for Unquotable {}

/// What the shell reported about the running command.
#[derive(Debug, PartialEq)]
pub enum Event {
    /// The command's pid inside the shell's system (what `kill` needs).
    Started { pid: u32 },
    Ended {
        status: i32,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
    },
}

/// The shell is gone or talks nonsense; the session cannot be used again.
/// The text says what was seen, with the shell's exit status and last words.
#[derive(Debug, Clone, PartialEq)]
pub struct Lost(pub String);

impl fmt::Display for Lost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Lost {}

/// A command that was sent and not yet seen to end.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandId(String);

pub struct ShellSession {
    child: Child,
    stdin: ChildStdin,
    /// Chunks of the shell's stdout; None once it closed.
    output: Receiver<Option<Vec<u8>>>,
    closed: bool,
    buffer: Vec<u8>,
    shell_stderr: Arc<Mutex<Vec<u8>>>,
    marker: String,
    sent: u64,
    launcher: String,
}

impl ShellSession {
    /// Starts the shell and waits (up to `timeout`) until it has run the prelude.
    pub fn start(launcher: &Argv, timeout: Duration) -> Result<ShellSession, Lost> {
        let mut command = launcher.command();
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(|e| Lost(format!("cannot run {}: {e}", launcher.display())))?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let output = forward_chunks(child.stdout.take().expect("stdout is piped"));
        let shell_stderr = keep_tail(child.stderr.take().expect("stderr is piped"));
        let mut session = ShellSession {
            child,
            stdin,
            output,
            closed: false,
            buffer: Vec::new(),
            shell_stderr,
            marker: random_marker(),
            sent: 0,
            launcher: launcher.display(),
        };
        let ready = format!(
            "{PRELUDE}printf '%s ready\\n' {}\n",
            quote(OsStr::new(&session.marker)).expect("ASCII")
        );
        let started = session
            .write(&ready)
            .and_then(|()| session.wait_for_ready(timeout));
        match started {
            Ok(()) => Ok(session),
            Err(Lost(why)) => {
                session.kill();
                Err(Lost(why))
            }
        }
    }

    fn wait_for_ready(&mut self, timeout: Duration) -> Result<(), Lost> {
        let deadline = Instant::now() + timeout;
        let ready = format!("{} ready", self.marker);
        loop {
            while let Some(line) = self.take_line() {
                if line.trim_end() == ready {
                    return Ok(());
                }
                log::debug!("{}: {}", self.launcher, line.trim_end());
            }
            if !self.receive(deadline)? {
                return Err(self.lost(format!(
                    "{} did not start within {}s",
                    self.launcher,
                    timeout.as_secs()
                )));
            }
        }
    }

    /// Writes `argv` as one `dw_run` line; `cwd` is in the shell's view.
    pub fn send(
        &mut self,
        argv: &Argv,
        cwd: Option<&OsStr>,
        keep_bytes: usize,
    ) -> Result<CommandId, SendError> {
        self.sent += 1;
        let id = format!("{}-{}", self.marker, self.sent);
        let line = command_line(&id, argv, cwd, keep_bytes).map_err(SendError::Unquotable)?;
        self.write(&line).map_err(SendError::Lost)?;
        Ok(CommandId(id))
    }

    /// The next report about `id`, waiting until `until`; None if none came.
    pub fn next_event(&mut self, id: &CommandId, until: Instant) -> Result<Option<Event>, Lost> {
        loop {
            if let Some(event) = self.parse_event(id)? {
                return Ok(Some(event));
            }
            if !self.receive(until)? {
                return Ok(None);
            }
        }
    }

    fn parse_event(&mut self, id: &CommandId) -> Result<Option<Event>, Lost> {
        let tag = format!("{} ", id.0);
        loop {
            let Some(end) = self.buffer.iter().position(|&b| b == b'\n') else {
                return Ok(None);
            };
            let line = String::from_utf8_lossy(&self.buffer[..end]).into_owned();
            let Some(report) = line.find(&tag).map(|at| line[at + tag.len()..].to_string()) else {
                // Earlier commands' reports (one abandoned after a kill) or stray shell output.
                log::debug!("{}: ignoring {:?}", self.launcher, line);
                self.buffer.drain(..=end);
                continue;
            };
            let fields: Vec<&str> = report.split_whitespace().collect();
            match fields.as_slice() {
                ["pid", pid] => {
                    let pid = pid
                        .parse()
                        .map_err(|_| self.lost(format!("bad report {line:?}")))?;
                    self.buffer.drain(..=end);
                    return Ok(Some(Event::Started { pid }));
                }
                ["end", status, out_len, err_len] => {
                    let parsed = (
                        status.parse::<i32>(),
                        out_len.parse::<usize>(),
                        err_len.parse::<usize>(),
                    );
                    let (Ok(status), Ok(out_len), Ok(err_len)) = parsed else {
                        return Err(self.lost(format!("bad report {line:?}")));
                    };
                    if self.buffer.len() < end + 1 + out_len + err_len {
                        return Ok(None);
                    }
                    self.buffer.drain(..=end);
                    let stdout: Vec<u8> = self.buffer.drain(..out_len).collect();
                    let stderr: Vec<u8> = self.buffer.drain(..err_len).collect();
                    return Ok(Some(Event::Ended {
                        status,
                        stdout,
                        stderr,
                    }));
                }
                _ => return Err(self.lost(format!("bad report {line:?}"))),
            }
        }
    }

    /// Moves one chunk of output into the buffer; false when `until` passed first.
    fn receive(&mut self, until: Instant) -> Result<bool, Lost> {
        if self.closed {
            return Err(self.lost(format!("{} exited", self.launcher)));
        }
        let wait = until.saturating_duration_since(Instant::now());
        match self.output.recv_timeout(wait) {
            Ok(Some(chunk)) => {
                self.buffer.extend_from_slice(&chunk);
                Ok(true)
            }
            Ok(None) | Err(RecvTimeoutError::Disconnected) => {
                self.closed = true;
                // The shell closed its stdout: let it finish exiting, for its status.
                let deadline = Instant::now() + Duration::from_millis(500);
                while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                    thread::sleep(Duration::from_millis(10));
                }
                Err(self.lost(format!("{} exited", self.launcher)))
            }
            Err(RecvTimeoutError::Timeout) => Ok(false),
        }
    }

    fn take_line(&mut self) -> Option<String> {
        let end = self.buffer.iter().position(|&b| b == b'\n')?;
        let line = String::from_utf8_lossy(&self.buffer[..=end]).into_owned();
        self.buffer.drain(..=end);
        Some(line)
    }

    fn write(&mut self, text: &str) -> Result<(), Lost> {
        let written = self
            .stdin
            .write_all(text.as_bytes())
            .and_then(|()| self.stdin.flush());
        written.map_err(|e| self.lost(format!("cannot write to {}: {e}", self.launcher)))
    }

    /// True while the shell runs and its output is open.
    pub fn is_alive(&mut self) -> bool {
        !self.closed && matches!(self.child.try_wait(), Ok(None))
    }

    /// Ends the shell (and, where process groups exist, what it runs).
    pub fn kill(&mut self) {
        super::process::terminate(&mut self.child);
        self.closed = true;
    }

    /// A failure, with what the shell said on stderr and how it exited.
    fn lost(&mut self, why: String) -> Lost {
        let mut why = why;
        if let Ok(Some(status)) = self.child.try_wait() {
            why.push_str(&format!(" ({status})"));
        }
        let said = readable(
            &self
                .shell_stderr
                .lock()
                .map(|s| s.clone())
                .unwrap_or_default(),
        );
        if !said.is_empty() {
            why.push_str(&format!("; it said: {said}"));
        }
        Lost(why)
    }
}

impl Drop for ShellSession {
    /// End of input makes the shell exit (and its EXIT trap remove its files).
    fn drop(&mut self) {
        let _ = self.stdin.write_all(b"exit\n");
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        self.kill();
    }
}

#[derive(Debug)]
pub enum SendError {
    /// An argument cannot be passed through a shell (NUL, not UTF-8).
    Unquotable(Unquotable),
    Lost(Lost),
}

/// `dw_run <id> <cwd> <keep> [env K=V...] <program> <args...>`, every word quoted.
fn command_line(
    id: &str,
    argv: &Argv,
    cwd: Option<&OsStr>,
    keep_bytes: usize,
) -> Result<String, Unquotable> {
    let keep = keep_bytes.max(1).to_string();
    let mut words: Vec<&OsStr> = vec![
        OsStr::new(id),
        cwd.unwrap_or(OsStr::new("")),
        OsStr::new(&keep),
    ];
    let env: Vec<std::ffi::OsString> = argv
        .env
        .iter()
        .map(|(key, value)| {
            let mut pair = key.clone();
            pair.push("=");
            pair.push(value);
            pair
        })
        .collect();
    if !env.is_empty() {
        words.push(OsStr::new("env"));
        words.extend(env.iter().map(|pair| pair.as_os_str()));
    }
    words.push(&argv.program);
    words.extend(argv.args.iter().map(|a| a.as_os_str()));
    let quoted: Result<Vec<String>, Unquotable> = words.into_iter().map(quote).collect();
    Ok(format!("dw_run {}\n", quoted?.join(" ")))
}

/// 128 random bits: the standard library seeds each `RandomState` from the
/// operating system's random source, so its hashes are unpredictable.
fn random_marker() -> String {
    let word = || {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        hasher.finish()
    };
    format!("dw{:016x}{:016x}", word(), word())
}

/// Reads a pipe on a thread and sends what arrives; None at its end.
fn forward_chunks<R: Read + Send + 'static>(mut pipe: R) -> Receiver<Option<Vec<u8>>> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if sender.send(Some(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let _ = sender.send(None);
    });
    receiver
}

/// Drains a pipe on a thread, keeping its last bytes.
fn keep_tail<R: Read + Send + 'static>(mut pipe: R) -> Arc<Mutex<Vec<u8>>> {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&kept);
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            let Ok(mut kept) = sink.lock() else { break };
            kept.extend_from_slice(&buf[..n]);
            let excess = kept.len().saturating_sub(SHELL_STDERR_KEPT);
            kept.drain(..excess);
        }
    });
    kept
}

/// wsl.exe writes its own messages in UTF-16: drop the NULs so they read.
fn readable(bytes: &[u8]) -> String {
    let text: Vec<u8> = bytes.iter().copied().filter(|&b| b != 0).collect();
    super::process::last_lines(&String::from_utf8_lossy(&text), 3)
}
