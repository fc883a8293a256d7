//! The job shares the slot with the wrapper and can put anything there: the
//! wrapper's reads of slot files must stay small and never block, and its
//! writes must never go through a link the job planted.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use dw_test_support::*;

const WRAPPER: &str = wrapper_path!();

/// The wrapper's peak RSS is about 6 MiB; reading a slot file whole costs its size.
const MAX_WRAPPER_RSS_KIB: u64 = 32 * 1024;

on_both_engines!(
    fraction_done_linked_to_dev_zero_is_not_read,
    fraction_done_as_a_fifo_does_not_block,
    a_huge_fraction_done_costs_no_memory,
    a_link_at_the_journal_temp_file_is_not_followed,
    a_link_at_boinc_finish_called_is_not_followed,
    a_link_at_stderr_txt_is_not_followed_after_a_restart,
    links_the_job_leaves_are_not_handed_to_the_client,
    control_files_that_are_links_are_refused_not_followed,
);

/// A runner that starts the wrapper with its data size limited (RLIMIT_DATA: the engines' Go
/// CLIs, its children, reserve far more address space than they use), so that
/// a wrapper reading without bound fails at once instead of taking the
/// test machine's memory.
fn memory_limited_runner(dir: &Path) -> PathBuf {
    let runner = dir.join("limit_memory");
    std::fs::write(&runner, "#!/bin/sh\nulimit -d 1048576\nexec \"$@\"\n").unwrap();
    std::fs::set_permissions(&runner, std::fs::Permissions::from_mode(0o755)).unwrap();
    runner
}

/// Runs `script` as the job and returns how the task ended and the
/// wrapper's peak RSS (KiB), sampled while it ran.
fn run_measured(
    kind: EngineKind,
    name: &str,
    script: &str,
    disk_bound: f64,
) -> (Outcome, u64, Task) {
    let engine = TestEngine::require(kind);
    let dir = TempDir::new(name).unwrap();
    let mut task = TaskBuilder::on_engine(name, WRAPPER, &engine)
        .runner(memory_limited_runner(dir.path()))
        .disk_bound(disk_bound)
        .job(TestJob::shell(script))
        .start()
        .unwrap();
    let started = std::time::Instant::now();
    let mut peak = 0;
    while task.is_running() && started.elapsed() < TASK_TIMEOUT {
        if let Some(hwm) = task.pid().and_then(peak_rss_kib) {
            peak = peak.max(hwm);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let outcome = task.wait_exit(Duration::from_secs(1)).unwrap();
    eprintln!(
        "{name}: wrapper peak RSS {peak} KiB, ran {:?}",
        outcome.elapsed
    );
    (outcome, peak, task)
}

/// VmHWM of a process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn fraction_done_linked_to_dev_zero_is_not_read(kind: EngineKind) {
    let (outcome, peak, task) = run_measured(
        kind,
        "fd_dev_zero",
        "ln -s /dev/zero fraction_done; sleep 4; echo done",
        GIB,
    );
    outcome.assert_finished(0);
    assert!(
        peak > 0 && peak < MAX_WRAPPER_RSS_KIB,
        "peak RSS {peak} KiB\n{}",
        outcome.describe()
    );
    TestEngine::require(kind).assert_no_container(&task);
}

fn fraction_done_as_a_fifo_does_not_block(kind: EngineKind) {
    let (outcome, _, task) = run_measured(
        kind,
        "fd_fifo",
        "mkfifo fraction_done; sleep 4; echo done",
        GIB,
    );
    outcome.assert_finished(0);
    outcome.assert_said(&["done"]);
    TestEngine::require(kind).assert_no_container(&task);
}

fn a_huge_fraction_done_costs_no_memory(kind: EngineKind) {
    let (outcome, peak, task) = run_measured(
        kind,
        "fd_huge",
        "echo 0.5 > fraction_done; dd if=/dev/zero bs=1M count=128 >> fraction_done 2>/dev/null; sleep 4",
        4.0 * GIB,
    );
    outcome.assert_finished(0);
    assert!(
        peak > 0 && peak < MAX_WRAPPER_RSS_KIB,
        "peak RSS {peak} KiB\n{}",
        outcome.describe()
    );
    // The number at the start of the file is still read.
    let reported = task
        .status_history()
        .iter()
        .any(|(_, s)| s.fraction_done == Some(0.5));
    assert!(
        reported,
        "fraction 0.5 never reported\n{}",
        outcome.describe()
    );
    TestEngine::require(kind).assert_no_container(&task);
}

/// A file outside the slot that a job links to; it must stay as it was.
struct Outside {
    _dir: TempDir,
    file: PathBuf,
}

const PRECIOUS: &str = "a host file the job must not change\n";

impl Outside {
    fn new(label: &str) -> Outside {
        let dir = TempDir::new(label).unwrap();
        let file = dir.path().join("precious.txt");
        std::fs::write(&file, PRECIOUS).unwrap();
        Outside { _dir: dir, file }
    }

    fn assert_unchanged(&self, outcome: &Outcome) {
        let now =
            std::fs::read_to_string(&self.file).unwrap_or_else(|e| format!("unreadable: {e}"));
        assert_eq!(
            now,
            PRECIOUS,
            "the wrapper wrote through the job's link\n{}",
            outcome.describe()
        );
    }
}

/// The job links `name` in the slot to a host file outside it, then exits 0.
fn planted_link_at(kind: EngineKind, label: &str, name: &str) {
    let engine = TestEngine::require(kind);
    let outside = Outside::new(label);
    let script = format!(
        "rm -f {name}; ln -s {} {name}; echo planted",
        outside.file.display()
    );
    let mut task = TaskBuilder::on_engine(label, WRAPPER, &engine)
        .job(TestJob::shell(&script))
        .start()
        .unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_said(&["planted"]);
    outcome.assert_finished(0);
    outside.assert_unchanged(&outcome);
    engine.assert_no_container(&task);
}

fn a_link_at_the_journal_temp_file_is_not_followed(kind: EngineKind) {
    planted_link_at(kind, "link_journal_tmp", "docker_wrapper_journal.toml.tmp");
}

fn a_link_at_boinc_finish_called_is_not_followed(kind: EngineKind) {
    planted_link_at(kind, "link_finish_called", "boinc_finish_called");
}

/// The BOINC library opens stderr.txt itself when the wrapper starts again
/// after a quit: a link the job left there must not lead it to a host file.
fn a_link_at_stderr_txt_is_not_followed_after_a_restart(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let outside = Outside::new("link_stderr");
    let script = format!(
        "rm -f stderr.txt; ln -s {} stderr.txt; {COUNTER_JOB}",
        outside.file.display()
    );
    let mut task = TaskBuilder::on_engine("link_stderr", WRAPPER, &engine)
        .job(TestJob::shell(&script))
        .start()
        .unwrap();
    task.wait_for_counter_above(2, Duration::from_secs(120));
    task.send_control(Control::Quit);
    let outcome = task.wait_exit(Duration::from_secs(30)).unwrap();
    outcome.assert_not_finished();
    task.restart().unwrap();
    task.wait_for_counter_above(task.counter() + 2, Duration::from_secs(60));
    let outcome = task.release_and_wait(TASK_TIMEOUT);
    outcome.assert_finished(0);
    outside.assert_unchanged(&outcome);
    outcome.assert_said(&["docker_wrapper"]);
    engine.assert_no_container(&task);
}

/// A host file the client's user can read (an account key) and its
/// directory, which a job must not get the client to send.
fn host_secret(name: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new(name).unwrap();
    let secret = dir.path().join("account_example.org.xml");
    // A completion code, should anything read it as the job's file.
    std::fs::write(&secret, "3\n1\n<authenticator>secret</authenticator>\n").unwrap();
    (dir, secret)
}

/// Outputs the client would rename from the slot and upload: a link to a
/// host file, to a directory, one inside a subdirectory and a linked
/// subdirectory. All are removed before boinc_finish and named in
/// stderr.txt; what they lead to stays; plain results stay.
fn links_the_job_leaves_are_not_handed_to_the_client(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let (dir, secret) = host_secret("handover");
    let script = format!(
        "ln -s {secret} result.dat; ln -s {dir} result_dir; mkdir -p sub/deeper; \
         ln -s {secret} sub/deeper/key; ln -s {dir} linked; echo ok > plain.txt",
        secret = secret.display(),
        dir = dir.path().display()
    );
    let mut task = TaskBuilder::on_engine("handover", WRAPPER, &engine)
        .job(TestJob::shell(&script))
        .start()
        .unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(0);
    for (name, to) in [
        ("result.dat", secret.clone()),
        ("result_dir", dir.path().to_path_buf()),
        ("sub/deeper/key", secret.clone()),
        ("linked", dir.path().to_path_buf()),
    ] {
        let line = format!(
            "{} is a link to {}: not handed to the client, removed",
            task.slot_dir().join(name).display(),
            to.display()
        );
        outcome.assert_said(&[&line]);
        assert!(
            std::fs::symlink_metadata(task.slot_dir().join(name)).is_err(),
            "{name}"
        );
    }
    assert_eq!(task.read_slot_file("plain.txt").as_deref(), Some("ok\n"));
    assert!(secret.is_file() && dir.path().is_dir());
    engine.assert_no_container(&task);
}

/// Trickle, completion and upload files the job makes links: none is
/// followed or handed on, each is said in stderr.txt, the job ends as it
/// would have.
fn control_files_that_are_links_are_refused_not_followed(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let (_dir, secret) = host_secret("control_links");
    let script = format!(
        "ln -s {s} status; ln -s {s} done; ln -s {s} partial.dat; sleep 7",
        s = secret.display()
    );
    let job_toml = "trickle_trigger_files = [\"status\"]\ncompletion_trigger_file = \"done\"\n\
                    intermediate_upload_files = [\"partial.dat\"]";
    let mut task = TaskBuilder::on_engine("control_links", WRAPPER, &engine)
        .job(TestJob::shell(&script).job_toml(job_toml))
        .start()
        .unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    // Not the code in the linked file: the job's own.
    outcome.assert_finished(0);
    assert!(
        task.trickle_up_messages().is_empty(),
        "{:?}",
        task.trickle_up_messages()
    );
    assert!(!task.slot_dir().join("boinc_ufr_partial.dat").exists());
    outcome.assert_said(&[
        "status: ignored",
        "done: ignored",
        "partial.dat: ",
        "no upload asked for",
    ]);
    assert!(std::fs::read_to_string(&secret).unwrap().contains("secret"));
    engine.assert_no_container(&task);
}
