//! The whole pipeline a BOINC project runs, on both engines at once:
//! `cargo xtask project run --engine podman` and `--engine docker`, each a
//! real BOINC 8.2.15 server (built once, shared) sending the release files
//! in `dist/` to a real 8.2.15 client, with the classic sample app and a
//! BUDA batch. Each run checks its own results (every one valid, the exit-3
//! one a compute error, a suspended and a restarted task valid, a host
//! without an engine refused, CPU time close to run time) and exits nonzero
//! otherwise.
//!
//! Needs root, `bash .ci/setup`, `cargo xtask dist` and `cargo xtask client`
//! (the README's test command runs them first).
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Each run's own bound is 15 minutes; the test's, a little more.
const RUN_TIMEOUT_SECS: &str = "900";
const TEST_TIMEOUT: Duration = Duration::from_secs(1200);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

#[test]
fn the_project_runs_the_release_files_on_both_engines() {
    assert!(
        Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout == b"0\n"),
        "the pipeline test needs root (it starts MariaDB and Apache and writes /srv)"
    );
    let dist = workspace().join("dist");
    assert!(
        dist.join("app_versions").is_dir(),
        "{} has no app_versions: run `cargo xtask dist` first",
        dist.display()
    );
    // The server is built before the runs start, so they share one build.
    let logs = workspace().join("target/project-test");
    std::fs::create_dir_all(&logs).unwrap();
    let started = Instant::now();
    let mut runs = Vec::new();
    for engine in ["podman", "docker"] {
        let log_path = logs.join(format!("{engine}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args([
                "project",
                "run",
                "--engine",
                engine,
                "--timeout",
                RUN_TIMEOUT_SECS,
            ])
            .current_dir(workspace())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start xtask");
        runs.push((engine, child, log_path));
        // The first run builds the server, if it is not yet built, while the
        // second waits for it here rather than building it too.
        if engine == "podman" {
            let (_, first, first_log) = &mut runs[0];
            wait_for_server_build(first, first_log);
        }
    }
    let mut failures = Vec::new();
    for (engine, mut child, log_path) in runs {
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if started.elapsed() > TEST_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_secs(1));
        };
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        println!("==== {engine} ({}):\n{log}", log_path.display());
        match status {
            Some(s) if s.success() => {}
            Some(s) => failures.push(format!(
                "{engine}: xtask project run failed ({s}); its log: {}",
                log_path.display()
            )),
            None => failures.push(format!(
                "{engine}: xtask project run did not end within {TEST_TIMEOUT:?}; its log: {}",
                log_path.display()
            )),
        }
    }
    println!("both engines in {:.0} s", started.elapsed().as_secs_f64());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Waits until the run's log shows the server build done (or the run ended).
fn wait_for_server_build(child: &mut std::process::Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(900);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some()
            || std::fs::read_to_string(log).is_ok_and(|text| text.contains("== server build"))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
