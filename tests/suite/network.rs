//! The client's "network suspended" flag takes the container off its
//! networks and resuming puts it back, on real Podman and real Docker.

use std::time::Instant;

use dw_test_support::*;

const WRAPPER: &str = wrapper_path!();

/// From the client's flag to the job seeing the change: a heartbeat a
/// second, one tick, one or two engine commands.
const NETWORK_CHANGE_TIMEOUT: Duration = Duration::from_secs(20);

on_both_engines!(
    suspended_network_is_disconnected_and_resume_reconnects,
    a_job_without_network_is_left_alone,
    quit_while_disconnected_keeps_the_container_with_its_network,
);

/// Appends "up" or "down" to net_log.txt each time the job's view changes
/// (a network interface other than lo, or none), polling every 0.1 s until
/// the file `go` appears. Shell builtins only but `sleep`: the cgroup v1
/// freezer cannot pause a container that forks all the time.
const NET_WATCH_JOB: &str = "last=; while [ ! -f go ]; do now=down; \
    for i in /sys/class/net/*; do [ \"${i##*/}\" = lo ] || now=up; done; \
    if [ \"$now\" != \"$last\" ]; then echo $now >> net_log.txt; last=$now; fi; \
    sleep 0.1; done";

/// The job's current view of the network: the last line of net_log.txt.
fn job_sees(task: &Task) -> Option<String> {
    let log = task.read_slot_file("net_log.txt")?;
    log.lines().last().map(str::to_string)
}

/// Waits (bounded) until the job sees `want`; how long it took.
fn wait_job_sees(task: &Task, want: &str, timeout: Duration) -> Duration {
    let start = Instant::now();
    let seen = wait_until(timeout, || {
        (job_sees(task).as_deref() == Some(want)).then_some(())
    });
    assert!(
        seen.is_some(),
        "the job did not see the network {want} within {timeout:?} (log {:?})\n{}",
        task.read_slot_file("net_log.txt"),
        task.logs_tail(30)
    );
    start.elapsed()
}

/// Names of the engine networks the container is on, one per line.
fn networks(engine: &TestEngine, task: &Task) -> String {
    let format = "{{range $name, $net := .NetworkSettings.Networks}}{{println $name}}{{end}}";
    engine
        .inspect_container(&task.container_name(), format)
        .unwrap_or_default()
}

fn default_network(kind: EngineKind) -> &'static str {
    match kind {
        EngineKind::Docker => "bridge",
        EngineKind::Podman => "podman",
    }
}

fn suspended_network_is_disconnected_and_resume_reconnects(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let job = TestJob::shell(NET_WATCH_JOB);
    let mut task = TaskBuilder::on_engine("net_suspend", WRAPPER, &engine)
        .job(job)
        .start()
        .unwrap();
    wait_job_sees(&task, "up", TASK_TIMEOUT);
    assert_eq!(networks(&engine, &task), default_network(kind));

    task.set_network_suspended(true);
    let took = wait_job_sees(&task, "down", NETWORK_CHANGE_TIMEOUT);
    eprintln!("{kind:?}: network suspended -> the job sees no network: {took:?}");
    assert_eq!(networks(&engine, &task), "");

    task.set_network_suspended(false);
    let took = wait_job_sees(&task, "up", NETWORK_CHANGE_TIMEOUT);
    eprintln!("{kind:?}: network resumed -> the job sees the network: {took:?}");
    assert_eq!(
        networks(&engine, &task),
        default_network(kind),
        "not the same networks as before"
    );

    let outcome = task.release_and_wait(TASK_TIMEOUT);
    outcome.assert_finished(0);
    assert_eq!(
        task.read_slot_file("net_log.txt").as_deref(),
        Some("up\ndown\nup\n")
    );
    outcome.assert_said(&["container disconnected from", "container reconnected to"]);
    outcome.assert_not_said(&["cannot be disconnected", "cannot reconnect"]);
    engine.assert_no_container(&task);
}

fn a_job_without_network_is_left_alone(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let job = TestJob::shell(NET_WATCH_JOB).job_toml("network = false\n");
    let mut task = TaskBuilder::on_engine("net_none", WRAPPER, &engine)
        .job(job)
        .start()
        .unwrap();
    wait_job_sees(&task, "down", TASK_TIMEOUT);

    // A few heartbeats with the flag set, then a few without.
    for suspended in [true, false] {
        task.set_network_suspended(suspended);
        let sent = task.heartbeats_sent();
        let more = wait_until(Duration::from_secs(15), || {
            (task.heartbeats_sent() >= sent + 3).then_some(())
        });
        assert!(
            more.is_some(),
            "no heartbeats reach the wrapper\n{}",
            task.logs_tail(30)
        );
    }

    let outcome = task.release_and_wait(TASK_TIMEOUT);
    outcome.assert_finished(0);
    assert_eq!(
        task.read_slot_file("net_log.txt").as_deref(),
        Some("down\n"),
        "the job had a network"
    );
    let stderr = outcome.stderr_txt.to_lowercase();
    assert!(
        !stderr.contains("disconnect") && !stderr.contains("reconnect"),
        "{}",
        outcome.describe()
    );
    engine.assert_no_container(&task);
}

/// The hardest path: network suspended, then the task suspended (container
/// paused), then quit. The kept container gets its networks back before the
/// wrapper exits (the next wrapper would not know they were taken), as a
/// real interface, not only in the engine's records (Podman changes a
/// paused container's records only).
fn quit_while_disconnected_keeps_the_container_with_its_network(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let job = TestJob::shell(NET_WATCH_JOB);
    let mut task = TaskBuilder::on_engine("net_quit", WRAPPER, &engine)
        .job(job)
        .start()
        .unwrap();
    let name = task.container_name();
    wait_job_sees(&task, "up", TASK_TIMEOUT);
    task.set_network_suspended(true);
    wait_job_sees(&task, "down", NETWORK_CHANGE_TIMEOUT);

    task.send_control(Control::Suspend);
    let paused = engine.wait_for_container_state(&name, "paused", Duration::from_secs(10));
    assert!(paused.is_ok(), "{paused:?}\n{}", task.logs_tail(40));
    task.send_control(Control::Quit);
    let outcome = task.wait_exit(Duration::from_secs(30)).unwrap();
    outcome
        .noted("quit must not finish the task")
        .assert_not_finished();
    assert_eq!(engine.container_state(&name).as_deref(), Some("paused"));
    assert_eq!(
        networks(&engine, &task),
        default_network(kind),
        "kept without its network"
    );

    // Nothing tells the restarted wrapper about the earlier disconnect.
    task.set_network_suspended(false);
    task.restart().unwrap();
    wait_job_sees(&task, "up", NETWORK_CHANGE_TIMEOUT);
    assert_eq!(networks(&engine, &task), default_network(kind));
    let outcome = task.release_and_wait(TASK_TIMEOUT);
    outcome.assert_finished(0);
    engine.assert_no_container(&task);
}
