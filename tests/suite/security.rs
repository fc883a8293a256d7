//! The security defaults as the job sees them, and inputs that try to undo
//! them or to exhaust the host.

use std::sync::Mutex;

use dw_test_support::*;

const WRAPPER: &str = wrapper_path!();

/// The host port `published_ports_listen_on_loopback_only` publishes on
/// both engines, which share the host's ports: one at a time.
static HOST_PORT_18080: Mutex<()> = Mutex::new(());

on_both_engines!(
    the_job_has_no_capabilities_and_cannot_gain_privileges,
    published_ports_listen_on_loopback_only,
    a_fork_bomb_stops_at_the_pids_limit,
    huge_output_is_copied_bounded,
    a_job_filling_the_slot_is_stopped_at_the_disk_bound,
    a_job_filling_an_output_file_is_stopped_at_the_disk_bound,
    unsafe_create_args_are_refused,
    other_spellings_of_unsafe_flags_and_mounts_are_refused,
    harmless_create_args_still_work,
    names_with_odd_characters_work,
    a_gpu_job_without_its_gpu_is_not_run,
);

fn status_field(status: &str, field: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

fn the_job_has_no_capabilities_and_cannot_gain_privileges(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let mut task = TaskBuilder::on_engine("caps", WRAPPER, &engine)
        .job(TestJob::shell("cat /proc/self/status > status.txt"))
        .start()
        .unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(0);
    let status = task.read_slot_file("status.txt").unwrap();
    assert_eq!(
        status_field(&status, "CapEff:"),
        "0000000000000000",
        "{status}"
    );
    assert_eq!(
        status_field(&status, "CapBnd:"),
        "0000000000000000",
        "{status}"
    );
    assert_eq!(status_field(&status, "NoNewPrivs:"), "1", "{status}");
    engine.assert_no_container(&task);
}

fn published_ports_listen_on_loopback_only(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let _port = HOST_PORT_18080.lock().unwrap_or_else(|e| e.into_inner());
    let job = TestJob::shell("while [ ! -f go ]; do sleep 0.1; done")
        .job_toml("portmap = [\"18080:80\"]\n");
    let mut task = TaskBuilder::on_engine("ports", WRAPPER, &engine)
        .job(job)
        .start()
        .unwrap();
    let name = task.container_name();
    engine
        .wait_for_container_state(&name, "running", TASK_TIMEOUT)
        .unwrap();
    let ports = engine
        .inspect_container(&name, "{{json .HostConfig.PortBindings}}")
        .unwrap_or_default();
    std::fs::write(task.slot_dir().join("go"), "").unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(0);
    assert!(
        ports.contains("127.0.0.1") && ports.contains("18080"),
        "port bindings: {ports}"
    );
    assert!(!ports.contains("0.0.0.0"), "port bindings: {ports}");
    engine.assert_no_container(&task);
}

fn a_fork_bomb_stops_at_the_pids_limit(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    // Starts sleepers until fork fails (the shell then dies of it), counting them.
    let script = "n=0; while [ $n -lt 5000 ]; do sleep 30 & n=$((n+1)); echo $n > forks.txt; done";
    let job = TestJob::shell(script).job_toml("pids_limit = 64\n");
    let mut task = TaskBuilder::on_engine("forks", WRAPPER, &engine)
        .job(job)
        .start()
        .unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    // The job fails (its shell cannot fork any more); the task ends normally with that code.
    assert!(
        matches!(outcome.finish_code(), Some(code) if code != 0),
        "{}",
        outcome.describe()
    );
    let forks: u32 = task
        .read_slot_file("forks.txt")
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(
        forks > 0 && forks < 64,
        "the job started {forks} processes under a limit of 64"
    );
    engine.assert_no_container(&task);
}

/// A runaway job: 10 GB in 1 MB appends at up to ~100 MB/s (so that the
/// test itself writes little before the wrapper stops it).
fn writes_10_gb_into(file: &str) -> String {
    format!(
        "i=0; while [ $i -lt 10240 ]; do dd if=/dev/zero bs=1M count=1 2>/dev/null >> {file}; sleep 0.01; i=$((i+1)); done; \
         echo wrote all 10 GB"
    )
}

/// 10 GB into the slot under a 50 MB disk bound: the wrapper measures the
/// slot every 2 s (the client only every 5 min) and ends the task with
/// EXIT_DISK_LIMIT_EXCEEDED long before the job is through.
fn a_job_filling_the_slot_is_stopped_at_the_disk_bound(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let script = writes_10_gb_into("big");
    let mut task = TaskBuilder::on_engine("disk_hog", WRAPPER, &engine)
        .disk_bound(50.0 * 1e6)
        .job(TestJob::shell(&script))
        .start()
        .unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    let written = std::fs::metadata(task.slot_dir().join("big")).map_or(0, |m| m.len());
    // The slot is emptied at once, as the client would on the task's end.
    let _ = std::fs::remove_file(task.slot_dir().join("big"));
    outcome.assert_finished(196);
    outcome.assert_said(&["past the workunit's disk bound of 50 MB"]);
    outcome.assert_not_said(&["wrote all 10 GB"]);
    assert!(
        written < 1 << 30,
        "the job wrote {written} bytes before it was stopped"
    );
    println!(
        "{}: stopped after {} MB, {:?}",
        kind.name(),
        written / 1_000_000,
        outcome.elapsed
    );
    engine.assert_no_container(&task);
}

/// The same through an output file, which the client counts too but which
/// lives in the project dir (mounted into the container at its open name).
fn a_job_filling_an_output_file_is_stopped_at_the_disk_bound(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let script = writes_10_gb_into("result.dat");
    let mut task = TaskBuilder::on_engine("output_hog", WRAPPER, &engine)
        .disk_bound(50.0 * 1e6)
        .output_file("result.dat", "result_physical.dat")
        .job(TestJob::shell(&script))
        .start()
        .unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    let output = task.project_dir().join("result_physical.dat");
    let written = std::fs::metadata(&output).map_or(0, |m| m.len());
    let _ = std::fs::write(&output, "");
    outcome.assert_finished(196);
    outcome.assert_said(&["past the workunit's disk bound of 50 MB"]);
    assert!(
        written < 1 << 30,
        "the job wrote {written} bytes before it was stopped"
    );
    println!(
        "{}: output stopped after {} MB, {:?}",
        kind.name(),
        written / 1_000_000,
        outcome.elapsed
    );
    engine.assert_no_container(&task);
}

fn huge_output_is_copied_bounded(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    // About 20 MB on stderr; only the tail may reach stderr.txt.
    let script = "i=0; while [ $i -lt 200000 ]; do echo \"line $i of a very chatty job .......................................\" >&2; i=$((i+1)); done; echo last line >&2";
    let job = TestJob::shell(script).job_toml("log_tail_bytes = 100000\n");
    let mut task = TaskBuilder::on_engine("chatty", WRAPPER, &engine)
        .job(job)
        .start()
        .unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(0);
    assert!(
        outcome.stderr_txt.len() < 150_000,
        "stderr.txt has {} bytes",
        outcome.stderr_txt.len()
    );
    outcome
        .noted("the tail is missing")
        .assert_said(&["last line"]);
    engine.assert_no_container(&task);
}

fn unsafe_create_args_are_refused(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    for bad in [
        "create_args = \"--privileged\"",
        "create_args = \"--network=host\"",
        "mount = [\"/:/host\"]",
    ] {
        let job = TestJob::shell("exit 0").job_toml(&format!("{bad}\n"));
        let mut task = TaskBuilder::on_engine("unsafe", WRAPPER, &engine)
            .job(job)
            .start()
            .unwrap();
        let outcome = task.wait_exit(TASK_TIMEOUT).unwrap().noted(bad);
        outcome.assert_finished(206);
        outcome.assert_said(&["allow_unsafe"]);
        engine.assert_no_container(&task);
    }
}

/// Short, attached, `=` and combined spellings, namespace joins, and paths
/// that lead to `/` or `/etc` without saying so: each is refused by name.
fn other_spellings_of_unsafe_flags_and_mounts_are_refused(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    for (bad, named) in [
        ("create_args = \"-v/:/host\"", "'-v/:/host'"),
        ("create_args = \"-itv /:/x\"", "'-itv /:/x'"),
        ("create_args = \"--volume=/etc:/e\"", "'--volume=/etc:/e'"),
        (
            "create_args = \"--mount type=bind,src=/proc/self/root,dst=/x\"",
            "'--mount type=bind,src=/proc/self/root,dst=/x'",
        ),
        (
            "create_args = \"--network ns:/proc/1/ns/net\"",
            "'--network ns:/proc/1/ns/net'",
        ),
        (
            "create_args = \"--pid container:other\"",
            "'--pid container:other'",
        ),
        ("create_args = \"--cap-add=all\"", "'--cap-add=all'"),
        (
            "create_args = \"--security-opt label:disable\"",
            "'--security-opt label:disable'",
        ),
        ("create_args = \"--privileged=true\"", "'--privileged=true'"),
        ("create_args = \"--frobnicate\"", "'--frobnicate'"),
        ("build_args = \"--network=host\"", "'--network=host'"),
        ("mount = [\"/.:/host\"]", "'/.:/host'"),
        ("mount = [\"//etc:/e\"]", "'//etc:/e'"),
        ("mount = [\"/etc/../etc:/e\"]", "'/etc/../etc:/e'"),
        ("mount = [\"/etc/shadow:/s:ro\"]", "'/etc/shadow:/s:ro'"),
    ] {
        let job = TestJob::shell("echo ran > ran.txt").job_toml(&format!("{bad}\n"));
        let mut task = TaskBuilder::on_engine("unsafe_spelling", WRAPPER, &engine)
            .job(job)
            .start()
            .unwrap();
        let outcome = task.wait_exit(TASK_TIMEOUT).unwrap().noted(bad);
        outcome.assert_finished(206);
        // The message names the offending flag or mount.
        outcome.assert_said(&[named, "allow_unsafe"]);
        assert_eq!(task.read_slot_file("ran.txt"), None, "{bad}: the job ran");
        engine.assert_no_container(&task);
    }
}

fn harmless_create_args_still_work(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let toml = "create_args = \"--env A=one -e B=two --label x=y --tmpfs /scratch\"\n";
    let script = "echo \"$A $B\" > env.txt; grep -q ' /scratch tmpfs ' /proc/mounts && echo tmpfs >> env.txt";
    let mut task = TaskBuilder::on_engine("harmless_args", WRAPPER, &engine)
        .job(TestJob::shell(script).job_toml(toml))
        .start()
        .unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(0);
    assert_eq!(
        task.read_slot_file("env.txt").as_deref(),
        Some("one two\ntmpfs\n")
    );
    engine.assert_no_container(&task);
}

fn names_with_odd_characters_work(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let long = "x".repeat(300);
    for result in [
        "wu with space's \"q\"; $(id)_0",
        "ünïcödé_wü_0",
        long.as_str(),
    ] {
        let mut task = TaskBuilder::on_engine("odd_names", WRAPPER, &engine)
            .wu_name(&format!("wu {result}"))
            .result_name(result)
            .job(TestJob::shell("echo ok > ok.txt"))
            .start()
            .unwrap();
        let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
        outcome.noted(result).assert_finished(0);
        assert_eq!(task.read_slot_file("ok.txt").as_deref(), Some("ok\n"));
        let leftovers = engine.containers_matching("boinc__example.org_test__wu");
        assert!(
            leftovers.iter().all(|c| !c.contains("odd")),
            "left: {leftovers:?}"
        );
    }
}

/// `use_gpu = true` and a GPU the container cannot get (none assigned, a
/// type no engine passes in, a device node this host lacks): the task ends
/// with a set-up failure that says what was assigned, never a CPU run.
fn a_gpu_job_without_its_gpu_is_not_run(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    for (gpu_type, device, why) in [
        ("", 0, "assigned no GPU"),
        ("apple_gpu", 0, "cannot be passed into a container"),
        ("intel_gpu", 60, "/dev/dri/renderD188 is not on this host"),
    ] {
        let job = TestJob::shell("echo ran > ran.txt").job_toml("use_gpu = true\n");
        let mut task = TaskBuilder::on_engine("gpu", WRAPPER, &engine)
            .gpu(gpu_type, device)
            .job(job)
            .start()
            .unwrap();
        let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
        let said = format!("(type {gpu_type:?}, device {device}) cannot be given to the container");
        outcome.assert_finished(206);
        outcome.assert_said(&[&said, why, "not run without it"]);
        assert_eq!(
            task.read_slot_file("ran.txt"),
            None,
            "the job ran without its GPU"
        );
        engine.assert_no_container(&task);
    }
}
