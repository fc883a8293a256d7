//! End to end under the real BOINC client (Debian's boinc-client 7.20.5), on
//! Podman and on Docker, and with the client running as the unprivileged
//! user `boinc` on rootless Podman, as on a volunteer's Linux host: input and
//! output files as the client delivers them, exit codes, suspend/resume,
//! abort, and a client restart mid-task.
//!
//! `cargo test --release --test real_client -- --test-threads 2 --nocapture`
//! prints, per scenario and engine, the result state and exit status the
//! client recorded and the wall time.
//!
//! Linux only: the real client is Debian's `boinc-client`.
#![cfg(target_os = "linux")]

#[path = "real_client/mod.rs"]
mod harness;

use harness::*;

/// Generates `<scenario>::podman`, `<scenario>::docker` (client as root) and
/// `<scenario>::podman_as_boinc` from `fn scenario(engine)`.
macro_rules! on_each_engine {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::harness::{Engine, EngineKind};
            #[test]
            fn podman() {
                super::$name(Engine::require(EngineKind::Podman));
            }
            #[test]
            fn docker() {
                super::$name(Engine::require(EngineKind::Docker));
            }
            #[test]
            fn podman_as_boinc() {
                super::$name(Engine::require_unprivileged(EngineKind::Podman));
            }
        }
    )*};
}

on_each_engine!(
    input_to_output,
    exit_code_is_a_compute_error,
    suspend_resume,
    suspend_resume_in_memory,
    abort_removes_the_container,
    client_restart_continues_the_task,
);

/// Covers the first start (including an image build when the cache is cold).
const RUNNING_TIMEOUT: Duration = Duration::from_secs(90);
const FINAL_TIMEOUT: Duration = Duration::from_secs(90);
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

/// A job that records each start of its own in the output file starts.txt
/// (a file in the project dir, mounted by the wrapper), then counts in the
/// slot's count.txt every 0.2 s until the test creates the slot file `go`.
const COUNTER_JOB: &str = "echo start >> starts.txt\n\
    echo \"job started, arguments: $*\"\n\
    i=0\n\
    while [ ! -f go ]; do i=$((i+1)); echo $i > count.txt; sleep 0.2; done\n\
    echo \"job finished after $i steps\"";

fn start(label: &str, engine: &Engine, job: &Job) -> RealClient {
    let job = if engine.is_rootless_podman() { job.clone().without_network() } else { job.clone() };
    RealClient::start(label, engine, &job).unwrap_or_else(|e| panic!("{label} on {}: {e}", engine.label()))
}

fn count(client: &RealClient) -> u64 {
    client
        .read_slot_file("count.txt")
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until the job's counter passes `above`; returns its value.
fn wait_for_count(client: &RealClient, above: u64, timeout: Duration) -> u64 {
    wait_until(timeout, || Some(count(client)).filter(|c| *c > above)).unwrap_or_else(|| {
        panic!(
            "the job's counter stayed at {} (waited {timeout:?} for > {above})\n{}",
            count(client),
            client.diagnostics()
        )
    })
}

fn wait_for_container_state(client: &RealClient, wanted: Option<&str>, timeout: Duration) -> Duration {
    let start = Instant::now();
    wait_until(timeout, || {
        (client.container_state().as_deref() == wanted).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "container {} is {:?}, not {wanted:?} after {timeout:?}\n{}",
            client.container_name(),
            client.container_state(),
            client.diagnostics()
        )
    });
    start.elapsed()
}

/// The job is suspended (paused, or its processes stopped where the engine
/// cannot pause) within CONTROL_TIMEOUT, and its counter stands still.
fn assert_frozen(client: &RealClient) {
    let suspended = wait_until(CONTROL_TIMEOUT, || client.is_suspended().then_some(()));
    assert!(suspended.is_some(), "the job was not suspended\n{}", client.diagnostics());
    let before = count(client);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(count(client), before, "the job kept counting while paused\n{}", client.diagnostics());
}

fn release(client: &RealClient) {
    client
        .write_slot_file("go", "")
        .unwrap_or_else(|e| panic!("{e}\n{}", client.diagnostics()));
}

fn assert_done(client: &RealClient, result: &ResultRecord) {
    assert_eq!(
        (result.state, result.exit_status),
        (RESULT_FILES_UPLOADED, 0),
        "expected done with exit status 0, got {result}\n{}",
        client.diagnostics()
    );
}

fn assert_one_start(client: &RealClient) {
    let starts = std::fs::read_to_string(client.output_path("starts.txt")).unwrap_or_default();
    assert_eq!(
        starts,
        "start\n",
        "the job started {} times\n{}",
        starts.lines().count(),
        client.diagnostics()
    );
}

/// The line the closing note quotes: state, exit status, wall time.
fn report(scenario: &str, engine: &Engine, result: &ResultRecord, client: &RealClient, details: &str) {
    println!(
        "real_client {scenario}::{}: {result}, wall time {:.1} s{}{details}",
        engine.label(),
        client.age().as_secs_f64(),
        if details.is_empty() { "" } else { "; " }
    );
}

/// An input file arrives in the slot as a `<soft_link>` file, the job reads
/// the real data and writes an output file that the client keeps.
fn input_to_output(engine: Engine) {
    let job = Job::shell(
        "echo \"job started, arguments: $*\"\n\
         while [ ! -f go ]; do sleep 0.1; done\n\
         { echo \"args: $*\"; tr a-z A-Z < in.txt; } > out.txt\n\
         echo \"job done\"",
    )
    .command_line("alpha beta")
    .input("in.txt", "hello from the workunit\n")
    .output("out.txt");
    let client = start("input_to_output", &engine, &job);

    // The job waits for `go`, so the slot can be looked at as the client made it.
    let link = wait_until(RUNNING_TIMEOUT, || client.read_slot_file("in.txt"))
        .unwrap_or_else(|| panic!("in.txt never appeared in the slot\n{}", client.diagnostics()));
    assert!(
        link.trim_start().starts_with("<soft_link>"),
        "the client delivered in.txt as {link:?}, not as a soft-link file"
    );
    wait_for_container_state(&client, Some("running"), RUNNING_TIMEOUT);
    release(&client);

    let result = client.wait_final(FINAL_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert_done(&client, &result);
    let output = std::fs::read_to_string(client.output_path("out.txt"))
        .unwrap_or_else(|e| panic!("output file missing in the project dir: {e}\n{}", client.diagnostics()));
    assert_eq!(output, "args: alpha beta\nHELLO FROM THE WORKUNIT\n");
    assert!(
        result.stderr_out.contains("job done"),
        "the container's log is not in stderr_out:\n{}",
        result.stderr_out
    );
    assert_eq!(client.container_state(), None, "the container was left behind");
    report(
        "input_to_output",
        &engine,
        &result,
        &client,
        "output file present with the expected content",
    );
}

/// Exit status 3 -> compute error 3, with the job's own output in stderr_out.
fn exit_code_is_a_compute_error(engine: Engine) {
    let line = "the job prints this line, then exits with status 3";
    let client = start("exit_code", &engine, &Job::shell(&format!("echo \"{line}\"\nexit 3")));
    let result = client.wait_final(FINAL_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (result.state, result.exit_status),
        (RESULT_COMPUTE_ERROR, 3),
        "expected a compute error with exit status 3, got {result}\n{}",
        client.diagnostics()
    );
    assert!(
        result.stderr_out.contains(line),
        "the container's log is not in stderr_out:\n{}",
        result.stderr_out
    );
    assert_eq!(client.container_state(), None, "the container was left behind");
    report("exit_code_is_a_compute_error", &engine, &result, &client, "");
}

fn suspend_resume(engine: Engine) {
    suspend_then_resume("suspend_resume", &engine, false);
}

fn suspend_resume_in_memory(engine: Engine) {
    suspend_then_resume("suspend_resume_in_memory", &engine, true);
}

/// `boinccmd --task ... suspend` -> the container is paused (inspect), the
/// job stops counting; `resume` -> it goes on and completes, never restarted.
/// With "leave applications in memory" off the client sends `<quit/>` to a
/// task that has checkpointed (the wrapper keeps the container paused and
/// exits; the client starts it again on resume); with it on, `<suspend/>`.
fn suspend_then_resume(scenario: &str, engine: &Engine, in_memory: bool) {
    let job = Job::shell(COUNTER_JOB)
        .output("starts.txt")
        .leave_apps_in_memory(in_memory);
    let client = start(scenario, engine, &job);
    wait_for_count(&client, 5, RUNNING_TIMEOUT);
    // Once the wrapper has reported a checkpoint, the client's choice between
    // <quit/> and <suspend/> depends on the preference alone.
    let checkpointed = wait_until(Duration::from_secs(15), || client.has_checkpointed().then_some(())).is_some();

    client
        .task_op("suspend")
        .unwrap_or_else(|e| panic!("{e}\n{}", client.diagnostics()));
    let suspend_sent = Instant::now();
    wait_until(CONTROL_TIMEOUT, || client.is_suspended().then_some(()))
        .unwrap_or_else(|| panic!("the job was not suspended\n{}", client.diagnostics()));
    let to_paused = suspend_sent.elapsed();
    // SUSPENDED: the app got <suspend/> and still runs; UNINITIALIZED: it got <quit/> and exited.
    let app = wait_until(CONTROL_TIMEOUT, || {
        client
            .active_task_state()
            .filter(|s| s == "SUSPENDED" || s == "UNINITIALIZED")
    })
    .unwrap_or_else(|| {
        panic!(
            "the app is {:?} after suspend\n{}",
            client.active_task_state(),
            client.diagnostics()
        )
    });
    let how = format!(
        "{}{}",
        if checkpointed { "" } else { "no checkpoint reported, " },
        if app == "SUSPENDED" {
            "client sent <suspend/>"
        } else {
            "client sent <quit/>, wrapper exited"
        }
    );
    if checkpointed && !in_memory {
        assert_eq!(
            app,
            "UNINITIALIZED",
            "a task that checkpointed must be quit on suspend\n{}",
            client.diagnostics()
        );
    }
    if in_memory {
        assert_eq!(
            app,
            "SUSPENDED",
            "with leave_apps_in_memory the app must stay in memory\n{}",
            client.diagnostics()
        );
    }
    assert_frozen(&client);
    assert!(client.is_suspended(), "the container did not stay paused\n{}", client.diagnostics());
    let frozen_at = count(&client);

    client
        .task_op("resume")
        .unwrap_or_else(|e| panic!("{e}\n{}", client.diagnostics()));
    let resumed = Instant::now();
    wait_for_count(&client, frozen_at, CONTROL_TIMEOUT);
    let to_counting = resumed.elapsed();
    release(&client);

    let result = client.wait_final(FINAL_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert_done(&client, &result);
    assert_one_start(&client);
    assert_eq!(client.container_state(), None, "the container was left behind");
    report(
        scenario,
        &engine,
        &result,
        &client,
        &format!(
            "{how}; paused {:.2} s after `boinccmd suspend`, counting again {:.2} s after `resume`",
            to_paused.as_secs_f64(),
            to_counting.as_secs_f64()
        ),
    );
}

/// `boinccmd --task ... abort` -> the result is aborted, the wrapper exits
/// promptly and the container is gone.
fn abort_removes_the_container(engine: Engine) {
    let client = start("abort", &engine, &Job::shell(COUNTER_JOB));
    wait_for_count(&client, 3, RUNNING_TIMEOUT);

    let aborted = Instant::now();
    client
        .task_op("abort")
        .unwrap_or_else(|e| panic!("{e}\n{}", client.diagnostics()));
    let result = client
        .wait_result(CONTROL_TIMEOUT, |r| r.state == RESULT_ABORTED)
        .unwrap_or_else(|e| panic!("{e}"));
    wait_for_container_state(&client, None, CONTROL_TIMEOUT);
    let to_gone = aborted.elapsed();
    // The client kills an app that ignores <abort/> only after 60 s.
    let exited = wait_until(CONTROL_TIMEOUT, || {
        client
            .active_task_state()
            .filter(|s| s == "UNINITIALIZED")
            .map(|_| aborted.elapsed())
    })
    .unwrap_or_else(|| {
        panic!(
            "the wrapper did not exit after abort: {:?}\n{}",
            client.active_task_state(),
            client.diagnostics()
        )
    });
    let result = client.result().unwrap_or(result);
    assert_eq!(
        (result.state, result.exit_status),
        (RESULT_ABORTED, EXIT_ABORTED_VIA_GUI),
        "expected aborted via GUI, got {result}\n{}",
        client.diagnostics()
    );
    report(
        "abort_removes_the_container",
        &engine,
        &result,
        &client,
        &format!(
            "no container {:.2} s after `boinccmd abort`, wrapper gone after {:.2} s",
            to_gone.as_secs_f64(),
            exited.as_secs_f64()
        ),
    );
}

/// `boinccmd --quit` mid-task: the wrapper keeps the container (paused) and
/// exits with the client; the client started again restarts the task, which
/// goes on in the same container and completes: one start of the job.
fn client_restart_continues_the_task(engine: Engine) {
    let job = Job::shell(COUNTER_JOB).output("starts.txt");
    let mut client = start("client_restart", &engine, &job);
    wait_for_count(&client, 5, RUNNING_TIMEOUT);

    let quit_took = client
        .quit()
        .unwrap_or_else(|e| panic!("{e}\n{}", client.diagnostics()));
    assert!(
        client.is_suspended(),
        "after the client quit the container is {:?}, not suspended\n{}",
        client.container_state(),
        client.diagnostics()
    );
    assert_frozen(&client);
    let before = count(&client);

    let restarted = Instant::now();
    client.restart().unwrap_or_else(|e| panic!("restart: {e}"));
    wait_for_count(&client, before, RUNNING_TIMEOUT);
    let to_counting = restarted.elapsed();
    release(&client);

    let result = client.wait_final(FINAL_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert_done(&client, &result);
    assert_one_start(&client);
    assert_eq!(client.container_state(), None, "the container was left behind");
    report(
        "client_restart_continues_the_task",
        &engine,
        &result,
        &client,
        &format!(
            "client quit in {:.1} s with the container paused, counting again {:.1} s after the client restarted",
            quit_took.as_secs_f64(),
            to_counting.as_secs_f64()
        ),
    );
}
