//! Bare engine commands timed in the same run as the wrapper: `ENGINE run -d`
//! of the bench image and `ENGINE pause` of its container. The wrapper's start
//! and suspend are reported as ratios to them, which hold across machines
//! where milliseconds do not.
use std::fs;
use std::io::Read;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use dw_test_support::{TempDir, TestEngine};

use crate::probe::{container_pid, interrupted, sleep, Freezer};

/// The bench jobs' first action (`touch started` in the workdir, the mounted
/// slot for the wrapper's tasks), then a wait that a `pause` can freeze.
const SCRIPT: &str = "touch started; while [ ! -f go ]; do sleep 0.05; done\n";
const TIMEOUT: Duration = Duration::from_secs(60);
/// The image's workdir, where its command runs `./main.sh` (tests/support/src/jobs.rs).
const WORKDIR: &str = "/app";

/// One bare `run -d` and one bare `pause`, in milliseconds.
pub struct BareRun {
    /// `run -d` spawned -> `started` seen in the mounted dir: the end point
    /// of the wrapper's start, so the ratio compares like with like.
    pub run_ms: f64,
    /// `run -d` spawned -> it returned (it returns once the container is started).
    pub run_returned_ms: f64,
    /// `pause` spawned -> the container's freezer says FROZEN: the end point
    /// of the wrapper's suspend.
    pub pause_ms: f64,
    /// `pause` spawned -> it returned.
    pub pause_returned_ms: f64,
    pub method: &'static str,
}

/// A container this module created: removed (unpaused first) on every path.
struct Created<'a> {
    engine: &'a TestEngine,
    name: String,
}

impl Drop for Created<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.engine.remove_container(&self.name) {
            eprintln!("warning: bare container {} left behind: {e}", self.name);
        }
    }
}

/// `ENGINE run -d --name N -v DIR:/app IMAGE` (the image's own command, which
/// runs main.sh from the mounted dir), then `ENGINE pause N`; the container is
/// removed afterwards. `n` makes the name unique within this process.
pub fn bare_run(engine: &TestEngine, image: &str, n: usize) -> Result<BareRun, String> {
    let dir = TempDir::new("bench_bare").map_err(|e| format!("cannot create a temp dir: {e}"))?;
    fs::write(dir.path().join("main.sh"), SCRIPT)
        .map_err(|e| format!("cannot write main.sh: {e}"))?;
    let name = format!(
        "dw_bench_bare_{}_{}_{n}",
        engine.kind().name(),
        std::process::id()
    );
    // Armed before the container exists: a failed or interrupted run removes it too.
    let created = Created { engine, name };
    let name = created.name.as_str();
    let started = dir.path().join("started");
    let volume = format!("{}:{WORKDIR}", dir.path().display());

    let t0 = Instant::now();
    let child = spawn(engine, &["run", "-d", "--name", name, "-v", &volume, image])?;
    let (run, run_returned) = watch(child, t0, || started.exists(), "run -d")?;

    let cpid = container_pid(engine, name).ok_or(format!("no pid for container {name}"))?;
    let freezer = Freezer::find(cpid, engine, name);
    // As the wrapper's suspend does: pause a container that has run a while.
    sleep(Duration::from_millis(500))?;
    let t0 = Instant::now();
    let child = spawn(engine, &["pause", name])?;
    let (pause, pause_returned) = watch(child, t0, || freezer.frozen() == Some(true), "pause")?;
    let _ = engine.run(["unpause", name]);
    drop(created);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok(BareRun {
        run_ms: ms(run),
        run_returned_ms: ms(run_returned),
        pause_ms: ms(pause),
        pause_returned_ms: ms(pause_returned),
        method: freezer.method(),
    })
}

fn spawn(engine: &TestEngine, args: &[&str]) -> Result<Child, String> {
    engine
        .command(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {} {}: {e}", engine.kind().name(), args[0]))
}

/// Polls (every ~1 ms) until `done` is true and `child` has exited with
/// success; the times since `t0` of both. The child is killed on failure.
fn watch(
    mut child: Child,
    t0: Instant,
    mut done: impl FnMut() -> bool,
    what: &str,
) -> Result<(Duration, Duration), String> {
    let (mut seen, mut returned) = (None, None);
    let result = loop {
        if seen.is_none() && done() {
            seen = Some(t0.elapsed());
        }
        if returned.is_none() {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => returned = Some(t0.elapsed()),
                Ok(Some(status)) => {
                    let mut stderr = String::new();
                    if let Some(mut pipe) = child.stderr.take() {
                        let _ = pipe.read_to_string(&mut stderr);
                    }
                    break Err(format!("{what} failed ({status}): {}", stderr.trim()));
                }
                Ok(None) => {}
                Err(e) => break Err(format!("{what}: {e}")),
            }
        }
        if let (Some(s), Some(r)) = (seen, returned) {
            break Ok((s, r));
        }
        if interrupted() {
            break Err("interrupted".into());
        }
        if t0.elapsed() > TIMEOUT {
            break Err(format!(
                "{what}: {} within {TIMEOUT:?}",
                if returned.is_some() {
                    "the container never got there"
                } else {
                    "the command did not return"
                }
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    if result.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    result
}
