//! The emulator suite's core, with the wrapper and the engine CLI running as
//! the unprivileged user `boinc`, as under a volunteer's BOINC client: rootless
//! Podman, and Docker through the `docker` group. The data dir belongs to
//! `boinc`. Rootless Podman on this cgroup v1 host gives containers no cgroup
//! and no network (slirp4netns cannot open /dev/net/tun here), so its jobs run
//! with `network = false`, and the wrapper stops their processes with SIGSTOP
//! instead of pausing and reads their CPU time from /proc.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use dw_test_support::*;

const WRAPPER: &str = wrapper_path!();

on_both_engines!(
    output_is_written_and_owned_by_boinc,
    exit_code_is_forwarded,
    suspend_stops_the_job_and_resume_continues_it,
    quit_and_restart_continue_the_same_container,
    abort_removes_the_container,
    malformed_job_toml_is_an_error_naming_the_file,
    cpu_time_reaches_the_client,
    limits_the_engine_refuses_are_dropped_with_one_warning,
    check_as_boinc_reports_the_engine_it_reaches,
    a_job_binds_port_80_in_its_own_network,
    an_images_user_is_kept_or_its_replacement_named,
);

/// A job for `engine`: without a network where it has none.
fn job(engine: &TestEngine, script: &str, extra_toml: &str) -> TestJob {
    let mut toml = extra_toml.to_string();
    if engine.lacks_network() {
        toml.push_str("network = false\nbuild_args = \"--network none\"\n");
    }
    TestJob::shell(script).job_toml(&toml)
}

fn start(engine: &TestEngine, name: &str, job: TestJob) -> Task {
    TaskBuilder::on_engine(&format!("boinc_{name}"), WRAPPER, engine)
        .job(job)
        .start()
        .unwrap()
}

/// How long a running job may take to count on (rootless builds are slower).
const COUNT_WAIT: Duration = Duration::from_secs(90);

/// The job is suspended (paused, or its processes stopped), and its counter
/// then stands still for 1.5 s.
fn wait_until_stopped(engine: &TestEngine, task: &Task) -> Result<u64, String> {
    let name = task.container_name();
    wait_until(Duration::from_secs(10), || {
        engine.is_suspended(&name).then_some(())
    })
    .ok_or_else(|| format!("the job was not suspended\n{}", task.logs_tail(30)))?;
    let before = task.counter();
    std::thread::sleep(Duration::from_millis(1500));
    let after = task.counter();
    if after == before {
        Ok(after)
    } else {
        Err(format!(
            "the job counted from {before} to {after} while suspended\n{}",
            task.logs_tail(30)
        ))
    }
}

fn boinc_uid(engine: &TestEngine) -> u32 {
    engine
        .user()
        .expect("an unprivileged engine has a user")
        .uid
}

fn output_is_written_and_owned_by_boinc(kind: EngineKind) {
    let engine = TestEngine::require_unprivileged(kind);
    let script = "echo hello from the job; mkdir -p out; echo result > out/output.txt";
    let mut task = start(&engine, "success", job(&engine, script, ""));
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(0);
    assert_eq!(
        task.read_slot_file("out/output.txt").as_deref(),
        Some("result\n")
    );
    outcome.assert_said(&["hello from the job"]);
    // The client, as boinc, must be able to delete everything in the slot.
    for name in ["out", "out/output.txt"] {
        let owner = std::fs::metadata(task.slot_dir().join(name)).unwrap().uid();
        assert_eq!(owner, boinc_uid(&engine), "{name} belongs to uid {owner}");
    }
    engine.assert_no_container(&task);
}

fn exit_code_is_forwarded(kind: EngineKind) {
    let engine = TestEngine::require_unprivileged(kind);
    let mut task = start(
        &engine,
        "exit3",
        job(&engine, "echo about to fail >&2; exit 3", ""),
    );
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(3);
    outcome.assert_said(&["about to fail"]);
    engine.assert_no_container(&task);
}

fn suspend_stops_the_job_and_resume_continues_it(kind: EngineKind) {
    let engine = TestEngine::require_unprivileged(kind);
    let mut task = start(
        &engine,
        "suspend",
        job(&engine, COUNTER_JOB, "idle_priority = false\n"),
    );
    let before = task.wait_for_counter_above(2, COUNT_WAIT);
    task.send_control(Control::Suspend);
    let stopped_at = wait_until_stopped(&engine, &task).unwrap();
    assert!(stopped_at >= before);
    task.send_control(Control::Resume);
    task.wait_for_counter_above(stopped_at, COUNT_WAIT);
    let outcome = task.release_and_wait(TASK_TIMEOUT);
    outcome.assert_finished(0);
    if engine.cannot_pause() {
        // Rootless Podman on cgroup v1 cannot pause: the fallback says so once.
        outcome.assert_said_times("stopped with SIGSTOP instead", 1);
    }
    engine.assert_no_container(&task);
}

fn quit_and_restart_continue_the_same_container(kind: EngineKind) {
    let engine = TestEngine::require_unprivileged(kind);
    let mut task = start(
        &engine,
        "quit",
        job(&engine, COUNTER_JOB, "idle_priority = false\n"),
    );
    task.wait_for_counter_above(3, COUNT_WAIT);
    task.send_control(Control::Quit);
    let outcome = task.wait_exit(Duration::from_secs(30)).unwrap();
    outcome
        .noted("quit must not finish the task")
        .assert_not_finished();
    let journal = task
        .read_slot_file("docker_wrapper_journal.toml")
        .unwrap_or_default();
    assert!(journal.contains("kept_paused"), "{journal}");
    // Kept, and not running on unsupervised.
    let stopped_at = wait_until_stopped(&engine, &task).unwrap();

    task.restart().unwrap();
    task.wait_for_counter_above(stopped_at, COUNT_WAIT);
    let outcome = task.release_and_wait(TASK_TIMEOUT);
    outcome.assert_finished(0);
    assert_eq!(
        task.read_slot_file("starts.txt").as_deref(),
        Some("start\n"),
        "the job started over"
    );
    engine.assert_no_container(&task);
}

fn abort_removes_the_container(kind: EngineKind) {
    let engine = TestEngine::require_unprivileged(kind);
    let mut task = start(&engine, "abort", job(&engine, "sleep 600", ""));
    engine
        .wait_for_container_state(&task.container_name(), "running", TASK_TIMEOUT)
        .unwrap();
    let sent = task.send_control(Control::Abort);
    let outcome = task.wait_exit(Duration::from_secs(30)).unwrap();
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "abort took {:?}\n{}",
        sent.elapsed(),
        outcome.describe()
    );
    outcome.assert_not_finished();
    engine.assert_no_container(&task);
}

fn malformed_job_toml_is_an_error_naming_the_file(kind: EngineKind) {
    let engine = TestEngine::require_unprivileged(kind);
    let mut task = start(
        &engine,
        "bad_toml",
        TestJob::shell("exit 0").job_toml("workdir = [unclosed\n"),
    );
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(206);
    outcome.assert_said(&["job.toml"]);
    engine.assert_no_container(&task);
}

fn cpu_time_reaches_the_client(kind: EngineKind) {
    let engine = TestEngine::require_unprivileged(kind);
    let script = "while [ ! -f go ]; do :; done";
    // At normal priority: an idle container gets no CPU while other tests run.
    let mut task = start(
        &engine,
        "cpu",
        job(&engine, script, "idle_priority = false\n"),
    );
    // (The 7.20 API sends no working set size; memory is covered by the unit tests.)
    let status = task.wait_for_status(Duration::from_secs(90), |s| s.current_cpu_time > 2.0);
    assert!(status.is_ok(), "{status:?}\n{}", task.logs_tail(30));
    let outcome = task.release_and_wait(TASK_TIMEOUT);
    outcome.assert_finished(0);
    engine.assert_no_container(&task);
}

/// An engine CLI that refuses to create a container with a memory limit
/// (`run`, as the wrapper creates and starts one), as Podman with crun does
/// where the user has no delegated memory controller, and passes everything
/// else to the real CLI.
fn engine_refusing_limits(engine: &TestEngine, dir: &TempDir) -> std::path::PathBuf {
    let path = dir.path().join(engine.kind().name());
    let script = format!(
        "#!/bin/sh\n\
         if [ \"$1\" = create ] || [ \"$1\" = run ]; then for arg in \"$@\"; do if [ \"$arg\" = --memory ]; then\n\
           echo 'Error: OCI runtime error: crun: the requested cgroup controller `memory` is not available' >&2; exit 126\n\
         fi; done; fi\n\
         exec {} \"$@\"\n",
        engine.cli().display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn limits_the_engine_refuses_are_dropped_with_one_warning(kind: EngineKind) {
    let engine = TestEngine::require_unprivileged(kind);
    let fake = TempDir::new("refusing_engine").unwrap();
    let cli = engine_refusing_limits(&engine, &fake);
    let mut task = TaskBuilder::on_engine("boinc_refused_limits", WRAPPER, &engine)
        .memory_bound(256.0 * MIB)
        .env("DOCKER_WRAPPER_ENGINE", &cli)
        .job(job(&engine, "echo ran without limits", ""))
        .start()
        .unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(0);
    outcome.assert_said_times("refused the resource limits", 1);
    outcome.assert_said(&["ran without limits"]);
    engine.assert_no_container(&task);
}

/// `--check` as the BOINC user: rootless Podman, or Docker through the
/// docker group, reached and usable.
fn check_as_boinc_reports_the_engine_it_reaches(kind: EngineKind) {
    // As the client's user is set up for the 8.2 client to detect the
    // engine: hello-world, if a test left it, must run.
    let engine = TestEngine::require_unprivileged(kind).as_the_clients_user();
    let out = engine.wrapper_check(WRAPPER);
    let report = format!("{}{}", out.stdout, out.stderr);
    assert!(out.success(), "{report}");
    assert!(report.contains("user: boinc (uid "), "{report}");
    let how = match kind {
        EngineKind::Podman => "rootless",
        EngineKind::Docker => "rootful",
    };
    assert!(report.contains(&format!("{how}, cgroup v")), "{report}");
    assert!(
        report.contains(&format!("a task could run here, on {kind:?}")),
        "{report}"
    );
}

/// A web server on port 80 inside the container, as images written for the
/// C++ wrapper run one, works without capabilities as `boinc` too.
fn a_job_binds_port_80_in_its_own_network(kind: EngineKind) {
    let engine = TestEngine::require_unprivileged(kind);
    let script = "mkdir -p www && echo served > www/index.html && httpd -p 80 -h www && \\
                  wget -q -O got.txt http://127.0.0.1:80/index.html";
    let mut task = start(&engine, "port_80", job(&engine, script, ""));
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(0);
    assert_eq!(task.read_slot_file("got.txt").as_deref(), Some("served\n"));
    engine.assert_no_container(&task);
}

/// An image with its own `USER` (uid 1234 here): rootless Podman runs the
/// job as that user; Docker runs it as `boinc` and says so in stderr.txt,
/// naming the key that gives the image its user back. The job's exit code
/// tells its uid (modulo 200: 34 for 1234).
fn an_images_user_is_kept_or_its_replacement_named(kind: EngineKind) {
    let engine = TestEngine::require_unprivileged(kind);
    let dockerfile = format!(
        "{}USER 1234\n",
        dw_test_support::jobs::default_dockerfile("/app")
    );
    let run = |name: &str, toml: &str| {
        let job = job(&engine, "exit $(( $(id -u) % 200 ))", toml).dockerfile(&dockerfile);
        let mut task = start(&engine, name, job);
        let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
        engine.assert_no_container(&task);
        outcome
    };
    let replaced = "USER 1234 is replaced";
    let outcome = run("image_user", "");
    match kind {
        EngineKind::Podman => {
            outcome.assert_finished(34);
            outcome.assert_not_said(&[replaced]);
        }
        EngineKind::Docker => {
            let boinc = boinc_uid(&engine) % 200;
            outcome.assert_finished(boinc as i32);
            outcome.assert_said(&["run_as_wrapper_user = false runs it as 1234"]);
            let outcome = run("image_user_kept", "run_as_wrapper_user = false\n");
            outcome.assert_finished(34);
            outcome.assert_not_said(&[replaced]);
        }
    }
}

/// A stand-in for the macOS client's setuid helper (`Run_Podman` in
/// `BOINC Data`): it records its argv, one argument a line, then runs it as
/// `user` with that user's HOME and runtime dir, as the real one runs
/// Podman as the sandbox user with the client's Podman dirs.
fn stand_in_helper(
    dir: &std::path::Path,
    user: &HostUser,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = dir.join("BOINC Data");
    std::fs::create_dir_all(&data).unwrap();
    let helper = data.join("Run_Podman");
    let calls = dir.join("helper calls");
    let script = format!(
        "#!/bin/sh\n\
         printf '%s\\n' \"$@\" >> '{calls}'\n\
         exec setpriv --reuid {uid} --regid {gid} --init-groups -- \
         env -u CONTAINERS_STORAGE_CONF -u TMPDIR HOME='{home}' XDG_RUNTIME_DIR='{runtime}' USER='{name}' \"$@\"\n",
        calls = calls.display(),
        uid = user.uid,
        gid = user.gid,
        home = user.home.display(),
        runtime = user.runtime_dir.display(),
        name = user.name,
    );
    std::fs::write(&helper, script).unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    (helper, calls)
}

/// The wrapper as root runs every Podman command through the helper
/// (`DOCKER_WRAPPER_RUN_PODMAN`), whose path has a space, so the job runs in
/// the helper user's rootless Podman, not root's.
#[test]
fn podman_runs_through_the_clients_helper_as_its_user() {
    let _claim = Claim::shared(EngineKind::Podman);
    let boinc_podman = TestEngine::require_unprivileged(EngineKind::Podman);
    let root_podman = TestEngine::require(EngineKind::Podman);
    let user = boinc_podman.user().unwrap().clone();
    let dir = TempDir::new("helper").unwrap();
    let (helper, calls) = stand_in_helper(dir.path(), &user);
    let script = "echo hello through the helper; mkdir -p out; id -u > out/uid.txt";
    let mut task = TaskBuilder::on_engine("boinc_helper", WRAPPER, &root_podman)
        .data_owner(&user)
        .env("DOCKER_WRAPPER_RUN_PODMAN", &helper)
        .job(job(&boinc_podman, script, ""))
        .start()
        .unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(0);
    outcome.assert_said(&["hello through the helper"]);
    // Written by the job in boinc's user namespace: boinc's on the host.
    let owner = std::fs::metadata(task.slot_dir().join("out/uid.txt"))
        .unwrap()
        .uid();
    assert_eq!(owner, user.uid, "{}", outcome.describe());
    // Every engine command went through the helper, the CLI first.
    let calls = std::fs::read_to_string(&calls).unwrap();
    let cli_lines = calls
        .lines()
        .filter(|line| std::path::Path::new(line).file_name() == Some("podman".as_ref()))
        .count();
    assert!(cli_lines >= 3, "{calls}");
    assert!(
        calls.lines().any(|line| line == "run" || line == "create"),
        "{calls}"
    );
    // The slot is mounted by its absolute path, one argument whatever it holds.
    let mount = format!("{}:/app", task.slot_dir().display());
    assert!(calls.lines().any(|line| line == mount), "{calls}");
    boinc_podman.assert_no_container(&task);
    root_podman.assert_no_container(&task);
}
