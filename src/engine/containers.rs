//! Operations on one named container: create and start it, read its
//! state, pause, stop, kill and remove it, its networks, its log, and
//! waiting for its exit.
use std::time::Duration;

use super::process::{self, Limits};
use super::state::STATE_FORMAT;
use super::{create, ContainerState, Engine, EngineError, EngineKind, Failure, COMMAND_CAPTURE};

impl Engine {
    /// Creates and starts the container in one command. When it fails, a
    /// container may be left created but not started (the start failed).
    pub fn run_container(&self, spec: &create::CreateSpec) -> Result<(), EngineError> {
        self.run(create::run_args(self.kind, spec)).map(|_| ())
    }

    /// None when no container has that name.
    pub fn inspect(&self, container: &str) -> Result<Option<ContainerState>, EngineError> {
        let argv = self.argv(["container", "inspect", "--format", STATE_FORMAT, container]);
        let out = self.run_argv(&argv, self.limits(), &mut || false)?;
        if !out.success() {
            let err = self.failed(&argv, &out);
            if err.unavailable().is_some() {
                return Err(err);
            }
            // Absent containers make inspect fail: the engine says so, or,
            // if it says something else, asking for the exact name tells.
            if err.failure() == Failure::NotFound || !self.container_exists(container)? {
                return Ok(None);
            }
            return Err(err);
        }
        ContainerState::parse(&out.stdout)
            .map(Some)
            .ok_or_else(|| EngineError::Failed {
                command: argv.display(),
                detail: format!(
                    "unexpected inspect output {:?}",
                    process::excerpt(out.stdout.trim(), process::MESSAGE_MAX_CHARS)
                ),
            })
    }

    /// Like `inspect`, but asks whether the container exists first: one
    /// command instead of two when it does not (every fresh start).
    pub fn find(&self, container: &str) -> Result<Option<ContainerState>, EngineError> {
        if self.container_exists(container)? {
            self.inspect(container)
        } else {
            Ok(None)
        }
    }

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

    pub fn start(&self, container: &str) -> Result<(), EngineError> {
        self.run(["start", container]).map(|_| ())
    }

    /// The loopback host port published for the container's `guest` port.
    pub fn published_port(&self, container: &str, guest: u16) -> Option<u16> {
        let out = self.run(["port", container, &guest.to_string()]).ok()?;
        out.stdout
            .lines()
            .find_map(|line| line.trim().rsplit_once(':')?.1.parse().ok())
    }

    /// Pauses the container; `cancel` is polled while the engine works, so
    /// a hanging `pause` does not keep the caller from the client's requests.
    pub fn pause(
        &self,
        container: &str,
        cancel: &mut dyn FnMut() -> bool,
    ) -> Result<(), EngineError> {
        let argv = self.argv(["pause", container]);
        let out = self.run_argv(&argv, self.limits(), cancel)?;
        if out.success() {
            Ok(())
        } else {
            Err(self.failed(&argv, &out))
        }
    }

    pub fn unpause(&self, container: &str) -> Result<(), EngineError> {
        self.run(["unpause", container]).map(|_| ())
    }

    /// Docker connects a paused container to a network; Podman must see
    /// it running.
    pub fn reconnects_paused_containers(&self) -> bool {
        self.kind == EngineKind::Docker
    }

    /// Names of the engine networks the container is attached to. Empty for
    /// network modes without one (Podman's none, host, slirp4netns, pasta);
    /// Docker lists its "none" and "host" modes as networks of those names,
    /// which nobody can leave: they are left out.
    pub fn networks(&self, container: &str) -> Result<Vec<String>, EngineError> {
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

    pub fn network_disconnect(&self, container: &str, network: &str) -> Result<(), EngineError> {
        self.run(["network", "disconnect", network, container])
            .map(|_| ())
    }

    pub fn network_connect(&self, container: &str, network: &str) -> Result<(), EngineError> {
        self.run(["network", "connect", network, container])
            .map(|_| ())
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&self, container: &str, grace: Duration) -> Result<(), EngineError> {
        let grace_secs = grace.as_secs().to_string();
        let argv = self.argv(["stop", "-t", &grace_secs, container]);
        let limits = Limits {
            timeout: self.timeout + grace,
            capture: COMMAND_CAPTURE,
        };
        let out = self.run_argv(&argv, limits, &mut || false)?;
        if out.success() {
            Ok(())
        } else {
            Err(self.failed(&argv, &out))
        }
    }

    /// SIGKILL to the container's processes; one that is not running is fine.
    pub fn kill(&self, container: &str) {
        let argv = self.argv(["kill", container]);
        match self.run_argv(&argv, self.limits(), &mut || false) {
            Ok(out) if !out.success() => log::debug!("{}: {}", argv.display(), out.error_summary()),
            Ok(_) => {}
            Err(err) => log::warn!("{err}"),
        }
    }

    /// Removes the container, running or not; an absent one is fine.
    pub fn remove(&self, container: &str) -> Result<(), EngineError> {
        let argv = self.argv(["rm", "-f", container]);
        let out = self.run_argv(&argv, self.limits(), &mut || false)?;
        if out.success() {
            return Ok(());
        }
        let err = self.failed(&argv, &out);
        if err.unavailable().is_some() {
            return Err(err);
        }
        if err.failure() == Failure::NotFound || !self.container_exists(container)? {
            Ok(())
        } else {
            Err(err)
        }
    }

    /// The last `max_bytes` of the container's output (stdout and stderr).
    pub fn logs_tail(&self, container: &str, max_bytes: usize) -> Result<String, EngineError> {
        // --tail bounds the engine's work; the capture bounds ours.
        let lines = (max_bytes / 16).clamp(100, 100_000).to_string();
        let argv = self.argv(["logs", "--tail", &lines, container]);
        let limits = Limits {
            timeout: self.timeout,
            capture: max_bytes,
        };
        let out = self.run_argv(&argv, limits, &mut || false)?;
        if !out.success() {
            return Err(self.failed(&argv, &out));
        }
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

    /// Starts `wait` as a long-lived child; its exit reports the container's.
    /// Local transport only: a shell runs one command at a time.
    pub fn spawn_wait(&self, container: &str) -> Result<std::process::Child, EngineError> {
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
    pub fn wait(&self, container: &str) -> Result<i32, EngineError> {
        let out = self.run(["wait", container])?;
        out.stdout
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .next_back()
            .ok_or_else(|| EngineError::Failed {
                command: format!("{} wait {container}", self.cli.display()),
                detail: format!("unexpected output {:?}", out.stdout.trim()),
            })
    }
}
