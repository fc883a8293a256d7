//! CPU time comes from the container's cgroup, so a multi-threaded job is
//! charged for every thread (the C++ wrapper samples `stats` instead).
//! A separate test binary, and one engine at a time, so that the two busy
//! threads have this 2-core machine to themselves.
#[macro_use]
mod emulator;

use std::sync::Mutex;
use std::time::Instant;

use emulator::*;

const WRAPPER: &str = env!("CARGO_BIN_EXE_docker_wrapper");
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

on_both_engines!(cpu_time_counts_every_thread);

fn cpu_time_counts_every_thread(kind: EngineKind) {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let engine = TestEngine::require(kind);
    let script = "spin() { while [ ! -f go ]; do :; done; }; spin & spin & wait";
    let mut task = Task::builder(&format!("two_threads_{}", kind.name()), WRAPPER)
        .engine(&engine)
        .ncpus(2.0)
        // Accounting is under test here, not priority: compete normally.
        .job(TestJob::shell(script).job_toml("idle_priority = false\ncpu_shares = 1024\n"))
        .start()
        .unwrap();
    let first = task.wait_for_status(Duration::from_secs(120), |s| s.current_cpu_time > 0.5).unwrap();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(6));
    let last = task.last_status().unwrap();
    let wall = started.elapsed().as_secs_f64();
    let ratio = (last.current_cpu_time - first.current_cpu_time) / wall;
    std::fs::write(task.slot_dir().join("go"), "").unwrap();
    let outcome = task.wait_exit(Duration::from_secs(60)).unwrap();
    assert_eq!(outcome.finish_code(), Some(0), "{}", outcome.describe());
    println!("{}: CPU time / wall time = {ratio:.2}", kind.name());
    // Two busy threads on two cores; status reports are up to 1 s apart.
    assert!(ratio > 1.5 && ratio < 2.3, "CPU time / wall time = {ratio:.2}");
}
