//! Files as the BOINC client delivers them: soft-link files (or symlinks)
//! in the slot naming the real file in the project dir. The job sees real
//! files whatever the app version's file flags are.

use dw_test_support::*;

const WRAPPER: &str = wrapper_path!();

on_both_engines!(
    soft_linked_input_and_output_reach_the_project_dir,
    symlinked_files_work_too,
    app_files_delivered_as_soft_links_work,
    a_link_outside_the_data_dir_is_refused,
    a_link_through_a_symlink_in_the_project_dir_is_refused,
);

fn soft_linked_input_and_output_reach_the_project_dir(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let script = "tr a-z A-Z < in.txt > out.txt; echo appended >> out.txt";
    let mut task = TaskBuilder::on_engine("softlinks", WRAPPER, &engine)
        .job(TestJob::shell(script))
        .input_file("in.txt", "hello input\n")
        .output_file("out.txt", "result_out_0")
        .start()
        .unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(0);
    let uploaded = task
        .read_project_file("result_out_0")
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    assert_eq!(
        uploaded.as_deref(),
        Some("HELLO INPUT\nappended\n"),
        "{}",
        outcome.describe()
    );
    assert_eq!(
        task.read_project_file("in_in.txt").as_deref(),
        Some(&b"hello input\n"[..]),
        "input changed"
    );
    engine.assert_no_container(&task);
}

fn symlinked_files_work_too(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let mut task = TaskBuilder::on_engine("symlinks", WRAPPER, &engine)
        .job(TestJob::shell("cat data.bin > copy.txt"))
        .project_file(
            "data.bin",
            "proj_data_1",
            "symlinked bytes",
            LinkKind::Symlink,
        )
        .start()
        .unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(0);
    assert_eq!(
        task.read_slot_file("copy.txt").as_deref(),
        Some("symlinked bytes")
    );
    engine.assert_no_container(&task);
}

/// BUDA sends the Dockerfile, job.toml and the science app as workunit
/// files: all of them arrive as soft-link files.
fn app_files_delivered_as_soft_links_work(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let job = TestJob::shell("echo from linked main.sh > result.txt").job_toml("verbose = 2\n");
    let mut task = TaskBuilder::on_engine("buda", WRAPPER, &engine)
        .job(job)
        .app_files_as(LinkKind::SoftLinkFile)
        .start()
        .unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(0);
    assert_eq!(
        task.read_slot_file("result.txt").as_deref(),
        Some("from linked main.sh\n")
    );
    outcome
        .noted("job.toml (verbose = 2) was not read through its link")
        .assert_said(&["debug"]);
    engine.assert_no_container(&task);
}

fn a_link_outside_the_data_dir_is_refused(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let mut task = TaskBuilder::on_engine("evil_link", WRAPPER, &engine)
        .job(TestJob::shell("cat passwd"))
        .prepare()
        .unwrap();
    std::fs::write(
        task.slot_dir().join("passwd"),
        "<soft_link>/etc/passwd</soft_link>\n",
    )
    .unwrap();
    task.start().unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(206);
    outcome.assert_said(&["outside the BOINC data directory"]);
    outcome
        .noted("the file leaked into the log")
        .assert_not_said(&["root:x:0"]);
    engine.assert_no_container(&task);
}

/// The link text stays inside the data dir, but a directory on its way (in
/// the project dir, which a job with `project_dir_mount` can write) is a
/// symlink to a directory outside: the real file is what counts.
fn a_link_through_a_symlink_in_the_project_dir_is_refused(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let outside = TempDir::new("outside_secret").unwrap();
    std::fs::write(outside.path().join("secret"), "host secret 7d1f\n").unwrap();
    let mut task = TaskBuilder::on_engine("through_link", WRAPPER, &engine)
        .job(TestJob::shell("cat secret.txt > seen.txt"))
        .prepare()
        .unwrap();
    let project = task.project_dir().to_path_buf();
    std::os::unix::fs::symlink(outside.path(), project.join("sub")).unwrap();
    let link = format!(
        "<soft_link>../../projects/{}/sub/secret</soft_link>\n",
        task.project_dir_name()
    );
    std::fs::write(task.slot_dir().join("secret.txt"), link).unwrap();
    task.start().unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(206);
    outcome.assert_said(&["outside the BOINC data directory"]);
    assert!(
        !task
            .read_slot_file("seen.txt")
            .unwrap_or_default()
            .contains("host secret"),
        "the job read the file"
    );
    engine.assert_no_container(&task);
}
