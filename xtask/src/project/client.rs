//! A BOINC 8.2 client (built by `cargo xtask client`) attached to the
//! project as a volunteer's would be, run as root with its own data dir and
//! GUI RPC port, and driven with `boinccmd`.
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PASSWORD: &str = "docker_wrapper";
/// The client's own log (its event log, as `boinccmd --get_messages` also shows).
pub const CLIENT_LOG: &str = "stdoutdae.txt";

/// A task as `boinccmd --get_tasks` shows it.
#[derive(Clone, Debug, Default)]
pub struct Task {
    pub name: String,
    pub state: String,
    pub active_state: String,
    pub suspended: bool,
    pub elapsed: f64,
}

pub struct Client {
    pub dir: PathBuf,
    bin_dir: PathBuf,
    path: OsString,
    port: u16,
    child: Option<Child>,
}

impl Client {
    /// Starts a client in `dir` (made afresh) with `path` as its PATH (which
    /// decides the container engine it finds).
    pub fn start(bin_dir: &Path, dir: &Path, path: OsString, port: u16) -> Result<Client> {
        for program in ["boinc", "boinccmd"] {
            if !bin_dir.join(program).exists() {
                bail!(
                    "{} is missing: run `cargo xtask client` first",
                    bin_dir.join(program).display()
                );
            }
        }
        let _ = fs::remove_dir_all(dir);
        fs::create_dir_all(dir)?;
        fs::write(dir.join("gui_rpc_auth.cfg"), PASSWORD)?;
        // No CPU benchmarks at first start (the client runs nothing before
        // they end); several clients on one host; the scheduler's and the
        // tasks' steps in the log.
        fs::write(
            dir.join("cc_config.xml"),
            "<cc_config>\n  <options>\n    <skip_cpu_benchmarks>1</skip_cpu_benchmarks>\n    \
             <allow_multiple_clients>1</allow_multiple_clients>\n  </options>\n  <log_flags>\n    \
             <sched_op_debug>1</sched_op_debug>\n    <task_debug>1</task_debug>\n  </log_flags>\n</cc_config>\n",
        )?;
        // Compute whatever else the host does: by default the client
        // suspends work while other programs use more than half the CPU,
        // which on a busy build machine is most of the time.
        fs::write(
            dir.join("global_prefs_override.xml"),
            "<global_preferences>\n  <run_if_user_active>1</run_if_user_active>\n  \
             <suspend_cpu_usage>0</suspend_cpu_usage>\n  <cpu_usage_limit>100</cpu_usage_limit>\n  \
             <max_ncpus_pct>100</max_ncpus_pct>\n</global_preferences>\n",
        )?;
        let mut client = Client {
            dir: dir.to_path_buf(),
            bin_dir: bin_dir.to_path_buf(),
            path,
            port,
            child: None,
        };
        client.launch()?;
        Ok(client)
    }

    fn launch(&mut self) -> Result<()> {
        let log = |name: &str| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(name))
        };
        let child = Command::new(self.bin_dir.join("boinc"))
            .arg("--dir")
            .arg(&self.dir)
            .args([
                "--gui_rpc_port",
                &self.port.to_string(),
                "--allow_multiple_clients",
            ])
            .current_dir(&self.dir)
            .env("PATH", &self.path)
            .env_remove("DOCKER_WRAPPER_ENGINE")
            .stdin(Stdio::null())
            .stdout(log("client.out")?)
            .stderr(log("client.err")?)
            .spawn()
            .context("cannot start the BOINC client")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.boinccmd(&["--get_cc_status"]).is_ok() {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "the client in {} exited at start ({status}); see its client.err",
                    self.dir.display()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "the client's GUI RPC on port {} did not answer within 60 s; see {}",
                    self.port,
                    self.dir.join(CLIENT_LOG).display()
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// `boinccmd --host 127.0.0.1:PORT --passwd PW ARGS`, bounded to 60 s.
    pub fn boinccmd(&self, args: &[&str]) -> Result<String> {
        let mut child = Command::new(self.bin_dir.join("boinccmd"))
            .args([
                "--host",
                &format!("127.0.0.1:{}", self.port),
                "--passwd",
                PASSWORD,
            ])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run boinccmd")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait()?.is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("boinccmd {} did not finish within 60 s", args.join(" "));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "boinccmd {} failed: {}{}",
                args.join(" "),
                text,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(text)
    }

    pub fn attach(&self, url: &str, authenticator: &str) -> Result<()> {
        self.boinccmd(&["--project_attach", url, authenticator])?;
        Ok(())
    }

    /// Asks the scheduler at once (a client backs off after "no work").
    pub fn update(&self, url: &str) {
        let _ = self.boinccmd(&["--project", url, "update"]);
    }

    pub fn task_op(&self, url: &str, task: &str, op: &str) -> Result<()> {
        self.boinccmd(&["--task", url, task, op])?;
        Ok(())
    }

    pub fn tasks(&self) -> Vec<Task> {
        self.boinccmd(&["--get_tasks"])
            .map(|text| parse_tasks(&text))
            .unwrap_or_default()
    }

    /// The event log.
    pub fn messages(&self) -> String {
        self.boinccmd(&["--get_messages"]).unwrap_or_default()
    }

    /// The `init_data.xml` of the slot running `task`, if one does.
    pub fn init_data_of(&self, task: &str) -> Option<String> {
        let slots = fs::read_dir(self.dir.join("slots")).ok()?;
        slots
            .flatten()
            .filter_map(|slot| fs::read_to_string(slot.path().join("init_data.xml")).ok())
            .find(|xml| xml.contains(&format!("<result_name>{task}</result_name>")))
    }

    /// The file `name` in the slot running `task`, if one does.
    pub fn slot_file_of(&self, task: &str, name: &str) -> Option<String> {
        let slots = fs::read_dir(self.dir.join("slots")).ok()?;
        slots
            .flatten()
            .find(|slot| {
                fs::read_to_string(slot.path().join("init_data.xml"))
                    .is_ok_and(|xml| xml.contains(&format!("<result_name>{task}</result_name>")))
            })
            .and_then(|slot| fs::read_to_string(slot.path().join(name)).ok())
    }

    /// Quits the client (its apps are told to quit), waits for it, starts it again.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.launch()
    }

    /// Quits the client and waits for it (killed after 90 s).
    pub fn stop(&mut self) -> Result<()> {
        let _ = self.boinccmd(&["--quit"]);
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        while child.try_wait()?.is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "the client in {} did not quit within 90 s (killed); see {}",
                    self.dir.display(),
                    self.dir.join(CLIENT_LOG).display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join(CLIENT_LOG)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Leaves the client running (`--keep`): `quit_left_running` on the
    /// parent dir stops it later.
    pub fn leave_running(mut self) {
        let note = format!(
            "{}\n{}\n",
            self.bin_dir.join("boinccmd").display(),
            self.port
        );
        let _ = fs::write(self.dir.with_extension("left_running"), note);
        // Not waited for: it outlives this process.
        drop(self.child.take());
    }
}

/// Quits every client `leave_running` left in `clients_dir`.
pub fn quit_left_running(clients_dir: &Path) {
    let Ok(entries) = fs::read_dir(clients_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "left_running") {
            continue;
        }
        if let Ok(note) = fs::read_to_string(&path) {
            let mut lines = note.lines();
            if let (Some(boinccmd), Some(port)) = (lines.next(), lines.next()) {
                let _ = Command::new(boinccmd)
                    .args([
                        "--host",
                        &format!("127.0.0.1:{port}"),
                        "--passwd",
                        PASSWORD,
                        "--quit",
                    ])
                    .status();
            }
        }
        let _ = fs::remove_file(path);
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
    }
}

fn parse_tasks(text: &str) -> Vec<Task> {
    let mut tasks = Vec::new();
    let mut current: Option<Task> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.ends_with(") -----------") {
            tasks.extend(current.take());
            current = Some(Task::default());
            continue;
        }
        let Some(task) = current.as_mut() else {
            continue;
        };
        let Some((key, value)) = line.split_once(": ") else {
            continue;
        };
        let value = value.trim().to_string();
        match key {
            "name" => task.name = value,
            "state" => task.state = value,
            "active_task_state" => task.active_state = value,
            "suspended via GUI" => task.suspended = value == "yes",
            "elapsed task time" => task.elapsed = value.parse().unwrap_or(0.0),
            _ => {}
        }
    }
    tasks.extend(current);
    tasks
}

/// A loopback port nobody listens on now.
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::parse_tasks;

    #[test]
    fn tasks_are_read_from_boinccmd() {
        let text = "\n======== Tasks ========\n1) -----------\n   name: wu_1_0\n   WU name: wu_1\n   \
                    state: downloaded\n   active_task_state: EXECUTING\n   suspended via GUI: no\n   \
                    elapsed task time: 12.5\n2) -----------\n   name: wu_2_0\n   state: uploading\n";
        let tasks = parse_tasks(text);
        assert_eq!(tasks.len(), 2);
        assert_eq!(tasks[0].name, "wu_1_0");
        assert_eq!(tasks[0].active_state, "EXECUTING");
        assert_eq!(tasks[0].elapsed, 12.5);
        assert_eq!(tasks[1].state, "uploading");
    }
}
