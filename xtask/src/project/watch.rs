//! Watches the results until every one is assimilated: prints each stage as
//! it is reached, suspends and resumes one task, restarts the client while
//! another runs, notes the engine each slot's init_data.xml names, and at
//! the end prints the table and checks each result against the plan.
use super::client::{Client, Task};
use super::engine::Engine;
use super::project::Project;
use super::status::{self, ServerResult, Timeline};
use super::work::{Expect, Planned};
use anyhow::{anyhow, bail, Result};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long a task runs before it is suspended, or the client restarted.
const ACT_AFTER: f64 = 6.0;
/// How long it stays suspended.
const SUSPENDED_FOR: Duration = Duration::from_secs(5);
/// Bounds of a CPU-bound job's reported CPU time, as shares of the CPU
/// seconds it spun for (the rest: starting its shell, reading /proc).
const MIN_CPU_SHARE: f64 = 0.9;
const MAX_CPU_SHARE: f64 = 1.2;
/// What the wrapper logs when it cannot see the container's processes, and
/// when that is because the container had already ended.
const OUT_OF_SIGHT: &str = "out of sight";
const ENDED_BEFORE_LOOKED: &str = "ended before the wrapper could look";

#[derive(Default)]
struct Seen {
    /// The engine the slot's init_data.xml named (`<docker_type>`).
    docker_type: Option<u32>,
    client_state: String,
    /// Whether the input file the plan names was a `<soft_link>` file in the slot.
    linked_input: Option<bool>,
    suspended_at: Option<Instant>,
    resumed: bool,
    restarted: bool,
}

/// The watch's state between rounds: what it has seen of each result, and
/// when each reached each stage.
struct Watch<'a> {
    project: &'a Project,
    client: &'a mut Client,
    plan: &'a [Planned],
    started: Instant,
    timeline: Timeline,
    seen: BTreeMap<String, Seen>,
    last_update: Instant,
}

pub fn watch(
    project: &Project,
    client: &mut Client,
    engine: Engine,
    plan: &[Planned],
    timeout: Duration,
) -> Result<()> {
    let mut watch = Watch {
        project,
        client,
        plan,
        started: Instant::now(),
        timeline: Timeline::default(),
        seen: BTreeMap::new(),
        last_update: Instant::now(),
    };
    let results = loop {
        let (results, tasks) = watch.round()?;
        if all_assimilated(&results, plan.len()) {
            break results;
        }
        watch.nudge(&results, &tasks);
        if watch.started.elapsed() > timeout {
            return Err(watch.give_up(&results, timeout));
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    report(
        project,
        engine,
        plan,
        &results,
        &watch.seen,
        &watch.timeline,
    )
}

fn all_assimilated(results: &[ServerResult], expected: usize) -> bool {
    results.len() >= expected && results.iter().all(|r| r.assimilated && r.server_state == 5)
}

impl Watch<'_> {
    /// One look at the server's results and the client's tasks: notes what
    /// each task shows, prints the stages reached, and acts on the tasks the
    /// plan wants suspended or running through a restart.
    fn round(&mut self) -> Result<(Vec<ServerResult>, Vec<Task>)> {
        let results = status::server_results(self.project)?;
        let expects = expectations(&results, self.plan);
        let tasks = self.client.tasks();
        let mut restart = false;
        for result in &results {
            let task = tasks.iter().find(|t| t.name == result.name);
            self.note(result, task);
            self.record_stage(result, task);
            if let Some(task) = task.filter(|t| t.active_state == "EXECUTING" || t.suspended) {
                restart |= self.act(result, task, expects.get(&result.name))?;
            }
        }
        if restart {
            println!("restarting the client while a task runs");
            self.client.restart()?;
        }
        Ok((results, tasks))
    }

    /// The result's state on the client, and the engine its slot names.
    fn note(&mut self, result: &ServerResult, task: Option<&Task>) {
        let entry = self.seen.entry(result.name.clone()).or_default();
        if let Some(task) = task {
            entry.client_state = if task.active_state == "EXECUTING" {
                "running".into()
            } else {
                task.state.clone()
            };
            if entry.docker_type.is_none() {
                entry.docker_type = self.client.init_data_of(&result.name).and_then(|xml| {
                    super::web::between(&xml, "<docker_type>", "</docker_type>")
                        .and_then(|t| t.parse().ok())
                });
            }
        } else if result.server_state == 5 && entry.client_state.is_empty() {
            entry.client_state = "reported".into();
        } else if result.server_state == 5 && !entry.client_state.starts_with("reported") {
            entry.client_state = format!("reported ({})", entry.client_state);
        }
    }

    /// Prints the result's stage when it is one it had not reached before.
    fn record_stage(&mut self, result: &ServerResult, task: Option<&Task>) {
        let stage = status::stage_of(
            result,
            task.map(|t| (t.state.as_str(), t.active_state.as_str())),
        );
        if self
            .timeline
            .record(&result.name, stage, self.started.elapsed())
        {
            status::print_change(self.started, &result.name, stage);
        }
    }

    /// Does to a running or suspended task what its plan entry asks for;
    /// returns whether the client is to be restarted.
    fn act(&mut self, result: &ServerResult, task: &Task, expect: Option<&Expect>) -> Result<bool> {
        let entry = self.seen.entry(result.name.clone()).or_default();
        match expect {
            Some(Expect::ValidWithLinkedInput(input)) if entry.linked_input.is_none() => {
                entry.linked_input = self
                    .client
                    .slot_file_of(&result.name, input)
                    .map(|text| text.starts_with("<soft_link>"));
            }
            Some(Expect::ValidAfterSuspend) => {
                if entry.suspended_at.is_none() && task.elapsed >= ACT_AFTER {
                    println!("suspending {}", result.name);
                    self.client
                        .task_op(&self.project.url, &result.name, "suspend")?;
                    entry.suspended_at = Some(Instant::now());
                } else if let Some(at) = entry.suspended_at.filter(|_| !entry.resumed) {
                    if at.elapsed() >= SUSPENDED_FOR {
                        println!("resuming {}", result.name);
                        self.client
                            .task_op(&self.project.url, &result.name, "resume")?;
                        entry.resumed = true;
                    }
                }
            }
            Some(Expect::ValidAfterRestart) if !entry.restarted && task.elapsed >= ACT_AFTER => {
                entry.restarted = true;
                return Ok(true);
            }
            _ => {}
        }
        Ok(false)
    }

    /// The client backs off after "no work" and reports in batches: while
    /// work waits to be sent or reported, ask and report at once.
    fn nudge(&mut self, results: &[ServerResult], tasks: &[Task]) {
        let waiting = results.iter().any(|r| r.server_state == 2)
            || tasks
                .iter()
                .any(|t| t.state == "uploaded" || t.state == "compute error");
        if waiting && self.last_update.elapsed() > Duration::from_secs(8) {
            self.client.update(&self.project.url);
            self.last_update = Instant::now();
        }
    }

    /// Prints where each result stands and says where to read why.
    fn give_up(&self, results: &[ServerResult], timeout: Duration) -> anyhow::Error {
        for result in results {
            println!(
                "  {} ({}): server {}, validate {}, client {}",
                result.name,
                result.wu_name,
                result.outcome_text(),
                result.validate_text(),
                self.seen
                    .get(&result.name)
                    .map_or("", |s| s.client_state.as_str())
            );
        }
        anyhow!(
            "not every result was assimilated within {timeout:?}. Read the client's log {}, \
             the scheduler's {}, and the transitioner's, validators' and assimilators' logs in {}",
            self.client.log_path().display(),
            self.project.log("scheduler.log").display(),
            self.project.log_dir.display()
        )
    }
}

/// Which plan entry each result is: classic ones by work unit name, BUDA
/// ones (named by create_work) in the order they were submitted.
fn expectations(results: &[ServerResult], plan: &[Planned]) -> BTreeMap<String, Expect> {
    let mut map = BTreeMap::new();
    let mut unnamed = plan.iter().filter(|p| p.wu_name.is_empty());
    for result in results {
        let planned = plan
            .iter()
            .find(|p| !p.wu_name.is_empty() && p.wu_name == result.wu_name)
            .or_else(|| {
                (result.app == super::apps::BUDA_APP)
                    .then(|| unnamed.next())
                    .flatten()
            });
        if let Some(planned) = planned {
            map.insert(result.name.clone(), planned.expect.clone());
        }
    }
    map
}

/// The end of the watch: the table of results, and every way one differs
/// from the plan.
struct Report<'a> {
    project: &'a Project,
    engine: Engine,
    expects: BTreeMap<String, Expect>,
    seen: &'a BTreeMap<String, Seen>,
    problems: Vec<String>,
    notes: Vec<String>,
}

fn report(
    project: &Project,
    engine: Engine,
    plan: &[Planned],
    results: &[ServerResult],
    seen: &BTreeMap<String, Seen>,
    timeline: &Timeline,
) -> Result<()> {
    let mut report = Report {
        project,
        engine,
        expects: expectations(results, plan),
        seen,
        problems: Vec::new(),
        notes: Vec::new(),
    };
    println!(
        "\n| work unit | app | variant | engine | client state | server outcome | validate state | CPU time | elapsed | output hash |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for result in results {
        report.row(result);
        report.check(result);
    }
    report.finish(timeline, results.len())
}

impl Report<'_> {
    /// The result's line in the table.
    fn row(&self, result: &ServerResult) {
        let s = self.seen.get(&result.name);
        let engine_seen = match s.and_then(|s| s.docker_type) {
            Some(1) => "docker",
            Some(2) => "podman",
            Some(_) => "other",
            None => "-",
        };
        let variant = if result.app == super::apps::BUDA_APP {
            super::apps::VARIANT
        } else {
            "-"
        };
        println!(
            "| {} | {} | {variant} | {engine_seen} | {} | {} | {} | {:.1} s | {:.1} s | {} |",
            result.wu_name,
            result.app,
            s.map_or("", |s| s.client_state.as_str()),
            if result.outcome == 3 {
                format!("compute error (exit {})", result.exit_status)
            } else {
                result.outcome_text().to_string()
            },
            result.validate_text(),
            result.cpu_time,
            result.elapsed,
            status::output_hash(self.project, &result.name),
        );
    }

    /// Every way the result differs from the plan, into `problems`.
    fn check(&mut self, result: &ServerResult) {
        let s = self.seen.get(&result.name);
        let stderr = status::stderr_of(self.project, result.id);
        self.check_against_plan(result, s, &stderr);
        self.check_engine(result, s);
        self.check_sight(result, &stderr);
        self.check_cpu_time(result);
    }

    fn check_against_plan(&mut self, result: &ServerResult, s: Option<&Seen>, stderr: &str) {
        match self.expects.get(&result.name) {
            None => self
                .problems
                .push(format!("{}: a result nobody planned", result.name)),
            Some(Expect::ComputeError(code)) => {
                if result.outcome != 3 || result.exit_status != *code {
                    self.problems.push(format!(
                        "{}: expected a compute error with exit status {code}, got {} (exit {})",
                        result.wu_name,
                        result.outcome_text(),
                        result.exit_status
                    ));
                }
            }
            Some(expect) => {
                if result.outcome != 1 || result.validate_state != 1 {
                    self.problems.push(format!(
                        "{}: expected valid, got {} / {}; its stderr:\n{stderr}",
                        result.wu_name,
                        result.outcome_text(),
                        result.validate_text()
                    ));
                }
                self.problems.extend(not_seen(result, expect, s));
            }
        }
    }

    fn check_engine(&mut self, result: &ServerResult, s: Option<&Seen>) {
        if let Some(t) = s.and_then(|s| s.docker_type) {
            if t != self.engine.docker_type() {
                self.problems.push(format!(
                    "{}: the slot's init_data.xml names docker_type {t}, the client runs {}",
                    result.name,
                    self.engine.name()
                ));
            }
        }
    }

    /// Under the real client the wrapper must watch the container's
    /// processes; only a container that was gone before it looked is not.
    fn check_sight(&mut self, result: &ServerResult, stderr: &str) {
        if stderr.contains(OUT_OF_SIGHT) && !stderr.contains(ENDED_BEFORE_LOOKED) {
            self.problems.push(format!(
                "{}: the wrapper lost sight of the container's processes:\n{stderr}",
                result.wu_name
            ));
        }
    }

    /// A CPU-bound BUDA job that ran without interruption: the CPU time
    /// the server got is close to the CPU seconds the job spun for (its
    /// run time on the CPU, whatever else the host was doing).
    fn check_cpu_time(&mut self, result: &ServerResult) {
        if result.app != super::apps::BUDA_APP
            || self.expects.get(&result.name) != Some(&Expect::Valid)
        {
            return;
        }
        let wanted = f64::from(super::BUDA_SECONDS);
        if result.cpu_time < MIN_CPU_SHARE * wanted
            || result.cpu_time > MAX_CPU_SHARE * wanted + 2.0
        {
            self.problems.push(format!(
                "{}: the server got {:.1} s of CPU time for a job that spun for {wanted:.0} CPU seconds",
                result.name, result.cpu_time
            ));
        }
        self.notes.push(format!(
            "{}: CPU time {:.1} s of {wanted:.0} s spun, {:.0}% of its elapsed time",
            result.name,
            result.cpu_time,
            100.0 * result.cpu_time / result.elapsed.max(0.1)
        ));
    }

    /// The notes and the stage table; an error listing the problems if
    /// there are any.
    fn finish(mut self, timeline: &Timeline, count: usize) -> Result<()> {
        if !self.seen.values().any(|s| s.docker_type.is_some()) {
            self.problems
                .push("no slot's init_data.xml named the engine (<docker_type>)".into());
        }
        println!("\n{}", self.notes.join("\n"));
        println!("\n{}", timeline.stage_table());
        if !self.problems.is_empty() {
            bail!(
                "{} problem(s):\n{}",
                self.problems.len(),
                self.problems.join("\n")
            );
        }
        println!("all {count} results as planned");
        Ok(())
    }
}

/// What the plan wanted to see happen to a valid result on the client and
/// was not seen.
fn not_seen(result: &ServerResult, expect: &Expect, s: Option<&Seen>) -> Option<String> {
    match expect {
        Expect::ValidWithLinkedInput(input) if s.and_then(|s| s.linked_input) != Some(true) => {
            Some(format!(
                "{}: its input {input} was not seen in the slot as a <soft_link> file ({:?})",
                result.wu_name,
                s.and_then(|s| s.linked_input)
            ))
        }
        Expect::ValidAfterSuspend if !s.is_some_and(|s| s.resumed) => Some(format!(
            "{}: was never suspended and resumed",
            result.wu_name
        )),
        Expect::ValidAfterRestart if !s.is_some_and(|s| s.restarted) => Some(format!(
            "{}: the client was never restarted while it ran",
            result.wu_name
        )),
        _ => None,
    }
}
