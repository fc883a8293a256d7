//! A soak: many short tasks in a row on one engine, in one client data dir
//! (slots reused, one image for all), some aborted while running, some quit
//! while running and then restarted in the same slot. Afterwards nothing of
//! theirs may be left: no task container, no build container, no dangling
//! image, no cgroup directory; and the wrapper's open files and peak RSS may
//! not grow from the first tasks to the last.
//!
//! `DW_SOAK_TASKS` sets the number of tasks per engine (default 20, the CI
//! run); the full soak is `DW_SOAK_TASKS=200` (see README.md, Tests).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use dw_test_support::*;

const WRAPPER: &str = wrapper_path!();

const TASKS_VAR: &str = "DW_SOAK_TASKS";
/// The CI count; the full soak is 200 (README.md, Tests).
const DEFAULT_TASKS: usize = 20;
/// Every 5th task is aborted while its job runs.
const ABORT_EVERY: usize = 5;
/// Every 4th task (unless aborted) is quit while its job runs, then restarted.
const QUIT_EVERY: usize = 4;
/// How long an engine may take to remove what a finished task left
/// (cgroups, a concurrent test's build container) before it counts as left over.
const SETTLE: Duration = Duration::from_secs(10);
/// The last quarter's median peak RSS may exceed the first quarter's by this much.
const RSS_MARGIN: f64 = 0.10;
/// Open files at the same point of every task, at rest (see `open_fds`):
/// the median may grow by one, a file the wrapper opens lazily that one
/// look sees and another not; a leak grows it with every task.
const FD_MARGIN: usize = 1;

/// Writes "running" once it runs, then waits for the slot file `go`.
const JOB: &str = "echo start >> starts.txt; echo running > running.txt; \
    while [ ! -f go ]; do sleep 0.05; done; echo result > output.txt";

// Alone on its engine: every container the engine lists that was not there
// at the start counts as left over, another test's as much as its own.
on_both_engines!(engine_alone: short_tasks_in_a_row_leave_nothing_behind);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Completed,
    Aborted,
    QuitAndRestarted,
}

impl Kind {
    /// The deterministic mix: task 0 (which builds the image) completes.
    fn of(index: usize) -> Kind {
        let nth = index + 1;
        if nth % ABORT_EVERY == 0 {
            Kind::Aborted
        } else if nth % QUIT_EVERY == 0 {
            Kind::QuitAndRestarted
        } else {
            Kind::Completed
        }
    }
}

/// What one task showed.
struct Measured {
    kind: Kind,
    /// The wrapper's open files once the job runs.
    fds: usize,
    /// The wrapper's VmHWM (KiB), the largest over its runs.
    peak_rss_kib: u64,
    elapsed: Duration,
}

/// Something a task left behind, with the task it came from.
struct Leftover {
    index: usize,
    kind: Kind,
    what: String,
}

fn short_tasks_in_a_row_leave_nothing_behind(engine_kind: EngineKind) {
    let engine = TestEngine::require(engine_kind);
    let tasks = task_count();
    let run = run_id();
    let label = format!("docker_wrapper_soak={run}");
    let _image = ImagesLabelled {
        engine: engine.clone(),
        label: label.clone(),
    };
    let data_dir = TempDir::new(&format!("soak_{}", engine_kind.name())).unwrap();
    // A Dockerfile of this run only: its first task builds the image, every
    // other task reuses it, and every layer carries the run's label.
    let dockerfile = default_dockerfile_labelled(&run);
    let job = TestJob::shell(JOB).dockerfile(&dockerfile);
    let wu_prefix = format!("soak_{}_{run}_", engine_kind.name());
    let container_prefix = container_name(&project_dir_name(&engine, &data_dir), &wu_prefix);
    let build_containers_before = build_containers(&engine, &container_prefix);
    let dangling_before = dangling_images(&engine, None);

    let started = Instant::now();
    let mut measured = Vec::with_capacity(tasks);
    let mut leftovers = Vec::new();
    let mut container_ids = Vec::new();
    for index in 0..tasks {
        let kind = Kind::of(index);
        let task = TaskBuilder::on_engine("soak", WRAPPER, &engine)
            .shared_data_dir(data_dir.path())
            .wu_name(&format!("{wu_prefix}{index}"))
            .job(job.clone())
            .start()
            .unwrap();
        let (m, id) = run_one(&engine, task, index, kind, &mut leftovers);
        container_ids.push((index, kind, id));
        measured.push(m);
    }
    let took = started.elapsed();

    let mut failures: Vec<String> = leftovers
        .iter()
        .map(|l| format!("task {} ({:?}) left {}", l.index, l.kind, l.what))
        .collect();
    let containers = engine.containers_matching(&container_prefix);
    if !containers.is_empty() {
        failures.push(format!("task containers left at the end: {containers:?}"));
    }
    for (index, kind, id) in &container_ids {
        let dirs = cgroup_dirs_of(id);
        if !dirs.is_empty() {
            failures.push(format!(
                "task {index} ({kind:?}): cgroup dirs left at the end: {dirs:?}"
            ));
        }
    }
    let new_build_containers = settled(|| {
        build_containers(&engine, &container_prefix)
            .difference(&build_containers_before)
            .cloned()
            .collect()
    });
    if !new_build_containers.is_empty() {
        failures.push(format!(
            "build containers new since the start: {new_build_containers:?}"
        ));
    }
    // Only images of this run's build carry its label; other dangling images
    // may come from tests running alongside, so they are only counted.
    let ours_dangling = settled(|| dangling_images(&engine, Some(&label)));
    if !ours_dangling.is_empty() {
        failures.push(format!(
            "dangling images of this run's build: {ours_dangling:?}"
        ));
    }
    let others_dangling = dangling_images(&engine, None)
        .difference(&dangling_before)
        .count();

    let report = Report::new(&measured);
    eprintln!(
        "soak on {}: {tasks} tasks in {took:?} ({:?} a task, median), {} completed, {} aborted, {} quit and restarted\n\
         \topen files at the job's start: first {} last {}; medians first quarter {} last quarter {}\n\
         \tpeak RSS (KiB): first {} last {}; medians first quarter {} last quarter {}; max {}\n\
         \tleft over: {} task containers, {} cgroup findings, {} build containers, {} dangling images of ours ({} other new dangling images)",
        engine_kind.name(),
        report.median_elapsed,
        report.count(Kind::Completed),
        report.count(Kind::Aborted),
        report.count(Kind::QuitAndRestarted),
        report.fds.first().unwrap_or(&0),
        report.fds.last().unwrap_or(&0),
        report.fds_first_quarter,
        report.fds_last_quarter,
        report.rss.first().unwrap_or(&0),
        report.rss.last().unwrap_or(&0),
        report.rss_first_quarter,
        report.rss_last_quarter,
        report.rss.iter().max().unwrap_or(&0),
        containers.len() + leftovers.iter().filter(|l| l.what.starts_with("container")).count(),
        leftovers.iter().filter(|l| l.what.starts_with("cgroup")).count(),
        new_build_containers.len(),
        ours_dangling.len(),
        others_dangling,
    );
    if report.fds_last_quarter > report.fds_first_quarter + FD_MARGIN {
        failures.push(format!(
            "the wrapper's open files grew: median {} in the first quarter, {} in the last (per task: {:?})",
            report.fds_first_quarter, report.fds_last_quarter, report.fds
        ));
    }
    if report.rss_last_quarter as f64 > report.rss_first_quarter as f64 * (1.0 + RSS_MARGIN) {
        failures.push(format!(
            "the wrapper's peak RSS grew: median {} KiB in the first quarter, {} KiB in the last (per task: {:?})",
            report.rss_first_quarter, report.rss_last_quarter, report.rss
        ));
    }
    assert!(
        failures.is_empty(),
        "soak on {}:\n{}",
        engine_kind.name(),
        failures.join("\n")
    );
}

/// Runs one started task to its end as `kind` says, checks its outcome and
/// what it left; returns its measures and its container's id.
fn run_one(
    engine: &TestEngine,
    mut task: Task,
    index: usize,
    kind: Kind,
    leftovers: &mut Vec<Leftover>,
) -> (Measured, String) {
    let name = task.container_name();
    let slot_dir = task.slot_dir().to_path_buf();
    let started = Instant::now();
    let running = wait_until(TASK_TIMEOUT, || task.read_slot_file("running.txt"));
    assert!(
        running.is_some(),
        "task {index}: the job never ran\n{}",
        task.logs_tail(30)
    );
    let pid = task.pid().unwrap_or_else(|| {
        panic!(
            "task {index}: the wrapper exited early\n{}",
            task.logs_tail(30)
        )
    });
    let fds = open_fds(pid);
    let id = engine
        .inspect_container(&name, "{{.Id}}")
        .unwrap_or_else(|| {
            panic!(
                "task {index}: no container {name} while its job runs\n{}",
                task.logs_tail(30)
            )
        });
    // The check at the end looks for these; it must see them while they exist.
    assert!(
        !cgroup_dirs_of(&id).is_empty(),
        "task {index}: no cgroup dir names the running container {id}"
    );

    let mut peak = 0;
    let outcome = match kind {
        Kind::Completed => {
            fs::write(slot_dir.join("go"), "").unwrap();
            watch_exit(&mut task, &mut peak)
        }
        Kind::Aborted => {
            task.send_control(Control::Abort);
            let outcome = watch_exit(&mut task, &mut peak);
            outcome
                .noted(format!("task {index}: an aborted task finished"))
                .assert_not_finished();
            outcome
        }
        Kind::QuitAndRestarted => {
            task.send_control(Control::Quit);
            let outcome = watch_exit(&mut task, &mut peak);
            outcome
                .noted(format!("task {index}: quit finished the task"))
                .assert_not_finished();
            task.restart().unwrap();
            fs::write(slot_dir.join("go"), "").unwrap();
            let outcome = watch_exit(&mut task, &mut peak);
            assert_eq!(
                task.read_slot_file("starts.txt").as_deref(),
                Some("start\n"),
                "task {index}: the job started over"
            );
            outcome
        }
    };
    if kind != Kind::Aborted {
        outcome.noted(format!("task {index}")).assert_finished(0);
        assert_eq!(
            task.read_slot_file("output.txt").as_deref(),
            Some("result\n"),
            "task {index}"
        );
    }
    let elapsed = started.elapsed();

    // Before the task is dropped: dropping it removes the container itself.
    if let Some(state) = engine.container_state(&name) {
        leftovers.push(Leftover {
            index,
            kind,
            what: format!("container {name} ({state})"),
        });
    }
    let cgroups = wait_until(SETTLE, || Some(cgroup_dirs_of(&id)).filter(Vec::is_empty));
    if cgroups.is_none() {
        let dirs = cgroup_dirs_of(&id);
        leftovers.push(Leftover {
            index,
            kind,
            what: format!("cgroup dirs {dirs:?}"),
        });
    }
    drop(task);
    // The client empties a slot before it gives it to the next task.
    fs::remove_dir_all(&slot_dir).unwrap();
    (
        Measured {
            kind,
            fds,
            peak_rss_kib: peak,
            elapsed,
        },
        id,
    )
}

/// Waits for the wrapper's exit, following its VmHWM (the last value read is
/// its peak to within one sampling interval before it exits).
fn watch_exit(task: &mut Task, peak: &mut u64) -> Outcome {
    let deadline = Instant::now() + TASK_TIMEOUT;
    while task.is_running() && Instant::now() < deadline {
        if let Some(hwm) = task.pid().and_then(peak_rss_kib) {
            *peak = (*peak).max(hwm);
        }
        thread::sleep(Duration::from_millis(20));
    }
    task.wait_exit(Duration::from_secs(1))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// VmHWM of a process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The process's open files at rest: the median of a few looks taken while
/// it has no child process (an engine command in flight holds its pipes
/// open for as long as the engine takes, which on a loaded machine outlasts
/// any fixed window), or the least of all looks if it never rests.
fn open_fds(pid: u32) -> usize {
    let deadline = Instant::now() + Duration::from_secs(3);
    let (mut at_rest, mut all) = (Vec::new(), Vec::new());
    while at_rest.len() < 4 && Instant::now() < deadline {
        let busy_before = has_children(pid);
        let count = fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(usize::MAX);
        if !busy_before && !has_children(pid) {
            at_rest.push(count);
        }
        all.push(count);
        thread::sleep(Duration::from_millis(25));
    }
    if at_rest.is_empty() {
        return all.into_iter().min().unwrap_or(usize::MAX);
    }
    at_rest.sort_unstable();
    at_rest[at_rest.len() / 2]
}

/// Whether any thread of the process has a child process.
fn has_children(pid: u32) -> bool {
    let Ok(threads) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    threads.flatten().any(|thread| {
        fs::read_to_string(thread.path().join("children"))
            .is_ok_and(|children| !children.trim().is_empty())
    })
}

/// Every directory under /sys/fs/cgroup whose name holds the container id
/// (`libpod-<id>`, `docker-<id>.scope`, `<id>`, in any hierarchy).
fn cgroup_dirs_of(id: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if !id.is_empty() {
        find_dirs(Path::new("/sys/fs/cgroup"), id, 6, &mut found);
    }
    found
}

fn find_dirs(dir: &Path, needle: &str, depth: u32, found: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        if entry.file_name().to_string_lossy().contains(needle) {
            found.push(path);
        } else if depth > 0 {
            find_dirs(&path, needle, depth - 1, found);
        }
    }
}

/// Containers the engine lists besides those of tasks: with Podman, the
/// external (buildah) containers of builds; with Docker, a classic build's
/// intermediate containers are ordinary ones.
fn build_containers(engine: &TestEngine, task_prefix: &str) -> BTreeSet<String> {
    let mut args = vec!["ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}}"];
    if engine.kind() == EngineKind::Podman {
        args.push("--external");
    }
    let out = engine.run(&args).unwrap();
    assert!(out.success(), "{} ps: {}", engine.kind().name(), out.stderr);
    out.stdout
        .lines()
        .filter(|line| {
            !line
                .split_whitespace()
                .nth(1)
                .is_some_and(|name| name.starts_with(task_prefix))
        })
        .map(|line| line.trim().to_string())
        .filter(|line| !line.is_empty())
        .collect()
}

/// Ids of dangling images, only those with `label` (`key=value`) if given.
fn dangling_images(engine: &TestEngine, label: Option<&str>) -> BTreeSet<String> {
    let mut args = vec![
        "images".to_string(),
        "-q".into(),
        "--no-trunc".into(),
        "-f".into(),
        "dangling=true".into(),
    ];
    if let Some(label) = label {
        args.extend(["-f".into(), format!("label={label}")]);
    }
    let out = engine.run(&args).unwrap();
    assert!(
        out.success(),
        "{} images: {}",
        engine.kind().name(),
        out.stderr
    );
    out.stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// `probe`'s answer once it is empty, or its last answer after `SETTLE`: an
/// engine still finishing a concurrent build is given the time to.
fn settled(probe: impl Fn() -> BTreeSet<String>) -> BTreeSet<String> {
    wait_until(SETTLE, || Some(probe()).filter(BTreeSet::is_empty)).unwrap_or_else(probe)
}

/// The test's default Dockerfile with this run's label on every layer.
fn default_dockerfile_labelled(run: &str) -> String {
    let default = dw_test_support::jobs::default_dockerfile(dw_test_support::jobs::DEFAULT_WORKDIR);
    let (from, rest) = default.split_once('\n').unwrap();
    format!("{from}\nLABEL docker_wrapper_soak=\"{run}\"\n{rest}")
}

/// The project dir name tasks in `data_dir` get (a task prepared, not started).
fn project_dir_name(engine: &TestEngine, data_dir: &TempDir) -> String {
    let probe = TaskBuilder::on_engine("soak_probe", WRAPPER, engine)
        .shared_data_dir(data_dir.path())
        .prepare()
        .unwrap();
    let name = probe.project_dir_name().to_string();
    let slot = probe.slot_dir().to_path_buf();
    drop(probe);
    fs::remove_dir_all(slot).unwrap();
    name
}

fn task_count() -> usize {
    match std::env::var(TASKS_VAR) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{TASKS_VAR}={v:?}: expected a number of tasks")),
        Err(_) => DEFAULT_TASKS,
    }
}

/// Unique to this test run: pid and time.
fn run_id() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}-{}", std::process::id(), now.as_millis())
}

/// Removes the run's images (every one carries its label), even when the test fails.
struct ImagesLabelled {
    engine: TestEngine,
    label: String,
}

impl Drop for ImagesLabelled {
    fn drop(&mut self) {
        let filter = format!("label={}", self.label);
        if let Ok(out) = self
            .engine
            .run(["images", "-q", "--no-trunc", "-f", &filter])
        {
            for id in out.stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
                let _ = self.engine.run(["rmi", "-f", id]);
            }
        }
    }
}

/// The figures the assertions compare, per task in order.
struct Report {
    kinds: Vec<Kind>,
    fds: Vec<usize>,
    rss: Vec<u64>,
    fds_first_quarter: usize,
    fds_last_quarter: usize,
    rss_first_quarter: u64,
    rss_last_quarter: u64,
    median_elapsed: Duration,
}

impl Report {
    fn new(measured: &[Measured]) -> Report {
        let fds: Vec<usize> = measured.iter().map(|m| m.fds).collect();
        let rss: Vec<u64> = measured.iter().map(|m| m.peak_rss_kib).collect();
        let quarter = (measured.len() / 4).max(1);
        let first = |v: &[u64]| median(&v[..quarter.min(v.len())]);
        let last = |v: &[u64]| median(&v[v.len().saturating_sub(quarter)..]);
        let fds64: Vec<u64> = fds.iter().map(|&f| f as u64).collect();
        let elapsed: Vec<u64> = measured
            .iter()
            .map(|m| m.elapsed.as_millis() as u64)
            .collect();
        Report {
            kinds: measured.iter().map(|m| m.kind).collect(),
            fds_first_quarter: first(&fds64) as usize,
            fds_last_quarter: last(&fds64) as usize,
            rss_first_quarter: first(&rss),
            rss_last_quarter: last(&rss),
            median_elapsed: Duration::from_millis(median(&elapsed)),
            fds,
            rss,
        }
    }

    fn count(&self, kind: Kind) -> usize {
        self.kinds.iter().filter(|k| **k == kind).count()
    }
}

/// The upper median (0 for none).
fn median(values: &[u64]) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied().unwrap_or(0)
}
