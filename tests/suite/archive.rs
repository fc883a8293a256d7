//! An app version that ships its image as an archive (`docker save` /
//! `podman save`, gzip-compressed) and no Dockerfile: the wrapper loads it,
//! caches it by the archive's hash, and needs no registry.

use dw_test_support::*;

const WRAPPER: &str = wrapper_path!();

on_both_engines!(an_archive_only_app_version_runs_without_a_dockerfile);

fn an_archive_only_app_version_runs_without_a_dockerfile(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let work = TempDir::new(&format!("archive_{}", kind.name())).unwrap();
    let source_tag = format!("dwtest-archive-{}-{}:1", kind.name(), std::process::id());
    // Build an image the way a project would, save it, and forget it.
    TestJob::shell("unused").write_to(work.path()).unwrap();
    let built = engine.run(["build", "-t", &source_tag, &work.path().to_string_lossy()]);
    assert!(built.as_ref().is_ok_and(|o| o.success()), "{built:?}");
    let tar = work.path().join("image.tar");
    let saved = engine.run(["save", "-o", &tar.to_string_lossy(), &source_tag]);
    assert!(saved.as_ref().is_ok_and(|o| o.success()), "{saved:?}");
    let gz = std::process::Command::new("gzip")
        .arg("-f")
        .arg(&tar)
        .status()
        .unwrap();
    assert!(gz.success());
    let _ = engine.remove_image(&source_tag);
    let archive = std::fs::read(work.path().join("image.tar.gz")).unwrap();

    let run = |name: &str| {
        let mut task = Task::builder(&format!("{name}_{}", kind.name()), WRAPPER)
            .engine(&engine)
            .job(TestJob::shell("echo from the archived image > out.txt"))
            .prepare()
            .unwrap();
        std::fs::remove_file(task.slot_dir().join("Dockerfile")).unwrap();
        std::fs::write(task.slot_dir().join("image.tar.gz"), &archive).unwrap();
        task.start().unwrap();
        let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
        (task, outcome)
    };
    let (task, outcome) = run("archive");
    outcome.assert_finished(0);
    assert_eq!(
        task.read_slot_file("out.txt").as_deref(),
        Some("from the archived image\n")
    );
    outcome.assert_said(&["loading image archive image.tar.gz"]);
    let image = outcome
        .stderr_txt
        .lines()
        .find_map(|l| {
            l.split("image ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .filter(|t| t.starts_with("boinc_wrapper/"))
        })
        .unwrap_or_default()
        .to_string();
    assert_eq!(engine.container_state(&task.container_name()), None);

    // Loaded once: the next task runs the cached image.
    let (again, cached) = run("archive_again");
    cached.assert_finished(0);
    cached.assert_said(&["(from image.tar.gz) is cached"]);
    cached.assert_not_said(&["loading image archive"]);
    assert_eq!(engine.container_state(&again.container_name()), None);
    if !image.is_empty() {
        let _ = engine.remove_image(&image);
    }
}
