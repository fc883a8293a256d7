//! Faults of the host rather than of the job: no engine, a daemon that is
//! down, an engine that hangs, a Dockerfile that does not build. The work
//! must not be lost (temporary exit) when the fault is the host's.

use std::os::unix::fs::PermissionsExt;

use dw_test_support::*;

const WRAPPER: &str = wrapper_path!();

on_both_engines!(a_missing_dockerfile_is_an_error);
// Alone on its engine: it compares every image on the engine before and
// after the failed build, and another test's build would add some.
on_both_engines!(engine_alone: a_dockerfile_that_fails_to_build_reports_its_output);

fn no_engine_task(name: &str) -> TaskBuilder {
    Task::builder(name, WRAPPER)
        .client_7_20()
        .job(TestJob::shell("exit 0"))
}

#[test]
fn no_engine_installed_is_a_temporary_exit() {
    let _claim = Claim::no_engine();
    let empty = TempDir::new("empty_path").unwrap();
    let mut task = no_engine_task("no_engine")
        .env("PATH", empty.path())
        .start()
        .unwrap();
    let outcome = task.wait_exit(Duration::from_secs(60)).unwrap();
    outcome.assert_temporary_exit("no container engine");
}

#[test]
fn docker_daemon_down_is_a_temporary_exit() {
    let _claim = Claim::shared(EngineKind::Docker);
    TestEngine::require(EngineKind::Docker);
    let mut task = no_engine_task("daemon_down")
        .env("DOCKER_WRAPPER_ENGINE", "/usr/bin/docker")
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .start()
        .unwrap();
    let outcome = task.wait_exit(Duration::from_secs(60)).unwrap();
    outcome.assert_temporary_exit("does not answer");
}

#[test]
fn a_hanging_engine_is_a_temporary_exit_within_the_timeout() {
    let _claim = Claim::no_engine();
    let fake = TempDir::new("hanging_engine").unwrap();
    let podman = fake.path().join("podman");
    std::fs::write(&podman, "#!/bin/sh\nexec sleep 1000\n").unwrap();
    std::fs::set_permissions(&podman, std::fs::Permissions::from_mode(0o755)).unwrap();
    let job = TestJob::shell("exit 0").job_toml("command_timeout_secs = 5\n");
    let mut task = Task::builder("hanging_engine", WRAPPER)
        .client_7_20()
        .job(job)
        .env("DOCKER_WRAPPER_ENGINE", &podman)
        .start()
        .unwrap();
    let outcome = task.wait_exit(Duration::from_secs(60)).unwrap();
    outcome.assert_temporary_exit("did not finish within 5s");
    // 5 s timeout + 2 s TERM grace + start-up.
    assert!(
        outcome.elapsed < Duration::from_secs(12),
        "took {:?}",
        outcome.elapsed
    );
}

fn a_dockerfile_that_fails_to_build_reports_its_output(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    // A step of its own (never cached) succeeds before the failing one.
    let stamp = format!("{:?}", std::time::SystemTime::now());
    let dockerfile = format!(
        "FROM scratch\nCOPY busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo '{stamp}' > /stamp\"]\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo compiling the science code; exit 7\"]\n"
    );
    let job = TestJob::shell("exit 0").dockerfile(&dockerfile);
    let images = || -> std::collections::BTreeSet<String> {
        engine
            .run(["images", "-a", "-q"])
            .unwrap()
            .stdout
            .lines()
            .map(str::to_string)
            .collect()
    };
    let images_before = images();
    let mut task = Task::builder(&format!("bad_build_{}", kind.name()), WRAPPER)
        .engine(&engine)
        .job(job)
        .start()
        .unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(206);
    outcome.assert_said(&["image build failed", "compiling the science code"]);
    assert_eq!(engine.container_state(&task.container_name()), None);
    // Nor the build's own container of the failed step.
    let failed_step = engine
        .run([
            "ps",
            "-a",
            "--no-trunc",
            "--filter",
            "status=exited",
            "--format",
            "{{.Command}}",
        ])
        .unwrap();
    assert!(
        !failed_step.stdout.contains("compiling the science code"),
        "left behind: {}",
        failed_step.stdout
    );
    // Nor images of the steps that worked.
    let left: Vec<String> = images().difference(&images_before).cloned().collect();
    assert!(left.is_empty(), "images left by the failed build: {left:?}");
}

fn a_missing_dockerfile_is_an_error(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let mut task = Task::builder(&format!("no_dockerfile_{}", kind.name()), WRAPPER)
        .engine(&engine)
        .job(TestJob::shell("exit 0"))
        .prepare()
        .unwrap();
    std::fs::remove_file(task.slot_dir().join("Dockerfile")).unwrap();
    task.start().unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(206);
    outcome.assert_said(&["Dockerfile not found"]);
    assert_eq!(engine.container_state(&task.container_name()), None);
}
