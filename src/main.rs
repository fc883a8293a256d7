//! docker_wrapper: runs a BOINC job in a Docker or Podman container.
//!
//! Read top down: `main` reads the command line and job.toml and hands the
//! slot to `task`, which reads the client's data, picks the engine, gets
//! the image (`image`) and the container, and hands the running container
//! to `supervise`; `outcome` turns how it ended into what the client is
//! told. Below them: `engine` (Docker and Podman), `slot` (the directory
//! the job shares), `boinc` (the client's API and files) and `host` (the
//! container's processes and cgroups as this host sees them).
mod argv;
mod boinc;
mod check;
mod cli;
mod config;
mod context;
mod engine;
mod host;
mod image;
mod logging;
mod os;
mod outcome;
#[cfg(test)]
mod property_tests;
mod slot;
mod supervise;
mod task;
#[cfg(test)]
mod test_dir;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;

use boinc::wakeup::Wakeup;
use cli::{Cli, CliAction, CliError};
use config::JobConfig;
use outcome::{Outcome, TaskError};

fn main() -> ExitCode {
    let cli = match cli::parse(std::env::args_os().skip(1).collect()) {
        Ok(CliAction::Help) => {
            print!("{}", cli::help_text());
            return ExitCode::SUCCESS;
        }
        Ok(CliAction::Version) => {
            println!("{}", version_line());
            return ExitCode::SUCCESS;
        }
        // Outside any slot, for volunteers and admins: no BOINC client.
        Ok(CliAction::Check) => {
            println!("{}", version_line());
            return if check::run() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            };
        }
        Ok(CliAction::Run(cli)) => Ok(cli),
        Err(err) => Err(err),
    };
    // Before this, stderr is not yet stderr.txt in a slot.
    if let Err(code) = boinc::init_wrapper() {
        eprintln!("docker_wrapper: cannot attach to the BOINC client (error {code})");
        return ExitCode::from(1);
    }
    logging::init();
    log::info!("{} starting", version_line());
    outcome::end_process(run_in_slot(cli))
}

/// Everything from the command line to the task's end; what the client is
/// told is `end_process`'s to decide.
fn run_in_slot(cli: Result<Cli, CliError>) -> Result<Outcome, TaskError> {
    let cli = cli.map_err(|err| TaskError::set_up(format!("{err} (see docker_wrapper --help)")))?;
    let config = load_config(&cli)?;
    // The library also says standalone when init_data.xml exists but does not
    // parse (e.g. empty): that is a slot with a damaged file, not a plain
    // directory, and reading it gives the error.
    let standalone = boinc::is_standalone() && !Path::new("init_data.xml").exists();
    logging::set_verbosity(if cli.verbose || standalone {
        2
    } else {
        config.verbose
    });
    log::debug!("{}", config.describe());
    if standalone {
        log::info!("standalone mode (no init_data.xml): image and container are named 'boinc'");
    }
    if cli.sporadic {
        start_sporadic()?;
    }
    // Lives until the process ends: the library keeps its descriptor.
    let wakeup: &'static Wakeup = match Wakeup::new() {
        Ok(wakeup) => Box::leak(Box::new(wakeup)),
        Err(err) => {
            return Err(TaskError::set_up(format!(
                "cannot create the wake-up pipe: {err}"
            )))
        }
    };
    #[cfg(unix)]
    boinc::notify_status_changes(wakeup);
    let terminated = Arc::new(AtomicBool::new(false));
    #[cfg(unix)]
    for signal in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGQUIT,
    ] {
        let registered = signal_hook::flag::register(signal, Arc::clone(&terminated))
            .and_then(|_| wakeup.writer())
            .and_then(|writer| signal_hook::low_level::pipe::register(signal, writer));
        if let Err(err) = registered {
            log::warn!("cannot handle signal {signal}: {err}");
        }
    }
    let slot = if standalone {
        task::SlotKind::Standalone
    } else {
        task::SlotKind::Client
    };
    task::run(cli, config, slot, terminated, wakeup)
}

fn load_config(cli: &Cli) -> Result<JobConfig, TaskError> {
    let path = config_path(&cli.config_file)?;
    let (config, warnings) = JobConfig::load(&path, cli.config_given).map_err(TaskError::set_up)?;
    warnings.iter().for_each(|w| log::warn!("{w}"));
    Ok(config)
}

/// job.toml may arrive as a BOINC soft-link file (BUDA sends it with the
/// workunit); a missing one is left for the loader to report.
fn config_path(name: &Path) -> anyhow::Result<PathBuf> {
    let slot = std::env::current_dir().context("cannot read the current directory")?;
    if std::fs::symlink_metadata(slot.join(name)).is_err() {
        return Ok(name.to_path_buf());
    }
    Ok(slot::files::resolve(&slot, name)?)
}

fn start_sporadic() -> Result<(), TaskError> {
    if !boinc::supports_sporadic() {
        return Err(TaskError::set_up(format!(
            "--sporadic needs a BOINC 8 API library; this build uses BOINC {}",
            boinc::library_version()
        )));
    }
    boinc::sporadic_dir(".").map_err(|code| {
        TaskError::set_up(format!(
            "cannot create the sporadic-app files (error {code})"
        ))
    })
}

fn version_line() -> String {
    format!(
        "docker_wrapper {} ({}; BOINC API {})",
        env!("CARGO_PKG_VERSION"),
        env!("DOCKER_WRAPPER_REVISION"),
        boinc::library_version()
    )
}
