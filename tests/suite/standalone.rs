//! Standalone mode: a project admin runs the wrapper by hand in a plain
//! directory holding a job (no client, no init_data.xml).

use std::process::Command;

use dw_test_support::*;

const WRAPPER: &str = wrapper_path!();

on_both_engines!(the_example_job_runs_from_a_plain_directory);

fn the_example_job_runs_from_a_plain_directory(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    // Its container is `boinc`, as is every standalone run's (windows_exe.rs).
    let _name = claim::standalone_container(kind);
    let dir = TempDir::new(&format!("standalone_{}", kind.name())).unwrap();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello");
    for entry in std::fs::read_dir(&example).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    std::fs::copy("/bin/busybox", dir.path().join("busybox"))
        .expect("apt-get install busybox-static");
    let mut command = Command::new(WRAPPER);
    command
        .current_dir(dir.path())
        .arg("2")
        .env("DOCKER_WRAPPER_ENGINE", engine.cli());
    for (key, value) in engine.env() {
        command.env(key, value);
    }
    let output = run_with_timeout(command, Duration::from_secs(180)).unwrap();
    let stderr = std::fs::read_to_string(dir.path().join("stderr.txt")).unwrap_or_default();
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("standalone mode"), "{stderr}");
    assert!(
        stderr.contains("hello from the container: 2 steps"),
        "{stderr}"
    );
    let result = std::fs::read_to_string(dir.path().join("output.txt")).unwrap_or_default();
    assert_eq!(result, "done after 2 steps\n");
    assert_eq!(
        engine.container_state("boinc"),
        None,
        "the standalone container was left behind"
    );
}
