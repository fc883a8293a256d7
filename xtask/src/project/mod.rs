//! `cargo xtask project run|down`: a BOINC 8.2 project on this machine that
//! sends the release files in `dist/` to a real BOINC 8.2 client, as a
//! project admin would set it up (see the README, "Deploying it in a BOINC
//! project"), and checks what became of every result.
//!
//! `run` builds BOINC's server once (kept by the source's hash), starts
//! MariaDB and Apache, makes a project named after the engine (two engines'
//! runs go side by side), installs the classic sample app and BUDA, creates
//! work, asks the scheduler as a host without a container engine (which
//! must get no work, and be told why), then attaches a client that finds
//! the chosen engine and watches every result to the end: one task is
//! suspended and resumed, the client is restarted while another runs.
mod apps;
mod client;
mod engine;
#[allow(clippy::module_inception)]
mod project;
mod server;
mod services;
mod status;
mod watch;
mod web;
mod work;

use anyhow::{bail, Context, Result};
use engine::Engine;
use project::{Project, PROJECTS_DIR};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The classic app's name in the project.
const CLASSIC_APP: &str = "dw_hello";
/// BUDA jobs in the batch, and how long each spins: long enough that a
/// second of CPU time lost or gained (a report period is two) stays within
/// the bounds the run checks.
const BUDA_JOBS: usize = 3;
pub const BUDA_SECONDS: u32 = 20;
/// The most a run waits for its results, unless `--timeout` says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(900);
const NO_WORK_REASON: &str = "Docker not present";

pub struct Options {
    pub engine: Engine,
    pub keep: bool,
    pub app: Option<PathBuf>,
    pub timeout: Duration,
}

pub fn command(workspace: &Path, args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("run") => run(workspace, &parse(&args[1..])?),
        Some("down") => down(),
        other => bail!("unknown project command {other:?}: run or down"),
    }
}

fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options {
        engine: Engine::Podman,
        keep: false,
        app: None,
        timeout: DEFAULT_TIMEOUT,
    };
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let mut value = || rest.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--engine" => options.engine = Engine::parse(value()?)?,
            "--keep" => options.keep = true,
            "--app" => {
                let dir = PathBuf::from(value()?);
                options.app = Some(
                    dir.canonicalize()
                        .with_context(|| format!("--app {}: no such directory", dir.display()))?,
                );
            }
            "--timeout" => {
                let secs: u64 = value()?.parse().context("--timeout takes seconds")?;
                options.timeout = Duration::from_secs(secs);
            }
            other => bail!("unknown argument {other:?} to project run"),
        }
    }
    Ok(options)
}

/// Named timings of the run's steps, printed at the end.
struct Timings(Vec<(&'static str, Duration)>);

impl Timings {
    fn add(&mut self, what: &'static str, took: Duration) {
        println!("== {what}: {:.1} s", took.as_secs_f64());
        self.0.push((what, took));
    }

    fn print(&self) {
        println!("\n| step | time |\n|---|---|");
        for (what, took) in &self.0 {
            println!("| {what} | {:.1} s |", took.as_secs_f64());
        }
    }
}

/// A project set up to the point a client can attach: its work created,
/// its daemons started.
struct SetUp {
    project: Project,
    /// The admin's account, which the clients attach with.
    auth: String,
    clients_dir: PathBuf,
    plan: Vec<work::Planned>,
}

fn run(workspace: &Path, options: &Options) -> Result<()> {
    let dist = workspace.join("dist");
    if !dist.join("app_versions").is_dir() {
        bail!(
            "{} has no app_versions: run `cargo xtask dist` first",
            dist.display()
        );
    }
    let mut timings = Timings(Vec::new());
    let built = server::build(workspace)?;
    timings.add("server build (cached after the first)", built.took);
    let client_bin = workspace.join(format!("target/boinc-client-{}", built.version));
    if !client_bin.join("boinc").exists() {
        bail!(
            "{} has no BOINC client: run `cargo xtask client` first",
            client_bin.display()
        );
    }

    let setting_up = Instant::now();
    let SetUp {
        project,
        auth,
        clients_dir,
        plan,
    } = set_up(&dist, &built.tree, options)?;
    timings.add("project set-up", setting_up.elapsed());

    let asking = Instant::now();
    check_no_engine_host(&project, &client_bin, &clients_dir, &auth)?;
    timings.add(
        "a host without an engine asked and refused",
        asking.elapsed(),
    );

    let mut client = start_client(&client_bin, &clients_dir, Some(options.engine))?;
    let attached = Instant::now();
    client.attach(&project.url, &auth)?;
    let outcome = watch::watch(
        &project,
        &mut client,
        options.engine,
        &plan,
        options.timeout,
    );
    timings.add(
        "attach to all validated and assimilated",
        attached.elapsed(),
    );
    timings.print();
    leave_or_stop(&project, client, options.keep)?;
    outcome
}

/// The project named after the engine, with the classic app and BUDA, the
/// admin's account, and the work the run watches; the engine's images for
/// the clients.
fn set_up(dist: &Path, tree: &Path, options: &Options) -> Result<SetUp> {
    let name = format!("dw_{}", options.engine.name());
    let project = {
        // Two runs at once share MariaDB and Apache: one starts them and
        // reloads Apache at a time.
        let _lock = services_lock()?;
        services::start()?;
        Project::create(&name, tree)?
    };
    let classic_app = match &options.app {
        Some(dir) => dir
            .file_name()
            .map(|n| sanitize(&n.to_string_lossy()))
            .unwrap_or_else(|| CLASSIC_APP.into()),
        None => CLASSIC_APP.to_string(),
    };
    install_apps(&project, dist, &classic_app, options.app.as_deref())?;
    let auth = web::create_account(&project.url, "admin@example.com", "admin")?;
    grant_submit(&project, &auth)?;
    apps::make_science_app(&project, &auth)?;
    let clients_dir = PathBuf::from(format!("{PROJECTS_DIR}/{name}.clients"));
    let _ = fs::remove_dir_all(&clients_dir);
    fs::create_dir_all(&clients_dir)?;
    options.engine.prepare_images(&clients_dir)?;
    let mut plan = work::create_classic(&project, &classic_app, options.app.as_deref())?;
    let buda = work::submit_buda(&project, BUDA_JOBS, BUDA_SECONDS)?;
    plan.extend(buda.into_iter().map(|expect| work::Planned {
        wu_name: String::new(),
        expect,
    }));
    project.start_daemons()?;
    Ok(SetUp {
        project,
        auth,
        clients_dir,
        plan,
    })
}

fn install_apps(
    project: &Project,
    dist: &Path,
    classic_app: &str,
    own_app: Option<&Path>,
) -> Result<()> {
    project.add_apps(&[
        (classic_app, "docker_wrapper sample job"),
        (apps::BUDA_APP, "BOINC Universal Docker App"),
    ])?;
    project.set_daemons(&[classic_app, apps::BUDA_APP])?;
    apps::install_classic(project, dist, classic_app, own_app)?;
    apps::install_buda(project, dist)
}

/// A client in its own dir below `clients_dir` that finds `engine` (or none).
fn start_client(
    client_bin: &Path,
    clients_dir: &Path,
    engine: Option<Engine>,
) -> Result<client::Client> {
    let (bin, dir) = match engine {
        Some(engine) => ("bin-engine", engine.name()),
        None => ("bin-none", "none"),
    };
    let path = engine::client_path(&clients_dir.join(bin), engine)?;
    client::Client::start(
        client_bin,
        &clients_dir.join(dir),
        path,
        client::free_port()?,
    )
}

/// With `--keep`, leaves the project and the client running and says where
/// they are; otherwise stops both.
fn leave_or_stop(project: &Project, mut client: client::Client, keep: bool) -> Result<()> {
    if keep {
        println!(
            "\nLeft running: the project {url} (its admin pages: {ops}), its logs in {logs},\n\
             the client in {client} (`boinccmd --host 127.0.0.1:{port} --passwd docker_wrapper ...`).\n\
             `cargo xtask project down` takes it all down.",
            url = project.url,
            ops = project.url.trim_end_matches('/').to_string() + "_ops/",
            logs = project.log_dir.display(),
            client = client.dir.display(),
            port = client.port(),
        );
        client.leave_running();
    } else {
        client.stop()?;
        let _ = project.tool("bin/stop", &[]);
    }
    Ok(())
}

/// A client that finds no container engine asks for work: it must get none
/// and its event log must say why.
fn check_no_engine_host(
    project: &Project,
    client_bin: &Path,
    clients_dir: &Path,
    auth: &str,
) -> Result<()> {
    let mut client = start_client(client_bin, clients_dir, None)?;
    client.attach(&project.url, auth)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut asked = Instant::now();
    loop {
        std::thread::sleep(Duration::from_secs(2));
        if !client.tasks().is_empty() {
            bail!(
                "a host without a container engine got work: see {}",
                client.log_path().display()
            );
        }
        let messages = client.messages();
        if messages.contains(NO_WORK_REASON) {
            println!("a host without a container engine got no work; its event log says \"{NO_WORK_REASON}\"");
            break;
        }
        if Instant::now() >= deadline {
            bail!(
                "a host without a container engine was not told \"{NO_WORK_REASON}\" within 120 s: \
                 see {} and the scheduler's log {}",
                client.log_path().display(),
                project.log("scheduler.log").display()
            );
        }
        // The feeder takes a few seconds to load new work; ask again.
        if asked.elapsed() > Duration::from_secs(10) {
            client.update(&project.url);
            asked = Instant::now();
        }
    }
    // Gone before the client with an engine attaches from the same host
    // and account, so that only that one asks for work from now on.
    client.stop()?;
    Ok(())
}

/// The user may make BUDA apps and submit jobs: a `user_submit` row.
fn grant_submit(project: &Project, auth: &str) -> Result<()> {
    if !auth.chars().all(|c| c.is_ascii_alphanumeric()) {
        bail!("unexpected authenticator {auth:?}");
    }
    services::sql(
        Some(project.database()),
        &format!(
            "INSERT INTO user_submit (user_id, quota, logical_start_time, submit_all, manage_all, \
             max_jobs_in_progress) SELECT id, 0, 0, 1, 1, 0 FROM user WHERE authenticator = '{auth}'"
        ),
    )?;
    Ok(())
}

/// `down`: every project made here, their clients, MariaDB and Apache.
fn down() -> Result<()> {
    let Ok(entries) = fs::read_dir(PROJECTS_DIR) else {
        println!("no projects in {PROJECTS_DIR}");
        return services::stop();
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(project) = name.strip_suffix(".clients") {
            client::quit_left_running(&entry.path());
            println!("stopped the clients of {project}");
        }
    }
    for entry in fs::read_dir(PROJECTS_DIR)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().join("config.xml").exists() {
            Project::at(&name).remove()?;
            println!("removed the project {name}");
        }
    }
    services::stop()?;
    fs::remove_dir_all(PROJECTS_DIR).with_context(|| format!("cannot remove {PROJECTS_DIR}"))?;
    Ok(())
}

fn services_lock() -> Result<fs::File> {
    let file = fs::File::create("/run/lock/docker_wrapper_boinc_services.lock")?;
    file.lock()?;
    Ok(file)
}

/// A BOINC app name from a directory name.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}
