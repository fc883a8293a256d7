//! The binary's command line and its handling of bad input that needs no
//! container engine.

use std::process::Command;

use dw_test_support::*;

const WRAPPER: &str = wrapper_path!();

#[test]
fn help_lists_every_option() {
    let _claim = Claim::no_engine();
    let out = Command::new(WRAPPER).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for option in [
        "--verbose",
        "--config",
        "--dockerfile",
        "--sporadic",
        "--help",
        "--version",
        "--check",
    ] {
        assert!(
            text.contains(option),
            "--help does not mention {option}:\n{text}"
        );
    }
}

#[test]
fn version_names_the_build_and_the_boinc_library() {
    let _claim = Claim::no_engine();
    let out = Command::new(WRAPPER).arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(&format!("docker_wrapper {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(
        text.contains("BOINC API 7.") || text.contains("BOINC API 8."),
        "{text}"
    );
}

/// Without init_data.xml the BOINC library reports standalone mode; the
/// wrapper says so, and stops at the missing Dockerfile before any engine call.
#[test]
fn standalone_mode_is_detected_through_the_boinc_library() {
    let _claim = Claim::no_engine();
    let dir = TempDir::new("standalone").unwrap();
    let out = Command::new(WRAPPER)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = std::fs::read_to_string(dir.path().join("stderr.txt")).unwrap_or_default();
    assert!(stderr.contains("standalone mode"), "{stderr}");
    assert!(stderr.contains("Dockerfile not found"), "{stderr}");
    assert_eq!(out.status.code(), Some(206), "{stderr}");
    assert!(dir.path().join("boinc_finish_called").exists());
}

fn run_task(name: &str, builder: impl FnOnce(TaskBuilder) -> TaskBuilder) -> Outcome {
    let task = builder(Task::builder(name, WRAPPER).job(TestJob::shell("exit 0")));
    let mut task = task.start().unwrap();
    task.wait_exit(Duration::from_secs(60)).unwrap()
}

#[test]
fn malformed_job_toml_is_an_error_naming_the_key() {
    let _claim = Claim::no_engine();
    let outcome = run_task("bad_toml", |b| {
        b.job(TestJob::shell("exit 0").job_toml("verbose = \"yes\"\n"))
    });
    outcome.assert_finished(206);
    outcome.assert_said(&["'verbose'"]);
}

#[test]
fn toml_syntax_error_gives_the_line() {
    let _claim = Claim::no_engine();
    let outcome = run_task("toml_syntax", |b| {
        b.job(TestJob::shell("exit 0").job_toml("workdir = \"/app\"\nmount = [\n"))
    });
    outcome.assert_finished(206);
    outcome.assert_said(&["line"]);
}

#[test]
fn malformed_init_data_is_an_error_naming_the_file() {
    let _claim = Claim::no_engine();
    let outcome = run_task("bad_init_data", |b| {
        b.raw_init_data("<app_init_data><shm_key>-1</shm_key><ncpus>abc</ncpus></app_init_data>")
    });
    outcome.assert_finished(206);
    outcome.assert_said(&["ncpus"]);
}

/// An empty init_data.xml (a client that crashed while writing it): the
/// BOINC library cannot parse it and says standalone, but this is a slot
/// with a damaged file, not a plain directory: an error naming the file,
/// before any engine call.
#[test]
fn empty_init_data_is_an_error_naming_the_file() {
    let _claim = Claim::no_engine();
    let outcome = run_task("empty_init_data", |b| b.raw_init_data(""));
    outcome.assert_finished(206);
    outcome.assert_said(&["init_data.xml"]);
    outcome
        .noted("not run standalone")
        .assert_not_said(&["are named 'boinc'"]);
}

#[test]
fn missing_config_file_given_on_the_command_line_is_an_error() {
    let _claim = Claim::no_engine();
    let outcome = run_task("missing_config", |b| b.args(["--config", "nope.toml"]));
    outcome.assert_finished(206);
    outcome.assert_said(&["nope.toml"]);
}

/// `--sporadic` needs BOINC 8's API (boinc_sporadic_dir); built against an
/// older library the wrapper says so and fails the task, before any engine call.
#[test]
fn sporadic_without_a_boinc_8_library_says_so() {
    let _claim = Claim::no_engine();
    let version = Command::new(WRAPPER).arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&version.stdout).to_string();
    let outcome = run_task("sporadic", |b| b.arg("--sporadic"));
    if version.contains("BOINC API 7.") {
        outcome.assert_finished(206);
        outcome.assert_said(&["--sporadic needs a BOINC 8 API library"]);
    } else {
        outcome
            .noted(format!("with {version}"))
            .assert_not_said(&["sporadic"]);
    }
}

/// `--check` on a host where no engine is found, or the one forced cannot
/// be reached: it says so and fails.
#[test]
fn check_without_a_reachable_engine_says_why_and_fails() {
    let _claim = Claim::no_engine();
    let out = Command::new(WRAPPER)
        .arg("--check")
        .env("PATH", "/nonexistent")
        .env_remove("DOCKER_WRAPPER_ENGINE")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("Podman: not found"), "{report}");
    assert!(report.contains("Docker: not found"), "{report}");
    assert!(report.contains("no task can run here"), "{report}");

    let docker = dw_test_support::engine::find_in_path("docker")
        .expect("docker CLI (apt-get install -y docker.io)");
    let out = Command::new(WRAPPER)
        .arg("--check")
        .env("DOCKER_WRAPPER_ENGINE", &docker)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("cannot be reached by"), "{report}");
    assert!(
        report.contains("Cannot connect to the Docker daemon"),
        "{report}"
    );
    assert!(
        !report.contains("Podman"),
        "only the forced engine counts: {report}"
    );
}
