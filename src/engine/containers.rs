//! What running and supervising one container asks of an engine, as a
//! trait: the seam between the task and the engine. `Engine` implements it
//! here with CLI commands on the container's name (create and start, read
//! its state, pause, stop, kill and remove it, its networks and its log);
//! the unit tests of the supervision paths use a recording fake instead
//! (`engine::fake`).
use std::time::Duration;

use super::exit_watch::{ExitWatch, ExitWatcher};
use super::process::{self, Limits};
use super::state::STATE_FORMAT;
use super::stats::{self, Stats};
use super::{
    create, facts, ContainerState, CreateSpec, Engine, EngineError, EngineKind, Failure, Known,
    COMMAND_CAPTURE,
};

/// The engine's operations on a named container. Errors are typed
/// (`EngineError::failure`): callers never read the engine's text.
pub trait ContainerEngine {
    /// The engine's version and cgroup driver: remembered for the host
    /// unless `fresh` (see `facts.rs`). Fails as the first command to an
    /// engine that is down would.
    fn facts(&self, fresh: bool) -> Result<Known, EngineError>;
    /// Creates and starts a container in one command (`run -d`). When it
    /// fails, a container may be left created but not started.
    fn run_container(&self, spec: &CreateSpec) -> Result<(), EngineError>;
    /// The container's state; None when no container has that name.
    fn find(&self, container: &str) -> Result<Option<ContainerState>, EngineError>;
    /// Like `find`, for a container known to exist (one command fewer).
    fn inspect(&self, container: &str) -> Result<Option<ContainerState>, EngineError>;
    fn start(&self, container: &str) -> Result<(), EngineError>;
    /// `cancel` is polled while the engine works: a hanging pause must not
    /// keep the caller from the client's requests.
    fn pause(&self, container: &str, cancel: &mut dyn FnMut() -> bool) -> Result<(), EngineError>;
    fn unpause(&self, container: &str) -> Result<(), EngineError>;
    /// SIGTERM, then SIGKILL after `grace`.
    fn stop(&self, container: &str, grace: Duration) -> Result<(), EngineError>;
    /// SIGKILL to the container's processes; failures are only logged (one
    /// that is not running is fine).
    fn kill(&self, container: &str);
    /// Removes the container, running or not; an absent one is fine.
    fn remove(&self, container: &str) -> Result<(), EngineError>;
    /// The last `max_bytes` of the container's output (stdout and stderr).
    fn logs_tail(&self, container: &str, max_bytes: usize) -> Result<String, EngineError>;
    /// The engine's own CPU and memory figures (`stats.rs`).
    fn stats(&self, container: &str) -> Result<Stats, EngineError>;
    /// The loopback host port published for the container's `guest` port.
    fn published_port(&self, container: &str, guest: u16) -> Option<u16>;
    /// The engine networks the container is on, leaving out network modes
    /// nobody can leave.
    fn networks(&self, container: &str) -> Result<Vec<String>, EngineError>;
    fn network_disconnect(&self, container: &str, network: &str) -> Result<(), EngineError>;
    fn network_connect(&self, container: &str, network: &str) -> Result<(), EngineError>;
    /// Whether a paused container can be connected to a network.
    fn reconnects_paused_containers(&self) -> bool;
    /// Whether a container's pid is one of this host's processes: not
    /// through WSL, nor in the engine's VM on macOS.
    fn shares_host_pids(&self) -> bool;
    /// Starts watching for the container's exit; `pid`: its init's host
    /// pid, when known.
    fn watch_exit<'a>(
        &'a self,
        container: &'a str,
        pid: Option<u32>,
    ) -> Result<Box<dyn ExitWatcher + 'a>, EngineError>;
}

impl ContainerEngine for Engine {
    fn facts(&self, fresh: bool) -> Result<Known, EngineError> {
        // The key is read once, before asking: answers are recorded under
        // the key of the engine they came from.
        let key = self.facts_key();
        let record = self.facts_file.as_deref().zip(key.as_deref());
        if !fresh {
            if let Some(facts) = record.and_then(|(file, key)| facts::load(file, key, self.kind)) {
                return Ok(Known {
                    facts,
                    remembered: true,
                });
            }
        }
        let (facts, complete) = self.ask_facts()?;
        if let Some((file, key)) = record.filter(|_| complete) {
            facts::store(file, key, &facts);
        }
        Ok(Known {
            facts,
            remembered: false,
        })
    }

    fn run_container(&self, spec: &CreateSpec) -> Result<(), EngineError> {
        self.run(create::run_args(self.kind, spec)).map(|_| ())
    }

    /// Asks whether the container exists first: one command instead of
    /// two when it does not (every fresh start).
    fn find(&self, container: &str) -> Result<Option<ContainerState>, EngineError> {
        if self.container_exists(container)? {
            self.inspect(container)
        } else {
            Ok(None)
        }
    }

    fn inspect(&self, container: &str) -> Result<Option<ContainerState>, EngineError> {
        let argv = self.argv(["container", "inspect", "--format", STATE_FORMAT, container]);
        let out = match self.run_checked(&argv, self.limits(), &mut || false) {
            Ok(out) => out,
            Err(err) if self.is_absent(container, &err)? => return Ok(None),
            Err(err) => return Err(err),
        };
        ContainerState::parse(&out.stdout).map(Some).ok_or_else(|| {
            let output = process::excerpt(out.stdout.trim(), process::MESSAGE_MAX_CHARS);
            EngineError::other(
                argv.display(),
                format!("unexpected inspect output {output:?}"),
            )
        })
    }

    fn start(&self, container: &str) -> Result<(), EngineError> {
        self.run(["start", container]).map(|_| ())
    }

    fn pause(&self, container: &str, cancel: &mut dyn FnMut() -> bool) -> Result<(), EngineError> {
        let argv = self.argv(["pause", container]);
        self.run_checked(&argv, self.limits(), cancel).map(|_| ())
    }

    fn unpause(&self, container: &str) -> Result<(), EngineError> {
        self.run(["unpause", container]).map(|_| ())
    }

    fn stop(&self, container: &str, grace: Duration) -> Result<(), EngineError> {
        let grace_secs = grace.as_secs().to_string();
        let argv = self.argv(["stop", "-t", &grace_secs, container]);
        let limits = Limits {
            timeout: self.timeout + grace,
            capture: COMMAND_CAPTURE,
        };
        self.run_checked(&argv, limits, &mut || false).map(|_| ())
    }

    fn kill(&self, container: &str) {
        let argv = self.argv(["kill", container]);
        match self.run_argv(&argv, self.limits(), &mut || false) {
            Ok(out) if !out.success() => log::debug!("{}: {}", argv.display(), out.error_summary()),
            Ok(_) => {}
            Err(err) => log::warn!("{err}"),
        }
    }

    fn remove(&self, container: &str) -> Result<(), EngineError> {
        let argv = self.argv(["rm", "-f", container]);
        match self.run_checked(&argv, self.limits(), &mut || false) {
            Ok(_) => Ok(()),
            Err(err) if self.is_absent(container, &err)? => Ok(()),
            Err(err) => Err(err),
        }
    }

    fn logs_tail(&self, container: &str, max_bytes: usize) -> Result<String, EngineError> {
        // --tail bounds the engine's work; the capture bounds ours.
        let lines = (max_bytes / 16).clamp(100, 100_000).to_string();
        let argv = self.argv(["logs", "--tail", &lines, container]);
        let limits = Limits {
            timeout: self.timeout,
            capture: max_bytes,
        };
        let out = self.run_checked(&argv, limits, &mut || false)?;
        // The container's stdout and stderr arrive on our two pipes.
        let mut text = out.stdout;
        if !out.stderr.is_empty() {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&out.stderr);
        }
        Ok(text)
    }

    /// One `stats --no-stream` (Docker's takes about a second: it samples).
    fn stats(&self, container: &str) -> Result<Stats, EngineError> {
        let format = match self.kind {
            EngineKind::Podman => "{{.CPUNano}}|{{.MemUsage}}",
            EngineKind::Docker => "{{.CPUPerc}}|{{.MemUsage}}",
        };
        let out = self.run(["stats", "--no-stream", "--format", format, container])?;
        stats::parse(self.kind, &out.stdout).ok_or_else(|| {
            EngineError::other(
                "stats".into(),
                format!("unexpected output {:?}", out.stdout.trim()),
            )
        })
    }

    fn published_port(&self, container: &str, guest: u16) -> Option<u16> {
        let out = self.run(["port", container, &guest.to_string()]).ok()?;
        out.stdout
            .lines()
            .find_map(|line| line.trim().rsplit_once(':')?.1.parse().ok())
    }

    /// Empty for network modes without a network (Podman's none, host,
    /// slirp4netns, pasta); Docker lists its "none" and "host" modes as
    /// networks of those names, which nobody can leave: they are left out.
    fn networks(&self, container: &str) -> Result<Vec<String>, EngineError> {
        const MODES: &[&str] = &["none", "host"];
        let format = "{{range $name, $net := .NetworkSettings.Networks}}{{println $name}}{{end}}";
        let out = self.run(["container", "inspect", "--format", format, container])?;
        Ok(out
            .stdout
            .lines()
            .map(str::trim)
            .filter(|n| !n.is_empty() && !MODES.contains(n))
            .map(String::from)
            .collect())
    }

    fn network_disconnect(&self, container: &str, network: &str) -> Result<(), EngineError> {
        self.run(["network", "disconnect", network, container])
            .map(|_| ())
    }

    fn network_connect(&self, container: &str, network: &str) -> Result<(), EngineError> {
        self.run(["network", "connect", network, container])
            .map(|_| ())
    }

    /// Docker connects a paused container to a network; Podman must see
    /// it running.
    fn reconnects_paused_containers(&self) -> bool {
        self.kind == EngineKind::Docker
    }

    fn shares_host_pids(&self) -> bool {
        self.transport.is_local() && !self.in_vm
    }

    fn watch_exit<'a>(
        &'a self,
        container: &'a str,
        pid: Option<u32>,
    ) -> Result<Box<dyn ExitWatcher + 'a>, EngineError> {
        Ok(Box::new(ExitWatch::start(self, container, pid)?))
    }
}

impl Engine {
    fn container_exists(&self, container: &str) -> Result<bool, EngineError> {
        let out = self.run([
            "ps",
            "-a",
            "--format",
            "{{.Names}}",
            "--filter",
            &format!("name=^{container}$"),
        ])?;
        Ok(out.stdout.lines().any(|name| name.trim() == container))
    }

    /// Whether `err`, from a command on `container`, means there is no
    /// such container: the engine says so, or, if it says something else,
    /// asking for the exact name tells. An engine that does not answer is
    /// no answer.
    fn is_absent(&self, container: &str, err: &EngineError) -> Result<bool, EngineError> {
        if err.unavailable().is_some() || matches!(err, EngineError::Cancelled) {
            return Ok(false);
        }
        Ok(err.failure() == Failure::NotFound || !self.container_exists(container)?)
    }

    /// Starts `wait` as a long-lived child; its exit reports the container's.
    /// Local transport only: a shell runs one command at a time.
    pub(super) fn spawn_wait(&self, container: &str) -> Result<std::process::Child, EngineError> {
        if !self.transport.is_local() {
            return Err(EngineError::Unavailable(
                "a long-lived 'wait' needs local engine commands".into(),
            ));
        }
        let mut argv = self.argv(["wait"]);
        if self.kind == EngineKind::Podman {
            // Podman's wait polls (250 ms by default); we learn of the exit from
            // the container's pid instead where we can, so poll rarely.
            argv = argv.args(["--interval", "2s"]);
        }
        let argv = argv.arg(container);
        log::debug!("engine: {}", argv.display());
        let mut cmd = argv.command();
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        cmd.spawn()
            .map_err(|e| EngineError::Unavailable(format!("cannot run {}: {e}", argv.display())))
    }

    /// Waits (bounded) for the container to exit and returns its exit code.
    pub(super) fn wait(&self, container: &str) -> Result<i32, EngineError> {
        let out = self.run(["wait", container])?;
        out.stdout
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .next_back()
            .ok_or_else(|| {
                EngineError::other(
                    format!("{} wait {container}", self.cli.display()),
                    format!("unexpected output {:?}", out.stdout.trim()),
                )
            })
    }
}
