//! Background priority: a busy container started by the wrapper and an
//! ordinary busy process on the same core; the ordinary process must get
//! most of the core.

use std::process::{Child, Command};
use std::time::Instant;

use dw_test_support::*;

const WRAPPER: &str = wrapper_path!();

const WINDOW: Duration = Duration::from_secs(5);

// Alone on the machine (no other test, one engine at a time): no other
// test may compete for the core the container and the process share.
on_both_engines!(machine_alone: an_ordinary_process_gets_most_of_a_shared_core);

fn an_ordinary_process_gets_most_of_a_shared_core(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let idle = share_of_ordinary_process(&engine, true);
    let normal = share_of_ordinary_process(&engine, false);
    println!(
        "{}: ordinary process share of the core: {:.1}% with idle_priority, {:.1}% without",
        kind.name(),
        idle * 100.0,
        normal * 100.0
    );
    assert!(
        idle > 0.8,
        "the ordinary process got only {:.1}% of the core",
        idle * 100.0
    );
}

/// Runs the busy container and a busy process pinned to CPU 0; returns the
/// process's share of what both used.
fn share_of_ordinary_process(engine: &TestEngine, idle_priority: bool) -> f64 {
    let job_toml = format!("create_args = \"--cpuset-cpus 0\"\nidle_priority = {idle_priority}\n");
    let job = TestJob::shell("while [ ! -f go ]; do :; done").job_toml(&job_toml);
    let name = format!("priority_{}_{idle_priority}", engine.kind().name());
    let mut task = Task::builder(&name, WRAPPER)
        .engine(engine)
        .job(job)
        .start()
        .unwrap();
    let first = task
        .wait_for_status(Duration::from_secs(120), |s| s.current_cpu_time > 0.2)
        .unwrap();
    let mut spinner = Spinner::start();
    let started = Instant::now();
    let spinner_start = spinner.cpu_seconds();
    let container_start = task
        .last_status()
        .unwrap()
        .current_cpu_time
        .max(first.current_cpu_time);
    std::thread::sleep(WINDOW);
    let spinner_used = spinner.cpu_seconds() - spinner_start;
    // Reports come once a second: wait for one from after the window.
    let after = Instant::now();
    let last = wait_until(Duration::from_secs(5), || {
        task.status_history()
            .into_iter()
            .rev()
            .find(|(at, _)| *at > after)
            .map(|(_, s)| s)
    })
    .unwrap_or_else(|| task.last_status().unwrap());
    let container_used = (last.current_cpu_time - container_start) * WINDOW.as_secs_f64()
        / (started.elapsed().as_secs_f64());
    spinner.stop();
    std::fs::write(task.slot_dir().join("go"), "").unwrap();
    let outcome = task.wait_exit(Duration::from_secs(60)).unwrap();
    outcome.assert_finished(0);
    spinner_used / (spinner_used + container_used).max(1e-9)
}

/// A busy shell loop pinned to CPU 0.
struct Spinner(Child);

impl Spinner {
    fn start() -> Spinner {
        let child = Command::new("taskset")
            .args(["-c", "0", "sh", "-c", "while :; do :; done"])
            .spawn()
            .expect("taskset (util-linux) is needed");
        Spinner(child)
    }

    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.0.id())).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
            f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
        });
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        ticks / per_second
    }

    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.stop();
    }
}
