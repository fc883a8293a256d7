//! End to end under the real BOINC clients, as on a volunteer's Linux host:
//! Debian's boinc-client 7.20.5 on Podman and on Docker as root and on
//! rootless Podman as the user `boinc`; and BOINC 8.2.15, the client
//! volunteers run for Docker apps (built with `cargo xtask client`, or found
//! in `DW_BOINC8_CLIENT_DIR`), on the same three and on Docker as `boinc`
//! (through the docker group). Input and output files as the client
//! delivers them, exit codes, suspend/resume, abort, and a client restart
//! mid-task after a quit and after a crash.
//!
//! `cargo test --release --test real_client -- --test-threads 2 --nocapture`
//! prints, per scenario, client and engine, the result state and exit status
//! the client recorded and the wall time.
//!
//! Linux only: the real clients are Linux builds.
#![cfg(target_os = "linux")]

#[path = "real_client/mod.rs"]
mod harness;

use harness::*;

/// Generates from `fn scenario(variant)` the tests, under the 7.20 client,
/// `<scenario>::podman`, `<scenario>::docker` (client as root) and
/// `<scenario>::podman_as_boinc`, and under the 8.2 client
/// `<scenario>::boinc8::{podman, docker, podman_as_boinc, docker_as_boinc}`.
macro_rules! on_each_engine {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::harness::{ClientVersion::V7_20, EngineKind::{Docker, Podman}};
            use super::{as_boinc, as_root};
            #[test]
            fn podman() {
                super::$name(as_root(V7_20, Podman));
            }
            #[test]
            fn docker() {
                super::$name(as_root(V7_20, Docker));
            }
            #[test]
            fn podman_as_boinc() {
                super::$name(as_boinc(V7_20, Podman));
            }
            /// Under the BOINC 8.2.15 client.
            mod boinc8 {
                use super::super::harness::{ClientVersion::V8_2, EngineKind::{Docker, Podman}};
                use super::super::{as_boinc, as_root};
                #[test]
                fn podman() {
                    super::super::$name(as_root(V8_2, Podman));
                }
                #[test]
                fn docker() {
                    super::super::$name(as_root(V8_2, Docker));
                }
                #[test]
                fn podman_as_boinc() {
                    super::super::$name(as_boinc(V8_2, Podman));
                }
                #[test]
                fn docker_as_boinc() {
                    super::super::$name(as_boinc(V8_2, Docker));
                }
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
    client_killed_continues_the_task,
);

/// Generates `<scenario>::boinc8::{podman, docker}`: under the BOINC 8.2.15
/// client as root only, for what depends on the client's side of the
/// protocol rather than on the engine's user.
macro_rules! on_boinc8 {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            mod boinc8 {
                use super::super::harness::{ClientVersion::V8_2, EngineKind::{Docker, Podman}};
                use super::super::as_root;
                #[test]
                fn podman() {
                    super::super::$name(as_root(V8_2, Podman));
                }
                #[test]
                fn docker() {
                    super::super::$name(as_root(V8_2, Docker));
                }
            }
        }
    )*};
}

on_boinc8!(
    completion_file_finishes_with_the_jobs_message,
    temporary_exit_file_is_retried_in_the_same_container,
);

/// The client runs as root, and so do the wrapper and the engine CLI.
fn as_root(client: ClientVersion, kind: EngineKind) -> Variant {
    Variant::new(client, engine::as_root(kind))
}

/// The client runs as the user `boinc`: rootless Podman, or Docker through the group.
fn as_boinc(client: ClientVersion, kind: EngineKind) -> Variant {
    Variant::new(client, engine::as_boinc(kind))
}

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

fn start(label: &str, variant: &Variant, job: &Workunit) -> RealClient {
    let job = if variant.engine.lacks_network() {
        job.clone().without_network()
    } else {
        job.clone()
    };
    RealClient::start(label, variant, &job)
        .unwrap_or_else(|e| panic!("{label} on {}: {e}", variant.label()))
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

fn wait_for_container_state(
    client: &RealClient,
    wanted: Option<&str>,
    timeout: Duration,
) -> Duration {
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
    assert!(
        suspended.is_some(),
        "the job was not suspended\n{}",
        client.diagnostics()
    );
    let before = count(client);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        count(client),
        before,
        "the job kept counting while paused\n{}",
        client.diagnostics()
    );
}

fn release(client: &RealClient) {
    client
        .write_slot_file("go", "")
        .unwrap_or_else(|e| panic!("{e}\n{}", client.diagnostics()));
}

/// Lets a counter job that went through a suspension or restart finish,
/// and checks it did so in one run: done, started once, its container gone,
/// on the variant's engine.
fn release_and_check_one_run(variant: &Variant, client: &RealClient) -> ResultRecord {
    release(client);
    let result = client
        .wait_final(FINAL_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_done(client, &result);
    assert_one_start(client);
    assert_eq!(
        client.container_state(),
        None,
        "the container was left behind"
    );
    assert_ran_on_the_engine(variant, client, &result);
    result
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

/// The wrapper ran the job on the variant's engine: its log (in the
/// result's stderr) names the engine it chose.
fn assert_ran_on_the_engine(variant: &Variant, client: &RealClient, result: &ResultRecord) {
    let (wanted, other) = match variant.engine.kind() {
        EngineKind::Podman => ("using Podman ", "using Docker "),
        EngineKind::Docker => ("using Docker ", "using Podman "),
    };
    assert!(
        result.stderr_out.contains(wanted) && !result.stderr_out.contains(other),
        "the wrapper's log does not say {wanted:?} (and only that):\n{}\n{}",
        result.stderr_out,
        client.diagnostics()
    );
}

/// The line the table of results is made of: state, exit status, wall time.
fn report(
    scenario: &str,
    variant: &Variant,
    result: &ResultRecord,
    client: &RealClient,
    details: &str,
) {
    println!(
        "real_client {scenario}::{}: {result}, wall time {:.1} s{}{details}",
        variant.label(),
        client.age().as_secs_f64(),
        if details.is_empty() { "" } else { "; " }
    );
}

/// An input file arrives in the slot as a `<soft_link>` file, the job reads
/// the real data and writes an output file that the client keeps.
fn input_to_output(variant: Variant) {
    let job = Workunit::shell(
        "echo \"job started, arguments: $*\"\n\
         while [ ! -f go ]; do sleep 0.1; done\n\
         { echo \"args: $*\"; tr a-z A-Z < in.txt; } > out.txt\n\
         echo \"job done\"",
    )
    .command_line("alpha beta")
    .input("in.txt", "hello from the workunit\n")
    .output("out.txt");
    let client = start("input_to_output", &variant, &job);

    // The job waits for `go`, so the slot can be looked at as the client made it.
    let link =
        wait_until(RUNNING_TIMEOUT, || client.read_slot_file("in.txt")).unwrap_or_else(|| {
            panic!(
                "in.txt never appeared in the slot\n{}",
                client.diagnostics()
            )
        });
    assert!(
        link.trim_start().starts_with("<soft_link>"),
        "the client delivered in.txt as {link:?}, not as a soft-link file"
    );
    wait_for_container_state(&client, Some("running"), RUNNING_TIMEOUT);
    // What the client found, as the wrapper reads it (none from 7.20).
    let docker_type = client.slot_docker_type();
    assert_eq!(
        docker_type,
        variant.expected_docker_type(),
        "host_info/docker_type in the slot's init_data.xml\n{}",
        client.diagnostics()
    );
    release(&client);

    let result = client
        .wait_final(FINAL_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_done(&client, &result);
    assert_ran_on_the_engine(&variant, &client, &result);
    let output = std::fs::read_to_string(client.output_path("out.txt")).unwrap_or_else(|e| {
        panic!(
            "output file missing in the project dir: {e}\n{}",
            client.diagnostics()
        )
    });
    assert_eq!(output, "args: alpha beta\nHELLO FROM THE WORKUNIT\n");
    assert!(
        result.stderr_out.contains("job done"),
        "the container's log is not in stderr_out:\n{}",
        result.stderr_out
    );
    assert_eq!(
        client.container_state(),
        None,
        "the container was left behind"
    );
    report(
        "input_to_output",
        &variant,
        &result,
        &client,
        &format!(
            "output file present with the expected content; init_data.xml docker_type {}",
            docker_type.map_or_else(|| "absent".to_string(), |t| t.to_string())
        ),
    );
}

/// Exit status 3 -> compute error 3, with the job's own output in stderr_out.
fn exit_code_is_a_compute_error(variant: Variant) {
    let line = "the job prints this line, then exits with status 3";
    let client = start(
        "exit_code",
        &variant,
        &Workunit::shell(&format!("echo \"{line}\"\nexit 3")),
    );
    let result = client
        .wait_final(FINAL_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
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
    assert_eq!(
        client.container_state(),
        None,
        "the container was left behind"
    );
    assert_ran_on_the_engine(&variant, &client, &result);
    report(
        "exit_code_is_a_compute_error",
        &variant,
        &result,
        &client,
        "",
    );
}

fn suspend_resume(variant: Variant) {
    suspend_then_resume("suspend_resume", &variant, false);
}

fn suspend_resume_in_memory(variant: Variant) {
    suspend_then_resume("suspend_resume_in_memory", &variant, true);
}

/// `boinccmd --task ... suspend` -> the container is paused (inspect), the
/// job stops counting; `resume` -> it goes on and completes, never restarted.
/// With "leave applications in memory" off the client sends `<quit/>` to a
/// task that has checkpointed (the wrapper keeps the container paused and
/// exits; the client starts it again on resume); with it on, `<suspend/>`.
fn suspend_then_resume(scenario: &str, variant: &Variant, in_memory: bool) {
    let job = Workunit::shell(COUNTER_JOB)
        .output("starts.txt")
        .leave_apps_in_memory(in_memory);
    let client = start(scenario, variant, &job);
    wait_for_count(&client, 5, RUNNING_TIMEOUT);
    // Once the wrapper has reported a checkpoint, the client's choice between
    // <quit/> and <suspend/> depends on the preference alone.
    let checkpointed = wait_until(Duration::from_secs(15), || {
        client.has_checkpointed().then_some(())
    })
    .is_some();

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
        if checkpointed {
            ""
        } else {
            "no checkpoint reported, "
        },
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
    assert!(
        client.is_suspended(),
        "the container did not stay paused\n{}",
        client.diagnostics()
    );
    let frozen_at = count(&client);

    client
        .task_op("resume")
        .unwrap_or_else(|e| panic!("{e}\n{}", client.diagnostics()));
    let resumed = Instant::now();
    wait_for_count(&client, frozen_at, CONTROL_TIMEOUT);
    let to_counting = resumed.elapsed();
    let result = release_and_check_one_run(variant, &client);
    report(
        scenario,
        variant,
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
fn abort_removes_the_container(variant: Variant) {
    let client = start("abort", &variant, &Workunit::shell(COUNTER_JOB));
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
        &variant,
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
fn client_restart_continues_the_task(variant: Variant) {
    let job = Workunit::shell(COUNTER_JOB).output("starts.txt");
    let mut client = start("client_restart", &variant, &job);
    wait_for_count(&client, 5, RUNNING_TIMEOUT);
    let container = task_container_id(&client);

    let quit_took = client
        .quit()
        .unwrap_or_else(|e| panic!("{e}\n{}", client.diagnostics()));
    assert_left_suspended(&client, "the client quit");
    assert_frozen(&client);
    let before = count(&client);

    let restarted = Instant::now();
    client.restart().unwrap_or_else(|e| panic!("restart: {e}"));
    wait_for_count(&client, before, RUNNING_TIMEOUT);
    let to_counting = restarted.elapsed();
    assert_same_container(&client, &container);
    let result = release_and_check_one_run(&variant, &client);
    report(
        "client_restart_continues_the_task",
        &variant,
        &result,
        &client,
        &format!(
            "client quit in {:.1} s with the container paused, counting again {:.1} s after the client restarted",
            quit_took.as_secs_f64(),
            to_counting.as_secs_f64()
        ),
    );
}

/// The client dies (SIGKILL, as in a crash) mid-task and is started again:
/// the wrapper notices its client is gone, keeps the container (paused) and
/// exits; the restarted client restarts the task, whose job goes on in the
/// same container (same ID, one start of the job). Before the restart a
/// stray `boinc__` container of the project that belongs to no task is
/// created: the 8.2 client's startup cleanup removes it, and must leave the
/// active task's container alone; the 7.20 client has no such cleanup.
fn client_killed_continues_the_task(variant: Variant) {
    let job = Workunit::shell(COUNTER_JOB).output("starts.txt");
    let mut client = start("client_killed", &variant, &job);
    wait_for_count(&client, 5, RUNNING_TIMEOUT);
    let container = task_container_id(&client);

    client.kill_client_only();
    let wrapper_exited = client
        .wait_apps_gone()
        .unwrap_or_else(|e| panic!("{e}\n{}", client.diagnostics()));
    assert_left_suspended(&client, "its client died and the wrapper exited");
    assert_frozen(&client);
    let before = count(&client);

    let stray = StrayContainer::create(
        &variant.engine,
        &format!("{}_stray", client.container_name()),
    );
    let restarted = Instant::now();
    client.restart().unwrap_or_else(|e| panic!("restart: {e}"));
    wait_for_count(&client, before, RUNNING_TIMEOUT);
    let to_counting = restarted.elapsed();
    assert_same_container(&client, &container);
    assert!(
        !client.removed_by_cleanup(&client.container_name()),
        "the client's startup cleanup removed the task's container\n{}",
        client.diagnostics()
    );
    let stray_removed = variant.engine.container_state(&stray.name).is_none();
    match variant.client {
        ClientVersion::V8_2 => assert!(
            stray_removed && client.removed_by_cleanup(&stray.name),
            "the 8.2 client did not remove the stray container {} at startup\n{}",
            stray.name,
            client.diagnostics()
        ),
        ClientVersion::V7_20 => assert!(
            !stray_removed,
            "the stray container {} is gone, yet a 7.20 client has no Docker cleanup\n{}",
            stray.name,
            client.diagnostics()
        ),
    }
    let result = release_and_check_one_run(&variant, &client);
    report(
        "client_killed_continues_the_task",
        &variant,
        &result,
        &client,
        &format!(
            "client killed, wrapper exited {:.1} s later with the container paused; counting again {:.1} s after \
             the client restarted, same container; stray boinc__ container {}",
            wrapper_exited.as_secs_f64(),
            to_counting.as_secs_f64(),
            if stray_removed { "removed by the client" } else { "left alone" }
        ),
    );
}

/// The wrapper left the job suspended when it exited: paused by the engine,
/// or its processes stopped (a SIGSTOP reaches a process only when it leaves
/// the kernel, so on a busy host that can take a moment after the exit).
fn assert_left_suspended(client: &RealClient, after: &str) {
    let suspended = wait_until(Duration::from_secs(5), || {
        client.is_suspended().then_some(())
    });
    assert!(
        suspended.is_some(),
        "after {after} the container is {:?}, not suspended\n{}",
        client.container_state(),
        client.diagnostics()
    );
}

fn task_container_id(client: &RealClient) -> String {
    client.container_id().unwrap_or_else(|| {
        panic!(
            "the task has no container {}\n{}",
            client.container_name(),
            client.diagnostics()
        )
    })
}

/// The job runs in the container it started in, not in a new one.
fn assert_same_container(client: &RealClient, id: &str) {
    assert_eq!(
        client.container_id().as_deref(),
        Some(id),
        "the task's container was replaced\n{}",
        client.diagnostics()
    );
}

/// A container named like a task's that belongs to no task; removed on drop.
struct StrayContainer {
    engine: TestEngine,
    name: String,
}

impl StrayContainer {
    fn create(engine: &TestEngine, name: &str) -> StrayContainer {
        engine
            .create_idle_container(name)
            .unwrap_or_else(|e| panic!("cannot create the stray container: {e}"));
        StrayContainer {
            engine: engine.clone(),
            name: name.to_string(),
        }
    }
}

impl Drop for StrayContainer {
    fn drop(&mut self) {
        if let Err(e) = self.engine.remove_container(&self.name) {
            eprintln!("warning: cannot remove {}: {e}", self.name);
        }
    }
}

/// A job that runs like a service says it is done through its completion
/// file: the client records success with the job's code, and shows its
/// message.
fn completion_file_finishes_with_the_jobs_message(variant: Variant) {
    let message = "all steps done, the service may stop";
    let script = format!(
        "echo start >> starts.txt\nprintf '0\\n0\\n{message}\\n' > boinc_completed\n\
         while :; do sleep 1; done"
    );
    let job = Workunit::shell(&script)
        .output("starts.txt")
        .job_toml("completion_trigger_file = \"boinc_completed\"");
    let client = start("completion_file", &variant, &job);
    let result = client
        .wait_final(FINAL_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_done(&client, &result);
    assert_one_start(&client);
    assert!(
        client
            .client_log()
            .contains(&format!("Message from task: {message}")),
        "the client did not show the job's message\n{}",
        client.diagnostics()
    );
    assert_eq!(
        client.container_state(),
        None,
        "the container was left behind"
    );
    report(
        "completion_file_finishes_with_the_jobs_message",
        &variant,
        &result,
        &client,
        "",
    );
}

/// The job asks for a temporary exit through its file: the client takes the
/// task off the CPU with the job's reason and restarts it after the delay,
/// and the job goes on in the same container (one start of the job).
fn temporary_exit_file_is_retried_in_the_same_container(variant: Variant) {
    let reason = "waiting for the input server";
    let script = format!(
        "echo start >> starts.txt\n\
         if [ ! -f asked ]; then touch asked; printf '5\\n0\\n{reason}\\n' > retry_later; fi\n\
         i=0\nwhile [ ! -f go ]; do i=$((i+1)); echo $i > count.txt; sleep 0.2; done"
    );
    let job = Workunit::shell(&script)
        .output("starts.txt")
        .job_toml("temporary_exit_trigger_file = \"retry_later\"");
    let client = start("temporary_exit_file", &variant, &job);
    let asked = wait_until(RUNNING_TIMEOUT, || {
        client.client_log().contains(reason).then_some(())
    });
    assert!(
        asked.is_some(),
        "the client did not log the job's reason\n{}",
        client.diagnostics()
    );
    let container = task_container_id(&client);
    // Restarted after the job's delay: counting again in the same container.
    let before = count(&client);
    wait_for_count(&client, before + 5, RUNNING_TIMEOUT);
    assert_same_container(&client, &container);
    let result = release_and_check_one_run(&variant, &client);
    report(
        "temporary_exit_file_is_retried_in_the_same_container",
        &variant,
        &result,
        &client,
        "",
    );
}
