//! A build interrupted by a signal leaves nothing on the engine: no build
//! container (Podman's `*-working-container`, Docker's intermediate one) and
//! no dangling image of its finished steps. After SIGKILL, when the wrapper
//! could not clean up, the next build of the same project does.
//!
//! Each test builds `FROM` a base image of its own, so the build containers
//! it looks for are named after that base (Podman) or descend from it
//! (Docker), and its step images carry its own `ENV`: no test mistakes
//! another's build for its own.

use dw_test_support::jobs::{default_dockerfile, DEFAULT_WORKDIR};
use dw_test_support::*;

const WRAPPER: &str = wrapper_path!();

/// What the engine may take to finish cleaning up by itself.
const ENGINE_CLEANUP: Duration = Duration::from_secs(10);
/// How long the build may take to reach its long step.
const REACH_STEP: Duration = Duration::from_secs(120);

on_both_engines!(
    sigterm_stops_a_build_and_leaves_nothing,
    the_next_build_removes_what_a_killed_build_left,
);

/// One test's base image and project, and whatever its builds leave,
/// removed when dropped (even when the test fails).
struct Build {
    engine: TestEngine,
    /// The project dir name, also the value of the `ENV` that marks its steps.
    project: String,
    /// The base image every build of the test starts `FROM`.
    base: String,
    data_dir: TempDir,
}

impl Build {
    fn new(engine: &TestEngine, test: &str) -> Build {
        let project = format!(
            "dwtest_ib_{test}_{}_{}",
            engine.kind().name(),
            std::process::id()
        );
        let build = Build {
            engine: engine.clone(),
            base: format!("{project}_base"),
            data_dir: TempDir::new(&project).expect("cannot create the shared data dir"),
            project,
        };
        build.build_base();
        build
    }

    /// `FROM scratch` + busybox with its applets, as `self.base`. Its label
    /// makes it an image of its own: two tests' bases with the same content
    /// would be one image to Docker, and `ancestor=` would see both tests'
    /// build containers.
    fn build_base(&self) {
        let dockerfile = format!(
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nLABEL dwtest.base={}\n",
            self.project
        );
        self.engine
            .build_busybox_image(&self.base, &dockerfile, &[]);
    }

    /// A job whose build runs `sleep <seconds>` in its last step. `variant`
    /// comes before every other step, so builds of different variants share
    /// no step (Docker would reuse a leftover step image as its cache).
    fn job(&self, variant: &str, sleep: Option<u32>) -> TestJob {
        let default = default_dockerfile(DEFAULT_WORKDIR);
        let rest = default
            .strip_prefix("FROM scratch\n")
            .expect("the default Dockerfile starts FROM scratch");
        let sleep = sleep
            .map(|s| format!("RUN [\"/bin/sleep\", \"{s}\"]\n"))
            .unwrap_or_default();
        let dockerfile = format!(
            "FROM {}\nENV DWTEST_VARIANT={variant}\nENV DWTEST_PROJECT={}\n{rest}{sleep}",
            self.base, self.project
        );
        TestJob::shell("echo job done").dockerfile(&dockerfile)
    }

    fn task(&self, wu_name: &str, job: TestJob) -> TaskBuilder {
        Task::builder(&self.project, WRAPPER)
            .engine(&self.engine)
            .shared_data_dir(self.data_dir.path().join("boinc_data"))
            .project_dir_name(&self.project)
            .wu_name(wu_name)
            .job(job)
    }

    /// The leftovers once the engine has had `grace` to finish what it does
    /// by itself: Docker's daemon cancels a build whose client is gone and
    /// removes its step container a moment later.
    fn leftovers_after(&self, grace: Duration) -> Vec<String> {
        let started = std::time::Instant::now();
        loop {
            let left = self.leftovers();
            if left.is_empty() || started.elapsed() >= grace {
                return left;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// What builds of this test left: build containers (`container <id>`)
    /// and untagged images without children (`image <id>`) of its steps.
    fn leftovers(&self) -> Vec<String> {
        let mut found = Vec::new();
        match self.engine.kind() {
            EngineKind::Podman => {
                // Buildah's working containers are outside Podman's own list;
                // each is named after its base image.
                let out = self
                    .engine
                    .run([
                        "ps",
                        "-a",
                        "--external",
                        "--format",
                        "{{.ID}} {{.Image}} {{.Names}}",
                    ])
                    .unwrap();
                for line in out.stdout.lines().filter(|line| line.contains(&self.base)) {
                    found.push(format!("container {line}"));
                }
            }
            EngineKind::Docker => {
                let ancestor = format!("ancestor={}", self.base);
                let out = self
                    .engine
                    .run([
                        "ps",
                        "-a",
                        "--filter",
                        &ancestor,
                        "--format",
                        "{{.ID}} {{.Status}} {{.Command}}",
                    ])
                    .unwrap();
                found.extend(
                    out.stdout
                        .lines()
                        .filter(|l| !l.trim().is_empty())
                        .map(|l| format!("container {l}")),
                );
            }
        }
        // Without -a: the last step image of a chain is enough to see it.
        let out = self
            .engine
            .run(["images", "-q", "--no-trunc", "--filter", "dangling=true"])
            .unwrap();
        let marker = format!("DWTEST_PROJECT={}", self.project);
        for id in out
            .stdout
            .lines()
            .map(str::trim)
            .filter(|id| !id.is_empty())
        {
            let env = self
                .engine
                .run(["image", "inspect", "--format", "{{.Config.Env}}", id]);
            if env.is_ok_and(|env| env.stdout.contains(&marker)) {
                found.push(format!("image {id}"));
            }
        }
        found
    }

    /// Removes the leftovers (images child first: each removal may bare a parent).
    fn remove_leftovers(&self) {
        for _ in 0..10 {
            let left = self.leftovers();
            if left.is_empty() {
                return;
            }
            for item in left {
                let mut words = item.split_whitespace();
                match (words.next(), words.next()) {
                    (Some("container"), Some(id)) => drop(self.engine.run(["rm", "-f", id])),
                    (Some("image"), Some(id)) => drop(self.engine.run(["rmi", id])),
                    _ => {}
                }
            }
        }
    }

    /// Waits until the build runs `sleep <seconds>` (a host process, on both engines).
    fn wait_for_sleep(&self, task: &mut Task, seconds: u32) {
        let reached = wait_until(REACH_STEP, || {
            (sleep_process_running(seconds) || !task.is_running()).then_some(())
        });
        assert!(
            reached.is_some() && task.is_running(),
            "the build never reached its sleep step\n{}",
            task.logs_tail(40)
        );
        // Its build container exists before the step runs; give the engine a moment.
        std::thread::sleep(Duration::from_millis(500));
    }
}

impl Drop for Build {
    fn drop(&mut self) {
        self.remove_leftovers();
        let images = self.engine.run([
            "images",
            "-q",
            "--filter",
            &format!("label=boinc.docker_wrapper.project={}", self.project),
        ]);
        for id in images
            .map(|o| o.stdout)
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|id| !id.is_empty())
        {
            let _ = self.engine.run(["rmi", "-f", id]);
        }
        self.remove_leftovers();
        let _ = self.engine.remove_image(&self.base);
    }
}

/// Whether a process `sleep <seconds>` (the build's long step) runs on this host.
fn sleep_process_running(seconds: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    let wanted = seconds.to_string();
    entries.flatten().any(|entry| {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            return false;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        args.len() >= 2 && args[0].ends_with(b"sleep") && args[1] == wanted.as_bytes()
    })
}

/// Whether the build's `sleep <seconds>` still runs after `grace`.
fn sleep_outlives(seconds: u32, grace: Duration) -> bool {
    wait_until(grace, || (!sleep_process_running(seconds)).then_some(())).is_none()
}

/// A sleep no other build runs: not the other tests' (the tests of both
/// engines run at once), nor one an earlier run of these tests left (the
/// test process's pid is in it).
fn sleep_seconds(kind: EngineKind, test: u32) -> u32 {
    let engine = if kind == EngineKind::Podman { 1 } else { 2 };
    100_000 + (std::process::id() % 100_000) * 10 + test * 3 + engine
}

fn sigterm_stops_a_build_and_leaves_nothing(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let build = Build::new(&engine, "sigterm");
    let seconds = sleep_seconds(kind, 1);
    let mut task = build
        .task("wu_sigterm", build.job("a", Some(seconds)))
        .start()
        .unwrap();
    build.wait_for_sleep(&mut task, seconds);
    println!("{}: during the build: {:?}", kind.name(), build.leftovers());
    task.signal(libc::SIGTERM).unwrap();
    let outcome = task.wait_exit(Duration::from_secs(30)).unwrap();
    outcome
        .noted("a task stopped while building must not finish")
        .assert_not_finished();
    let still_sleeping = sleep_outlives(seconds, Duration::from_secs(10));
    let left = build.leftovers_after(ENGINE_CLEANUP);
    println!(
        "{}: after SIGTERM: {left:?}, build step still running: {still_sleeping}",
        kind.name()
    );
    assert!(
        left.is_empty(),
        "the interrupted build left {left:?}\n{}",
        outcome.describe()
    );
    assert!(
        !still_sleeping,
        "the build's step still runs after the wrapper exited\n{}",
        outcome.describe()
    );
}

fn the_next_build_removes_what_a_killed_build_left(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let build = Build::new(&engine, "sigkill");
    let seconds = sleep_seconds(kind, 2);
    let mut killed = build
        .task("wu_killed", build.job("a", Some(seconds)))
        .start()
        .unwrap();
    build.wait_for_sleep(&mut killed, seconds);
    killed.kill();
    let still_sleeping = sleep_outlives(seconds, Duration::from_secs(10));
    println!(
        "{}: after SIGKILL: {:?}, build step still running: {still_sleeping}",
        kind.name(),
        build.leftovers()
    );

    let mut next = build.task("wu_next", build.job("b", None)).start().unwrap();
    let outcome = next.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(0);
    engine.assert_no_container(&next);
    let left = build.leftovers_after(ENGINE_CLEANUP);
    println!("{}: after the next task: {left:?}", kind.name());
    assert!(
        left.is_empty(),
        "the killed build's leftovers are still there: {left:?}\n{}",
        outcome.describe()
    );
    assert!(
        !sleep_process_running(seconds),
        "the killed task's build still runs after the next task\n{}",
        outcome.describe()
    );
}
