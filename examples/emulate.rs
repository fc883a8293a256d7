//! Runs a sample job end to end under the BOINC client emulator, showing what
//! happens: the container's state, the progress and CPU time the wrapper
//! reports, and the result.
//!
//!     cargo build --release && cargo run --release --example emulate -- examples/hello [--engine docker] [job args...]
//!
//! The job directory holds a Dockerfile, job.toml and the job's files, as an
//! app version would; a static busybox (Debian's busybox-static) is added so
//! images can be built `FROM scratch` without a registry.
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use dw_test_support::*;

const BUSYBOX: &str = "/bin/busybox";
const TIMEOUT: Duration = Duration::from_secs(600);

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("emulate: {err}");
            ExitCode::from(2)
        }
    }
}

struct Options {
    job_dir: PathBuf,
    engine: EngineKind,
    job_args: Vec<String>,
}

fn parse_options() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut job_dir = None;
    let mut engine = EngineKind::Podman;
    let mut job_args = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--engine" => {
                engine = match args.next().as_deref() {
                    Some("podman") => EngineKind::Podman,
                    Some("docker") => EngineKind::Docker,
                    other => return Err(format!("--engine takes podman or docker, not {other:?}")),
                }
            }
            _ if job_dir.is_none() => job_dir = Some(PathBuf::from(arg)),
            _ => job_args.push(arg),
        }
    }
    let job_dir = job_dir.ok_or("usage: emulate JOB_DIR [--engine podman|docker] [job args...]")?;
    Ok(Options {
        job_dir,
        engine,
        job_args,
    })
}

/// The wrapper built by `cargo build --release`, next to this example's directory.
fn wrapper_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot locate the target directory")?;
    let wrapper = profile_dir.join("docker_wrapper");
    if wrapper.is_file() {
        Ok(wrapper)
    } else {
        Err(format!(
            "{} not found: run `cargo build --release` first",
            wrapper.display()
        ))
    }
}

fn run() -> Result<ExitCode, String> {
    let options = parse_options()?;
    if !options.job_dir.join("Dockerfile").is_file() {
        return Err(format!("{} has no Dockerfile", options.job_dir.display()));
    }
    let busybox = std::fs::read(BUSYBOX)
        .map_err(|e| format!("{BUSYBOX}: {e} (apt-get install busybox-static)"))?;
    let engine = TestEngine::get(options.engine)?;
    println!("engine: {} {}", engine.kind().name(), engine.version());
    let mut task = Task::builder("emulate", wrapper_binary()?)
        .engine(&engine)
        .app_dir(&options.job_dir)
        .project_file("busybox", "busybox", busybox, LinkKind::Copy)
        .args(&options.job_args)
        .prepare()?;
    // The client gives files the app version marks executable their x bit.
    let slot_busybox = task.slot_dir().join("busybox");
    std::fs::set_permissions(&slot_busybox, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    task.start()?;
    println!("slot: {}", task.slot_dir().display());
    println!("container: {}", task.container_name());
    watch(&mut task, &engine);
    let outcome = task.wait_exit(TIMEOUT)?;
    println!("---- stderr.txt ----\n{}", outcome.stderr_txt.trim_end());
    println!("--------------------");
    for name in ["output.txt"] {
        if let Some(text) = task.read_slot_file(name) {
            println!("{name}: {}", text.trim_end());
        }
    }
    match outcome.finish_code() {
        Some(code) => {
            println!(
                "result: boinc_finish({code}) after {:.1}s",
                outcome.elapsed.as_secs_f64()
            );
            Ok(if code == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        None => {
            println!("result: no boinc_finish; {}", outcome.describe());
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Prints each change of container state and of the reported progress until
/// the wrapper exits.
fn watch(task: &mut Task, engine: &TestEngine) {
    let started = Instant::now();
    let name = task.container_name();
    let mut last_state = None;
    let mut last_progress = None;
    while task.is_running() && started.elapsed() < TIMEOUT {
        let state = engine.container_state(&name);
        if state != last_state {
            println!(
                "{:6.1}s container: {}",
                started.elapsed().as_secs_f64(),
                state.as_deref().unwrap_or("(none)")
            );
            last_state = state;
        }
        if let Some(status) = task.last_status() {
            let progress = (status.fraction_done.unwrap_or(0.0) * 1000.0).round() as i64;
            if last_progress != Some(progress) {
                println!(
                    "{:6.1}s progress: {:5.1}%  cpu time {:.2}s",
                    started.elapsed().as_secs_f64(),
                    progress as f64 / 10.0,
                    status.current_cpu_time
                );
                last_progress = Some(progress);
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
