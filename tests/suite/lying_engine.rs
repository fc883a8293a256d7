//! An engine that misbehaves (answers garbage, hangs on one command) and a
//! second wrapper for the same result: whatever happens, the task's
//! container is removed or kept on purpose, never forgotten, never adopted
//! by another slot, and the client is heard while the engine hangs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use dw_test_support::*;

const WRAPPER: &str = wrapper_path!();

on_both_engines!(
    garbage_from_inspect_leaves_no_container_and_little_text,
    abort_is_heard_while_pause_hangs,
    the_job_exit_is_seen_while_pause_hangs,
    a_second_slot_does_not_adopt_the_container,
);

/// An engine CLI that passes everything to the real one, except commands
/// whose first arguments are `intercept`: those run `instead` (sh code).
fn lying_engine(dir: &Path, engine: &TestEngine, intercept: &str, instead: &str) -> PathBuf {
    // Named after the engine, as the wrapper tells the kind by the name.
    let path = dir.join(engine.kind().name());
    let real = engine.cli().display();
    let script = format!(
        "#!/bin/sh\ncase \"$*\" in\n  \"{intercept}\"*) {instead} ;;\nesac\nexec {real} \"$@\"\n"
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn garbage_from_inspect_leaves_no_container_and_little_text(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let dir = TempDir::new("garbage_inspect").unwrap();
    // 64 KiB of multibyte text on one line, as a broken engine might print.
    let garbage = "awk 'BEGIN { for (i = 0; i < 21000; i++) printf \"€\" }'; exit 0";
    let fake = lying_engine(dir.path(), &engine, "container inspect", garbage);
    let mut task = TaskBuilder::on_engine("garbage_inspect", WRAPPER, &engine)
        .env("DOCKER_WRAPPER_ENGINE", &fake)
        .job(TestJob::shell("sleep 600"))
        .start()
        .unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(206);
    let euros = outcome.stderr_txt.matches('€').count();
    assert!(
        euros < 2000,
        "{euros} characters of the garbage in stderr.txt\n{}",
        outcome.describe()
    );
    engine.assert_no_container(&task);
}

/// Suspends a running task whose engine hangs in `pause`; returns when the
/// wrapper has been waiting on it for a second.
fn suspend_into_a_hanging_pause(
    kind: EngineKind,
    name: &str,
    job: &str,
) -> (Task, TestEngine, TempDir) {
    let engine = TestEngine::require(kind);
    let dir = TempDir::new(name).unwrap();
    let fake = lying_engine(dir.path(), &engine, "pause", "exec sleep 1000");
    // A timeout far beyond what the test waits: only listening while the
    // command runs can pass.
    let job = TestJob::shell(job).job_toml("command_timeout_secs = 60\n");
    let task = TaskBuilder::on_engine(name, WRAPPER, &engine)
        .env("DOCKER_WRAPPER_ENGINE", &fake)
        .job(job)
        .start()
        .unwrap();
    engine
        .wait_for_container_state(&task.container_name(), "running", TASK_TIMEOUT)
        .unwrap();
    task.send_control(Control::Suspend);
    std::thread::sleep(Duration::from_secs(1));
    (task, engine, dir)
}

fn abort_is_heard_while_pause_hangs(kind: EngineKind) {
    let (mut task, engine, _dir) =
        suspend_into_a_hanging_pause(kind, "pause_hangs_abort", "sleep 600");
    let aborted = task.send_control(Control::Abort);
    let outcome = task.wait_exit(Duration::from_secs(90)).unwrap();
    let heard_after = aborted.elapsed();
    outcome.assert_not_finished();
    outcome.assert_said(&["aborted"]);
    // The abort itself takes a few seconds at most; the pause would have
    // kept it waiting 60 s (and longer, retried).
    assert!(
        heard_after < Duration::from_secs(30),
        "abort acted on after {heard_after:?}\n{}",
        outcome.describe()
    );
    engine.assert_no_container(&task);
}

fn the_job_exit_is_seen_while_pause_hangs(kind: EngineKind) {
    let (mut task, engine, _dir) =
        suspend_into_a_hanging_pause(kind, "pause_hangs_exit", "sleep 3; exit 7");
    // The job ends at most 2 s from now; the pause would hang for 60 s.
    let suspended = Instant::now();
    let outcome = task.wait_exit(Duration::from_secs(90)).unwrap();
    outcome.assert_finished(7);
    let took = suspended.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "the exit was reported {took:?} after the suspend\n{}",
        outcome.describe()
    );
    engine.assert_no_container(&task);
}

fn a_second_slot_does_not_adopt_the_container(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let data = TempDir::new("second_slot").unwrap();
    let result = format!(
        "second_slot_{}_{}",
        engine.kind().name(),
        std::process::id()
    );
    let builder = |slot| {
        TaskBuilder::on_engine("second_slot", WRAPPER, &engine)
            .shared_data_dir(data.path())
            .slot(slot)
            .result_name(&result)
            .job(TestJob::shell("echo mine > out.txt; sleep 20; exit 0"))
    };
    let mut first = builder(1).start().unwrap();
    let name = first.container_name();
    engine
        .wait_for_container_state(&name, "running", TASK_TIMEOUT)
        .unwrap();
    let mut second = builder(2).start().unwrap();
    assert_eq!(
        second.container_name(),
        name,
        "both tasks must map to one container name"
    );
    let outcome = second.wait_exit(TASK_TIMEOUT).unwrap();
    outcome
        .noted("the second slot must leave the first one's container alone")
        .assert_temporary_exit("belongs to the task in");
    assert_eq!(
        engine.container_state(&name).as_deref(),
        Some("running"),
        "the first task's container was disturbed"
    );
    let outcome = first.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(0);
    assert_eq!(first.read_slot_file("out.txt").as_deref(), Some("mine\n"));
    engine.assert_no_container(&first);
}
