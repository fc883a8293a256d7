//! A task from start to end under the client emulator, on real Podman and
//! real Docker: every test runs once per engine.

use dw_test_support::scenarios::{self, Wrapper};
use dw_test_support::*;

const WRAPPER: &str = wrapper_path!();

on_both_engines!(
    success_writes_output_into_the_slot,
    exit_code_is_forwarded_with_the_log,
    suspend_pauses_and_resume_unpauses,
    an_undisturbed_task_sleeps,
    progress_and_cpu_time_reach_the_client,
    args_reach_the_job_intact,
    slot_path_with_a_space_works,
    project_dir_and_mounts_are_mounted,
    boinc_sample_app_resolves_its_soft_links_under_the_project_mount,
    buda_style_app_gets_its_args_through_a_shell_form_cmd,
    check_reports_the_engine_root_reaches,
    the_cxx_wrapper_runs_the_same_sample_apps,
);

fn success_writes_output_into_the_slot(kind: EngineKind) {
    scenarios::output_reaches_the_slot(&Wrapper::built(WRAPPER), kind);
}

fn exit_code_is_forwarded_with_the_log(kind: EngineKind) {
    scenarios::exit_code_is_forwarded(&Wrapper::built(WRAPPER), kind);
}

fn suspend_pauses_and_resume_unpauses(kind: EngineKind) {
    scenarios::suspend_pauses_and_resume_unpauses(&Wrapper::built(WRAPPER), kind);
}

fn an_undisturbed_task_sleeps(kind: EngineKind) {
    scenarios::an_undisturbed_task_sleeps(&Wrapper::built(WRAPPER), kind);
}

fn progress_and_cpu_time_reach_the_client(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    // Burns CPU for a while, then reports half done and waits to be released.
    let script = "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; echo 0.5 > fraction_done; \
                  while [ ! -f go ]; do sleep 0.1; done";
    let mut task = TaskBuilder::on_engine("progress", WRAPPER, &engine)
        .job(TestJob::shell(script))
        .start()
        .unwrap();
    let status = task.wait_for_status(TASK_TIMEOUT, |s| {
        s.fraction_done == Some(0.5) && s.current_cpu_time > 0.2
    });
    assert!(status.is_ok(), "{status:?}\n{}", task.logs_tail(30));
    let status = status.unwrap();
    assert!(status.checkpoint_cpu_time > 0.0, "{status:?}");
    assert!(status.working_set_size.is_none() || status.working_set_size.unwrap() >= 0.0);
    std::fs::write(task.slot_dir().join("go"), "").unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(0);
    engine.assert_no_container(&task);
}

fn args_reach_the_job_intact(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let args = [
        "plain",
        "with space",
        "it's \"quoted\"",
        "$(touch /tmp/pwned)",
        "`id`;ls",
        "ünï",
    ];
    let mut task = TaskBuilder::on_engine("args", WRAPPER, &engine)
        .job(TestJob::shell("printf '%s' \"$ARGS\" > args.txt"))
        .args(args)
        .start()
        .unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(0);
    assert_eq!(task.read_slot_file("args.txt").unwrap(), args.join(" "));
    engine.assert_no_container(&task);
}

fn slot_path_with_a_space_works(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let mut task = TaskBuilder::on_engine("space", WRAPPER, &engine)
        .data_dir_name(ODD_DATA_DIR_NAME)
        .job(TestJob::shell("echo ok > out.txt"))
        .start()
        .unwrap();
    assert!(task.slot_dir().to_string_lossy().contains(' '));
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(0);
    assert_eq!(task.read_slot_file("out.txt").as_deref(), Some("ok\n"));
    engine.assert_no_container(&task);
}

fn project_dir_and_mounts_are_mounted(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let extra = TempDir::new("extra_mount").unwrap();
    std::fs::write(extra.path().join("data.txt"), "extra data\n").unwrap();
    let job_toml = format!(
        "project_dir_mount = \"/project\"\nmount = [\"{}:/extra:ro\"]\n",
        extra.path().display()
    );
    let script = "cat /project/shared.txt /extra/data.txt > seen.txt";
    let mut task = TaskBuilder::on_engine("mounts", WRAPPER, &engine)
        .job(TestJob::shell(script).job_toml(&job_toml))
        .project_file("shared.txt", "shared.txt", "project data\n", LinkKind::Copy)
        .start()
        .unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(0);
    assert_eq!(
        task.read_slot_file("seen.txt").as_deref(),
        Some("project data\nextra data\n")
    );
    engine.assert_no_container(&task);
}

/// Modelled on BOINC's own docker_wrapper sample app (the BOINC repository's
/// `samples/docker_wrapper/test`): a shell-form `CMD ./main.sh`, the project
/// directory mounted at `/project` by job.toml, and a main script that turns
/// the input's soft-link file (`../../projects/<project>/<file>`) into a
/// path under `/project` and hands it to the worker, which writes `out`.
/// Such a script needs the link file itself, which this wrapper replaces by
/// the real file unless job.toml says `mount_linked_files = false`.
fn boinc_sample_app_resolves_its_soft_links_under_the_project_mount(kind: EngineKind) {
    run_boinc_sample_app(WRAPPER, kind);
}

fn run_boinc_sample_app(wrapper: &str, kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let dockerfile = "FROM scratch\n\
        COPY busybox /bin/busybox\n\
        RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
        WORKDIR /app\n\
        CMD ./main.sh\n";
    let script = "physical() { sed -e 's|^<soft_link>[.][.]/[.][.]/projects/[^/]*/|/project/|' \\
                      -e 's|</soft_link>$||' \"$1\" | tr -d '\\r\\n'; }
work() { tr 'a-z' 'A-Z' < \"$1\" > \"$2\"; }
work \"$(physical in)\" out";
    let job = TestJob::shell(script)
        .dockerfile(dockerfile)
        .job_toml("project_dir_mount = \"/project\"\nmount_linked_files = false\n");
    let mut task = TaskBuilder::on_engine("boinc_sample", wrapper, &engine)
        .job(job)
        .project_file(
            "in",
            "sample_input_1",
            "lower case input\n",
            LinkKind::SoftLinkFile,
        )
        .start()
        .unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(0);
    assert_eq!(
        task.read_slot_file("out").as_deref(),
        Some("LOWER CASE INPUT\n"),
        "{}",
        task.logs_tail(30)
    );
    engine.assert_no_container(&task);
}

/// Modelled on the BUDA worker Dockerfile in BOINC's repository
/// (`samples/docker_wrapper/test_buda`): `ENV ARGS ""` and a shell-form
/// `CMD ./main.sh ${ARGS}`, so the workunit's command line reaches the
/// script as words. Its exit code, here one of BOINC's own (208), is the
/// task's, as with the C++ wrapper.
fn buda_style_app_gets_its_args_through_a_shell_form_cmd(kind: EngineKind) {
    run_buda_style_app(WRAPPER, kind);
}

fn run_buda_style_app(wrapper: &str, kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let dockerfile = "FROM scratch\n\
        COPY busybox /bin/busybox\n\
        RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
        WORKDIR /app\n\
        ENV ARGS \"\"\n\
        CMD ./main.sh ${ARGS}\n";
    let script = "echo \"$# words: $*\" > out; exit \"$2\"";
    let mut task = TaskBuilder::on_engine("buda_style", wrapper, &engine)
        .job(TestJob::shell(script).dockerfile(dockerfile))
        .args(["--exit", "208", "--steps=3"])
        .start()
        .unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(208);
    assert_eq!(
        task.read_slot_file("out").as_deref(),
        Some("3 words: --exit 208 --steps=3\n")
    );
    engine.assert_no_container(&task);
}

/// `--check` as root: the engine, its version, rootful, and success.
fn check_reports_the_engine_root_reaches(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let out = engine.wrapper_check(WRAPPER);
    let report = format!("{}{}", out.stdout, out.stderr);
    assert!(out.success(), "{report}");
    let line = format!(
        "{kind:?} ({}): version {}",
        engine.cli().display(),
        engine.version()
    );
    assert!(report.contains(&line), "no '{line}' in\n{report}");
    assert!(report.contains("rootful, cgroup v"), "{report}");
    assert!(report.contains("hello-world: "), "{report}");
    assert!(
        report.contains(&format!("a task could run here, on {kind:?}")),
        "{report}"
    );
}

/// BOINC's C++ docker_wrapper (built from the same source by `cargo xtask
/// client`) runs both sample apps with the same files: what ours does is
/// what projects get today. (It ignores `mount_linked_files`, an unknown
/// key to it, and always leaves the link files as they are.)
fn the_cxx_wrapper_runs_the_same_sample_apps(kind: EngineKind) {
    let cxx = dw_test_support::release::cxx_wrapper().unwrap_or_else(|e| panic!("{e}"));
    let cxx = cxx.to_str().unwrap();
    run_boinc_sample_app(cxx, kind);
    run_buda_style_app(cxx, kind);
}
