//! The control files a job writes to talk to the client (job.toml's
//! vboxwrapper keys), under the client emulator on real Podman and Docker.

use dw_test_support::*;

const WRAPPER: &str = wrapper_path!();

on_both_engines!(
    a_completion_file_ends_a_service_with_its_code_and_message,
    a_temporary_exit_file_asks_for_a_retry_and_the_restart_continues,
    a_trickle_file_becomes_a_trickle_up_message,
    an_intermediate_upload_is_requested,
    a_silent_heartbeat_ends_the_task,
    a_checkpoint_file_moves_the_checkpoint_cpu_time,
);

fn task_with(kind: EngineKind, name: &str, script: &str, job_toml: &str) -> (TestEngine, Task) {
    let engine = TestEngine::require(kind);
    let task = TaskBuilder::on_engine(name, WRAPPER, &engine)
        .job(TestJob::shell(script).job_toml(job_toml))
        .start()
        .unwrap();
    (engine, task)
}

fn a_completion_file_ends_a_service_with_its_code_and_message(kind: EngineKind) {
    // A service that never exits by itself.
    let script = "printf '3\\n1\\nall   done,\\nsee you\\n' > done.txt; while :; do sleep 1; done";
    let (engine, mut task) = task_with(
        kind,
        "completion",
        script,
        "completion_trigger_file = \"done.txt\"",
    );
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(3);
    let finish_file = outcome.finish_file.clone().unwrap_or_default();
    assert_eq!(finish_file, "3\nall done, see you\nnotice\n");
    outcome.assert_said(&["completion file: code 3"]);
    engine.assert_no_container(&task);
}

fn a_temporary_exit_file_asks_for_a_retry_and_the_restart_continues(kind: EngineKind) {
    // Asks once for a retry, then waits to be released.
    let script = "if [ ! -f asked ]; then touch asked; \
                  printf '7\\n0\\nwaiting for the\\ninput server\\n' > retry.txt; fi; \
                  while [ ! -f go ]; do sleep 0.1; done; echo resumed > out.txt";
    let (engine, mut task) = task_with(
        kind,
        "temporary_exit",
        script,
        "temporary_exit_trigger_file = \"retry.txt\"",
    );
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    assert_eq!(
        outcome.temporary_exit_delay(),
        Some(7),
        "{}",
        outcome.describe()
    );
    assert_eq!(
        outcome.temporary_exit_reason(),
        Some("waiting for the input server")
    );
    outcome.assert_not_finished();
    assert!(
        task.read_slot_file("retry.txt").is_none(),
        "acted on, then removed"
    );
    let container = task.container_name();
    let id = engine.inspect_container(&container, "{{.Id}}");
    assert!(id.is_some(), "the container is kept for the retry");

    task.restart().unwrap();
    // Paused by the engine, or its processes stopped where the engine
    // could not freeze them: either way the restart continues it.
    let resumed = wait_until(TASK_TIMEOUT, || {
        let log = task.stderr_txt();
        (log.contains("paused from an earlier run")
            || log.contains("already running: re-attaching"))
        .then_some(())
    });
    assert!(resumed.is_some(), "{}", task.logs_tail(30));
    assert_eq!(
        engine.inspect_container(&container, "{{.Id}}"),
        id,
        "the same container continues"
    );
    std::fs::write(task.slot_dir().join("go"), "").unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(0);
    assert_eq!(task.read_slot_file("out.txt").unwrap().trim(), "resumed");
    engine.assert_no_container(&task);
}

fn a_trickle_file_becomes_a_trickle_up_message(kind: EngineKind) {
    let script = "echo '<progress>0.5</progress>' > progress_report; \
                  while [ -f progress_report ]; do sleep 0.1; done; \
                  while [ ! -f go ]; do sleep 0.1; done";
    let (engine, mut task) = task_with(
        kind,
        "trickle",
        script,
        "trickle_trigger_files = [\"progress_report\"]",
    );
    let sent = wait_until(TASK_TIMEOUT, || {
        task.read_slot_file("trickle_up.xml")
            .filter(|_| !task.trickle_up_messages().is_empty())
    });
    let sent = sent.unwrap_or_else(|| panic!("no trickle-up\n{}", task.logs_tail(30)));
    assert!(
        sent.contains("<variety>progress_report</variety>"),
        "{sent}"
    );
    assert!(sent.contains("<progress>0.5</progress>"), "{sent}");
    std::fs::write(task.slot_dir().join("go"), "").unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(0);
    engine.assert_no_container(&task);
}

fn an_intermediate_upload_is_requested(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let script = "echo 'first results' > partial.dat; while [ ! -f go ]; do sleep 0.1; done";
    let mut task = TaskBuilder::on_engine("upload", WRAPPER, &engine)
        .job(TestJob::shell(script).job_toml("intermediate_upload_files = [\"partial.dat\"]"))
        .output_file("partial.dat", "wu_upload_0_partial.dat")
        .start()
        .unwrap();
    let request = wait_until(TASK_TIMEOUT, || {
        task.slot_dir()
            .join("boinc_ufr_partial.dat")
            .exists()
            .then_some(())
    });
    assert!(
        request.is_some(),
        "no upload request\n{}",
        task.logs_tail(30)
    );
    let asked = wait_until(Duration::from_secs(10), || {
        task.trickle_up_messages()
            .iter()
            .any(|m| m.contains("upload_file"))
            .then_some(())
    });
    assert!(asked.is_some(), "{:?}", task.trickle_up_messages());
    std::fs::write(task.slot_dir().join("go"), "").unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(0);
    outcome.assert_said(&["partial.dat: upload requested"]);
    engine.assert_no_container(&task);
}

fn a_silent_heartbeat_ends_the_task(kind: EngineKind) {
    // Beats twice, then hangs.
    let script = "touch beat; sleep 2; touch beat; while :; do sleep 1; done";
    let (engine, mut task) = task_with(
        kind,
        "heartbeat",
        script,
        "heartbeat_filename = \"beat\"\nminimum_heartbeat_interval = 10",
    );
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(195);
    outcome.assert_said(&[
        "has not touched beat for ",
        "(minimum_heartbeat_interval 10 s): it is taken as hung",
    ]);
    engine.assert_no_container(&task);
}

fn a_checkpoint_file_moves_the_checkpoint_cpu_time(kind: EngineKind) {
    // Burns CPU, checkpoints when told, burns more, then waits to be released.
    let burn = "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done";
    let script = format!(
        "{burn}; touch burnt1; while [ ! -f checkpoint_now ]; do sleep 0.1; done; \
         echo 1 > state.ckpt; {burn}; touch burnt2; while [ ! -f go ]; do sleep 0.1; done"
    );
    let (engine, mut task) = task_with(
        kind,
        "checkpoint",
        &script,
        "checkpoint_file = \"state.ckpt\"",
    );
    let fail = |task: &Task, e: String| -> ! { panic!("{e}\n{}", task.logs_tail(30)) };
    wait_until(TASK_TIMEOUT, || task.read_slot_file("burnt1"));
    let before = task
        .wait_for_status(TASK_TIMEOUT, |s| s.current_cpu_time > 0.2)
        .unwrap_or_else(|e| fail(&task, e));
    assert_eq!(
        before.checkpoint_cpu_time, 0.0,
        "no checkpoint yet, no kept CPU time: {before:?}"
    );
    std::fs::write(task.slot_dir().join("checkpoint_now"), "").unwrap();
    let after = task
        .wait_for_status(TASK_TIMEOUT, |s| s.checkpoint_cpu_time > 0.2)
        .unwrap_or_else(|e| fail(&task, e));
    wait_until(TASK_TIMEOUT, || task.read_slot_file("burnt2"));
    let last = task
        .wait_for_status(TASK_TIMEOUT, |s| {
            s.current_cpu_time > after.checkpoint_cpu_time + 0.2
        })
        .unwrap_or_else(|e| fail(&task, e));
    assert!(
        last.checkpoint_cpu_time < last.current_cpu_time,
        "CPU time after the checkpoint is not kept work: {last:?}"
    );
    std::fs::write(task.slot_dir().join("go"), "").unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(0);
    engine.assert_no_container(&task);
}
