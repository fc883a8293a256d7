//! The supervision paths through a recording fake engine and a scripted
//! client: what the task asks of the engine, what it journals and how it
//! ends, for each way a task can go.
use std::path::PathBuf;

use super::client::fake::FakeClient;
use super::*;
use crate::boinc::ClientStatus;
use crate::engine::fake::{self, FakeEngine};
use crate::exit_code::WrapperExit;

/// A slot directory of its own for each test, removed afterwards.
struct Slot(PathBuf);

impl Slot {
    fn new(name: &str) -> Slot {
        let dir = std::env::temp_dir().join(format!("dw-task-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Slot(dir)
    }

    fn context(&self) -> TaskContext {
        TaskContext {
            slot_dir: self.0.clone(),
            slot: SlotKind::Client,
            config: JobConfig::default(),
            cli: Cli::default(),
            init: InitData {
                ncpus: 1.0,
                ..InitData::default()
            },
            container: "boinc__test__wu_0".into(),
            archive: None,
        }
    }

    fn journal_phase(&self) -> Option<Phase> {
        Journal::load(&self.0).map(|j| j.phase)
    }

    fn keep(&self, phase: Phase) {
        Journal {
            container: "boinc__test__wu_0".into(),
            image: "boinc_wrapper/test:1".into(),
            phase,
            cpu_time: 0.0,
            exit_code: None,
        }
        .save(&self.0);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the task as `run` does after set-up; a new container is made by
/// putting a running one into the fake.
fn run_task(ctx: &TaskContext, engine: &FakeEngine, client: &FakeClient) -> Result<Outcome> {
    let mut task = TaskRun::new(ctx, engine, client);
    let result = task.start_and_supervise(&mut |task| {
        engine.set_container(Some(ContainerStatus::Running));
        task.owns_container = true;
        Ok(None)
    });
    task.settle(result)
}

fn running_container() -> FakeEngine {
    FakeEngine::with_container(ContainerStatus::Running)
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
    let engine = running_container();
    engine.exit_after_waits(5, 0, false);
    let client = FakeClient::scripted(&[resumed, suspended, suspended, resumed]);
    let outcome = run_task(&slot.context(), &engine, &client).unwrap();
    assert_eq!(outcome, Outcome::Finished(0));
    assert_eq!(engine.changes(), ["watch", "pause", "unpause", "rm"]);
    assert!(engine.calls().contains(&"logs".to_string()));
    assert_eq!(slot.journal_phase(), Some(Phase::Finished));
    let reports = client.reports.borrow();
    assert_eq!(reports.last().unwrap().fraction_done, 1.0, "{reports:?}");
}

#[test]
fn a_container_that_cannot_be_paused_is_stopped_for_a_restart() {
    let slot = Slot::new("cannot-pause");
    let engine = running_container();
    for _ in 0..2 {
        engine.fail_next("pause", fake::failed("container does not have a cgroup"));
    }
    let client = FakeClient::scripted(&[suspended, quit]);
    let outcome = run_task(&slot.context(), &engine, &client).unwrap();
    assert_eq!(outcome, Outcome::KeepForRestart);
    assert_eq!(engine.changes(), ["watch", "pause", "pause", "stop"]);
    assert_eq!(slot.journal_phase(), Some(Phase::KeptStopped));
}

#[test]
fn quit_with_quit_action_stop_stops_the_container() {
    let slot = Slot::new("quit-stop");
    let mut ctx = slot.context();
    ctx.config.quit_action = crate::config::QuitAction::Stop;
    let engine = running_container();
    let client = FakeClient::scripted(&[resumed, quit]);
    assert_eq!(
        run_task(&ctx, &engine, &client).unwrap(),
        Outcome::KeepForRestart
    );
    assert_eq!(engine.changes(), ["watch", "stop"]);
    assert_eq!(slot.journal_phase(), Some(Phase::KeptStopped));
}

#[test]
fn abort_kills_and_removes_the_container() {
    let slot = Slot::new("abort");
    let engine = running_container();
    let client = FakeClient::scripted(&[resumed, |s| s.abort_request = true]);
    let outcome = run_task(&slot.context(), &engine, &client).unwrap();
    assert_eq!(outcome, Outcome::Aborted);
    assert_eq!(engine.changes(), ["watch", "kill", "rm"]);
    assert_eq!(engine.container(), None);
}

#[test]
fn an_oom_killed_job_finishes_with_the_memory_error() {
    let slot = Slot::new("oom");
    let engine = running_container();
    engine.exit_after_waits(2, 137, true);
    let client = FakeClient::scripted(&[resumed]);
    let outcome = run_task(&slot.context(), &engine, &client).unwrap();
    assert_eq!(
        outcome,
        Outcome::Finished(WrapperExit::MemLimitExceeded.code())
    );
    assert_eq!(engine.changes(), ["watch", "rm"]);
    // The journal keeps the job's own code; the report says why it ended.
    assert_eq!(Journal::load(&slot.0).unwrap().exit_code, Some(137));
}

#[test]
fn a_job_that_fills_the_slot_is_ended_with_the_disk_error() {
    let slot = Slot::new("disk");
    let mut ctx = slot.context();
    ctx.init.rsc_disk_bound = 10_000.0;
    std::fs::write(slot.0.join("big"), vec![0u8; 20_000]).unwrap();
    let engine = running_container();
    let client = FakeClient::scripted(&[resumed]);
    let outcome = run_task(&ctx, &engine, &client).unwrap();
    assert_eq!(
        outcome,
        Outcome::Finished(WrapperExit::DiskLimitExceeded.code())
    );
    assert_eq!(engine.changes(), ["watch", "kill", "rm"]);
}

/// The network is suspended, then the task, then the client quits: what
/// the engine was asked, for an engine that does or does not reconnect a
/// paused container.
fn network_suspension_then_quit(name: &str, reconnects_paused: bool) -> Vec<String> {
    let slot = Slot::new(name);
    let engine = running_container();
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
            "watch",
            "disconnect bridge",
            "pause",
            "unpause",
            "connect bridge",
            "pause"
        ]
    );
    // Docker connects a paused one as it is.
    assert_eq!(
        network_suspension_then_quit("network-docker", true),
        ["watch", "disconnect bridge", "pause", "connect bridge"]
    );
}

#[test]
fn an_engine_that_hangs_leaves_the_job_running_and_keeps_the_task() {
    let slot = Slot::new("hang");
    let engine = running_container();
    engine.fail_next("pause", fake::hung());
    engine.fail_next("pause", fake::hung());
    engine.fail_next("stop", fake::hung());
    let client = FakeClient::scripted(&[suspended, quit]);
    let outcome = run_task(&slot.context(), &engine, &client).unwrap();
    assert_eq!(outcome, Outcome::KeepForRestart);
    // A hung engine is not asked again and again: one pause each time.
    assert_eq!(engine.changes(), ["watch", "pause", "pause", "stop"]);
    // The next run re-attaches to whatever it finds.
    assert_eq!(slot.journal_phase(), Some(Phase::Running));
}

#[test]
fn an_engine_that_loses_the_container_mid_task_means_a_retry() {
    let slot = Slot::new("lost");
    let engine = running_container();
    engine.exit_after_waits(2, 0, false);
    engine.lose_exit();
    let client = FakeClient::scripted(&[resumed]);
    let outcome = run_task(&slot.context(), &engine, &client).unwrap();
    assert!(
        matches!(outcome, Outcome::TemporaryExit(ref why) if why.contains("does not answer")),
        "{outcome:?}"
    );
    // Kept for the retry, which finds it by name.
    assert_eq!(engine.changes(), ["watch"]);
}

#[test]
fn a_paused_container_from_an_earlier_run_is_unpaused() {
    let slot = Slot::new("reconcile-paused");
    slot.keep(Phase::KeptPaused);
    let engine = FakeEngine::with_container(ContainerStatus::Paused);
    engine.exit_after_waits(2, 0, false);
    let client = FakeClient::scripted(&[resumed]);
    let outcome = run_task(&slot.context(), &engine, &client).unwrap();
    assert_eq!(outcome, Outcome::Finished(0));
    assert_eq!(engine.changes(), ["unpause", "watch", "rm"]);
}

#[test]
fn a_container_stopped_for_a_quit_is_started_again() {
    let slot = Slot::new("reconcile-stopped");
    slot.keep(Phase::KeptStopped);
    let engine = FakeEngine::with_container(ContainerStatus::Exited);
    engine.edit_container(|c| c.exit_code = 143);
    let client = FakeClient::scripted(&[resumed, quit]);
    let outcome = run_task(&slot.context(), &engine, &client).unwrap();
    assert_eq!(outcome, Outcome::KeepForRestart);
    assert_eq!(engine.changes(), ["start", "watch", "pause"]);
}

#[test]
fn a_job_that_ended_while_the_wrapper_was_away_is_reported_not_rerun() {
    let slot = Slot::new("reconcile-ended");
    slot.keep(Phase::Running);
    let engine = FakeEngine::with_container(ContainerStatus::Exited);
    engine.edit_container(|c| c.exit_code = 3);
    let client = FakeClient::scripted(&[resumed]);
    let outcome = run_task(&slot.context(), &engine, &client).unwrap();
    assert_eq!(outcome, Outcome::Finished(3));
    assert_eq!(engine.changes(), ["rm"]);
    assert_eq!(slot.journal_phase(), Some(Phase::Finished));
}

#[test]
fn a_container_of_another_slot_is_left_alone() {
    let slot = Slot::new("reconcile-other");
    let engine = running_container();
    engine.edit_container(|c| {
        c.slot = "/elsewhere/slots/9".into();
        c.created = Some(os::unix_time_now());
    });
    let client = FakeClient::scripted(&[resumed]);
    let outcome = run_task(&slot.context(), &engine, &client).unwrap();
    assert!(
        matches!(outcome, Outcome::TemporaryExit(ref why) if why.contains("belongs to the task in /elsewhere/slots/9")),
        "{outcome:?}"
    );
    assert!(engine.changes().is_empty(), "{:?}", engine.changes());
}

#[test]
fn an_orphan_is_removed_and_a_new_container_made() {
    let slot = Slot::new("reconcile-orphan");
    let engine = running_container();
    engine.edit_container(|c| {
        c.slot = "/gone/slots/9".into();
        c.created = Some(os::unix_time_now() - 3600);
    });
    engine.exit_after_waits(2, 0, false);
    let client = FakeClient::scripted(&[resumed]);
    let outcome = run_task(&slot.context(), &engine, &client).unwrap();
    assert_eq!(outcome, Outcome::Finished(0));
    assert_eq!(engine.changes(), ["rm", "watch", "rm"]);
}

#[test]
fn a_task_that_fails_for_good_removes_only_its_own_container() {
    let slot = Slot::new("failure");
    let ctx = slot.context();
    let engine = running_container();
    let client = FakeClient::default();
    let mut task = TaskRun::new(&ctx, &engine, &client);
    let failure = || Err(anyhow::anyhow!("cannot create output file"));
    assert!(task.settle(failure()).is_err());
    assert!(engine.changes().is_empty(), "not known to be ours yet");
    task.owns_container = true;
    assert!(task.settle(failure()).is_err());
    assert_eq!(engine.changes(), ["kill", "rm"]);
    // An engine that is down keeps the container for the retry.
    let down = || Err(EngineError::Unavailable("daemon down".into()).into());
    assert_eq!(
        task.settle(down()).unwrap(),
        Outcome::TemporaryExit("daemon down".into())
    );
    assert_eq!(engine.changes(), ["kill", "rm"]);
}

#[test]
fn web_graphics_of_a_continued_container_are_announced_from_the_engine() {
    let slot = Slot::new("web-graphics");
    let mut ctx = slot.context();
    ctx.config.web_graphics_guest_port = Some(8080);
    let engine = running_container();
    let client = FakeClient::scripted(&[quit]);
    run_task(&ctx, &engine, &client).unwrap();
    assert!(engine.calls().contains(&"port 8080".to_string()));
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
    std::fs::write(slot.0.join("done"), "5\n1\nstopped early\n").unwrap();
    let engine = running_container();
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
    assert_eq!(engine.changes(), ["watch", "stop", "rm"]);
    assert_eq!(Journal::load(&slot.0).unwrap().exit_code, Some(5));
    assert!(!slot.0.join("done").exists());
}

#[test]
fn a_temporary_exit_file_keeps_the_container_for_the_retry() {
    let slot = Slot::new("temporary-exit");
    let mut ctx = slot.context();
    ctx.config.control.temporary_exit_trigger_file = Some("later".into());
    std::fs::write(slot.0.join("later"), "120\n0\nwaiting for input\n").unwrap();
    let engine = running_container();
    let client = FakeClient::scripted(&[resumed]);
    let outcome = run_task(&ctx, &engine, &client).unwrap();
    assert_eq!(
        outcome,
        Outcome::RetryLater(crate::supervisor::Retry {
            delay_secs: 120,
            reason: "waiting for input".into(),
            notice: false
        })
    );
    assert_eq!(engine.changes(), ["watch", "pause"]);
    assert_eq!(slot.journal_phase(), Some(Phase::KeptPaused));
    assert!(!slot.0.join("later").exists(), "acted on once");
}

#[test]
fn trickles_uploads_and_checkpoints_reach_the_client() {
    let slot = Slot::new("requests");
    let mut ctx = slot.context();
    ctx.config.control.trickle_trigger_files = vec!["status".into()];
    ctx.config.control.intermediate_upload_files = vec!["out".into()];
    ctx.config.control.checkpoint_file = Some("ckpt".into());
    std::fs::write(slot.0.join("status"), "<progress>1</progress>").unwrap();
    std::fs::write(slot.0.join("ckpt"), "from an earlier run").unwrap();
    let writer = {
        let dir = slot.0.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(1500));
            std::fs::write(dir.join("ckpt"), "checkpoint 2").unwrap();
            std::fs::write(dir.join("out"), "partial results").unwrap();
        })
    };
    let engine = running_container();
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
    let engine = running_container();
    let client = FakeClient::scripted(&[resumed]);
    let outcome = run_task(&ctx, &engine, &client).unwrap();
    assert_eq!(outcome, Outcome::Finished(WrapperExit::JobHung.code()));
    assert_eq!(engine.changes(), ["watch", "kill", "rm"]);
}
