//! The supervision paths through a recording fake engine and a scripted
//! client: what the task asks of the engine, what it journals and how it
//! ends, for each way a task can go.
use std::path::Path;

use super::provision::{Made, Prepared, Supply};
use super::*;
use crate::boinc::exit_code::WrapperExit;
use crate::boinc::ClientStatus;
use crate::engine::fake::Call::{
    self, Build, Connect, Disconnect, Find, Info, Inspect, Kill, Logs, Pause, Port, Remove, Run,
    Start, Unpause, Watch,
};
use crate::engine::fake::{self, FakeEngine};
use crate::engine::Facts;
use crate::engine::{ContainerEngine, ContainerState, ContainerStatus, EngineError};
use crate::os;
use crate::slot::journal::{Journal, Phase};
use crate::supervise::client::fake::FakeClient;
use crate::supervise::client::Client;
use crate::test_dir::TestDir;

/// The image every fake task runs.
const IMAGE: &str = "boinc_wrapper/test:1";

/// A slot directory of its own for each test, removed afterwards.
struct Slot(TestDir);

impl Slot {
    fn new(name: &str) -> Slot {
        Slot(TestDir::new(&format!("task-{name}")))
    }

    fn dir(&self) -> &Path {
        &self.0 .0
    }

    fn context(&self) -> TaskContext {
        TaskContext {
            slot_dir: self.dir().to_path_buf(),
            slot: SlotKind::Client,
            config: JobConfig::default(),
            cli: Cli::default(),
            init: InitData {
                ncpus: 1.0,
                project_dir: "/var/lib/boinc/projects/test".into(),
                result_name: "wu_0".into(),
                ..InitData::default()
            },
            container: "boinc__test__wu_0".into(),
            archive: None,
        }
    }

    fn journal_phase(&self) -> Option<Phase> {
        Journal::load(self.dir()).map(|j| j.phase)
    }

    fn keep(&self, phase: Phase) {
        Journal {
            container: "boinc__test__wu_0".into(),
            image: Some("boinc_wrapper/test:1".into()),
            phase,
            cpu_time: 0.0,
            exit_code: None,
        }
        .save(self.dir());
    }
}

/// What a new container needs besides container commands, faked: the
/// image is named at once, and making it is one recorded `Build`.
struct FakeSupply<'a> {
    ctx: &'a TaskContext,
    engine: &'a FakeEngine,
}

impl Supply for FakeSupply<'_> {
    fn image(&self) -> Result<String, TaskError> {
        Ok(IMAGE.into())
    }
    fn make_image(&self, _client: &dyn Client) -> Result<Made, TaskError> {
        self.engine.note(Build)?;
        Ok(Made::Image(IMAGE.into()))
    }
    fn prepare(&self, image: String, facts: &Facts) -> Result<Prepared, TaskError> {
        Ok(Prepared {
            image,
            slot_dir: self.ctx.slot_dir.clone(),
            project_dir: None,
            linked_file_mounts: Vec::new(),
            web_graphics_port: None,
            cgroup_parent: facts.cgroup_driver.map(|driver| format!("{driver:?}")),
            pull_never: facts.knows_pull_never(),
            user: None,
            gpu_args: Vec::new(),
        })
    }
    fn started(&self, _image: &str, _found: bool) {}
}

/// A stop with job.toml's default grace.
fn stop() -> Call {
    Call::Stop {
        grace: std::time::Duration::from_secs(JobConfig::default().stop_grace_secs),
    }
}

/// Runs the task as `run` does after set-up.
fn run_task(
    ctx: &TaskContext,
    engine: &FakeEngine,
    client: &FakeClient,
) -> Result<Outcome, TaskError> {
    let supply = FakeSupply { ctx, engine };
    let mut facts = None;
    let mut task = TaskRun::new(ctx, engine, client);
    let result =
        task.start_and_supervise(&mut |task, looked| task.launch(&supply, &mut facts, looked));
    task.settle(result)
}

/// The commands from launch to running: those before the exit watch.
fn commands_to_start(engine: &FakeEngine) -> Vec<Call> {
    let calls = engine.calls();
    let watch = calls
        .iter()
        .position(|c| *c == Watch)
        .unwrap_or(calls.len());
    calls[..watch].to_vec()
}

fn suspended(s: &mut ClientStatus) {
    s.suspended = true;
}
fn resumed(_: &mut ClientStatus) {}
fn quit(s: &mut ClientStatus) {
    s.quit_request = true;
}

#[test]
fn suspend_and_resume_pause_and_unpause_the_container() {
    let slot = Slot::new("suspend");
    let engine = FakeEngine::fresh();
    engine.exit_after_waits(5, 0, false);
    let client = FakeClient::scripted(&[resumed, suspended, suspended, resumed]);
    let outcome = run_task(&slot.context(), &engine, &client).unwrap();
    assert_eq!(outcome, Outcome::Finished(0));
    assert_eq!(engine.changes(), [Run, Watch, Pause, Unpause, Remove]);
    assert!(engine.calls().contains(&Logs));
    assert_eq!(slot.journal_phase(), Some(Phase::Finished));
    let reports = client.reports.borrow();
    assert_eq!(reports.last().unwrap().fraction_done, 1.0, "{reports:?}");
}

#[test]
fn a_container_that_cannot_be_paused_is_stopped_for_a_restart() {
    let slot = Slot::new("cannot-pause");
    let engine = FakeEngine::fresh();
    for _ in 0..2 {
        engine.fail_next(Pause, fake::failed("container does not have a cgroup"));
    }
    let client = FakeClient::scripted(&[suspended, quit]);
    let outcome = run_task(&slot.context(), &engine, &client).unwrap();
    assert_eq!(outcome, Outcome::KeepForRestart);
    assert_eq!(engine.changes(), [Run, Watch, Pause, Pause, stop()]);
    assert_eq!(slot.journal_phase(), Some(Phase::KeptStopped));
}

#[test]
fn quit_with_quit_action_stop_stops_the_container() {
    let slot = Slot::new("quit-stop");
    let mut ctx = slot.context();
    ctx.config.quit_action = crate::config::QuitAction::Stop;
    let engine = FakeEngine::fresh();
    let client = FakeClient::scripted(&[resumed, quit]);
    assert_eq!(
        run_task(&ctx, &engine, &client).unwrap(),
        Outcome::KeepForRestart
    );
    assert_eq!(engine.changes(), [Run, Watch, stop()]);
    assert_eq!(slot.journal_phase(), Some(Phase::KeptStopped));
}

#[test]
fn abort_kills_and_removes_the_container() {
    let slot = Slot::new("abort");
    let engine = FakeEngine::fresh();
    let client = FakeClient::scripted(&[resumed, |s| s.abort_request = true]);
    let outcome = run_task(&slot.context(), &engine, &client).unwrap();
    assert_eq!(outcome, Outcome::Aborted);
    assert_eq!(engine.changes(), [Run, Watch, Kill, Remove]);
    assert_eq!(engine.container(), None);
}

#[test]
fn an_oom_killed_job_finishes_with_the_memory_error() {
    let slot = Slot::new("oom");
    let engine = FakeEngine::fresh();
    engine.exit_after_waits(2, 137, true);
    let client = FakeClient::scripted(&[resumed]);
    let outcome = run_task(&slot.context(), &engine, &client).unwrap();
    assert_eq!(
        outcome,
        Outcome::Finished(WrapperExit::MemLimitExceeded.code())
    );
    assert_eq!(engine.changes(), [Run, Watch, Remove]);
    // The journal keeps the code reported, as for every other ending: a
    // restart whose report was lost reports the memory error again.
    assert_eq!(
        Journal::load(slot.dir()).unwrap().exit_code,
        Some(WrapperExit::MemLimitExceeded.code())
    );
}

#[test]
fn a_job_that_fills_the_slot_is_ended_with_the_disk_error() {
    let slot = Slot::new("disk");
    let mut ctx = slot.context();
    ctx.init.rsc_disk_bound = 10_000.0;
    std::fs::write(slot.dir().join("big"), vec![0u8; 20_000]).unwrap();
    let engine = FakeEngine::fresh();
    let client = FakeClient::scripted(&[resumed]);
    let outcome = run_task(&ctx, &engine, &client).unwrap();
    assert_eq!(
        outcome,
        Outcome::Finished(WrapperExit::DiskLimitExceeded.code())
    );
    assert_eq!(engine.changes(), [Run, Watch, Kill, Remove]);
}

/// The network is suspended, then the task, then the client quits: what
/// the engine was asked, for an engine that does or does not reconnect a
/// paused container.
fn network_suspension_then_quit(name: &str, reconnects_paused: bool) -> Vec<Call> {
    let slot = Slot::new(name);
    let engine = FakeEngine::fresh();
    engine.reconnect_paused_containers(reconnects_paused);
    let client = FakeClient::scripted(&[
        |s| s.network_suspended = true,
        |s| {
            s.network_suspended = true;
            s.suspended = true
        },
        |s| {
            s.network_suspended = true;
            s.suspended = true;
            s.quit_request = true
        },
    ]);
    let outcome = run_task(&slot.context(), &engine, &client).unwrap();
    assert_eq!(outcome, Outcome::KeepForRestart);
    assert_eq!(slot.journal_phase(), Some(Phase::KeptPaused));
    engine.changes()
}

#[test]
fn networks_taken_for_a_network_suspension_come_back_before_a_restart() {
    // Podman connects only a running container: unpaused for it, paused again.
    assert_eq!(
        network_suspension_then_quit("network-podman", false),
        [
            Run,
            Watch,
            Disconnect("bridge".into()),
            Pause,
            Unpause,
            Connect("bridge".into()),
            Pause
        ]
    );
    // Docker connects a paused one as it is.
    assert_eq!(
        network_suspension_then_quit("network-docker", true),
        [
            Run,
            Watch,
            Disconnect("bridge".into()),
            Pause,
            Connect("bridge".into())
        ]
    );
}

#[test]
fn an_engine_that_hangs_leaves_the_job_running_and_keeps_the_task() {
    let slot = Slot::new("hang");
    let engine = FakeEngine::fresh();
    engine.fail_next(Pause, fake::hung());
    engine.fail_next(Pause, fake::hung());
    engine.fail_next(stop(), fake::hung());
    let client = FakeClient::scripted(&[suspended, quit]);
    let outcome = run_task(&slot.context(), &engine, &client).unwrap();
    assert_eq!(outcome, Outcome::KeepForRestart);
    // A hung engine is not asked again and again: one pause each time.
    assert_eq!(engine.changes(), [Run, Watch, Pause, Pause, stop()]);
    // The next run re-attaches to whatever it finds.
    assert_eq!(slot.journal_phase(), Some(Phase::Running));
}

#[test]
fn an_engine_that_loses_the_container_mid_task_means_a_retry() {
    let slot = Slot::new("lost");
    let engine = FakeEngine::fresh();
    engine.exit_after_waits(2, 0, false);
    engine.lose_exit();
    let client = FakeClient::scripted(&[resumed]);
    let result = run_task(&slot.context(), &engine, &client);
    assert!(
        matches!(result, Err(TaskError::EngineLost(ref why)) if why.contains("does not answer")),
        "{result:?}"
    );
    // Kept for the retry, which finds it by name.
    assert_eq!(engine.changes(), [Run, Watch]);
}

#[test]
fn a_paused_container_from_an_earlier_run_is_unpaused() {
    let slot = Slot::new("reconcile-paused");
    slot.keep(Phase::KeptPaused);
    let engine = with_our_container(ContainerStatus::Paused);
    engine.exit_after_waits(2, 0, false);
    let client = FakeClient::scripted(&[resumed]);
    let outcome = run_task(&slot.context(), &engine, &client).unwrap();
    assert_eq!(outcome, Outcome::Finished(0));
    assert_eq!(engine.changes(), [Unpause, Watch, Remove]);
}

#[test]
fn a_container_stopped_for_a_quit_is_started_again() {
    let slot = Slot::new("reconcile-stopped");
    slot.keep(Phase::KeptStopped);
    let engine = with_our_container(ContainerStatus::Exited);
    engine.edit_container(|c| c.exit_code = 143);
    let client = FakeClient::scripted(&[resumed, quit]);
    let outcome = run_task(&slot.context(), &engine, &client).unwrap();
    assert_eq!(outcome, Outcome::KeepForRestart);
    assert_eq!(engine.changes(), [Start, Watch, Pause]);
}

#[test]
fn a_job_that_ended_while_the_wrapper_was_away_is_reported_not_rerun() {
    let slot = Slot::new("reconcile-ended");
    slot.keep(Phase::Running);
    let engine = with_our_container(ContainerStatus::Exited);
    engine.edit_container(|c| c.exit_code = 3);
    let client = FakeClient::scripted(&[resumed]);
    let outcome = run_task(&slot.context(), &engine, &client).unwrap();
    assert_eq!(outcome, Outcome::Finished(3));
    assert_eq!(engine.changes(), [Remove]);
    assert_eq!(slot.journal_phase(), Some(Phase::Finished));
}

/// An engine with the container an earlier run of the task made.
fn with_our_container(status: ContainerStatus) -> FakeEngine {
    let engine = FakeEngine::with_container(status);
    engine.edit_container(|c| {
        c.result = Some("wu_0".into());
        c.image = Some(IMAGE.into());
    });
    engine
}

/// An engine that already has a container under the task's name, made
/// by the task in `slot` `age_secs` ago.
fn name_taken(status: ContainerStatus, slot: &str, age_secs: i64) -> FakeEngine {
    let engine = FakeEngine::fresh();
    engine.set_container(Some(status));
    engine.edit_container(|c| {
        c.slot = Some(slot.into());
        c.result = Some("wu_0".into());
        c.image = Some(IMAGE.into());
        c.created = Some(os::unix_time_now() - age_secs);
    });
    engine
}

#[test]
fn a_cached_start_without_a_journal_is_two_commands() {
    let slot = Slot::new("cached-start");
    let engine = FakeEngine::fresh();
    engine.exit_after_waits(2, 0, false);
    let client = FakeClient::scripted(&[resumed]);
    let outcome = run_task(&slot.context(), &engine, &client).unwrap();
    assert_eq!(outcome, Outcome::Finished(0));
    // `run -d` (create and start, no look for the name or the image
    // first), then `inspect` for the pid the exit watch needs.
    assert_eq!(commands_to_start(&engine), [Run, Inspect]);
    let spec = engine.last_spec().unwrap();
    assert!(spec.pull_never && spec.resource_limits, "{spec:?}");
    assert_eq!(spec.cgroup_parent.as_deref(), Some("Cgroupfs"));
    assert_eq!(spec.image, IMAGE);
}

#[test]
fn facts_the_host_does_not_remember_are_asked_once() {
    let slot = Slot::new("facts-asked");
    let engine = FakeEngine::fresh();
    engine.remember_facts(None);
    let client = FakeClient::scripted(&[quit]);
    run_task(&slot.context(), &engine, &client).unwrap();
    assert_eq!(commands_to_start(&engine), [Info, Run, Inspect]);
    // The next task of the host asks nothing for them.
    let next = Slot::new("facts-remembered");
    let client = FakeClient::scripted(&[quit]);
    let again = FakeEngine::fresh();
    again.remember_facts(engine.facts(false).ok().map(|known| known.facts));
    run_task(&next.context(), &again, &client).unwrap();
    assert_eq!(commands_to_start(&again), [Run, Inspect]);
}

#[test]
fn an_image_the_engine_lacks_is_made_then_the_container_created() {
    let slot = Slot::new("image-missing");
    let engine = FakeEngine::fresh();
    engine.fail_next(
        Run,
        fake::failed("Error: boinc_wrapper/test:1: image not known"),
    );
    let client = FakeClient::scripted(&[quit]);
    assert_eq!(
        run_task(&slot.context(), &engine, &client).unwrap(),
        Outcome::KeepForRestart
    );
    assert_eq!(commands_to_start(&engine), [Run, Build, Run, Inspect]);
    assert_eq!(slot.journal_phase(), Some(Phase::KeptPaused));
}

#[test]
fn stale_facts_are_asked_again_once_and_the_container_created_with_the_new_ones() {
    let slot = Slot::new("stale-facts");
    let engine = FakeEngine::fresh();
    let mut stale = fake::podman_facts();
    stale.cgroup_driver = Some(crate::host::background::CgroupDriver::Systemd);
    engine.remember_facts(Some(stale));
    engine.fail_next(
        Run,
        fake::failed("Error: systemd slice must end in \".slice\": invalid argument"),
    );
    let client = FakeClient::scripted(&[quit]);
    assert_eq!(
        run_task(&slot.context(), &engine, &client).unwrap(),
        Outcome::KeepForRestart
    );
    // The refused `run` left nothing (the look says so), so nothing is removed.
    assert_eq!(
        commands_to_start(&engine),
        [Run, Info, Inspect, Run, Inspect]
    );
    let spec = engine.last_spec().unwrap();
    assert_eq!(spec.cgroup_parent.as_deref(), Some("Cgroupfs"));
    // The host remembers the new facts.
    assert_eq!(engine.facts(false).unwrap().facts, fake::podman_facts());
}

#[test]
fn facts_asked_again_and_unchanged_do_not_make_a_retry() {
    let slot = Slot::new("facts-unchanged");
    let engine = FakeEngine::fresh();
    engine.failed_runs_create(true);
    engine.fail_next(
        Run,
        fake::failed("Error: runc: exec: \"./main.sh\": no such file or directory"),
    );
    let client = FakeClient::scripted(&[quit]);
    let err = run_task(&slot.context(), &engine, &client).unwrap_err();
    assert!(format!("{err:#}").contains("main.sh"), "{err:#}");
    // The container the failed `run` created is this start's: removed.
    assert_eq!(engine.calls(), [Run, Info, Inspect, Kill, Remove]);
    assert_eq!(engine.container(), None);
}

#[test]
fn limits_the_host_refuses_are_dropped_and_the_leftover_removed() {
    let slot = Slot::new("limits-refused");
    let mut ctx = slot.context();
    // No cgroup parent (rootless Podman): no fact shapes the limits.
    ctx.config.idle_priority = false;
    let engine = FakeEngine::fresh();
    engine.set_facts({
        let mut facts = fake::podman_facts();
        facts.cgroup_driver = None;
        facts
    });
    engine.remember_facts(Some(engine.facts(true).unwrap().facts));
    let before = engine.calls().len();
    engine.failed_runs_create(true);
    engine.fail_next(
        Run,
        fake::failed(
            "crun: the requested cgroup controller `pids` is not available: OCI runtime error",
        ),
    );
    let client = FakeClient::scripted(&[quit]);
    run_task(&ctx, &engine, &client).unwrap();
    assert_eq!(
        commands_to_start(&engine)[before..],
        [Run, Remove, Run, Inspect]
    );
    assert!(!engine.last_spec().unwrap().resource_limits);
}

#[test]
fn a_name_in_use_by_this_slot_is_continued_not_created_again() {
    // A wrapper killed between `run` and its journal.
    let slot = Slot::new("name-ours");
    let engine = name_taken(ContainerStatus::Running, &slot.dir().to_string_lossy(), 5);
    engine.exit_after_waits(2, 0, false);
    let client = FakeClient::scripted(&[resumed]);
    let outcome = run_task(&slot.context(), &engine, &client).unwrap();
    assert_eq!(outcome, Outcome::Finished(0));
    assert_eq!(commands_to_start(&engine), [Run, Find, Inspect]);
    assert_eq!(engine.changes(), [Run, Watch, Remove]);

    // Killed between create and start (an older wrapper): started.
    let slot = Slot::new("name-ours-created");
    let engine = name_taken(ContainerStatus::Created, &slot.dir().to_string_lossy(), 5);
    let client = FakeClient::scripted(&[quit]);
    run_task(&slot.context(), &engine, &client).unwrap();
    assert_eq!(commands_to_start(&engine), [Run, Find, Start, Inspect]);
}

#[test]
fn a_container_of_another_slot_is_left_alone() {
    let slot = Slot::new("reconcile-other");
    let engine = name_taken(ContainerStatus::Running, "/elsewhere/slots/9", 0);
    let client = FakeClient::scripted(&[resumed]);
    let outcome = run_task(&slot.context(), &engine, &client).unwrap();
    assert!(
        matches!(outcome, Outcome::TemporaryExit(ref why) if why.contains("belongs to the task in /elsewhere/slots/9")),
        "{outcome:?}"
    );
    // A refused `run`, a look, and nothing else.
    assert_eq!(engine.calls(), [Run, Find]);
    assert!(engine.container().is_some());
}

#[test]
fn a_refusal_read_wrongly_never_removes_another_slots_container() {
    let slot = Slot::new("misread");
    let engine = name_taken(ContainerStatus::Running, "/elsewhere/slots/9", 0);
    // An engine that words "name in use" in a way we do not know.
    engine.fail_next(Run, fake::failed("Error: that name is taken"));
    let client = FakeClient::scripted(&[resumed]);
    assert!(run_task(&slot.context(), &engine, &client).is_err());
    assert_eq!(engine.changes(), [Run]);
    assert_eq!(engine.container().unwrap().status, ContainerStatus::Running);
}

#[test]
fn an_orphan_is_removed_and_a_new_container_made() {
    let slot = Slot::new("reconcile-orphan");
    let engine = name_taken(ContainerStatus::Exited, "/gone/slots/9", 3600);
    engine.exit_after_waits(2, 0, false);
    let client = FakeClient::scripted(&[resumed]);
    let outcome = run_task(&slot.context(), &engine, &client).unwrap();
    assert_eq!(outcome, Outcome::Finished(0));
    assert_eq!(
        commands_to_start(&engine),
        [Run, Find, Remove, Run, Inspect]
    );
    assert_eq!(engine.changes(), [Run, Remove, Run, Watch, Remove]);
}

#[test]
fn a_stranger_with_the_tasks_name_is_removed_and_the_tasks_own_container_made() {
    type MakeStranger = fn(&mut ContainerState);
    let strangers: [(&str, MakeStranger); 3] = [
        ("no labels", |c| {
            c.made_by_wrapper = false;
            c.result = None;
            c.slot = None;
        }),
        ("another result", |c| c.result = Some("wu_1".into())),
        ("another image", |c| c.image = Some("busybox:latest".into())),
    ];
    for (what, make_stranger) in strangers {
        let slot = Slot::new("stranger");
        let engine = name_taken(ContainerStatus::Running, &slot.dir().to_string_lossy(), 5);
        engine.edit_container(make_stranger);
        engine.exit_after_waits(2, 0, false);
        let client = FakeClient::scripted(&[resumed]);
        let outcome = run_task(&slot.context(), &engine, &client).unwrap();
        assert_eq!(outcome, Outcome::Finished(0), "{what}");
        assert_eq!(
            commands_to_start(&engine),
            [Run, Find, Kill, Remove, Run, Inspect],
            "{what}"
        );
        assert_eq!(engine.last_spec().unwrap().image, IMAGE, "{what}");
    }
}

#[test]
fn a_leftover_of_an_earlier_run_with_its_journal_is_continued_not_taken_for_a_stranger() {
    let slot = Slot::new("journal-image");
    slot.keep(Phase::Running);
    let engine = name_taken(ContainerStatus::Running, &slot.dir().to_string_lossy(), 5);
    engine.exit_after_waits(2, 0, false);
    let client = FakeClient::scripted(&[resumed]);
    assert_eq!(
        run_task(&slot.context(), &engine, &client).unwrap(),
        Outcome::Finished(0)
    );
    assert!(!engine.calls().contains(&Kill), "{:?}", engine.calls());
}

#[test]
fn a_name_taken_again_after_the_look_means_a_retry_later() {
    let slot = Slot::new("name-race");
    let engine = name_taken(ContainerStatus::Exited, "/gone/slots/9", 3600);
    // Between the orphan's removal and the second `run`, another slot's
    // task took the name.
    engine.fail_next(Run, fake::failed("Error: creating container storage: the container name \"boinc__test__wu_0\" is already in use by 1"));
    engine.fail_next(Run, fake::failed("Error: creating container storage: the container name \"boinc__test__wu_0\" is already in use by 2"));
    let client = FakeClient::scripted(&[resumed]);
    let outcome = run_task(&slot.context(), &engine, &client).unwrap();
    assert!(
        matches!(outcome, Outcome::TemporaryExit(ref why) if why.contains("appeared while this task started")),
        "{outcome:?}"
    );
    assert_eq!(engine.calls(), [Run, Find, Remove, Run]);
}

#[test]
fn a_task_that_fails_for_good_removes_only_its_own_container() {
    let slot = Slot::new("failure");
    let ctx = slot.context();
    let engine = FakeEngine::fresh();
    let client = FakeClient::default();
    let mut task = TaskRun::new(&ctx, &engine, &client);
    let failure = || Err(TaskError::set_up("cannot create output file"));
    assert!(task.settle(failure()).is_err());
    assert!(engine.changes().is_empty(), "not known to be ours yet");
    task.owns_container = true;
    assert!(task.settle(failure()).is_err());
    assert_eq!(engine.changes(), [Kill, Remove]);
    // An engine that is down keeps the container for the retry.
    let down = || Err(EngineError::Unavailable("daemon down".into()).into());
    assert!(matches!(
        task.settle(down()),
        Err(TaskError::EngineLost(why)) if why == "daemon down"
    ));
    assert_eq!(engine.changes(), [Kill, Remove]);
}

#[test]
fn web_graphics_of_a_continued_container_are_announced_from_the_engine() {
    let slot = Slot::new("web-graphics");
    let mut ctx = slot.context();
    ctx.config.web_graphics_guest_port = Some(8080);
    slot.keep(Phase::KeptPaused);
    let engine = with_our_container(ContainerStatus::Paused);
    let client = FakeClient::scripted(&[quit]);
    run_task(&ctx, &engine, &client).unwrap();
    assert!(engine.calls().contains(&Port(8080)));
    assert_eq!(
        client.web_graphics.borrow().as_deref(),
        Some("http://localhost:40080")
    );
}

#[test]
fn a_completion_file_stops_the_container_and_passes_the_message_on() {
    let slot = Slot::new("completion");
    let mut ctx = slot.context();
    ctx.config.control.completion_trigger_file = Some("done".into());
    std::fs::write(slot.dir().join("done"), "5\n1\nstopped early\n").unwrap();
    let engine = FakeEngine::fresh();
    let client = FakeClient::scripted(&[resumed]);
    let outcome = run_task(&ctx, &engine, &client).unwrap();
    assert_eq!(
        outcome,
        Outcome::Completed {
            code: 5,
            message: boinc::FinishMessage {
                text: "stopped early".into(),
                notice: true
            }
        }
    );
    assert_eq!(engine.changes(), [Run, Watch, stop(), Remove]);
    assert_eq!(Journal::load(slot.dir()).unwrap().exit_code, Some(5));
    assert!(!slot.dir().join("done").exists());
}

#[test]
fn a_temporary_exit_file_keeps_the_container_for_the_retry() {
    let slot = Slot::new("temporary-exit");
    let mut ctx = slot.context();
    ctx.config.control.temporary_exit_trigger_file = Some("later".into());
    std::fs::write(slot.dir().join("later"), "120\n0\nwaiting for input\n").unwrap();
    let engine = FakeEngine::fresh();
    let client = FakeClient::scripted(&[resumed]);
    let outcome = run_task(&ctx, &engine, &client).unwrap();
    assert_eq!(
        outcome,
        Outcome::RetryLater(crate::outcome::Retry {
            delay_secs: 120,
            reason: "waiting for input".into(),
            notice: false
        })
    );
    assert_eq!(engine.changes(), [Run, Watch, Pause]);
    assert_eq!(slot.journal_phase(), Some(Phase::KeptPaused));
    assert!(!slot.dir().join("later").exists(), "acted on once");
}

#[test]
fn trickles_uploads_and_checkpoints_reach_the_client() {
    let slot = Slot::new("requests");
    let mut ctx = slot.context();
    ctx.config.control.trickle_trigger_files = vec!["status".into()];
    ctx.config.control.intermediate_upload_files = vec!["out".into()];
    ctx.config.control.checkpoint_file = Some("ckpt".into());
    std::fs::write(slot.dir().join("status"), "<progress>1</progress>").unwrap();
    std::fs::write(slot.dir().join("ckpt"), "from an earlier run").unwrap();
    let writer = {
        let dir = slot.dir().to_path_buf();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(1500));
            std::fs::write(dir.join("ckpt"), "checkpoint 2").unwrap();
            std::fs::write(dir.join("out"), "partial results").unwrap();
        })
    };
    let engine = FakeEngine::fresh();
    engine.exit_after_waits(45, 0, false);
    let client = FakeClient::scripted(&[resumed]);
    let outcome = run_task(&ctx, &engine, &client).unwrap();
    writer.join().unwrap();
    assert_eq!(outcome, Outcome::Finished(0));
    let mut requests = client.requests.borrow().clone();
    requests.sort();
    assert_eq!(
        requests,
        [
            "checkpoint",
            "trickle status: <progress>1</progress>",
            "upload out"
        ]
    );
    // The client hears of the checkpoint's CPU time, not of all of it.
    let reports = client.reports.borrow();
    assert!(reports
        .iter()
        .any(|r| r.checkpoint_cpu_time < r.cpu_time || r.cpu_time == 0.0));
}

#[test]
fn a_job_that_stops_its_heartbeat_is_ended_as_hung() {
    let slot = Slot::new("heartbeat");
    let mut ctx = slot.context();
    ctx.config.control.heartbeat_filename = Some("beat".into());
    ctx.config.control.minimum_heartbeat_interval_secs = 1;
    let engine = FakeEngine::fresh();
    let client = FakeClient::scripted(&[resumed]);
    let outcome = run_task(&ctx, &engine, &client).unwrap();
    assert_eq!(outcome, Outcome::Finished(WrapperExit::JobHung.code()));
    assert_eq!(engine.changes(), [Run, Watch, Kill, Remove]);
}

#[test]
fn a_job_that_has_run_its_job_duration_is_stopped_as_a_success() {
    let slot = Slot::new("job-duration");
    let mut ctx = slot.context();
    ctx.config.job_duration_secs = Some(60);
    // Earlier runs of the task used up the time but for a second.
    ctx.init.starting_elapsed_time = 59.0;
    let engine = FakeEngine::fresh();
    let client = FakeClient::scripted(&[resumed]);
    let outcome = run_task(&ctx, &engine, &client).unwrap();
    assert_eq!(outcome, Outcome::Finished(0));
    assert_eq!(engine.changes(), [Run, Watch, stop(), Remove]);
    assert_eq!(Journal::load(slot.dir()).unwrap().exit_code, Some(0));
    let reports = client.reports.borrow();
    assert_eq!(reports.last().unwrap().fraction_done, 1.0, "{reports:?}");
}

#[test]
fn without_a_fraction_done_file_progress_is_the_share_of_job_duration() {
    let progress = |fraction_done: Option<&str>| {
        let slot = Slot::new("job-duration-share");
        let mut ctx = slot.context();
        ctx.config.job_duration_secs = Some(1000);
        ctx.init.starting_elapsed_time = 500.0;
        if let Some(text) = fraction_done {
            std::fs::write(slot.dir().join("fraction_done"), text).unwrap();
        }
        let engine = FakeEngine::fresh();
        engine.exit_after_waits(2, 0, false);
        let client = FakeClient::scripted(&[resumed]);
        assert_eq!(
            run_task(&ctx, &engine, &client).unwrap(),
            Outcome::Finished(0)
        );
        let first = client.reports.borrow()[0].fraction_done;
        first
    };
    let share = progress(None);
    assert!((0.5..0.51).contains(&share), "{share}");
    // The job's own figure wins.
    assert_eq!(progress(Some("0.25")), 0.25);
}
