//! The image cache on real Podman and real Docker: workunits with the same
//! build inputs share one image, concurrent tasks build it once, garbage
//! collection keeps the limit by evicting the least recently used image,
//! never an image a container uses, and never anyone else's image.
//!
//! Every test has a project of its own (engine, test and pid in its name), so
//! its cache is isolated from the tests running beside it; all its tasks share
//! one data dir, hence one project dir (build lock, last-use markers), as the
//! tasks of one client do.

use std::collections::BTreeSet;

use dw_test_support::jobs::{default_dockerfile, BUSYBOX_ONLY_DOCKERFILE, DEFAULT_WORKDIR};
use dw_test_support::*;

const WRAPPER: &str = wrapper_path!();

/// The label the wrapper puts on every cache image: the project it belongs to.
const PROJECT_LABEL: &str = "boinc.docker_wrapper.project";
const INPUTS_LABEL: &str = "boinc.docker_wrapper.inputs";
const TAIL: usize = 40;

on_both_engines!(
    a_cached_start_is_two_engine_commands,
    a_fixed_image_name_is_built_once_then_used,
    two_workunits_share_one_build,
    four_concurrent_tasks_build_once,
    lru_eviction_keeps_the_limit,
    an_image_in_use_is_never_removed,
    other_images_are_untouched,
);

/// The default test Dockerfile with `ENV DWTEST_PROJECT=<project>` right
/// after `FROM`, then `extra`. No two tests share a build step, so no build
/// uses a cached step another test's image removal may delete meanwhile, and
/// each test's first build really builds.
fn project_dockerfile(project: &Project, extra: &str) -> String {
    let from = "FROM scratch\n";
    let default = default_dockerfile(DEFAULT_WORKDIR);
    assert!(default.starts_with(from), "{default}");
    let unique = format!("{from}ENV DWTEST_PROJECT={}\n", project.name);
    format!("{}{extra}", default.replacen(from, &unique, 1))
}

/// A job that marks its start in the slot (`STARTED`) and finishes at once.
/// (The script is read from the slot at run time: it does not change the image.)
fn fresh_job(project: &Project) -> TestJob {
    TestJob::shell(&format!("touch {STARTED}; echo job done"))
        .dockerfile(&project_dockerfile(project, ""))
}

/// The file `fresh_job` creates first.
const STARTED: &str = "job_started";

/// A job whose image differs from every other variant's (one more ENV line).
fn variant(project: &Project, n: u32, job_toml: &str) -> TestJob {
    variant_job(project, n, "echo variant job done", job_toml)
}

fn variant_job(project: &Project, n: u32, script: &str, job_toml: &str) -> TestJob {
    let dockerfile = project_dockerfile(project, &format!("ENV VARIANT={n}\n"));
    TestJob::shell(script)
        .dockerfile(&dockerfile)
        .job_toml(job_toml)
}

/// job.toml with this image limit; debug logging makes stderr.txt say why
/// garbage collection kept an image.
fn cache_limit(images: usize) -> String {
    format!("image_cache_max_images = {images}\nverbose = 2\n")
}

/// One test's BOINC project on one engine: a data dir its tasks share and the
/// cache images carrying its label, removed at the start (leftovers of an
/// interrupted run) and when dropped (even when the test fails).
struct Project {
    engine: TestEngine,
    /// The project dir name; chosen so that it is also the label value (the
    /// wrapper lower-cases it and replaces odd characters).
    name: String,
    data_dir: TempDir,
}

impl Project {
    fn new(engine: &TestEngine, test: &str) -> Project {
        let name = format!(
            "dwtest_img_{test}_{}_{}",
            engine.kind().name(),
            std::process::id()
        );
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{name} would be renamed by the wrapper"
        );
        let project = Project {
            engine: engine.clone(),
            data_dir: TempDir::new(&name).expect("cannot create the shared data dir"),
            name,
        };
        project.remove_images();
        project
    }

    /// A task of this project in the shared data dir (a slot of its own).
    fn task(&self, wu_name: &str, job: TestJob) -> TaskBuilder {
        Task::builder(&self.name, WRAPPER)
            .engine(&self.engine)
            .shared_data_dir(self.data_dir.path().join("boinc_data"))
            .project_dir_name(&self.name)
            .wu_name(wu_name)
            .job(job)
    }

    /// Runs a task to its end; it must succeed and leave no container behind.
    fn run(&self, wu_name: &str, job: TestJob) -> (Task, Outcome) {
        let mut task = self.task(wu_name, job).start().unwrap();
        let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
        outcome.noted(wu_name).assert_finished(0);
        self.engine.assert_no_container(&task);
        (task, outcome)
    }

    /// Like `run`, and also measures the time from starting the wrapper until
    /// the job has started (its `STARTED` file appears; polled every 5 ms).
    fn run_timed(&self, wu_name: &str, job: TestJob) -> (Task, Outcome, Duration) {
        let mut task = self.task(wu_name, job).prepare().unwrap();
        let started_file = task.slot_dir().join(STARTED);
        let start = std::time::Instant::now();
        task.start().unwrap();
        let job_start = loop {
            if started_file.exists() {
                break Some(start.elapsed());
            }
            if !task.is_running() || start.elapsed() > TASK_TIMEOUT {
                // Started after all if the file is there now (time unknown).
                break started_file.exists().then(|| start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
        outcome.noted(wu_name).assert_finished(0);
        self.engine.assert_no_container(&task);
        let job_start = job_start
            .unwrap_or_else(|| panic!("{wu_name}: the job never started\n{}", outcome.describe()));
        (task, outcome, job_start)
    }

    /// The project's cache images: `repository:tag` (without Podman's
    /// `localhost/`) of every tagged image with its label.
    fn images(&self) -> BTreeSet<String> {
        let listed = self.labelled_images();
        let tagged = listed
            .into_iter()
            .filter(|(name, _)| !name.contains("<none>"));
        tagged.map(|(name, _)| normalize(&name)).collect()
    }

    /// `(repository:tag, id)` of every image with this project's label, tagged
    /// or not. Podman puts the label on a build's intermediate images too, and
    /// now and then one is left untagged (dangling) when images are removed
    /// while other builds run: it is no cache entry, but it is removed at the end.
    fn labelled_images(&self) -> Vec<(String, String)> {
        self.engine.labelled_images(&self.label()).unwrap()
    }

    fn label(&self) -> String {
        format!("{PROJECT_LABEL}={}", self.name)
    }

    /// No container of this project is left on the engine (its images are
    /// removed when the project is dropped).
    fn assert_nothing_left(&self) {
        let containers = self
            .engine
            .containers_matching(&format!("boinc__{}__", self.name));
        assert!(
            containers.is_empty(),
            "containers left behind: {containers:?}"
        );
    }

    /// Removes the tagged images by name, then the untagged ones by id.
    fn remove_images(&self) {
        let untagged = self.engine.remove_labelled_images(&self.label());
        if !untagged.is_empty() {
            println!(
                "{}: untagged images with the label of {}: {untagged:?}",
                self.engine.kind().name(),
                self.name
            );
        }
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        self.remove_images();
    }
}

/// Images a test made itself, directly with the engine, removed when dropped.
struct ForeignImages {
    engine: TestEngine,
    tags: Vec<String>,
}

impl ForeignImages {
    /// Builds `FROM scratch` + busybox as `tag`, with these labels.
    fn build(&mut self, tag: &str, labels: &[(&str, &str)]) {
        let _ = self.engine.remove_image(tag);
        self.tags.push(tag.to_string());
        self.engine
            .build_busybox_image(tag, BUSYBOX_ONLY_DOCKERFILE, labels);
        assert!(
            self.engine.image_exists(tag),
            "{tag} is missing right after its build"
        );
    }
}

impl Drop for ForeignImages {
    fn drop(&mut self) {
        for tag in &self.tags {
            if let Err(e) = self.engine.remove_image(tag) {
                eprintln!("warning: cannot remove test image {tag}: {e}");
            }
        }
    }
}

/// Podman shows local images as `localhost/<name>`; compare without it.
fn normalize(image: &str) -> String {
    image.trim_start_matches("localhost/").to_string()
}

/// How many times the task's wrapper built an image.
fn builds(outcome: &Outcome) -> usize {
    outcome.stderr_txt.matches("building image ").count()
}

/// The cache image the wrapper's log says the task used (built, cached or
/// built by another task), without `localhost/`.
fn image_in_log(stderr_txt: &str) -> Option<String> {
    stderr_txt
        .lines()
        .filter(|line| {
            line.contains("building image ")
                || line.ends_with(" is cached")
                || line.ends_with(" was built by another task")
        })
        .flat_map(str::split_whitespace)
        .find(|word| normalize(word).starts_with("boinc_wrapper/"))
        .map(normalize)
}

/// The outcome with every line of stderr.txt about images (build, cache,
/// garbage collection) in its failure messages: they may be older than the
/// tail `describe` shows.
fn explained(outcome: &Outcome) -> Outcome {
    let image_lines: Vec<&str> = outcome
        .stderr_txt
        .lines()
        .filter(|l| l.contains("image"))
        .collect();
    outcome.noted(format!(
        "--- image lines of stderr.txt ---\n{}\n---",
        image_lines.join("\n")
    ))
}

/// `describe()` with every line of stderr.txt about images.
fn explain(outcome: &Outcome) -> String {
    explained(outcome).describe()
}

fn image_of(outcome: &Outcome) -> String {
    image_in_log(&outcome.stderr_txt)
        .unwrap_or_else(|| panic!("no cache image in the log\n{}", outcome.describe()))
}

/// Runs a variant that must build its own image; returns that image and how
/// the task ended (its log says what garbage collection removed).
fn run_building(project: &Project, wu_name: &str, job: TestJob) -> (String, Outcome) {
    let (_task, outcome) = project.run(wu_name, job);
    assert_eq!(
        builds(&outcome),
        1,
        "{wu_name} should have built its image\n{}",
        explain(&outcome)
    );
    (image_of(&outcome), outcome)
}

fn set(images: &[&String]) -> BTreeSet<String> {
    images.iter().map(|s| s.to_string()).collect()
}

/// The engine commands a task's log shows from the wrapper's start until its
/// container ran and its pid was known (the `inspect` after "container
/// started"), each as its subcommand: "run", "container inspect", "info"...
fn commands_to_start(stderr_txt: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut started = false;
    for line in stderr_txt.lines() {
        started |= line.ends_with("container started");
        let Some((_, argv)) = line.split_once("engine: ") else {
            continue;
        };
        // The CLI, its global flags, then the subcommand (two words for
        // `container ...` and `image ...`).
        let mut words = argv
            .split_whitespace()
            .skip(1)
            .skip_while(|w| w.starts_with('-'));
        let mut command = words.next().unwrap_or_default().to_string();
        if command == "container" || command == "image" {
            command = format!("{command} {}", words.next().unwrap_or_default());
        }
        let done = started && command == "container inspect";
        commands.push(command);
        if done {
            break;
        }
    }
    commands
}

fn a_cached_start_is_two_engine_commands(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let project = Project::new(&engine, "two_commands");
    let job = || fresh_job(&project).job_toml("verbose = 2\n");
    // The first task of the host asks the engine's facts, and learns from
    // the refused `run` that the image is missing.
    let (first_task, first) = project.run("wu_first", job());
    let first_commands = commands_to_start(&first.stderr_txt);
    assert_eq!(builds(&first), 1, "{}", explain(&first));
    assert_eq!(
        first_commands[..2],
        ["info", "run"],
        "{first_commands:?}\n{}",
        explain(&first)
    );
    // Built, then created; the host's first start also sweeps the cache.
    let position = |command: &str| first_commands.iter().rposition(|c| c == command);
    assert!(
        position("build") < position("run") && position("run") > Some(1),
        "{first_commands:?}"
    );
    let facts = first_task
        .data_dir()
        .join(format!("docker_wrapper/engine_facts_{}.toml", kind.name()));
    assert!(facts.is_file(), "{} is missing", facts.display());

    let (_second_task, second) = project.run("wu_second", job());
    assert_eq!(
        commands_to_start(&second.stderr_txt),
        ["run", "container inspect"],
        "{}",
        second.describe()
    );
    second.assert_said(&[" is cached"]);
    second
        .noted("the engine's version is still logged")
        .assert_said(&[&format!("using {} ", kind_title(kind))]);
    project.assert_nothing_left();
}

/// job.toml's `image_name`: created from at once, built only when the
/// engine says it lacks it, never garbage-collected.
fn a_fixed_image_name_is_built_once_then_used(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let project = Project::new(&engine, "fixed_name");
    let name = format!("{}:fixed", project.name);
    let _remove_at_the_end = ForeignImages {
        engine: engine.clone(),
        tags: vec![name.clone()],
    };
    let _ = engine.remove_image(&name);
    let job = || fresh_job(&project).job_toml(&format!("image_name = \"{name}\"\n"));
    let (_first_task, first) = project.run("wu_fixed_1", job());
    explained(&first).assert_said(&[&format!("building image {name}")]);
    let (_second_task, second) = project.run("wu_fixed_2", job());
    let second = explained(&second);
    second.assert_said(&[&format!("image {name} is present")]);
    second.assert_not_said(&["building image"]);
    assert!(engine.image_exists(&name), "{name} was removed");
    project.assert_nothing_left();
}

/// As the wrapper names the engine in its log.
fn kind_title(kind: EngineKind) -> &'static str {
    match kind {
        EngineKind::Podman => "Podman",
        EngineKind::Docker => "Docker",
    }
}

fn two_workunits_share_one_build(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let project = Project::new(&engine, "share");
    let (_first, first, first_start) = project.run_timed("wu_first", fresh_job(&project));
    let (_second, second, second_start) = project.run_timed("wu_second", fresh_job(&project));

    assert_eq!(
        builds(&first),
        1,
        "the first workunit should build\n{}",
        first.describe()
    );
    assert_eq!(
        builds(&second),
        0,
        "the second workunit rebuilt\n{}",
        second.describe()
    );
    second.assert_said(&[" is cached"]);
    let image = image_of(&first);
    assert_eq!(
        image_of(&second),
        image,
        "the workunits used different images"
    );
    assert_eq!(
        project.images(),
        set(&[&image]),
        "exactly one project image expected"
    );
    // Timing varies with the host's load: reported, not asserted.
    println!(
        "{}: job started after {:.3} s / task took {:.3} s for the first workunit (build); \
         {:.3} s / {:.3} s for the second (cached image)",
        kind.name(),
        first_start.as_secs_f64(),
        first.elapsed.as_secs_f64(),
        second_start.as_secs_f64(),
        second.elapsed.as_secs_f64()
    );
    project.assert_nothing_left();
}

fn four_concurrent_tasks_build_once(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let project = Project::new(&engine, "concurrent");
    let mut tasks: Vec<Task> = (1..=4)
        .map(|i| {
            project
                .task(&format!("wu_{i}"), fresh_job(&project))
                .prepare()
                .unwrap()
        })
        .collect();
    for task in &mut tasks {
        task.start().unwrap();
    }
    let outcomes: Vec<Outcome> = tasks
        .iter_mut()
        .map(|t| t.wait_exit(TASK_TIMEOUT).unwrap())
        .collect();

    for (task, outcome) in tasks.iter().zip(&outcomes) {
        outcome.noted(task.wu_name()).assert_finished(0);
        engine.assert_no_container(task);
    }
    let all_logs = || {
        let logs = outcomes.iter().map(explain);
        logs.collect::<Vec<_>>().join("\n=====\n")
    };
    let total_builds: usize = outcomes.iter().map(builds).sum();
    assert_eq!(
        total_builds,
        1,
        "4 concurrent tasks should build once\n{}",
        all_logs()
    );
    let image = outcomes
        .iter()
        .find(|o| builds(o) == 1)
        .map(image_of)
        .unwrap();
    for outcome in outcomes.iter().filter(|o| builds(o) == 0) {
        let reused = outcome.stderr_txt.contains("was built by another task")
            || outcome.stderr_txt.contains(" is cached");
        assert!(
            reused,
            "a task neither built nor reused the image\n{}",
            outcome.describe()
        );
        assert_eq!(image_of(outcome), image, "{}", outcome.describe());
    }
    assert_eq!(
        project.images(),
        set(&[&image]),
        "exactly one project image expected"
    );
    project.assert_nothing_left();
}

fn lru_eviction_keeps_the_limit(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let project = Project::new(&engine, "lru");
    let limit = cache_limit(2);
    let (v1, _) = run_building(&project, "wu_v1", variant(&project, 1, &limit));
    let (v2, _) = run_building(&project, "wu_v2", variant(&project, 2, &limit));
    let (v3, third) = run_building(&project, "wu_v3", variant(&project, 3, &limit));
    assert_eq!(
        project.images(),
        set(&[&v2, &v3]),
        "after 3 builds with a limit of 2, the least recently used ({v1}) should be gone\n{}",
        explain(&third)
    );

    // Variant 2 used again: variant 3 is now the least recently used.
    let (_task, again) = project.run("wu_v2_again", variant(&project, 2, &limit));
    assert_eq!(
        builds(&again),
        0,
        "variant 2 should be cached\n{}",
        explain(&again)
    );
    assert_eq!(image_of(&again), v2, "{}", explain(&again));
    let (v4, fourth) = run_building(&project, "wu_v4", variant(&project, 4, &limit));
    assert_eq!(
        project.images(),
        set(&[&v2, &v4]),
        "variant 3 ({v3}) was the least recently used and should be the one evicted\n{}",
        explain(&fourth)
    );
    project.assert_nothing_left();
}

fn an_image_in_use_is_never_removed(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let project = Project::new(&engine, "in_use");
    let limit = cache_limit(1);
    let waits_for_go = "while [ ! -f go ]; do sleep 0.1; done; echo released";
    let mut a = project
        .task("wu_a", variant_job(&project, 1, waits_for_go, &limit))
        .start()
        .unwrap();
    let a_container = a.container_name();
    let running = engine.wait_for_container_state(&a_container, "running", TASK_TIMEOUT);
    assert!(running.is_ok(), "{running:?}\n{}", a.logs_tail(TAIL));
    let a_image = image_in_log(&a.stderr_txt())
        .unwrap_or_else(|| panic!("no cache image in A's log\n{}", a.logs_tail(TAIL)));

    // B's build runs garbage collection with a limit of 1: A's image is the
    // least recently used, but A's container uses it.
    let (b_image, b) = run_building(&project, "wu_b", variant(&project, 2, &limit));
    assert_eq!(
        engine.container_state(&a_container).as_deref(),
        Some("running"),
        "A should still run\n{}",
        a.logs_tail(TAIL)
    );
    assert!(
        engine.image_exists(&a_image),
        "A's image {a_image} was removed while A runs\n{}",
        explain(&b)
    );
    assert_eq!(
        project.images(),
        set(&[&a_image, &b_image]),
        "{}",
        explain(&b)
    );
    // Not vacuous: B's garbage collection did try A's image (its debug lines
    // after the build name it).
    let after_build = b
        .stderr_txt
        .split_once("image built")
        .map_or("", |(_, rest)| rest);
    let a_hash = a_image.rsplit(':').next().unwrap();
    assert!(
        after_build.contains(a_hash),
        "B's garbage collection never tried to remove A's image {a_image}\n{}",
        explain(&b)
    );

    std::fs::write(a.slot_dir().join("go"), "").unwrap();
    let outcome = a.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(0);
    outcome.assert_said(&["released"]);
    engine.assert_no_container(&a);
    project.assert_nothing_left();
}

fn other_images_are_untouched(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let project = Project::new(&engine, "others");
    let mut foreign = ForeignImages {
        engine: engine.clone(),
        tags: Vec::new(),
    };
    // An image of another program: no labels at all.
    let unrelated = format!("dwtest-unrelated-{}:1", std::process::id());
    foreign.build(&unrelated, &[]);
    // A cache image of another project whose name starts with ours: exactly
    // what our garbage collection would see if it matched names loosely. It
    // has no last-use marker, so it would be the first evicted.
    let other_project = format!("{}_b", project.name);
    let other = format!(
        "boinc_wrapper/{other_project}:{}",
        "0123456789abcdef01234567"
    );
    foreign.build(
        &other,
        &[
            (PROJECT_LABEL, &other_project),
            (INPUTS_LABEL, "0123456789abcdef"),
        ],
    );

    let limit = cache_limit(1);
    run_building(&project, "wu_v1", variant(&project, 1, &limit));
    let (v2, second) = run_building(&project, "wu_v2", variant(&project, 2, &limit));
    let log = explain(&second);
    // Garbage collection did run: the project is back to its limit.
    assert_eq!(
        project.images(),
        set(&[&v2]),
        "the project should keep only its newest image\n{log}"
    );
    assert!(
        engine.image_exists(&unrelated),
        "the unrelated image {unrelated} was removed\n{log}"
    );
    assert!(
        engine.image_exists(&other),
        "another project's image {other} was removed\n{log}"
    );
    project.assert_nothing_left();
}
