//! Statistics and everything the benchmark prints: setup, tables, targets,
//! and the diagnostics behind the figures (wake-ups per thread, engine
//! commands per phase, where the memory is).
use std::fs;
use std::thread;

use dw_test_support::{EngineKind, TestEngine};

use crate::probe::{cgroup_layout, kernel, loadavg, MemoryPart, ThreadLife, Wakeups};
use crate::*;

/// One measured metric of one wrapper (None: a bare engine command) on one engine.
#[derive(Clone, Debug)]
pub struct Row {
    pub metric: &'static str,
    pub wrapper: Option<usize>,
    pub samples: Vec<f64>,
    /// How it was measured, or why there is no value.
    pub note: String,
}

impl Row {
    pub fn new(
        metric: &'static str,
        wrapper: usize,
        samples: Vec<f64>,
        note: impl Into<String>,
    ) -> Row {
        Row {
            metric,
            wrapper: Some(wrapper),
            samples,
            note: note.into(),
        }
    }

    /// A row of a bare engine command, the same for every binary.
    pub fn bare(metric: &'static str, samples: Vec<f64>, note: impl Into<String>) -> Row {
        Row {
            metric,
            wrapper: None,
            samples,
            note: note.into(),
        }
    }

    pub fn median(&self) -> Option<f64> {
        percentile(&self.samples, 0.5)
    }

    pub fn max(&self) -> Option<f64> {
        self.samples.iter().copied().reduce(f64::max)
    }
}

/// Linear interpolation between closest ranks (p in 0..=1).
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let pos = p * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(v[lo] + (v[hi] - v[lo]) * (pos - lo as f64))
}

fn fmt(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(0.0) => "0".into(),
        // Counts (engine commands) and their medians read best without decimals.
        Some(v) if v.fract() == 0.0 && v.abs() < 1e9 => format!("{v:.0}"),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) if v.abs() >= 1.0 => format!("{v:.2}"),
        Some(v) => format!("{v:.3}"),
    }
}

pub fn print_table(title: &str, rows: &[Row]) {
    println!();
    println!("{title}");
    let header = format!(
        "{:<30} {:>7} {:>9} {:>9} {:>9} {:>9} {:>3}  {}",
        "metric", "wrapper", "median", "p90", "min", "max", "n", "note"
    );
    println!("{header}");
    println!("{}", "-".repeat(header.len().max(100)));
    for r in rows {
        let min = r.samples.iter().copied().reduce(f64::min);
        println!(
            "{:<30} {:>7} {:>9} {:>9} {:>9} {:>9} {:>3}  {}",
            r.metric,
            r.wrapper
                .map(|w| format!("#{}", w + 1))
                .unwrap_or_else(|| "bare".into()),
            fmt(r.median()),
            fmt(percentile(&r.samples, 0.9)),
            fmt(min),
            fmt(r.max()),
            r.samples.len(),
            r.note
        );
    }
}

pub fn print_setup(options: &Options, engines: &[TestEngine]) {
    let ncpu = thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!(
        "docker_wrapper benchmark ({})",
        if options.quick { "--quick" } else { "full" }
    );
    println!(
        "machine: {ncpu} CPUs, kernel {}, cgroup {}, load average {}",
        kernel(),
        cgroup_layout(),
        loadavg()
    );
    for engine in engines {
        println!(
            "engine: {} {} ({})",
            engine.kind().name(),
            engine.version(),
            engine.cli().display()
        );
    }
    for (w, wrapper) in options.wrappers.iter().enumerate() {
        let modified = fs::metadata(wrapper)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .map(|d| format!("built {:.0} min ago", d.as_secs_f64() / 60.0))
            .unwrap_or_default();
        println!(
            "wrapper #{}: {} ({modified}{})",
            w + 1,
            wrapper.display(),
            wrapper_role(options, w)
        );
    }
    println!(
        "runs: {} per latency metric, {} overhead task(s) per binary and engine over {} s, scale {SCALE_TASKS} tasks",
        options.runs,
        options.overhead_runs,
        options.window.as_secs()
    );
}

/// What a binary is to the targets: the previous build, a self-contained file.
fn wrapper_role(options: &Options, w: usize) -> &'static str {
    if options.shipped.contains(&w) {
        "; self-contained release file"
    } else if options.given >= 2 && w == 0 {
        "; the previous build"
    } else {
        ""
    }
}

/// How a measured value compares with its target.
#[derive(Clone, Debug)]
pub enum Verdict {
    Met,
    Missed,
    NotMeasured,
    /// The target does not apply to this binary (why).
    NotApplicable(&'static str),
}

impl Verdict {
    /// `--check` fails on a missed or unmeasured target, not on one that does not apply.
    fn passes(&self) -> bool {
        matches!(self, Verdict::Met | Verdict::NotApplicable(_))
    }

    fn show(&self) -> String {
        match self {
            Verdict::Met => "met".into(),
            Verdict::Missed => "MISSED".into(),
            Verdict::NotMeasured => "not measured".into(),
            Verdict::NotApplicable(why) => format!("n/a: {why}"),
        }
    }
}

struct Check {
    target: String,
    value: String,
    verdict: Verdict,
}

/// `value <= limit`, the value shown with its unit.
fn at_most(target: String, value: Option<f64>, limit: f64, unit: &str) -> Check {
    Check {
        target,
        value: value
            .map(|v| format!("{}{unit}", fmt(Some(v))))
            .unwrap_or_default(),
        verdict: match value {
            Some(v) if v <= limit => Verdict::Met,
            Some(_) => Verdict::Missed,
            None => Verdict::NotMeasured,
        },
    }
}

fn not_applicable(target: String, why: &'static str) -> Check {
    Check {
        target,
        value: String::new(),
        verdict: Verdict::NotApplicable(why),
    }
}

/// Prints each design target per engine and binary; true when all were met
/// (or do not apply).
pub fn print_targets(
    options: &Options,
    tables: &[(TestEngine, Vec<Row>)],
    scale: &[(EngineKind, usize, bool)],
) -> bool {
    println!();
    println!("targets (shared/DESIGN.md section 7):");
    println!(
        "  CPU rule: with two or more --wrapper binaries, #1 is the previous build and each \
         later --wrapper binary must use at most {CPU_VS_PREVIOUS_MAX}x its CPU-s/h (medians, \
         same engine, same run){}",
        match options.given {
            0 | 1 => "; this run has one, so the rule does not apply",
            _ => "",
        }
    );
    let mut all = true;
    for (engine, rows) in tables {
        let kind = engine.kind();
        let median = |metric: &str, w: usize| {
            rows.iter()
                .find(|r| r.metric == metric && r.wrapper == Some(w))
                .and_then(Row::median)
        };
        for w in 0..options.wrappers.len() {
            let max = |metric: &str| {
                rows.iter()
                    .find(|r| r.metric == metric && r.wrapper == Some(w))
                    .and_then(Row::max)
            };
            let cpu_target = format!("CPU-s/h <= {CPU_VS_PREVIOUS_MAX}x #1's (previous build)");
            let cpu_check = if options.given < 2 {
                not_applicable(cpu_target, "one --wrapper binary")
            } else if w == 0 {
                not_applicable(cpu_target, "#1 is the reference")
            } else if w >= options.given {
                not_applicable(cpu_target, "not a --wrapper binary")
            } else {
                let ratio = median(M_OVERHEAD, w)
                    .zip(median(M_OVERHEAD, 0))
                    .filter(|(_, reference)| *reference > 0.0)
                    .map(|(mine, reference)| mine / reference);
                at_most(cpu_target, ratio, CPU_VS_PREVIOUS_MAX, "x")
            };
            let rss_target = format!("peak RSS <= {RSS_SHIPPED_MAX_MIB} MiB (max, self-contained)");
            let rss_check = if options.shipped.contains(&w) {
                at_most(rss_target, max(M_RSS), RSS_SHIPPED_MAX_MIB, " MiB")
            } else {
                not_applicable(rss_target, "shared libraries; see PSS")
            };
            let checks = vec![
                cpu_check,
                at_most(
                    format!("wake-ups <= {WAKEUPS_MAX}/s (median)"),
                    median(M_WAKEUPS, w),
                    WAKEUPS_MAX,
                    "/s",
                ),
                at_most(
                    format!("start <= {START_RATIO_MAX}x bare run -d (medians)"),
                    median(M_START_RATIO, w),
                    START_RATIO_MAX,
                    "x",
                ),
                at_most(
                    format!("engine commands to start <= {START_COMMANDS_MAX} (median)"),
                    median(M_COMMANDS_START, w),
                    START_COMMANDS_MAX,
                    "",
                ),
                at_most(
                    format!("suspend -> paused p50 <= {SUSPEND_P50_MAX_MS} ms"),
                    median(M_SUSPEND, w),
                    SUSPEND_P50_MAX_MS,
                    " ms",
                ),
                at_most(
                    format!("resume -> running p50 <= {RESUME_P50_MAX_MS} ms"),
                    median(M_RESUME, w),
                    RESUME_P50_MAX_MS,
                    " ms",
                ),
                at_most(
                    format!("exit p50 <= {EXIT_P50_MAX_MS} ms"),
                    median(M_EXIT, w),
                    EXIT_P50_MAX_MS,
                    " ms",
                ),
                rss_check,
                Check {
                    target: format!("{SCALE_TASKS} concurrent tasks correct, one build"),
                    value: String::new(),
                    verdict: match scale.iter().find(|(k, ww, _)| *k == kind && *ww == w) {
                        Some((_, _, true)) => Verdict::Met,
                        Some((_, _, false)) => Verdict::Missed,
                        None => Verdict::NotMeasured,
                    },
                },
            ];
            // The previous build is shown beside the others, not judged.
            let reference = options.given >= 2 && w == 0;
            for mut check in checks {
                if reference {
                    check.verdict = Verdict::NotApplicable("#1 is the previous build");
                }
                all &= check.verdict.passes();
                println!(
                    "  {:<7} #{} {:<44} {:>9}  {}",
                    kind.name(),
                    w + 1,
                    check.target,
                    check.value,
                    check.verdict.show()
                );
            }
        }
    }
    all
}

/// Engine commands per phase: medians, one line per engine and binary, then
/// each phase's commands (every distinct sequence, with how many runs had it).
pub fn print_phases(
    options: &Options,
    tables: &[(TestEngine, Vec<Row>)],
    phases: &[PhaseCommands],
) {
    println!();
    println!(
        "engine commands per phase (medians): start = launch -> job running, settle = the \
         next {} s, steady = per minute of the undisturbed window, suspend = suspend -> \
         resume message (1 s paused), resume = resume -> 1 s later, exit = job end -> \
         wrapper exit",
        SETTLE.as_secs()
    );
    let names = [
        ("start", M_COMMANDS_START),
        ("settle", M_COMMANDS_SETTLE),
        ("steady/min", M_COMMANDS_STEADY),
        ("suspend", M_COMMANDS_SUSPEND),
        ("resume", M_COMMANDS_RESUME),
        ("exit", M_COMMANDS_EXIT),
    ];
    for (engine, rows) in tables {
        let kind = engine.kind();
        for w in 0..options.wrappers.len() {
            let figures: Vec<String> = names
                .iter()
                .map(|(name, metric)| {
                    let v = rows
                        .iter()
                        .find(|r| r.metric == *metric && r.wrapper == Some(w))
                        .and_then(Row::median);
                    format!("{name} {}", fmt(v))
                })
                .collect();
            println!("  {:<7} #{}: {}", kind.name(), w + 1, figures.join(", "));
            for (name, metric) in names {
                let mut seen: Vec<(String, usize)> = Vec::new();
                for p in phases
                    .iter()
                    .filter(|p| p.kind == kind && p.wrapper == w && p.metric == metric)
                {
                    let line = compress(&p.commands);
                    match seen.iter_mut().find(|(l, _)| *l == line) {
                        Some((_, n)) => *n += 1,
                        None => seen.push((line, 1)),
                    }
                }
                let runs: usize = seen.iter().map(|(_, n)| n).sum();
                for (line, n) in seen {
                    let share = if runs > 1 {
                        format!(" ({n} of {runs} runs)")
                    } else {
                        String::new()
                    };
                    println!("      {name:<10} {line}{share}");
                }
            }
        }
    }
}

/// "inspect, inspect, inspect, rm" -> "inspect x3, rm"; "-" for none.
fn compress(commands: &[String]) -> String {
    let mut parts: Vec<(String, usize)> = Vec::new();
    for c in commands {
        match parts.last_mut() {
            Some((last, n)) if last == c => *n += 1,
            _ => parts.push((c.clone(), 1)),
        }
    }
    if parts.is_empty() {
        return "-".into();
    }
    parts
        .into_iter()
        .map(|(c, n)| if n > 1 { format!("{c} x{n}") } else { c })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Which thread wakes: each overhead run's wake-ups per thread, and its
/// live descendants' (not counted as the wrapper's).
pub fn print_wakeups(overhead: &[(EngineKind, usize, Result<OverheadResult, String>)]) {
    println!();
    println!(
        "wake-ups per thread in the window (voluntary context switches / s; main = the \
         thread whose id is the pid; new = born during the window, all its switches count):"
    );
    let mut run_of = std::collections::HashMap::new();
    for (kind, w, result) in overhead {
        let Ok(r) = result else { continue };
        let run = run_of.entry((kind.name(), *w)).or_insert(0);
        *run += 1;
        println!(
            "  {:<7} #{} run {}: {}",
            kind.name(),
            w + 1,
            run,
            describe_wakeups(&r.wakeups)
        );
        for (pid, comm, wakeups) in &r.descendants {
            println!(
                "           descendant {comm} (pid {pid}, {} thread(s)): {:.1}/s",
                wakeups.threads.len(),
                wakeups.per_second
            );
        }
    }
}

fn describe_wakeups(w: &Wakeups) -> String {
    let threads: Vec<String> = w
        .threads
        .iter()
        .map(|t| {
            let role = if t.tid == w.pid { "main, " } else { "" };
            let new = if t.life == ThreadLife::New {
                ", new"
            } else {
                ""
            };
            format!("tid {} ({role}{}{new}) {:.2}", t.tid, t.comm, t.per_second)
        })
        .collect();
    let gone = if w.gone > 0 {
        format!("; {} thread(s) gone, not counted", w.gone)
    } else {
        String::new()
    };
    format!("{:.2}/s = {}{gone}", w.per_second, threads.join(" + "))
}

/// Where each binary's memory is at the end of the steady window (smaps of
/// its first overhead run per engine), KiB.
pub fn print_memory(
    options: &Options,
    overhead: &[(EngineKind, usize, Result<OverheadResult, String>)],
) {
    println!();
    println!(
        "memory by mapping at the end of the window (/proc/<pid>/smaps, KiB; private = \
         pages no other process shares):"
    );
    let mut seen = std::collections::HashSet::new();
    for (kind, w, result) in overhead {
        let Ok(OverheadResult {
            breakdown: Some(parts),
            ..
        }) = result
        else {
            continue;
        };
        if !seen.insert((kind.name(), *w)) {
            continue;
        }
        println!(
            "  {} #{} ({}):",
            kind.name(),
            w + 1,
            options.wrappers[*w]
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        );
        println!(
            "    {:<52} {:>7} {:>7} {:>7} {:>8}",
            "mapping", "rss", "pss", "private", "size"
        );
        for p in parts {
            print_part(p);
        }
        let total = MemoryPart {
            what: "total".into(),
            rss_kib: parts.iter().map(|p| p.rss_kib).sum(),
            pss_kib: parts.iter().map(|p| p.pss_kib).sum(),
            private_kib: parts.iter().map(|p| p.private_kib).sum(),
            size_kib: parts.iter().map(|p| p.size_kib).sum(),
        };
        print_part(&total);
    }
}

fn print_part(p: &MemoryPart) {
    println!(
        "    {:<52} {:>7} {:>7} {:>7} {:>8}",
        p.what, p.rss_kib, p.pss_kib, p.private_kib, p.size_kib
    );
}
