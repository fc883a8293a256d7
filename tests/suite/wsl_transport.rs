//! The Windows transport, tested on Linux: with `DOCKER_WRAPPER_SHELL=sh`
//! the wrapper sends every engine command through one persistent `sh`, as
//! it sends them through `wsl -d <distro> -u root --exec /bin/sh` on
//! Windows. The key scenarios of run_job.rs and lifecycle.rs run through it
//! on both engines, and faults of the shell path (a hanging command, the
//! shell dying) are provoked with a fake engine CLI in front of the real one.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use dw_test_support::scenarios::{self, Wrapper};
use dw_test_support::*;

const WRAPPER: &str = wrapper_path!();

/// What the wrapper logs when it starts the shell (proves the path was taken).
const SHELL_STARTED: &str = "engine commands go through one shell: sh";

on_both_engines!(
    success_writes_output_into_the_slot,
    exit_code_is_forwarded_with_the_log,
    args_reach_the_job_intact,
    suspend_pauses_and_resume_unpauses,
    quit_and_restart_continue_the_same_container,
    abort_removes_the_container_promptly,
    cpu_time_comes_from_the_engines_stats,
    a_hanging_engine_command_times_out_and_the_next_one_works,
    a_shell_that_dies_is_restarted_for_the_next_command,
);

fn through_the_shell() -> Wrapper {
    Wrapper::built(WRAPPER)
        .labelled("shell")
        .env("DOCKER_WRAPPER_SHELL", "sh")
}

fn builder(name: &str, engine: &TestEngine) -> TaskBuilder {
    Task::builder(&format!("shell_{name}_{}", engine.kind().name()), WRAPPER)
        .engine(engine)
        .env("DOCKER_WRAPPER_SHELL", "sh")
}

/// Through the shell (as through WSL) the container's processes and cgroup
/// are out of the wrapper's sight: CPU time comes from `stats` every 15 s.
fn cpu_time_comes_from_the_engines_stats(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let job = TestJob::shell("while [ ! -f go ]; do :; done").job_toml("idle_priority = false\n");
    let mut task = builder("stats", &engine).job(job).start().unwrap();
    let status = task.wait_for_status(Duration::from_secs(90), |s| s.current_cpu_time > 3.0);
    assert!(status.is_ok(), "{status:?}\n{}", task.logs_tail(30));
    std::fs::write(task.slot_dir().join("go"), "").unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(0);
    outcome.assert_said(&["come from the engine's stats"]);
    engine.assert_no_container(&task);
}

fn assert_went_through_the_shell(outcome: &Outcome) {
    outcome.assert_said(&[SHELL_STARTED]);
}

fn success_writes_output_into_the_slot(kind: EngineKind) {
    assert_went_through_the_shell(&scenarios::output_reaches_the_slot(
        &through_the_shell(),
        kind,
    ));
}

fn exit_code_is_forwarded_with_the_log(kind: EngineKind) {
    assert_went_through_the_shell(&scenarios::exit_code_is_forwarded(
        &through_the_shell(),
        kind,
    ));
}

/// ARGS travels as `-e ARGS=...` of `create`: through the shell's quoting.
fn args_reach_the_job_intact(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let args = [
        "plain",
        "with space",
        "it's \"quoted\" ''",
        "$(touch /tmp/pwned_by_shell_transport)",
        "`id`;ls|cat&",
        "back\\slash\\",
        "new\nline",
        "${HOME} $0 $@ *",
        "ünï ✓",
    ];
    let mut task = builder("args", &engine)
        .job(TestJob::shell("printf '%s' \"$ARGS\" > args.txt"))
        .args(args)
        .start()
        .unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(0);
    assert_went_through_the_shell(&outcome);
    assert_eq!(task.read_slot_file("args.txt").unwrap(), args.join(" "));
    assert!(!Path::new("/tmp/pwned_by_shell_transport").exists());
    engine.assert_no_container(&task);
}

fn suspend_pauses_and_resume_unpauses(kind: EngineKind) {
    assert_went_through_the_shell(&scenarios::suspend_pauses_and_resume_unpauses(
        &through_the_shell(),
        kind,
    ));
}

fn quit_and_restart_continue_the_same_container(kind: EngineKind) {
    assert_went_through_the_shell(&scenarios::quit_and_restart_continue_the_same_container(
        &through_the_shell(),
        kind,
    ));
}

fn abort_removes_the_container_promptly(kind: EngineKind) {
    assert_went_through_the_shell(&scenarios::abort_removes_the_container_promptly(
        &through_the_shell(),
        kind,
    ));
}

/// A script named like the engine that runs the real CLI, except that
/// `<engine> kill` does `misbehaviour` instead. The abort path runs `kill`
/// and ignores its failure, then `rm -f`: that next command must work.
fn engine_failing_kill(dir: &TempDir, engine: &TestEngine, misbehaviour: &str) -> PathBuf {
    let fake = dir.path().join(engine.kind().name());
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = kill ]; then {misbehaviour}; fi\nexec '{}' \"$@\"\n",
        engine.cli().display()
    );
    std::fs::write(&fake, script).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    fake
}

fn a_hanging_engine_command_times_out_and_the_next_one_works(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let dir = TempDir::new("hanging_kill").unwrap();
    let fake = engine_failing_kill(&dir, &engine, "exec sleep 1000");
    // The job ends on TERM, so `rm -f` finishes well within the short timeout.
    let job = TestJob::shell("trap 'exit 143' TERM; sleep 600 & wait $!")
        .job_toml("command_timeout_secs = 5\n");
    let mut task = builder("hang", &engine)
        .job(job)
        .env("DOCKER_WRAPPER_ENGINE", &fake)
        .start()
        .unwrap();
    let running =
        engine.wait_for_container_state(&task.container_name(), "running", Duration::from_secs(60));
    assert!(running.is_ok(), "{running:?}\n{}", task.logs_tail(40));
    let sent = task.send_control(Control::Abort);
    let outcome = task.wait_exit(Duration::from_secs(60)).unwrap();
    let took = sent.elapsed();
    // A 5 s timeout, TERM stops the hanging `kill`, then `rm -f` does the rest.
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(20),
        "abort took {took:?}\n{}",
        outcome.describe()
    );
    outcome.assert_said(&["did not finish within 5s"]);
    outcome.assert_not_finished();
    assert_went_through_the_shell(&outcome);
    engine.assert_no_container(&task);
}

fn a_shell_that_dies_is_restarted_for_the_next_command(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let dir = TempDir::new("dying_shell").unwrap();
    // The engine command's parent is the shell itself.
    let fake = engine_failing_kill(&dir, &engine, "kill -KILL $PPID; exit 1");
    let mut task = builder("shell_dies", &engine)
        .job(TestJob::shell("sleep 600"))
        .env("DOCKER_WRAPPER_ENGINE", &fake)
        .start()
        .unwrap();
    engine
        .wait_for_container_state(&task.container_name(), "running", TASK_TIMEOUT)
        .unwrap();
    task.send_control(Control::Abort);
    let outcome = task.wait_exit(Duration::from_secs(60)).unwrap();
    outcome.assert_not_finished();
    outcome
        .noted("the shell is to be started again after it died")
        .assert_said_times(SHELL_STARTED, 2);
    engine.assert_no_container(&task);
}

/// Windows builds without BOINC's headers use hand-written declarations of
/// the shim (boinc-sys/src/declarations.rs): they must name every function
/// of csrc/shim.h with as many parameters.
#[test]
fn windows_declarations_match_the_shim_header() {
    let _claim = Claim::no_engine();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("boinc-sys");
    let header = std::fs::read_to_string(root.join("csrc/shim.h")).unwrap();
    let declarations = std::fs::read_to_string(root.join("src/declarations.rs")).unwrap();
    let shim = functions(&header, |name| name.starts_with("dw_"));
    let declared = functions(&declarations, |name| name.starts_with("dw_"));
    assert!(!shim.is_empty());
    assert_eq!(declared, shim);
    for name in ["boinc_finish", "boinc_is_standalone"] {
        assert!(
            declarations.contains(&format!("pub fn {name}(")),
            "{name} is not declared"
        );
    }
}

/// `name(params)` of every function whose name passes `wanted`, with its
/// parameter count, from C or Rust declarations.
fn functions(text: &str, wanted: impl Fn(&str) -> bool) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    for (at, _) in text.match_indices('(') {
        let name: String = text[..at]
            .chars()
            .rev()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let name: String = name.chars().rev().collect();
        if !wanted(&name) {
            continue;
        }
        let params = &text[at + 1..at + text[at..].find(')').unwrap()];
        let params = params.trim();
        let count = if params.is_empty() || params == "void" {
            0
        } else {
            params.trim_end_matches(',').split(',').count()
        };
        found.push((name, count));
    }
    found.sort();
    found.dedup();
    found
}
