//! Overhead, latency, memory and scale of the real wrapper binary, driven by
//! the BOINC client emulator on Podman and Docker (DESIGN.md section 7).
//!
//! ```sh
//! cargo build --release && cargo bench --bench wrapper
//! cargo bench --bench wrapper -- --quick                       # short smoke run
//! cargo bench --bench wrapper -- --engine podman --runs 10
//! cargo bench --bench wrapper -- --wrapper old/docker_wrapper --wrapper target/release/docker_wrapper
//! cargo bench --bench wrapper -- --dist        # this build beside the x86_64 release file
//! ```
//!
//! Options (after `--`):
//! * `--engine podman|docker|both` (default both);
//! * `--wrapper PATH`, repeatable: the binaries to compare (same job, same
//!   emulator, same run); default the `docker_wrapper` cargo just built for
//!   this bench (target/release/docker_wrapper). With two or more, #1 is
//!   "the previous build": each later one must use at most half its CPU-s/h;
//! * `--dist`: adds the self-contained x86_64 release file of `cargo xtask
//!   dist` (in dist/, or `DW_DIST_DIR`) after the other binaries (the
//!   default build when no `--wrapper` is given); its RSS target is the
//!   shipped build's, 3 MiB;
//! * `--runs N`: samples of each latency metric (default 5, 3 with --quick);
//! * `--overhead-runs N`: concurrent overhead tasks per binary and engine (default 1);
//! * `--quick`: a 10 s steady-state window instead of 60 s (CI smoke runs);
//! * `--check`: exit with failure when a target is missed (by default only
//!   when a measurement fails). Targets that do not apply (the CPU rule with
//!   one --wrapper binary) do not fail it.
//!
//! Metrics, per engine and binary. The targets decide on counts and ratios
//! measured in the same run, which do not depend on the machine:
//! * overhead: CPU seconds (the wrapper's CPU-time clock, the children it
//!   reaped (cutime+cstime), its live descendants likewise) per hour of a task whose
//!   job sleeps, over a steady window starting 5 s after the job started.
//!   The tasks of all binaries and engines run at the same time.
//! * wake-ups per second in that window: voluntary context switches of all
//!   the wrapper's threads (/proc/PID/task/*/status, read at both ends of
//!   the window per thread id; a thread born in the window counts whole, one
//!   that ended is lost and reported). Printed per thread below the tables,
//!   with the wrapper's live descendants' (a long-lived `wait`), not counted.
//! * start: `Task::start` -> the job's first action (`touch started`) is seen
//!   in the slot (polled every 2 ms), image cached (a warm-up task runs first);
//! * bare `run -d` (same run, one per round of start runs, so both see the
//!   same load): `ENGINE run -d --name N -v DIR:/app IMAGE` of the bench
//!   image with its own command, which runs the same `touch started` from
//!   the mounted dir; timed from spawning the command to `started` seen, the
//!   wrapper's end point (also to the command's return, shown). The start
//!   ratio is the wrapper's start over the bare median;
//! * suspend -> paused / resume -> running: from writing the control message
//!   to the container's cgroup freezer saying FROZEN / THAWED (polled every
//!   1 ms; `inspect` polling where there is no freezer file);
//! * bare `pause` of the bare container after 0.5 s: spawning `ENGINE pause`
//!   -> its freezer says FROZEN (and -> the command returned). The suspend
//!   ratio is the wrapper's suspend over this median (the wrapper's includes
//!   the BOINC API's 100 ms message tick);
//! * exit: the container's init process exits (pidfd) -> the wrapper exits (pidfd);
//! * engine commands per phase ("engine: " debug lines, `verbose = 2`,
//!   counted in stderr.txt at each boundary; the lines carry seconds only):
//!   start (launch -> job running), settle (the next 5 s), steady (per
//!   minute of the window), suspend (suspend message -> resume message, 1 s
//!   paused), resume (resume message -> 1 s later), exit (`go` written, the
//!   job ends within 50 ms -> wrapper exit);
//! * peak RSS: the wrapper's VmHWM, last value read before it exited; with
//!   its RssAnon (private part: the rest is shared library pages) and PSS;
//!   where it is (program file, libraries, heap, thread stacks, the BOINC
//!   shared memory) from /proc/PID/smaps at the end of the window, printed
//!   below the tables;
//! * scale: 8 tasks of a new project in one data dir (one project dir, as
//!   under one client: `TaskBuilder::shared_data_dir`) start at once:
//!   all must finish with 0 after exactly one image build; their total CPU
//!   (wrapper + children, read from each zombie wrapper) and the wall time.
//!   The project's images are removed afterwards.
//!
//! Engine daemons (dockerd, containerd, conmon) are not children of the
//! wrapper: their CPU is not counted.
#[path = "wrapper/baseline.rs"]
mod baseline;
#[path = "wrapper/probe.rs"]
mod probe;
#[path = "wrapper/report.rs"]
mod report;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::thread;
use std::time::Instant;

use baseline::*;
use dw_test_support::*;
use probe::*;
use report::*;

/// Project of every bench task but the scale ones: its image is built once by the warm-up.
const PROJECT: &str = "bench.example.org_dw";
const SCALE_TASKS: usize = 8;
const START_TIMEOUT: Duration = Duration::from_secs(180);
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);
const SCALE_TIMEOUT: Duration = Duration::from_secs(900);
/// Pause between start-up and the steady-state window.
const SETTLE: Duration = Duration::from_secs(5);
/// Exit latencies above this print the wrapper's log (diagnosis).
const SLOW_EXIT_MS: f64 = 5000.0;
const JOB_TOML: &str = "verbose = 2\n";

// Targets (shared/DESIGN.md section 7): counts and ratios measured in one
// run, not absolute CPU seconds or milliseconds of a start, which depend on
// the machine.
/// With two or more --wrapper binaries: each later one's CPU-s/h over #1's (the previous build).
const CPU_VS_PREVIOUS_MAX: f64 = 0.5;
/// The BOINC API's own 10 Hz timer thread plus at most one.
const WAKEUPS_MAX: f64 = 11.0;
const START_RATIO_MAX: f64 = 1.3;
/// Engine commands from launch to the job running, image cached, no journal.
const START_COMMANDS_MAX: f64 = 2.0;
const SUSPEND_P50_MAX_MS: f64 = 120.0;
const RESUME_P50_MAX_MS: f64 = 120.0;
const EXIT_P50_MAX_MS: f64 = 500.0;
/// Of the self-contained build; the default build's RSS is mostly the
/// shared libraries' pages.
const RSS_SHIPPED_MAX_MIB: f64 = 3.0;

const M_OVERHEAD: &str = "overhead (CPU-s/h)";
const M_WAKEUPS: &str = "wake-ups (/s)";
const M_START: &str = "start -> running (ms)";
const M_BARE_RUN: &str = "bare run -d -> running (ms)";
const M_BARE_RUN_RETURNED: &str = "bare run -d returned (ms)";
const M_START_RATIO: &str = "start / bare run -d";
const M_SUSPEND: &str = "suspend -> paused (ms)";
const M_BARE_PAUSE: &str = "bare pause -> paused (ms)";
const M_BARE_PAUSE_RETURNED: &str = "bare pause returned (ms)";
const M_SUSPEND_RATIO: &str = "suspend / bare pause";
const M_RESUME: &str = "resume -> running (ms)";
const M_EXIT: &str = "container exit -> exit (ms)";
const M_COMMANDS_START: &str = "engine commands: start";
const M_COMMANDS_SETTLE: &str = "engine commands: settle";
const M_COMMANDS_STEADY: &str = "engine commands: steady (/min)";
const M_COMMANDS_SUSPEND: &str = "engine commands: suspend";
const M_COMMANDS_RESUME: &str = "engine commands: resume";
const M_COMMANDS_EXIT: &str = "engine commands: exit";
const M_RSS: &str = "peak RSS (MiB)";
const M_ANON: &str = "private RSS (MiB)";
const M_PSS: &str = "PSS (MiB)";
const M_SCALE_WALL: &str = "scale: wall time (s)";
const M_SCALE_CPU: &str = "scale: total CPU (s)";
const M_SCALE_TASK: &str = "scale: CPU per task (s)";

struct Options {
    engines: Vec<EngineKind>,
    wrappers: Vec<PathBuf>,
    /// How many of `wrappers` were given with --wrapper (they come first).
    given: usize,
    /// Indexes into `wrappers` of self-contained release files.
    shipped: Vec<usize>,
    runs: usize,
    overhead_runs: usize,
    window: Duration,
    quick: bool,
    /// Exit with failure when a target is missed, not only when a measurement fails.
    check: bool,
}

const USAGE: &str = "usage: cargo bench --bench wrapper -- [--engine podman|docker|both] [--wrapper PATH]... [--dist] [--quick] [--runs N] [--overhead-runs N] [--check]";

fn parse_options() -> Result<Options, String> {
    let mut engines = vec![EngineKind::Podman, EngineKind::Docker];
    let mut wrappers = Vec::new();
    let mut runs = None;
    let mut overhead_runs = 1;
    let mut quick = false;
    let mut check = false;
    let mut dist = false;
    let mut args = std::env::args().skip(1);
    let number = |v: Option<String>, what: &str| -> Result<usize, String> {
        v.as_deref()
            .and_then(|s| s.parse().ok())
            .filter(|n: &usize| *n >= 1)
            .ok_or_else(|| format!("{what} takes a number >= 1\n{USAGE}"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            "--engine" => {
                engines = match args.next().as_deref() {
                    Some("podman") => vec![EngineKind::Podman],
                    Some("docker") => vec![EngineKind::Docker],
                    Some("both") => vec![EngineKind::Podman, EngineKind::Docker],
                    other => {
                        return Err(format!(
                            "--engine takes podman, docker or both, not {other:?}\n{USAGE}"
                        ))
                    }
                }
            }
            "--wrapper" => {
                let path = PathBuf::from(
                    args.next()
                        .ok_or(format!("--wrapper takes a path\n{USAGE}"))?,
                );
                let path = path
                    .canonicalize()
                    .map_err(|e| format!("--wrapper {}: {e}", path.display()))?;
                if !path.is_file() {
                    return Err(format!("--wrapper {}: not a file", path.display()));
                }
                wrappers.push(path);
            }
            "--runs" => runs = Some(number(args.next(), "--runs")?),
            "--overhead-runs" => overhead_runs = number(args.next(), "--overhead-runs")?,
            "--quick" => quick = true,
            "--check" => check = true,
            "--dist" => dist = true,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let given = wrappers.len();
    if wrappers.is_empty() {
        wrappers.push(default_wrapper()?);
    }
    let mut shipped = Vec::new();
    if dist {
        shipped.push(wrappers.len());
        let file = dw_test_support::release::release_file(
            "_x86_64-pc-linux-gnu",
            env!("CARGO_PKG_VERSION"),
        )
        .map_err(|e| format!("--dist: {e}"))?;
        wrappers.push(file);
    }
    Ok(Options {
        engines,
        wrappers,
        given,
        shipped,
        runs: runs.unwrap_or(if quick { 3 } else { 5 }),
        overhead_runs,
        window: Duration::from_secs(if quick { 10 } else { 60 }),
        quick,
        check,
    })
}

/// The binary cargo built for this bench (`cargo bench` builds the package's
/// binaries with the bench profile, i.e. into target/release).
fn default_wrapper() -> Result<PathBuf, String> {
    let built = PathBuf::from(wrapper_path!());
    if built.is_file() {
        return Ok(built);
    }
    // The bench executable was moved away from its target dir: look next to it.
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let beside = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("docker_wrapper"));
    match beside {
        Some(p) if p.is_file() => Ok(p),
        _ => Err(format!(
            "{} not found: run `cargo build --release && cargo bench --bench wrapper`, or give --wrapper PATH",
            built.display()
        )),
    }
}

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    install_interrupt_handler();
    match run(&options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: &Options) -> Result<bool, String> {
    let began = Instant::now();
    let mut engines = Vec::new();
    for kind in &options.engines {
        engines.push(
            TestEngine::get(*kind).map_err(|e| format!("{} is not usable: {e}", kind.name()))?,
        );
    }
    print_setup(options, &engines);

    // Warm-up: the bench project's image is built (or found) on every engine.
    for engine in &engines {
        for (w, wrapper) in options.wrappers.iter().enumerate() {
            eprintln!(
                "[{:6.1}s] warm-up: {} #{}",
                began.elapsed().as_secs_f64(),
                engine.kind().name(),
                w + 1
            );
            if let Err(e) = warm_up(engine, wrapper) {
                failure(format!(
                    "warm-up of #{} on {} failed: {e}",
                    w + 1,
                    engine.kind().name()
                ));
            }
        }
    }

    // Overhead: every binary on every engine at the same time (idle tasks).
    eprintln!(
        "[{:6.1}s] overhead: {} task(s), {:?} window",
        began.elapsed().as_secs_f64(),
        engines.len() * options.wrappers.len() * options.overhead_runs,
        options.window
    );
    let mut overhead = Vec::new();
    thread::scope(|s| {
        let mut handles = Vec::new();
        for engine in &engines {
            for (w, wrapper) in options.wrappers.iter().enumerate() {
                for _ in 0..options.overhead_runs {
                    let h = s.spawn(move || overhead_run(engine, wrapper, options.window));
                    handles.push((engine.kind(), w, h));
                }
            }
        }
        for (kind, w, h) in handles {
            let result = h
                .join()
                .unwrap_or_else(|_| Err("the measuring thread panicked".into()));
            overhead.push((kind, w, result));
        }
    });

    let mut tables = Vec::new();
    // (engine, wrapper, all tasks finished 0 after one build) of each scale run.
    let mut scale_ok = Vec::new();
    let mut phases = Vec::new();
    for engine in &engines {
        if interrupted() {
            break;
        }
        let rows = measure_engine(
            options,
            engine,
            &overhead,
            &mut scale_ok,
            &mut phases,
            began,
        );
        tables.push((engine.clone(), rows));
    }

    forget_hosts();
    let removed: usize = engines
        .iter()
        .map(|e| remove_project_images(e, PROJECT))
        .sum();
    if interrupted() {
        return Err(format!("interrupted; removed {removed} bench image(s)"));
    }
    eprintln!(
        "[{:6.1}s] done; removed {removed} bench image(s)",
        began.elapsed().as_secs_f64()
    );

    println!();
    println!("wrappers:");
    for (w, wrapper) in options.wrappers.iter().enumerate() {
        println!("  #{} {}", w + 1, wrapper.display());
    }
    for (engine, rows) in &tables {
        print_table(
            &format!("== {} {} ==", engine.kind().name(), engine.version()),
            rows,
        );
    }
    print_phases(options, &tables, &phases);
    print_wakeups(&overhead);
    print_memory(options, &overhead);
    let all_met = print_targets(options, &tables, &scale_ok);
    println!();
    println!(
        "notes: CPU counts the wrapper and its descendants, not the engine daemons \
         (dockerd, containerd, conmon); peak RSS includes shared library pages, PSS \
         divides them among the processes sharing them."
    );
    let failures = FAILURES.load(std::sync::atomic::Ordering::SeqCst);
    if failures > 0 {
        println!("{failures} measurement(s) failed: see the messages above the tables");
    }
    println!();
    println!(
        "benchmark took {:.0} s ({}; load average now {})",
        began.elapsed().as_secs_f64(),
        if options.quick { "--quick" } else { "full run" },
        loadavg()
    );
    Ok(failures == 0 && (all_met || !options.check))
}

/// Every metric but overhead on one engine, for each binary; the rows of its table.
fn measure_engine(
    options: &Options,
    engine: &TestEngine,
    overhead: &[(EngineKind, usize, Result<OverheadResult, String>)],
    scale_ok: &mut Vec<(EngineKind, usize, bool)>,
    phases: &mut Vec<PhaseCommands>,
    began: Instant,
) -> Vec<Row> {
    let kind = engine.kind();
    let binaries = options.wrappers.len();
    let mut rows = Vec::new();
    // Per binary: VmHWM, RssAnon, Pss samples.
    let mut memory: Vec<[Vec<f64>; 3]> = vec![Default::default(); binaries];
    for (w, memory) in memory.iter_mut().enumerate() {
        let mine: Vec<&Result<OverheadResult, String>> = overhead
            .iter()
            .filter(|(k, ww, _)| *k == kind && *ww == w)
            .map(|(_, _, r)| r)
            .collect();
        let ok: Vec<&OverheadResult> = mine.iter().filter_map(|r| r.as_ref().ok()).collect();
        let errors = report_errors(
            &format!("overhead #{} on {}", w + 1, kind.name()),
            mine.iter().copied(),
        );
        let window = ok.first().map(|r| r.window.as_secs_f64()).unwrap_or(0.0);
        rows.push(Row::new(
            M_OVERHEAD,
            w,
            ok.iter().map(|r| r.cpu_per_hour).collect(),
            format!("over {window:.0} s of an idle task{errors}"),
        ));
        rows.push(Row::new(
            M_WAKEUPS,
            w,
            ok.iter().map(|r| r.wakeups.per_second).collect(),
            "voluntary context switches of all its threads in the window (per thread below)",
        ));
        let spawns: Vec<f64> = ok.iter().filter_map(|r| r.commands_per_minute).collect();
        let note = if spawns.is_empty() && !ok.is_empty() {
            "no \"engine: \" lines in stderr.txt (not this wrapper's log?)".to_string()
        } else {
            format!("\"engine: \" lines logged in the window{errors}")
        };
        rows.push(Row::new(M_COMMANDS_STEADY, w, spawns, note));
        for r in &ok {
            add_memory(memory, &r.mem);
            phases.push(PhaseCommands::new(
                kind,
                w,
                M_COMMANDS_SETTLE,
                &r.settle_commands,
            ));
            phases.push(PhaseCommands::new(
                kind,
                w,
                M_COMMANDS_STEADY,
                &r.steady_commands,
            ));
        }
        rows.push(count_row(
            phases,
            kind,
            w,
            M_COMMANDS_SETTLE,
            format!(
                "job started -> {} s later (the window's start)",
                SETTLE.as_secs()
            ),
        ));
    }

    // Start, exit and RSS: runs tasks per binary, interleaved with bare engine
    // commands (one `run -d` + `pause` per round) so that all see the same load.
    let image = project_images(engine, PROJECT).into_iter().next();
    let mut start: Vec<Vec<f64>> = vec![Vec::new(); binaries];
    let mut exit: Vec<Vec<f64>> = vec![Vec::new(); binaries];
    let mut start_errors = vec![0usize; binaries];
    let mut bare: Vec<BareRun> = Vec::new();
    let mut bare_errors = 0;
    for run in 0..options.runs {
        for (w, wrapper) in options.wrappers.iter().enumerate() {
            eprintln!(
                "[{:6.1}s] {} #{}: start/exit run {}/{}",
                began.elapsed().as_secs_f64(),
                kind.name(),
                w + 1,
                run + 1,
                options.runs
            );
            match start_exit_run(engine, wrapper) {
                Ok(r) => {
                    start[w].push(r.start_ms);
                    phases.push(PhaseCommands::new(
                        kind,
                        w,
                        M_COMMANDS_START,
                        &r.start_commands,
                    ));
                    phases.push(PhaseCommands::new(
                        kind,
                        w,
                        M_COMMANDS_EXIT,
                        &r.exit_commands,
                    ));
                    exit[w].extend(r.exit_ms);
                    add_memory(&mut memory[w], &r.mem);
                }
                Err(e) => {
                    start_errors[w] += 1;
                    failure(format!(
                        "start/exit run of #{} on {} failed: {e}",
                        w + 1,
                        kind.name()
                    ));
                }
            }
        }
        let Some(image) = &image else { continue };
        eprintln!(
            "[{:6.1}s] {}: bare run -d + pause {}/{}",
            began.elapsed().as_secs_f64(),
            kind.name(),
            run + 1,
            options.runs
        );
        match bare_run(engine, image, run) {
            Ok(b) => bare.push(b),
            Err(e) => {
                bare_errors += 1;
                failure(format!(
                    "bare run -d / pause on {} failed: {e}",
                    kind.name()
                ));
            }
        }
    }
    for w in 0..binaries {
        let errors = if start_errors[w] > 0 {
            format!("; {} run(s) failed", start_errors[w])
        } else {
            String::new()
        };
        rows.push(Row::new(
            M_START,
            w,
            start[w].clone(),
            format!("Task::start -> `started` in the slot{errors}"),
        ));
        rows.push(count_row(
            phases,
            kind,
            w,
            M_COMMANDS_START,
            "launch -> `started` in the slot",
        ));
        rows.push(Row::new(
            M_EXIT,
            w,
            exit[w].clone(),
            format!("pidfd of container init -> pidfd of wrapper{errors}"),
        ));
        rows.push(count_row(
            phases,
            kind,
            w,
            M_COMMANDS_EXIT,
            "`go` (the job ends) -> wrapper exit",
        ));
    }
    rows.extend(bare_rows(&image, &bare, bare_errors));

    // Suspend / resume: one task per binary, `runs` cycles.
    let mut suspend: Vec<Vec<f64>> = vec![Vec::new(); binaries];
    for (w, wrapper) in options.wrappers.iter().enumerate() {
        eprintln!(
            "[{:6.1}s] {} #{}: suspend/resume",
            began.elapsed().as_secs_f64(),
            kind.name(),
            w + 1
        );
        match suspend_run(engine, wrapper, options.runs) {
            Ok(r) => {
                let how = format!("control message -> {}", r.method);
                suspend[w] = r.suspend_ms.clone();
                rows.push(Row::new(M_SUSPEND, w, r.suspend_ms, how.clone()));
                rows.push(Row::new(M_RESUME, w, r.resume_ms, how));
                for c in &r.suspend_commands {
                    phases.push(PhaseCommands::new(kind, w, M_COMMANDS_SUSPEND, c));
                }
                for c in &r.resume_commands {
                    phases.push(PhaseCommands::new(kind, w, M_COMMANDS_RESUME, c));
                }
                rows.push(count_row(
                    phases,
                    kind,
                    w,
                    M_COMMANDS_SUSPEND,
                    "suspend message -> resume message (1 s paused)",
                ));
                rows.push(count_row(
                    phases,
                    kind,
                    w,
                    M_COMMANDS_RESUME,
                    "resume message -> 1 s later",
                ));
                add_memory(&mut memory[w], &r.mem);
            }
            Err(e) => {
                failure(format!(
                    "suspend/resume of #{} on {} failed: {e}",
                    w + 1,
                    kind.name()
                ));
                rows.push(Row::new(M_SUSPEND, w, Vec::new(), "failed (see above)"));
                rows.push(Row::new(M_RESUME, w, Vec::new(), "failed (see above)"));
            }
        }
    }

    // Ratios to the bare commands: each sample over the bare median, so the
    // median of the row is the ratio of the medians.
    let bare_run_ms = percentile(&bare.iter().map(|b| b.run_ms).collect::<Vec<_>>(), 0.5);
    let bare_pause_ms = percentile(&bare.iter().map(|b| b.pause_ms).collect::<Vec<_>>(), 0.5);
    for w in 0..binaries {
        rows.push(ratio_row(
            M_START_RATIO,
            w,
            &start[w],
            bare_run_ms,
            "start -> running over the bare run -d -> running median",
        ));
        rows.push(ratio_row(
            M_SUSPEND_RATIO,
            w,
            &suspend[w],
            bare_pause_ms,
            "suspend -> paused over the bare pause -> paused median",
        ));
    }

    for (w, [rss, anon, pss]) in memory.into_iter().enumerate() {
        rows.push(Row::new(
            M_RSS,
            w,
            rss,
            "VmHWM, last read before exit (shared library pages included)",
        ));
        rows.push(Row::new(
            M_ANON,
            w,
            anon,
            "RssAnon (private memory), while running",
        ));
        rows.push(Row::new(
            M_PSS,
            w,
            pss,
            "Pss (shared pages divided among users), while running",
        ));
    }

    // Scale: a new project, 8 tasks at once.
    for (w, wrapper) in options.wrappers.iter().enumerate() {
        eprintln!(
            "[{:6.1}s] {} #{}: scale, {SCALE_TASKS} tasks",
            began.elapsed().as_secs_f64(),
            kind.name(),
            w + 1
        );
        let project = format!(
            "bench_scale_{}_{}_{}",
            kind.name(),
            std::process::id(),
            w + 1
        );
        let result = scale_run(engine, wrapper, &project);
        let removed = remove_project_images(engine, &project);
        match result {
            Ok(r) => {
                let verdict = format!(
                    "{}/{} finished 0, {} image build(s), {} removed",
                    r.finished_ok, r.tasks, r.builds, removed
                );
                rows.push(Row::new(M_SCALE_WALL, w, vec![r.wall_s], verdict));
                rows.push(Row::new(
                    M_SCALE_CPU,
                    w,
                    vec![r.task_cpu_s.iter().sum()],
                    "wrappers + children, incl. the build",
                ));
                rows.push(Row::new(
                    M_SCALE_TASK,
                    w,
                    r.task_cpu_s.clone(),
                    "wrapper + children",
                ));
                scale_ok.push((kind, w, r.finished_ok == r.tasks && r.builds == 1));
            }
            Err(e) => {
                failure(format!(
                    "scale run of #{} on {} failed: {e}",
                    w + 1,
                    kind.name()
                ));
                rows.push(Row::new(
                    M_SCALE_WALL,
                    w,
                    Vec::new(),
                    format!("failed (see above); {removed} image(s) removed"),
                ));
                scale_ok.push((kind, w, false));
            }
        }
    }
    rows.sort_by_key(|r| (metric_order(r.metric), r.wrapper));
    rows
}

/// The engine commands one run logged in one phase (a metric M_COMMANDS_*).
pub struct PhaseCommands {
    pub kind: EngineKind,
    pub wrapper: usize,
    pub metric: &'static str,
    pub commands: Vec<String>,
}

impl PhaseCommands {
    fn new(kind: EngineKind, wrapper: usize, metric: &'static str, commands: &[String]) -> Self {
        PhaseCommands {
            kind,
            wrapper,
            metric,
            commands: commands.to_vec(),
        }
    }
}

/// The row of how many commands a phase took, one sample per run.
fn count_row(
    phases: &[PhaseCommands],
    kind: EngineKind,
    w: usize,
    metric: &'static str,
    note: impl Into<String>,
) -> Row {
    let counts = phases
        .iter()
        .filter(|p| p.kind == kind && p.wrapper == w && p.metric == metric)
        .map(|p| p.commands.len() as f64)
        .collect();
    Row::new(metric, w, counts, note)
}

/// The rows of the bare engine commands of one engine.
fn bare_rows(image: &Option<String>, bare: &[BareRun], errors: usize) -> Vec<Row> {
    let Some(image) = image else {
        failure(format!(
            "no image of {PROJECT} found after the warm-up: no bare run -d / pause"
        ));
        return [M_BARE_RUN, M_BARE_PAUSE]
            .map(|m| Row::bare(m, Vec::new(), "no bench image (warm-up failed?)"))
            .into();
    };
    let failed = if errors > 0 {
        format!("; {errors} run(s) failed")
    } else {
        String::new()
    };
    let method = bare.first().map(|b| b.method).unwrap_or("freezer");
    let column = |f: fn(&BareRun) -> f64| bare.iter().map(f).collect::<Vec<f64>>();
    vec![
        Row::bare(
            M_BARE_RUN,
            column(|b| b.run_ms),
            format!("`run -d {image}` spawned -> `started` in its mounted dir{failed}"),
        ),
        Row::bare(
            M_BARE_RUN_RETURNED,
            column(|b| b.run_returned_ms),
            "`run -d` spawned -> it returned",
        ),
        Row::bare(
            M_BARE_PAUSE,
            column(|b| b.pause_ms),
            format!("`pause` spawned -> {method}{failed}"),
        ),
        Row::bare(
            M_BARE_PAUSE_RETURNED,
            column(|b| b.pause_returned_ms),
            "`pause` spawned -> it returned",
        ),
    ]
}

fn ratio_row(
    metric: &'static str,
    w: usize,
    samples: &[f64],
    bare_median: Option<f64>,
    how: &str,
) -> Row {
    match bare_median.filter(|m| *m > 0.0) {
        Some(m) => Row::new(metric, w, samples.iter().map(|s| s / m).collect(), how),
        None => Row::new(metric, w, Vec::new(), "no bare measurement"),
    }
}

fn metric_order(metric: &str) -> usize {
    [
        M_OVERHEAD,
        M_WAKEUPS,
        M_START,
        M_BARE_RUN,
        M_BARE_RUN_RETURNED,
        M_START_RATIO,
        M_SUSPEND,
        M_BARE_PAUSE,
        M_BARE_PAUSE_RETURNED,
        M_SUSPEND_RATIO,
        M_RESUME,
        M_EXIT,
        M_COMMANDS_START,
        M_COMMANDS_SETTLE,
        M_COMMANDS_STEADY,
        M_COMMANDS_SUSPEND,
        M_COMMANDS_RESUME,
        M_COMMANDS_EXIT,
        M_RSS,
        M_ANON,
        M_PSS,
        M_SCALE_WALL,
        M_SCALE_CPU,
        M_SCALE_TASK,
    ]
    .iter()
    .position(|m| *m == metric)
    .unwrap_or(usize::MAX)
}

/// Measurements that failed (each printed when it happened).
static FAILURES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn failure(message: String) {
    FAILURES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    eprintln!("{message}");
}

/// Prints the failures of some runs; a note for the table.
fn report_errors<'a>(
    what: &str,
    results: impl Iterator<Item = &'a Result<OverheadResult, String>>,
) -> String {
    let mut failed = 0;
    for r in results {
        if let Err(e) = r {
            failure(format!("{what} failed: {e}"));
            failed += 1;
        }
    }
    if failed > 0 {
        format!("; {failed} run(s) failed")
    } else {
        String::new()
    }
}

fn add_memory(samples: &mut [Vec<f64>; 3], mem: &Memory) {
    for (v, kib) in samples
        .iter_mut()
        .zip([mem.hwm_kib, mem.anon_kib, mem.pss_kib])
    {
        v.extend(kib.map(|k| k as f64 / 1024.0));
    }
}

/// A task of the bench project in the data dir of its engine and binary:
/// as on a volunteer's host, every task after the warm-up finds what the
/// earlier ones left (the engine's remembered facts, the image cache's
/// records), and each gets a slot of its own.
fn builder(label: &str, wrapper: &Path, engine: &TestEngine, script: &str) -> TaskBuilder {
    let builder = Task::builder(&format!("bench_{label}_{}", engine.kind().name()), wrapper)
        .program_exact(wrapper)
        .engine(engine)
        .project_dir_name(PROJECT)
        .job(TestJob::shell(script).job_toml(JOB_TOML));
    match host_data_dir(engine.kind(), wrapper) {
        Some(dir) => builder.shared_data_dir(dir),
        None => builder,
    }
}

/// One BOINC data dir per engine and binary, kept until `forget_hosts`.
static HOSTS: std::sync::Mutex<Vec<(EngineKind, PathBuf, TempDir)>> =
    std::sync::Mutex::new(Vec::new());

fn host_data_dir(kind: EngineKind, wrapper: &Path) -> Option<PathBuf> {
    let mut hosts = HOSTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, _, dir)) = hosts.iter().find(|(k, w, _)| *k == kind && w == wrapper) {
        return Some(dir.path().join("boinc_data"));
    }
    let dir = TempDir::new(&format!("bench_host_{}", kind.name())).ok()?;
    let data_dir = dir.path().join("boinc_data");
    hosts.push((kind, wrapper.to_path_buf(), dir));
    Some(data_dir)
}

/// Removes the data dirs of `builder`.
fn forget_hosts() {
    HOSTS.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

fn with_logs(task: &Task, error: String) -> String {
    format!("{error}\n{}", task.logs_tail(30))
}

/// Waits for the wrapper to exit; Err unless it finished with 0.
fn expect_success(task: &mut Task) -> Result<(), String> {
    let outcome = task.wait_exit(EXIT_TIMEOUT)?;
    if outcome.finish_code() == Some(0) {
        Ok(())
    } else {
        Err(format!(
            "the task did not finish with 0: {}",
            outcome.describe()
        ))
    }
}

fn release(task: &Task) -> Result<(), String> {
    fs::write(task.slot_dir().join("go"), "").map_err(|e| format!("cannot write go: {e}"))
}

fn wrapper_pid(task: &Task) -> Result<(u32, Pidfd), String> {
    let pid = task.pid().ok_or("the wrapper is not running")?;
    let fd = Pidfd::open(pid).map_err(|e| format!("pidfd_open({pid}): {e}"))?;
    Ok((pid, fd))
}

fn warm_up(engine: &TestEngine, wrapper: &Path) -> Result<(), String> {
    let mut task = builder("warmup", wrapper, engine, "exit 0").start()?;
    expect_success(&mut task)
}

struct OverheadResult {
    cpu_per_hour: f64,
    /// None when the log has no "engine: " lines at all (not this wrapper's log?).
    commands_per_minute: Option<f64>,
    /// Engine commands between the job's start and the window (SETTLE).
    settle_commands: Vec<String>,
    /// Engine commands in the window.
    steady_commands: Vec<String>,
    wakeups: Wakeups,
    /// The wrapper's live descendants at the end of the window (a long-lived
    /// `wait`, say): pid, name, wake-ups. Not the wrapper's, shown for diagnosis.
    descendants: Vec<(u32, String, Wakeups)>,
    mem: Memory,
    /// Where the wrapper's memory is at the end of the window.
    breakdown: Option<Vec<MemoryPart>>,
    window: Duration,
}

/// The wrapper's threads and its live descendants' at one moment.
struct TreeSnapshot {
    wrapper: ThreadSnapshot,
    descendants: HashMap<u32, ThreadSnapshot>,
}

impl TreeSnapshot {
    fn take(pid: u32) -> TreeSnapshot {
        TreeSnapshot {
            wrapper: ThreadSnapshot::take(pid),
            descendants: descendants(pid)
                .into_iter()
                .map(|(p, _)| (p, ThreadSnapshot::take(p)))
                .collect(),
        }
    }
}

fn overhead_run(
    engine: &TestEngine,
    wrapper: &Path,
    window: Duration,
) -> Result<OverheadResult, String> {
    let script = "touch started; while [ ! -f go ]; do sleep 1; done";
    let mut task = builder("overhead", wrapper, engine, script).start()?;
    let (pid, fd) = wrapper_pid(&task)?;
    let mut mem = Memory::default();
    let started = task.slot_dir().join("started");
    wait_for_file(&started, Instant::now(), START_TIMEOUT, &fd, pid, &mut mem)
        .map_err(|e| with_logs(&task, e))?;
    let at_started = engine_commands(&task.stderr_txt()).len();
    sleep(SETTLE)?;

    let snapshot = || -> Result<(Instant, f64, TreeSnapshot), String> {
        let threads = TreeSnapshot::take(pid);
        let cpu = tree_cpu_secs(pid).ok_or("cannot read /proc/<wrapper>/stat")?;
        Ok((Instant::now(), cpu, threads))
    };
    let at_window = engine_commands(&task.stderr_txt()).len();
    let (t0, cpu0, threads0) = snapshot()?;
    while t0.elapsed() < window {
        if poll_exits(&[&fd], Duration::from_millis(200))[0] {
            return Err(with_logs(
                &task,
                "the wrapper exited during the window".into(),
            ));
        }
        if interrupted() {
            return Err("interrupted".into());
        }
    }
    let (t1, cpu1, threads1) = snapshot()?;
    let commands = engine_commands(&task.stderr_txt());
    mem.sample_full(pid);
    let breakdown = memory_breakdown(pid);
    release(&task)?;
    expect_success(&mut task)?;

    let secs = (t1 - t0).as_secs_f64();
    let cpu = (cpu1 - cpu0).max(0.0);
    let descendants = threads1
        .descendants
        .iter()
        .map(|(p, after)| {
            let before = threads0.descendants.get(p).cloned().unwrap_or_default();
            let comm = after
                .threads
                .get(p)
                .map(|t| t.comm.clone())
                .unwrap_or_else(|| "?".into());
            (*p, comm, Wakeups::between(&before, after, secs))
        })
        .collect();
    Ok(OverheadResult {
        cpu_per_hour: cpu * 3600.0 / secs,
        commands_per_minute: (!commands.is_empty())
            .then(|| (commands.len() - at_window) as f64 * 60.0 / secs),
        settle_commands: logged_between(&commands, at_started, at_window),
        steady_commands: logged_between(&commands, at_window, commands.len()),
        wakeups: Wakeups::between(&threads0.wrapper, &threads1.wrapper, secs),
        descendants,
        mem,
        breakdown,
        window: t1 - t0,
    })
}

struct StartExit {
    start_ms: f64,
    /// Engine commands the wrapper had run when the job started.
    start_commands: Vec<String>,
    /// Engine commands from `go` (the job ends within 50 ms) to the wrapper's exit.
    exit_commands: Vec<String>,
    exit_ms: Option<f64>,
    mem: Memory,
}

fn start_exit_run(engine: &TestEngine, wrapper: &Path) -> Result<StartExit, String> {
    let script = "touch started; while [ ! -f go ]; do sleep 0.05; done; exit 0";
    let mut task = builder("start_exit", wrapper, engine, script).prepare()?;
    let t0 = Instant::now();
    task.start()?;
    let (pid, wfd) = wrapper_pid(&task)?;
    let mut mem = Memory::default();
    let started = task.slot_dir().join("started");
    let start = wait_for_file(&started, t0, START_TIMEOUT, &wfd, pid, &mut mem)
        .map_err(|e| with_logs(&task, e))?;
    let start_commands = engine_commands(&task.stderr_txt());

    let name = task.container_name();
    let cpid = container_pid(engine, &name)
        .ok_or_else(|| with_logs(&task, format!("no pid for container {name}")))?;
    let cfd = Pidfd::open(cpid).map_err(|e| format!("pidfd_open({cpid}) of the container: {e}"))?;
    // Let the wrapper reach its steady loop before the job ends.
    sleep(Duration::from_secs(1))?;
    mem.sample_full(pid);
    let at_release = engine_commands(&task.stderr_txt()).len();
    release(&task)?;

    let released = Instant::now();
    let (mut container_exit, mut wrapper_exit) = (None, None);
    while wrapper_exit.is_none() {
        let ready = poll_exits(&[&cfd, &wfd], Duration::from_millis(2));
        let now = Instant::now();
        if ready[0] && container_exit.is_none() {
            container_exit = Some(now);
        }
        if ready[1] {
            wrapper_exit = Some(now);
        } else {
            mem.sample(pid);
        }
        if released.elapsed() > EXIT_TIMEOUT {
            return Err(with_logs(
                &task,
                format!("the wrapper did not exit within {EXIT_TIMEOUT:?} of `go`"),
            ));
        }
        if interrupted() {
            return Err("interrupted".into());
        }
    }
    let exit_ms = match (container_exit, wrapper_exit) {
        (Some(c), Some(w)) => Some(w.saturating_duration_since(c).as_secs_f64() * 1000.0),
        _ => {
            eprintln!(
                "warning: the wrapper exited before its container's init process (pid {cpid})"
            );
            None
        }
    };
    expect_success(&mut task)?;
    let all = engine_commands(&task.stderr_txt());
    let exit_commands = logged_between(&all, at_release, all.len());
    if let Some(ms) = exit_ms.filter(|ms| *ms > SLOW_EXIT_MS) {
        // Seconds-resolution timestamps, but enough to see which step took long.
        let log = task.stderr_txt();
        let from = log.rfind("watching container").unwrap_or(0);
        let tail: Vec<&str> = log[from..]
            .lines()
            .filter(|l| l.contains("docker_wrapper"))
            .take(20)
            .collect();
        eprintln!(
            "slow exit ({ms:.0} ms) of {}; wrapper log from the exit on:\n{}",
            task.container_name(),
            tail.join("\n")
        );
    }
    Ok(StartExit {
        start_ms: start.as_secs_f64() * 1000.0,
        start_commands,
        exit_commands,
        exit_ms,
        mem,
    })
}

struct SuspendResume {
    suspend_ms: Vec<f64>,
    resume_ms: Vec<f64>,
    /// Engine commands from each suspend message to the resume message (1 s paused).
    suspend_commands: Vec<Vec<String>>,
    /// Engine commands from each resume message to 1 s after it.
    resume_commands: Vec<Vec<String>>,
    method: &'static str,
    mem: Memory,
}

fn suspend_run(
    engine: &TestEngine,
    wrapper: &Path,
    cycles: usize,
) -> Result<SuspendResume, String> {
    let script = "touch started; while [ ! -f go ]; do sleep 0.2; done; exit 0";
    let mut task = builder("suspend", wrapper, engine, script).start()?;
    let (pid, wfd) = wrapper_pid(&task)?;
    let mut mem = Memory::default();
    let started = task.slot_dir().join("started");
    wait_for_file(&started, Instant::now(), START_TIMEOUT, &wfd, pid, &mut mem)
        .map_err(|e| with_logs(&task, e))?;
    let name = task.container_name();
    let cpid = container_pid(engine, &name)
        .ok_or_else(|| with_logs(&task, format!("no pid for container {name}")))?;
    let freezer = Freezer::find(cpid, engine, &name);
    let timeout = Duration::from_secs(15);
    let (mut suspend_ms, mut resume_ms) = (Vec::new(), Vec::new());
    let (mut suspend_commands, mut resume_commands) = (Vec::new(), Vec::new());
    let lines = |task: &Task| engine_commands(&task.stderr_txt()).len();
    sleep(Duration::from_secs(1))?;
    let mut before_suspend = lines(&task);
    for _ in 0..cycles {
        let sent = task.try_send_control(Control::Suspend, Duration::from_secs(10))?;
        let took = freezer
            .wait_for(true, sent, timeout)
            .map_err(|e| with_logs(&task, e))?;
        suspend_ms.push(took.as_secs_f64() * 1000.0);
        sleep(Duration::from_secs(1))?;
        let before_resume = lines(&task);
        let sent = task.try_send_control(Control::Resume, Duration::from_secs(10))?;
        let took = freezer
            .wait_for(false, sent, timeout)
            .map_err(|e| with_logs(&task, e))?;
        resume_ms.push(took.as_secs_f64() * 1000.0);
        sleep(Duration::from_secs(1))?;
        let commands = engine_commands(&task.stderr_txt());
        let after = commands.len();
        suspend_commands.push(logged_between(&commands, before_suspend, before_resume));
        resume_commands.push(logged_between(&commands, before_resume, after));
        before_suspend = after;
    }
    mem.sample_full(pid);
    release(&task)?;
    expect_success(&mut task)?;
    Ok(SuspendResume {
        suspend_ms,
        resume_ms,
        suspend_commands,
        resume_commands,
        method: freezer.method(),
        mem,
    })
}

struct Scale {
    tasks: usize,
    finished_ok: usize,
    builds: usize,
    wall_s: f64,
    task_cpu_s: Vec<f64>,
}

/// SCALE_TASKS tasks of a new project in one data dir (slots 0..N, one
/// project dir: the build lock and image-use markers live there), started at once.
fn scale_run(engine: &TestEngine, wrapper: &Path, project: &str) -> Result<Scale, String> {
    let shared =
        TempDir::new("bench_scale").map_err(|e| format!("cannot create the data dir: {e}"))?;
    let data_dir = shared.path().join("boinc_data");
    let script = "touch started; sleep 2; exit 0";
    let mut tasks = Vec::new();
    for i in 0..SCALE_TASKS {
        let task = builder(&format!("scale{i}"), wrapper, engine, script)
            .project_dir_name(project)
            .shared_data_dir(&data_dir)
            .prepare()?;
        tasks.push(task);
    }
    let project_dirs: std::collections::BTreeSet<&Path> =
        tasks.iter().map(|t| t.project_dir()).collect();
    if project_dirs.len() != 1 {
        return Err(format!(
            "the tasks do not share one project dir: {project_dirs:?}"
        ));
    }
    let t0 = Instant::now();
    let mut watched = Vec::new();
    for task in &mut tasks {
        task.start()?;
        watched.push(wrapper_pid(task)?);
    }
    let mut cpu: Vec<Option<f64>> = vec![None; tasks.len()];
    let mut last_exit = t0;
    while cpu.iter().any(Option::is_none) {
        let fds: Vec<&Pidfd> = watched.iter().map(|(_, fd)| fd).collect();
        let ready = poll_exits(&fds, Duration::from_millis(100));
        for (i, r) in ready.iter().enumerate() {
            if *r && cpu[i].is_none() {
                last_exit = Instant::now();
                // The wrapper is a zombie until the emulator reaps it: its counters are still there.
                cpu[i] = Some(tree_cpu_secs(watched[i].0).unwrap_or(f64::NAN));
            }
        }
        if t0.elapsed() > SCALE_TIMEOUT {
            let done = cpu.iter().filter(|c| c.is_some()).count();
            return Err(format!(
                "only {done} of {} wrappers exited within {SCALE_TIMEOUT:?}",
                tasks.len()
            ));
        }
        if interrupted() {
            return Err("interrupted".into());
        }
    }
    let wall_s = (last_exit - t0).as_secs_f64();
    let (mut finished_ok, mut builds) = (0, 0);
    for (i, task) in tasks.iter_mut().enumerate() {
        let outcome = task.wait_exit(EXIT_TIMEOUT)?;
        builds += outcome
            .stderr_txt
            .lines()
            .filter(|l| l.contains("building image"))
            .count();
        if outcome.finish_code() == Some(0) {
            finished_ok += 1;
        } else {
            eprintln!(
                "scale task {i} did not finish with 0: {}",
                outcome.describe()
            );
        }
    }
    drop(tasks);
    Ok(Scale {
        tasks: SCALE_TASKS,
        finished_ok,
        builds,
        wall_s,
        task_cpu_s: cpu.into_iter().flatten().collect(),
    })
}

/// The images of `boinc_wrapper/<project>` (any tag), as the engine names them.
fn project_images(engine: &TestEngine, project: &str) -> Vec<String> {
    let repository = format!("boinc_wrapper/{project}:");
    let Ok(out) = engine.run(["images", "--format", "{{.Repository}}:{{.Tag}}"]) else {
        return Vec::new();
    };
    out.stdout
        .lines()
        .map(str::trim)
        .filter(|t| t.trim_start_matches("localhost/").starts_with(&repository))
        .map(String::from)
        .collect()
}

/// Removes the images of `boinc_wrapper/<project>` (any tag); how many.
fn remove_project_images(engine: &TestEngine, project: &str) -> usize {
    project_images(engine, project)
        .iter()
        .filter(|t| engine.remove_image(t).is_ok())
        .count()
}
