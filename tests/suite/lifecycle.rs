//! Quit and restart, abort, signals, faults and accounting: the parts of a
//! task's life where the C++ wrapper loses or repeats work.

use dw_test_support::scenarios::{self, Wrapper};
use dw_test_support::*;
use std::time::Instant;

const WRAPPER: &str = wrapper_path!();

on_both_engines!(
    quit_and_restart_continue_the_same_container,
    quit_with_stop_restarts_the_container,
    sigterm_keeps_the_container_for_a_restart,
    a_job_that_finished_while_the_wrapper_was_dead_is_reported_not_rerun,
    a_container_left_without_a_journal_is_continued,
    a_stranger_with_the_tasks_name_is_replaced_by_the_tasks_own,
    abort_removes_the_container_promptly,
    out_of_memory_is_reported_with_the_limit,
    web_graphics_url_reaches_the_client_and_the_port_answers,
    a_journal_written_by_the_job_cannot_inflate_cpu_time,
    a_cxx_era_web_app_serves_on_port_80_and_ends_at_its_job_duration,
    job_duration_does_not_count_time_suspended,
    the_cxx_wrapper_serves_the_web_app_but_never_ends_it,
);

fn quit_and_restart_continue_the_same_container(kind: EngineKind) {
    scenarios::quit_and_restart_continue_the_same_container(&Wrapper::built(WRAPPER), kind);
}

fn quit_with_stop_restarts_the_container(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let job = TestJob::shell(COUNTER_JOB).job_toml("quit_action = \"stop\"\nstop_grace_secs = 2\n");
    let mut task = TaskBuilder::on_engine("quit_stop", WRAPPER, &engine)
        .job(job)
        .start()
        .unwrap();
    task.wait_for_counter_above(2, COUNT_WAIT);
    task.send_control(Control::Quit);
    let outcome = task.wait_exit(Duration::from_secs(30)).unwrap();
    outcome.assert_not_finished();
    let state = engine.container_state(&task.container_name());
    assert!(
        matches!(state.as_deref(), Some("exited") | Some("stopped")),
        "{state:?}"
    );

    task.restart().unwrap();
    let starts = wait_until(Duration::from_secs(60), || {
        task.read_slot_file("starts.txt")
            .filter(|s| s.lines().count() == 2)
    });
    assert!(
        starts.is_some(),
        "the stopped container was not started again\n{}",
        task.logs_tail(30)
    );
    let outcome = task.release_and_wait(TASK_TIMEOUT);
    outcome.assert_finished(0);
    engine.assert_no_container(&task);
}

fn sigterm_keeps_the_container_for_a_restart(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let mut task = TaskBuilder::on_engine("sigterm", WRAPPER, &engine)
        .job(TestJob::shell(COUNTER_JOB))
        .start()
        .unwrap();
    let before = task.wait_for_counter_above(2, COUNT_WAIT);
    task.signal(libc::SIGTERM).unwrap();
    let outcome = task.wait_exit(Duration::from_secs(30)).unwrap();
    outcome.assert_not_finished();
    assert_eq!(
        engine.container_state(&task.container_name()).as_deref(),
        Some("paused")
    );
    task.restart().unwrap();
    task.wait_for_counter_above(before, COUNT_WAIT);
    let outcome = task.release_and_wait(TASK_TIMEOUT);
    outcome.assert_finished(0);
    assert_eq!(
        task.read_slot_file("starts.txt").as_deref(),
        Some("start\n")
    );
    engine.assert_no_container(&task);
}

fn a_job_that_finished_while_the_wrapper_was_dead_is_reported_not_rerun(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let script = "echo start >> starts.txt; while [ ! -f go ]; do sleep 0.1; done; exit 7";
    let mut task = TaskBuilder::on_engine("killed", WRAPPER, &engine)
        .job(TestJob::shell(script))
        .start()
        .unwrap();
    let name = task.container_name();
    engine
        .wait_for_container_state(&name, "running", TASK_TIMEOUT)
        .unwrap();
    task.kill();
    std::fs::write(task.slot_dir().join("go"), "").unwrap();
    engine
        .wait_for_container_state(&name, "exited", Duration::from_secs(30))
        .unwrap();

    task.restart().unwrap();
    let outcome = task.wait_exit(Duration::from_secs(60)).unwrap();
    outcome.assert_finished(7);
    assert_eq!(
        task.read_slot_file("starts.txt").as_deref(),
        Some("start\n"),
        "the job was rerun"
    );
    engine.assert_no_container(&task);
}

/// A wrapper killed between `run` and writing its journal: the restarted
/// one creates at once, hears from the engine that the name is in use, and
/// continues that container instead of running the job twice.
fn a_container_left_without_a_journal_is_continued(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let mut task = TaskBuilder::on_engine("no_journal", WRAPPER, &engine)
        .job(TestJob::shell(COUNTER_JOB))
        .start()
        .unwrap();
    let before = task.wait_for_counter_above(2, COUNT_WAIT);
    task.kill();
    std::fs::remove_file(task.slot_dir().join("docker_wrapper_journal.toml")).unwrap();

    task.restart().unwrap();
    // Released only once re-attached: a job that ended meanwhile would be
    // reported, not continued.
    let continued = wait_until(TASK_TIMEOUT, || {
        let log = task.stderr_txt();
        (log.contains("already: looking at it") && log.contains("re-attaching")).then_some(())
    });
    assert!(continued.is_some(), "{}", task.logs_tail(30));
    task.wait_for_counter_above(before, COUNT_WAIT);
    let outcome = task.release_and_wait(TASK_TIMEOUT);
    outcome.assert_finished(0);
    assert_eq!(
        task.read_slot_file("starts.txt").as_deref(),
        Some("start\n"),
        "the job was run twice\n{}",
        outcome.describe()
    );
    engine.assert_no_container(&task);
}

/// A container that only has the task's name (not made by the wrapper:
/// no labels, another image) is neither adopted nor waited for: it is
/// removed, and the task runs its own.
fn a_stranger_with_the_tasks_name_is_replaced_by_the_tasks_own(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let image = "dw-test-stranger:1";
    engine.build_busybox_image(image, "FROM scratch\nCOPY busybox /bin/busybox\n", &[]);
    let mut task = TaskBuilder::on_engine("stranger", WRAPPER, &engine)
        .job(TestJob::shell("echo ran > ran.txt"))
        .prepare()
        .unwrap();
    let name = task.container_name();
    let stranger = engine.run([
        "run",
        "-d",
        "--name",
        &name,
        image,
        "/bin/busybox",
        "sleep",
        "600",
    ]);
    assert!(
        stranger.as_ref().is_ok_and(|out| out.success()),
        "{stranger:?}"
    );
    task.start().unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(0);
    outcome.assert_said(&["was not made by docker_wrapper for this task: removing it"]);
    assert_eq!(task.read_slot_file("ran.txt").as_deref(), Some("ran\n"));
    engine.assert_no_container(&task);
    engine.remove_image(image).ok();
}

fn abort_removes_the_container_promptly(kind: EngineKind) {
    scenarios::abort_removes_the_container_promptly(&Wrapper::built(WRAPPER), kind);
}

fn out_of_memory_is_reported_with_the_limit(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    // Holds ~200 MB in a shell variable under a 64 MiB limit.
    let script = "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived ${#x}";
    let mut task = TaskBuilder::on_engine("oom", WRAPPER, &engine)
        .memory_bound(64.0 * MIB)
        .job(TestJob::shell(script))
        .start()
        .unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(198);
    outcome.assert_said(&["out of memory (limit 64 MiB)"]);
    engine.assert_no_container(&task);
}

fn web_graphics_url_reaches_the_client_and_the_port_answers(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let script = "mkdir -p www; echo graphics-ok > www/index.html; httpd -f -p 8080 -h www & \
                  while [ ! -f go ]; do sleep 0.1; done; kill %1";
    let job = TestJob::shell(script).job_toml("web_graphics_guest_port = 8080\n");
    let mut task = TaskBuilder::on_engine("graphics", WRAPPER, &engine)
        .job(job)
        .start()
        .unwrap();
    let (url, port) = web_graphics_port(&task);
    assert!(url.starts_with("http://localhost:"), "{url}");
    let body = wait_until(Duration::from_secs(30), || {
        http_get(port).filter(|b| b.contains("graphics-ok"))
    });
    assert!(
        body.is_some(),
        "nothing served on {url}\n{}",
        task.logs_tail(30)
    );

    // A restarted wrapper tells the client the same URL again (from the
    // engine's port mapping, not from the job-writable journal).
    task.take_web_graphics_url();
    task.send_control(Control::Quit);
    task.wait_exit(Duration::from_secs(30)).unwrap();
    task.restart().unwrap();
    let again = wait_until(Duration::from_secs(60), || task.web_graphics_url());
    assert_eq!(
        again.as_deref(),
        Some(url.as_str()),
        "{}",
        task.logs_tail(30)
    );
    let outcome = task.release_and_wait(TASK_TIMEOUT);
    outcome.assert_finished(0);
    engine.assert_no_container(&task);
}

/// The web graphics URL the client was given, and its port.
fn web_graphics_port(task: &Task) -> (String, u16) {
    let url = wait_until(Duration::from_secs(60), || task.web_graphics_url());
    let url = url.unwrap_or_else(|| panic!("no web graphics URL\n{}", task.logs_tail(30)));
    let port = url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap();
    (url, port)
}

fn http_get(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    Some(body)
}

/// The journal lies in the slot, where the job can write: a CPU time it
/// claims beyond what the container could have used is not reported.
fn a_journal_written_by_the_job_cannot_inflate_cpu_time(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let mut task = TaskBuilder::on_engine("journal_cpu", WRAPPER, &engine)
        .job(TestJob::shell(COUNTER_JOB))
        .start()
        .unwrap();
    let before = task.wait_for_counter_above(3, COUNT_WAIT);
    task.send_control(Control::Quit);
    let outcome = task.wait_exit(Duration::from_secs(30)).unwrap();
    outcome.assert_not_finished();
    let journal_path = task.slot_dir().join("docker_wrapper_journal.toml");
    let journal = std::fs::read_to_string(&journal_path).unwrap();
    let forged: String = journal
        .lines()
        .map(|line| {
            if line.starts_with("cpu_time") {
                "cpu_time = 1000000000.0".to_string()
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&journal_path, forged).unwrap();

    task.restart().unwrap();
    task.wait_for_counter_above(before, COUNT_WAIT);
    let status = task
        .wait_for_status(Duration::from_secs(30), |s| s.current_cpu_time > 0.0)
        .unwrap();
    assert!(
        status.current_cpu_time < 1e6,
        "the forged CPU time was reported: {status:?}"
    );
    let outcome = task.release_and_wait(TASK_TIMEOUT);
    outcome.assert_finished(0);
    outcome.assert_said(&["the journal claims 1000000000 s of CPU time"]);
    engine.assert_no_container(&task);
}

/// An image written for the C++ wrapper, where the job ran as the image's
/// root with the engine's default capabilities: a Debian-like root file
/// system (`/etc/passwd`, `/root`, a sticky `/tmp`, `/var/www`), a web
/// server for the volunteer's graphics on port 80, scratch files in `/tmp`,
/// `$HOME` and `/dev/shm`, the working directory elsewhere than `/app`, and
/// a job that runs until it is stopped and then writes a last file. With
/// `job_duration` the wrapper stops it after that much running time and the
/// task succeeds; without a fraction_done file the progress shown is the
/// share of that time.
const CXX_ERA_WEB_DOCKERFILE: &str = "FROM scratch
COPY busybox /bin/busybox
RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]
RUN mkdir -p /etc /root /var/www && mkdir -m 1777 /tmp && \\
    echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd && echo 'root:x:0:' > /etc/group
WORKDIR /science
CMD [\"/bin/sh\", \"./main.sh\"]
";

const CXX_ERA_WEB_JOB: &str =
    "trap 'echo \"stopped after $(cat beats) beats\" > shutdown.txt; exit 0' TERM
echo '<html>graphics of the running job</html>' > /var/www/index.html
httpd -p 80 -h /var/www || { echo 'cannot serve the graphics on port 80' >&2; exit 1; }
{ echo tmp > /tmp/scratch && echo home > \"$HOME/.state\" && \\
  dd if=/dev/zero of=/dev/shm/buffer bs=1M count=32 2>/dev/null && \\
  echo \"uid $(id -u) home $HOME\"; } > checks.txt 2>&1
i=0; while :; do i=$((i+1)); echo $i > beats; sleep 0.2; done";

/// Starts the web app and waits until its graphics are served.
fn start_cxx_era_web_app(wrapper: &str, engine: &TestEngine) -> Task {
    let job = TestJob::shell(CXX_ERA_WEB_JOB)
        .dockerfile(CXX_ERA_WEB_DOCKERFILE)
        .job_toml(&format!(
            "workdir = \"/science\"\nweb_graphics_guest_port = 80\njob_duration = {WEB_APP_DURATION_SECS}\nstop_grace_secs = 10\n"
        ));
    let task = TaskBuilder::on_engine("cxx_era_web", wrapper, engine)
        .job(job)
        .start()
        .unwrap();
    let (url, port) = web_graphics_port(&task);
    let body = wait_until(Duration::from_secs(20), || {
        http_get(port).filter(|b| b.contains("graphics of the running job"))
    });
    assert!(
        body.is_some(),
        "nothing served on {url}\n{}",
        task.logs_tail(30)
    );
    task
}

const WEB_APP_DURATION_SECS: u64 = 12;

fn a_cxx_era_web_app_serves_on_port_80_and_ends_at_its_job_duration(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let mut task = start_cxx_era_web_app(WRAPPER, &engine);
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(0);
    outcome.assert_said(&["job_duration of 12 s"]);
    assert_eq!(
        task.read_slot_file("checks.txt").as_deref(),
        Some("uid 0 home /root\n"),
        "{}",
        task.logs_tail(30)
    );
    let last = task.read_slot_file("shutdown.txt");
    assert!(
        last.as_deref()
            .is_some_and(|l| l.starts_with("stopped after")),
        "{last:?}\n{}",
        task.logs_tail(30)
    );
    // Progress rose with the time run, short of done until the end.
    let shares: Vec<f64> = task
        .status_history()
        .iter()
        .filter_map(|(_, s)| s.fraction_done)
        .collect();
    assert!(shares.iter().any(|f| *f > 0.1 && *f < 1.0), "{shares:?}");
    engine.assert_no_container(&task);
}

/// `job_duration = 6`, suspended for 8 s after the job has counted a little:
/// the task ends as a success, and no sooner than 6 s of running time plus
/// the suspension (less the two-second report grid).
fn job_duration_does_not_count_time_suspended(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let job = TestJob::shell(COUNTER_JOB).job_toml("job_duration = 6\nstop_grace_secs = 2\n");
    let mut task = TaskBuilder::on_engine("job_duration_suspend", WRAPPER, &engine)
        .job(job)
        .start()
        .unwrap();
    task.wait_for_counter_above(1, COUNT_WAIT);
    let running = Instant::now();
    task.send_control(Control::Suspend);
    std::thread::sleep(Duration::from_secs(8));
    task.send_control(Control::Resume);
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    let took = running.elapsed();
    outcome.assert_finished(0);
    outcome.assert_said(&["job_duration of 6 s"]);
    assert!(
        took >= Duration::from_secs(12),
        "ended {took:?} after the job ran, suspended 8 s of it\n{}",
        outcome.describe()
    );
    engine.assert_no_container(&task);
}

/// The C++ wrapper serves the same app's graphics (it runs the image's root
/// with the engine's default capabilities), but knows no `job_duration`:
/// the job is still running well past it, and only an abort ends it.
fn the_cxx_wrapper_serves_the_web_app_but_never_ends_it(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let cxx = dw_test_support::release::cxx_wrapper().unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let mut task = start_cxx_era_web_app(cxx.to_str().unwrap(), &engine);
    let past = Duration::from_secs(WEB_APP_DURATION_SECS + 4);
    std::thread::sleep(past.saturating_sub(started.elapsed()));
    assert!(task.is_running(), "{}", task.logs_tail(30));
    task.send_control(Control::Abort);
    task.wait_exit(Duration::from_secs(60)).unwrap();
    engine.assert_no_container(&task);
}
