//! The key task scenarios (output, exit code, suspend/resume, quit and
//! restart, abort), written once and run against any build of the wrapper:
//! the build under test (run_job and lifecycle of tests/suite/) and the
//! self-contained release files (dist), the shell transport
//! (wsl_transport). Each returns the task's last outcome, for checks of
//! its own.
use std::path::{Path, PathBuf};

use crate::{
    Control, EngineKind, Outcome, Task, TaskBuilder, TestEngine, TestJob, COUNTER_JOB, COUNT_WAIT,
    TASK_TIMEOUT,
};
use std::time::Duration;

/// Which wrapper binary a scenario runs, and how.
pub struct Wrapper {
    program: PathBuf,
    runner: Option<PathBuf>,
    exact: bool,
    /// Keeps the tasks of different wrappers apart (names, containers).
    label: String,
    env: Vec<(String, String)>,
}

impl Wrapper {
    /// The build under test; `DW_WRAPPER_BIN` replaces it when set.
    pub fn built(program: &str) -> Wrapper {
        Wrapper {
            program: PathBuf::from(program),
            runner: None,
            exact: false,
            label: String::new(),
            env: Vec::new(),
        }
    }

    /// Names its tasks `<label>_<test>`.
    pub fn labelled(mut self, label: &str) -> Wrapper {
        self.label = format!("{label}_");
        self
    }

    /// Starts it with this environment variable.
    pub fn env(mut self, name: &str, value: &str) -> Wrapper {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Exactly this file (a release file), started through `runner` if given.
    pub fn exact(label: &str, program: &Path, runner: Option<&Path>) -> Wrapper {
        Wrapper {
            program: program.to_path_buf(),
            runner: runner.map(Path::to_path_buf),
            exact: true,
            label: format!("{label}_"),
            env: Vec::new(),
        }
    }

    pub fn task(&self, test_name: &str, engine: &TestEngine) -> TaskBuilder {
        let name = format!("{}{test_name}", self.label);
        let mut builder = TaskBuilder::on_engine(&name, &self.program, engine);
        if self.exact {
            builder = builder.program_exact(&self.program);
        }
        for (name, value) in &self.env {
            builder = builder.env(name, value);
        }
        match &self.runner {
            Some(runner) => builder.runner(runner),
            None => builder,
        }
    }
}

pub fn output_reaches_the_slot(wrapper: &Wrapper, kind: EngineKind) -> Outcome {
    let engine = TestEngine::require(kind);
    let mut task = wrapper
        .task("success", &engine)
        .job(TestJob::shell(
            "echo hello from the job; echo result > output.txt",
        ))
        .start()
        .unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(0);
    assert_eq!(
        task.read_slot_file("output.txt").as_deref(),
        Some("result\n")
    );
    outcome.assert_said(&["hello from the job"]);
    engine.assert_no_container(&task);
    outcome
}

pub fn exit_code_is_forwarded(wrapper: &Wrapper, kind: EngineKind) -> Outcome {
    let engine = TestEngine::require(kind);
    let mut task = wrapper
        .task("exit3", &engine)
        .job(TestJob::shell("echo about to fail >&2; exit 3"))
        .start()
        .unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(3);
    outcome.assert_said(&["about to fail"]);
    engine.assert_no_container(&task);
    outcome
}

pub fn suspend_pauses_and_resume_unpauses(wrapper: &Wrapper, kind: EngineKind) -> Outcome {
    let engine = TestEngine::require(kind);
    let mut task = wrapper
        .task("suspend", &engine)
        .job(TestJob::shell(
            "while [ ! -f go ]; do sleep 0.1; done; echo finished",
        ))
        .start()
        .unwrap();
    let name = task.container_name();
    engine
        .wait_for_container_state(&name, "running", TASK_TIMEOUT)
        .unwrap();
    suspend_resume_and_release(&mut task, &engine)
}

/// Suspends and resumes the running task, checking the container each
/// time, then lets its job end (it waits for `go`) and checks the result.
fn suspend_resume_and_release(task: &mut Task, engine: &TestEngine) -> Outcome {
    let name = task.container_name();
    task.send_control(Control::Suspend);
    let paused = engine.wait_for_container_state(&name, "paused", Duration::from_secs(10));
    assert!(
        paused.is_ok(),
        "not paused: {paused:?}\n{}",
        task.logs_tail(30)
    );
    task.send_control(Control::Resume);
    let running = engine.wait_for_container_state(&name, "running", Duration::from_secs(10));
    assert!(
        running.is_ok(),
        "not resumed: {running:?}\n{}",
        task.logs_tail(30)
    );
    std::fs::write(task.slot_dir().join("go"), "").unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(0);
    engine.assert_no_container(task);
    outcome
}

/// While nothing happens, the wrapper's main thread sleeps until the next
/// periodic report (every two seconds): looking at the client's status
/// itself ten times a second would be 30 wake-ups in a window. The quietest of a
/// few windows counts: the first seconds after the start may still see the
/// image cache's sweep. Then a suspend still reaches it.
pub fn an_undisturbed_task_sleeps(wrapper: &Wrapper, kind: EngineKind) -> Outcome {
    const WINDOW: Duration = Duration::from_secs(3);
    const WINDOWS: usize = 5;
    const MOST: u64 = 9;
    let engine = TestEngine::require(kind);
    let mut task = wrapper
        .task("sleeps", &engine)
        .job(TestJob::shell("while [ ! -f go ]; do sleep 1; done"))
        .start()
        .unwrap();
    let name = task.container_name();
    engine
        .wait_for_container_state(&name, "running", TASK_TIMEOUT)
        .unwrap();
    let pid = task.pid().expect("the wrapper runs");
    let wake_ups =
        || crate::procfs::voluntary_switches(pid, pid).expect("the wrapper's /proc status");
    let mut windows: Vec<u64> = Vec::new();
    while windows.len() < WINDOWS && !windows.last().is_some_and(|woke| *woke <= MOST) {
        let before = wake_ups();
        std::thread::sleep(WINDOW);
        windows.push(wake_ups() - before);
    }
    assert!(
        windows.iter().any(|woke| *woke <= MOST),
        "the wrapper's main thread woke {windows:?} times in windows of {WINDOW:?} of an undisturbed task (at most {MOST} in one): it should sleep until something happens\n{}",
        task.logs_tail(30)
    );
    suspend_resume_and_release(&mut task, &engine)
}

pub fn quit_and_restart_continue_the_same_container(
    wrapper: &Wrapper,
    kind: EngineKind,
) -> Outcome {
    let engine = TestEngine::require(kind);
    let mut task = wrapper
        .task("quit", &engine)
        .job(TestJob::shell(COUNTER_JOB))
        .start()
        .unwrap();
    let before = task.wait_for_counter_above(3, COUNT_WAIT);
    task.send_control(Control::Quit);
    let outcome = task.wait_exit(Duration::from_secs(30)).unwrap();
    outcome
        .noted("quit must not finish the task")
        .assert_not_finished();
    assert_eq!(
        engine.container_state(&task.container_name()).as_deref(),
        Some("paused")
    );
    let journal = task
        .read_slot_file("docker_wrapper_journal.toml")
        .unwrap_or_default();
    assert!(journal.contains("kept_paused"), "{journal}");

    task.restart().unwrap();
    task.wait_for_counter_above(before, COUNT_WAIT);
    let outcome = task.release_and_wait(TASK_TIMEOUT);
    outcome.assert_finished(0);
    assert_eq!(
        task.read_slot_file("starts.txt").as_deref(),
        Some("start\n"),
        "the job started over"
    );
    engine.assert_no_container(&task);
    outcome
}

pub fn abort_removes_the_container_promptly(wrapper: &Wrapper, kind: EngineKind) -> Outcome {
    let engine = TestEngine::require(kind);
    let mut task = wrapper
        .task("abort", &engine)
        .job(TestJob::shell("sleep 600"))
        .start()
        .unwrap();
    engine
        .wait_for_container_state(&task.container_name(), "running", TASK_TIMEOUT)
        .unwrap();
    let sent = task.send_control(Control::Abort);
    let outcome = task.wait_exit(Duration::from_secs(30)).unwrap();
    let took = sent.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "abort took {took:?}\n{}",
        outcome.describe()
    );
    outcome.assert_not_finished();
    engine.assert_no_container(&task);
    outcome
}
